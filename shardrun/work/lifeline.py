"""Children that die with their parent, even when the parent is SIGKILLed.

Why: `shardrun run` starts N workers, each a warm test runner, and a private
redis-server. Its own cleanup (`with` blocks, atexit, the SIGTERM handler) cannot run on
SIGKILL or an OOM kill, and all of those children would run on, re-parented to init:
the workers polling a Redis that is gone, the runners holding the workers' databases.

Linux's PR_SET_PDEATHSIG asks the kernel to send the child a signal when its parent
dies, from no matter what. We set it between fork and exec (`preexec_fn`), through
ctypes because Python has no binding. Considered instead: each worker watching
os.getppid() from a thread (one poll loop per process, a delay of one poll interval, and
nothing for redis-server, which is not ours to change) or the workers noticing the run's
Redis keys vanish (nothing for redis-server or runners either). The kernel signal needs no
polling and covers any program.

Two rules for callers, both documented where the processes start:
- the signal comes when the *thread* that started the child exits, so start children
  from a thread that lives as long as they should (shardrun starts them from the main
  thread);
- a child's own children are not covered: each level sets it for its own (the workers
  for their runners). A test's own subprocesses are not shardrun's to reach.

On other systems (macOS has no prctl) `die_with_parent` returns None: no preexec_fn,
the behaviour before this module.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable

# From <linux/prctl.h>.
PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl on Linux, looked up once (not in the child, between fork and exec)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()


def die_with_parent(signal_number: int) -> Callable[[], None] | None:
    """A `preexec_fn` making the child receive `signal_number` when this process dies.

    If this process died between fork and the prctl call, the kernel will never send the
    signal (the parent is already init), so the child sends it to itself.
    """
    prctl = _PRCTL
    if prctl is None:
        return None
    parent = os.getpid()

    def arrange() -> None:
        prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal_number)

    return arrange
