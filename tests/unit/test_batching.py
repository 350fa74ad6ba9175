from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shardrun.plan.batching import (
    MAX_TAIL_PIECES,
    TAIL_OVERHEAD_SHARE,
    DispatchInputs,
    after_first_round,
    first_batch_seconds,
    first_round,
    min_batch_seconds,
    queue_batches,
    queue_plan,
    simulate,
    units_to_split,
)
from shardrun.plan.history import FileStats
from shardrun.plan.planner import plan_shards

estimates_strategy = st.dictionaries(
    st.text("abcdefghij/_", min_size=1, max_size=8),
    st.floats(min_value=0.0, max_value=300.0, allow_nan=False),
    min_size=1,
    max_size=60,
)


@given(estimates_strategy, st.integers(1, 16), st.floats(0.0, 5.0))
@settings(max_examples=200, deadline=None)
def test_every_unit_in_exactly_one_batch(estimates: dict[str, float], workers: int,
                                         boot: float) -> None:
    plan = queue_batches(estimates, workers, boot)
    units = [unit for batch in plan.shards for unit in batch.units]
    assert sorted(units) == sorted(estimates)
    assert [batch.index for batch in plan.shards] == list(range(len(plan.shards)))
    for batch in plan.shards:
        assert math.isclose(batch.predicted_seconds, sum(estimates[u] for u in batch.units),
                            abs_tol=1e-6)


@given(estimates_strategy, st.integers(1, 16), st.floats(0.0, 5.0))
@settings(max_examples=200, deadline=None)
def test_no_batch_below_the_boot_worthwhile_minimum_except_a_shards_last(
    estimates: dict[str, float], workers: int, boot: float
) -> None:
    plan = queue_batches(estimates, workers, boot)
    minimum = min_batch_seconds(boot)
    short = [b for b in plan.shards if b.predicted_seconds < minimum - 1e-9]
    # Only the last chunk of a shard (what is left of it) may be short, cut into tail
    # pieces whose batch costs stay within TAIL_OVERHEAD_SHARE of the suite.
    assert len(short) <= workers * MAX_TAIL_PIECES
    if boot > 0 and len(short) > workers:
        extra = len(short) - workers
        assert extra * boot <= TAIL_OVERHEAD_SHARE * sum(estimates.values()) + 1e-9


def test_a_shards_last_chunk_is_cut_by_unit_count_when_batches_are_cheap() -> None:
    """Tiny-predicted units are the ones that may have grown: with warm runners they are
    spread over several batches instead of one."""
    estimates = {"t/test_big.py": 19.0, **{f"t/test_tiny{i:02}.py": 0.01 for i in range(25)}}
    warm = queue_batches(estimates, 1, boot_seconds=0.05)
    assert warm.shards[0].units == ("t/test_big.py",)
    tail = warm.shards[1:]
    assert len(tail) == 7  # 2% of 19.25 s buys 7 batches of 0.05 s
    assert TAIL_OVERHEAD_SHARE == 0.02 and MAX_TAIL_PIECES >= 7
    assert sorted(u for b in tail for u in b.units) == sorted(set(estimates) - {"t/test_big.py"})
    assert max(len(b.units) for b in tail) - min(len(b.units) for b in tail) <= 1
    cold = queue_batches(estimates, 1, boot_seconds=0.5)  # 2% of 19.25 s buys no boot
    assert len(cold.shards) == 2


def test_batches_shrink_as_the_run_nears_its_end() -> None:
    estimates = {f"spec/f{i:03}_spec.rb": 1.0 for i in range(400)}
    plan = queue_batches(estimates, 4, boot_seconds=0.25)
    sizes = [batch.predicted_seconds for batch in plan.shards]
    assert sizes[0] == 50.0  # first round: half of each 100 s shard
    assert sizes[-1] <= 2 * 100 / 64  # last round: near the 1/64-of-a-shard floor
    assert sizes == sorted(sizes, reverse=True)
    # With exact estimates: the static plan's 100 s plus a boot per round.
    rounds = len(sizes) / 4
    assert plan.predicted_makespan == pytest.approx(100 + 0.25 * rounds)


def test_exact_estimates_cost_only_boots_over_the_static_plan() -> None:
    """Coarse units must not be stranded in late rounds (the first version lost 15%)."""
    estimates = {f"t/test_{i}.py": 0.5 + (i * 7919 % 23) / 5 for i in range(40)}
    static = plan_shards(estimates, 2)
    plan = queue_batches(estimates, 2, boot_seconds=0.25)
    rounds = max(sum(1 for b in plan.shards[i::2]) for i in range(2))
    assert plan.predicted_makespan <= static.predicted_makespan + 0.25 * rounds + 1e-6


def test_deterministic_regardless_of_dict_order() -> None:
    estimates = {f"t/test_{i}.py": float(i % 7) for i in range(50)}
    reversed_estimates = dict(reversed(list(estimates.items())))
    assert queue_batches(estimates, 3, 0.5) == queue_batches(reversed_estimates, 3, 0.5)


def test_queue_makespan_beats_static_when_estimates_are_off() -> None:
    """The point of batches: a worker that finishes early takes more."""
    estimates = {f"f{i}": 1.0 for i in range(64)}
    actual = dict(estimates)
    for unit in ("f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7"):
        actual[unit] = 4.0  # these turned out slower than last time
    plan = queue_batches(estimates, 4, boot_seconds=0.1)
    queue_time = simulate(
        [sum(actual[u] for u in batch.units) for batch in plan.shards], 4, 0.1
    )
    static_time = max(sum(actual[u] for u in shard) for shard in
                      ([f"f{i}" for i in range(j * 16, j * 16 + 16)] for j in range(4)))
    assert queue_time < static_time


def test_units_to_split_only_files_longer_than_the_first_batch() -> None:
    estimates = {"spec/huge_spec.rb": 100.0, **{f"spec/s{i}_spec.rb": 10.0 for i in range(10)}}
    assert units_to_split(estimates, 4, boot_seconds=1.0) == ["spec/huge_spec.rb"]
    assert units_to_split(estimates, 1, boot_seconds=1.0) == []
    # With a boot so slow that two worthwhile batches exceed the file, do not split it.
    assert units_to_split(estimates, 4, boot_seconds=20.0) == []


def test_simulate_is_list_scheduling() -> None:
    assert simulate([4.0, 3.0, 2.0, 1.0], 2, 0.0) == 5.0
    assert simulate([4.0, 3.0, 2.0, 1.0], 2, 1.0) == 7.0
    assert simulate([], 3, 1.0) == 0.0


def test_units_to_split_every_file_whose_tests_are_known_down_to_a_tail_chunk() -> None:
    estimates = {f"tests/test_{i}.py": 1.0 for i in range(30)}
    estimates["tests/test_tiny.py"] = 0.01
    known = {unit: 3 for unit in estimates}
    known["tests/test_1.py"] = 1  # one known test: nothing to spread
    split = units_to_split(estimates, 2, boot_seconds=0.05, known_tests=known)
    assert "tests/test_0.py" in split and "tests/test_1.py" not in split
    assert "tests/test_tiny.py" not in split  # under 1/16 of a worker's share
    assert len(split) == 29
    assert units_to_split(estimates, 2, boot_seconds=0.05) == []  # nothing known, none slow
    assert units_to_split(estimates, 1, boot_seconds=0.05, known_tests=known) == []


def test_no_file_shorter_than_two_listings_is_split() -> None:
    """Its pieces would wait for a listing (a framework boot) that costs more than
    splitting it can save: on a suite of a few seconds every file runs whole."""
    estimates = {"spec/big_spec.rb": 2.7, **{f"spec/s{i}_spec.rb": 0.6 for i in range(5)}}
    known = {unit: 20 for unit in estimates}
    everything = units_to_split(estimates, 4, 0.05, known)
    assert everything == ["spec/big_spec.rb", *(f"spec/s{i}_spec.rb" for i in range(5))]
    assert units_to_split(estimates, 4, 0.05, known, listing_seconds=0.5) == ["spec/big_spec.rb"]
    assert units_to_split(estimates, 4, 0.05, known, listing_seconds=1.5) == []
    inputs = DispatchInputs(estimates, 4, 0.05, listing_seconds=1.5)
    assert inputs.to_list() == [] and first_round(inputs)[0] == ()


def test_a_file_whose_time_is_set_up_its_tests_share_is_not_split() -> None:
    """A before(:all) hook of 3 s under two 10 ms examples: split, each piece would pay
    the hook again. Only what the known tests take themselves is spread."""
    estimates = {"spec/hook_spec.rb": 3.02, "spec/long_spec.rb": 3.0,
                 **{f"spec/s{i}_spec.rb": 0.5 for i in range(6)}}
    counts = {unit: 2 for unit in estimates}
    tests_only = {"spec/hook_spec.rb": 0.02, "spec/long_spec.rb": 2.9,
                  **{f"spec/s{i}_spec.rb": 0.5 for i in range(6)}}
    split = units_to_split(estimates, 2, 0.05, counts, known_seconds=tests_only)
    assert "spec/hook_spec.rb" not in split and "spec/long_spec.rb" in split
    assert "spec/hook_spec.rb" in units_to_split(estimates, 2, 0.05, counts)
    known = {
        "spec/hook_spec.rb[1:1]": FileStats.from_samples([0.01], None),
        "spec/hook_spec.rb[1:2]": FileStats.from_samples([0.01], None),
    }
    inputs = DispatchInputs(estimates, 2, 0.05, known=known)
    assert "spec/hook_spec.rb" not in inputs.to_list()


def test_queue_plan_is_computed_from_its_gathered_inputs_alone() -> None:
    """Gather (the listing), then compute: the listed file's tests are the units, every
    other file stays whole, and nothing is lost or run twice."""
    estimates = {"a.py": 40.0, **{f"f{i}.py": 1.0 for i in range(20)}}
    inputs = DispatchInputs(estimates, workers=4, batch_seconds=0.05)
    assert inputs.to_list() == ["a.py"]  # longer than a first-round batch
    listed = {"a.py": [f"a.py::test_{i}" for i in range(8)]}
    plan = queue_plan(DispatchInputs(estimates, 4, 0.05, listed=listed))
    units = [unit for batch in plan.shards for unit in batch.units]
    assert sorted(units) == sorted([*listed["a.py"], *(f"f{i}.py" for i in range(20))])
    assert plan.total_seconds == pytest.approx(60.0)
    assert queue_plan(inputs).shards != plan.shards  # unlisted, a.py runs whole


def _stats(seconds: float) -> FileStats:
    return FileStats.from_samples([seconds], None)


def test_the_first_round_needs_no_listing_and_the_rest_is_split_after_it() -> None:
    """Whole files, one batch per worker, go out before the listing; the file too long
    for a batch waits for it; with the rest they hold every unit exactly once."""
    estimates = {"big.py": 40.0, **{f"f{i:02d}.py": 1.0 + i / 10 for i in range(30)}}
    known = {f"f{i:02d}.py::test_{t}": _stats(0.5) for i in range(30) for t in range(2)}
    inputs = DispatchInputs(estimates, workers=4, batch_seconds=0.05, known=known)
    first, rest = first_round(inputs)
    target = first_batch_seconds(sum(estimates.values()), 4, 0.05)
    assert len(first) == 4 and [batch.index for batch in first] == [0, 1, 2, 3]
    assert all(batch.predicted_seconds <= target for batch in first)
    assert "big.py" in rest.estimates and "big.py" in rest.to_list()
    placed = {unit for batch in first for unit in batch.units}
    assert placed.isdisjoint(rest.estimates)
    assert placed | set(rest.estimates) == set(estimates)

    listed = {file: [f"{file}::test_{t}" for t in range(2 if file != "big.py" else 8)]
              for file in rest.to_list()}  # the tests the history knows, big.py's 8
    plan = after_first_round(first, replace(rest, listed=listed), estimates)
    assert plan.shards[:4] == first
    assert [batch.index for batch in plan.shards] == list(range(len(plan.shards)))
    units = [unit for batch in plan.shards for unit in batch.units]
    assert len(units) == len(set(units))
    expected = {unit for unit in estimates if unit not in listed}
    expected |= {test for tests in listed.values() for test in tests}
    assert set(units) == expected
    assert plan.total_seconds == pytest.approx(sum(estimates.values()))


def test_nothing_to_list_means_no_first_round() -> None:
    inputs = DispatchInputs({f"f{i}.py": 1.0 for i in range(10)}, workers=4, batch_seconds=0.05)
    assert inputs.to_list() == []
    assert first_round(inputs) == ((), inputs)
    assert first_round(replace(inputs, workers=1))[0] == ()


def test_a_commands_units_are_never_listed() -> None:
    inputs = DispatchInputs({"big.py": 40.0, "a.py": 1.0}, 4, 0.05, command=True)
    assert inputs.to_list() == [] and first_round(inputs)[0] == ()
