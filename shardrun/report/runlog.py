"""Run records: what one run did, kept in the timing history for the dashboard.

Why a module of its own: the report (report.py) says *what* the tests did; a run record
says *how the run went*: which worker ran which batch when, how close the plan came, how
much time went to idling and to starting test processes. The dashboard charts those
records across runs, and the capacity advice reuses the boot overhead measured here.

Pure (DESIGN.md rule 1): plan + results + report + a timestamp in, a RunRecord out
(records.py: the record as data, its JSON shape and how it is read back).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from shardrun.models import BatchResult, Plan
from shardrun.plan.history import History
from shardrun.plan.timings import file_of_unit
from shardrun.report.merge import FAILED_OUTCOMES, CaseResult, RunReport
from shardrun.report.records import (
    RUN_RECORD_VERSION,
    BatchRecord,
    Origin,
    RunRecord,
    WorkerRecord,
)

# Failed test ids kept per record: enough for the failure history of any suite that is
# not broken wholesale, while a run with 5,000 failures does not bloat the history.
FAILED_KEPT = 200
# Runs whose measured boot overhead feeds the cost model (their median): recent enough to
# follow a slower app boot, enough to ignore one cold CI cache.
BOOT_RUNS = 10
# A run's per-unit cost (unit_seconds) is fitted from at least this many batches.
MIN_FIT_BATCHES = 4
# pytest's 5 ("no tests collected") is a clean run of units with no examples.
_CLEAN_EXIT_CODES = frozenset({0, 5})
# Seconds are rounded to milliseconds: finer than any CI clock is worth, and the history
# file (which teams commit) stays readable.
_DIGITS = 3


def batch_outcome(result: BatchResult) -> str:
    """One of records.OUTCOMES for a batch: how its process ended, not what its tests said."""
    outcome = result.outcome
    if outcome.timed_out:
        return "timed_out"
    if result.error or outcome.signal is not None:
        return "crashed"
    return "passed" if outcome.exit_code in _CLEAN_EXIT_CODES else "failed"


def _case_seconds_by_batch(report: RunReport) -> dict[tuple[int, int, str], float]:
    """Testcase seconds per (shard index, attempt, worker): the time spent inside tests."""
    seconds: dict[tuple[int, int, str], float] = defaultdict(float)
    for case in report.cases:
        seconds[(case.batch_id, case.attempt, case.worker)] += case.seconds
    return seconds


def _batch(result: BatchResult, case_seconds: float | None) -> BatchRecord:
    return BatchRecord(
        index=result.batch_id,
        attempt=result.attempt,
        worker=result.worker,
        worker_index=result.worker_index,
        start=round(result.started_at, _DIGITS),
        end=round(result.finished_at, _DIGITS),
        predicted_seconds=round(result.predicted_seconds, _DIGITS),
        actual_seconds=round(result.outcome.wall_seconds, _DIGITS),
        case_seconds=None if case_seconds is None else round(case_seconds, _DIGITS),
        outcome=batch_outcome(result),
        warm=result.warm,
        unit_count=len(result.units),
        units=tuple(result.units),
    )


def batches(results: Sequence[BatchResult], report: RunReport) -> list[BatchRecord]:
    """One entry per result (a shard, or a queue batch; every attempt), in start order.

    `case_seconds` is None for an attempt the report superseded: its testcases were
    replaced by a later attempt's, so the time it spent inside tests is unknown.
    """
    case_seconds = _case_seconds_by_batch(report)
    ordered = sorted(results, key=lambda r: (r.started_at, r.worker_index, r.batch_id))
    return [
        _batch(result, case_seconds.get((result.batch_id, result.attempt, result.worker)))
        for result in ordered
    ]


def _per_worker(batch_list: Sequence[BatchRecord], wall: float) -> list[WorkerRecord]:
    """Busy time (sum of its batches), span (first start to last end) and idle = wall - busy."""
    grouped: dict[str, list[BatchRecord]] = defaultdict(list)
    for batch in batch_list:
        grouped[batch.worker].append(batch)
    rows = []
    for worker, own in grouped.items():
        busy = sum(batch.actual_seconds for batch in own)
        span = max(b.end for b in own) - min(b.start for b in own)
        rows.append(WorkerRecord(
            worker=worker,
            worker_index=own[0].worker_index,
            batches=len(own),
            busy_seconds=round(busy, _DIGITS),
            span_seconds=round(span, _DIGITS),
            idle_seconds=round(max(wall - busy, 0.0), _DIGITS),
        ))
    return sorted(rows, key=lambda row: (row.worker_index, row.worker))


def boot_overhead(
    batch_list: Iterable[BatchRecord], *, warm: bool | None = None
) -> tuple[float, int]:
    """Seconds spent outside testcases (process start, framework load, JUnit writing),
    summed over batches that ran to the end, and how many batches that sum covers.

    Crashed and timed-out batches are left out: their wall time is not start-up cost.
    `warm` keeps only the batches that did (True) or did not (False) run in a warm
    runner an earlier batch had started; None keeps both.
    """
    total, counted = 0.0, 0
    for batch in batch_list:
        if warm is not None and batch.warm != warm:
            continue
        if batch.outcome in ("passed", "failed") and batch.case_seconds is not None:
            total += max(batch.actual_seconds - batch.case_seconds, 0.0)
            counted += 1
    return total, counted


def flaky_tests(report: RunReport) -> list[str]:
    """Ids of the tests the report calls flaky (failed, then passed on a retry), sorted.

    Read through getattr: `RunReport.flaky` (testcases) came with the dynamic queue mode,
    and a report without it simply has none. Plain strings are taken as ids already.
    """
    ids = {item if isinstance(item, str) else case_id(item)
           for item in getattr(report, "flaky", ()) or ()}
    return sorted(found for found in ids if found)


def case_id(case: CaseResult) -> str:
    """A test's id that names its file first: the id its framework selects it by."""
    return case.id or f"{case.file or case.classname}::{case.name}"


def _extent(batch_list: Sequence[BatchRecord], recorded_at: float) -> tuple[float, float]:
    if not batch_list:
        return recorded_at, recorded_at
    return min(b.start for b in batch_list), max(b.end for b in batch_list)


def failed_tests(report: RunReport) -> list[str]:
    """Ids of the tests that failed or errored in the merged report, sorted, at most
    FAILED_KEPT: the dashboard's failure history per test."""
    ids = {case_id(case) for case in report.cases if case.outcome in FAILED_OUTCOMES}
    return sorted(found for found in ids if found)[:FAILED_KEPT]


def build_run_record(
    run_id: str, plan: Plan, results: Sequence[BatchResult], report: RunReport,
    recorded_at: float, *, timed: bool = True, run_started_at: float | None = None,
    origin: Mapping[str, str | None] | None = None,
) -> RunRecord:
    """The record of one run (docs/dashboard.md, "Run records").

    With `run_started_at` (the command's start, planning included) the run spans from it
    to `recorded_at`, so `wall_seconds` is the time the terminal reported ("in N s"): one
    wall time everywhere. Without, the first batch start and last batch end (`recorded_at`
    standing in when no batch came back).
    """
    batch_list = batches(results, report)
    started_at, finished_at = _extent(batch_list, recorded_at)
    if run_started_at is not None:
        started_at, finished_at = min(run_started_at, started_at), recorded_at
    wall = max(finished_at - started_at, 0.0)
    workers = _per_worker(batch_list, wall)
    cold, started = boot_overhead(batch_list, warm=False)
    warm, reused = boot_overhead(batch_list, warm=True)
    known = origin or {}
    return RunRecord(
        version=RUN_RECORD_VERSION, run_id=run_id,
        origin=Origin(known.get("commit"), known.get("branch"), known.get("build")),
        started_at=round(started_at, _DIGITS), finished_at=round(finished_at, _DIGITS),
        wall_seconds=round(wall, _DIGITS),
        makespan=max((row.span_seconds for row in workers), default=0.0),
        workers=plan.workers, predicted_makespan=round(plan.predicted_makespan, _DIGITS),
        lower_bound=round(plan.lower_bound, _DIGITS), bounding_unit=plan.bounding_unit,
        timed=timed, idle_seconds=round(sum(row.idle_seconds for row in workers), _DIGITS),
        boot_overhead_seconds=round(cold + warm, _DIGITS),
        boot_seconds_per_batch=round(cold / started, _DIGITS) if started else None,
        warm_seconds_per_batch=round(warm / reused, _DIGITS) if reused else None,
        retries=sum(1 for result in results if result.attempt > 1),
        passed=report.passed, tests=report.tests, failures=report.failures,
        errors=report.errors, skipped=report.skipped,
        suite_seconds=round(report.seconds, _DIGITS), flaky=tuple(flaky_tests(report)),
        failed=tuple(failed_tests(report)),
        polluted=tuple(sorted(case_id(case) for case in getattr(report, "polluted", ()))),
        per_worker=tuple(workers), batches=tuple(batch_list),
    )


def record_run(
    history: History, run_id: str, plan: Plan, results: Sequence[BatchResult],
    report: RunReport, recorded_at: float, *, timed: bool = True,
    run_started_at: float | None = None, origin: Mapping[str, str | None] | None = None,
) -> RunRecord:
    """Build this run's record and add it to the history (the one call `finish` makes)."""
    record = build_run_record(run_id, plan, results, report, recorded_at, timed=timed,
                              run_started_at=run_started_at, origin=origin)
    history.add_run(record)
    return record


def flaky_counts(records: Iterable[RunRecord]) -> dict[str, int]:
    """Per file: in how many of these runs one of its units was flaky."""
    counts: dict[str, int] = defaultdict(int)
    for record in records:
        for file in {file_of_unit(unit) for unit in record.flaky}:
            counts[file] += 1
    return dict(counts)


def boot_seconds(runs: Sequence[RunRecord]) -> float:
    """Median start-up cost of a batch in a fresh process over the last BOOT_RUNS runs
    that measured one, or 0.

    One source for the dashboard's capacity advice and queue mode's batch sizes."""
    return _recent_median([run.boot_seconds_per_batch for run in runs])


def warm_batch_seconds(runs: Sequence[RunRecord]) -> float:
    """Median cost outside testcases of a batch in a warm runner (shardrun/work/warm.py), or 0.

    What every batch after a worker's first costs: queue mode's batch sizes follow it."""
    return _recent_median([run.warm_seconds_per_batch for run in runs])


def unit_seconds(runs: Sequence[RunRecord], *, warm: bool) -> float:
    """Median, over the last BOOT_RUNS runs, of what each unit adds to a batch outside its
    testcases (loading its file, the formatter's work per example), or 0; from the
    batches that did (`warm`) or did not run in a warm runner.

    A unit's estimate is its testcases' seconds; a batch of 126 files of a few
    milliseconds each was predicted at 0.88 s and took 1.4-1.6 s (bench/stale_rspec.py),
    the cost of loading those files. The slope of (a batch's time outside testcases)
    over (its unit count), fitted per run by least squares over its warm batches, prices
    it; a run whose batches all hold as many units says nothing about it."""
    return batch_cost(runs, warm=warm)[1]


def fixed_batch_seconds(runs: Sequence[RunRecord], *, warm: bool) -> float | None:
    """What a batch costs outside its testcases whatever units it holds: the intercept of
    the fit `unit_seconds` takes its slope from (median over the runs that had one), or
    None when no run had one.

    `warm_batch_seconds` is a batch's whole cost outside its testcases, per-unit part
    included; with that part also in every unit's estimate, a batch was priced at 0.3 s
    where forking a warm RSpec runner for it costs 0.04 s (rspec-expectations), and
    queue mode made batches too few to even out the end of the run."""
    return batch_cost(runs, warm=warm)[0]


def batch_cost(runs: Sequence[RunRecord], *, warm: bool) -> tuple[float | None, float]:
    """(`fixed_batch_seconds`, `unit_seconds`) from one pass over the runs' fits."""
    fits = [fit for fit in (_batch_fit(run.batches, warm) for run in runs[-BOOT_RUNS:])
            if fit is not None]
    if not fits:
        return None, 0.0
    return _recent_median([f[0] for f in fits]), _recent_median([f[1] for f in fits])


def _batch_fit(batch_list: Iterable[BatchRecord], warm: bool) -> tuple[float, float] | None:
    """(seconds per batch, seconds per unit) outside testcases, both at least 0."""
    points = [(float(batch.unit_count), max(batch.actual_seconds - batch.case_seconds, 0.0))
              for batch in batch_list
              if batch.warm == warm and batch.outcome in ("passed", "failed")
              and batch.case_seconds is not None and batch.unit_count > 0]
    if len(points) < MIN_FIT_BATCHES:
        return None
    units, outside = [x for x, _ in points], [y for _, y in points]
    try:
        slope, intercept = statistics.linear_regression(units, outside)
    except statistics.StatisticsError:  # every batch held as many units
        return None
    if slope < 0:  # larger batches cost no more: all of it is per batch
        return statistics.fmean(outside), 0.0
    if intercept < 0:  # all of it is per unit: the fit through the origin
        return 0.0, math.fsum(x * y for x, y in points) / math.fsum(x * x for x in units)
    return intercept, slope


def _recent_median(per_run: Sequence[float | None]) -> float:
    measured = [seconds for seconds in per_run[-BOOT_RUNS:] if seconds is not None]
    return statistics.median(measured) if measured else 0.0
