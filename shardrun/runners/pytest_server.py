"""shardrun's pytest runner: one Python process that runs the batches a worker sends it.

Started by a shardrun worker (shardrun/work/warm.py) as `python -m
shardrun.runners.pytest_server`. It imports pytest once, and with a prewarm request starts
one pytest session (pytest_session.py) that loads the suite's conftest.py files and
what they import (an app, a framework) before the first batch exists, collects each test
file once as batches need it, and runs the node ids each batch is sent. Without a prewarm
(or with other arguments than the session's) each batch is one `pytest.main()` of its
own. Either way a batch runs one of two ways:

- `fork` (the default): in a child forked from the booted process, so the boot is paid
  once per worker yet every batch starts from the same clean state, and a test that kills
  its process (os._exit, a segfault, a timeout) takes only that child with it;
- in the process itself, batch after batch (`--runners reuse`): cheapest, but what one
  batch leaves in a module is seen by the next (as with pytest-xdist's workers).

Every test is reported as it happens, as one JSON line on the reply pipe (DESIGN.md rule
11), never read back from a report written at the end: an interrupted session cannot
turn a test it never finished into a pass. Events (`e` names the kind):

  {"e": "child", "pid": N}                     a forked child runs the batch
  {"e": "collected", "tests": [ids]}           what the session will run, after -k/-m
  {"e": "file_error", "file", "message", "details"}   a module failed to import
  {"e": "start", "id", "file", "line", "name", "classname"}
  {"e": "finish", "id", "outcome", "seconds", "message", "details", "type", "stdout",
   "stderr"}                                   outcome: passed | failed | error | skipped;
                                               rspec_server.rb adds "name" (a one-liner
                                               is named as it runs), which wins; this
                                               runner "shared": the part of "seconds"
                                               spent setting up module, package or
                                               class fixtures
  {"e": "file_time", "file", "seconds"}        a file's top-level group ended, after
                                               this long, hooks included (rspec_server.rb
                                               only)
  {"e": "note", "text"}                        e.g. the project's -x was overridden
  {"e": "abort", "reason"}                     the session was interrupted (Ctrl-C,
                                               pytest.exit(), an internal error)
  {"e": "done", "code"}                        the session ended by itself
  {"e": "exit", "code" | "signal"}             the request is over (always last)

Test ids are pytest node ids whose path is relative to the directory the runner started
in (the project root shardrun plans from), even when pytest's rootdir is elsewhere; a test
a class inherits from another module carries the module that collected it.

This file imports nothing from shardrun, so any interpreter with pytest can run it; nor
do its neighbours, which it loads by their paths: pytest_events.py (the plugin that turns
pytest's hooks into these events) and pytest_session.py (the booted session).
Requests, one JSON line each on the descriptor in SHARDRUN_REQUEST_FD: {"args": [...],
"units": [...], "log": path, "fork": bool} (`args` the batch's pytest command line,
`units` its files and node ids, also in `args`) or {"prewarm": [...], "log": path}.
While a request runs, file descriptors 1 and 2 point at its log. EOF on the requests ends
the process.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import signal
import sys
import traceback
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # at run time pytest_events is loaded by its path (_load_neighbour)
    from .pytest_events import EventWriter

# pytest's exit status for an internal error: what a batch that blew up reports.
INTERNAL_ERROR = 3
# Exit statuses of a session that ended by itself: all passed, some failed, none collected.
CLEAN_EXIT_CODES = (0, 1, 5)
# A worker sends a prewarm request as it starts, before its first batch exists: a session
# without pytest's python plugin walks the tree and loads every conftest.py (and what it
# imports: the app) but imports no test module and runs nothing (exit 5, no tests).
PREWARM_ARGS = ("--collect-only", "-q", "-p", "no:python")
# Every batch runs every test it is given: a module that fails to import is reported as
# an error of that module, and the other modules of the batch still run.
BATCH_ARGS = ("--continue-on-collection-errors",)
# What runners/pytest.py puts after a batch's units, before the runner's own arguments:
# a batch whose arguments are the booted session's runs in it (pytest_session.py).
NO_CACHE = ("-p", "no:cacheprovider")
# prctl(2): a signal when this process's parent dies; the reaper of orphans below it.
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def main() -> int:
    # Run by its path, this file's directory would come first on sys.path (and its
    # neighbour pytest.py would shadow pytest); `python -m pytest` puts the project root
    # there instead, where projects expect their packages to import from.
    sys.path[0] = os.getcwd()
    requests = os.fdopen(_inherited("SHARDRUN_REQUEST_FD"), "rb")
    writer = events.EventWriter(_inherited("SHARDRUN_REPLY_FD"))
    import pytest  # after the pipes: a failing import still closes them by exiting

    _adopt_orphans()
    root = os.getcwd()
    booted = False
    for line in requests:
        _reap_orphans()
        request = json.loads(line)
        os.chdir(root)  # the units are relative to it, whatever a test did to the cwd
        if "prewarm" in request and not booted:
            # The booted session serves the requests that follow (until EOF); it returns
            # early only when the boot failed, and the batches then run one session each.
            booted = True
            boot_session(pytest, request, requests, writer, root)
            continue
        writer.emit(run_request(pytest, request, writer, root))
    return 0


def boot_session(
    pytest: Any, request: dict[str, Any], requests: Iterable[bytes], writer: EventWriter,
    root: str,
) -> None:
    """One pytest session that collects each file once and runs each batch's node ids
    (pytest_session.py, loaded by its path: this file is run by its path too)."""
    session = _load_neighbour("pytest_session")
    hooks = session.ServerHooks(
        legacy=lambda batch: run_request(pytest, batch, writer, root),
        redirect=_redirect_output, between_requests=_reap_orphans, prctl=_prctl)
    tail = [*NO_CACHE, *request["prewarm"]]
    plugin = events.EventsPlugin(writer, root)
    session.boot(tail, request["log"], plugin, requests, writer.emit, root, hooks,
                 events.fixture_timer(pytest, plugin))


def run_request(
    pytest: Any, request: dict[str, Any], writer: EventWriter, root: str
) -> dict[str, Any]:
    """A request in a session of its own (no booted session): its `exit` event."""
    if "prewarm" in request:
        status = run_session(pytest, [*PREWARM_ARGS, *request["prewarm"]], request["log"],
                             None, root)
        return {"e": "exit", "code": status, "prewarm": True}
    if request.get("fork"):
        return run_forked(pytest, request["args"], request["log"], writer, root)
    status = run_session(pytest, request["args"], request["log"], writer, root)
    return {"e": "exit", "code": status}


def _load_neighbour(name: str) -> Any:
    """A module beside this file, by its path, under a name no project uses."""
    module_name = f"_shardrun_{name}"
    spec = importlib.util.spec_from_file_location(
        module_name, os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


# The events' module, by its path as this file is run (the hooks, the writer, pytest's
# junitxml rules for a test's outcome).
events = _load_neighbour("pytest_events")


def run_forked(
    pytest: Any, args: Sequence[str], log: str, writer: EventWriter, root: str
) -> dict[str, Any]:
    """The batch in a child of this booted process; the exit event for its end."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: report, run, and leave without the parent's atexit handlers
        status = INTERNAL_ERROR
        try:
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the batch ends with its runner
            writer.emit({"e": "child", "pid": os.getpid()})
            status = run_session(pytest, args, log, writer, root)
        finally:
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(wait_status):
        return {"e": "exit", "signal": os.WTERMSIG(wait_status)}
    return {"e": "exit", "code": os.waitstatus_to_exitcode(wait_status)}


def run_session(
    pytest: Any, args: Sequence[str], log: str, writer: EventWriter | None, root: str
) -> int:
    """One pytest session with stdout and stderr (the descriptors) in `log`, and, with a
    writer, its events; `done` only when pytest ended the session by itself."""
    _redirect_output(log)
    plugins: list[Any] = []
    if writer is not None:
        plugin = events.EventsPlugin(writer, root)
        plugins = [plugin, events.fixture_timer(pytest, plugin)]
    batch_args = [] if writer is None else list(BATCH_ARGS)
    try:
        status = int(pytest.main([*args, *batch_args], plugins=plugins))
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else INTERNAL_ERROR
        _abort(writer, f"SystemExit({exit_.code!r}) escaped the pytest session")
    except BaseException as error:  # the batch must still be answered; the log says why
        traceback.print_exc()
        _abort(writer, f"the pytest session raised {type(error).__name__}: {error}")
        status = INTERNAL_ERROR
    else:
        if writer is not None:
            if status in CLEAN_EXIT_CODES:
                writer.emit({"e": "done", "code": status})
            else:
                writer.emit({"e": "abort", "reason": f"pytest ended with exit code {status}"})
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return status


def _abort(writer: EventWriter | None, reason: str) -> None:
    if writer is not None:
        writer.emit({"e": "abort", "reason": reason})


def _adopt_orphans() -> None:
    """Become the reaper of what a batch leaves running: a process a forked child started
    is re-parented here, not to init, so it stays in this runner's tree, where the worker
    finds and kills it after the batch."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def _prctl(option: int, value: int) -> None:
    """prctl(2), best effort: Linux only, nothing elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def _reap_orphans() -> None:
    """Collect the adopted processes the worker killed after the last batch."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


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
