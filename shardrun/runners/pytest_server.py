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
                                               is named as it runs), which wins
  {"e": "note", "text"}                        e.g. the project's -x was overridden
  {"e": "abort", "reason"}                     the session was interrupted (Ctrl-C,
                                               pytest.exit(), an internal error)
  {"e": "done", "code"}                        the session ended by itself
  {"e": "exit", "code" | "signal"}             the request is over (always last)

Test ids are pytest node ids whose path is relative to the directory the runner started
in (the project root shardrun plans from), even when pytest's rootdir is elsewhere; a test
a class inherits from another module carries the module that collected it.

This file imports nothing from shardrun, so any interpreter with pytest can run it.
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
import time
import traceback
from collections.abc import Iterable, Sequence
from typing import Any

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
# Test output and failure texts are capped per test (the tail is kept): a test printing
# megabytes must not make every event, and then the merged report, that large.
MAX_TEXT_CHARS = 64 * 1024
# prctl(2): a signal when this process's parent dies; the reaper of orphans below it.
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


class EventWriter:
    """JSON lines on a pipe the worker reads as they come. Each event is one write(2) of
    one line, so the worker never sees half an event unless the process dies mid-write."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def emit(self, event: dict[str, Any]) -> None:
        data = (json.dumps(event) + "\n").encode("utf-8")
        while data:
            data = data[os.write(self.fd, data):]
        if event.get("prewarm"):
            _mark_phase("runner booted")


def _mark_phase(phase: str) -> None:
    """A timestamp for bench/startup.py, as shardrun/phases.py writes them (this file
    imports nothing of shardrun)."""
    path = os.environ.get("SHARDRUN_PHASES")
    if path:
        with open(path, "a", encoding="utf-8") as phases:
            phases.write(f"{time.time():.6f} {os.getpid()} {phase}\n")


def _capped(text: str | None) -> str:
    text = text or ""
    return text if len(text) <= MAX_TEXT_CHARS else "..." + text[-MAX_TEXT_CHARS:]


class EventsPlugin:
    """The pytest plugin that reports each test as it starts and finishes."""

    def __init__(self, writer: EventWriter, root: str) -> None:
        self.writer = writer
        self.root = root
        self.rootpath = root
        self.reports: dict[str, list[Any]] = {}
        # Set by the booted session (pytest_session.py) while it collects one file: that
        # file's collection events are kept there and sent with each batch that runs it.
        self.collecting: Any = None

    def collection_event(self, event: dict[str, Any]) -> None:
        if self.collecting is None:
            self.writer.emit(event)
        else:
            self.collecting.events.append(event)

    def file_error_event(self, file: str, message: str, details: str) -> dict[str, Any]:
        return {"e": "file_error", "file": file, "message": message, "details": details}

    # --- ids relative to the runner's root, whatever pytest's rootdir is

    def test_id(self, nodeid: str) -> str:
        path, separator, rest = nodeid.partition("::")
        absolute = os.path.join(self.rootpath, path) if path else self.rootpath
        relative = os.path.relpath(absolute, self.root).replace(os.sep, "/")
        return relative + separator + rest

    def pytest_configure(self, config: Any) -> None:
        """Early-stop options are shardrun's to decide (its own --fail-fast), not a batch's:
        a project's `-x` or `--maxfail` would drop every test after a batch's first
        failure. Overridden here, after the command line and addopts were parsed."""
        self.rootpath = str(config.rootpath)
        overridden = []
        if getattr(config.option, "maxfail", 0):
            overridden.append(f"--maxfail={config.option.maxfail}")
            config.option.maxfail = 0
        if overridden:
            self.writer.emit({"e": "note", "text": "the project's pytest options "
                              f"{', '.join(overridden)} were ignored per batch"})

    # --- collection

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            details = _capped(getattr(report, "longreprtext", "") or str(report.longrepr))
            self.collection_event(self.file_error_event(
                self.test_id(report.nodeid).split("::")[0],
                "collection failed: " + _last_line(details), details))
            if self.collecting is not None:
                self.collecting.error_reports.append(report)
        elif report.skipped and report.nodeid:
            self.collector_skipped(report)

    def collector_skipped(self, report: Any) -> None:
        """A module (or class) skipped as it was collected (`pytest.importorskip` at its
        top) has no test, yet pytest's junitxml writes it as one skipped testcase: so is
        it here, under the node id of the collector, or it would vanish from the merged
        report as a unit that ran with zero tests."""
        test_id = self.test_id(report.nodeid)
        name, classname = junit_names(test_id)
        self.collection_event({"e": "start", "id": test_id, "file": test_id.split("::")[0],
                               "line": None, "name": name, "classname": classname})
        self.collection_event({"e": "finish", "id": test_id, **outcome_of([report])})

    def pytest_collection_finish(self, session: Any) -> None:
        if self.collecting is None:  # the booted session sends each batch's own list
            ids = [self.test_id(item.nodeid) for item in session.items]
            self.writer.emit({"e": "collected", "tests": ids})

    # --- running

    def pytest_runtest_logstart(self, nodeid: str, location: Sequence[Any]) -> None:
        test_id = self.test_id(nodeid)
        file = test_id.split("::")[0]
        source = self.test_id(str(location[0])) if location and location[0] else ""
        line = int(location[1]) + 1 if source == file and location[1] is not None else None
        name, classname = junit_names(test_id)
        self.reports[nodeid] = []
        self.writer.emit({"e": "start", "id": test_id, "file": file, "line": line,
                          "name": name, "classname": classname})

    def pytest_runtest_logreport(self, report: Any) -> None:
        self.reports.setdefault(report.nodeid, []).append(report)

    def pytest_runtest_logfinish(self, nodeid: str, location: Sequence[Any]) -> None:
        reports = self.reports.pop(nodeid, [])
        self.writer.emit({"e": "finish", "id": self.test_id(nodeid), **outcome_of(reports)})

    # --- a session that did not end by itself

    def pytest_keyboard_interrupt(self, excinfo: Any) -> None:
        name = getattr(excinfo, "typename", "KeyboardInterrupt")
        message = str(getattr(excinfo, "value", "")).strip()
        if name == "KeyboardInterrupt":
            reason = "interrupted (KeyboardInterrupt: SIGINT or Ctrl-C)"
        else:
            reason = f"the session was stopped ({name}: {message})" if message else (
                f"the session was stopped ({name})")
        self.writer.emit({"e": "abort", "reason": reason})

    def pytest_internalerror(self, excrepr: Any, excinfo: Any) -> None:
        self.writer.emit({"e": "abort",
                          "reason": f"pytest internal error: {_last_line(str(excrepr))}"})


def junit_names(test_id: str) -> tuple[str, str]:
    """(name, classname) as pytest's junitxml (xunit1) spells them for this node id; a
    module's own id (a collector skipped) is the name, with an empty classname."""
    parts = test_id.split("::")
    path = parts[0]
    module = path[:-3] if path.endswith(".py") else path
    names = [module.replace("/", "."), *parts[1:]]
    return names[-1], ".".join(names[:-1])


def outcome_of(reports: Sequence[Any]) -> dict[str, Any]:
    """One test's result from its setup, call and teardown reports (pytest's junitxml
    rules): a failing setup or teardown is an error, a failing call a failure, a skip or
    an expected failure skipped; seconds add up over the phases."""
    outcome, entry = "passed", None
    for report in reports:
        if report.failed:
            if report.when == "call":
                outcome, entry = "failed", report
            elif outcome == "passed":
                outcome, entry = "error", report
        elif report.skipped and outcome == "passed":
            outcome, entry = "skipped", report
    if not reports:  # logfinish without any report: nothing ran (a plugin skipped it all)
        return {"outcome": "error", "seconds": 0.0, "message": "no report for this test",
                "details": "", "type": "", "stdout": "", "stderr": ""}
    last = reports[-1]
    return {
        "outcome": outcome,
        "seconds": sum(float(getattr(r, "duration", 0.0) or 0.0) for r in reports),
        "message": _message(entry),
        "details": _capped(entry.longreprtext) if entry is not None else "",
        "type": _error_type(entry),
        "stdout": _capped(getattr(last, "capstdout", "")),
        "stderr": _capped(getattr(last, "capstderr", "")),
    }


def _message(report: Any) -> str:
    if report is None:
        return ""
    if hasattr(report, "wasxfail"):
        return f"expected failure: {report.wasxfail}".rstrip(": ")
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
        return str(longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        prefix = "error at " + report.when + ": " if report.when != "call" else ""
        return _capped(prefix + crash.message)
    return _capped(_last_line(getattr(report, "longreprtext", "") or str(longrepr)))


def _error_type(report: Any) -> str:
    crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
    message = getattr(crash, "message", "") or ""
    head = message.split(":", 1)[0].strip()
    return head if head.replace(".", "").replace("_", "").isalnum() else ""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


# --- the server


def main() -> int:
    # Run by its path, this file's directory would come first on sys.path (and its
    # neighbour pytest.py would shadow pytest); `python -m pytest` puts the project root
    # there instead, where projects expect their packages to import from.
    sys.path[0] = os.getcwd()
    requests = os.fdopen(_inherited("SHARDRUN_REQUEST_FD"), "rb")
    writer = EventWriter(_inherited("SHARDRUN_REPLY_FD"))
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
    session.boot(tail, request["log"], EventsPlugin(writer, root), requests, writer.emit,
                 root, hooks)


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
    plugins = [] if writer is None else [EventsPlugin(writer, root)]
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
