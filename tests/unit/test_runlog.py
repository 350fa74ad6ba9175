"""shardrun.report.runlog: run records built from a plan, shard results and the merged report;
shardrun.report.records: their JSON shape, read back (old versions, malformed ones); and the
history's "runs" section that keeps them (add_run, runs, the cap, slimming old runs).

Results are built from small JUnit texts (as a worker settles a `command` batch) so the
report is a real `merge`; times are chosen so every
derived number (makespan, idle, boot overhead) can be checked by hand.
"""

from __future__ import annotations

import json
import logging
import re
import signal
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import pytest

from shardrun.models import BatchResult, Plan, ProcessOutcome, Shard
from shardrun.plan.history import RUNS_KEPT, RUNS_WITH_UNITS, History
from shardrun.report.junit_reader import read_testcases
from shardrun.report.merge import CaseResult, RunReport, merge
from shardrun.report.records import BatchRecord, MalformedRecord, RunRecord, WorkerRecord
from shardrun.report.runlog import (
    RUN_RECORD_VERSION,
    batch_outcome,
    boot_seconds,
    build_run_record,
    case_id,
    fixed_batch_seconds,
    flaky_counts,
    flaky_tests,
    record_run,
    unit_seconds,
    warm_batch_seconds,
)
from shardrun.work.accounting import reconcile_junit

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def junit(*cases: tuple[str, float]) -> str:
    """pytest-style xunit1 JUnit: one passing testcase per (file, seconds)."""
    body = "".join(
        f'<testcase classname="{file[:-3].replace("/", ".")}" name="test_{i}" file="{file}" '
        f'time="{seconds}"/>'
        for i, (file, seconds) in enumerate(cases)
    )
    return f'<?xml version="1.0"?><testsuite name="pytest" tests="{len(cases)}">{body}</testsuite>'


def result(
    index: int, units: tuple[str, ...], *, worker: int, start: float, wall: float,
    xml: str | None, attempt: int = 1, exit_code: int | None = 0, sig: int | None = None,
    timed_out: bool = False, error: str | None = None, predicted: float = 1.0,
) -> BatchResult:
    outcome = ProcessOutcome(exit_code, sig, timed_out, wall, wall, 1024)
    tests, problem = read_testcases(xml)
    settled = reconcile_junit(units, tests, outcome, error=error, problem=problem)
    return BatchResult(
        run_id="run", batch_id=index, attempt=attempt, worker=f"host:{100 + worker}",
        worker_index=worker, units=units, outcome=outcome,
        started_at=T0 + start, finished_at=T0 + start + wall, predicted_seconds=predicted,
        tests=settled.tests, unrun=settled.unrun, unrun_reason=settled.unrun_reason,
        empty_units=settled.empty_units, error=error,
    )


PLAN = Plan(
    workers=2,
    shards=(Shard(0, ("tests/test_a.py",), 3.0), Shard(1, ("tests/test_b.py",), 2.0),
            Shard(2, ("tests/test_c.py",), 1.0)),
    predicted_makespan=3.0, lower_bound=3.0, total_seconds=6.0,
)
FILES = ["tests/test_a.py", "tests/test_b.py", "tests/test_c.py"]


@pytest.fixture
def results() -> list[BatchResult]:
    """Worker 1 runs shard 0 (0-4 s); worker 2 runs shard 1 (0.5-2.5 s) then shard 2
    (3-4 s). Each batch spends 0.5 s outside its testcases."""
    return [
        result(0, ("tests/test_a.py",), worker=1, start=0.0, wall=4.0, predicted=3.0,
               xml=junit(("tests/test_a.py", 2.0), ("tests/test_a.py", 1.5))),
        result(1, ("tests/test_b.py",), worker=2, start=0.5, wall=2.0, predicted=2.0,
               xml=junit(("tests/test_b.py", 1.5))),
        result(2, ("tests/test_c.py",), worker=2, start=3.0, wall=1.0, predicted=1.0,
               xml=junit(("tests/test_c.py", 0.5))),
    ]


def record_of(results: list[BatchResult], report: RunReport | None = None) -> RunRecord:
    return build_run_record("run-1", PLAN, results, report or merge(FILES, results), T0 + 9)


# ---------------------------------------------------------------- batch outcomes


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "passed"),
        ({"exit_code": 5}, "passed"),  # pytest: no tests collected
        ({"exit_code": 1}, "failed"),
        ({"exit_code": 2}, "failed"),
        ({"exit_code": None, "sig": int(signal.SIGKILL)}, "crashed"),
        ({"error": "runner not found"}, "crashed"),
        ({"exit_code": None, "sig": int(signal.SIGKILL), "timed_out": True}, "timed_out"),
    ],
)
def test_batch_outcome(kwargs: dict, expected: str) -> None:
    shard = result(0, ("tests/test_a.py",), worker=1, start=0, wall=1, xml=None, **kwargs)
    assert batch_outcome(shard) == expected


# ---------------------------------------------------------------- the record


def test_run_numbers_follow_from_the_batches(results: list[BatchResult]) -> None:
    record = record_of(results)
    assert record.version == RUN_RECORD_VERSION
    assert (record.started_at, record.finished_at) == (T0, T0 + 4.0)
    assert record.wall_seconds == 4.0
    assert record.makespan == 4.0  # worker 1: 0-4 s; worker 2's span is 0.5-4 s
    assert (record.workers, record.predicted_makespan, record.lower_bound) == (2, 3.0, 3.0)
    assert record.per_worker == (
        WorkerRecord("host:101", 1, batches=1, busy_seconds=4.0, span_seconds=4.0,
                     idle_seconds=0.0),
        WorkerRecord("host:102", 2, batches=2, busy_seconds=3.0, span_seconds=3.5,
                     idle_seconds=1.0),
    )
    assert record.idle_seconds == 1.0
    assert record.boot_overhead_seconds == 1.5  # 0.5 s outside testcases per batch
    assert record.boot_seconds_per_batch == 0.5
    assert record.suite_seconds == 5.5
    assert (record.tests, record.failures, record.errors, record.skipped) == (4, 0, 0, 0)
    assert record.passed is True and record.retries == 0 and record.flaky == ()


def test_batches_are_in_start_order_with_their_files(results: list[BatchResult]) -> None:
    batches = record_of(list(reversed(results))).batches
    assert [b.index for b in batches] == [0, 1, 2]
    assert batches[2].to_dict() == {
        "index": 2, "attempt": 1, "worker": "host:102", "worker_index": 2,
        "start": T0 + 3.0, "end": T0 + 4.0, "predicted_seconds": 1.0, "actual_seconds": 1.0,
        "case_seconds": 0.5, "outcome": "passed", "warm": False, "unit_count": 1,
        "units": ["tests/test_c.py"],
    }


def test_boot_and_warm_batches_are_measured_apart(results: list[BatchResult]) -> None:
    """A batch in a warm runner paid no boot: it must not lower the boot estimate, and
    its own overhead is what queue mode sizes the later batches by."""
    warm = result(2, ("tests/test_c.py",), worker=2, start=3.0, wall=0.6,
                  xml=junit(("tests/test_c.py", 0.5)))
    record = record_of([*results[:2], replace(warm, warm=True)])
    assert record.batches[2].warm is True
    assert record.boot_seconds_per_batch == 0.5  # the two cold batches
    assert record.warm_seconds_per_batch == 0.1
    assert record.boot_overhead_seconds == 1.1
    runs = [record, replace(record, warm_seconds_per_batch=0.3),
            replace(record, warm_seconds_per_batch=None)]
    assert warm_batch_seconds(runs) == pytest.approx(0.2)
    assert warm_batch_seconds([replace(record, warm_seconds_per_batch=None)]) == 0.0


def _timed_batch(index: int, units: int, outside: float, *, warm: bool = True,
                 outcome: str = "passed") -> BatchRecord:
    return BatchRecord(index=index, attempt=1, worker="w1", worker_index=1, start=T0,
                       end=T0 + 1.0 + outside, predicted_seconds=1.0,
                       actual_seconds=1.0 + outside, case_seconds=1.0, outcome=outcome,
                       warm=warm, unit_count=units)


def test_unit_seconds_is_the_slope_of_the_time_outside_testcases_over_the_units(
    results: list[BatchResult],
) -> None:
    """A batch costs 0.05 s plus 5 ms per unit outside its testcases: the fit finds the
    5 ms; cold, crashed and too few batches say nothing."""
    record = record_of(results)
    warm = [_timed_batch(i, units, 0.05 + 0.005 * units)
            for i, units in enumerate((4, 20, 60, 126))]
    noise = [_timed_batch(9, 500, 30.0, outcome="crashed"), _timed_batch(8, 1, 9.0, warm=False)]
    run = replace(record, batches=(*warm, *noise))
    assert unit_seconds([run], warm=True) == pytest.approx(0.005)
    assert unit_seconds([run], warm=False) == 0.0  # one cold batch: no fit
    alike = replace(record, batches=tuple(_timed_batch(i, 10, 0.1) for i in range(5)))
    assert unit_seconds([alike], warm=True) == 0.0  # every batch as many units
    cheaper = replace(record, batches=tuple(_timed_batch(i, units, 1.0 - 0.001 * units)
                                            for i, units in enumerate((1, 50, 100, 200))))
    assert unit_seconds([cheaper], warm=True) == 0.0  # never negative
    assert unit_seconds([run, run, alike], warm=True) == pytest.approx(0.005)


def test_a_batch_costs_the_intercept_of_that_fit_and_each_unit_its_slope(
    results: list[BatchResult],
) -> None:
    """warm_batch_seconds holds the per-unit part too: queue mode, which adds that part
    to each unit, takes the fit's intercept as a batch's own cost."""
    record = record_of(results)
    run = replace(record, batches=tuple(_timed_batch(i, units, 0.05 + 0.005 * units)
                                        for i, units in enumerate((4, 20, 60, 126))))
    assert fixed_batch_seconds([run], warm=True) == pytest.approx(0.05)
    assert fixed_batch_seconds([run], warm=False) is None  # no cold batches: no fit
    assert fixed_batch_seconds([record], warm=True) is None  # too few batches
    cheaper = replace(record, batches=tuple(_timed_batch(i, units, 0.3 - 0.001 * units)
                                            for i, units in enumerate((1, 50, 100, 200))))
    # bigger batches cost no more: all per batch, the mean
    assert fixed_batch_seconds([cheaper], warm=True) == pytest.approx(0.3 - 0.001 * 351 / 4)
    assert unit_seconds([cheaper], warm=True) == 0.0
    per_unit_only = replace(record, batches=tuple(
        _timed_batch(i, units, 0.01 * units - (0.2 if units == 10 else 0.0))
        for i, units in enumerate((10, 20, 30, 40))))
    # outside (0, 0.2, 0.3, 0.4) s for (10, 20, 30, 40) units: the least-squares line
    # crosses 0 below zero, so none of it is per batch and the line goes through 0
    assert fixed_batch_seconds([per_unit_only], warm=True) == 0.0
    assert unit_seconds([per_unit_only], warm=True) == pytest.approx(
        (20 * 0.2 + 30 * 0.3 + 40 * 0.4) / (10**2 + 20**2 + 30**2 + 40**2))


def test_record_is_plain_json(results: list[BatchResult]) -> None:
    data = record_of(results).to_dict()
    assert json.loads(json.dumps(data)) == data


def test_retried_batch_counts_as_a_retry_and_its_first_attempt_has_no_case_time(
    results: list[BatchResult],
) -> None:
    lost = result(2, ("tests/test_c.py",), worker=1, start=4.0, wall=0.2, xml=None,
                  exit_code=None, sig=int(signal.SIGKILL))
    retried = result(2, ("tests/test_c.py",), worker=1, start=4.5, wall=1.0, attempt=2,
                     xml=junit(("tests/test_c.py", 0.5)))
    record = record_of([*results[:2], lost, retried])
    assert record.retries == 1
    first, second = (b for b in record.batches if b.index == 2)
    assert (first.outcome, first.case_seconds) == ("crashed", None)
    assert (second.outcome, second.attempt, second.case_seconds) == ("passed", 2, 0.5)
    assert record.boot_overhead_seconds == 1.5  # the crashed attempt is no start-up cost


def test_crashed_batch_is_left_out_of_boot_overhead(results: list[BatchResult]) -> None:
    crashed = result(2, ("tests/test_c.py",), worker=2, start=3.0, wall=1.0, xml=None,
                     exit_code=None, sig=int(signal.SIGSEGV))
    record = record_of([*results[:2], crashed])
    assert record.boot_overhead_seconds == 1.0
    assert record.boot_seconds_per_batch == 0.5
    assert record.errors == 1 and record.passed is False


def test_no_results_is_an_empty_run_at_the_recorded_time() -> None:
    record = build_run_record("run-0", PLAN, [], merge(FILES, []), T0)
    assert (record.started_at, record.finished_at, record.wall_seconds) == (T0, T0, 0.0)
    assert record.makespan == 0.0 and record.batches == () and record.per_worker == ()
    assert record.boot_seconds_per_batch is None
    assert record.errors == 3  # every planned file is an error testcase


def test_flaky_tests_come_from_the_report(results: list[BatchResult]) -> None:
    report = merge(FILES, results)
    assert flaky_tests(report) == []
    first, second, *rest = report.cases
    flaky = replace(report, cases=(replace(first, flaky=True), replace(second, flaky=True),
                                   *rest))
    assert flaky_tests(flaky) == ["tests/test_a.py::test_0", "tests/test_a.py::test_1"]
    assert list(record_of(results, flaky).flaky) == flaky_tests(flaky)


@dataclass(frozen=True)
class OtherReport:
    """A report whose `flaky` holds ids, or none at all: read through getattr."""

    flaky: tuple[str, ...] = ()


def test_flaky_tests_accept_ids_and_reports_without_flaky() -> None:
    assert flaky_tests(cast(RunReport, OtherReport(("b::y", "a::x", "b::y")))) == ["a::x", "b::y"]
    assert flaky_tests(cast(RunReport, object())) == []


def test_case_id_is_the_tests_own_id_and_names_its_file_first() -> None:
    rspec = CaseResult("A fails", "spec.a_spec", "spec/a_spec.rb", "spec/a_spec.rb", 1.0,
                       "passed", "", None, 0, "w", 1, id="spec/a_spec.rb[1:1]")
    assert case_id(rspec) == "spec/a_spec.rb[1:1]"
    assert case_id(replace(rspec, id="")) == "spec/a_spec.rb::A fails"


def test_flaky_counts_count_runs_per_file(results: list[BatchResult]) -> None:
    record = record_of(results)
    runs = [replace(record, flaky=flaky) for flaky in
            (("tests/a.py::t1", "tests/a.py::t2"), ("tests/a.py::t1",), ())]
    assert flaky_counts(runs) == {"tests/a.py": 2}


# ---------------------------------------------------------------- the history's runs section


def test_record_run_stores_the_record_and_it_survives_save_and_load(
    tmp_path: Path, results: list[BatchResult]
) -> None:
    history = History(tmp_path / "timings.json")
    record = record_run(history, "run-1", PLAN, results, merge(FILES, results), T0 + 9)
    history.save()
    assert History.load(tmp_path / "timings.json").runs() == [record]


def test_record_says_whether_the_plan_had_timings(results: list[BatchResult]) -> None:
    report = merge(FILES, results)
    assert build_run_record("run-1", PLAN, results, report, T0 + 9).timed is True
    first = build_run_record("run-1", PLAN, results, report, T0 + 9, timed=False)
    assert first.timed is False and first.to_dict()["timed"] is False


def test_add_run_keeps_the_last_runs_and_drops_old_unit_lists(
    results: list[BatchResult],
) -> None:
    history, record = History(Path("unused.json")), record_of(results)
    for number in range(RUNS_KEPT + 5):
        history.add_run(replace(record, run_id=f"run-{number}"))
    runs = history.runs()
    assert [run.run_id for run in runs] == [f"run-{n}" for n in range(5, RUNS_KEPT + 5)]
    with_units = [run.run_id for run in runs if run.batches[0].units is not None]
    assert with_units == [f"run-{n}" for n in range(RUNS_KEPT + 5 - RUNS_WITH_UNITS, RUNS_KEPT + 5)]
    assert all(run.batches[0].unit_count == 1 for run in runs)
    assert runs[0] == replace(record, run_id="run-5", batches=tuple(
        replace(batch, units=None) for batch in record.batches))


def test_add_run_with_a_smaller_cap(results: list[BatchResult]) -> None:
    history = History(Path("unused.json"))
    for number in range(4):
        history.add_run(replace(record_of(results), run_id=str(number)), keep=2)
    assert [run.run_id for run in history.runs()] == ["2", "3"]


# ---------------------------------------------------------------- records read back

RUNS_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "runs"
# What `build_run_record` returned as a dict before records were dataclasses, for
# record_of(results + a crashed attempt) with an origin (tests/fixtures/runs/README.md).
WRITTEN_BEFORE = json.loads((RUNS_FIXTURES / "record-v2.json").read_text(encoding="utf-8"))
VERSION_1 = json.loads((RUNS_FIXTURES / "record-v1.json").read_text(encoding="utf-8"))


def crashed_too(results: list[BatchResult]) -> RunRecord:
    lost = result(2, ("tests/test_c.py",), worker=1, start=4.0, wall=0.2, xml=None,
                  exit_code=None, sig=int(signal.SIGKILL))
    runs = [*results, lost]
    return build_run_record("run-1", PLAN, runs, merge(FILES, runs), T0 + 9,
                            origin={"commit": "abc", "branch": None, "build": None})


def test_to_dict_is_the_shape_written_before_and_from_dict_reads_it_back(
    results: list[BatchResult],
) -> None:
    record = crashed_too(results)
    data = record.to_dict()
    assert data == WRITTEN_BEFORE
    assert json.dumps(data) == json.dumps(WRITTEN_BEFORE)  # the same keys in the same order
    assert RunRecord.from_dict(WRITTEN_BEFORE) == record
    assert RunRecord.from_dict(json.loads(json.dumps(data))).to_dict() == data


def test_a_version_1_record_loads_with_what_it_did_not_know_as_unknown() -> None:
    """Version 1 had no origin and no failed tests; records from before warm runners no
    `warm`, `warm_seconds_per_batch`, `polluted` or `timed`; old ones no unit lists."""
    record = RunRecord.from_dict(VERSION_1)
    assert (record.version, record.origin, record.failed) == (1, None, None)
    assert (record.timed, record.warm_seconds_per_batch, record.polluted) == (True, None, ())
    assert [(batch.warm, batch.units, batch.unit_count) for batch in record.batches] == [
        (False, None, 1)] * 4
    data = record.to_dict()
    assert "origin" not in data and "failed" not in data  # unknown stays unknown
    assert "units" not in data["batches"][0]
    assert RunRecord.from_dict(data) == record


def test_the_history_writes_every_record_back_as_it_was(
    tmp_path: Path, results: list[BatchResult],
) -> None:
    """Teams commit the history: loading and saving it must not rewrite old records."""
    path = tmp_path / "timings.json"
    bad = {**WRITTEN_BEFORE, "tests": "4"}
    path.write_text(json.dumps({"version": 1, "files": {}, "examples": {},
                                "runs": [VERSION_1, bad, WRITTEN_BEFORE]}))
    history = History.load(path)
    history.add_run(record_of(results))
    history.save()
    runs = json.loads(path.read_text())["runs"]
    assert runs[:3] == [VERSION_1, bad, WRITTEN_BEFORE]
    assert RunRecord.from_dict(runs[3]) == record_of(results)
    assert [run.run_id for run in History.load(path).runs()] == ["run-0", "run-1", "run-1"]


def malformed(**changes: object) -> dict[str, object]:
    data: dict[str, object] = json.loads(json.dumps(WRITTEN_BEFORE))
    for key, value in changes.items():
        if value is DELETE:
            del data[key]
        else:
            data[key] = value
    return data


DELETE = object()
FIRST_BATCH = WRITTEN_BEFORE["batches"][0]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("a string", "not an object"),
        (malformed(tests="4"), '"tests" is not a whole number'),
        (malformed(wall_seconds="4.2"), '"wall_seconds" is not a number'),
        (malformed(wall_seconds=float("nan")), '"wall_seconds" is not a number'),
        (malformed(passed="yes"), '"passed" is not true or false'),
        (malformed(run_id=DELETE), 'no "run_id"'),
        (malformed(version=DELETE), 'no "version"'),
        (malformed(version=3), "version 3 is not one this shardrun reads"),
        (malformed(flaky="tests/a.py::t"), '"flaky" is not a list of strings'),
        (malformed(failed=[1]), '"failed" is not a list of strings'),
        (malformed(origin="main"), '"origin" is not an object'),
        (malformed(origin={"commit": 7}), '"commit" is not a string'),
        (malformed(batches={}), '"batches" is not a list of objects'),
        (malformed(per_worker=[{"worker": "w"}]), 'no "worker_index"'),
        (malformed(batches=[{**FIRST_BATCH, "outcome": "exploded"}]), '"outcome" is not one of'),
        (malformed(batches=[{**FIRST_BATCH, "units": "tests/a.py"}]),
         '"units" is not a list of strings'),
        (malformed(batches=[{**FIRST_BATCH, "start": None}]), '"start" is not a number'),
    ],
)
def test_a_malformed_record_is_refused_with_its_reason(data: object, reason: str) -> None:
    with pytest.raises(MalformedRecord, match=re.escape(reason)):
        RunRecord.from_dict(data)


def test_malformed_records_are_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "timings.json"
    path.write_text(json.dumps({"version": 1, "files": {}, "runs": [
        1, malformed(makespan="4.2"), WRITTEN_BEFORE, malformed(batches=DELETE)]}))
    history = History.load(path)
    with caplog.at_level(logging.WARNING):
        assert history.runs() == [RunRecord.from_dict(WRITTEN_BEFORE)]
        assert history.runs() == [RunRecord.from_dict(WRITTEN_BEFORE)]  # said once
    warnings = [record.getMessage() for record in caplog.records]
    assert warnings == [
        f"shardrun: warning: {path}: runs[0]: not an object; that run record is skipped "
        "(left in the file as it is)",
        f'shardrun: warning: {path}: runs[1]: "makespan" is not a number; that run record '
        "is skipped (left in the file as it is)",
        f'shardrun: warning: {path}: runs[3]: no "batches"; that run record is skipped '
        "(left in the file as it is)",
    ]


def test_a_runs_section_that_is_not_a_list_is_no_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "timings.json"
    path.write_text(json.dumps({"version": 1, "files": {}, "runs": "not a list"}))
    assert History.load(path).runs() == []
    assert '"runs" is not a list' in caplog.text
    path.write_text(json.dumps({"version": 1, "files": {}}))
    assert History.load(path).runs() == []


def test_boot_seconds_follow_a_history_with_a_bad_record(tmp_path: Path) -> None:
    """Queue mode sizes its batches from the records it can read (run/options.py)."""
    path = tmp_path / "timings.json"
    path.write_text(json.dumps({"version": 1, "files": {}, "runs": [
        malformed(boot_seconds_per_batch="fast"), WRITTEN_BEFORE]}))
    assert boot_seconds(History.load(path).runs()) == 0.5
