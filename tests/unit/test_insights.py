"""shardrun.report.insights and what the dashboard export makes of it: per-test failure
history and flaky rate, the slowest tests, capacity advice aware of queue mode's splitting,
run records that carry their origin and one wall time (issue 21)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from support.events import batch, done, ran

from shardrun.models import Plan, Shard
from shardrun.plan.history import FileStats, History
from shardrun.plan.timings import Durations
from shardrun.report import dashboard
from shardrun.report.insights import failure_history, slowest_tests, split_estimates
from shardrun.report.merge import merge
from shardrun.report.records import Origin, RunRecord
from shardrun.report.runlog import build_run_record
from shardrun.run.ci_env import build_label
from shardrun.run.origin import run_origin

NOW = 1_767_225_600.0
ALWAYS = "tests/test_a.py::test_always_fails"
SOMETIMES = "tests/test_a.py::test_sometimes_flaky"
# A run record of no batches: the tests below vary its flaky and failed tests.
NO_BATCHES = build_run_record("r", Plan(1, (), 0.0, 0.0, 0.0), [], merge([], []), NOW)


def run(run_id: str, *, flaky: list[str], failed: list[str] | None) -> RunRecord:
    """A record with these flaky and failed tests; failed None: a record from before
    records kept their failed tests."""
    return replace(NO_BATCHES, run_id=run_id, flaky=tuple(flaky),
                   failed=None if failed is None else tuple(failed))


def test_a_test_that_fails_every_run_heads_the_failure_history() -> None:
    """It appeared nowhere: only flaky tests had a list."""
    records = [
        run("r0", flaky=[], failed=[ALWAYS]),
        run("r1", flaky=[SOMETIMES], failed=[ALWAYS]),
        run("r2", flaky=[], failed=[ALWAYS]),
        run("r3", flaky=[SOMETIMES], failed=[ALWAYS]),
    ]
    always, flaky = failure_history(records)
    assert always == {"id": ALWAYS, "file": "tests/test_a.py", "failed_runs": 4,
                      "flaky_runs": 0, "failure_rate": 1.0, "flaky_rate": 0.0,
                      "last_seen_run": "r3", "history": ["failed"] * 4}
    assert (flaky["id"], flaky["flaky_rate"], flaky["failure_rate"]) == (SOMETIMES, 0.5, 0.0)
    assert flaky["history"] == ["ok", "flaky", "ok", "flaky"]
    assert flaky["last_seen_run"] == "r3"


def test_records_that_kept_no_failed_tests_are_unknown_not_passed() -> None:
    """Records written before `failed` existed cannot say a test passed."""
    records = [run("old", flaky=[SOMETIMES], failed=None),
               run("new", flaky=[], failed=[SOMETIMES])]
    [row] = failure_history(records)
    assert row["history"] == ["flaky", "failed"]
    assert (row["failure_rate"], row["flaky_rate"]) == (0.5, 0.5)
    assert failure_history([run("old", flaky=[], failed=None)]) == []


def test_slowest_tests_by_estimate() -> None:
    examples = {"a.py::slow": FileStats.from_samples([3.0, 5.0, 4.0], NOW),
                "b.py::fast": FileStats.from_samples([0.1], NOW)}
    assert slowest_tests(examples, top=1) == [
        {"id": "a.py::slow", "file": "a.py", "estimate": 4.0, "samples": 3}]


def test_capacity_is_not_bounded_by_a_file_queue_mode_splits() -> None:
    """The advice said "bounded by spec/x_spec.rb" for a file queue mode splits anyway."""
    history = History(Path("unused.json"))
    files = {"spec/x_spec.rb": 40.0, **{f"spec/s{i}_spec.rb": 1.0 for i in range(8)}}
    examples = {f"spec/x_spec.rb[1:{i}]": 4.0 for i in range(1, 11)}
    history.record(Durations(files, examples, "test"), at=NOW)
    units = split_estimates(files, history.examples())
    assert "spec/x_spec.rb" not in units and units["spec/x_spec.rb[1:3]"] == 4.0
    advice = dashboard.export(history, now=NOW)["capacity"]["advice"]
    assert "bounded by spec/x_spec.rb," not in advice and not advice.endswith("spec/x_spec.rb")
    assert "then bounded by the test spec/x_spec.rb[1:" in advice, advice
    # A file whose tests nobody recorded is still a file that bounds the run.
    alone = History(Path("unused.json"))
    alone.record(Durations(files, {}, "test"), at=NOW)
    assert dashboard.export(alone, now=NOW)["capacity"]["advice"].endswith(
        "then bounded by spec/x_spec.rb")


def test_a_run_record_has_one_wall_time_its_origin_and_its_failures() -> None:
    """The card said 6.4 s (first batch to last) where the terminal said "in 8.1 s"."""
    units = ["tests/test_a.py"]
    result = batch(0, units, [ran(ALWAYS, "failed"), ran(SOMETIMES), done(1)], finished=NOW + 7)
    result = result.__class__(**{**result.__dict__, "started_at": NOW + 2})
    origin = {"commit": "abc123", "branch": "main", "build": "GitHub Actions build 9/1/test"}
    record = build_run_record("r", Plan(1, (Shard(0, tuple(units), 1.0),), 1.0, 1.0, 1.0),
                              [result], merge(units, [result]), NOW + 8.1,
                              run_started_at=NOW, origin=origin)
    assert record.version == 2
    assert (record.started_at, record.wall_seconds) == (NOW, 8.1)
    assert record.origin == Origin(**origin) and record.to_dict()["origin"] == origin
    assert record.failed == (ALWAYS,)


def test_origin_comes_from_the_ci_then_from_git(tmp_path: Path) -> None:
    github = {"GITHUB_ACTIONS": "true", "GITHUB_RUN_ID": "9", "GITHUB_RUN_ATTEMPT": "1",
              "GITHUB_JOB": "test", "GITHUB_SHA": "f00d", "GITHUB_REF_NAME": "main",
              "GITHUB_HEAD_REF": "feature/x"}
    assert run_origin(tmp_path, github) == {"commit": "f00d", "branch": "feature/x",
                                             "build": "GitHub Actions build 9/1/test"}
    assert run_origin(tmp_path, {}) == {"commit": None, "branch": None, "build": None}
    assert build_label({"SHARDRUN_BUILD_ID": "nightly-7"}) == "Custom CI build nightly-7"
    assert build_label({"GITHUB_ACTIONS": "true"}) is None  # half a CI: no label, no error
