"""The estimator alone: known seconds and sizes in, seconds out; no file is read."""

from __future__ import annotations

import pytest

from shardrun.plan.estimate import (
    DEFAULT_SECONDS_PER_BYTE,
    FALLBACK_SECONDS,
    Known,
    estimate_units,
    sizes_needed,
)

NOTHING = Known({}, {})


def test_a_known_unit_is_its_estimate_and_an_unknown_file_its_size_at_the_timed_rate() -> None:
    known = Known({"a.py": 2.0, "b.py": 8.0}, {})
    sizes = {"a.py": 100, "b.py": 200, "new.py": 300}
    # rates 0.02 and 0.04 s/byte: the median is 0.03
    assert estimate_units(["a.py", "new.py"], known, sizes) == {
        "a.py": 2.0, "new.py": pytest.approx(9.0)}


def test_without_timings_sizes_are_priced_at_the_default_rate_and_missing_files_alike() -> None:
    assert estimate_units(["a.py", "gone.py"], NOTHING, {"a.py": 1000, "gone.py": None}) == {
        "a.py": pytest.approx(1000 * DEFAULT_SECONDS_PER_BYTE), "gone.py": FALLBACK_SECONDS}


def test_a_missing_file_among_timed_ones_gets_the_median_timed_file() -> None:
    known = Known({"a.py": 1.0, "b.py": 3.0, "c.py": 10.0}, {})
    assert estimate_units(["gone.py"], known, {}) == {"gone.py": 3.0}


def test_an_unknown_example_takes_its_known_siblings_median() -> None:
    known = Known({"a.py": 9.0}, {"a.py::t1": 1.0, "a.py::t2": 3.0, "a.py::t3": 5.0})
    assert estimate_units(["a.py::t4"], known, {"a.py": 10}) == {"a.py::t4": 3.0}


def test_examples_of_an_untimed_file_share_its_estimate() -> None:
    sizes = {"spec/a_spec.rb": 4000}
    estimates = estimate_units(["spec/a_spec.rb[1:1]", "spec/a_spec.rb[1:2]"], NOTHING, sizes)
    assert estimates == {
        "spec/a_spec.rb[1:1]": pytest.approx(0.2), "spec/a_spec.rb[1:2]": pytest.approx(0.2)}


def test_keys_are_returned_as_given_and_matched_normalized() -> None:
    known = Known({"tests/a.py": 4.0}, {})
    assert estimate_units(["./tests/a.py"], known, {}) == {"./tests/a.py": 4.0}


def test_the_gather_step_is_told_every_file_the_rule_reads() -> None:
    known = Known({"timed.py": 1.0}, {"other.py::t": 1.0})
    assert sizes_needed(["./new.py", "spec/x_spec.rb[1:2]"], known) == {
        "new.py", "spec/x_spec.rb", "timed.py"}
