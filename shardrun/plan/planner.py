"""Static planning: seconds per unit + number of workers -> balanced shards. Pure, no I/O.

`plan_shards` is LPT (longest processing time first: each unit, longest first, goes to the
least-loaded shard), which is within 4/3 - 1/(3N) of the optimum, followed by a short,
bounded refinement that moves or swaps units between the fullest shard and lighter ones
(see `_Refiner`). Every CI node computes its own plan from the same timings, so every step
is deterministic: ties are broken by unit name and shard index, never by dict order.

Estimates must be finite: NaN or infinity raise `InputError` (no plan can be judged with
them). A negative estimate counts as 0: JUnit files do contain tiny negative times when
the clock stepped back during a fast test, and such a test costs nothing worth planning.

`plain_lpt`, `round_robin` and `consecutive_chunks` are the baselines that
bench/plan_quality.py compares against; they are not meant for real runs.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from operator import itemgetter

from shardrun.errors import InputError
from shardrun.models import Plan, Shard

# The refinement stops after this many improving exchanges: the suites in
# ../shared/data/timings settle within 90 at N <= 32 (roughly 3 per shard), and each step
# costs O(N + units in the fullest shard), so 1,000 shards still plan well under a second.
MAX_REFINE_STEPS = 256
# ...or once it has examined this many units in all (about 0.2 s of Python): with tens of
# thousands of units per shard LPT is already within a hair of the bound, and a step would
# cost a full pass over the fullest shard.
MAX_REFINE_WORK = 200_000
# How many of the lightest shards each step tries as a partner for the fullest one. The
# lightest have the most room; trying all N would make a step O(N * units per shard).
REFINE_PARTNERS = 32
# Exchanges that shorten the fullest shard by less than this fraction of it are not worth
# a step (and would let float rounding ping-pong units between equal shards).
MIN_GAIN_FRACTION = 1e-9


def plan_shards(estimates: Mapping[str, float], workers: int) -> Plan:
    """Balanced shards for `workers` workers: LPT, then a bounded move/swap refinement."""
    sizes_by_unit = _checked(estimates, workers)
    names, sizes = _longest_first(sizes_by_unit)
    members = _lpt(sizes, workers)
    _Refiner(members, sizes).run()
    return _build_plan(names, sizes, members, workers)


def plain_lpt(estimates: Mapping[str, float], workers: int) -> Plan:
    """LPT without the refinement: the benchmark's yardstick for what the refinement adds."""
    sizes_by_unit = _checked(estimates, workers)
    names, sizes = _longest_first(sizes_by_unit)
    return _build_plan(names, sizes, _lpt(sizes, workers), workers)


def lower_bound(estimates: Mapping[str, float], workers: int) -> float:
    """max(longest unit, total / N): no plan of these units can finish sooner."""
    sizes = _checked(estimates, workers).values()
    return max(max(sizes, default=0.0), math.fsum(sizes) / workers)


def round_robin(estimates: Mapping[str, float], workers: int) -> Plan:
    """Baseline: units sorted by name, dealt like cards (unit i goes to shard i % N)."""
    sizes_by_unit = _checked(estimates, workers)
    names = sorted(sizes_by_unit)
    sizes = [sizes_by_unit[name] for name in names]
    members: list[list[int]] = [[] for _ in range(workers)]
    for position in range(len(names)):
        members[position % workers].append(position)
    return _build_plan(names, sizes, members, workers)


def consecutive_chunks(estimates: Mapping[str, float], workers: int) -> Plan:
    """Baseline: pytest-split's default "duration_based_chunks" over units sorted by name.

    Mirrors pytest_split.algorithms.DurationBasedChunksAlgorithm: walk the units in order
    and move on to the next group once the current one holds at least total / N seconds.
    pytest-split walks pytest's collection order; sorting by name stands in for it here.
    Unlike pytest-split, the last group never overflows into a group N + 1 (its index
    could, through float rounding or zero-second units, run past the end).
    """
    sizes_by_unit = _checked(estimates, workers)
    names = sorted(sizes_by_unit)
    sizes = [sizes_by_unit[name] for name in names]
    time_per_group = math.fsum(sizes) / workers
    members: list[list[int]] = [[] for _ in range(workers)]
    group, group_seconds = 0, 0.0
    for position, size in enumerate(sizes):
        if group_seconds >= time_per_group and group < workers - 1:
            group, group_seconds = group + 1, 0.0
        members[group].append(position)
        group_seconds += size
    return _build_plan(names, sizes, members, workers)


def _checked(estimates: Mapping[str, float], workers: int) -> dict[str, float]:
    """The estimates with negatives as 0, after rejecting a bad worker count or NaN/inf."""
    if workers < 1:
        raise InputError(f"--workers must be at least 1 (got {workers})")
    cleaned: dict[str, float] = {}
    for unit, seconds in estimates.items():
        value = float(seconds)
        if not math.isfinite(value):
            raise InputError(
                f"the timing estimate for {unit!r} is {value}: fix or delete the timing file"
            )
        cleaned[unit] = value if value > 0 else 0.0  # also turns -0.0 into 0.0
    return cleaned


def _longest_first(sizes_by_unit: Mapping[str, float]) -> tuple[list[str], list[float]]:
    """Names and sizes ordered by (-size, name): the same order whatever the dict order.

    Two sorts instead of one with a tuple key: by name, then a stable sort by size
    (`reverse=True` keeps equal sizes in name order); about twice as fast on 100,000 units.
    """
    ordered = sorted(sizes_by_unit.items())
    ordered.sort(key=itemgetter(1), reverse=True)
    return [name for name, _ in ordered], [size for _, size in ordered]


def _lpt(sizes: Sequence[float], workers: int) -> list[list[int]]:
    """Positions in `sizes` (longest first) per shard; each goes to the least-loaded shard.

    The heap holds (load, unit count, shard index): among equal loads the shard with the
    fewest units wins, then the lowest index. Without the count, zero-second units (empty
    files, a history of zeros) all land on shard 0, since its load never grows: with no
    information at all the plan would be one shard of everything. With it, they are dealt
    out by count, which is the best guess when nothing is known.
    """
    members: list[list[int]] = [[] for _ in range(workers)]
    heap = [(0.0, 0, shard) for shard in range(workers)]
    for position, size in enumerate(sizes):
        load, count, shard = heap[0]
        members[shard].append(position)
        heapq.heapreplace(heap, (load + size, count + 1, shard))
    return members


def _build_plan(
    names: Sequence[str], sizes: Sequence[float], members: list[list[int]], workers: int
) -> Plan:
    """The Plan: shards list units in position order, i.e. longest first for plan_shards."""
    shards = tuple(
        Shard(
            index=shard,
            units=tuple(names[position] for position in sorted(positions)),
            predicted_seconds=math.fsum(sizes[position] for position in positions),
        )
        for shard, positions in enumerate(members)
    )
    total = math.fsum(sizes)
    return Plan(
        workers=workers,
        shards=shards,
        predicted_makespan=max(shard.predicted_seconds for shard in shards),
        lower_bound=max(max(sizes, default=0.0), total / workers),
        total_seconds=total,
        bounding_unit=_bounding_unit(names, sizes, total / workers),
    )


def _bounding_unit(names: Sequence[str], sizes: Sequence[float], fair_share: float) -> str | None:
    """The longest unit (first by name among equals) if it alone exceeds total / N.

    Then the lower bound is that unit and no re-planning helps; only splitting it would.
    """
    longest = max(sizes, default=0.0)
    if longest <= fair_share:
        return None
    return min(name for name, size in zip(names, sizes, strict=True) if size == longest)


# --- refinement -------------------------------------------------------------------------
#
# LPT's worst cases come from its last few placements: a shard ends up one medium unit too
# long while another has room. Exchanging a unit `a` of the fullest shard (load L_max) with
# a unit `b` (or nothing) of a lighter shard (load L_k) moves d = a - b seconds; for
# 0 < d < L_max - L_k both shards end below L_max, so the makespan never gets worse and
# the sum of squared loads strictly falls (the loop cannot cycle). We take the d closest
# to half the gap, which leaves the pair as even as one exchange can.


class _Refiner:
    """Improving exchanges between the fullest shard and the lightest ones, within budget.

    Bounded twice: by MAX_REFINE_STEPS exchanges and by MAX_REFINE_WORK units examined, so
    a suite with tens of thousands of units per shard cannot make planning slow.
    """

    def __init__(self, members: list[list[int]], sizes: Sequence[float]) -> None:
        self.members = members
        self.sizes = sizes
        self.loads = [math.fsum(sizes[position] for position in shard) for shard in members]
        self.work_left = MAX_REFINE_WORK

    def run(self) -> None:
        if len(self.members) < 2:
            return
        for _ in range(MAX_REFINE_STEPS):
            if not self.step():
                return

    def step(self) -> bool:
        """Apply the first improving exchange between the fullest shard and a light one."""
        loads = self.loads
        fullest = loads.index(max(loads))  # the lowest index among equals
        min_gain = loads[fullest] * MIN_GAIN_FRACTION
        # nsmallest is stable (sorted(...)[:n]), so equal loads come in index order.
        lightest = heapq.nsmallest(REFINE_PARTNERS + 1, range(len(loads)), key=loads.__getitem__)
        for partner in lightest:
            gap = loads[fullest] - loads[partner]
            if partner == fullest or gap <= 2 * min_gain:
                continue
            if self.work_left <= 0:
                return False
            self.work_left -= len(self.members[fullest])
            exchange = self.best_exchange(fullest, partner, gap, min_gain)
            if exchange is not None:
                self.apply(exchange, fullest, partner)
                return True
        return False

    def best_exchange(
        self, full: int, light: int, gap: float, min_gain: float
    ) -> tuple[int, int | None] | None:
        """(a from full, b from light or None) whose d = a - b is nearest gap/2 in (0, gap).

        Positions are ascending, i.e. sizes descending; reversed, the light shard's sizes
        ascend and can be bisected for b ~ a - gap/2.
        """
        sizes, light_units = self.sizes, self.members[light][::-1]
        light_sizes = [sizes[position] for position in light_units]
        best: tuple[int, int | None] | None = None
        best_miss = math.inf
        for a in self.members[full]:
            index = bisect_left(light_sizes, sizes[a] - gap / 2)
            for b in (*light_units[max(index - 1, 0) : index + 1], None):
                moved = sizes[a] - (0.0 if b is None else sizes[b])
                miss = abs(moved - gap / 2)
                if min_gain < moved < gap - min_gain and miss < best_miss:
                    best, best_miss = (a, b), miss
        return best

    def apply(self, exchange: tuple[int, int | None], full: int, light: int) -> None:
        """Swap (or move) the exchange's units, keeping each shard's positions ascending."""
        a, b = exchange
        self.members[full].remove(a)
        self.members[light].append(a)
        if b is not None:
            self.members[light].remove(b)
            self.members[full].append(b)
        for shard in (full, light):
            self.members[shard].sort()
            self.loads[shard] = math.fsum(self.sizes[position] for position in self.members[shard])
