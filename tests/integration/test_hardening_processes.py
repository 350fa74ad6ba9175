"""Nothing clobbered, nothing left behind (issue 17; docs/hardening.md): real `shardrun run`
processes, real signals, a real password-protected Redis, real FIFOs and symlinks.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from support.files import write_pytest_suite
from support.hostile import shardrun
from support.runs import RUN_TIMEOUT_SECONDS, clean_env, free_port, shardrun_argv
from support.waiting import wait_for

from shardrun.run.forked import WORKER_PROCESS_NAME

# The test writes its pid (and what it sees of the Redis URL) into EVIDENCE, then sleeps.
SLEEPING_TEST = """
import os, pathlib, time

def test_sleeps():
    seen = os.environ.get("SHARDRUN_REDIS_URL", "")
    pathlib.Path(os.environ["EVIDENCE"], str(os.getpid())).write_text(seen)
    time.sleep(float(os.environ["SLEEP"]))
"""
# A parent-death signal is delivered at once; a few seconds cover a loaded 2-core box.
DIE_WITH_PARENT_SECONDS = 5.0


@pytest.fixture
def sleeping_suite(tmp_path: Path) -> Path:
    return write_pytest_suite(tmp_path / "suite", {
        "tests/test_one.py": SLEEPING_TEST, "tests/test_two.py": SLEEPING_TEST})


@pytest.fixture
def evidence(tmp_path: Path) -> Path:
    path = tmp_path / "evidence"
    path.mkdir()
    return path


def start_run(
    suite: Path, evidence: Path, sleep: float, *args: str, **env: str
) -> subprocess.Popen[str]:
    """`shardrun run tests ARGS` in a session of its own, as a terminal would start it."""
    return subprocess.Popen(
        shardrun_argv("tests", *args), cwd=suite,
        env=clean_env(EVIDENCE=str(evidence), SLEEP=str(sleep), **env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


@pytest.fixture
def reaper() -> Iterator[list[psutil.Process]]:
    """Processes a test started; whatever is still alive at the end is killed by pid."""
    started: list[psutil.Process] = []
    yield started
    for process in started:
        try:
            process.kill()
        except psutil.Error:
            continue


def tree(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


# --- signals


def test_ctrl_c_exits_130_after_cleaning_up(
    sleeping_suite: Path, evidence: Path, reaper: list[psutil.Process]
) -> None:
    run = start_run(sleeping_suite, evidence, 120, "-w", "1")
    reaper.append(psutil.Process(run.pid))
    wait_for(lambda: any(evidence.iterdir()), "a test to start")
    children = tree(run.pid)
    reaper.extend(children)
    os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C on a terminal does
    _, stderr = run.communicate(timeout=RUN_TIMEOUT_SECONDS)
    assert run.returncode == 130, stderr
    assert "shardrun: interrupted" in stderr and "Aborted!" not in stderr
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive  # workers, runners and the private redis-server were stopped


def test_sigkilled_coordinator_takes_its_children_along(
    sleeping_suite: Path, evidence: Path, reaper: list[psutil.Process]
) -> None:
    run = start_run(sleeping_suite, evidence, 120, "-w", "2")
    reaper.append(psutil.Process(run.pid))
    wait_for(lambda: len(list(evidence.iterdir())) == 2, "both workers' runners in a test")
    children = tree(run.pid)
    reaper.extend(children)
    names = " ".join(" ".join([child.name(), *child.cmdline()]) for child in children)
    assert "redis-server" in names and WORKER_PROCESS_NAME in names
    killed_at = time.monotonic()
    run.kill()
    run.communicate()
    _, alive = psutil.wait_procs(children, timeout=DIE_WITH_PARENT_SECONDS)
    assert not alive, [" ".join(process.cmdline()) for process in alive]
    assert time.monotonic() - killed_at < DIE_WITH_PARENT_SECONDS


# --- the Redis password


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path), "--requirepass", "s3cret-pw"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: subprocess.run(["redis-cli", "-p", str(port), "-a", "s3cret-pw",
                                         "--no-auth-warning", "ping"], capture_output=True,
                                        text=True, check=False).stdout.strip() == "PONG",
                 "the password redis-server", timeout=10)
        yield f"redis://:s3cret-pw@127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_local_workers_do_not_show_the_redis_password(
    sleeping_suite: Path, evidence: Path, password_redis: str, tmp_path: Path,
) -> None:
    """Given through SHARDRUN_REDIS_URL, the password is on no command line of the run:
    the coordinator's, its forked workers' (which share it), or their runners'."""
    run = start_run(sleeping_suite, evidence, 2, "-w", "2", "--junit-out",
                    str(tmp_path / "junit.xml"), SHARDRUN_REDIS_URL=password_redis)
    wait_for(lambda: len(list(evidence.iterdir())) == 2, "two tests to start")
    processes = [psutil.Process(run.pid), *tree(run.pid)]
    command_lines = [" ".join(process.cmdline()) for process in processes]
    names = [process.name() for process in processes]
    stdout, stderr = run.communicate(timeout=RUN_TIMEOUT_SECONDS)
    assert run.returncode == 0, stdout + stderr
    assert names.count(WORKER_PROCESS_NAME) == 2, names
    assert not [line for line in command_lines if "s3cret-pw" in line]
    # ...and the tests the workers run do not inherit it either
    assert [path.read_text() for path in evidence.iterdir()] == ["", ""]


# --- three runs in one checkout


def test_three_concurrent_runs_all_reach_the_history(
    sleeping_suite: Path, evidence: Path, tmp_path: Path
) -> None:
    runs = [start_run(sleeping_suite, evidence, 1, "-w", "1",
                      "--junit-out", str(tmp_path / f"junit-{index}.xml")) for index in range(3)]
    for run in runs:
        stdout, stderr = run.communicate(timeout=RUN_TIMEOUT_SECONDS)
        assert run.returncode == 0, stdout + stderr
    saved = json.loads((sleeping_suite / ".shardrun" / "timings.json").read_text())
    assert {name: len(entry["samples"]) for name, entry in saved["files"].items()} == {
        "tests/test_one.py": 3, "tests/test_two.py": 3}
    assert len(saved["runs"]) == 3


# --- --junit-out and --out at paths that are not plain files


@pytest.fixture
def quick_suite(tmp_path: Path) -> Path:
    return write_pytest_suite(tmp_path / "quick",
                              {"tests/test_ok.py": "def test_ok():\n    pass\n"})


def test_junit_out_through_a_symlink_writes_its_target(quick_suite: Path, tmp_path: Path) -> None:
    target = tmp_path / "reports" / "junit.xml"
    target.parent.mkdir()
    link = tmp_path / "junit-link.xml"
    link.symlink_to(target)
    completed = shardrun("run", "tests", "-w", "1", "--junit-out", str(link), cwd=quick_suite)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert link.is_symlink() and "<testsuites" in target.read_text()


def test_junit_out_symlinked_to_dev_null_leaves_both_alone(
    quick_suite: Path, tmp_path: Path
) -> None:
    link = tmp_path / "discard.xml"
    link.symlink_to("/dev/null")
    completed = shardrun("run", "tests", "-w", "1", "--junit-out", str(link), cwd=quick_suite)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_junit_out_into_a_fifo_feeds_its_reader(quick_suite: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "junit.fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE, text=True)
    try:
        completed = shardrun("run", "tests", "-w", "1", "--junit-out", str(fifo), cwd=quick_suite)
        assert completed.returncode == 0, completed.stdout + completed.stderr
        received, _ = reader.communicate(timeout=30)
    finally:
        reader.kill()
        reader.wait()
    assert "<testsuites" in received and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_dashboard_out_dev_stdout_prints_the_export(quick_suite: Path) -> None:
    """Never run against the old code as root: it renamed a file over /dev/stdout."""
    completed = shardrun("dashboard", "export", "--out", "/dev/stdout", cwd=quick_suite)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout.split("dashboard JSON:")[0])["version"] == 2
    assert os.path.islink("/dev/stdout")
