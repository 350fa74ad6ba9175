"""Queue mode's cost model: units + estimates + workers + boot cost -> batches. Pure.

A static plan is only as good as last run's timings; a queue lets workers that finish
early take more work. How big each batch should be is a trade-off (docs/queue.md):

- every batch pays one process boot (`boot_seconds`: framework + suite load, measured
  from earlier runs), so batches much shorter than a boot waste workers' time;
- big batches at the end of a run leave workers idle while the last ones finish.

Factoring (Hummel, Schonberg & Flynn, 1992) answers both: work is handed out in rounds,
each covering half of the remaining predicted time in N equal batches, so batch sizes
shrink geometrically as the run nears its end, and the error of any one estimate can be
absorbed by the batches still queued. The N equal parts come from the static planner:
each of its balanced shards is cut into chunks of half of what is left of it, and round
k is every shard's k-th chunk. No chunk is planned shorter than `MIN_BATCH_BOOTS` boots
(where the boot would cost more than 1/(1 + MIN_BATCH_BOOTS) of it) or 1/64 of its
shard. With exact estimates this finishes where the static plan does, plus a boot per
round; the first version balanced each round on its own and lost up to 15% to static
plans on exact timings, from coarse units stranded in late rounds.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from shardrun.models import Plan, Shard
from shardrun.plan.history import FileStats
from shardrun.plan.per_test import known_test_counts, known_test_seconds, split_listed
from shardrun.plan.planner import plan_shards

# A batch shorter than this many boots spends over 20% of its time starting up.
MIN_BATCH_BOOTS = 4.0
# Factoring's classic x = 2: each round hands out half of what remains.
ROUND_FRACTION = 0.5
# No shard is cut into chunks smaller than this share of it (at most ~7 rounds), even
# when boots are cheap or not yet measured.
MIN_CHUNK_FRACTION = 1 / 64
# A shard's last chunk holds its smallest-predicted units, which are also the least
# trustworthy: a file measured at 10 ms on an old commit may take seconds now (in
# bench/queue_modes.py 26 such files in one last chunk slept 14 s against 0.4 s
# predicted). The chunk is cut by unit count into as many pieces as this share of the
# shard's time buys in batch overheads, at most MAX_TAIL_PIECES, so that grown files land
# on different workers. Cheap with warm runners; with a boot per batch it stays one piece
# or two. (Simulated on the 18 history steps the share changes the mean by < 0.1% at
# 2%; at 5% the extra boots cost 2% when every batch boots a process.)
TAIL_OVERHEAD_SHARE = 0.02
MAX_TAIL_PIECES = 8
# A file whose tests are known is split when it holds at least this share of a worker's
# share of the suite: one below it, run whole and last, ends the run at most ~6% late.
# Splitting costs a collection of the file in the coordinator's listing and one in each
# worker that runs a piece: on networkx (7 s to collect 104 s of tests) splitting every
# file made a run slower (listing 8 s) than the tail it saved.
KNOWN_SPLIT_SHARE = 1 / 16
# A file is split only from this many listings long (units_to_split).
LISTING_WORTH = 2.0
# Boot costs assumed before any run has measured one (seconds): a plain `rspec` or
# `python -m pytest` process start on a small suite. Rails apps measure far more, which
# the history then records.
DEFAULT_BOOT_SECONDS: dict[str, float] = {
    "rspec": 0.5, "pytest": 0.5, "minitest": 0.5, "cucumber": 0.5, "command": 0.5,
}
# What a batch costs outside its tests in a warm runner (shardrun/work/warm.py) before a run
# has measured it: dispatch through Redis plus one `RSpec::Core::Runner.run` or
# `pytest.main` session (0.01-0.06 s measured on the bundled examples).
DEFAULT_WARM_BATCH_SECONDS = 0.05


def min_batch_seconds(boot_seconds: float) -> float:
    return max(boot_seconds, 0.0) * MIN_BATCH_BOOTS


def first_batch_seconds(total: float, workers: int, boot_seconds: float) -> float:
    """The target length of the first round's batches: the largest batches of the run."""
    return max(total * ROUND_FRACTION / workers, min_batch_seconds(boot_seconds))


def units_to_split(
    estimates: Mapping[str, float], workers: int, boot_seconds: float,
    known_tests: Mapping[str, int] | None = None, listing_seconds: float = 0.0,
    known_seconds: Mapping[str, float] | None = None,
) -> list[str]:
    """Files worth running as separate tests, longest first.

    A file longer than the first batch target would be a batch of its own that every
    other batch waits for; split, its tests are spread like any other units (it must be
    long enough for two worthwhile batches, or splitting only adds boots). A file whose
    tests the history knows (`known_tests`: how many, per file) is split too, however
    short of that, from KNOWN_SPLIT_SHARE of a worker's share up: estimates are last
    run's, and a file that grew since would otherwise run whole, and last.

    No file shorter than LISTING_WORTH listings (`listing_seconds`: one framework boot)
    is split: its pieces wait for the listing, and splitting it can save at most about
    half of it at the end of a run. On suites of a few seconds the listing cost more than
    every split saved (rspec-expectations at N = 4: 7.4 s with the split files waiting
    for a 2 s `rspec --dry-run`, 3.9 s planned from whole files; docs/benchmarks.md).

    Only what splitting spreads counts: with `known_seconds` (what a file's known tests
    take, per_test.known_test_seconds), a file's estimate above its tests' is set-up
    they share, which every piece would pay again: a file that spends 2 s in a
    before(:all) hook and 10 ms in its examples is no file to split.
    """
    if workers < 2:
        return []
    total = math.fsum(estimates.values())
    threshold = max(
        first_batch_seconds(total, workers, boot_seconds), 2 * min_batch_seconds(boot_seconds)
    )
    known = known_tests or {}
    tests_only = known_seconds or {}
    tail = known_split_seconds(total, workers)
    floor = LISTING_WORTH * listing_seconds
    spread = {unit: min(seconds, tests_only.get(unit, seconds))
              for unit, seconds in estimates.items()}
    return sorted(
        (unit for unit, seconds in spread.items()
         if seconds >= floor
         and (seconds > threshold or (known.get(unit, 0) >= 2 and seconds >= tail))),
        key=lambda unit: (-estimates[unit], unit),
    )


def known_split_seconds(total: float, workers: int) -> float:
    """The shortest file with known tests that is split (KNOWN_SPLIT_SHARE)."""
    return total * KNOWN_SPLIT_SHARE / max(workers, 1)


@dataclass(frozen=True)
class DispatchInputs:
    """Everything queue mode's batches are computed from, gathered first (run/options.py:
    the history's measured batch cost, one listing process) so that `queue_plan` is a
    pure function of it."""

    estimates: Mapping[str, float]  # per planned unit: files, and ids the user named
    workers: int  # how many workers the batches are sized for
    batch_seconds: float  # one batch's cost outside its tests (0: not comparable)
    known: Mapping[str, FileStats] = field(default_factory=dict)  # tests the history knows
    listed: Mapping[str, Sequence[str]] = field(default_factory=dict)  # tests found now
    command: bool = False  # units run by a --command: files, never split
    listing_seconds: float = 0.0  # what listing a file's tests costs: one framework boot

    def to_list(self) -> list[str]:
        """The files whose tests a listing should find: those worth splitting."""
        if self.command:
            return []
        return units_to_split(self.estimates, self.workers, self.batch_seconds,
                              known_test_counts(self.known), self.listing_seconds,
                              known_test_seconds(self.known))


def queue_plan(inputs: DispatchInputs) -> Plan:
    """Queue mode's batches: the listed files split into their tests, then batched."""
    estimates = split_listed(inputs.estimates, inputs.listed, inputs.known)
    return queue_batches(estimates, inputs.workers, inputs.batch_seconds)


def first_round(inputs: DispatchInputs) -> tuple[tuple[Shard, ...], DispatchInputs]:
    """A first round that needs no listing, and the inputs left for the rest.

    Listing the tests of the files worth splitting boots the framework and imports those
    files: 1-3 s before the first batch on the peers' pytest suites (docs/benchmarks.md),
    with every worker waiting. The first round does without: one batch per worker of
    whole files, the longest that fit a first-round batch (files too long for one wait
    to be split). They run early, where the later, smaller rounds absorb what their
    estimates got wrong, a file with known tests that grew since included (it is split
    only when it would run later, where it could end the run late), while the listing
    runs beside them for the rest. Nothing to list: no first round, the whole plan is
    made at once.
    """
    estimates, workers = inputs.estimates, inputs.workers
    if workers < 2 or not inputs.to_list():
        return (), inputs
    target = first_batch_seconds(math.fsum(estimates.values()), workers, inputs.batch_seconds)
    too_long = set(units_to_split(estimates, workers, inputs.batch_seconds,
                                  listing_seconds=inputs.listing_seconds,
                                  known_seconds=known_test_seconds(inputs.known)))
    bins: list[tuple[float, int, list[str]]] = [(0.0, index, []) for index in range(workers)]
    for unit in sorted(estimates, key=lambda unit: (-estimates[unit], unit)):
        load, index, units = bins[0]
        if unit in too_long or (units and load + estimates[unit] > target):
            continue
        units.append(unit)
        heapq.heapreplace(bins, (load + estimates[unit], index, units))
    batches = sorted((Shard(0, tuple(units), load) for load, _, units in bins if units),
                     key=lambda batch: (-batch.predicted_seconds, batch.units))
    first = tuple(replace(batch, index=position) for position, batch in enumerate(batches))
    taken = {unit for batch in first for unit in batch.units}
    rest = {unit: seconds for unit, seconds in estimates.items() if unit not in taken}
    return first, replace(inputs, estimates=rest)


def after_first_round(
    first: Sequence[Shard], rest: DispatchInputs, whole: Mapping[str, float]
) -> Plan:
    """The whole plan: the first round, then the rest's batches (its listed files split)
    numbered after it; the makespan simulated over both. `whole`: every file's estimate,
    the first round's among them."""
    later = queue_plan(rest)
    shards = (*first, *(replace(batch, index=len(first) + batch.index)
                        for batch in later.shards))
    estimates = {**{unit: whole[unit] for batch in first for unit in batch.units},
                 **split_listed(rest.estimates, rest.listed, rest.known)}
    return _plan(list(shards), estimates, rest.workers, rest.batch_seconds)


def queue_batches(
    estimates: Mapping[str, float], workers: int, boot_seconds: float
) -> Plan:
    """Batches in dispatch order (Shard.index = position), with a simulated makespan.

    The static plan's N balanced shards are each cut into chunks of half of what is left
    of the shard (factoring within a shard), and the chunks are dispatched round by
    round, longest first. With exact estimates every worker takes one chunk per round and
    the run ends where the static plan would, plus a boot per chunk; when estimates are
    off, the workers that free up early take the later, ever smaller rounds.
    """
    plan = plan_shards(estimates, workers)
    rounds: list[list[tuple[tuple[str, ...], float]]] = []
    for shard in plan.shards:
        chunks = _chunks(shard.units, estimates, boot_seconds)
        for position, chunk in enumerate(chunks):
            if position == len(rounds):
                rounds.append([])
            rounds[position].append(chunk)
    batches: list[Shard] = []
    for chunks in rounds:
        for units, seconds in sorted(chunks, key=lambda chunk: (-chunk[1], chunk[0])):
            batches.append(Shard(len(batches), units, seconds))
    return _plan(batches, estimates, workers, boot_seconds)


def _chunks(
    units: Sequence[str], estimates: Mapping[str, float], boot_seconds: float
) -> list[tuple[tuple[str, ...], float]]:
    """One shard (longest units first) as chunks of half of what is left of it, until
    what is left is under two worthwhile batches; then the rest is the last chunk, cut
    into tail pieces (`_tail_pieces`)."""
    total = math.fsum(estimates[unit] for unit in units)
    smallest = max(min_batch_seconds(boot_seconds), total * MIN_CHUNK_FRACTION)
    chunks: list[tuple[tuple[str, ...], float]] = []
    position, left = 0, total
    while position < len(units):
        if left < 2 * smallest or left <= 0:
            rest = units[position:]
            pieces = _tail_pieces(len(rest), total, boot_seconds)
            chunks += [_chunk(rest[piece::pieces], estimates) for piece in range(pieces)]
            break
        target, taken, seconds = left * ROUND_FRACTION, 0, 0.0
        while position + taken < len(units) and (taken == 0 or seconds < target):
            seconds += estimates[units[position + taken]]
            taken += 1
        chunks.append((tuple(units[position : position + taken]), seconds))
        position, left = position + taken, left - seconds
    return chunks


def _tail_pieces(count: int, shard_seconds: float, boot_seconds: float) -> int:
    """How many pieces a shard's last chunk of `count` units is cut into (see
    TAIL_OVERHEAD_SHARE); 1 when nothing is known of the batch cost."""
    if count <= 1 or boot_seconds <= 0:
        return 1
    affordable = min(TAIL_OVERHEAD_SHARE * shard_seconds / boot_seconds, MAX_TAIL_PIECES)
    return max(1, min(count, math.floor(affordable)))


def _chunk(
    units: Sequence[str], estimates: Mapping[str, float]
) -> tuple[tuple[str, ...], float]:
    return tuple(units), math.fsum(estimates[unit] for unit in units)


def _plan(
    batches: list[Shard], estimates: Mapping[str, float], workers: int, boot_seconds: float
) -> Plan:
    total = math.fsum(estimates.values())
    longest = max(estimates.values(), default=0.0)
    bounding = None
    if longest > total / workers:
        bounding = min(unit for unit, seconds in estimates.items() if seconds == longest)
    return Plan(
        workers=workers,
        shards=tuple(batches),
        predicted_makespan=simulate(
            [batch.predicted_seconds for batch in batches], workers, boot_seconds
        ),
        lower_bound=max(longest, total / workers),
        total_seconds=total,
        bounding_unit=bounding,
    )


def simulate(batch_seconds: Sequence[float], workers: int, boot_seconds: float) -> float:
    """Makespan when N workers each take the next batch as they free up (list scheduling)."""
    free_at = [0.0] * workers
    for seconds in batch_seconds:
        start = heapq.heappop(free_at)
        heapq.heappush(free_at, start + boot_seconds + seconds)
    return max(free_at, default=0.0)
