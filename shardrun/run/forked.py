"""Local workers as forks of the coordinator, not new interpreters.

A `shardrun worker` process started with `python -m shardrun.cli.worker` spends 0.2 s
(idle machine) to 3 s (N = 8 on a loaded 2-core box) importing Python, redis and rq
before it can start its runner, and N of them pay it at once on the cores the tests need.
The coordinator has imported all of that already (it enqueues through the same queue.py),
so `fork()` gives a worker in milliseconds that runs the same code from the same entry
(work/start.py) as `shardrun worker` does: the same RQ worker loop and job function.

`ForkedProcess` is the part of subprocess.Popen the pool uses (pid, poll, wait,
send_signal); `wait` sleeps on a pidfd instead of Popen's polling, so a stopped worker is
noticed the moment it exits.

In the child: stdin is /dev/null, stdout and stderr go to the worker's log, the kernel
ends it with its parent (lifeline.py), its name (`ps -o comm`, psutil's `name()`) is
WORKER_PROCESS_NAME, and it leaves through os._exit: the coordinator's atexit handlers
(its private Redis's shutdown) and buffers are the coordinator's, not the child's to run.
Fork only from a thread that outlives the workers, while no other thread runs (threads
do not survive a fork; a lock one held would stay held in the child).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from shardrun.errors import ShardrunError
from shardrun.work.lifeline import die_with_parent
from shardrun.work.tree import sleep_until_exit

# What `ps` and psutil call a forked local worker (its command line is the coordinator's).
WORKER_PROCESS_NAME = "shardrun-worker"
# The exit status of a child whose entry raised something unexpected.
CRASHED = 70


class ForkedProcess:
    """A forked child, with the subprocess.Popen methods LocalWorkers calls."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit status (negative: the signal) once the child has ended, else None."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                # Reaped elsewhere (a psutil wait on our own child): gone, status unknown,
                # as subprocess.Popen reports it.
                self.returncode = 0
                return self.returncode
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Block until the child ends; subprocess.TimeoutExpired after `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0.0)
            sleep_until_exit(self.pid, left)
        return self.returncode  # type: ignore[return-value]  # set by poll()

    def send_signal(self, signal_number: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal_number)


def fork_child(
    entry: Callable[[], None], log: IO[bytes], cwd: Path, environment: Mapping[str, str],
    parent_death_signal: int,
) -> ForkedProcess:
    """Fork; the child runs `entry` in `cwd` with `environment` added, and exits."""
    arrange_death = die_with_parent(parent_death_signal)  # looked up before the fork
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # or the child would write the parent's buffered output again
    # The coordinator's objects (its imports, mostly) stay out of the child's collections:
    # a collection that walks them writes to their pages, and each written page is copied.
    gc.freeze()
    pid = os.fork()
    if pid:
        return ForkedProcess(pid)
    status = CRASHED
    try:  # the child: never returns into the coordinator's code
        if arrange_death is not None:
            arrange_death()
        _redirect(log)
        os.chdir(cwd)
        os.environ.update(environment)
        _name_process(WORKER_PROCESS_NAME)
        for sig in (signal.SIGTERM, signal.SIGINT):  # the coordinator's handlers are not
            signal.signal(sig, signal.SIG_DFL)      # the child's: `entry` sets its own
        status = _run(entry)
    finally:
        os._exit(status)


def _run(entry: Callable[[], None]) -> int:
    """`entry`'s exit status, errors shown as `shardrun worker` shows them."""
    try:
        entry()
        return 0
    except SystemExit as stop:  # the SIGTERM handler, or a worker giving up
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except ShardrunError as error:
        print(f"shardrun: error: {error}", file=sys.stderr)
        return error.exit_code
    except BaseException:
        traceback.print_exc()
        return CRASHED
    finally:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()


def _redirect(log: IO[bytes]) -> None:
    """stdin from /dev/null, stdout and stderr to the worker's log."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)


def _name_process(name: str) -> None:
    """The name `ps` shows (Linux: /proc/self/comm, 15 bytes at most); best effort."""
    with contextlib.suppress(OSError):
        Path("/proc/self/comm").write_text(name[:15], encoding="ascii")
