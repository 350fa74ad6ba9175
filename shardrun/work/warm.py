"""Runner processes: the rspec or pytest process that runs a worker's batches and reports
each test as it happens.

Every batch used to be a fresh `rspec` or `python -m pytest` process, so every batch paid
the interpreter start, the framework's imports and the suite's own boot (for a Rails app,
seconds). Queue mode wants small batches at the end of a run, exactly where a boot per
batch costs the most. A runner pays the boot once per worker, as knapsack_pro's Queue Mode,
Spring and pytest-xdist do; a later batch costs milliseconds (docs/queue.md). How a batch
runs in it (`Runners`):

- FORK (the default): the runner forks a child per batch from its booted state, so no
  batch sees what an earlier one left behind, and a test that kills its process takes
  only the child;
- REUSE: the runner runs batch after batch itself (cheapest; state leaks between batches);
- FRESH: a new runner per batch, which boots every time (`--process-per-batch`).

The runner side is a small server per framework (runners/pytest_server.py,
runners/rspec_server.rb): one JSON request per line on a pipe; on another pipe one JSON
event per line as each test starts and finishes, then an `exit` event. This module sends
the batch, collects its events, and supervises the process as process.py supervises a
one-shot test process: the timeout and the lease renewal while a batch runs, CPU time and
peak RSS per batch, and no orphans: what a batch leaves running is killed when it ends; a
batch that times out loses its forked child (or, without one, the whole runner).
"""

from __future__ import annotations

import collections
import contextlib
import enum
import json
import os
import select
import subprocess
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from shardrun.models import ProcessOutcome
from shardrun.work.process import TreeMonitor, read_tail, spawn
from shardrun.work.tree import KILL_GRACE_SECONDS, kill_tree, wait_exited

# The environment variables that name the pipes' descriptors in the runner.
REQUEST_FD_VARIABLE = "SHARDRUN_REQUEST_FD"
REPLY_FD_VARIABLE = "SHARDRUN_REPLY_FD"
# How long a runner asked to stop (its requests closed) may take before it is killed, and
# how long a runner whose forked child was killed may take to report that child's end.
STOP_GRACE_SECONDS = 2.0
_READ_BYTES = 65536
# After the runner's events wake the worker, it waits this long before reading, so that
# one wake-up takes the events of many quick tests. A wake-up per event cost the worker
# 0.1 ms of CPU per test on the cores the tests run on (docs/benchmarks.md, "What per-test
# events cost"). The runner writes each event as it happens (a `start` is on the pipe
# before its test runs, whatever then kills the process): only the worker reads later.
EVENT_GATHER_SECONDS = 0.002

EventCallback = Callable[[dict[str, Any]], None]


class Runners(enum.Enum):
    """How a worker's runner runs batches (`--runners`)."""

    FORK = "fork"
    REUSE = "reuse"
    FRESH = "fresh"


@dataclass(frozen=True)
class Prewarm:
    """What a local worker's runner will serve, known before its first batch: enough to
    start the runner and boot the suite while the coordinator plans (`--prewarm`)."""

    framework: str
    runner_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class BatchRun:
    """What one batch did in a runner: its events in order, and how it ended."""

    events: tuple[dict[str, Any], ...]
    outcome: ProcessOutcome


class _Events:
    """Reads the runner's event lines as they come; keeps the order, the forked child's
    pid and the final `exit` event apart."""

    def __init__(self, on_event: EventCallback | None) -> None:
        self.events: list[dict[str, Any]] = []
        self.child_pid: int | None = None
        self.exit: dict[str, Any] | None = None
        self.on_event = on_event

    def take(self, event: dict[str, Any]) -> None:
        kind = event.get("e")
        if kind == "exit":
            self.exit = event
        elif kind == "child" and isinstance(event.get("pid"), int):
            self.child_pid = event["pid"]
        else:
            self.events.append(event)
            if self.on_event is not None:
                self.on_event(event)


class RunnerProcess:
    """One runner process and its two pipes. Not thread-safe: one batch at a time."""

    def __init__(
        self, key: Hashable, argv: Sequence[str], cwd: Path, env: Mapping[str, str],
        log_path: Path,
    ) -> None:
        """Start the runner; its boot output goes to `log_path` (the first batch's log)."""
        self.key = key
        self.batches = 0
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        inherited = (request_read, reply_write)
        env = {**env, REQUEST_FD_VARIABLE: str(request_read), REPLY_FD_VARIABLE: str(reply_write)}
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with log_path.open("ab") as log:
                self._process = spawn(argv, cwd, env, log, pass_fds=inherited)
        except BaseException:
            for fd in (request_write, reply_read):
                os.close(fd)
            raise
        finally:
            for fd in inherited:
                os.close(fd)
        self._requests = request_write
        self._replies = reply_read
        self._buffer = b""  # a line the runner has not finished writing
        self._lines: collections.deque[bytes] = collections.deque()  # read, not yet parsed
        self._unread_prewarms = 0  # prewarm requests sent without waiting for their end
        self._monitor = TreeMonitor(psutil.Process(self._process.pid))

    @property
    def pid(self) -> int:
        return self._process.pid

    def rss_bytes(self) -> int:
        """The runner's own resident memory now (0 once it is gone)."""
        try:  # the monitor's handle: no new Process, and never another process by its pid
            return self._monitor.root.memory_info().rss
        except psutil.Error:
            return 0

    def alive(self) -> bool:
        """Still running and able to take a batch (between batches only)."""
        if self._requests < 0 or self._replies < 0:
            return False
        return not wait_exited(self.pid, 0.0)

    def prewarm(self, args: Sequence[str], log_path: Path) -> None:
        """Ask the runner to load the suite now, before the first batch exists.

        Does not wait: the runner boots while the worker connects and the coordinator
        plans. The first batch's `run` reads the prewarm's end, within its own timeout.
        """
        if self._send({"prewarm": list(args), "log": str(log_path)}):
            self._unread_prewarms += 1

    def run(
        self,
        args: Sequence[str],
        log_path: Path,
        *,
        fork: bool,
        timeout_seconds: float | None,
        tail_lines: int = 30,
        poll_interval: float = 0.1,
        on_poll: Callable[[], None] | None = None,
        on_event: EventCallback | None = None,
        units: Sequence[str] = (),
    ) -> BatchRun:
        """Run one batch (`args` as the framework's own command line) and report it.

        `units` are the batch's units (also in `args`): a runner that collected the suite
        once runs them from its collection (runners/pytest_session.py).

        A batch that times out loses its forked child, or without one the runner; a
        runner that dies is dead: `alive()` is False afterwards and the caller starts
        another for the next batch.
        """
        self.batches += 1
        started = time.monotonic()
        self._monitor.sample_root()  # the last batch's end left the runner alone
        cpu_before = self._monitor.cpu_seconds
        self._monitor.peak_rss_bytes = 0
        events = _Events(on_event)
        deadline = None if timeout_seconds is None else started + timeout_seconds
        timed_out = False
        try:
            request = {"args": list(args), "units": list(units), "log": str(log_path),
                       "fork": fork}
            if self._send(request):
                timed_out = self._await_exit(events, deadline, poll_interval, on_poll)
        except BaseException:  # Ctrl-C, a cancelled worker: nothing of the batch survives
            self._kill()
            raise
        wall_seconds = time.monotonic() - started
        self._monitor.sample()
        exit_code, signal_number = self._ending(events.exit)
        return BatchRun(tuple(events.events), ProcessOutcome(
            exit_code=exit_code,
            signal=signal_number,
            timed_out=timed_out,
            wall_seconds=wall_seconds,
            cpu_seconds=max(self._monitor.cpu_seconds - cpu_before, 0.0),
            peak_rss_bytes=self._monitor.peak_rss_bytes,
            output_tail=read_tail(log_path, tail_lines) if log_path.is_file() else "",
        ))

    def _ending(self, exit_event: dict[str, Any] | None) -> tuple[int | None, int | None]:
        """The batch's exit status or signal; what it left running is killed (a runner
        that sent no `exit` is dead or stuck, and is killed whole)."""
        if exit_event is None:
            return self._kill()
        self._monitor.kill_others(KILL_GRACE_SECONDS)
        signal_number = exit_event.get("signal")
        if isinstance(signal_number, int):
            return None, signal_number
        code = exit_event.get("code")
        return (code if isinstance(code, int) else 1), None

    def _await_exit(
        self, events: _Events, deadline: float | None, poll_interval: float,
        on_poll: Callable[[], None] | None,
    ) -> bool:
        """Read events until the batch's `exit` (or the runner's death); True if the
        deadline passed. At the deadline a forked child is killed and its end awaited
        for a short grace; without a child the runner is left for `_ending` to kill."""
        timed_out = False
        while True:
            event, state = self._next_event(deadline, poll_interval, on_poll)
            if state == "timeout":
                if timed_out or events.child_pid is None:
                    return True
                timed_out = True
                kill_tree(events.child_pid, grace_seconds=KILL_GRACE_SECONDS)
                deadline = time.monotonic() + STOP_GRACE_SECONDS
                continue
            if event is None:  # the runner died
                return timed_out
            if event.get("e") == "exit" and event.get("prewarm") and self._unread_prewarms:
                self._unread_prewarms -= 1
                continue
            events.take(event)
            if events.exit is not None:
                return timed_out

    def stop(self) -> None:
        """Close the requests (the runner exits on EOF); kill it if it does not."""
        if self._replies < 0:  # already killed and reaped by its last batch
            return
        self._close_requests()
        if not wait_exited(self.pid, STOP_GRACE_SECONDS):
            self._monitor.kill_all(KILL_GRACE_SECONDS)
        self._reap()

    def _send(self, request: dict[str, Any]) -> bool:
        data = (json.dumps(request) + "\n").encode()
        try:
            while data:
                data = data[os.write(self._requests, data):]
        except OSError:  # EPIPE: the runner is gone
            return False
        return True

    def _next_event(
        self, deadline: float | None, poll_interval: float,
        on_poll: Callable[[], None] | None,
    ) -> tuple[dict[str, Any] | None, str]:
        """The runner's next event and "event"; (None, "dead") when it died, (None,
        "timeout") when the deadline passed. A line that is not a JSON object is skipped."""
        while True:
            while self._lines:
                event = _parse_event(self._lines.popleft())
                if event is not None:
                    return event, "event"
            wait = poll_interval
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            readable, _, _ = select.select([self._replies], [], [], wait)
            if readable:
                time.sleep(EVENT_GATHER_SECONDS)
                data = os.read(self._replies, _READ_BYTES)
                if not data:  # every writer closed its end: the runner exited or is exiting
                    return None, "dead"
                *lines, self._buffer = (self._buffer + data).split(b"\n")
                self._lines.extend(lines)
                continue
            if wait_exited(self.pid, 0.0):
                return None, "dead"
            self._monitor.sample()
            if on_poll is not None:
                on_poll()
            if deadline is not None and time.monotonic() >= deadline:
                return None, "timeout"

    def _kill(self) -> tuple[int | None, int | None]:
        """Kill the whole runner tree; its exit code, or the signal that ended it."""
        self._close_requests()
        self._monitor.kill_all(KILL_GRACE_SECONDS)
        returncode = self._reap()
        if returncode is None:
            return None, None
        return (None, -returncode) if returncode < 0 else (returncode, None)

    def _close_requests(self) -> None:
        if self._requests >= 0:
            os.close(self._requests)
            self._requests = -1

    def _reap(self) -> int | None:
        with contextlib.suppress(OSError):
            os.close(self._replies)
        self._replies = -1
        try:
            return self._process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:  # stuck in the kernel: leave it, report no status
            return None


def _parse_event(line: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


class RunnerPool:
    """The one runner a worker keeps: for one run and one runner command at a time.

    A new run (or other runner arguments) stops the old runner first: its code and its
    loaded suite belong to another commit or configuration.
    """

    def __init__(self) -> None:
        self._current: RunnerProcess | None = None

    def get(self, key: Hashable, start: Callable[[], RunnerProcess]) -> tuple[RunnerProcess, bool]:
        """The runner for `key`, and whether it had run a batch before (it is warm)."""
        current = self._current
        if current is not None and current.key == key and current.alive():
            return current, current.batches > 0
        self.close()
        self._current = start()
        return self._current, False

    def recycle_above(self, max_rss_bytes: int | None) -> int | None:
        """Stop the runner if it holds more than `max_rss_bytes`; the RSS it had, if so.

        For suites whose own code leaks (a cache that only grows, a global registry): a
        fresh runner costs one boot, against a worker killed for its memory mid-run.
        """
        current = self._current
        if current is None or max_rss_bytes is None:
            return None
        rss = current.rss_bytes()
        if rss <= max_rss_bytes:
            return None
        self.close()
        return rss

    def discard_dead(self) -> None:
        """Forget the runner if the last batch killed it."""
        if self._current is not None and not self._current.alive():
            self.close()

    def close(self) -> None:
        if self._current is not None:
            current, self._current = self._current, None
            current.stop()
