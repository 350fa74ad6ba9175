"""Merge the batches' test results into one run: each test once, each unit accounted for.

Pure (DESIGN.md rule 1): data in, data out. The test is the unit of account (rule 11):

- every test appears once, with its final attempt; earlier attempts stay inside it (a
  test that failed and then passed is flaky, one that failed every time a failure with
  its reruns), so a retry adds information and never removes any;
- a result the runner could not give ("never ran" after its second try) never replaces a
  result an earlier attempt did give;
- every planned unit ends in exactly one of: its tests, "ran with zero tests" (its runner
  ended the batch by itself with nothing for it), skipped by shardrun's --fail-fast, or an
  error saying why nothing came back. So a worker that dies, hangs or is interrupted can
  never turn the run green.

The terminal summary and the rerun command are worded in summary.py, which imports this
module (never the reverse); the JUnit document is junit_writer.py's.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from shardrun.models import FAILED_OUTCOMES, BatchResult, TestResult
from shardrun.plan.timings import file_of_unit
from shardrun.units import UnitIndex, holds

__all__ = ["FAILED_OUTCOMES", "Attempt", "CaseResult", "RunReport", "merge"]

REPORT_FORMAT_VERSION = 1
CRASH_ERROR_TYPE = "shardrun.crash"  # `type` of the errors that stand for lost units
NO_RESULT = "no result from any worker"
# `origin` of cases shardrun made up rather than a runner reported (models.TestResult):
NEVER_RAN = "never_ran"  # did not start, even on its second try
NO_RESULT_ORIGIN = "no_result"  # no worker ever reported its batch
SKIPPED_ORIGIN = "skipped"  # not run: shardrun's --fail-fast stopped the run


@dataclass(frozen=True)
class Attempt:
    """An earlier attempt of a test that failed or did not run, kept in its final case
    (JUnit: a flakyFailure or rerunFailure inside the testcase)."""

    outcome: str
    message: str
    details: str
    result_type: str
    seconds: float
    attempt: int
    worker: str
    batch_id: int
    system_out: str = ""
    system_err: str = ""
    reused_runner: bool = False  # ran where earlier batches ran (`--runners reuse`)


@dataclass(frozen=True)
class CaseResult:
    """One test of the merged run: its final attempt, and where it ran; `unit` is the
    planned unit it counts for ("" when no planned unit holds it)."""

    name: str
    classname: str
    file: str
    unit: str
    seconds: float
    outcome: str  # "passed" | "failed" | "error" | "skipped"
    message: str
    line: int | None
    batch_id: int  # -1: no worker ever reported the unit
    worker: str
    attempt: int
    details: str = ""  # body of <failure>/<error>/<skipped>: the backtrace
    result_type: str = ""  # its `type` attribute, e.g. "AssertionError" or CRASH_ERROR_TYPE
    system_out: str = ""
    system_err: str = ""
    flaky: bool = False  # failed in an earlier attempt, passed in the latest
    id: str = ""  # the id its framework selects it by (rspec example id, pytest node id)
    # Failed only in a runner that earlier batches had used (`--runners reuse`) and passed
    # in a fresh process: not flaky, but state an earlier batch left behind.
    polluted: bool = False
    earlier: tuple[Attempt, ...] = ()
    origin: str = ""  # "" for a runner's result, else why shardrun made it (see above)
    shared_seconds: float = 0.0  # of `seconds`, fixtures its file's tests share (pytest)


@dataclass(frozen=True)
class RunReport:
    """The merged run; `units` holds every planned unit exactly once."""

    cases: tuple[CaseResult, ...]
    units: tuple[str, ...]
    results: tuple[BatchResult, ...]
    empty_units: tuple[str, ...] = ()  # ran cleanly with zero tests
    unplanned_files: tuple[str, ...] = ()  # had tests, but nobody planned them
    attempts: dict[str, int] = field(default_factory=dict)  # unit -> times dispatched
    notes: tuple[str, ...] = ()  # what runners said about the batches, once each

    def _count(self, outcome: str) -> int:
        return sum(1 for case in self.cases if case.outcome == outcome)

    @property
    def tests(self) -> int:
        return len(self.cases)

    @property
    def failures(self) -> int:
        return self._count("failed")

    @property
    def errors(self) -> int:
        return self._count("error")

    @property
    def skipped(self) -> int:
        return self._count("skipped")

    @property
    def seconds(self) -> float:
        return sum(case.seconds for case in self.cases)

    @property
    def crashed(self) -> tuple[CaseResult, ...]:
        """The errors standing for units or tests that never ran or never came back."""
        return tuple(case for case in self.cases
                     if case.origin in (NEVER_RAN, NO_RESULT_ORIGIN))

    @property
    def flaky(self) -> tuple[CaseResult, ...]:
        return tuple(case for case in self.cases if case.flaky)

    @property
    def polluted(self) -> tuple[CaseResult, ...]:
        return tuple(case for case in self.cases if case.polluted)

    @property
    def missing(self) -> tuple[str, ...]:
        """Units no worker ever reported: the run cannot vouch for them (exit 3)."""
        return tuple(case.unit for case in self.cases if case.origin == NO_RESULT_ORIGIN)

    @property
    def passed(self) -> bool:
        accounted = {case.unit for case in self.cases} | set(self.empty_units)
        return not self.failures and not self.errors and accounted.issuperset(self.units)

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary: counts, what failed and where, each batch's predicted vs actual."""
        bulky = ("details", "system_out", "system_err", "earlier")
        return {
            "version": REPORT_FORMAT_VERSION,
            "passed": self.passed,
            "counts": {"tests": self.tests, "failures": self.failures, "errors": self.errors,
                       "skipped": self.skipped, "units": len(self.units)},
            "seconds": round(self.seconds, 6),
            "failed": [{key: value for key, value in asdict(case).items() if key not in bulky}
                       for case in self.cases if case.outcome in FAILED_OUTCOMES],
            "shards": [_shard_dict(result) for result in latest_per_shard(self.results)],
            "empty_units": list(self.empty_units),
            "crashed_units": [case.unit for case in self.crashed],
            "unplanned_files": list(self.unplanned_files),
            "flaky": [case.id or f"{case.classname} {case.name}" for case in self.flaky],
            "polluted": [case.id for case in self.polluted],
            "missing_units": list(self.missing),
        }


def _shard_dict(result: BatchResult) -> dict[str, Any]:
    outcome = result.outcome
    return {"index": result.batch_id, "attempt": result.attempt, "worker": result.worker,
            "predicted_seconds": round(result.predicted_seconds, 6),
            "actual_seconds": round(outcome.wall_seconds, 6), "exit_code": outcome.exit_code,
            "signal": outcome.signal, "timed_out": outcome.timed_out, "error": result.error}


# --- merging


def merge(
    planned_units: Sequence[str],
    results: Sequence[BatchResult],
    skipped: Mapping[str, str] | None = None,
    lost_reasons: Mapping[str, str] | None = None,
) -> RunReport:
    """Account for every planned unit and every test exactly once (see the module
    docstring). `skipped` maps units (or test ids) deliberately not run (fail-fast) to
    the reason; they become skipped cases. `lost_reasons` says why a unit no worker ran
    came back (e.g. every worker refused it)."""
    units = tuple(dict.fromkeys(planned_units))
    index = UnitIndex(units)
    ordered = sorted(results, key=_recency)
    runs: dict[str, list[tuple[BatchResult, TestResult]]] = defaultdict(list)
    for result in ordered:
        for test in result.tests:
            runs[test.id].append((result, test))
    cases = [_final_case(test_id, test_runs, index) for test_id, test_runs in runs.items()]
    empty = {unit for result in ordered for unit in result.empty_units}
    cases += _never_ran(ordered, cases, empty, index, skipped or {})
    accounted = {case.unit for case in cases} | empty
    cases += [_skipped_case(unit, (skipped or {})[unit]) if unit in (skipped or {})
              else _lost_case(unit, (lost_reasons or {}).get(unit))
              for unit in units if unit not in accounted]
    return RunReport(
        _in_plan_order(cases, units), units, tuple(results),
        tuple(unit for unit in units if unit in empty and unit not in
              {case.unit for case in cases}),
        tuple(dict.fromkeys(case.file for case in cases if not case.unit)),
        _attempts(ordered),
        tuple(dict.fromkeys(f"{note}; shardrun's own --fail-fast [N] stops the whole run"
                            for result in ordered for note in result.notes if note)),
    )


def _recency(result: BatchResult) -> tuple[int, float]:
    return result.attempt, result.finished_at


def _final_case(
    test_id: str, runs: Sequence[tuple[BatchResult, TestResult]], index: UnitIndex
) -> CaseResult:
    """The latest attempt that ran the test (one that never ran only when none did),
    with every other failed attempt inside it."""
    ran = [run for run in runs if run[1].origin != NEVER_RAN]
    result, final = (ran or list(runs))[-1]
    earlier = tuple(_attempt(run_result, test) for run_result, test in runs
                    if test is not final and test.failed)
    failed_before = [run_result for run_result, test in ran if test is not final and test.failed]
    passed_again = final.outcome == "passed" and bool(failed_before)
    polluted = passed_again and not result.reused_runner and all(
        run_result.reused_runner for run_result in failed_before)
    unit = index.unit_of(test_id) or (index.unit_of(final.unit) if final.unit else None)
    return CaseResult(
        name=final.name or test_id, classname=final.classname, file=final.file,
        unit=unit or "", seconds=final.seconds, outcome=final.outcome, message=final.message,
        line=_line_to_look_at(final), batch_id=result.batch_id, worker=result.worker,
        attempt=result.attempt, details=final.details, result_type=final.result_type,
        system_out=final.stdout, system_err=final.stderr, flaky=passed_again and not polluted,
        id=test_id, earlier=earlier, origin=final.origin, polluted=polluted,
        shared_seconds=final.shared_seconds,
    )


def _line_to_look_at(test: TestResult) -> int | None:
    """For a failure, the failing line in its backtrace when the test's own file appears
    there; else the line the runner gave for the test."""
    if test.failed and test.origin == "":
        return _failure_line(test.file, test.details, test.message) or test.line
    return test.line


def _attempt(result: BatchResult, test: TestResult) -> Attempt:
    return Attempt(test.outcome, test.message, test.details, test.result_type, test.seconds,
                   result.attempt, result.worker, result.batch_id, test.stdout, test.stderr,
                   result.reused_runner)


def _never_ran(
    ordered: Sequence[BatchResult], cases: Sequence[CaseResult], empty: set[str],
    index: UnitIndex, skipped: Mapping[str, str],
) -> list[CaseResult]:
    """Errors for what a batch sent back unrun and no later batch ran: "never ran: why".

    An item is a unit or a test id; a later case held by it, a clean empty run of it, or
    a --fail-fast skip settles it instead."""
    reasons: dict[str, tuple[str, BatchResult]] = {}
    for result in ordered:
        for item in result.unrun:
            reasons[item] = (result.unrun_reason, result)
    ran: dict[str, list[str]] = defaultdict(list)
    for case in cases:
        if case.origin != NEVER_RAN:
            ran[file_of_unit(case.id)].append(case.id)
    lost = []
    for item, (reason, result) in reasons.items():
        settled = item in empty or any(holds(item, test_id)
                                       for test_id in ran.get(file_of_unit(item), ()))
        if settled:
            continue
        unit = index.unit_of(item) or item
        if item in skipped or unit in skipped:
            lost.append(_skipped_case(item, skipped.get(item) or skipped[unit], unit))
        else:
            lost.append(_unrun_case(item, unit, reason, result))
    return lost


def _unrun_case(item: str, unit: str, reason: str, result: BatchResult) -> CaseResult:
    file = file_of_unit(item)
    return CaseResult(
        name=item, classname=file, file=file, unit=unit, seconds=0.0, outcome="error",
        message=f"never ran: {reason}", line=None, batch_id=result.batch_id,
        worker=result.worker, attempt=result.attempt, result_type=CRASH_ERROR_TYPE,
        system_out=result.outcome.output_tail, id=item, origin=NEVER_RAN,
    )


def _skipped_case(item: str, reason: str, unit: str | None = None) -> CaseResult:
    file = file_of_unit(item)
    return CaseResult(
        name=item, classname=file, file=file, unit=unit or item, seconds=0.0,
        outcome="skipped", message=reason, line=None, batch_id=-1, worker="", attempt=0,
        id=item, origin=SKIPPED_ORIGIN,
    )


def _lost_case(unit: str, reason: str | None = None) -> CaseResult:
    file = file_of_unit(unit)
    return CaseResult(
        name=unit, classname=file, file=file, unit=unit, seconds=0.0, outcome="error",
        message=f"{NO_RESULT} ({reason})" if reason else NO_RESULT, line=None,
        batch_id=-1, worker="", attempt=0,
        result_type=CRASH_ERROR_TYPE, id=unit, origin=NO_RESULT_ORIGIN,
    )


def _attempts(ordered: Iterable[BatchResult]) -> dict[str, int]:
    attempts: dict[str, int] = {}
    for result in ordered:
        for unit in result.units:
            attempts[unit] = max(attempts.get(unit, 0), result.attempt)
    return attempts


def _failure_line(file: str, *texts: str) -> int | None:
    """The line of `file` in a backtrace: rspec writes `./spec/a_spec.rb:12:in ...`, pytest
    `tests/t.py:12: AssertionError`. The last mention is the example's own frame in rspec
    (innermost frames come first) and the failing assert in pytest (it ends the text)."""
    if not file:
        return None
    pattern = re.compile(r"(?<![\w-])" + re.escape(file) + r":(\d+)")
    for text in texts:
        lines = pattern.findall(text)
        if lines:
            return int(lines[-1])
    return None


def _in_plan_order(cases: Sequence[CaseResult], units: Sequence[str]) -> tuple[CaseResult, ...]:
    """Planned files first, in plan order; a file's tests keep the order they ran in."""
    position = {file: index for index, file in enumerate(dict.fromkeys(map(file_of_unit, units)))}
    return tuple(sorted(cases, key=lambda case: (position.get(case.file, len(position)),
                                                 case.file, case.batch_id, case.attempt)))


def latest_per_shard(results: Iterable[BatchResult]) -> list[BatchResult]:
    latest = {result.batch_id: result for result in sorted(results, key=_recency)}
    return [latest[index] for index in sorted(latest)]
