"""pytest batches run under the project's interpreter, in a real second virtualenv that
has pytest but not shardrun (shardrun/runners/interpreter.py, run/project_python.py).

The virtualenvs are made here with `python -m venv` and pytest installed from the package
index pip is configured with, at its newest and at the oldest version shardrun supports
(MIN_PYTEST): the runner server must work in both without shardrun importable.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from support.requirements import missing
from support.runs import clean_env, run_command, run_options

# Each test checks where it runs: not in shardrun's virtualenv, and without shardrun.
WHERE_TEST = """\
import importlib.util
import sys


def test_runs_in_the_project_environment():
    assert sys.prefix == {prefix!r}, sys.prefix
    assert importlib.util.find_spec("shardrun") is None


def test_another():
    pass
"""
# The oldest: the first bugfix release of MIN_PYTEST (shardrun/run/project_python.py).
PYTEST_VERSIONS = {"newest": "pytest", "oldest": "pytest==7.0.1"}


def make_venv(path: Path, requirement: str | None) -> Path:
    """A virtualenv at `path` (with `requirement` pip-installed); its python."""
    options = [] if requirement else ["--without-pip"]
    subprocess.run([sys.executable, "-m", "venv", *options, str(path)], check=True,
                   capture_output=True)
    python = path / "bin" / "python"
    if requirement:
        installed = subprocess.run([str(python), "-m", "pip", "install", "-q", requirement],
                                   capture_output=True, text=True, check=False)
        if installed.returncode != 0:
            missing(f"pip cannot install {requirement}: {installed.stderr.strip()[-300:]}")
    return python


@pytest.fixture(scope="module", params=sorted(PYTEST_VERSIONS))
def project_venv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("venvs") / f"pytest-{request.param}"
    make_venv(path, PYTEST_VERSIONS[request.param])
    return path


def make_project(root: Path, prefix: Path) -> Path:
    (root / "tests").mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "tests" / "test_where.py").write_text(WHERE_TEST.format(prefix=str(prefix)))
    (root / "tests" / "test_more.py").write_text("def test_more():\n    pass\n")
    return root


def shardrun_run(
    root: Path, tmp_path: Path, redis_url: str, **env: str
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "shardrun", "run", "tests", "-w", "2", "--redis-url",
            redis_url, *run_options(tmp_path)]
    environment = clean_env()
    environment.pop("VIRTUAL_ENV", None)  # only what the test gives
    environment.update(env)
    return run_command(argv, root, environment)


def test_the_active_virtualenv_runs_the_tests(
    project_venv: Path, tmp_path: Path, redis_url: str
) -> None:
    root = make_project(tmp_path / "project", project_venv)
    completed = shardrun_run(root, tmp_path, redis_url, VIRTUAL_ENV=str(project_venv))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert (f"under {project_venv}/bin/python (the active virtualenv, pytest "
            f"{installed_pytest(project_venv)})" in completed.stdout), completed.stdout
    assert "3 passed, 0 failed" in completed.stdout


def installed_pytest(venv: Path) -> str:
    """The version pip installed there, as importlib.metadata reads it (the probe reads the
    dist-info's name)."""
    return subprocess.run([str(venv / "bin" / "python"), "-c",
                           "from importlib.metadata import version; print(version('pytest'))"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_the_projects_dot_venv_runs_the_tests(
    project_venv: Path, tmp_path: Path, redis_url: str
) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / ".venv").symlink_to(project_venv, target_is_directory=True)
    make_project(root, root / ".venv")
    completed = shardrun_run(root, tmp_path, redis_url)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert f"under {root}/.venv/bin/python (the project's .venv, pytest" in completed.stdout
    assert "3 passed, 0 failed" in completed.stdout  # .venv's own test files are not planned


def test_an_environment_without_pytest_is_one_line_and_exit_2(
    tmp_path: Path, redis_url: str
) -> None:
    bare = tmp_path / "bare"
    python = make_venv(bare, None)
    root = make_project(tmp_path / "project", bare)
    completed = shardrun_run(root, tmp_path, redis_url, VIRTUAL_ENV=str(bare))
    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert completed.stderr == (f"shardrun: error: {python} (the active virtualenv) cannot "
                                "import pytest; install pytest (and the project's "
                                "dependencies) there, or pass --python PATH\n")


def test_an_environment_without_pytest_leaves_no_private_redis_behind(tmp_path: Path) -> None:
    """The private redis-server boots while the interpreter is checked (run/coordinator.py):
    a failed check must still stop it and remove its directory."""
    bare = tmp_path / "bare"
    python = make_venv(bare, None)
    root = make_project(tmp_path / "project", bare)
    temp = tmp_path / "temp"
    temp.mkdir()
    argv = [sys.executable, "-m", "shardrun", "run", "tests", "-w", "2", *run_options(tmp_path)]
    environment = clean_env(TMPDIR=str(temp))
    environment.pop("VIRTUAL_ENV", None)
    completed = run_command(argv, root, {**environment, "VIRTUAL_ENV": str(bare)})
    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert completed.stderr.startswith(f"shardrun: error: {python} (the active virtualenv) "
                                       "cannot import pytest")
    assert "private Redis" not in completed.stdout  # the check came before the server was used
    assert list(temp.iterdir()) == []  # the server's socket dir, gone with the server
    assert not [process for process in psutil.process_iter(["cmdline"])
                if str(temp) in " ".join(process.info["cmdline"] or [])]


def test_a_workers_python_is_one_of_its_own_settings(tmp_path: Path) -> None:
    """`shardrun worker --python` goes with --framework, as --command does: a worker
    without settings of its own takes the run's, signed."""
    completed = run_command([sys.executable, "-m", "shardrun", "worker", "--redis-url",
                             "redis://127.0.0.1:1/0", "--python", sys.executable], tmp_path)
    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert completed.stderr == ("shardrun: error: --python and runner arguments need "
                                "--framework: they are this worker's own settings; add "
                                "--framework\n")
