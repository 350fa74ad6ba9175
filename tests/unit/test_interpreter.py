"""Which Python runs a pytest project's tests (shardrun/runners/interpreter.py), and the
version check of shardrun/run/project_python.py: pure, on fake executables in tmp_path.

The real interpreters (a second virtualenv without shardrun) are in
tests/integration/test_project_python.py.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from shardrun.errors import InputError
from shardrun.run.project_python import version_problem
from shardrun.runners import get_runner
from shardrun.runners.interpreter import find_python
from shardrun.runners.pytest import SERVER_SCRIPT

OWN = "/opt/shardrun/bin/python"


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    return root


@pytest.fixture
def path_dir(tmp_path: Path) -> Path:
    executable(tmp_path / "bin" / "python3")
    executable(tmp_path / "bin" / "python")
    return tmp_path / "bin"


def test_the_order_is_option_virtualenv_project_venv_path_then_own(
    tmp_path: Path, project: Path, path_dir: Path
) -> None:
    venv = tmp_path / "active"
    active = executable(venv / "bin" / "python")
    in_project = executable(project / ".venv" / "bin" / "python")
    explicit = executable(tmp_path / "pythons" / "python3.12")
    environ = {"VIRTUAL_ENV": str(venv), "PATH": str(path_dir)}

    chosen = find_python(str(explicit), project, environ, OWN)
    assert (chosen.path, chosen.source) == (str(explicit), "--python")
    chosen = find_python(None, project, environ, OWN)
    assert (chosen.path, chosen.source) == (str(active), "the active virtualenv")
    chosen = find_python(None, project, {"PATH": str(path_dir)}, OWN)
    assert (chosen.path, chosen.source) == (str(in_project), "the project's .venv")
    in_project.unlink()
    chosen = find_python(None, project, {"PATH": str(path_dir)}, OWN)
    assert (chosen.path, chosen.source) == (str(path_dir / "python3"), "python3 on PATH")
    (path_dir / "python3").unlink()
    assert find_python(None, project, {"PATH": str(path_dir)}, OWN).source == "python on PATH"
    chosen = find_python(None, project, {"PATH": str(tmp_path / "empty")}, OWN)
    assert (chosen.path, chosen.source) == (OWN, "shardrun's own")


def test_a_virtualenv_without_its_python_is_passed_over(project: Path, path_dir: Path) -> None:
    environ = {"VIRTUAL_ENV": str(project / "gone"), "PATH": str(path_dir)}
    assert find_python(None, project, environ, OWN).source == "python3 on PATH"


def test_python_option_takes_a_path_or_a_name_on_path(project: Path, path_dir: Path) -> None:
    assert find_python("python3", project, {"PATH": str(path_dir)}, OWN).path == str(
        path_dir / "python3")
    with pytest.raises(InputError, match=r"^--python nosuch/python: no such executable"):
        find_python("nosuch/python", project, {"PATH": str(path_dir)}, OWN)
    with pytest.raises(InputError, match=r"^--python python9: no such executable"):
        find_python("python9", project, {"PATH": str(path_dir)}, OWN)


def test_get_runner_runs_the_server_under_the_chosen_python(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_project = executable(project / ".venv" / "bin" / "python")
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    assert get_runner("pytest", project).server_argv() == (str(in_project), str(SERVER_SCRIPT))
    assert get_runner("pytest", project, python=sys.executable).server_argv() == (
        sys.executable, str(SERVER_SCRIPT))


@pytest.mark.parametrize(("answer", "problem"), [
    ("3 11 9.2.0\n", None),
    ("3 9 7.0.1\n", None),
    ("3 12 8.3.0rc1\n", None),
    ("3 8 8.0.0\n", "Python 3.8 is older than 3.9"),
    ("3 11 6.2.5\n", "pytest 6.2.5 is older than 7.0"),
    ("garbage\n", "unexpected answer to the version check: 'garbage'"),
])
def test_version_check(answer: str, problem: str | None) -> None:
    assert version_problem(answer) == problem


@pytest.mark.parametrize("script", ["pytest_server.py", "pytest_events.py", "pytest_session.py"])
def test_the_pytest_server_imports_only_the_standard_library_and_pytest(script: str) -> None:
    """It runs under the project's interpreter, where shardrun need not be installed; so
    do the modules it loads by their paths."""
    tree = ast.parse(SERVER_SCRIPT.with_name(script).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    outside = imported - set(sys.stdlib_module_names) - {"pytest", "__future__"}
    assert not outside, f"{script} imports {sorted(outside)}"
