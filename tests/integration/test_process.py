"""run_process and kill_tree against real process trees: real forks, sessions and signals.

The programs under test are small `python -c` scripts. Each process of a tree records
"pid create_time" in a file of its own, so a test can tell afterwards whether exactly
that process still runs (a reused pid is a different process).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import psutil
import pytest

from shardrun.errors import InputError
from shardrun.models import ProcessOutcome
from shardrun.work.process import TIMEOUT_MARGIN_SECONDS, default_timeout, run_process
from shardrun.work.tree import KILL_GRACE_SECONDS, _proc_children_readable, descendants, kill_tree

MIB = 1024 * 1024
# Long enough for a Python tree to start and record its pids on a loaded 2-core machine.
HUNG_TIMEOUT_SECONDS = 3.0
PID_FILE_WAIT_SECONDS = 15.0
FAST_POLL_SECONDS = 0.05

# Prepended to every tree script: record(name) writes "<pid> <create_time>" atomically.
RECORD = """
import os, sys, time, psutil
PIDS = sys.argv[1]
def record(name):
    tmp = os.path.join(PIDS, name + '.tmp')
    with open(tmp, 'w') as f:
        f.write(f'{os.getpid()} {psutil.Process().create_time()}')
    os.replace(tmp, os.path.join(PIDS, name + '.pid'))
def wait_for(name):
    deadline = time.monotonic() + 15
    while not os.path.exists(os.path.join(PIDS, name + '.pid')):
        assert time.monotonic() < deadline, name
        time.sleep(0.01)
"""

# root -> child -> grandchild in a session of its own; all of them hang.
HUNG_TREE = (
    RECORD
    + """
record('root')
if os.fork() == 0:
    record('child')
    if os.fork() == 0:
        os.setsid()
        record('grandchild')
    time.sleep(600)
    os._exit(0)
time.sleep(600)
"""
)
HUNG_TREE_NAMES = ("root", "child", "grandchild")

# Exits 0 at once, leaving a background job in its process group.
LEAVES_BACKGROUND_JOB = (
    RECORD
    + """
record('root')
if os.fork() == 0:
    record('background')
    time.sleep(600)
    os._exit(0)
wait_for('background')
"""
)

# A double-forked daemon in its own session: a descendant for a second, then orphaned.
LEAVES_DAEMON = (
    RECORD
    + """
record('root')
intermediate = os.fork()
if intermediate == 0:
    os.setsid()
    if os.fork() == 0:
        record('daemon')
        time.sleep(600)
        os._exit(0)
    time.sleep(1.0)
    os._exit(0)
os.waitpid(intermediate, 0)
"""
)

# A child forked by a second thread (its parent in /proc is that thread), and a grandchild.
FORKS_FROM_A_THREAD = (
    RECORD
    + """
import threading
def start_child():
    if os.fork() == 0:
        record('thread_child')
        if os.fork() == 0:
            record('grandchild')
        time.sleep(600)
        os._exit(0)
    time.sleep(600)
threading.Thread(target=start_child, daemon=True).start()
if os.fork() == 0:
    record('main_child')
    time.sleep(600)
    os._exit(0)
record('root')
time.sleep(600)
"""
)
FORKS_FROM_A_THREAD_NAMES = ("root", "thread_child", "grandchild", "main_child")

IGNORES_SIGTERM = (
    RECORD
    + """
import signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)
record('root')
time.sleep(600)
"""
)

ALLOCATING_CHILD = """
import time
data = bytearray(100 * 1024 * 1024)
time.sleep(0.5)
"""

BURNING_CHILD = """
import time
start = time.process_time()
while time.process_time() - start < 0.5:
    pass
"""


def python(code: str, *args: object) -> list[str]:
    return [sys.executable, "-c", code, *map(str, args)]


def in_child(code: str) -> str:
    """A script whose child process (reaped by it) runs `code`."""
    return f"import subprocess, sys; subprocess.run([sys.executable, '-c', {code!r}], check=True)"


RunProcess = Callable[..., ProcessOutcome]


@pytest.fixture
def pids(tmp_path: Path) -> Path:
    directory = tmp_path / "pids"
    directory.mkdir()
    return directory


@pytest.fixture
def run(tmp_path: Path) -> RunProcess:
    """run_process with this test's directory, log and environment filled in."""

    def run_in_tmp(argv: list[str], **options: object) -> ProcessOutcome:
        options.setdefault("timeout_seconds", 60.0)
        options.setdefault("poll_interval", FAST_POLL_SECONDS)
        return run_process(
            argv, cwd=tmp_path, env=dict(os.environ), log_path=tmp_path / "out.log", **options
        )

    return run_in_tmp


def recorded(pids: Path, *names: str) -> dict[str, tuple[int, float]]:
    """The processes that recorded themselves; fails naming any that did not."""
    missing = [name for name in names if not (pids / f"{name}.pid").exists()]
    assert not missing, f"processes never started: {missing}"
    result = {}
    for name in names:
        pid, create_time = (pids / f"{name}.pid").read_text().split()
        result[name] = (int(pid), float(create_time))
    return result


def wait_for_pid_files(pids: Path, *names: str) -> dict[str, tuple[int, float]]:
    deadline = time.monotonic() + PID_FILE_WAIT_SECONDS
    while not all((pids / f"{name}.pid").exists() for name in names):
        assert time.monotonic() < deadline, f"pid files never appeared in {pids}"
        time.sleep(0.01)
    return recorded(pids, *names)


def is_alive(pid: int, create_time: float) -> bool:
    """That very process still runs; a zombie only waits for init to reap it."""
    try:
        process = psutil.Process(pid)
        return (
            abs(process.create_time() - create_time) < 0.01
            and process.status() != psutil.STATUS_ZOMBIE
        )
    except psutil.NoSuchProcess:
        return False


def survivors(processes: dict[str, tuple[int, float]]) -> list[str]:
    return [name for name, (pid, created) in processes.items() if is_alive(pid, created)]


@pytest.fixture
def cleanup_recorded(pids: Path) -> Iterator[None]:
    """If a test fails, do not leave its hung processes running on the machine."""
    yield
    for pid_file in pids.glob("*.pid"):
        pid, create_time = pid_file.read_text().split()
        if is_alive(int(pid), float(create_time)):
            os.kill(int(pid), signal.SIGKILL)


pytestmark = pytest.mark.usefixtures("cleanup_recorded")


def test_normal_exit_reports_exit_code_and_the_tail_of_stdout_and_stderr(
    run: RunProcess, tmp_path: Path
) -> None:
    script = (
        "import sys\n"
        "for i in range(5000): print(f'line {i}')\n"
        "sys.stdout.flush()\n"
        "print('boom', file=sys.stderr)\n"
        "sys.exit(3)\n"
    )
    outcome = run(python(script), tail_lines=3)

    assert outcome.exit_code == 3
    assert outcome.signal is None
    assert not outcome.timed_out
    assert outcome.output_tail == "line 4998\nline 4999\nboom"
    assert (tmp_path / "out.log").read_text().startswith("line 0\nline 1\n")
    assert outcome.wall_seconds > 0
    assert outcome.peak_rss_bytes >= 0


def test_output_tail_replaces_undecodable_bytes_and_handles_short_logs(run: RunProcess) -> None:
    script = "import sys; sys.stdout.buffer.write(b'ok\\nbad \\xff byte')"
    outcome = run(python(script), tail_lines=30)

    assert outcome.exit_code == 0
    assert outcome.output_tail == "ok\nbad \ufffd byte"


def test_process_killed_by_a_signal_reports_the_signal_not_an_exit_code(
    run: RunProcess,
) -> None:
    outcome = run(python("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"))

    assert outcome.signal == signal.SIGSEGV == 11
    assert outcome.exit_code is None
    assert not outcome.timed_out


def test_timeout_kills_the_whole_tree_including_a_grandchild_in_its_own_session(
    run: RunProcess, pids: Path
) -> None:
    outcome = run(python(HUNG_TREE, pids), timeout_seconds=HUNG_TIMEOUT_SECONDS)

    tree = recorded(pids, *HUNG_TREE_NAMES)
    assert outcome.timed_out
    assert outcome.signal == signal.SIGTERM
    assert outcome.exit_code is None
    assert HUNG_TIMEOUT_SECONDS <= outcome.wall_seconds < HUNG_TIMEOUT_SECONDS + KILL_GRACE_SECONDS
    assert survivors(tree) == []


def test_background_job_left_by_a_normally_exiting_process_is_killed(
    run: RunProcess, pids: Path
) -> None:
    outcome = run(python(LEAVES_BACKGROUND_JOB, pids))

    assert outcome.exit_code == 0
    assert not outcome.timed_out
    assert survivors(recorded(pids, "root", "background")) == []


def test_daemon_that_left_the_tree_after_being_seen_in_it_is_killed(
    run: RunProcess, pids: Path
) -> None:
    outcome = run(python(LEAVES_DAEMON, pids))

    assert outcome.exit_code == 0
    assert survivors(recorded(pids, "root", "daemon")) == []


def test_peak_rss_includes_a_child_holding_100_mib(run: RunProcess) -> None:
    outcome = run(python(in_child(ALLOCATING_CHILD)))

    assert outcome.exit_code == 0
    assert 100 * MIB <= outcome.peak_rss_bytes < 1024 * MIB


def test_cpu_seconds_include_a_reaped_child_and_count_it_once(run: RunProcess) -> None:
    outcome = run(python(in_child(BURNING_CHILD)))

    assert outcome.exit_code == 0
    # 0.5 s of burning (clock-tick rounding aside) plus two interpreter start-ups; counting
    # the child both from samples and from the parent's cumulative time would pass 1 s.
    assert 0.45 <= outcome.cpu_seconds < 1.0


def test_missing_executable_raises_input_error_naming_it(run: RunProcess) -> None:
    with pytest.raises(InputError, match="shardrun-no-such-program not found on PATH"):
        run(["shardrun-no-such-program", "--version"])


def test_missing_framework_program_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"rspec not found on PATH: install ruby-rspec"):
        run_process(
            ["rspec"],
            cwd=tmp_path,
            env={"PATH": str(tmp_path)},
            log_path=tmp_path / "out.log",
            timeout_seconds=None,
        )


def test_missing_working_directory_raises_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        run_process(
            python("pass"),
            cwd=tmp_path / "absent",
            env=dict(os.environ),
            log_path=tmp_path / "out.log",
            timeout_seconds=None,
        )


def test_keyboard_interrupt_kills_the_tree_and_propagates(run: RunProcess, pids: Path) -> None:
    def interrupt_once_tree_started(signum: int, frame: FrameType | None) -> None:
        if all((pids / f"{name}.pid").exists() for name in HUNG_TREE_NAMES):
            signal.setitimer(signal.ITIMER_REAL, 0)
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt_once_tree_started)
    signal.setitimer(signal.ITIMER_REAL, FAST_POLL_SECONDS, FAST_POLL_SECONDS)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(python(HUNG_TREE, pids), timeout_seconds=None)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    assert survivors(recorded(pids, *HUNG_TREE_NAMES)) == []


def test_kill_tree_kills_descendants_and_leaves_the_exit_status_to_the_caller(
    pids: Path,
) -> None:
    with subprocess.Popen(
        python(HUNG_TREE, pids), stdin=subprocess.DEVNULL, start_new_session=True
    ) as proc:
        tree = wait_for_pid_files(pids, *HUNG_TREE_NAMES)
        kill_tree(proc.pid)
        assert proc.wait(timeout=10) == -signal.SIGTERM
    assert survivors(tree) == []


def test_descendants_finds_children_of_every_thread_as_psutil_does(pids: Path) -> None:
    # Otherwise descendants() is psutil itself and the comparison below proves nothing.
    assert _proc_children_readable(), "no /proc/PID/task/TID/children: CONFIG_PROC_CHILDREN"
    with subprocess.Popen(
        python(FORKS_FROM_A_THREAD, pids), stdin=subprocess.DEVNULL, start_new_session=True
    ) as proc:
        try:
            tree = wait_for_pid_files(pids, *FORKS_FROM_A_THREAD_NAMES)
            root = psutil.Process(proc.pid)
            found = {process.pid for process in descendants(root)}
            assert found == {pid for name, (pid, _) in tree.items() if name != "root"}
            assert found == {process.pid for process in root.children(recursive=True)}
        finally:
            kill_tree(proc.pid)
    assert descendants(root) == []


def test_kill_tree_escalates_to_sigkill_after_the_grace_period(pids: Path) -> None:
    with subprocess.Popen(python(IGNORES_SIGTERM, pids), stdin=subprocess.DEVNULL) as proc:
        wait_for_pid_files(pids, "root")
        started = time.monotonic()
        kill_tree(proc.pid, grace_seconds=0.3)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    assert time.monotonic() - started >= 0.3


def test_default_timeout_is_three_times_the_prediction_plus_a_margin() -> None:
    assert default_timeout(0.0) == TIMEOUT_MARGIN_SECONDS
    assert default_timeout(100.0) == 300.0 + TIMEOUT_MARGIN_SECONDS
    assert default_timeout(-5.0) == TIMEOUT_MARGIN_SECONDS


def test_on_poll_is_called_while_the_process_runs(tmp_path: Path) -> None:
    calls: list[float] = []
    run_process(
        [sys.executable, "-c", "import time; time.sleep(0.5)"],
        cwd=tmp_path, env=dict(os.environ), log_path=tmp_path / "log", timeout_seconds=10,
        poll_interval=0.05, on_poll=lambda: calls.append(time.monotonic()),
    )
    assert len(calls) >= 3
