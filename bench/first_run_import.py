"""The first run of a project that already has knapsack / parallel_tests / pytest-split timings.

For every shared timing file kept at its tool's default path (../shared/data/timings), a
project is made in a temporary directory with one placeholder file per recorded test file
(all the same size: the real files' sizes are not in the data), and `gather.prepare`
plans it for N workers twice: without the timing file (file sizes, i.e. a split by count)
and with the file at its default path (imported by plan/existing.py). Each plan is judged
by the seconds the file records: makespan over the lower bound max(longest, total / N).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _datasets import TIMINGS_DIR, load_timing_file, provenance, publish

from shardrun.plan.existing import existing_timings
from shardrun.plan.gather import PlannedSuite, PlanRequest, prepare

HEADING = "## First run: timing files of other tools"
# Default path of each tool's file (plan/existing.py), by the shared file's name ending.
CONVENTIONAL = {
    "knapsack_rspec_report.json": ("rspec", "knapsack_rspec_report.json"),
    "knapsack_minitest_report.json": ("minitest", "knapsack_minitest_report.json"),
    "knapsack_cucumber_report.json": ("cucumber", "knapsack_cucumber_report.json"),
    "parallel_runtime_rspec.log": ("rspec", "tmp/parallel_runtime_rspec.log"),
    "__.test_durations": ("pytest", ".test_durations"),
}


def project_key(key: str) -> str | None:
    path = key.split("::", 1)[0].lstrip("./").lstrip("/")
    return None if not path or ".." in path.split("/") else path


def ratio(planned: dict[int, list[str]], seconds: dict[str, float], workers: int) -> float:
    makespan = max(sum(seconds[unit] for unit in units) for units in planned.values())
    bound = max(max(seconds.values()), sum(seconds.values()) / workers)
    return makespan / bound if bound else 1.0


def shards(planned: PlannedSuite) -> dict[int, list[str]]:
    return {shard.index: list(shard.units) for shard in planned.plan.shards}


def measure(source: Path, framework: str, target: str, workers: int) -> tuple[int, float,
                                                                              float, float]:
    dataset = load_timing_file(source)
    assert dataset is not None
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        seconds: dict[str, float] = {}
        for key, value in dataset.by_file().items():
            path = project_key(key)
            if path is not None:
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                (root / path).write_text("x\n")
                seconds[path] = seconds.get(path, 0.0) + value
        request = PlanRequest(root, (), framework, workers, root / "history.json")
        sizes = prepare(request)
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, root / target)
        started = time.perf_counter()
        existing_timings(root, framework)
        elapsed = time.perf_counter() - started
        imported = prepare(request)
        units = {file: seconds[file] for file in imported.suite.files}
        return (len(units), ratio(shards(sizes), units, workers),
                ratio(shards(imported), units, workers), elapsed)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--write", type=Path, metavar="MARKDOWN")
    args = parser.parse_args(argv)
    rows = []
    for source in sorted(TIMINGS_DIR.iterdir()):
        match = next((value for ending, value in CONVENTIONAL.items()
                      if source.name.endswith(ending)), None)
        if match is None:
            continue
        files, by_size, by_import, elapsed = measure(source, *match, args.workers)
        if files > args.workers:
            rows.append((source.name, match[0], files, by_size, by_import, elapsed))
    sizes = [row[3] for row in rows]
    imports = [row[4] for row in rows]
    body = "\n".join([
        provenance(__file__, argv), "",
        f"{len(rows)} shared timing files kept at their tool's default path, {args.workers} "
        "workers; makespan / lower bound of the first plan, judged by the file's seconds. "
        "Without the file the placeholders are all one size, so the split is by count: real "
        "file sizes may do better than this column. \"Reading it\" is existing_timings() alone: "
        "parse the file, keep what exists in the project.", "",
        "| timing file | framework | files | first plan by size | first plan imported "
        "| reading it |",
        "|---|---|---:|---:|---:|---:|",
        *(f"| {name} | {framework} | {files} | {a:.2f} | {b:.3f} | {t * 1000:.0f} ms |"
          for name, framework, files, a, b, t in rows),
        f"| **median** | | | **{statistics.median(sizes):.2f}** | "
        f"**{statistics.median(imports):.3f}** | |",
    ])
    publish(body, HEADING, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
