"""Planning at scale: 100,000 files into 1,000 shards must take < 1 s and < 200 MB.

The largest monorepos have tens of thousands of test files; the planner runs on every CI
node before any test starts, so its time is paid N times over on the critical path.

    python bench/plan_scale.py                             # print the numbers
    python bench/plan_scale.py --write docs/benchmarks.md  # and rewrite "## Planning at scale"

Exits 1 when a target is missed, so it can guard CI.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from _datasets import provenance, write_section

from shardrun.models import Plan
from shardrun.plan.planner import plain_lpt, plan_shards

HEADING = "## Planning at scale"
SEED = 20240601
# Test-file durations are roughly lognormal: median e^0 = 1 s, sigma 1.5 gives a long tail
# (the 99.9th percentile near 100 s), like the knapsack reports in ../shared/data/timings.
LOG_MEAN, LOG_SIGMA = 0.0, 1.5
TARGET_SECONDS = 1.0
TARGET_MEGABYTES = 200.0
MEGABYTE = 1024 * 1024

Planner = Callable[[Mapping[str, float], int], Plan]


@dataclass(frozen=True)
class Measurement:
    units: int
    workers: int
    runs: int
    median_seconds: float
    lpt_median_seconds: float
    traced_peak_mb: float
    max_rss_mb: float
    ratio_to_bound: float

    @property
    def meets_targets(self) -> bool:
        return (
            self.median_seconds < TARGET_SECONDS
            and max(self.traced_peak_mb, self.max_rss_mb) < TARGET_MEGABYTES
        )


def synthetic_suite(units: int, seed: int = SEED) -> dict[str, float]:
    """`units` file paths with seeded lognormal durations: the same suite on every run."""
    rng = random.Random(seed)
    return {
        f"spec/area_{index % 500:03d}/file_{index:06d}_spec.rb": rng.lognormvariate(
            LOG_MEAN, LOG_SIGMA
        )
        for index in range(units)
    }


def median_seconds(planner: Planner, estimates: dict[str, float], workers: int, runs: int) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        planner(estimates, workers)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def traced_peak_megabytes(estimates: dict[str, float], workers: int) -> float:
    """Peak Python allocation of one planning call, above what existed before it."""
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        plan_shards(estimates, workers)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (peak - before) / MEGABYTE


def max_rss_megabytes() -> float:
    """The whole process's high-water mark (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(units: int, workers: int, runs: int) -> Measurement:
    estimates = synthetic_suite(units)
    plan = plan_shards(estimates, workers)
    return Measurement(
        units=units,
        workers=workers,
        runs=runs,
        median_seconds=median_seconds(plan_shards, estimates, workers, runs),
        lpt_median_seconds=median_seconds(plain_lpt, estimates, workers, runs),
        traced_peak_mb=traced_peak_megabytes(estimates, workers),
        max_rss_mb=max_rss_megabytes(),
        ratio_to_bound=plan.predicted_makespan / plan.lower_bound,
    )


def report(result: Measurement, opening: str) -> str:
    verdict = "met" if result.meets_targets else "**missed**"
    rows = [
        ("`plan_shards` wall time, median", f"{result.median_seconds:.3f} s", "< 1 s"),
        ("`plain_lpt` wall time, median (no refinement)", f"{result.lpt_median_seconds:.3f} s", ""),
        (
            "tracemalloc peak of one `plan_shards` call",
            f"{result.traced_peak_mb:.1f} MB",
            "< 200 MB",
        ),
        ("process max RSS (getrusage, whole run)", f"{result.max_rss_mb:.1f} MB", "< 200 MB"),
        ("makespan / lower bound", f"{result.ratio_to_bound:.6f}", ""),
    ]
    lines = [
        opening,
        "",
        f"{result.units:,} synthetic files (seeded lognormal durations, median 1 s,"
        f" sigma {LOG_SIGMA}) into {result.workers:,} shards; wall times are the median of"
        f" {result.runs} runs. Targets {verdict}.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        *(f"| {name} | {value} | {target} |" for name, value, target in rows),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--write",
        type=Path,
        metavar="MARKDOWN",
        help=f'replace the "{HEADING}" section of this file (docs/benchmarks.md)',
    )
    args = parser.parse_args(argv)
    result = measure(args.units, args.workers, args.runs)
    body = report(result, provenance(__file__, argv))
    print(f"{HEADING}\n\n{body}")
    if args.write:
        write_section(args.write, HEADING, body)
        print(f"\nwrote {HEADING!r} to {args.write}", file=sys.stderr)
    return 0 if result.meets_targets else 1


if __name__ == "__main__":
    sys.exit(main())
