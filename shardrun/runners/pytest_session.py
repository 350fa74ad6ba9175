"""The booted pytest session of shardrun's pytest runner: collect once, run node ids.

Loaded by runners/pytest_server.py by its path after `import pytest` (so, like the server,
it imports nothing from shardrun). Without it every batch was one `pytest.main()`: a new
configuration, the plugins' set-up, and the collection (the imports) of the batch's
modules again, in every forked child, so a file split over several batches was imported
once per batch. With it the runner holds one session, as an xdist worker does:

- the prewarm request starts `pytest.main()` with the runner's arguments; the session
  loads the conftest.py files and what they import, collects nothing yet, and its run
  loop (`pytest_runtestloop`) serves the batch requests that follow;
- each batch names its units (files and node ids); a file not collected yet is collected
  now, in this process, once (module import, `-k`/`-m` deselection, the collection hooks),
  so every later batch of this runner finds its items ready;
- the batch runs the collected items its units hold, in a fork of the session (`fork`, a
  batch sees nothing an earlier one did, and the child finishes the session itself:
  summary, session-scoped fixtures torn down) or in the session itself (`reuse`).

A module that fails to import stays an error of that file in every batch that runs one of
its tests (its `file_error` event is kept and sent again), so accounting never loses its
tests; a module skipped as it is collected (`importorskip`) is replayed the same way. A
batch whose arguments are not the session's (no prewarm, other runner arguments) runs
the way it always did, one `pytest.main()` of its own (`legacy`).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

# What a forked batch answers when its session blew up outside of pytest's own handling.
INTERNAL_ERROR = 3
# pytest's status for an interrupted session: a batch a SIGINT or pytest.exit() stopped.
INTERRUPTED = 2
CLEAN_EXIT_CODES = (0, 1, 5)
# prctl(2): a forked batch ends with its runner (as in pytest_server.py).
PR_SET_PDEATHSIG = 1
# Shown in the prewarm log: what the boot did, where "no tests collected" used to be.
BOOTED_LINE = "shardrun: pytest session booted; each batch's files are collected once, as they come"

# Modules a plugin imports at the end of every session, whatever it ran, by the plugin's
# module (registered by its entry point or by `-p`). A forked batch finishes its session
# in the child, so each batch paid the import again: hypothesis's terminal summary
# imports all of hypothesis (0.4-1.2 s here) in every session of every project that has
# it installed, used or not, and forked batches of 100 trivial tests cost 850 ms each
# outside their tests (100 ms now). Imported once in the booted session, every fork
# inherits them.
SESSION_END_IMPORTS = {
    "_hypothesis_pytestplugin": ("hypothesis.internal.observability",),
}

Emit = Callable[[dict[str, Any]], None]


def holds(unit: str, node_id: str) -> bool:
    """Whether running `unit` runs the test `node_id` (shardrun/units.py's rule for
    pytest: a file holds its tests, `f.py::TestX` its methods, `f.py::test_p` its
    parameters)."""
    if unit == node_id:
        return True
    if "::" not in unit:
        return node_id.split("::", 1)[0] == unit
    return node_id.startswith((unit + "::", unit + "["))


@dataclass
class CollectedFile:
    """What collecting one file gave: its items in collection order, and the events its
    collection raised (a load error, a module skipped), sent again with every batch."""

    items: list[Any] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # the items' ids, relative to the root
    events: list[dict[str, Any]] = field(default_factory=list)
    error_reports: list[Any] = field(default_factory=list)
    deselected: list[str] = field(default_factory=list)  # by -k, -m, a plugin

    def lacks(self, unit: str) -> bool:
        """A node id that names no test of this file (pytest: "not found"); never a file,
        never after the file failed to load (that error covers it)."""
        if "::" not in unit or self.error_reports:
            return False
        return not any(holds(unit, test_id) for test_id in [*self.deselected, *self.ids])


@dataclass(frozen=True)
class Batch:
    """One batch request for the booted session."""

    units: tuple[str, ...]
    log: str
    fork: bool

    def files(self) -> list[str]:
        return list(dict.fromkeys(unit.split("::", 1)[0] for unit in self.units))


class SessionServer:
    """A pytest plugin: skips the session's own collection and turns its run loop into
    the runner's request loop (the module docstring says how)."""

    def __init__(
        self, events: Any, requests: Iterable[bytes], emit: Emit, root: str,
        boot_tail: Sequence[str], hooks: ServerHooks,
    ) -> None:
        self.events = events  # pytest_server.EventsPlugin: ids, collection events
        self.requests = requests
        self.emit = emit
        self.root = root
        self.boot_tail = list(boot_tail)
        self.hooks = hooks
        self.files: dict[str, CollectedFile] = {}
        self.session: Any = None
        self.child = False  # True in a forked batch: it finishes the session and exits
        self.booted = False

    # --- the session's hooks

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection(self, session: Any) -> bool:
        """The boot is done (conftest.py files loaded): collect nothing now."""
        self.session = session
        import_session_end(session.config)
        self.booted = True
        print(BOOTED_LINE, flush=True)
        self.emit({"e": "exit", "code": 0, "prewarm": True})
        return True

    def pytest_deselected(self, items: Sequence[Any]) -> None:
        if self.events.collecting is not None:
            self.events.collecting.deselected += [self.events.test_id(i.nodeid) for i in items]

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: Any) -> bool:
        """Serve requests until EOF; a forked child returns at once to finish its session."""
        for line in self.requests:
            request = json.loads(line)
            try:
                if self.serve(request):
                    return True
            except Exception as error:  # the batch must still be answered, and the next
                if self.child:
                    raise
                traceback.print_exc()
                self.emit({"e": "abort", "reason": "the pytest runner failed: "
                           f"{type(error).__name__}: {error}"})
                self.emit({"e": "exit", "code": INTERNAL_ERROR})
        return True

    # --- one request

    def serve(self, request: dict[str, Any]) -> bool:
        """Answer one request; True in the forked child of a batch."""
        self.hooks.between_requests()
        os.chdir(self.root)  # the units are relative to it, whatever a test did to the cwd
        if "prewarm" in request:
            self.emit({"e": "exit", "code": 0, "prewarm": True})
            return False
        units = [str(unit) for unit in request.get("units") or []]
        args = [str(arg) for arg in request.get("args", [])]
        if not units or args != [*units, *self.boot_tail]:
            self.emit(self.hooks.legacy(request))
            return False
        batch = Batch(tuple(units), str(request["log"]), bool(request.get("fork")))
        self.hooks.redirect(batch.log)
        retarget_capture(self.session.config)
        self.collect(batch.files())
        if batch.fork:
            return self.fork(batch)
        status = self.run_guarded(batch)
        self.emit({"e": "exit", "code": status})
        return False

    def fork(self, batch: Batch) -> bool:
        """The batch in a child of the booted session; the parent answers its end."""
        gc.freeze()  # the child's collector leaves the boot's objects (and pages) alone
        pid = os.fork()
        if pid == 0:
            self.child = True
            self.hooks.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            self.emit({"e": "child", "pid": os.getpid()})
            self.run(batch)  # its end: the session finishes in the child (`finish_child`)
            return True
        _, wait_status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(wait_status):
            self.emit({"e": "exit", "signal": os.WTERMSIG(wait_status)})
        else:
            self.emit({"e": "exit", "code": os.waitstatus_to_exitcode(wait_status)})
        return False

    # --- collection, once per file

    def collect(self, files: Sequence[str]) -> None:
        """Collect each file not collected yet, one file per collection, so that what a
        collection reports (an import error, a skip) belongs to that file alone."""
        for file in files:
            if file in self.files:
                continue
            collected = CollectedFile()
            self.events.collecting = collected
            try:
                collected.items = list(self.session.perform_collect([file]))
                collected.ids = [self.events.test_id(item.nodeid) for item in collected.items]
            except pytest.UsageError as error:  # the file is gone, or not a test file
                collected.events.append(self.events.file_error_event(
                    file, f"collection failed: {error}", str(error)))
            except Exception as error:  # a plugin's collection hook blew up: this file's
                collected.events.append(self.events.file_error_event(
                    file, f"collection failed: {type(error).__name__}: {error}",
                    traceback.format_exc()))
            finally:
                self.events.collecting = None
            for event in collected.events:
                if event.get("e") == "file_error":
                    event["file"] = file  # a conftest.py above it failed: still this file
            self.files[file] = collected

    def select(self, batch: Batch) -> tuple[list[Any], list[dict[str, Any]], list[Any]]:
        """The batch's items (file by file, in collection order), its files' kept
        collection events, and their failed collection reports."""
        items, events, reports = [], [], []
        for file in batch.files():
            collected = self.files[file]
            units = [unit for unit in batch.units if unit.split("::", 1)[0] == file]
            items += [item for item, test_id in zip(collected.items, collected.ids, strict=True)
                      if any(holds(unit, test_id) for unit in units)]
            events += collected.events
            events += [self.events.file_error_event(unit, f"not found: {unit}", "")
                       for unit in units if collected.lacks(unit)]
            reports += collected.error_reports
        return items, events, reports

    # --- running

    def run(self, batch: Batch) -> int:
        """Run the batch's items in this session; pytest's status for it."""
        session = self.session
        items, events, reports = self.select(batch)
        reset_reporter(session.config, reports)
        session.shouldfail = session.shouldstop = False
        session.testsfailed = sum(1 for event in events if event["e"] == "file_error")
        session.testscollected = len(items)
        for event in events:
            self.emit(event)
        self.emit({"e": "collected", "tests": [self.events.test_id(i.nodeid) for i in items]})
        for index, item in enumerate(items):
            following = items[index + 1] if index + 1 < len(items) else None
            item.config.hook.pytest_runtest_protocol(item=item, nextitem=following)
            if session.shouldfail:
                raise session.Failed(session.shouldfail)
            if session.shouldstop:
                raise session.Interrupted(session.shouldstop)
        if session.testsfailed:
            return 1
        return 0 if items else 5

    def run_guarded(self, batch: Batch) -> int:
        """A batch in the session itself (`reuse`): whatever it raises ends the batch, not
        the session; its failures are summed up in its own log."""
        try:
            status = self.run(batch)
        except BaseException as error:  # SIGINT, pytest.exit(), an internal error
            # Said as pytest's own session end says it (EventsPlugin's hook).
            self.events.pytest_keyboard_interrupt(pytest.ExceptionInfo.from_exception(error))
            with contextlib.suppress(BaseException):
                self.session._setupstate.teardown_exact(None)
            return INTERRUPTED
        summarize(self.session.config)
        self.emit({"e": "done", "code": status})
        return status


class ServerHooks:
    """What the session borrows from pytest_server.py: the legacy batch, the output
    redirection, the orphan reaper and prctl (passed in: this module imports nothing of
    the server, which loads it)."""

    def __init__(
        self, legacy: Callable[[dict[str, Any]], dict[str, Any]],
        redirect: Callable[[str], None], between_requests: Callable[[], None],
        prctl: Callable[[int, int], None],
    ) -> None:
        self.legacy = legacy
        self.redirect = redirect
        self.between_requests = between_requests
        self.prctl = prctl


def boot(
    args: Sequence[str], log: str, events: Any, requests: Iterable[bytes], emit: Emit,
    root: str, hooks: ServerHooks, *plugins: object,
) -> SessionServer:
    """Run the booted session (`args`: what follows the units of each batch it serves)
    until the requests end, or, in a forked batch, until the batch's session finished:
    then the process exits here. `plugins`: more of the events' (the fixture timer)."""
    hooks.redirect(log)
    server = SessionServer(events, requests, emit, root, args, hooks)
    status = INTERNAL_ERROR
    try:
        status = int(pytest.main(list(args), plugins=[events, server, *plugins]))
    except BaseException:
        if server.child:
            os._exit(INTERNAL_ERROR)
        raise
    if server.child:
        finish_child(emit, status)
    if not server.booted:  # the boot failed (a conftest.py raised): say so, batches go on
        emit({"e": "exit", "code": status, "prewarm": True})
    return server


def import_session_end(config: Any) -> None:
    """Import what the registered plugins import at every session's end (best effort:
    a batch imports it itself if this fails)."""
    for plugin, modules in SESSION_END_IMPORTS.items():
        loaded = sys.modules.get(plugin)
        if loaded is not None and config.pluginmanager.is_registered(loaded):
            for module in modules:
                with contextlib.suppress(Exception):
                    importlib.import_module(module)


def finish_child(emit: Emit, status: int) -> None:
    """A forked batch's end, after its session finished: `done`, or why not; exit."""
    try:
        if status in CLEAN_EXIT_CODES:
            emit({"e": "done", "code": status})
        else:
            emit({"e": "abort", "reason": f"pytest ended with exit code {status}"})
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        os._exit(status)


def retarget_capture(config: Any) -> None:
    """pytest's fd capture restores descriptors 1 and 2 to copies it made when the
    session started (the prewarm log) each time it suspends; point those copies at the
    batch's log too, so a batch's output and summary land in its own log."""
    capture = getattr(config.pluginmanager.get_plugin("capturemanager"),
                      "_global_capturing", None)
    for stream, fd in ((getattr(capture, "out", None), 1), (getattr(capture, "err", None), 2)):
        saved = getattr(stream, "targetfd_save", None)
        if isinstance(saved, int):
            with contextlib.suppress(OSError):
                os.dup2(fd, saved)


def reset_reporter(config: Any, error_reports: Sequence[Any]) -> None:
    """The terminal summary of a batch counts this batch only (and its files' load
    errors), not what the session collected or ran before."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    stats = getattr(reporter, "stats", None)
    if isinstance(stats, dict):
        stats.clear()
        if error_reports:
            stats["error"] = list(error_reports)


def summarize(config: Any) -> None:
    """A batch run in the session itself has no session end to print its failures: print
    them as pytest's summary would, into the batch's log."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    for name in ("summary_errors", "summary_failures", "short_test_summary", "summary_stats"):
        with contextlib.suppress(Exception):
            getattr(reporter, name)()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
