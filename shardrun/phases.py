"""Phase timestamps for bench/startup.py: where a run's start-up and finish go.

With SHARDRUN_PHASES=<file> set, each process of a run (the coordinator, its workers,
their runners) appends one line `<unix time> <pid> <phase>` to that file as it reaches
a phase: "redis ready", "workers started", "batch start"... Unset (always, outside the
benchmark) a mark costs one dictionary lookup. One short append per line, so lines of
different processes never interleave.
"""

from __future__ import annotations

import os
import time

PHASES_VARIABLE = "SHARDRUN_PHASES"


def mark(phase: str) -> None:
    """Record that this process reached `phase` now, if SHARDRUN_PHASES names a file."""
    path = os.environ.get(PHASES_VARIABLE)
    if not path:
        return
    line = f"{time.time():.6f} {os.getpid()} {phase}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
