"""shardrun's warm pytest runner: one Python process that runs batch after batch.

Started by a shardrun worker (shardrun/warm.py) as `python -m
shardrun.runners.pytest_server` instead of one `python -m pytest` per batch. Each batch is
a `pytest.main()` session of its own (its own JUnit XML, fixtures and session hooks), but
the interpreter, pytest, its plugins, conftest.py files and the test modules are imported
once per worker: what the suite imports at module level (an app, a framework) is paid
once, as with pytest-xdist's workers. The price is the same as xdist's: state a test
leaves in a module is seen by later batches on that worker (`--process-per-batch`
restores one process per batch).

Protocol: one JSON request per line on the descriptor in SHARDRUN_REQUEST_FD,
`{"args": [pytest arguments], "log": "path of this batch's output"}`, or `{"prewarm":
[pytest arguments], "log": ...}` (PREWARM_ARGS below); one JSON reply per line on the
descriptor in SHARDRUN_REPLY_FD, `{"exit": status}`, per request. While a request runs,
file descriptors 1 and 2 point at its log. EOF on the requests ends the process.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Sequence

# pytest's exit status for an internal error: what a batch that blew up reports.
INTERNAL_ERROR = 3
# A worker sends a prewarm request as it starts, before its first batch exists: a session
# without pytest's python plugin walks the tree and loads every conftest.py (and what it
# imports: the app) but imports no test module and runs nothing (exit 5, no tests).
PREWARM_ARGS = ("--collect-only", "-q", "-p", "no:python")


def main() -> int:
    requests = os.fdopen(_inherited("SHARDRUN_REQUEST_FD"), "rb")
    replies = os.fdopen(_inherited("SHARDRUN_REPLY_FD"), "w", buffering=1)
    import pytest  # after the pipes: a failing import still closes them by exiting

    root = os.getcwd()
    for line in requests:
        request = json.loads(line)
        os.chdir(root)  # the units are relative to it, whatever a test did to the cwd
        if "prewarm" in request:
            status = run_batch(pytest, [*PREWARM_ARGS, *request["prewarm"]], request["log"])
        else:
            status = run_batch(pytest, request["args"], request["log"])
        replies.write(json.dumps({"exit": status}) + "\n")
    return 0


def run_batch(pytest: object, args: Sequence[str], log: str) -> int:
    """One pytest session with stdout and stderr (the descriptors) in `log`."""
    _redirect_output(log)
    try:
        return int(pytest.main(list(args)))  # type: ignore[attr-defined]
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else INTERNAL_ERROR
    except Exception:  # the batch must still be answered; the log says why
        traceback.print_exc()
        return INTERNAL_ERROR
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _inherited(variable: str) -> int:
    """The descriptor named by `variable`, kept from the tests' own subprocesses."""
    fd = int(os.environ.pop(variable))
    os.set_inheritable(fd, False)
    return fd


def _redirect_output(log: str) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
