"""Which Python runs a pytest project's tests: the project's environment, not shardrun's.

shardrun used to run pytest with its own interpreter (`sys.executable`), so a project's
dependencies had to be installed into shardrun's environment and `pipx install shardrun`
could not serve a pytest project. The pytest runner server (pytest_server.py) imports
only the standard library and pytest, so it runs under any interpreter that has pytest;
this module picks that interpreter the way a person would:

1. `--python PATH` (a path, or a name looked up on PATH);
2. the active virtualenv (`$VIRTUAL_ENV/bin/python`);
3. the project's own `.venv/bin/python` (uv, poetry with in-project venvs, `python -m venv .venv`);
4. `python3`, then `python`, on PATH (a conda environment, pyenv, a CI image's Python);
5. shardrun's own interpreter.

Pure apart from looking at the file system: the environment is passed in.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shardrun.errors import InputError

# Where a virtualenv keeps its interpreter (Windows is not supported by the runners).
VENV_PYTHON = Path("bin") / "python"
# The in-project virtualenv directory uv, poetry (virtualenvs.in-project) and most
# tutorials create.
PROJECT_VENV = ".venv"


@dataclass(frozen=True)
class Interpreter:
    """The Python that runs the tests, and why that one (for the run's opening line)."""

    path: str
    source: str

    def describe(self) -> str:
        return f"{self.path} ({self.source})"


def find_python(
    explicit: str | None, root: Path, environ: Mapping[str, str], own: str = sys.executable
) -> Interpreter:
    """The project's interpreter, by the order in the module docstring."""
    if explicit:
        return Interpreter(_explicit(explicit, environ), "--python")
    candidates = []
    if environ.get("VIRTUAL_ENV"):
        candidates.append((Path(environ["VIRTUAL_ENV"]) / VENV_PYTHON, "the active virtualenv"))
    candidates.append((root / PROJECT_VENV / VENV_PYTHON, f"the project's {PROJECT_VENV}"))
    for path, source in candidates:
        if _is_executable(path):
            return Interpreter(str(path), source)
    for name in ("python3", "python"):
        found = shutil.which(name, path=environ.get("PATH", os.defpath))
        if found:
            return Interpreter(found, f"{name} on PATH")
    return Interpreter(own, "shardrun's own")


def _explicit(value: str, environ: Mapping[str, str]) -> str:
    """`--python` as given: a path to an executable, or a command name on PATH."""
    if os.sep in value:
        if _is_executable(Path(value)):
            return value
    else:
        found = shutil.which(value, path=environ.get("PATH", os.defpath))
        if found:
            return found
    raise InputError(f"--python {value}: no such executable; give the path of the project's "
                     "Python (e.g. .venv/bin/python)")


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)
