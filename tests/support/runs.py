"""Running pytest, rspec and `python -m shardrun` as subprocesses, and reading their JUnit.

Inner runs get PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 and none of the outer run's PYTEST_* or
SHARDRUN_* variables (`clean_env`), or none of a CI provider's either (`clean_ci_env`);
together with a pytest.ini of their own (support.files) neither this machine's plugins
nor shardrun's own pyproject settings reach them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

# Generous: cold interpreters, several workers (or `shardrun ci` nodes and their workers)
# on a loaded two-core CI box.
RUN_TIMEOUT_SECONDS = 180
JUNIT_OUTCOMES = {"failure": "failed", "error": "error", "skipped": "skipped"}
OUTER_RUN_PREFIXES = ("PYTEST_", "SHARDRUN_")
# Variables through which a CI provider announces itself (shardrun/run/ci_env.py); the outer run
# may be in a CI, inner `shardrun ci` nodes must see only what a test gives them.
CI_PROVIDER_PREFIXES = ("GITHUB_", "GITLAB_", "CI_", "CIRCLE", "BUILDKITE", "JENKINS_")
CI_PROVIDER_NAMES = ("CI", "BUILD_TAG")

Testcase = tuple[str, str, str]  # (classname, name, outcome)


# --- environments and processes


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment without the outer pytest's or shardrun's settings, plus `extra`."""
    return _environment_without(OUTER_RUN_PREFIXES, (), extra)


def clean_ci_env(**extra: str) -> dict[str, str]:
    """`clean_env` that drops a CI provider's variables as well."""
    return _environment_without((*OUTER_RUN_PREFIXES, *CI_PROVIDER_PREFIXES), CI_PROVIDER_NAMES,
                                extra)


def _environment_without(
    prefixes: tuple[str, ...], names: tuple[str, ...], extra: Mapping[str, str]
) -> dict[str, str]:
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(prefixes) and key not in names
    }
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    # Inner pytest runs use the project's interpreter (shardrun/runners/interpreter.py):
    # python3 on PATH unless a virtualenv is active. This one, as if it were activated.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


def run_command(
    argv: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run to the end with output captured; `env` defaults to `clean_env()`."""
    return subprocess.run(
        list(argv), cwd=cwd, env=dict(env or clean_env()), capture_output=True, text=True,
        timeout=RUN_TIMEOUT_SECONDS, check=False,
    )


def shardrun_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "shardrun", "run", *args]


def run_options(tmp_path: Path, name: str = "run") -> list[str]:
    """--junit-out and --timings in tmp_path, so nothing is written next to the suite."""
    return ["--junit-out", str(tmp_path / f"{name}.xml"),
            "--timings", str(tmp_path / f"{name}-timings.json")]


def shardrun(
    suite_root: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m shardrun run ARGS` with cwd = the suite."""
    return run_command(shardrun_argv(*args), suite_root, env)


def free_port() -> int:
    """A port nothing listens on: the kernel picks one, we bind and release it (nobody
    else grabs it that fast), for a server to start on or a client to find unreachable."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_alive(pid: int) -> bool:
    """Running and not a zombie (a zombie runs nothing; it only awaits its reaper)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --- JUnit


def outcome_of(case: ET.Element) -> str:
    for child in case:
        if child.tag in JUNIT_OUTCOMES:
            return JUNIT_OUTCOMES[child.tag]
    return "passed"


def junit_cases(path: Path) -> Counter[Testcase]:
    """How often each (classname, name, outcome) occurs in a JUnit XML file."""
    root = ET.parse(path).getroot()
    return Counter(
        (case.get("classname", ""), case.get("name", ""), outcome_of(case))
        for case in root.iter("testcase")
    )


def junit_testcases(path: Path) -> frozenset[Testcase]:
    """(classname, name, outcome) of every testcase in a JUnit XML file."""
    return frozenset(junit_cases(path))


def assert_each_once(
    cases: Counter[Testcase], expected: frozenset[Testcase] | None = None
) -> None:
    """No testcase twice (nor missing from `expected`, or extra, when that is given)."""
    assert [case for case, count in cases.items() if count != 1] == []
    if expected is not None:
        assert set(cases) == expected


# --- serial runs: what the suite gives run plainly once, the way a developer would


def serial_cases(
    framework: str, root: Path, out: Path, paths: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> tuple[int, Counter[Testcase]]:
    """Run the suite once, plainly, with JUnit output: (exit code, its testcases)."""
    if framework == "rspec":
        argv = ["rspec", *paths, "--format", "RspecJunitFormatter", "--out", str(out)]
    else:
        argv = [sys.executable, "-m", "pytest", *paths, f"--junitxml={out}",
                "-p", "no:cacheprovider"]
    completed = run_command(argv, root, env)
    assert out.is_file(), completed.stdout + completed.stderr
    return completed.returncode, junit_cases(out)


def serial_testcases(
    framework: str, root: Path, out: Path, paths: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> frozenset[Testcase]:
    """The testcases of `serial_cases`, each once."""
    return frozenset(serial_cases(framework, root, out, paths, env)[1])
