"""Queue mode's cost model: units + estimates + workers + boot cost -> batches. Pure.

A static plan is only as good as last run's timings; a queue lets workers that finish
early take more work. How big each batch should be is a trade-off (docs/queue.md):

- every batch pays one process boot (`boot_seconds`: framework + suite load, measured
  from earlier runs), so batches much shorter than a boot waste workers' time;
- big batches at the end of a run leave workers idle while the last ones finish.

Factoring (Hummel, Schonberg & Flynn, 1992) answers both: work is handed out in rounds;
each round covers half of the remaining predicted time in N equal batches, so batch sizes
shrink geometrically as the run nears its end, and the error of any one estimate can be
absorbed by the batches still queued. No batch is planned shorter than
`MIN_BATCH_BOOTS` boots, where the boot would cost more than 1/(1 + MIN_BATCH_BOOTS) of
the batch. Units within a round are balanced with the static planner (LPT), and rounds
are dispatched longest units first.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence

from shardrun.models import Plan, Shard
from shardrun.planner import plan_shards

# A batch shorter than this many boots spends over 20% of its time starting up.
MIN_BATCH_BOOTS = 4.0
# Factoring's classic x = 2: each round hands out half of what remains.
ROUND_FRACTION = 0.5
# Boot costs assumed before any run has measured one (seconds): a plain `rspec` or
# `python -m pytest` process start on a small suite. Rails apps measure far more, which
# the history then records.
DEFAULT_BOOT_SECONDS: dict[str, float] = {"rspec": 0.5, "pytest": 0.5, "command": 0.5}


def min_batch_seconds(boot_seconds: float) -> float:
    return max(boot_seconds, 0.0) * MIN_BATCH_BOOTS


def first_batch_seconds(total: float, workers: int, boot_seconds: float) -> float:
    """The target length of the first round's batches: the largest batches of the run."""
    return max(total * ROUND_FRACTION / workers, min_batch_seconds(boot_seconds))


def units_to_split(
    estimates: Mapping[str, float], workers: int, boot_seconds: float
) -> list[str]:
    """Files worth running as separate examples: longer than the first batch target.

    Such a file would be a batch of its own that every other batch waits for; split, its
    examples are spread like any other units. A file must also be long enough for at least
    two worthwhile batches, or splitting only adds boots. Longest first.
    """
    total = math.fsum(estimates.values())
    threshold = max(
        first_batch_seconds(total, workers, boot_seconds), 2 * min_batch_seconds(boot_seconds)
    )
    if workers < 2:
        return []
    return sorted(
        (unit for unit, seconds in estimates.items() if seconds > threshold),
        key=lambda unit: (-estimates[unit], unit),
    )


def queue_batches(
    estimates: Mapping[str, float], workers: int, boot_seconds: float
) -> Plan:
    """Batches in dispatch order (Shard.index = position), with a simulated makespan."""
    remaining = sorted(estimates.items(), key=lambda item: (-item[1], item[0]))
    min_batch = min_batch_seconds(boot_seconds)
    batches: list[Shard] = []
    position = 0
    while position < len(remaining):
        left = math.fsum(seconds for _, seconds in remaining[position:])
        per_batch = max(left * ROUND_FRACTION / workers, min_batch)
        if per_batch <= 0:  # nothing left costs anything: spread it in one round
            count, taken = min(workers, len(remaining) - position), len(remaining) - position
        else:
            count = min(workers, max(1, int(left // per_batch)))
            taken = _take(remaining, position, per_batch * count, min_batch)
        for shard in _balance(remaining[position : position + taken], count):
            batches.append(Shard(len(batches), shard.units, shard.predicted_seconds))
        position += taken
    return _plan(batches, estimates, workers, boot_seconds)


def _take(
    ordered: Sequence[tuple[str, float]], start: int, budget: float, min_batch: float
) -> int:
    """How many units from `start` make up this round (at least one; no tiny leftover)."""
    taken, seconds = 0, 0.0
    while start + taken < len(ordered) and (taken == 0 or seconds < budget):
        seconds += ordered[start + taken][1]
        taken += 1
    rest = math.fsum(value for _, value in ordered[start + taken :])
    if rest < min_batch:
        taken = len(ordered) - start
    return taken


def _balance(units: Sequence[tuple[str, float]], count: int) -> list[Shard]:
    plan = plan_shards(dict(units), count)
    shards = [shard for shard in plan.shards if shard.units]
    return sorted(shards, key=lambda shard: (-shard.predicted_seconds, shard.index))


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
