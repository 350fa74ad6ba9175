"""A process tree: find every descendant, signal them all, wait until they are gone.

Why a module of its own: process.py runs one test process, warm.py keeps runner servers,
the pool keeps worker processes; each must stop a whole tree at the end (xdist workers,
browsers and servers a test started, some in sessions of their own), and they share
this one way of finding and stopping it.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Iterable

import psutil

# How long a SIGTERMed test process may take to clean up (flush JUnit, stop servers)
# before SIGKILL: long enough for a normal at_exit/atexit handler, short enough that a
# timed-out shard frees its worker quickly.
KILL_GRACE_SECONDS = 2.0

# After SIGKILL a process is gone within milliseconds unless stuck in the kernel (D state);
# wait this long for confirmation, then give up rather than hang the worker.
_KILL_CONFIRM_SECONDS = 1.0

# Longest sleep between checks whether a process has exited (the cap subprocess.Popen.wait
# uses too): short enough that wall_seconds is accurate, long enough not to spin.
_EXIT_CHECK_MAX_SECONDS = 0.05
_EXIT_CHECK_FIRST_SECONDS = 0.0005


def kill_tree(pid: int, *, grace_seconds: float = KILL_GRACE_SECONDS) -> None:
    """SIGTERM `pid` and all its descendants, then SIGKILL whatever outlives the grace.

    Descendants are collected before any signal is sent: once a parent dies its children
    are re-parented to init and can no longer be found from `pid`. If `pid` leads a process
    group (it was started with start_new_session), the whole group is signalled as well.
    `pid` itself is not reaped, so a caller holding its Popen still gets its real status.
    """
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    terminate([root, *descendants(root)], _group_led_by(pid), grace_seconds)


def wait_exited(pid: int, timeout: float) -> bool:
    """Wait up to `timeout` for our child `pid` to exit, without reaping it.

    Popen.wait() would reap the child and so lose the CPU totals in its zombie; this is
    the same sleep-and-check loop with WNOWAIT, which leaves the zombie in place.
    """
    deadline = time.monotonic() + timeout
    delay = _EXIT_CHECK_FIRST_SECONDS
    flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
    while os.waitid(os.P_PID, pid, flags) is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        delay = min(delay * 2, remaining, _EXIT_CHECK_MAX_SECONDS)
        sleep_until_exit(pid, delay)
    return True


def sleep_until_exit(pid: int, timeout: float | None) -> None:
    """Sleep until `pid` exits or `timeout` passes. On a pidfd (Linux 5.3+) the exit
    wakes it at once, where a sleep would notice it up to a poll interval late: at the end
    of every run, each worker waits so for its runner and the coordinator for its workers.
    Elsewhere (or once `pid` is reaped) it sleeps `timeout`. Reaps nothing."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        time.sleep(_EXIT_CHECK_MAX_SECONDS if timeout is None else timeout)
        return
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


def descendants(process: psutil.Process) -> list[psutil.Process]:
    """Every process below `process`: read along the tree where Linux allows it.

    psutil's children(recursive=True) reads the stat file of every process on the
    machine to find parents. A worker samples its batch's tree ten times a second, so
    with 85 processes that was 2 ms of CPU per sample, a fiftieth of a core per worker,
    on the same cores as the tests. /proc/PID/task/TID/children lists one thread's
    children: the walk reads a file per thread of the tree instead (0.1 ms).
    """
    if _proc_children_readable():
        return _walk_proc_children(process)
    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


def _proc_children_readable() -> bool:
    """False on other systems and on kernels built without CONFIG_PROC_CHILDREN."""
    return os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def _walk_proc_children(root: psutil.Process) -> list[psutil.Process]:
    found: list[psutil.Process] = []
    parents = [root]
    while parents:
        parent = parents.pop()
        for pid in _child_pids(parent.pid):
            child = _process_born_after(pid, parent)
            if child is not None:
                found.append(child)
                parents.append(child)
    return found


def _child_pids(pid: int) -> list[int]:
    """The children of every thread of `pid` (a thread's children are its own); none
    once it is gone. The kernel builds each list as it is read, so a child that starts
    or exits meanwhile may be missed, as between two reads of the process table."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    pids: list[int] = []
    for thread in threads:
        with contextlib.suppress(OSError), open(
            f"/proc/{pid}/task/{thread}/children", "rb"
        ) as listing:
            pids.extend(int(child) for child in listing.read().split())
    return pids


def _process_born_after(pid: int, parent: psutil.Process) -> psutil.Process | None:
    """The process now at `pid` if it can be `parent`'s child: none once it has exited,
    or if it is older than the parent (the pid was reused), as psutil checks too."""
    try:
        child = psutil.Process(pid)
        if child.create_time() >= parent.create_time():
            return child
    except psutil.Error:
        pass
    return None


def _group_led_by(pid: int) -> int | None:
    """The process group `pid` leads, if any; never our own group (we would kill ourselves)."""
    try:
        pgid = os.getpgid(pid)
    except OSError:
        return None
    return pgid if pgid == pid and pgid != os.getpgrp() else None


def _group_members(pgid: int) -> list[psutil.Process]:
    """Members of a process group: a background job need not be anyone's descendant now."""
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(OSError):
            if os.getpgid(process.pid) == pgid:
                members.append(process)
    return members


def terminate(targets: Iterable[psutil.Process], pgid: int | None, grace_seconds: float) -> None:
    """SIGTERM the targets and their group, wait `grace_seconds`, SIGKILL the survivors.

    Not psutil.wait_procs: it reaps our own child (whose Popen would then report exit
    status 0) and counts an unreaped zombie as alive, waiting out the grace for nothing.
    """
    group = _group_members(pgid) if pgid is not None else []
    processes = [p for p in dict.fromkeys([*targets, *group]) if p.pid != os.getpid()]
    _signal_all(processes, pgid, signal.SIGTERM)
    _signal_all(processes, pgid, signal.SIGCONT)  # a stopped process acts on TERM only now
    survivors = _await_exit(processes, grace_seconds)
    survivors = list(dict.fromkeys([*survivors, *_all_descendants(survivors)]))
    _signal_all(survivors, pgid, signal.SIGKILL)
    _await_exit(survivors, _KILL_CONFIRM_SECONDS)


def _all_descendants(processes: Iterable[psutil.Process]) -> list[psutil.Process]:
    """Children started during the grace period must not outlive their killed parents."""
    return [child for process in processes for child in descendants(process)]


def _signal_all(processes: Iterable[psutil.Process], pgid: int | None, sig: int) -> None:
    if pgid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    for process in processes:
        with contextlib.suppress(psutil.Error):  # gone, pid reused, or not ours to signal
            process.send_signal(sig)


def _await_exit(processes: Iterable[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until the processes have exited; return those still running at the timeout."""
    deadline = time.monotonic() + timeout
    alive = [process for process in processes if _is_running(process)]
    while alive and time.monotonic() < deadline:
        time.sleep(_EXIT_CHECK_MAX_SECONDS)
        alive = [process for process in alive if _is_running(process)]
    return alive


def _is_running(process: psutil.Process) -> bool:
    """Running and not a zombie: a zombie runs no code, it only waits for its parent."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
