"""The one way the tests wait for something they cannot await: poll it, with a deadline.

What is polled is evidence a real process leaves (a file, a Redis key, a pid gone): there
is no event to block on. Two things end the wait with a failure that says what: the
deadline, and a process the wait depends on ending first (then what it printed is shown).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence

import pytest

# Generous: the machine running the tests may be loaded by other work.
DEFAULT_TIMEOUT_SECONDS = 60.0
POLL_SECONDS = 0.02


def wait_for(
    condition: Callable[[], object], what: str, *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    processes: Sequence[subprocess.Popen[str]] = (),
    explain: Callable[[list[subprocess.Popen[str]]], str] = lambda ended: "",
) -> None:
    """Poll `condition` until it holds; fail if `timeout` passes or one of `processes`
    ends before it does (`explain` turns the ended ones into what the failure shows)."""
    deadline = time.monotonic() + timeout
    while not condition():
        ended = [process for process in processes if process.poll() is not None]
        if ended:
            pytest.fail(f"a process ended before {what}:\n{explain(ended)}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL_SECONDS)
