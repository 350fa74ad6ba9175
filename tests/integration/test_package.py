"""shardrun as a package: `python -m build` makes an sdist and a wheel `twine check`
accepts, and the wheel holds what a run needs besides Python modules (the Ruby runner
servers, the dashboard page) and both entry points (the command, the pytest plugin).

Built from a copy of the files the build reads, so nothing (egg-info, build/) is left
in the checkout. Slow: the isolated build environment is installed from the package
index pip is configured with.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from support.requirements import missing

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_INPUTS = ("pyproject.toml", "README.md", "shardrun")
RUBY_SERVERS = {f"shardrun/runners/{name}" for name in (
    "rspec_server.rb", "minitest_server.rb", "cucumber_server.rb", "ruby_server.rb")}
DATA_FILES = {*RUBY_SERVERS, "shardrun/report/dashboard_page.html",
              "shardrun/runners/pytest_server.py", "shardrun/pytest_plugin/__init__.py"}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in BUILD_INPUTS:
        origin = REPO_ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, source / name)
    out = source / "dist"
    built = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(source)],
                           capture_output=True, text=True, timeout=600, check=False)
    if built.returncode != 0 and "Could not find a version" in built.stdout + built.stderr:
        missing(f"the build backend cannot be installed: {built.stdout[-300:]}")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return out


def only(directory: Path, pattern: str) -> Path:
    found = list(directory.glob(pattern))
    assert len(found) == 1, f"{pattern} in {directory}: {found}"
    return found[0]


@pytest.mark.slow
def test_twine_accepts_the_sdist_and_the_wheel(dist: Path) -> None:
    files = [only(dist, "shardrun-*.tar.gz"), only(dist, "shardrun-*-py3-none-any.whl")]
    checked = subprocess.run([sys.executable, "-m", "twine", "check", "--strict",
                              *map(str, files)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("PASSED") == 2, checked.stdout


@pytest.mark.slow
def test_the_wheel_holds_the_runner_servers_the_dashboard_and_the_entry_points(
    dist: Path,
) -> None:
    with zipfile.ZipFile(only(dist, "*.whl")) as wheel:
        names = set(wheel.namelist())
        entry_points_name = next(name for name in names if name.endswith(
            ".dist-info/entry_points.txt"))
        entry_points = configparser.ConfigParser()
        entry_points.read_string(wheel.read(entry_points_name).decode())
    assert names >= DATA_FILES, sorted(DATA_FILES - names)
    assert entry_points["pytest11"]["shardrun"] == "shardrun.pytest_plugin"
    assert entry_points["console_scripts"]["shardrun"] == "shardrun.cli.main:main"


@pytest.mark.slow
def test_the_sdist_holds_what_the_wheel_is_built_from(dist: Path) -> None:
    with tarfile.open(only(dist, "*.tar.gz")) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {*DATA_FILES, "pyproject.toml", "README.md"} <= names
