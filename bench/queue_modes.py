"""Queue mode against static shards on sleeping pytest suites: stale timings, one big file.

Two scenarios (issue 4, item 10), each a generated pytest suite whose tests only
`time.sleep`, run by `python -m shardrun run tests --workers N --mode queue|static`:

1. **Stale timings.** A step k -> k+1 of the HyphaApp/hypha `.test_durations` history
   (../shared/data/timings/history/): the tests sleep version k+1's durations, the timing
   history is version k's (both scaled so version k+1 totals TOTAL_SECONDS; consecutive
   tests of a file shorter than MIN_SLEEP_SECONDS once scaled are merged into one test).
   Target: queue wall <= 1.05 x the per-file lower bound of the actual durations,
   max(longest file, total / N), and below static.
2. **One dominant file.** One file holds half of the total (80 tests x 0.25 s) next to 20
   small files (20 s together), with exact timings. Target at N = 4: queue wall <= 1.1 x
   total / N, which only splitting the big file into its examples can reach.

Every run starts from a fresh copy of the imported history (a run records what it
measured, and the next one would plan from it), with a private redis-server (no
--redis-url) and PYTEST_DISABLE_PLUGIN_AUTOLOAD=1, so the pytest plugins installed in this
environment stay unloaded. Modes alternate within each round (static, queue, static, ...)
so slow drift in the machine's load hits both alike.

    python bench/queue_modes.py                             # print the tables
    python bench/queue_modes.py --write docs/benchmarks.md  # and rewrite its section

Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
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
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from _datasets import HISTORY_DIR, Version, load_history, provenance, publish, sum_by_file

HEADING = "## Queue mode"
PROJECT = "HyphaApp__hypha__.test_durations"
# Version indexes k of the steps k -> k+1. Step 1 moves time between files (the slowest
# file of version k shrinks 5x, others grow 5-60x): per-file stale plans are 1.78 / 1.35 /
# 1.14 x the lower bound at N = 2 / 4 / 8. Step 17 adds 227 tests and 5 files the
# history has never seen: 1.23 / 1.69 / 1.00 x.
DEFAULT_STEPS = (1, 17)
WORKER_COUNTS = (2, 4, 8)
ROUNDS = 3
MODES = ("static", "queue")
TOTAL_SECONDS = 60.0
# Shorter tests are merged with their neighbours: pytest's own per-test cost (about a
# millisecond) would otherwise be a visible part of what they sleep.
MIN_SLEEP_SECONDS = 0.005
STALE_TARGET = 1.05
DOMINANT_TARGET = 1.1
DOMINANT_WORKERS = 4
# One file of DOMINANT_TESTS equal tests holds half of the suite's seconds, OTHER_FILES
# small files the other half; the default suite takes 40 s in all (10 s per worker at
# N = 4), --dominant-seconds adds larger ones.
DOMINANT_TESTS, OTHER_FILES = 80, 20
DOMINANT_SECONDS = (40.0,)
SEED = 20240611
BOOT_SAMPLES = 5
RUN_TIMEOUT_SECONDS = 600.0
ENV = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONDONTWRITEBYTECODE": "1"}
HISTORY = Path(".shardrun/timings.json")
DURATIONS_FILE = ".test_durations"
PYTEST_BOOT = ("-m", "pytest", "-q", "-p", "no:cacheprovider", "test_empty.py")


@dataclass(frozen=True, eq=False)  # compared by identity: it holds dicts
class SuiteSpec:
    """A sleeping suite: node id -> seconds it sleeps, and node id -> seconds the history says."""

    name: str
    tests: dict[str, float]
    history: dict[str, float]

    @cached_property
    def per_file(self) -> dict[str, float]:
        return sum_by_file(self.tests)

    def slept(self, unit: str) -> float:
        """What a unit of a plan (a file, or a test once its file is split) sleeps."""
        return self.tests[unit] if "::" in unit else self.per_file[unit]

    def file_bound(self, workers: int) -> float:
        """No plan of whole files beats max(longest file, total / N)."""
        return max(max(self.per_file.values()), self.total / workers)

    def test_bound(self, workers: int) -> float:
        """What splitting every file into its tests could reach."""
        return max(max(self.tests.values()), self.total / workers)

    @property
    def total(self) -> float:
        return math.fsum(self.tests.values())


@dataclass(frozen=True)
class Prepared:
    spec: SuiteSpec
    root: Path
    pristine: str  # the history right after `shardrun timings import`


@dataclass(frozen=True)
class Sample:
    """One `shardrun run`: its wall time and what its run record says about its batches."""

    wall: float
    batches: int
    boot_per_batch: float  # the record's boot_seconds_per_batch (NaN when absent)
    warm_per_batch: float  # the record's warm_seconds_per_batch (NaN when absent)
    before_first: float  # command start -> first batch start
    after_last: float  # last batch end -> command exit
    predicted: float  # the plan's own makespan (queue: simulated with its boot estimate)
    # The run's batches in dispatch order, list-scheduled on N workers with what their
    # units sleep: without boots (the schedule alone), and with the measured overheads (a
    # boot for each worker's first batch, the warm overhead for its later ones).
    scheduled: float
    scheduled_with_boots: float
    # The batch whose sleep most exceeds its prediction: slept, predicted, unit count.
    worst_batch: tuple[float, float, int]
    predictions: tuple[float, ...]  # every batch's predicted seconds, in dispatch order
    load: float  # 1-minute load average when the run ended: other work on the machine


@dataclass
class Cell:
    """All runs of one suite at one worker count in one mode."""

    samples: list[Sample] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        return statistics.median(getattr(sample, attribute) for sample in self.samples)

    @property
    def wall(self) -> float:
        return self.median("wall")

    def typical(self) -> Sample:
        """The run with the median wall time (the lower one of the middle two)."""
        ordered = sorted(self.samples, key=lambda sample: sample.wall)
        return ordered[(len(ordered) - 1) // 2]

    def walls(self) -> str:
        return ", ".join(f"{sample.wall:.2f}" for sample in self.samples)


@dataclass(frozen=True)
class Row:
    """One suite at one worker count: both modes, the bounds, static's plan under k+1."""

    spec: SuiteSpec
    workers: int
    static_plan_actual: float
    cells: Mapping[str, Cell]

    @property
    def file_bound(self) -> float:
        return self.spec.file_bound(self.workers)

    @property
    def even_share(self) -> float:
        return self.spec.total / self.workers

    @property
    def queue_vs_static(self) -> float:
        return self.cells["queue"].wall / self.cells["static"].wall


# --- suites ---------------------------------------------------------------------------------


def merge_tiny(
    units: Sequence[str], durations: Mapping[str, float], scale: float
) -> list[list[str]]:
    """Consecutive units grouped until each group sleeps >= MIN_SLEEP_SECONDS (scaled)."""
    groups: list[list[str]] = []
    current: list[str] = []
    for unit in units:
        current.append(unit)
        if scale * math.fsum(durations[member] for member in current) >= MIN_SLEEP_SECONDS:
            groups.append(current)
            current = []
    if current and groups:
        groups[-1].extend(current)
    elif current:
        groups.append(current)
    return groups


def units_by_file(durations: Mapping[str, float]) -> dict[str, list[str]]:
    """Node ids per file, in the durations file's order."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for unit in durations:
        grouped[unit.split("::", 1)[0]].append(unit)
    return dict(grouped)


def generated_path(index: int, original: str) -> str:
    slug = re.sub(r"\W+", "_", original.removesuffix(".py")).strip("_")[-48:]
    return f"tests/test_{index:03d}_{slug}.py"


def stale_suite(old: Version, new: Version, total: float) -> SuiteSpec:
    """Tests sleeping version `new`, history from version `old`, both scaled alike.

    A merged test's history is the sum of its members known in `old` (absent if none is:
    a new test). Tests of `old` gone from `new` stay in the history of their file, which is
    what a real history would still say about that file.
    """
    scale = total / math.fsum(new.durations.values())
    old_by_file = units_by_file(old.durations)
    tests: dict[str, float] = {}
    history: dict[str, float] = {}
    for index, (original, units) in enumerate(sorted(units_by_file(new.durations).items())):
        path = generated_path(index, original)
        for number, members in enumerate(merge_tiny(units, new.durations, scale)):
            node = f"{path}::test_{number:04d}"
            tests[node] = round(scale * math.fsum(new.durations[m] for m in members), 4)
            known = [old.durations[m] for m in members if m in old.durations]
            if known:
                history[node] = round(scale * math.fsum(known), 4)
        gone = [u for u in old_by_file.get(original, []) if u not in new.durations]
        for number, unit in enumerate(gone):
            history[f"{path}::test_gone_{number:04d}"] = round(scale * old.durations[unit], 4)
    return SuiteSpec(f"{old.name[:10]} -> {new.name[:10]}", tests, history)


def dominant_suite(total: float) -> SuiteSpec:
    """One file of DOMINANT_TESTS equal tests (half of `total`) and OTHER_FILES small files."""
    rng = random.Random(SEED)
    tests = {
        f"tests/test_dominant.py::test_{number:04d}": total / 2 / DOMINANT_TESTS
        for number in range(DOMINANT_TESTS)
    }
    weights = [rng.uniform(0.5, 1.5) for _ in range(OTHER_FILES)]
    for index, weight in enumerate(weights):
        seconds = total / 2 * weight / sum(weights)
        count = rng.randint(2, 5)
        for number in range(count):
            tests[f"tests/test_small_{index:02d}.py::test_{number:04d}"] = round(seconds / count, 4)
    return SuiteSpec(f"one file = 50 % of {total:.0f} s", tests, dict(tests))


def module_source(tests: Sequence[tuple[str, float]]) -> str:
    lines = ["import time", ""]
    for name, seconds in tests:
        lines += ["", f"def {name}():", f"    time.sleep({seconds})", ""]
    return "\n".join(lines)


def write_suite(root: Path, spec: SuiteSpec) -> Prepared:
    """The suite's files, its pytest-split durations file, and the imported history."""
    by_file: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for node, seconds in spec.tests.items():
        path, name = node.split("::", 1)
        by_file[path].append((name, seconds))
    (root / "tests").mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    for path, tests in by_file.items():
        (root / path).write_text(module_source(tests))
    (root / DURATIONS_FILE).write_text(json.dumps(spec.history, indent=1))
    run(shardrun("timings", "import", DURATIONS_FILE), root)
    return Prepared(spec, root, (root / HISTORY).read_text())


# --- running ----------------------------------------------------------------------------------


def run(argv: Sequence[str], root: Path) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        argv, cwd=root, env={**os.environ, **ENV}, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, check=False, timeout=RUN_TIMEOUT_SECONDS,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {completed.returncode}:\n{completed.stdout}{completed.stderr}"
        )
    return completed


def shardrun(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "shardrun", *arguments]


def measure_boot(root: Path) -> float:
    """Median wall time of `python -m pytest` running one empty test, alone."""
    (root / "test_empty.py").write_text("def test_empty():\n    pass\n")
    walls = []
    for _ in range(BOOT_SAMPLES):
        started = time.monotonic()
        run([sys.executable, *PYTEST_BOOT], root)
        walls.append(time.monotonic() - started)
    return statistics.median(walls)


def measure_concurrent_boot(root: Path, count: int) -> float:
    """Median wall time of `count` such pytest processes started at once."""
    walls = []
    for _ in range(BOOT_SAMPLES):
        started = time.monotonic()
        processes = [
            subprocess.Popen([sys.executable, *PYTEST_BOOT], cwd=root, env={**os.environ, **ENV},
                             stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            for _ in range(count)
        ]
        for process in processes:
            process.wait()
        walls.append(time.monotonic() - started)
    return statistics.median(walls)


def static_plan_actual(prepared: Prepared, workers: int) -> float:
    """The makespan the static plan (from the history) would have under the slept durations."""
    (prepared.root / HISTORY).write_text(prepared.pristine)
    plan = json.loads(run(shardrun("plan", "tests", "--workers", str(workers), "--json"),
                          prepared.root).stdout)
    spec = prepared.spec
    return max(math.fsum(map(spec.slept, shard["units"])) for shard in plan["shards"])


def run_once(prepared: Prepared, workers: int, mode: str) -> Sample:
    history = prepared.root / HISTORY
    history.write_text(prepared.pristine)
    argv = shardrun("run", "tests", "--workers", str(workers), "--mode", mode,
                    "--python", sys.executable)
    started, started_epoch = time.monotonic(), time.time()
    run(argv, prepared.root)
    wall, ended_epoch = time.monotonic() - started, time.time()
    record = json.loads(history.read_text())["runs"][-1]
    batches = record["batches"]
    first_start = min(float(batch["start"]) for batch in batches)
    last_end = max(float(batch["end"]) for batch in batches)
    boot, warm = (math.nan if record.get(key) is None else float(record[key])
                  for key in ("boot_seconds_per_batch", "warm_seconds_per_batch"))
    ordered = sorted(batches, key=lambda batch: batch["index"])
    slept = [math.fsum(map(prepared.spec.slept, batch["units"])) for batch in ordered]
    worst = max(range(len(ordered)),
                key=lambda i: slept[i] - float(ordered[i]["predicted_seconds"]))
    return Sample(wall, len(batches), boot, warm, first_start - started_epoch,
                  ended_epoch - last_end, float(record["predicted_makespan"]),
                  list_schedule(slept, workers, 0.0),
                  list_schedule(slept, workers, boot, 0.0 if math.isnan(warm) else warm),
                  (slept[worst], float(ordered[worst]["predicted_seconds"]),
                   len(ordered[worst]["units"])),
                  tuple(float(batch["predicted_seconds"]) for batch in ordered),
                  os.getloadavg()[0])


def list_schedule(
    batch_seconds: Sequence[float], workers: int, boot: float, warm: float | None = None
) -> float:
    """Makespan when each of N workers takes the next batch as it frees up, paying `boot`
    for its first batch and `warm` (default: `boot` again) for each later one."""
    later = boot if warm is None else warm
    free_at = [(0.0, index, boot) for index in range(workers)]
    for seconds in batch_seconds:
        start, index, cost = heapq.heappop(free_at)
        heapq.heappush(free_at, (start + cost + seconds, index, later))
    return max(end for end, _, _ in free_at)


def measure(configs: Sequence[tuple[Prepared, int]], rounds: int) -> list[Row]:
    """Every (suite, N) in both modes, `rounds` times, modes alternating within a round."""
    cells: dict[tuple[int, str], Cell] = defaultdict(Cell)
    for round_number, (position, (prepared, workers)), mode in itertools.product(
        range(rounds), enumerate(configs), MODES
    ):
        sample = run_once(prepared, workers, mode)
        cells[(position, mode)].samples.append(sample)
        print(f"round {round_number + 1}/{rounds} {prepared.spec.name} N={workers} {mode}: "
              f"{sample.wall:.2f} s, {sample.batches} batches", file=sys.stderr)
    return [
        Row(prepared.spec, workers, static_plan_actual(prepared, workers),
            {mode: cells[(position, mode)] for mode in MODES})
        for position, (prepared, workers) in enumerate(configs)
    ]


# --- report -----------------------------------------------------------------------------------


def stale_met(row: Row) -> bool:
    queue = row.cells["queue"].wall
    return queue <= STALE_TARGET * row.file_bound and queue < row.cells["static"].wall


def dominant_met(row: Row) -> bool:
    return row.cells["queue"].wall <= DOMINANT_TARGET * row.even_share


def verdict(met: bool, ratio: float, limit: float) -> str:
    return "met" if met else f"missed ({ratio:.3f} > {limit})"


def stale_table(rows: Sequence[Row]) -> list[str]:
    lines = [
        "| step | N | lower bound per file s | per test s | static plan under k+1 s "
        "| static wall s | queue wall s | queue batches | queue / bound per file "
        "| queue / bound per test | static / bound per file | queue / static | target |",
        "|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|",
    ]
    for row in rows:
        static, queue = row.cells["static"], row.cells["queue"]
        ratio = queue.wall / row.file_bound
        target = verdict(stale_met(row), ratio, STALE_TARGET)
        if ratio <= STALE_TARGET and not stale_met(row):
            target = "missed (not below static)"
        lines.append(
            f"| {row.spec.name} | {row.workers} | {row.file_bound:.2f} "
            f"| {row.spec.test_bound(row.workers):.2f} | {row.static_plan_actual:.2f} "
            f"| {static.wall:.2f} ({static.walls()}) | {queue.wall:.2f} ({queue.walls()}) "
            f"| {queue.median('batches'):.0f} | {ratio:.3f} "
            f"| {queue.wall / row.spec.test_bound(row.workers):.3f} "
            f"| {static.wall / row.file_bound:.3f} | {row.queue_vs_static:.3f} | {target} |"
        )
    return lines


def dominant_table(rows: Sequence[Row], boot: float) -> list[str]:
    lines = [
        "| total s | N | total / N s | lower bound per file s | static wall s | queue wall s "
        "| queue batches | queue / (total / N) | queue / (total / N + boot) "
        "| static / (total / N) | target |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|",
    ]
    for row in rows:
        static, queue = row.cells["static"], row.cells["queue"]
        ratio = queue.wall / row.even_share
        lines.append(
            f"| {row.spec.total:.0f} | {row.workers} | {row.even_share:.2f} | {row.file_bound:.2f} "
            f"| {static.wall:.2f} ({static.walls()}) | {queue.wall:.2f} ({queue.walls()}) "
            f"| {queue.median('batches'):.0f} | {ratio:.3f} "
            f"| {queue.wall / (row.even_share + boot):.3f} | {static.wall / row.even_share:.3f} "
            f"| {verdict(dominant_met(row), ratio, DOMINANT_TARGET)} |"
        )
    return lines


OVERHEAD_HEADER = (
    "| suite | N | bound per file s | per test s | queue's predicted makespan s "
    "| most underestimated batch: slept s (predicted s, units) | queue's batches as slept s "
    "| + measured overheads s | boot per worker s (N pytest boots at once) "
    "| warm batch s "
    "| before first batch s | after last batch s | rest s | queue wall s |"
)


def overhead_table(rows: Sequence[Row], concurrent_boots: Mapping[int, float]) -> list[str]:
    """Queue mode's wall time taken apart: its schedule, its boots, the run's start and end."""
    lines = [OVERHEAD_HEADER, "|:---|" + "---:|" * 13]
    for row in rows:
        queue = row.cells["queue"]
        slept, predicted, units = queue.typical().worst_batch
        with_boots = queue.median("scheduled_with_boots")
        before, after = queue.median("before_first"), queue.median("after_last")
        concurrent = concurrent_boots.get(row.workers, math.nan)
        lines.append(
            f"| {row.spec.name} | {row.workers} | {row.file_bound:.2f} "
            f"| {row.spec.test_bound(row.workers):.2f} | {queue.median('predicted'):.2f} "
            f"| {slept:.2f} ({predicted:.2f}, {units}) | {queue.median('scheduled'):.2f} "
            f"| {with_boots:.2f} | {queue.median('boot_per_batch'):.2f} ({concurrent:.2f}) "
            f"| {queue.median('warm_per_batch'):.3f} "
            f"| {before:.2f} | {after:.2f} | {queue.wall - with_boots - before - after:.2f} "
            f"| {queue.wall:.2f} |"
        )
    return lines


def load_range(rows: Sequence[Row]) -> tuple[float, float, float]:
    """Min, median and max of the load average over every run."""
    loads = [s.load for row in rows for cell in row.cells.values() for s in cell.samples]
    return min(loads), statistics.median(loads), max(loads)


def summary(stale: Sequence[Row], dominant: Sequence[Row]) -> list[str]:
    met = sum(map(stale_met, stale)) + sum(map(dominant_met, dominant))
    return [f"Targets met: {met} of {len(stale) + len(dominant)} rows."]


def describe_stale(spec: SuiteSpec) -> str:
    files = spec.per_file
    unknown = sum(1 for node in spec.tests if node not in spec.history)
    return (
        f"{spec.name}: {len(files)} files, {len(spec.tests)} tests, "
        f"{spec.total:.1f} s slept (history says {math.fsum(spec.history.values()):.1f} s; "
        f"{unknown} tests unknown to it), longest file {max(files.values()):.2f} s"
    )


@dataclass(frozen=True)
class Machine:
    """What the runs competed with: pytest's own boot, alone and N at once, and the load."""

    boot: float
    concurrent_boots: dict[int, float]
    load_before: float
    load_after: float


def _stale_part(stale: Sequence[Row], specs: Sequence[SuiteSpec],
            args: argparse.Namespace) -> list[str]:
    """The stale-timings subsection: the steps, what the bounds mean, the table."""
    return [
        "### Stale timings: planned from version k, sleeping version k+1",
        "",
        f"Steps of `history/{PROJECT}`, each scaled so version k+1 sleeps",
        f"{args.total_seconds:.0f} s (consecutive tests shorter than "
        f"{MIN_SLEEP_SECONDS * 1000:.0f} ms once scaled are merged into one):",
        "",
        *(f"- {describe_stale(spec)}" for spec in specs),
        "",
        "Bounds are those of the slept (k+1) durations: *per file* max(longest file,",
        "total / N), the target's reference; *per test* what splitting every file could",
        "reach. *Static plan under k+1* is the makespan of `shardrun plan`'s shards (made",
        "from version k) under the slept durations: what static mode loses before any",
        f"process starts. Target: queue <= {STALE_TARGET} x bound per file, and below static.",
        "",
        *stale_table(stale),
        "",
    ]


def section(stale: Sequence[Row], dominant: Sequence[Row], machine: Machine,
            args: argparse.Namespace, argv: Sequence[str] | None) -> str:
    specs = list(dict.fromkeys(row.spec for row in stale))
    return "\n".join([
        provenance(__file__, argv),
        "",
        "Each run is `PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python -m shardrun run tests --workers N",
        "--mode static|queue` (no `--redis-url`: a private redis-server per run, as a user",
        "would start it) on a generated suite whose tests only `time.sleep`, timed as a whole",
        "command, from a fresh copy of the history imported with `shardrun timings import",
        ".test_durations` (so no run learns from another, and queue mode always starts from",
        "its default estimates: 0.5 s per boot, 0.05 s per batch in a warm runner). Each",
        "worker keeps one warm pytest process (shardrun's default; docs/queue.md). The",
        "variable keeps the pytest plugins installed",
        "here (xdist, benchmark, split, ...) from loading. Within a round the modes alternate,",
        f"static then queue, for every configuration; {args.rounds} rounds; walls are the",
        "median, then every run.",
        "",
        *(_stale_part(stale, specs, args) if stale else []),
        "### One file = 50 % of the suite",
        "",
        f"`tests/test_dominant.py`: {DOMINANT_TESTS} equal tests holding half of the total;"
        f" {OTHER_FILES} other files of 2-5 tests the other half (seed",
        f"{SEED}); the history has the exact durations. Target: queue <= {DOMINANT_TARGET} x"
        f" total / N. Totals: {', '.join(f'{t:.0f} s' for t in args.dominant_seconds)}.",
        "",
        *dominant_table(dominant, machine.boot),
        "",
        *analysis(stale, dominant, machine),
    ])


def analysis(stale: Sequence[Row], dominant: Sequence[Row], machine: Machine) -> list[str]:
    boots = sorted(machine.concurrent_boots.items())
    concurrent = ", ".join(f"{seconds:.2f} s for {count}" for count, seconds in boots)
    low, middle, high = load_range([*stale, *dominant])
    return [
        "### Where queue mode's time goes",
        "",
        "*Queue's batches as slept* list-schedules the batches a run dispatched, in their",
        "order, on N workers with what their units sleep and no process start: the schedule",
        "alone. *+ measured overheads* adds what the run measured outside testcases (batch",
        "wall time minus its testcase times): a boot for each worker's first batch, which",
        "starts its warm runner, and the warm overhead for every later batch. *Before first",
        "batch* (coordinator start-up, redis-server, N",
        "worker start-ups, the `pytest --collect-only` that lists a split file's examples) and",
        "*after last batch* (stopping the workers, merging the JUnit XML, saving the history)",
        "come from the run record; *rest* is what these leave unexplained. *Most",
        "underestimated batch* is the batch of the median run that slept longest past its",
        "prediction. Values are medians over the runs.",
        "",
        f"*Boot*: `python -m pytest` running one empty test takes {machine.boot:.2f} s alone;"
        f" started N at once on this machine's {cpu_count()} CPUs: {concurrent}.",
        "",
        *overhead_table([*stale, *dominant], machine.concurrent_boots),
        "",
        f"Load average (1 min, other work on the machine included): {machine.load_before:.2f}"
        f" before; at the end of each run min {low:.2f}, median {middle:.2f}, max {high:.2f};"
        f" {machine.load_after:.2f} after.",
        "",
        *summary(stale, dominant),
        "",
        *schedule_findings(stale),
        "",
        *dominant_findings(dominant),
        "",
        *IMPROVEMENTS,
    ]


def schedule_findings(rows: Sequence[Row]) -> list[str]:
    if all(map(stale_met, rows)):
        return []
    ratios = [row.cells["queue"].median("scheduled") / row.file_bound for row in rows]
    worse = [f"{row.spec.name[-10:]} N = {row.workers}" for row in rows
             if row.cells["queue"].median("scheduled") > row.static_plan_actual]
    errors = [slept / predicted for slept, predicted, _ in
              (row.cells["queue"].typical().worst_batch for row in rows) if predicted > 0]
    return [
        "**Stale timings: the schedule, not the machine.** Queue's batches alone, before any",
        f"boot, are {min(ratios):.2f}-{max(ratios):.2f} x the per-file bound, and longer than",
        f"the static plan under k+1 for {', '.join(worse) or 'no row'}. Every batch is cut up",
        "front from the stale predictions, longest first and smaller towards the end;",
        "factoring assumes each batch's error is small against the work still queued. Here it",
        "is not: the files that grew 5-60x between the versions have the smallest",
        "predictions, so they sit in the late, small batches (the most underestimated batch",
        f"slept {min(errors):.1f}-{max(errors):.1f} x its prediction), and a batch that",
        "starts late and runs long has nothing left in the queue to even it out.",
    ]


def runs_of(values: Sequence[float]) -> str:
    """'4 x 5.0 s, 4 x 2.5 s, 1 x 2.0 s': consecutive values equal to 0.1 s, counted."""
    groups = itertools.groupby(f"{value:.1f}" for value in values)
    return ", ".join(f"{len(list(group))} x {value} s" for value, group in groups)


def dominant_findings(rows: Sequence[Row]) -> list[str]:
    missed = [row for row in rows if not dominant_met(row)]
    if not missed:
        return []
    row = missed[0]
    queue = row.cells["queue"]
    predictions = queue.typical().predictions
    fixed = queue.median("before_first") + queue.median("after_last")
    return [
        f"**One dominant file ({row.spec.total:.0f} s).** Splitting takes static's"
        f" {row.cells['static'].wall / row.even_share:.2f} x total / N to"
        f" {queue.wall / row.even_share:.2f} x at N = {row.workers}; the schedule alone is"
        f" {queue.median('scheduled') / row.even_share:.3f} x. Its batches, as predicted:"
        f" {runs_of(predictions)}. On top of the schedule come one boot per worker, the"
        f" warm overhead of {len(predictions) / row.workers - 1:.1f} more batches per worker,"
        f" and {fixed:.2f} s of start and end: {DOMINANT_TARGET} x {row.even_share:.0f} s"
        f" leaves {(DOMINANT_TARGET - 1) * row.even_share:.1f} s for everything that is not"
        f" a test, and on {cpu_count()} CPUs the N + 1 shardrun processes, the redis-server"
        " and the N concurrent pytest boots share it.",
    ]


IMPROVEMENTS = [
    "**What would help** (the batch planner and the coordinator, not this script):",
    "",
    "- Feedback during the run: after the first round the coordinator knows which batches",
    "  ran several times their prediction; enqueue a round or two ahead and rescale what is",
    "  still queued by the observed actual / predicted ratio (per file once its examples",
    "  ran) before cutting the next batches. A plan fixed up front cannot absorb errors of",
    "  5-60x on single files.",
    "- Distrust small stale estimates: a floor under each unit's estimate, or a wider error",
    "  bar for units whose history is one old sample, moves grown files out of the tail.",
    "- For the wall-clock targets at this size, a machine with at least N + 1 cores, or a",
    "  larger suite: a run's start and end and its boots are a fixed few seconds that",
    "  10-15 s per worker cannot hide.",
]


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def step_suites(steps: Sequence[int], total: float) -> list[SuiteSpec]:
    versions = load_history(HISTORY_DIR)[PROJECT]
    return [stale_suite(versions[step], versions[step + 1], total) for step in steps]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="*", default=list(DEFAULT_STEPS),
                        help="Version indexes k of the stale steps k -> k+1 (none: skip).")
    parser.add_argument("--workers", type=int, nargs="+", default=list(WORKER_COUNTS),
                        help="Worker counts of the stale scenario.")
    parser.add_argument("--dominant-workers", type=int, nargs="*", default=[DOMINANT_WORKERS],
                        help="Worker counts of the dominant-file scenario (none: skip).")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--dominant-seconds", type=float, nargs="+",
                        default=list(DOMINANT_SECONDS),
                        help="Totals of the dominant-file suites (seconds).")
    parser.add_argument("--total-seconds", type=float, default=TOTAL_SECONDS,
                        help="What version k+1 sleeps in all.")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="Write the suites here and keep them (default: a temp dir).")
    parser.add_argument("--write", type=Path, metavar="MARKDOWN",
                        help=f"Rewrite the {HEADING!r} section of this file.")
    parser.add_argument("--heading", default=HEADING,
                        help="The section to rewrite (another one keeps the full run's).")
    return parser.parse_args(argv)


def measure_machine(root: Path, counts: Sequence[int], load_before: float) -> Machine:
    root.mkdir(parents=True, exist_ok=True)
    boot = measure_boot(root)
    concurrent = {count: measure_concurrent_boot(root, count) for count in sorted(set(counts))}
    return Machine(boot, concurrent, load_before, os.getloadavg()[0])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="shardrun-queue-modes-"))
    load_before = os.getloadavg()[0]
    try:
        stale_specs = step_suites(args.steps, args.total_seconds)
        prepared = [write_suite(root / f"stale-{step}", spec)
                    for step, spec in zip(args.steps, stale_specs, strict=True)]
        bigs = [write_suite(root / f"dominant-{total:.0f}", dominant_suite(total))
                for total in args.dominant_seconds]
        configs = [(suite, workers) for suite in prepared for workers in args.workers]
        configs += [(big, workers) for big in bigs for workers in args.dominant_workers]
        rows = measure(configs, args.rounds)
        machine = measure_machine(root / "boot", [*args.workers, *args.dominant_workers],
                                  load_before)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    big_specs = [big.spec for big in bigs]
    stale = [row for row in rows if row.spec not in big_specs]
    dominant = [row for row in rows if row.spec in big_specs]
    body = section(stale, dominant, machine, args, argv)
    publish(body, args.heading, args.write)
    return 0 if all(map(stale_met, stale)) and all(map(dominant_met, dominant)) else 1


if __name__ == "__main__":
    sys.exit(main())
