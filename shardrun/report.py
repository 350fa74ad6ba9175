"""Merge the shards' JUnit XML into one report: exactly-once accounting, JSON, CI XML.

Pure (DESIGN.md rule 1): data in, data out; the only file access is `write_junit`.
Every planned unit ends in exactly one place: the testcases of the latest attempt that ran
it, "ran with zero examples", or an error testcase saying why nothing came back. So a
worker that dies, hangs or writes garbage can never turn the run green.

The terminal summary and the rerun command are worded in summary.py, which imports this
module (never the reverse).
"""

from __future__ import annotations

import math
import re
import signal
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as safe_etree
from defusedxml import DefusedXmlException
from junitparser import Attr, Error, Failure, JUnitXml, JUnitXmlError, Skipped, TestCase, TestSuite

from shardrun.models import ShardResult
from shardrun.timings import file_of_unit, testcase_file

REPORT_FORMAT_VERSION = 1
CRASH_ERROR_TYPE = "shardrun.crash"  # `type` of the error testcases that stand for lost units
NO_RESULT = "no result from any worker"
# After these exit codes a unit without testcases really ran zero examples:
# 0 (everything passed) and pytest's 5 ("no tests collected").
_EMPTY_RUN_EXIT_CODES = frozenset({0, 5})
# rspec and pytest both exit 1 for "some tests failed". Any other nonzero code (pytest 2
# interrupted, 3 internal error), or 1 with no failing testcase (rspec when a spec file
# fails to load: it then runs no example at all), means examples may not have run.
_TESTS_FAILED_EXIT_CODE = 1
# Outcomes that fail the run; summary.py lists and reruns the testcases that have them.
FAILED_OUTCOMES = ("failed", "error")
_SIGNAL_NAMES = {member.value: member.name for member in signal.Signals}


@dataclass(frozen=True)
class CaseResult:
    """One testcase of the merged run and where it ran; `unit` is the planned unit it counts for."""

    name: str
    classname: str
    file: str
    unit: str
    seconds: float
    outcome: str  # "passed" | "failed" | "error" | "skipped"
    message: str
    line: int | None
    shard_index: int  # -1: no worker ever reported the unit
    worker: str
    attempt: int
    details: str = ""  # body of <failure>/<error>/<skipped>: the backtrace
    result_type: str = ""  # its `type` attribute, e.g. "AssertionError" or CRASH_ERROR_TYPE
    system_out: str = ""
    system_err: str = ""
    flaky: bool = False  # failed in an earlier attempt, passed in the latest


@dataclass(frozen=True)
class RunReport:
    """The merged run; `units` holds every planned unit exactly once."""

    cases: tuple[CaseResult, ...]
    units: tuple[str, ...]
    results: tuple[ShardResult, ...]
    empty_units: tuple[str, ...] = ()  # ran cleanly with zero examples (no testcase)
    unplanned_files: tuple[str, ...] = ()  # had testcases, but nobody planned them
    attempts: dict[str, int] = field(default_factory=dict)  # unit -> times dispatched
    # Units vouched for by a testcase, including rspec example ids whose testcases were
    # credited to a sibling id of the same file (rspec's JUnit names no example id).
    covered: frozenset[str] = frozenset()

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
        """The error testcases standing for units whose runner died or never reported."""
        return tuple(case for case in self.cases if case.result_type == CRASH_ERROR_TYPE)

    @property
    def flaky(self) -> tuple[CaseResult, ...]:
        return tuple(case for case in self.cases if case.flaky)

    @property
    def missing(self) -> tuple[str, ...]:
        """Units no worker ever reported: the run cannot vouch for them (exit 3)."""
        return tuple(case.unit for case in self.crashed if case.message == NO_RESULT)

    @property
    def passed(self) -> bool:
        accounted = {case.unit for case in self.cases} | set(self.empty_units) | self.covered
        return not self.failures and not self.errors and accounted.issuperset(self.units)

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary: counts, what failed and where, each shard's predicted vs actual."""
        bulky = ("details", "system_out", "system_err")
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
            "flaky": [f"{case.classname} {case.name}" for case in self.flaky],
            "missing_units": list(self.missing),
        }


def _shard_dict(result: ShardResult) -> dict[str, Any]:
    outcome = result.outcome
    return {"index": result.shard_index, "attempt": result.attempt, "worker": result.worker,
            "predicted_seconds": round(result.predicted_seconds, 6),
            "actual_seconds": round(outcome.wall_seconds, 6), "exit_code": outcome.exit_code,
            "signal": outcome.signal, "timed_out": outcome.timed_out, "error": result.error}


# --- reading one worker's JUnit


class _SourceCase(TestCase):
    """junitparser's testcase plus the `file`/`line` attributes rspec and xunit1 write."""

    file = Attr()
    line = Attr()


class _SourceSuite(TestSuite):
    testcase = _SourceCase


class _SourceXml(JUnitXml):
    testsuite = _SourceSuite


def _parse_junit(result: ShardResult) -> tuple[list[CaseResult], str | None]:
    """The result's testcases, or why its JUnit is unusable; never raises on bad input.

    defusedxml parses (the text comes from another host: no DTD, no entity expansion) and
    junitparser reads the tree.
    """
    if not result.junit_xml or not result.junit_xml.strip():
        return [], "no JUnit written"
    try:
        root = safe_etree.fromstring(result.junit_xml, forbid_dtd=True)
        return [_case_from(case, result) for suite in _SourceXml.fromroot(root)
                for case in suite], None
    except (ParseError, DefusedXmlException, JUnitXmlError, ValueError, TypeError) as exc:
        return [], f"malformed JUnit XML ({type(exc).__name__}: {exc})"


def _case_from(case: _SourceCase, result: ShardResult) -> CaseResult:
    outcome, entry = _outcome_of(case)
    file = testcase_file(case.classname, case.file, case.name) or ""
    message = (entry.message or "") if entry is not None else ""
    details = (entry.text or "") if entry is not None else ""
    line_attribute = int(case.line) if (case.line or "").isdigit() else None
    return CaseResult(
        name=case.name or "", classname=case.classname or "", file=file, unit="",
        seconds=_seconds_of(case), outcome=outcome, message=message,
        line=_failure_line(file, details, message) or line_attribute,
        shard_index=result.shard_index, worker=result.worker, attempt=result.attempt,
        details=details, result_type=(entry.type or "") if entry is not None else "",
        system_out=case.system_out or "", system_err=case.system_err or "",
    )


def _seconds_of(case: TestCase) -> float:
    """The testcase's time; a negative (clock skew) or non-finite one counts as 0."""
    seconds = case.time or 0.0
    return seconds if math.isfinite(seconds) and seconds > 0 else 0.0


def _outcome_of(case: TestCase) -> tuple[str, Error | Failure | Skipped | None]:
    """The worst result element wins: error over failure over skipped."""
    entries = case.result
    for kind, outcome in ((Error, "error"), (Failure, "failed"), (Skipped, "skipped")):
        for entry in entries:
            if isinstance(entry, kind):
                return outcome, entry
    return "passed", None


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


# --- accounting


def merge(
    planned_units: Sequence[str],
    results: Sequence[ShardResult],
    skipped: Mapping[str, str] | None = None,
) -> RunReport:
    """Account for every planned unit exactly once (see the module docstring).

    When results overlap (a retry, a duplicate delivery) a unit belongs to the latest one
    by (attempt, finished_at); earlier results' testcases for it are dropped, and so is
    any earlier testcase a later result ran again (a retried example of a file whose
    other examples stay with the first run). A testcase that failed there and passes in
    the latest is marked flaky. `skipped` maps units deliberately not run (fail-fast) to
    the reason; they become skipped testcases.
    """
    units = tuple(dict.fromkeys(planned_units))
    ordered = sorted(results, key=_recency)
    tally = _Tally(units, ordered)
    for index, result in enumerate(ordered):
        tally.add(index, result)
    reasons = skipped or {}
    cases = _drop_superseded(tally.kept) + tally.lost
    cases += [_skipped_case(unit, reasons[unit]) if unit in reasons
              else _lost_case(unit, NO_RESULT, None) for unit in units if unit not in tally.owner]
    cases += [case for file_cases in tally.unplanned.values() for case in file_cases]
    cases = [_mark_flaky(case, tally.failed_before) for case in cases]
    attempts: dict[str, int] = {}
    for result in ordered:
        for unit in result.units:
            attempts[unit] = max(attempts.get(unit, 0), result.attempt)
    return RunReport(
        _in_plan_order(cases, units), units, tuple(results),
        tuple(unit for unit in units if unit in tally.ran_empty), tuple(tally.unplanned),
        attempts, frozenset(tally.covered),
    )


class _Tally:
    """What merge learns from each result, oldest first."""

    def __init__(self, units: tuple[str, ...], ordered: Sequence[ShardResult]):
        self.planned = set(units)
        self.planned_files = {file_of_unit(unit) for unit in units}
        self.owner = {unit: index for index, result in enumerate(ordered) for unit in result.units}
        self.kept: list[list[CaseResult]] = []
        self.lost: list[CaseResult] = []
        self.ran_empty: set[str] = set()
        self.unplanned: dict[str, list[CaseResult]] = {}
        self.failed_before: set[tuple[str, str, str]] = set()
        self.covered: set[str] = set()

    def add(self, index: int, result: ShardResult) -> None:
        owned = [unit for unit in dict.fromkeys(result.units)
                 if self.owner[unit] == index and unit in self.planned]
        parsed, problem = _parse_junit(result)
        self.failed_before.update(_key(c) for c in parsed if c.outcome in FAILED_OUTCOMES)
        kept = _credit(parsed, owned)
        self.covered.update(_covered(owned, kept))
        lost, empty = _uncovered(result, owned, kept, parsed, problem)
        self.kept.append(kept)
        self.lost += lost
        self.ran_empty.update(empty)
        reported: dict[str, list[CaseResult]] = defaultdict(list)
        for case in parsed:
            if case.file not in self.planned_files:
                reported[case.file].append(case)
        self.unplanned.update(reported)  # a later result reporting an unplanned file wins


def _drop_superseded(kept_per_result: Sequence[Sequence[CaseResult]]) -> list[CaseResult]:
    """Each result's testcases, minus those a later result ran again (same file,
    classname and name). Same-named testcases within one result all stay."""
    last_result = {_key(case): index for index, kept in enumerate(kept_per_result)
                   for case in kept}
    return [case for index, kept in enumerate(kept_per_result) for case in kept
            if last_result[_key(case)] == index]


def _key(case: CaseResult) -> tuple[str, str, str]:
    return case.file, case.classname, case.name


def _mark_flaky(case: CaseResult, failed_before: set[tuple[str, str, str]]) -> CaseResult:
    if case.outcome == "passed" and case.attempt > 1 and _key(case) in failed_before:
        return replace(case, flaky=True)
    return case


def _skipped_case(unit: str, reason: str) -> CaseResult:
    file = file_of_unit(unit)
    return CaseResult(
        name=unit, classname=file, file=file, unit=unit, seconds=0.0, outcome="skipped",
        message=reason, line=None, shard_index=-1, worker="", attempt=0,
    )


def _credit(parsed: Iterable[CaseResult], owned: Sequence[str]) -> list[CaseResult]:
    """The testcases that count for `owned` units, each tagged with its unit."""
    by_file: dict[str, list[str]] = defaultdict(list)
    for unit in owned:
        by_file[file_of_unit(unit)].append(unit)
    credited = ((case, _unit_for(case, by_file.get(case.file, []))) for case in parsed)
    return [replace(case, unit=unit) for case, unit in credited if unit is not None]


def _unit_for(case: CaseResult, candidates: Sequence[str]) -> str | None:
    """Which of the units of the case's file ran it.

    The file itself; else the pytest node id or a unit it starts with (a class, or a test
    without its parameters); else the first unit of the file. rspec's JUnit carries no
    example id, so a split spec file's examples are all credited to its first example id
    in that shard (and `_covered` counts the sibling ids as covered).
    """
    if not candidates:
        return None
    if case.file in candidates:
        return case.file
    node_id = pytest_node_id(case)
    if node_id is None:
        return candidates[0]
    for unit in candidates:
        if node_id == unit or node_id.startswith((unit + "::", unit + "[")):
            return unit
    # A pytest testcase names its node: none of these units ran it. It belongs to a unit
    # another result owns (e.g. the retry of a failed example), which keeps the latest.
    return None


def pytest_node_id(case: CaseResult) -> str | None:
    """`tests/t.py::T::test_x` from xunit2's classname `tests.t.T` and name `test_x`."""
    if not case.file.endswith(".py") or not case.name:
        return None
    module = case.file[: -len(".py")].replace("/", ".")
    if case.classname != module and not case.classname.startswith(module + "."):
        return None
    classes = case.classname[len(module) + 1 :].split(".") if case.classname != module else []
    return "::".join([case.file, *classes, case.name])


def _covered(owned: Sequence[str], kept: Sequence[CaseResult]) -> set[str]:
    """Units with testcases. An rspec example id (`spec/a_spec.rb[1:2]`) also counts when
    its file has testcases, since rspec's JUnit cannot say which id a testcase came from."""
    files = {case.file for case in kept}
    siblings = {unit for unit in owned
                if "[" in unit and "::" not in unit and file_of_unit(unit) in files}
    return {case.unit for case in kept} | siblings


def _uncovered(
    result: ShardResult, owned: Sequence[str], kept: Sequence[CaseResult],
    parsed: Sequence[CaseResult], problem: str | None,
) -> tuple[list[CaseResult], list[str]]:
    """Error testcases for the result's units that lost their run, or else the units that
    truly ran zero examples."""
    covered = _covered(owned, kept)
    missing = [unit for unit in owned if unit not in covered]
    failing = any(case.outcome in FAILED_OUTCOMES for case in parsed)
    reason = _crash_reason(result, problem, failing) if missing else None
    if reason is None:
        return [], missing
    return [_lost_case(unit, reason, result) for unit in missing], []


def _crash_reason(result: ShardResult, problem: str | None, failing: bool) -> str | None:
    """Why a unit of `result` has no testcase, or None when it ran zero examples."""
    outcome, code = result.outcome, result.outcome.exit_code
    exit_text = "no exit status" if code is None else f"exit code {code}"
    if result.error:
        return f"worker error: {result.error}"
    if outcome.timed_out:
        return f"timed out after {outcome.wall_seconds:.1f} s"
    if outcome.signal is not None:
        name = _SIGNAL_NAMES.get(outcome.signal, "unknown signal")
        return f"killed by signal {outcome.signal} ({name})"
    if problem is not None:
        return f"{problem}; {exit_text}"
    if code in _EMPTY_RUN_EXIT_CODES or (code == _TESTS_FAILED_EXIT_CODE and failing):
        return None  # a clean run, or failures that explain the exit code
    return f"{exit_text} and no testcase for this unit"


def _lost_case(unit: str, reason: str, result: ShardResult | None) -> CaseResult:
    file = file_of_unit(unit)
    return CaseResult(
        name=unit, classname=file, file=file, unit=unit, seconds=0.0, outcome="error",
        message=reason, line=None, shard_index=result.shard_index if result else -1,
        worker=result.worker if result else "", attempt=result.attempt if result else 0,
        result_type=CRASH_ERROR_TYPE, system_out=result.outcome.output_tail if result else "",
    )


def _in_plan_order(cases: Sequence[CaseResult], units: Sequence[str]) -> tuple[CaseResult, ...]:
    """Planned files first, in plan order; a file's testcases keep their JUnit order."""
    position = {file: index for index, file in enumerate(dict.fromkeys(map(file_of_unit, units)))}
    return tuple(sorted(cases, key=lambda case: (position.get(case.file, len(position)),
                                                 case.file, case.shard_index, case.attempt)))


def _recency(result: ShardResult) -> tuple[int, float]:
    return result.attempt, result.finished_at


def latest_per_shard(results: Iterable[ShardResult]) -> list[ShardResult]:
    latest = {result.shard_index: result for result in sorted(results, key=_recency)}
    return [latest[index] for index in sorted(latest)]
