"""What a file's tests share outside their own seconds (shardrun/report/shared_time.py),
and how a run teaches it to the history (session.learn)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.events import batch, done, file_time, ran

from shardrun.models import BatchResult
from shardrun.plan.history import History
from shardrun.report.merge import merge
from shardrun.report.shared_time import file_shared_seconds, shared_seconds
from shardrun.run.session import learn

HOOK = "spec/hook_spec.rb"  # before(:all) { sleep 2 }, two examples of 10 ms
PLAIN = "spec/plain_spec.rb"


def whole_file_batch() -> BatchResult:
    return batch(0, [HOOK, PLAIN], [
        ran(f"{HOOK}[1:1]", seconds=0.01), ran(f"{HOOK}[1:2]", seconds=0.01),
        file_time(HOOK, 2.05), ran(f"{PLAIN}[1:1]", seconds=0.5), file_time(PLAIN, 0.5),
        done(0)])


def split_batches() -> list[BatchResult]:
    """The hook file in two pieces: each piece pays the hook."""
    return [batch(index, [f"{HOOK}[1:{index + 1}]"], [
        ran(f"{HOOK}[1:{index + 1}]", seconds=0.01), file_time(HOOK, 2.0 + 0.01 * index),
        done(0)]) for index in range(2)]


def test_a_file_shares_what_its_groups_took_beyond_its_tests() -> None:
    assert shared_seconds(whole_file_batch()) == pytest.approx({HOOK: 2.03, PLAIN: 0.0})


def test_a_runner_that_measures_no_file_times_shares_nothing() -> None:
    plain = batch(0, [PLAIN], [ran(f"{PLAIN}[1:1]", seconds=0.5), done(0)])
    assert shared_seconds(plain) == {}
    assert file_shared_seconds([plain]) == {}


def test_a_split_file_shares_its_hook_once_not_once_per_piece() -> None:
    assert file_shared_seconds(split_batches()) == pytest.approx({HOOK: 1.99})


def test_the_history_prices_a_file_with_the_hooks_its_tests_share(tmp_path: Path) -> None:
    """Before: 0.02 s for a file that takes 2 s, planned last and ending the run late."""
    for results, units, expected in (
        ([whole_file_batch()], [HOOK, PLAIN], 2.05),  # what the file's group took
        (split_batches(), [f"{HOOK}[1:1]", f"{HOOK}[1:2]"], 2.01),  # tests + one hook
    ):
        history = History(tmp_path / "timings.json")
        learn(history, merge(units, results))
        assert history.estimate(HOOK) == pytest.approx(expected)
        assert history.examples()[f"{HOOK}[1:1]"].estimate == pytest.approx(0.01)


def test_file_times_cross_the_wire_and_bad_ones_are_dropped() -> None:
    """A worker's per-file seconds price files in the history: whatever arrives that is
    not a file name and a finite, non-negative number is left out, not trusted."""
    sent = whole_file_batch()
    assert BatchResult.from_dict(json.loads(json.dumps(sent.to_dict()))) == sent
    data = sent.to_dict()
    data["file_seconds"] = {HOOK: 2.0, PLAIN: -1.0, "spec/x_spec.rb": "2", "spec/y_spec.rb": True,
                            "spec/z_spec.rb": float("inf"), "spec/n_spec.rb": None}
    assert BatchResult.from_dict(data).file_seconds == {HOOK: 2.0}
    data["file_seconds"] = [HOOK, 2.0]
    assert BatchResult.from_dict(data).file_seconds == {}
    del data["file_seconds"]  # an older worker's result
    assert BatchResult.from_dict(data).file_seconds == {}


def pytest_piece(index: int) -> BatchResult:
    """One test of a pytest file whose module fixture takes 2 s: each piece's first test
    sets it up again, inside its own seconds."""
    test = f"tests/test_db.py::test_{index}"
    return batch(index, [test], [ran(test, seconds=2.1, shared=2.0), done(0)])


def test_a_pytest_fixture_inside_a_test_is_shared_once_and_left_out_of_the_test() -> None:
    pieces = [pytest_piece(index) for index in range(2)]
    assert [piece.tests[0].shared_seconds for piece in pieces] == [2.0, 2.0]
    assert file_shared_seconds(pieces) == {"tests/test_db.py": 2.0}


def test_the_history_prices_a_split_pytest_file_with_its_fixture_once(tmp_path: Path) -> None:
    """Before: 4.2 s for the file (each piece's fixture), 2.1 s for each test."""
    history = History(tmp_path / "timings.json")
    learn(history, merge([f"tests/test_db.py::test_{index}" for index in range(2)],
                         [pytest_piece(index) for index in range(2)]))
    assert history.estimate("tests/test_db.py") == pytest.approx(2.2)
    assert history.examples()["tests/test_db.py::test_0"].estimate == pytest.approx(0.1)


def test_a_workers_shared_seconds_are_checked_too() -> None:
    data = pytest_piece(0).to_dict()
    for bad in ("2", -1.0, float("nan"), True):
        data["tests"][0]["shared_seconds"] = bad
        assert BatchResult.from_dict(data).tests[0].shared_seconds == 0.0
