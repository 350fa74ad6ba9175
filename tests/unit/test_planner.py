"""The planner's promises: a partition, honest numbers, LPT's bound, the same plan everywhere.

Property tests (hypothesis) over random estimates; the LPT bound is checked against the
true optimum, brute-forced on inputs small enough to enumerate.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shardrun.errors import InputError
from shardrun.models import Plan
from shardrun.plan.planner import (
    consecutive_chunks,
    lower_bound,
    plain_lpt,
    plan_shards,
    round_robin,
)

# Float noise allowed when comparing sums computed in different orders.
REL_TOLERANCE = 1e-9

unit_names = st.text(alphabet="abcdefgh/._", min_size=1, max_size=8)
seconds = st.floats(min_value=0.0, max_value=1e4, allow_nan=False, allow_infinity=False)
suites = st.dictionaries(unit_names, seconds, max_size=40)
worker_counts = st.integers(min_value=1, max_value=12)
small_suites = st.dictionaries(unit_names, seconds, min_size=1, max_size=8)


def _optimal_makespan(sizes: list[float], workers: int) -> float:
    """The best makespan over every assignment; shards are interchangeable, so a unit may
    open only the first still-empty shard (symmetry pruning)."""
    best = math.inf
    loads = [0.0] * workers

    def place(position: int, used: int) -> None:
        nonlocal best
        if position == len(sizes):
            best = min(best, max(loads))
            return
        for shard in range(min(used + 1, workers)):
            loads[shard] += sizes[position]
            if loads[shard] < best:
                place(position + 1, max(used, shard + 1))
            loads[shard] -= sizes[position]

    place(0, 0)
    return best


def _assert_partition(plan: Plan, estimates: dict[str, float], workers: int) -> None:
    counts = Counter(unit for shard in plan.shards for unit in shard.units)
    assert set(counts) == set(estimates)
    assert all(count == 1 for count in counts.values())
    assert len(plan.shards) == workers == plan.workers
    assert [shard.index for shard in plan.shards] == list(range(workers))


def _assert_numbers(plan: Plan, estimates: dict[str, float]) -> None:
    for shard in plan.shards:
        assert shard.predicted_seconds == math.fsum(estimates[unit] for unit in shard.units)
    assert plan.predicted_makespan == max(shard.predicted_seconds for shard in plan.shards)
    assert plan.total_seconds == math.fsum(estimates.values())


@given(suites, worker_counts)
def test_every_unit_in_exactly_one_shard_with_honest_numbers(
    estimates: dict[str, float], workers: int
) -> None:
    for planner in (plan_shards, plain_lpt, round_robin, consecutive_chunks):
        plan = planner(estimates, workers)
        _assert_partition(plan, estimates, workers)
        _assert_numbers(plan, estimates)


@given(suites, worker_counts)
def test_lower_bound_is_longest_or_fair_share_and_never_beaten(
    estimates: dict[str, float], workers: int
) -> None:
    plan = plan_shards(estimates, workers)
    expected = max(max(estimates.values(), default=0.0), math.fsum(estimates.values()) / workers)
    assert plan.lower_bound == lower_bound(estimates, workers) == expected
    assert plan.predicted_makespan >= plan.lower_bound * (1 - REL_TOLERANCE)


@settings(deadline=None)  # the brute force may take tens of ms on a busy CI machine
@given(small_suites, st.integers(min_value=2, max_value=4))
def test_makespan_within_lpt_bound_of_the_optimum(
    estimates: dict[str, float], workers: int
) -> None:
    optimum = _optimal_makespan(list(estimates.values()), workers)
    factor = 4 / 3 - 1 / (3 * workers)
    for planner in (plan_shards, plain_lpt):
        makespan = planner(estimates, workers).predicted_makespan
        assert makespan <= factor * optimum * (1 + REL_TOLERANCE)


@given(suites, worker_counts)
def test_refinement_never_makes_lpt_worse(estimates: dict[str, float], workers: int) -> None:
    refined = plan_shards(estimates, workers).predicted_makespan
    assert refined <= plain_lpt(estimates, workers).predicted_makespan


@given(suites, worker_counts, st.data())
def test_same_plan_whatever_the_dict_order(
    estimates: dict[str, float], workers: int, data: st.DataObject
) -> None:
    shuffled = dict(data.draw(st.permutations(list(estimates.items()))))
    assert plan_shards(shuffled, workers) == plan_shards(estimates, workers)


@given(suites, worker_counts)
def test_shards_list_units_longest_first(estimates: dict[str, float], workers: int) -> None:
    for shard in plan_shards(estimates, workers).shards:
        keys = [(-estimates[unit], unit) for unit in shard.units]
        assert keys == sorted(keys)


@given(suites, worker_counts)
def test_bounding_unit_set_iff_longest_exceeds_fair_share(
    estimates: dict[str, float], workers: int
) -> None:
    plan = plan_shards(estimates, workers)
    longest = max(estimates.values(), default=0.0)
    if longest > math.fsum(estimates.values()) / workers:
        assert plan.bounding_unit is not None
        assert estimates[plan.bounding_unit] == longest
        assert plan.lower_bound == longest
    else:
        assert plan.bounding_unit is None


@given(suites, worker_counts)
def test_enough_workers_give_every_unit_its_own_shard(
    estimates: dict[str, float], workers: int
) -> None:
    if workers < len(estimates):
        return
    plan = plan_shards(estimates, workers)
    # Zero-second units may share a shard (equal loads go to the lowest index); others not.
    for shard in plan.shards:
        assert sum(1 for unit in shard.units if estimates[unit] > 0) <= 1
    assert plan.predicted_makespan == max(estimates.values(), default=0.0)


@pytest.mark.parametrize("workers", [0, -3])
def test_fewer_than_one_worker_is_an_input_error(workers: int) -> None:
    for planner in (plan_shards, plain_lpt, round_robin, consecutive_chunks, lower_bound):
        with pytest.raises(InputError, match="--workers must be at least 1"):
            planner({"a.py": 1.0}, workers)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_estimate_is_an_input_error_naming_the_unit(bad: float) -> None:
    with pytest.raises(InputError, match=r"tests/test_a\.py"):
        plan_shards({"tests/test_a.py": bad, "tests/test_b.py": 1.0}, 2)


def test_negative_estimate_counts_as_zero() -> None:
    plan = plan_shards({"a": -0.5, "b": 2.0}, 2)
    assert plan.total_seconds == 2.0
    assert sorted(shard.predicted_seconds for shard in plan.shards) == [0.0, 2.0]


def test_empty_suite_gives_empty_shards() -> None:
    plan = plan_shards({}, 3)
    assert [shard.units for shard in plan.shards] == [(), (), ()]
    assert plan.predicted_makespan == plan.lower_bound == plan.total_seconds == 0.0
    assert plan.bounding_unit is None


def test_ties_broken_by_unit_name_then_shard_index() -> None:
    # Equal sizes go in name order; equal loads go to the lower shard index. No exchange
    # of 1-second units can improve 3 | 2, so the refinement leaves the LPT plan alone.
    plan = plan_shards({"e": 1.0, "d": 1.0, "c": 1.0, "b": 1.0, "a": 1.0}, 2)
    assert [shard.units for shard in plan.shards] == [("a", "c", "e"), ("b", "d")]


def test_refinement_fixes_lpt_classic_worst_case() -> None:
    # Graham's example for N=2: LPT gives 3+2+2 | 3+2 = 7, the optimum is 3+3 | 2+2+2 = 6.
    estimates = {"a": 3.0, "b": 3.0, "c": 2.0, "d": 2.0, "e": 2.0}
    assert plain_lpt(estimates, 2).predicted_makespan == 7.0
    assert plan_shards(estimates, 2).predicted_makespan == 6.0


@given(suites, worker_counts)
def test_round_robin_deals_sorted_units(estimates: dict[str, float], workers: int) -> None:
    names = sorted(estimates)
    plan = round_robin(estimates, workers)
    assert [list(shard.units) for shard in plan.shards] == [
        names[index::workers] for index in range(workers)
    ]


@given(st.dictionaries(unit_names, st.integers(0, 100).map(float), max_size=40), worker_counts)
def test_consecutive_chunks_cut_sorted_units_once_a_chunk_is_full(
    estimates: dict[str, float], workers: int
) -> None:
    # Whole seconds keep every sum exact, so "full" can be compared without tolerance.
    plan = consecutive_chunks(estimates, workers)
    assert [unit for shard in plan.shards for unit in shard.units] == sorted(estimates)
    time_per_group = sum(estimates.values()) / workers
    for shard, following in zip(plan.shards, plan.shards[1:], strict=False):
        if following.units and time_per_group > 0:  # at 0 s every chunk is "full" at once
            assert shard.predicted_seconds >= time_per_group
            assert shard.predicted_seconds - estimates[shard.units[-1]] < time_per_group


def test_consecutive_chunks_example() -> None:
    plan = consecutive_chunks({"d": 1.0, "c": 1.0, "b": 1.0, "a": 3.0}, 2)
    assert [shard.units for shard in plan.shards] == [("a",), ("b", "c", "d")]


def test_real_knapsack_reports_plan_within_three_percent(shared_timings: Path) -> None:
    """Regression guard on real suites (bench/plan_quality.py has the full picture)."""
    for path in sorted(shared_timings.glob("*knapsack_*.json")):
        report = json.loads(path.read_text(encoding="utf-8"))
        estimates = {unit: float(value) for unit, value in report.items()}
        for workers in (2, 4, 8, 16, 32):
            plan = plan_shards(estimates, workers)
            assert plan.predicted_makespan <= 1.03 * plan.lower_bound, (path.name, workers)
