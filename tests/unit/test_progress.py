"""shardrun.report.progress and shardrun.work.live: what the progress line and the live
test lines say, from batch results and runner events built as workers build them."""

from __future__ import annotations

from dataclasses import replace

import pytest
from support.events import batch, done, finish, ran

from shardrun.models import Mode, RunMeta
from shardrun.report.progress import (
    ResultTally,
    Snapshot,
    eta_text,
    expected_tests,
    live_lines,
    status,
)
from shardrun.work.live import live_entry, live_level

FLAKY = "tests/test_a.py::test_flaky"
BROKEN = "tests/test_a.py::test_broken"
OK = "tests/test_a.py::test_ok"


def test_expected_tests_counts_what_the_history_knows_and_admits_what_it_does_not() -> None:
    known = ["spec/a_spec.rb[1:1]", "spec/a_spec.rb[1:2]", "spec/b_spec.rb[1:1]"]
    assert expected_tests(["spec/a_spec.rb", "spec/b_spec.rb"], known) == 3
    assert expected_tests(["spec/a_spec.rb", "spec/c_spec.rb[1:4]"], known) == 3
    assert expected_tests(["spec/a_spec.rb", "spec/new_spec.rb"], known) is None
    assert expected_tests([], known) == 0


def test_tally_counts_a_retried_test_once_and_a_pass_after_a_failure_as_flaky() -> None:
    """Retries were counted as failures ("5 failed" against "2 failures")."""
    tally = ResultTally()
    tally.add(batch(0, ["tests/test_a.py"], [ran(FLAKY, "failed"), ran(BROKEN, "failed"),
                                             ran(OK), done(1)]))
    assert (tally.done, tally.failed, tally.flaky) == (3, 2, 0)
    tally.add(batch(1, [FLAKY, BROKEN], [ran(FLAKY), ran(BROKEN, "failed"), done(1)],
                    attempt=2))
    assert (tally.done, tally.failed, tally.flaky) == (3, 1, 1)


def test_status_counts_tests_and_never_shows_a_negative_left_or_eta() -> None:
    tally = ResultTally()
    tally.add(batch(0, ["tests/test_a.py"], [ran(OK), ran(BROKEN, "failed"), done(1)]))
    assert status(tally, Snapshot(1, 4, 10, 12.4)) == (
        "2/10 tests, 1 failed, 0 flaky, 8 left, ETA 12s")
    # More tests than the history knew (new ones): the total follows, nothing is negative.
    assert status(tally, Snapshot(1, 4, 1, -3.0)) == "2/2 tests, 1 failed, 0 flaky, 0 left, ETA 0s"
    assert status(tally, Snapshot(1, 4, None, None)) == "2 tests, 1 failed, 0 flaky, 1/4 units"
    assert eta_text(125.2) == ", ETA 2m05s"


def test_live_line_names_the_worker_the_outcome_and_the_id_and_escapes_controls() -> None:
    entry = live_entry(finish(OK, "passed", 0.123, stdout="hello\n"), 2, level=1)
    assert entry is not None and "stdout" not in entry
    assert live_lines(entry, 1) == [f"[w2] PASSED {OK} 0.12s"]
    loud = live_entry(finish(BROKEN, "failed", 1.0, message="boom", stdout="a\x1b[2Jb\n"), 3,
                      level=2)
    assert loud is not None
    assert live_lines(loud, 2) == [f"[w3] FAILED {BROKEN} 1.00s", "    message:", "    | boom",
                                   "    stdout:", "    | a\\x1b[2Jb"]
    assert live_entry({"e": "start", "id": OK}, 1, level=2) is None


def test_live_level_comes_from_the_runs_meta_and_defaults_to_nothing() -> None:
    meta = RunMeta("run", "pytest", Mode.QUEUE, 2, ("t.py",), 0.0, live=2)
    assert live_level(meta) == 2
    assert live_level(replace(meta, live=0)) == live_level(None) == 0
    with pytest.raises(ValueError, match="live"):  # a meta from Redis says 0, 1 or 2
        RunMeta.from_dict({**meta.to_dict(), "live": True})
