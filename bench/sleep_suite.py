"""A sleeping pytest suite run by `shardrun run`: how close the wall time gets to the plan.

It writes a synthetic suite whose tests sleep known durations (24 files, lognormal, about
40 s in all, seeded) and a matching pytest-split durations file, imports that with
`shardrun timings import`, then for each worker count N:

- reads the plan's lower bound, max(longest file, total / N), from `shardrun plan --json`;
- times the whole `python -m shardrun run --workers N --mode static` command (planning, the
  private redis-server, worker start-up, the pytest processes, merging the JUnit XML).

No schedule can beat lower bound + one pytest start-up (a shard is one pytest process),
so the target is wall <= 1.05 x (lower bound + boot), where boot is the measured wall time
of `python -m pytest` running one empty test. Sleeping tests need no CPU, but pytest
start-up does: with N processes starting at once on fewer cores, boot grows.

PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 is set for every pytest (and shardrun) process, so the
plugins installed in this environment (xdist, benchmark, split, ...) are not loaded: boot
is pytest's own. The history is restored before every run, because `shardrun run` records
the measured times and would otherwise plan the next run from them.

    python bench/sleep_suite.py                             # print the table
    python bench/sleep_suite.py --write docs/benchmarks.md  # and rewrite its section

Exits 1 when a worker count misses the target.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from _datasets import provenance, write_section

HEADING = "## Sleeping suite (static shards)"
SEED = 20240611
FILES = 24
TOTAL_SECONDS = 40.0
# Sigma of the file durations' lognormal: a moderate spread (the longest of the 24 files is
# about 13 % of the total, so it alone sets the lower bound at N = 8 only).
LOG_SIGMA = 0.5
MAX_TESTS_PER_FILE = 4
WORKER_COUNTS = (2, 4, 8)
REPEATS = 3
BOOT_SAMPLES = 5
TARGET_RATIO = 1.05
ENV = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONDONTWRITEBYTECODE": "1"}
HISTORY = Path(".shardrun/timings.json")
DURATIONS_FILE = ".test_durations"
# "shard 3 done on host:123 in 5.2s (exit 0): ..." as `shardrun run` prints without a tty.
SHARD_LINE = re.compile(r"^shard \d+ done on \S+ in (?P<seconds>[\d.]+)s", re.MULTILINE)


@dataclass(frozen=True)
class Row:
    workers: int
    lower_bound: float
    predicted_makespan: float
    boot: float
    walls: tuple[float, ...]
    slowest_shards: tuple[float, ...]
    # From the run record `shardrun run` adds to the history: command start -> first shard
    # start, and last shard end -> command end (NaN if the history has no run record).
    before_shards: tuple[float, ...]
    after_shards: tuple[float, ...]

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def bound(self) -> float:
        return self.lower_bound + self.boot

    @property
    def ratio(self) -> float:
        return self.wall / self.bound

    @property
    def meets_target(self) -> bool:
        return self.ratio <= TARGET_RATIO


def file_durations(seed: int, files: int, total: float) -> list[float]:
    rng = random.Random(seed)
    raw = [rng.lognormvariate(0.0, LOG_SIGMA) for _ in range(files)]
    scale = total / sum(raw)
    return [round(value * scale, 3) for value in raw]


def split_file(rng: random.Random, seconds: float) -> list[float]:
    """A file's seconds over 1..MAX_TESTS_PER_FILE tests, summing to the file's total."""
    weights = [rng.random() + 0.2 for _ in range(rng.randint(1, MAX_TESTS_PER_FILE))]
    parts = [round(seconds * weight / sum(weights), 3) for weight in weights]
    parts[-1] = round(seconds - sum(parts[:-1]), 3)
    return parts


def write_suite(root: Path, seed: int) -> dict[str, float]:
    """The suite and its pytest-split durations file; returns node id -> seconds."""
    rng = random.Random(seed + 1)
    (root / "tests").mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "test_empty.py").write_text("def test_empty():\n    pass\n")
    durations: dict[str, float] = {}
    for index, seconds in enumerate(file_durations(seed, FILES, TOTAL_SECONDS)):
        path = f"tests/test_sleep_{index:02d}.py"
        lines = ["import time", ""]
        for number, part in enumerate(split_file(rng, seconds)):
            lines += ["", f"def test_{number}():", f"    time.sleep({part})", ""]
            durations[f"{path}::test_{number}"] = part
        (root / path).write_text("\n".join(lines))
    (root / DURATIONS_FILE).write_text(json.dumps(durations, indent=1))
    return durations


def run(argv: Sequence[str], root: Path) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        argv, cwd=root, env={**os.environ, **ENV}, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {completed.returncode}:\n{completed.stdout}{completed.stderr}"
        )
    return completed


def shardrun(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "shardrun", *arguments]


def median_wall(argv: Sequence[str], root: Path) -> float:
    """Median wall time of `argv` run alone, BOOT_SAMPLES times."""
    walls = []
    for _ in range(BOOT_SAMPLES):
        started = time.monotonic()
        run(argv, root)
        walls.append(time.monotonic() - started)
    return statistics.median(walls)


def measure_boot(root: Path) -> float:
    """pytest running one empty test: the fixed cost of every shard."""
    return median_wall(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_empty.py"], root
    )


def measure_startup(root: Path) -> float:
    """`python -m shardrun --help`: importing shardrun, as the coordinator and each worker do."""
    return median_wall(shardrun("--help"), root)


def measure(root: Path, workers: int, boot: float, repeats: int, pristine: str) -> Row:
    history = root / HISTORY
    history.write_text(pristine)
    plan = json.loads(run(shardrun("plan", "tests", "--workers", str(workers), "--json"),
                          root).stdout)
    walls, slowest, before, after = [], [], [], []
    for _ in range(repeats):
        history.write_text(pristine)
        started, started_epoch = time.monotonic(), time.time()
        argv = shardrun("run", "tests", "--workers", str(workers), "--mode", "static",
                        "--python", sys.executable)
        completed = run(argv, root)
        walls.append(time.monotonic() - started)
        ended_epoch = time.time()
        shard_walls = [float(m["seconds"]) for m in SHARD_LINE.finditer(completed.stdout)]
        slowest.append(max(shard_walls, default=math.nan))
        first_start, last_end = shard_span(history)
        before.append(first_start - started_epoch)
        after.append(ended_epoch - last_end)
    return Row(workers, plan["lower_bound"], plan["predicted_makespan"], boot,
               tuple(walls), tuple(slowest), tuple(before), tuple(after))


def shard_span(history: Path) -> tuple[float, float]:
    """First shard start and last shard end (epoch seconds) of the newest run record in the
    history's "runs" section; NaN when the history keeps no such record."""
    runs = json.loads(history.read_text()).get("runs") or [{}]
    batches = runs[-1].get("batches", []) if isinstance(runs[-1], dict) else []
    starts = [float(batch["start"]) for batch in batches if "start" in batch]
    ends = [float(batch["end"]) for batch in batches if "end" in batch]
    return min(starts, default=math.nan), max(ends, default=math.nan)


def table(rows: Sequence[Row]) -> list[str]:
    lines = [
        "| workers | lower bound s | predicted makespan s | boot s | bound + boot s "
        "| before first shard s | slowest shard s | after last shard s | wall s "
        "| wall / (bound + boot) | target |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|",
    ]
    for row in rows:
        walls = ", ".join(f"{wall:.2f}" for wall in row.walls)
        lines.append(
            f"| {row.workers} | {row.lower_bound:.2f} | {row.predicted_makespan:.2f} "
            f"| {row.boot:.2f} | {row.bound:.2f} | {statistics.median(row.before_shards):.2f} "
            f"| {statistics.median(row.slowest_shards):.2f} "
            f"| {statistics.median(row.after_shards):.2f} | {row.wall:.2f} ({walls}) "
            f"| {row.ratio:.3f} | {'met' if row.meets_target else 'missed'} |"
        )
    return lines


def verdict(rows: Sequence[Row], startup: float) -> list[str]:
    """Which worker counts met the target, and how much room each left for shardrun."""
    met = [str(row.workers) for row in rows if row.meets_target]
    missed = [f"{row.workers} ({row.ratio:.3f})" for row in rows if not row.meets_target]
    room = ", ".join(
        f"{(TARGET_RATIO - 1) * row.bound:.2f} s at N = {row.workers}" for row in rows
    )
    plan_excess = max(row.predicted_makespan / row.lower_bound - 1 for row in rows)
    return [
        f"Target: wall <= {TARGET_RATIO} x (lower bound + boot): met for N = "
        f"{', '.join(met) or 'none'}; missed for N = {', '.join(missed) or 'none'}.",
        "",
        f"The target leaves shardrun {room}. One `python -m shardrun` start-up (the imports",
        f"of click, redis-py, rq, junitparser and psutil) takes {startup:.2f} s of wall time",
        "alone, and a run starts N + 1 of them: the coordinator, then the N workers, whose",
        "start-ups (and then the N pytest start-ups) share the machine's CPUs. That is the",
        "*before first shard* column growing with N, and the slowest shard running longer",
        "than its prediction + boot. *After last shard* is stopping the workers, merging the",
        "JUnit XML, writing the history and stopping the redis-server. The plan itself is",
        f"not the problem: its predicted makespan is within {plan_excess:.1%} of the lower bound.",
    ]


def section(rows: Sequence[Row], durations: Mapping[str, float], argv: Sequence[str] | None,
            repeats: int, load: float, startup: float) -> str:
    per_file: dict[str, float] = {}
    for node_id, seconds in durations.items():
        path = node_id.split("::", 1)[0]
        per_file[path] = per_file.get(path, 0.0) + seconds
    return "\n".join([
        provenance(__file__, argv),
        "",
        f"A generated pytest suite: {len(per_file)} files, {len(durations)} tests that only "
        f"`time.sleep`, {sum(durations.values()):.1f} s in all",
        f"(file durations lognormal, sigma {LOG_SIGMA}, seed {SEED}; longest file "
        f"{max(per_file.values()):.2f} s), its exact durations",
        "imported with `shardrun timings import .test_durations`. Each worker count runs",
        "`PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python -m shardrun run tests --workers N --mode static`",
        "(no",
        "`--redis-url`: a private redis-server per run) from a fresh copy of that history,",
        f"{repeats} times; the variable keeps this environment's installed pytest plugins",
        "(xdist, benchmark, split, ...) from loading, so boot is pytest's own.",
        "",
        "*Lower bound* and *predicted makespan* come from `shardrun plan --json`; *boot* is",
        "the median wall time of `python -m pytest` running one empty test, alone; *wall* is",
        "the whole `shardrun run` command (median, then every run). *Before first shard*",
        "runs from starting the command to the first shard's start and *after last shard*",
        "from the last shard's end to the command's exit (both from the run record in the",
        "history); *slowest shard* is the longest pytest process, boot included, as the run",
        "reports it. These three are medians over the runs.",
        "",
        *table(rows),
        "",
        f"Load average while measuring (1 min, other work on the machine included): "
        f"{load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end.",
        "",
        *verdict(rows, startup),
    ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=list(WORKER_COUNTS))
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="Write the suite here and keep it (default: a temp dir).")
    parser.add_argument("--write", type=Path, metavar="MARKDOWN",
                        help=f"Rewrite the {HEADING!r} section of this file.")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="shardrun-sleep-suite-"))
    load = os.getloadavg()[0]
    try:
        durations = write_suite(root, SEED)
        run(shardrun("timings", "import", DURATIONS_FILE), root)
        pristine = (root / HISTORY).read_text()
        boot = measure_boot(root)
        startup = measure_startup(root)
        rows = [measure(root, workers, boot, args.repeats, pristine) for workers in args.workers]
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    for line in [*table(rows), "", *verdict(rows, startup)]:
        print(line)
    if args.write:
        body = section(rows, durations, argv, args.repeats, load, startup)
        write_section(args.write, HEADING, body)
    return 0 if all(row.meets_target for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
