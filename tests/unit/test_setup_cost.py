"""Set-up told apart from tests: synthetic cases for the rule's edges, and the real
HyphaApp/hypha history where one test per xdist worker carries about a minute."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from shardrun.plan.setup_cost import split_setup


def suite(**slow: float) -> dict[str, float]:
    """Three files of ten 0.2 s tests; `slow` overrides some (keys a_3 -> tests/a.py::t3)."""
    tests = {f"tests/{name}.py::t{index}": 0.2 for name in "abc" for index in range(10)}
    for key, seconds in slow.items():
        name, index = key.split("_")
        tests[f"tests/{name}.py::t{index}"] = seconds
    return tests


def test_one_carrier_per_runner_with_a_similar_excess_is_set_up() -> None:
    split = split_setup(suite(a_0=60.2, b_0=55.2, c_4=65.2))
    assert split.carriers == ("tests/a.py::t0", "tests/b.py::t0", "tests/c.py::t4")
    assert split.setup_seconds == pytest.approx(60.0)
    assert split.tests["tests/a.py::t0"] == pytest.approx(0.2)
    assert sum(split.tests.values()) == pytest.approx(30 * 0.2)


def test_a_single_slow_test_is_a_slow_test() -> None:
    split = split_setup(suite(a_0=60.0))
    assert split.setup_seconds is None and split.carriers == ()
    assert split.tests["tests/a.py::t0"] == 60.0


def test_slow_tests_of_unlike_durations_are_not_mistaken_for_set_up() -> None:
    """An integration test of 10 s and one of 90 s: no common excess, so no set-up."""
    split = split_setup(suite(a_0=10.0, b_0=90.0))
    assert split.setup_seconds is None


def test_a_file_of_slow_tests_is_judged_against_its_own_neighbours() -> None:
    """Every test of a browser-test file takes 30 s: slow, but like its neighbours."""
    tests = {**suite(), **{f"tests/browser.py::t{index}": 30.0 for index in range(5)}}
    assert split_setup(tests).setup_seconds is None


def test_small_steps_above_fast_neighbours_are_noise_not_set_up() -> None:
    assert split_setup(suite(a_0=4.0, b_0=4.1, c_0=4.2)).setup_seconds is None


def test_an_empty_suite_has_no_set_up() -> None:
    assert split_setup({}) == split_setup({})
    assert split_setup({}).setup_seconds is None


def test_on_every_real_hypha_version_the_carriers_are_found(shared_timings: Path) -> None:
    """HyphaApp/hypha's committed .test_durations: 6-12 carriers per version with a similar
    excess (28-75 s) over tests of about 0.2 s. After the split no test is above 10 s and
    the set-up is within the range of the raw outliers."""
    versions = sorted((shared_timings / "history" / "HyphaApp__hypha__.test_durations").iterdir())
    assert len(versions) >= 19
    found = []
    for version in versions:
        tests = json.loads(version.read_text())
        split = split_setup(tests)
        if split.setup_seconds is None:
            assert max(tests.values()) < 5.0  # 2024-10-21: a run without the set-up
            continue
        found.append(len(split.carriers))
        assert 25.0 < split.setup_seconds < 80.0, version.name
        assert max(split.tests.values()) < 10.0, version.name
    assert len(found) >= 18
    assert 6 <= statistics.median(found) <= 12
