"""Seconds for the tests of a split file (shardrun/plan/per_test.py)."""

from __future__ import annotations

import pytest

from shardrun.plan.history import FileStats
from shardrun.plan.per_test import (
    known_test_counts,
    known_test_seconds,
    split_file,
    split_listed,
)


def stats(seconds: float) -> FileStats:
    return FileStats.from_samples([seconds], None)


KNOWN = {"t/test_a.py::test_1": stats(1.0), "t/test_a.py::test_2": stats(3.0),
         "t/test_b.py::test_1": stats(2.0)}


def test_known_test_counts_are_per_file() -> None:
    assert known_test_counts(KNOWN) == {"t/test_a.py": 2, "t/test_b.py": 1}


def test_known_test_seconds_are_what_a_files_known_tests_take() -> None:
    assert known_test_seconds(KNOWN) == {"t/test_a.py": 4.0, "t/test_b.py": 2.0}
    assert known_test_seconds({"t/test_c.py": stats(9.0)}) == {}  # a file, not a test


def test_known_tests_carry_the_files_estimate_in_their_proportions() -> None:
    # 5 s for the file: its tests took 1 + 3 s, the rest was shared set-up.
    seconds = split_file(5.0, ["t/test_a.py::test_1", "t/test_a.py::test_2"], KNOWN, "t/test_a.py")
    assert seconds == pytest.approx({"t/test_a.py::test_1": 1.25, "t/test_a.py::test_2": 3.75})


def test_a_new_test_costs_the_files_mean_and_grows_the_file() -> None:
    tests = ["t/test_a.py::test_1", "t/test_a.py::test_2", "t/test_a.py::test_new"]
    seconds = split_file(4.0, tests, KNOWN, "t/test_a.py")
    assert seconds["t/test_a.py::test_new"] == pytest.approx(2.0)  # 4 s over 2 known tests
    assert sum(seconds.values()) == pytest.approx(6.0)


def test_a_removed_test_makes_the_file_smaller() -> None:
    seconds = split_file(4.0, ["t/test_a.py::test_1"], KNOWN, "t/test_a.py")
    assert seconds == pytest.approx({"t/test_a.py::test_1": 1.0})


def test_a_file_without_known_tests_is_shared_evenly() -> None:
    seconds = split_file(6.0, ["t/test_c.py::x", "t/test_c.py::y"], KNOWN, "t/test_c.py")
    assert seconds == {"t/test_c.py::x": 3.0, "t/test_c.py::y": 3.0}


def test_split_listed_replaces_each_listed_file_by_its_tests() -> None:
    listed = {"t/test_a.py": ["t/test_a.py::test_1", "t/test_a.py::test_2"],
              "t/test_b.py": ["t/test_b.py::test_1"]}  # one test: stays whole
    seconds = split_listed({"t/test_a.py": 5.0, "t/test_b.py": 2.0, "t/test_c.py": 1.0},
                           listed, KNOWN)
    assert seconds == pytest.approx({"t/test_a.py::test_1": 1.25, "t/test_a.py::test_2": 3.75,
                                     "t/test_b.py": 2.0, "t/test_c.py": 1.0})
