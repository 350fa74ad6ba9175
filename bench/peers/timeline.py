"""Where a shardrun run of a peers scenario spent its time: one run, batch by batch.

The peers tables give one wall time per cell; when queue mode loses a cell, this shows
why. It writes the pytest peers' suite for one scenario, runs `shardrun run` on it once
per N, and prints every batch from the run record the run leaves in its history (worker,
start and end from the first batch's start, predicted and actual seconds, and the files
it ran, with how many of each file's tests), then which batch ended last.

    flock /tmp/shardrun-bench.lock python bench/peers/timeline.py S2 --workers 2 4 8

Not a benchmark: one run per N, nothing written to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest_peers
import suite

from shardrun.report.records import BatchRecord


def files_of(units: Sequence[str]) -> str:
    """`f03 f11 f22 (13 tests)`: whole files by stem, split files with their tests' count."""
    whole, tests = [], Counter()
    for unit in units:
        path, _, test = unit.partition("::")
        stem = Path(path).stem.removeprefix("test_")[:3]
        if test:
            tests[stem] += 1
        else:
            whole.append(stem)
    split = [f"{stem} ({count} tests)" for stem, count in sorted(tests.items())]
    return " ".join(sorted(whole) + split)


def batch_lines(batches: Sequence[BatchRecord]) -> list[str]:
    origin = min(batch.start for batch in batches)
    lines = ["| worker | start s | end s | predicted s | actual s | files (tests) |",
             "|---:|---:|---:|---:|---:|:---|"]
    for batch in sorted(batches, key=lambda batch: batch.start):
        lines.append(
            f"| {batch.worker_index} | {batch.start - origin:.2f} "
            f"| {batch.end - origin:.2f} | {batch.predicted_seconds:.2f} "
            f"| {batch.actual_seconds:.2f} | {files_of(batch.units or ())} |")
    last = max(batches, key=lambda batch: batch.end)
    lines += ["", f"Ended last: worker {last.worker_index}'s batch of "
              f"{files_of(last.units or ())}, predicted {last.predicted_seconds:.2f} s, "
              f"took {last.actual_seconds:.2f} s."]
    return lines


def grown(scenario: pytest_peers.Scenario, count: int = 3) -> list[str]:
    """The files that grew the most seconds (S2), as the history has them and as run."""
    planned, actual = suite.file_seconds(scenario.timings), scenario.files
    stems = pytest_peers.grown_files(scenario)[:count]
    return [f"- {stem[:3]}: planned {planned[stem]:.2f} s, takes {actual[stem]:.2f} s "
            f"({len(scenario.examples[stem])} tests)" for stem in stems]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(pytest_peers.TARGETS))
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--mode", choices=("queue", "static"), default="queue")
    parser.add_argument("--total", type=float, default=120.0,
                        help="Seconds of test work in the suite (the 2-minute tables).")
    args = parser.parse_args(argv)
    step, _, _ = pytest_peers.typical_step(args.total)
    by_key = {item.key: item for item in pytest_peers.scenarios(args.total, step)}
    scenario = by_key[args.scenario]
    tool = next(tool for tool in pytest_peers.TOOLS if tool.shardrun_mode == args.mode)
    top = Path(tempfile.mkdtemp(prefix="shardrun-timeline-"))
    try:
        prepared = pytest_peers.prepare(scenario, top / scenario.key)
        print(f"{scenario.key}: {scenario.title}", *grown(scenario), sep="\n")
        for workers in args.workers:
            logs = top / f"logs-{workers}"
            logs.mkdir()
            sample = pytest_peers.run_once(prepared, tool, workers, logs)
            print(f"\n### N = {workers}, {args.mode}: {sample.wall:.2f} s, "
                  f"{sample.before_first:.2f} s to the first batch\n")
            print("\n".join(batch_lines(pytest_peers.last_record(prepared.root).batches)))
    finally:
        shutil.rmtree(top, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
