"""One batch, reconciled: every test it was sent has a result, or goes back to the queue. Pure.

A runner reports each test as it starts and finishes (runners/pytest_server.py lists the
events). The worker then settles the batch against what it was sent (DESIGN.md rule 11):

- a test that finished has the result its framework gave it;
- a test that started and never finished (a timeout, a signal, `exit` or `os._exit`
  inside it, a crash) is an **error** naming the cause;
- a module or spec file that failed to load is an error of that file, as the framework
  reports it in a serial run;
- tests that never started, and units of which nothing ran, go back to the queue
  (`unrun`): the coordinator sends them once more, in a fresh runner;
- a unit ran with zero tests only when the runner ended the batch by itself (`done`),
  with nothing collected for it.

Nothing here turns a missing or interrupted test into a pass or into silence. The
`command` framework cannot report events; its JUnit is settled by `reconcile_junit`, with
the weaker rule that a file with testcases counts as run unless the batch was killed.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from shardrun.models import OUTCOMES, ProcessOutcome, TestResult
from shardrun.plan.timings import file_of_unit
from shardrun.units import UnitIndex

# rspec and pytest exit 1 when tests failed; 0 and pytest's 5 (nothing collected) are
# clean too. Used for `command` batches, whose runners send no `done` event.
CLEAN_EXIT_CODES = frozenset({0, 1, 5})
SIGNAL_NAMES = {member.value: member.name for member in signal.Signals}
# The id of an error outside any file (an after(:suite) hook): one per run, not per batch.
OUTSIDE_FILES_ID = "(outside of any test file)"


@dataclass
class EventLog:
    """The events of one batch, indexed. Malformed events are ignored: the runner is
    shardrun's own, but a test can write to its descriptors or die mid-line."""

    collected: list[str] = field(default_factory=list)
    starts: dict[str, dict[str, Any]] = field(default_factory=dict)
    finishes: dict[str, dict[str, Any]] = field(default_factory=dict)
    file_errors: list[dict[str, Any]] = field(default_factory=list)
    batch_errors: list[dict[str, Any]] = field(default_factory=list)
    aborts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    done: bool = False
    # Per file, the wall time of its top-level groups, their hooks included (RSpec).
    file_times: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, events: Iterable[Mapping[str, Any]]) -> EventLog:
        log = cls()
        for event in events:
            log.add(event)
        return log

    def add(self, event: Mapping[str, Any]) -> None:
        kind = event.get("e")
        test_id = event.get("id")
        if kind == "collected" and isinstance(event.get("tests"), list):
            self.collected += [str(item) for item in event["tests"]]
        elif kind in ("start", "finish") and isinstance(test_id, str) and test_id:
            (self.starts if kind == "start" else self.finishes)[test_id] = dict(event)
        elif kind == "file_error" and isinstance(event.get("file"), str):
            self.file_errors.append(dict(event))
        elif kind == "batch_error":
            self.batch_errors.append(dict(event))
        elif kind == "abort":
            self.aborts.append(str(event.get("reason", "the runner stopped")))
        elif kind == "note":
            self.notes.append(str(event.get("text", "")))
        elif kind == "done":
            self.done = True
        elif kind == "file_time" and isinstance(event.get("file"), str):
            file = file_of_unit(event["file"])
            self.file_times[file] = self.file_times.get(file, 0.0) + _seconds(event.get("seconds"))


@dataclass(frozen=True)
class Settled:
    """A batch's accounting: what the worker puts into its BatchResult."""

    tests: tuple[TestResult, ...]
    unrun: tuple[str, ...] = ()
    unrun_reason: str = ""
    empty_units: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    # Per file of the batch, the wall time of its top-level groups where the runner
    # measures one (RSpec): its tests plus what they share, before(:context) hooks.
    file_seconds: Mapping[str, float] = field(default_factory=dict)


def ending_cause(
    outcome: ProcessOutcome, log: EventLog, timeout_seconds: float | None,
    error: str | None = None,
) -> str | None:
    """Why the batch did not end by itself, or None when it did."""
    if error:
        return f"the worker could not run the batch: {error}"
    if outcome.timed_out:
        limit = f" {timeout_seconds:g} s" if timeout_seconds else ""
        return f"killed after the batch timeout (--timeout{limit})"
    if outcome.signal is not None:
        name = SIGNAL_NAMES.get(outcome.signal, "unknown signal")
        return f"killed by signal {outcome.signal} ({name})"
    if log.aborts:
        return log.aborts[0]
    if not log.done:
        code = outcome.exit_code
        return "the runner ended without a status" if code is None else (
            f"the runner exited with code {code} before the batch ended")
    return None


def reconcile(
    units: Sequence[str], events: Iterable[Mapping[str, Any]], outcome: ProcessOutcome,
    *, timeout_seconds: float | None = None, error: str | None = None,
) -> Settled:
    """Settle one batch of `units` from its runner's events (see the module docstring)."""
    log = EventLog.of(events)
    index = UnitIndex(units)
    cause = ending_cause(outcome, log, timeout_seconds, error)
    tests = [_finished(log.starts.get(test_id, {}), finish, index)
             for test_id, finish in log.finishes.items()]
    tests += [_interrupted(start, index, cause or "the runner stopped during this test")
              for test_id, start in log.starts.items() if test_id not in log.finishes]
    tests += _load_errors(log, index, tests, outcome.output_tail)
    ran = {test.unit for test in tests}
    collected_by_unit: dict[str, list[str]] = {}
    for test_id in log.collected:
        unit = index.unit_of(test_id)
        if unit is not None:
            collected_by_unit.setdefault(unit, []).append(test_id)
    seen = {test.id for test in tests}
    unrun = [test_id for test_id in log.collected if test_id not in seen
             and index.unit_of(test_id) in ran]
    # After a load error a unit with nothing collected may be one the error hid.
    clean = cause is None and not log.file_errors and not log.batch_errors
    empty = []
    for unit in index.units:
        if unit in ran:
            continue
        if clean and unit not in collected_by_unit:
            empty.append(unit)
        else:
            unrun.append(unit)
    reason = cause or _early_stop(log)
    file_seconds = {file: seconds for file, seconds in log.file_times.items()
                    if index.of_file(file)}
    return Settled(tuple(tests), tuple(unrun), reason if unrun else "", tuple(empty),
                   tuple(dict.fromkeys(log.notes)), file_seconds)


def _early_stop(log: EventLog) -> str:
    if log.file_errors:
        return "another file of the batch failed to load, and the runner stopped"
    return "the runner stopped before these tests (an early-stop option or a plugin)"


def _finished(start: Mapping[str, Any], finish: Mapping[str, Any], index: UnitIndex) -> TestResult:
    test_id = str(finish["id"])
    outcome = finish.get("outcome")
    return TestResult(
        id=test_id, unit=index.unit_of(test_id) or "",
        file=str(start.get("file") or file_of_unit(test_id)),
        outcome=outcome if outcome in OUTCOMES else "error",
        seconds=_seconds(finish.get("seconds")), line=_line(start.get("line")),
        # The finish's name wins: RSpec names a one-liner only as it runs it.
        name=str(finish.get("name") or start.get("name") or test_id),
        classname=str(start.get("classname") or ""),
        message=str(finish.get("message") or ""), details=str(finish.get("details") or ""),
        result_type=str(finish.get("type") or ""), stdout=str(finish.get("stdout") or ""),
        stderr=str(finish.get("stderr") or ""),
        shared_seconds=min(_seconds(finish.get("shared")), _seconds(finish.get("seconds"))),
    )


def _interrupted(start: Mapping[str, Any], index: UnitIndex, cause: str) -> TestResult:
    test_id = str(start["id"])
    return TestResult(
        id=test_id, unit=index.unit_of(test_id) or "",
        file=str(start.get("file") or file_of_unit(test_id)), outcome="error",
        line=_line(start.get("line")), name=str(start.get("name") or test_id),
        classname=str(start.get("classname") or ""), message=f"interrupted: {cause}",
        details=f"This test started and never finished: {cause}.",
        result_type="shardrun.interrupted", origin="interrupted",
    )


def _load_errors(
    log: EventLog, index: UnitIndex, tests: Sequence[TestResult], output_tail: str
) -> list[TestResult]:
    """Errors outside of tests: a file that failed to load fails each of its units that
    ran nothing; when all of them ran (an after(:context) hook), the file itself. A
    before(:suite) error fails every unit that ran nothing, an after(:suite) one the run."""
    ran = {test.unit for test in tests}
    errors: list[TestResult] = []
    for event in log.file_errors:
        file = file_of_unit(str(event["file"]))
        units = index.of_file(file)
        pending = [unit for unit in units if unit not in ran]
        if pending:
            errors += [_error(unit, unit, file, event, output_tail) for unit in pending]
        else:  # the file's tests ran (or it is no unit of the batch, e.g. a conftest.py)
            errors.append(_error(file, units[0] if units else "", file, event, output_tail))
        ran.update(units)
    for event in log.batch_errors:
        pending = [unit for unit in index.units if unit not in ran]
        errors += [_error(unit, unit, file_of_unit(unit), event, output_tail)
                   for unit in pending]
        if not pending:
            errors.append(_error(OUTSIDE_FILES_ID, "", "", event, output_tail))
        ran.update(index.units)
    return errors


def _error(
    test_id: str, unit: str, file: str, event: Mapping[str, Any], output_tail: str
) -> TestResult:
    """An error outside of tests; the batch's output tail goes with it (the reason is
    often only there, e.g. a spec_helper that failed to load)."""
    message = str(event.get("message") or "an error occurred outside of tests")
    return TestResult(
        id=test_id, unit=unit, file=file, outcome="error", name=test_id,
        classname=file, message=message, details=str(event.get("details") or ""),
        result_type="shardrun.load_error", stdout=output_tail,
    )


def _seconds(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return 0.0
    return seconds if 0.0 <= seconds < float("inf") else 0.0


def _line(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def reconcile_junit(
    units: Sequence[str], tests: Sequence[TestResult], outcome: ProcessOutcome,
    *, timeout_seconds: float | None = None, error: str | None = None,
    problem: str | None = None,
) -> Settled:
    """Settle a `command` batch from the testcases of the JUnit it wrote.

    Without events a partial report cannot be told from a complete one, except by how
    the process ended: after a timeout, a signal or an unexpected exit code every unit
    with testcases also gets an error saying its results may be incomplete, and units
    without testcases go back to the queue.
    """
    index = UnitIndex(units)
    placed = [_with_unit(test, index) for test in tests]
    cause = _junit_cause(outcome, timeout_seconds, error, problem, placed)
    ran = {test.unit for test in placed if test.unit}
    incomplete = [] if cause is None else [
        TestResult(id=f"{unit} (incomplete)", unit=unit, file=file_of_unit(unit),
                   outcome="error", name=f"{unit} (incomplete)", classname=file_of_unit(unit),
                   message=f"results may be incomplete: {cause}",
                   result_type="shardrun.interrupted", origin="interrupted")
        for unit in index.units if unit in ran]
    missing = [unit for unit in index.units if unit not in ran]
    if cause is None:
        return Settled(tuple(placed), empty_units=tuple(missing))
    return Settled(tuple(placed + incomplete), tuple(missing), cause if missing else "")


def _with_unit(test: TestResult, index: UnitIndex) -> TestResult:
    return replace(test, unit=index.unit_of(test.file) or index.unit_of(test.id) or "")


def _junit_cause(
    outcome: ProcessOutcome, timeout_seconds: float | None, error: str | None,
    problem: str | None, tests: Sequence[TestResult],
) -> str | None:
    cause = ending_cause(outcome, EventLog(done=True), timeout_seconds, error)
    if cause is not None:
        return cause
    if problem is not None:
        return problem
    code = outcome.exit_code
    failing = any(test.failed for test in tests)
    if code in (0, 5) or (code in CLEAN_EXIT_CODES and failing):
        return None
    return f"the command exited with code {code}" + ("" if failing else " and no failing test")
