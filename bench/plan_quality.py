"""How close shardrun's plans come to the best possible, on real suites' timing files.

For every timing file in ../shared/data/timings and N in WORKER_COUNTS it plans the suite
with shardrun's planner and with the baselines, and scores each plan by makespan / lower
bound (lower bound = max(longest unit, total / N); 1.000 means no plan could be shorter).
history/ then asks how a plan made from stale timings holds up one version later.

    python bench/plan_quality.py                             # print the tables
    python bench/plan_quality.py --write docs/benchmarks.md  # and rewrite "## Plan quality"
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from _datasets import (
    HISTORY_DIR,
    TIMINGS_DIR,
    Version,
    load_datasets,
    load_history,
    provenance,
    sum_by_file,
    write_section,
)

from shardrun.models import Plan
from shardrun.plan.planner import (
    consecutive_chunks,
    lower_bound,
    plain_lpt,
    plan_shards,
    round_robin,
)

HEADING = "## Plan quality"
WORKER_COUNTS = (2, 4, 8, 16, 32)

Planner = Callable[[Mapping[str, float], int], Plan]
PLANNERS: dict[str, Planner] = {
    "shardrun": plan_shards,
    "plain LPT": plain_lpt,
    "round-robin": round_robin,
    "chunks": consecutive_chunks,
}


@dataclass(frozen=True)
class Suite:
    name: str
    estimates: dict[str, float]


@dataclass(frozen=True)
class Score:
    """Makespan / lower bound of every suite at one N, and which suite was worst."""

    ratios: tuple[float, ...]
    worst_suite: str

    @property
    def mean(self) -> float:
        return statistics.fmean(self.ratios)

    @property
    def worst(self) -> float:
        return max(self.ratios)


def score(suites: Sequence[Suite], planner: Planner, workers: int) -> Score:
    ratios = []
    for suite in suites:
        plan = planner(suite.estimates, workers)
        ratios.append(plan.predicted_makespan / plan.lower_bound)
    worst_index = max(range(len(ratios)), key=ratios.__getitem__)
    return Score(tuple(ratios), suites[worst_index].name)


def pigeonhole_bound(estimates: Mapping[str, float], workers: int) -> float:
    """A lower bound that also sees crowding: of the k*N + 1 longest units, some shard
    runs at least k + 1, so at least the k + 1 shortest of them (k = 1, 2, ...).

    max(longest, total / N) misses this: 9 tests of ~55 s on 8 workers need 110 s however
    small the rest is. Measuring against it tells the planner's slack from the instance's.
    """
    sizes = sorted(estimates.values(), reverse=True)
    best = lower_bound(estimates, workers)
    k = 1
    while k * workers < len(sizes):
        best = max(best, math.fsum(sizes[k * workers - k : k * workers + 1]))
        k += 1
    return best


def bounded_count(suites: Sequence[Suite], workers: int) -> int:
    """Suites with one unit longer than total / N: only splitting that unit would help."""
    return sum(1 for suite in suites if plan_shards(suite.estimates, workers).bounding_unit)


def quality_table(suites: Sequence[Suite]) -> str:
    headers = ["N"]
    for name in PLANNERS:
        headers += [f"{name} mean", f"{name} worst"]
    headers += ["shardrun's worst suite", "bounded by one unit"]
    rows = []
    for workers in WORKER_COUNTS:
        scores = {name: score(suites, planner, workers) for name, planner in PLANNERS.items()}
        row = [str(workers)]
        for result in scores.values():
            row += [f"{result.mean:.4f}", f"{result.worst:.4f}"]
        row += [_short(scores["shardrun"].worst_suite), f"{bounded_count(suites, workers)}"]
        rows.append(row)
    return markdown_table(headers, rows)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _short(name: str) -> str:
    """The owner/repo part of a shared file name ("owner__repo__path")."""
    owner, _, rest = name.partition("__")
    return f"{owner}/{rest.partition('__')[0]}"


# --- stale timings (history/) -----------------------------------------------------------


def stale_makespan(old: Mapping[str, float], new: Mapping[str, float], workers: int) -> float:
    """The real makespan, under `new` durations, of the plan shardrun makes from `old`.

    Units gone from `new` are dropped. Units new in `new` are unknown to the plan: each is
    guessed at the mean of the known ones and placed, after the known ones and in name
    order, on the shard with the least predicted load (LPT with equal sizes).
    """
    known = {unit: seconds for unit, seconds in old.items() if unit in new}
    plan = plan_shards(known, workers)
    actual = [math.fsum(new[unit] for unit in shard.units) for shard in plan.shards]
    guess = statistics.fmean(known.values()) if known else 1.0
    heap = [(shard.predicted_seconds, shard.index) for shard in plan.shards]
    heapq.heapify(heap)
    for unit in sorted(set(new) - set(old)):
        predicted, index = heap[0]
        actual[index] += new[unit]
        heapq.heapreplace(heap, (predicted + guess, index))
    return max(actual)


@dataclass(frozen=True)
class HistoryScores:
    """Per step k -> k+1, makespan of the stale and the fresh plan over version k+1's bounds."""

    stale: list[float]
    fresh: list[float]
    fresh_vs_pigeonhole: list[float]


def history_scores(versions: Sequence[Version], workers: int, per_file: bool) -> HistoryScores:
    scores = HistoryScores([], [], [])
    for old, new in itertools.pairwise(versions):
        old_units, new_units = old.durations, new.durations
        if per_file:
            old_units, new_units = sum_by_file(old_units), sum_by_file(new_units)
        bound = lower_bound(new_units, workers)
        fresh = plan_shards(new_units, workers).predicted_makespan
        scores.stale.append(stale_makespan(old_units, new_units, workers) / bound)
        scores.fresh.append(fresh / bound)
        scores.fresh_vs_pigeonhole.append(fresh / pigeonhole_bound(new_units, workers))
    return scores


def history_table(versions: Sequence[Version]) -> str:
    headers = ["N"]
    for level in ("per file", "per test"):
        headers += [f"{level}: stale mean", "stale worst", "fresh mean", "fresh worst"]
        headers += ["fresh worst vs pigeonhole"]
    rows = []
    for workers in WORKER_COUNTS:
        row = [str(workers)]
        for per_file in (True, False):
            scores = history_scores(versions, workers, per_file)
            row += [f"{statistics.fmean(scores.stale):.4f}", f"{max(scores.stale):.4f}"]
            row += [f"{statistics.fmean(scores.fresh):.4f}", f"{max(scores.fresh):.4f}"]
            row += [f"{max(scores.fresh_vs_pigeonhole):.4f}"]
        rows.append(row)
    return markdown_table(headers, rows)


# --- report -------------------------------------------------------------------------------


def per_file_suites() -> list[Suite]:
    return [Suite(data.name, data.by_file()) for data in load_datasets(TIMINGS_DIR)]


def per_test_suites() -> list[Suite]:
    return [
        Suite(data.name, data.durations) for data in load_datasets(TIMINGS_DIR) if data.per_test
    ]


def history_sections() -> list[str]:
    sections = []
    for project, versions in load_history(HISTORY_DIR).items():
        if len(versions) < 2:
            continue
        sections += [
            f"#### {project}: {len(versions)} versions, {len(versions) - 1} steps "
            f"({versions[0].name[:10]} .. {versions[-1].name[:10]})",
            "",
            history_table(versions),
            "",
        ]
    return sections


def report(opening: str) -> str:
    files, tests = per_file_suites(), per_test_suites()
    parts = [
        opening,
        "",
        READING_GUIDE,
        "",
        f"### Per file ({len(files)} timing files; pytest node ids summed by file)",
        "",
        quality_table(files),
        "",
        f"### Per test ({len(tests)} pytest-split files, each test a unit)",
        "",
        quality_table(tests),
        "",
        "### Stale timings: plan with version k, run with version k+1",
        "",
        HISTORY_GUIDE,
        "",
        *history_sections(),
    ]
    return "\n".join(parts)


READING_GUIDE = """\
Each cell is makespan / lower bound (lower bound = max(longest unit, total / N); 1.0000
means no plan can finish sooner), averaged ("mean") or at its worst over the timing files
in `../shared/data/timings`. *shardrun* is `plan_shards` (LPT, then a bounded move/swap
refinement between the fullest shard and the lightest ones); *plain LPT* is the same without
the refinement; *round-robin* deals units sorted by path; *chunks* is pytest-split's default
`duration_based_chunks` (contiguous runs of path-sorted units of ~total / N each).
"bounded by one unit" counts the files whose longest unit alone exceeds total / N: there the
lower bound is that unit, every sensible plan reaches it, and only splitting the unit helps.
A ratio above 1 can also be the instance's fault: with few units per shard the true optimum
itself may sit above max(longest, total / N)."""

HISTORY_GUIDE = """\
history/ holds every committed version of one project's `.test_durations`. For each step,
shardrun plans from version k and the plan is timed with version k+1's durations (units
removed are dropped; units new in k+1 get the mean of the known ones and are placed after
them on the least-loaded shards); the ratio is to version k+1's lower bound. *fresh* plans
with version k+1 itself (perfect timings). The gap between them is what stale timings cost,
the baseline that better estimates must beat. "vs pigeonhole" divides the fresh plan by a
bound that also sees crowding (of the kN + 1 longest units some shard runs k + 1, so at
least the k + 1 shortest of them): where it is near 1, a fresh ratio above 1 is the
instance's (e.g. 9 tests of ~55 s on 8 workers), not the planner's."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--write",
        type=Path,
        metavar="MARKDOWN",
        help=f'replace the "{HEADING}" section of this file (docs/benchmarks.md)',
    )
    args = parser.parse_args(argv)
    body = report(provenance(__file__, argv))
    print(f"{HEADING}\n\n{body}")
    if args.write:
        write_section(args.write, HEADING, body)
        print(f"\nwrote {HEADING!r} to {args.write}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
