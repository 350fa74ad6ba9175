"""Check, before a pytest run starts, that the project's interpreter can run its tests.

runners/interpreter.py picks the interpreter; this module asks it, in one short
subprocess, for its Python and pytest versions. Without the check, an environment
without pytest (a system `python3` picked from PATH, a virtualenv not yet set up) would
surface as runners that die on `import pytest` batch after batch, and the run would end
in exit 3 with the cause in a worker's log; with it the run stops before anything
starts, with one line that says what to install or pass (exit 2).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from shardrun.errors import InputError
from shardrun.runners.interpreter import Interpreter, find_python

# What the pytest runner server needs (runners/pytest_server.py): Python 3.9 for
# str.removeprefix and os.waitstatus_to_exitcode; pytest 7 for config.rootpath and the
# report attributes it reads (checked on 7.0.1 by tests/integration/test_project_python.py).
MIN_PYTHON = (3, 9)
MIN_PYTEST = (7, 0)
# Prints "major minor pytest-version" without importing pytest: from the name of the
# first `pytest-<version>.dist-info` on sys.path (what importlib.metadata would find
# first), else from importlib.metadata (an .egg-info), else from pytest itself. The check
# is one interpreter start on the way to the first test: importing importlib.metadata
# alone took 30 of its 47 ms.
_PROBE = (
    "import os, sys\n"
    "found = None\n"
    "for folder in sys.path:\n"
    "    try:\n"
    "        names = os.listdir(folder or '.')\n"
    "    except OSError:\n"
    "        continue\n"
    "    for name in names:\n"
    "        if not (name.startswith('pytest-') and name.endswith('.dist-info')):\n"
    "            continue\n"
    "        version = name[len('pytest-'):-len('.dist-info')]\n"
    "        if version[:1].isdigit() and '-' not in version:\n"
    "            found = version\n"
    "            break\n"
    "    if found:\n"
    "        break\n"
    "if found is None:\n"
    "    try:\n"
    "        from importlib.metadata import version\n"
    "        found = version('pytest')\n"
    "    except Exception:\n"
    "        import pytest\n"
    "        found = pytest.__version__\n"
    "print(sys.version_info[0], sys.version_info[1], found)\n"
)
PROBE_TIMEOUT_SECONDS = 30.0
_ADVICE = "install pytest (and the project's dependencies) there, or pass --python PATH"


def project_interpreter(explicit: str | None, root: Path) -> Interpreter:
    """The interpreter the run's pytest batches will use, checked; InputError if unfit."""
    interpreter = find_python(explicit, root, os.environ)
    try:
        probe = subprocess.run([interpreter.path, "-c", _PROBE], cwd=root, capture_output=True,
                               text=True, timeout=PROBE_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise InputError(f"{interpreter.describe()} does not run ({error}); {_ADVICE}") from None
    if probe.returncode != 0:
        raise InputError(f"{interpreter.describe()} cannot import pytest; {_ADVICE}")
    problem = version_problem(probe.stdout)
    if problem:
        raise InputError(f"{interpreter.describe()}: {problem}; {_ADVICE}")
    source = f"{interpreter.source}, pytest {probe_pytest(probe.stdout)}"
    return Interpreter(interpreter.path, source)


def version_problem(output: str) -> str | None:
    """Why the probed versions cannot run the runner server, or None."""
    words = output.split()
    if len(words) != 3 or not words[0].isdigit() or not words[1].isdigit():
        return f"unexpected answer to the version check: {output.strip()!r}"
    python = (int(words[0]), int(words[1]))
    if python < MIN_PYTHON:
        return f"Python {python[0]}.{python[1]} is older than {_dotted(MIN_PYTHON)}"
    pytest = _leading_numbers(words[2])
    if pytest < MIN_PYTEST:
        return f"pytest {words[2]} is older than {_dotted(MIN_PYTEST)}"
    return None


def probe_pytest(output: str) -> str:
    words = output.split()
    return words[2] if len(words) == 3 else "?"


def _leading_numbers(version: str) -> tuple[int, ...]:
    """(8, 3, 0) for "8.3.0rc1": the numeric release parts, enough for a minimum check."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)
