"""The events a pytest runner reports, one JSON line per test as it starts and finishes.

Loaded by runners/pytest_server.py by its path (the server is run by its path, under the
project's interpreter, where shardrun need not be installed): like the server, this
module imports only the standard library. The events themselves are listed in
pytest_server.py's docstring; this module is how pytest's hooks become them:
`EventsPlugin` (the hooks), `outcome_of` (pytest's junitxml rules for one test's
phases), `junit_names` (names as pytest's junitxml spells them) and `EventWriter` (one
write(2) per event on the reply pipe).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

# Test output and failure texts are capped per test (the tail is kept): a test printing
# megabytes must not make every event, and then the merged report, that large.
MAX_TEXT_CHARS = 64 * 1024
# Fixture scopes whose set-up the tests of one file share: the first test that uses such
# a fixture pays it, and every piece of a split file pays it again. A session fixture is
# a runner's set-up, priced apart (shardrun/plan/setup_cost.py).
SHARED_SCOPES = frozenset({"package", "module", "class"})


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
        self.running: str | None = None  # the node id whose setup, call or teardown runs
        self.shared: dict[str, float] = {}  # node id -> SHARED_SCOPES set-up it paid
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
        self.running = nodeid
        self.writer.emit({"e": "start", "id": test_id, "file": file, "line": line,
                          "name": name, "classname": classname})

    def pytest_runtest_logreport(self, report: Any) -> None:
        self.reports.setdefault(report.nodeid, []).append(report)

    def pytest_runtest_logfinish(self, nodeid: str, location: Sequence[Any]) -> None:
        reports = self.reports.pop(nodeid, [])
        event = {"e": "finish", "id": self.test_id(nodeid), **outcome_of(reports)}
        shared = self.shared.pop(nodeid, 0.0)
        if shared:
            event["shared"] = shared
        self.running = None
        self.writer.emit(event)

    def fixture_set_up(self, scope: str, seconds: float) -> None:
        """A fixture of `scope` took `seconds` to set up for the running test."""
        if scope in SHARED_SCOPES and self.running is not None:
            self.shared[self.running] = self.shared.get(self.running, 0.0) + seconds

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


def fixture_timer(pytest: Any, events: EventsPlugin) -> object:
    """A plugin that times each fixture's set-up for `events`. A hook wrapper needs
    pytest's marker, which this module cannot import at its top (pytest_server.py loads
    it before it imports pytest). A fixture that another one's set-up requests (with
    `request.getfixturevalue`) is inside that one's time: only the outermost counts."""

    wrapper: Callable[[Callable[..., Any]], Callable[..., Any]] = pytest.hookimpl(
        hookwrapper=True)

    class FixtureTimer:
        depth = 0

        @wrapper
        def pytest_fixture_setup(self, fixturedef: Any, request: Any) -> Any:
            started = time.perf_counter()
            self.depth += 1
            try:
                yield
            finally:
                self.depth -= 1
                if self.depth == 0:
                    events.fixture_set_up(str(getattr(fixturedef, "scope", "")),
                                          time.perf_counter() - started)

    return FixtureTimer()


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
