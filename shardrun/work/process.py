"""Run one test process and account for its whole process tree.

This is the only module that starts test processes (runners only build their argv): it
starts one in a session of its own, samples the tree with psutil (peak RSS,
CPU time), enforces the shard timeout by killing the *whole* tree, and leaves no orphans
behind when the process exits normally either.

Why the tree and not just the process: rspec and pytest start helpers (xdist workers,
browsers, servers, `git`), some of which call setsid() or double-fork. Killing only the
top process would leave them running on the worker and holding its CPU, memory and ports.

The root process is deliberately left unreaped (a zombie) after it exits until its CPU
totals are read: a zombie's /proc entry still holds its own CPU time plus that of every
descendant it waited for, which sampling alone would miss for short-lived children.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import psutil

from shardrun.errors import InputError
from shardrun.models import ProcessOutcome
from shardrun.work.lifeline import die_with_parent
from shardrun.work.tree import (
    _KILL_CONFIRM_SECONDS,
    KILL_GRACE_SECONDS,
    descendants,
    terminate,
    wait_exited,
)

# A shard's timeout is 3x its prediction plus a minute: predictions come from earlier runs
# on possibly faster or less loaded machines, so a slow but healthy shard must not be
# killed, while a hung one (deadlock, waiting on stdin or a network peer) still is. The
# fixed minute covers process start-up (bundler, Rails boot, pytest collection), which
# dominates short shards and which the per-test timings do not include.
TIMEOUT_FACTOR = 3.0
TIMEOUT_MARGIN_SECONDS = 60.0

# The tail is read backwards in blocks and never more than this much: a log whose last
# line is a runaway progress bar must not be read whole into memory.
_TAIL_BLOCK_BYTES = 8192
_TAIL_MAX_BYTES = 1024 * 1024

# What to install when the program of a known framework is missing (Debian package
# names: the worker images are Debian based).
_INSTALL_HINTS = {
    "rspec": "install ruby-rspec (apt-get install ruby-rspec, or gem install rspec)",
    "bundle": "install bundler (apt-get install ruby-bundler, or gem install bundler)",
    "ruby": "install ruby (apt-get install ruby)",
    "pytest": "install pytest (pip install pytest, or apt-get install python3-pytest)",
}
_GENERIC_HINT = "install it"
_OTHER_RUNNER_HINT = "or use --framework/--command to run something else"


def default_timeout(predicted_seconds: float) -> float:
    """The timeout for a shard predicted to take `predicted_seconds` (see TIMEOUT_FACTOR)."""
    return TIMEOUT_FACTOR * max(predicted_seconds, 0.0) + TIMEOUT_MARGIN_SECONDS


def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    timeout_seconds: float | None,
    tail_lines: int = 30,
    poll_interval: float = 0.1,
    on_poll: Callable[[], None] | None = None,
) -> ProcessOutcome:
    """Run `argv` to completion (or timeout) and report how it ended and what it cost.

    `env` is the complete environment of the process (not merged with ours), so it must
    carry PATH. stdout and stderr both go to `log_path`. Whatever the process leaves
    running when it exits (background jobs, daemons it started) is killed too: a test
    suite must not leave orphans on a worker that runs the next shard. On
    KeyboardInterrupt (or any other exception) the tree is killed before re-raising.

    `on_poll` is called on every poll while the process runs: the worker renews its lease
    there, so a worker whose supervising loop hangs stops renewing and loses the batch.
    """
    _check_arguments(argv, cwd, poll_interval)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log_path.open("wb") as log:  # the child holds its own copy of the descriptor
        proc = spawn(argv, cwd, env, log)
    monitor = TreeMonitor(psutil.Process(proc.pid))
    try:
        timed_out = _supervise(monitor, timeout_seconds, poll_interval, on_poll)
        wall_seconds = time.monotonic() - started
        monitor.sample()  # the root is a zombie now: its CPU totals are final
        monitor.kill_all(KILL_GRACE_SECONDS)  # stragglers; the group id is still reserved
    except BaseException:
        monitor.kill_all(KILL_GRACE_SECONDS)
        raise
    finally:
        proc.wait()
    return process_outcome(
        proc.returncode, timed_out, wall_seconds, monitor, read_tail(log_path, tail_lines)
    )


class TreeMonitor:
    """Samples one process tree: peak total RSS, and CPU time that does not count twice.

    CPU time is the root's cumulative figure (its own plus every descendant reaped inside
    the tree, exact once the root has exited) plus the last sampled CPU time of processes
    that escaped the tree (re-parented to init, or still running when the root ended),
    whose time never reaches the root. Processes that start and escape between two
    samples are missed, so the figure is a slight underestimate at worst.

    Every process seen is remembered until it dies, so the final kill reaches a
    double-forked daemon even after it stopped being a descendant. Summed RSS counts
    pages shared between processes (fork copy-on-write) once per process, so the peak
    is an upper bound; exact USS would need far costlier reads on every sample.
    """

    def __init__(self, root: psutil.Process) -> None:
        self.root = root
        self.peak_rss_bytes = 0
        self._root_cpu_seconds = 0.0
        self._last_cpu: dict[psutil.Process, float] = {}  # live non-root processes
        self._escaped_cpu: dict[psutil.Process, float] = {}

    @property
    def cpu_seconds(self) -> float:
        return self._root_cpu_seconds + sum(self._escaped_cpu.values())

    def sample(self) -> None:
        """Read every process once; the sum of their RSS may raise the peak."""
        attached = descendants(self.root)
        attached_set = set(attached)
        detached = [process for process in self._last_cpu if process not in attached_set]
        rss = self._read_root()
        rss += sum(self._read(process, escaped=False) for process in attached)
        rss += sum(self._read(process, escaped=True) for process in detached)
        self.peak_rss_bytes = max(self.peak_rss_bytes, rss)

    def sample_root(self) -> None:
        """Read the root alone: enough between a warm runner's batches, when the last
        batch's end killed every other process of the tree (`kill_others`), and one
        /proc read instead of a scan of every process on the machine."""
        self.peak_rss_bytes = max(self.peak_rss_bytes, self._read_root())

    def kill_all(self, grace_seconds: float) -> None:
        """Kill the root, its current descendants, all processes seen, and its group.

        Whatever is still running is about to be killed, so its CPU can no longer reach
        the root's cumulative figure through a wait(): count it as escaped.
        """
        self._escaped_cpu.update(self._last_cpu)
        targets = [self.root, *descendants(self.root), *self._last_cpu]
        terminate(targets, self.root.pid, grace_seconds)  # a session leader: pgid == pid

    def kill_others(self, grace_seconds: float) -> None:
        """Kill every process of the tree but the root: what a warm runner's batch left.

        The group is not signalled, since the root leads it and stays.
        """
        self._escaped_cpu.update(self._last_cpu)
        targets = [*descendants(self.root), *self._last_cpu]
        if targets:
            terminate(targets, None, grace_seconds)
        self._last_cpu.clear()

    def _read_root(self) -> int:
        usage = _read_usage(self.root)
        if usage is None:
            return 0
        times, rss = usage
        self._root_cpu_seconds = (
            times.user + times.system + times.children_user + times.children_system
        )
        return rss

    def _read(self, process: psutil.Process, *, escaped: bool) -> int:
        usage = _read_usage(process)
        if usage is None:
            self._last_cpu.pop(process, None)
            return 0
        times, rss = usage
        self._last_cpu[process] = times.user + times.system
        if escaped or process in self._escaped_cpu:
            self._escaped_cpu[process] = times.user + times.system
        return rss


def _read_usage(process: psutil.Process) -> tuple[Any, int] | None:
    """CPU times and RSS, or None once the process is gone or its pid was reused."""
    try:
        if not process.is_running():
            return None
        with process.oneshot():
            return process.cpu_times(), int(process.memory_info().rss)
    except psutil.Error:
        return None


def _check_arguments(argv: Sequence[str], cwd: Path, poll_interval: float) -> None:
    if not argv:
        raise InputError("the test command is empty: give a program to run")
    if not cwd.is_dir():
        raise InputError(f"working directory {cwd} does not exist: check --root")
    if poll_interval <= 0:
        raise ValueError(f"poll_interval must be positive, got {poll_interval}")


def spawn(
    argv: Sequence[str], cwd: Path, env: Mapping[str, str], log: IO[bytes],
    pass_fds: Sequence[int] = (),
) -> subprocess.Popen[bytes]:
    """Start the process in a new session so its process group can be signalled at once.

    stdin is /dev/null: a test that reads it must not hang the worker. `pass_fds` are the
    only other descriptors the process inherits (a warm runner's request and reply pipes).
    It gets SIGTERM when the thread that started it exits (lifeline.py): call from the
    worker's main thread.
    """
    try:
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
            preexec_fn=die_with_parent(signal.SIGTERM),  # a SIGKILLed worker's runner ends too
        )
    except FileNotFoundError as error:
        raise _missing_program(argv[0]) from error
    except PermissionError as error:
        raise InputError(
            f"{argv[0]} is not executable: chmod +x it, or run it through its interpreter"
        ) from error


def _missing_program(program: str) -> InputError:
    """Say what to install: the user usually lacks the framework, not a typo."""
    hint = _INSTALL_HINTS.get(Path(program).name, _GENERIC_HINT)
    where = "does not exist" if os.sep in program else "not found on PATH"
    return InputError(f"{program} {where}: {hint} {_OTHER_RUNNER_HINT}")


def _supervise(
    monitor: TreeMonitor,
    timeout_seconds: float | None,
    poll_interval: float,
    on_poll: Callable[[], None] | None,
) -> bool:
    """Sample the tree until the root exits; at the deadline kill it all. True if killed."""
    pid = monitor.root.pid
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    while not wait_exited(pid, _next_wait(deadline, poll_interval)):
        monitor.sample()
        if on_poll is not None:
            on_poll()
        if deadline is not None and time.monotonic() >= deadline:
            monitor.kill_all(KILL_GRACE_SECONDS)
            wait_exited(pid, _KILL_CONFIRM_SECONDS)
            return True
    return False


def _next_wait(deadline: float | None, poll_interval: float) -> float:
    if deadline is None:
        return poll_interval
    return max(0.0, min(poll_interval, deadline - time.monotonic()))


@functools.cache
def process_outcome(
    returncode: int, timed_out: bool, wall_seconds: float, monitor: TreeMonitor, tail: str
) -> ProcessOutcome:
    """Popen's negative return code means "killed by that signal": report it as a signal."""
    killed_by = -returncode if returncode < 0 else None
    return ProcessOutcome(
        exit_code=None if killed_by is not None else returncode,
        signal=killed_by,
        timed_out=timed_out,
        wall_seconds=wall_seconds,
        cpu_seconds=monitor.cpu_seconds,
        peak_rss_bytes=monitor.peak_rss_bytes,
        output_tail=tail,
    )


def read_tail(path: Path, line_count: int) -> str:
    """The last `line_count` lines of the log, read backwards from the end in blocks."""
    if line_count <= 0:
        return ""
    with path.open("rb") as log:
        position = log.seek(0, os.SEEK_END)
        blocks: list[bytes] = []
        newlines = size = 0
        while position > 0 and newlines <= line_count and size < _TAIL_MAX_BYTES:
            step = min(_TAIL_BLOCK_BYTES, position)
            position -= step
            log.seek(position)
            block = log.read(step)
            blocks.append(block)
            newlines += block.count(b"\n")
            size += len(block)
    lines = b"".join(reversed(blocks)).decode("utf-8", errors="replace").split("\n")
    if lines[-1] == "":
        lines.pop()  # the log's final newline ends the last line; it does not start one
    return "\n".join(lines[-line_count:])


