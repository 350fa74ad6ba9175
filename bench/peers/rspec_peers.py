"""shardrun against parallel_tests and knapsack on one generated RSpec suite, interleaved.

For each scenario (below) the script writes a suite with `suite.py` (durations sampled from
a real knapsack report, examples that burn a little CPU and sleep the rest, a per-process
boot and a per-file load cost) and each tool's timing file as a previous run would have
left it. Then, round after round, it runs every tool once per scenario and process count
N (the order of the tools rotates each round), restoring every timing file before each
run so no tool learns across rounds, and reports the median wall time:

- parallel_tests: `parallel_rspec -n N --group-by runtime --runtime-log
  tmp/parallel_runtime_rspec.log spec`;
- knapsack (regular mode): N processes started together, node i with CI_NODE_TOTAL=N and
  CI_NODE_INDEX=i, each running knapsack's allocator on knapsack_rspec_report.json and
  then rspec on its files (KNAPSACK_RUNNER below: what `knapsack rspec` does, without its
  `bundle exec`, since the suite has no Gemfile); wall = start to the last node's exit;
- shardrun: `python -m shardrun run spec --workers N --mode static` and `--mode queue`
  (a private redis-server per run), history reset to the imported knapsack report.

Scenarios (targets: shardrun's default mode, queue, over the best peer):
- S1 exact timings, no file above total / 8 (target <= 1.02);
- S2 stale timings: every tool plans from one version of a project's real durations
  (history/, the median step by how much its files changed) and the suite sleeps the next;
- S3 one file holds half the suite (<= 0.8; only shardrun can split a file's examples);
- S4 one of the N processes runs at half speed (<= 0.85): parallel_tests' first process,
  knapsack's node 0, shardrun's worker 1 multiply all their work by 2 (see suite.py).

    flock /tmp/shardrun-bench.lock python bench/peers/rspec_peers.py           # print
    flock /tmp/shardrun-bench.lock python bench/peers/rspec_peers.py --write docs/benchmarks.md

Exits 1 when a scenario misses its target at some N.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for _datasets

from _datasets import byte_compile_shardrun, coverage_note, machine_description, write_section
from suite import (
    DEFAULT_DATASET,
    HISTORY_PROJECT,
    KNAPSACK_REPORT,
    PARALLEL_TESTS_LOG,
    SEED,
    SHARDRUN_HISTORY,
    Examples,
    durations_from_dataset,
    file_seconds,
    history_step,
    reshape,
    split_examples,
    typical_history_step,
    with_dominant,
    with_measured_boot,
    write_rspec_histories,
    write_rspec_suite,
)

HEADING = "## Peers: RSpec"
WORKER_COUNTS = (2, 4, 8)
ROUNDS = 3
# A full run is 4 scenarios x 3 N x 4 tools x ROUNDS runs; at 16 s of tests it takes about
# 24 minutes on the 2-core benchmark machine (S3 and S4 keep the peers at total / 2 and
# 2 total / N; 20 s took 28).
TOTAL_SECONDS = 16.0
FILES = 40
MAX_SHARE = 0.1  # S1, S2, S4: no file above 10 % of the total, below total / 8
CPU_FRACTION = 0.2  # 2 cores: N = 8 processes then ask for 1.6 of them
BOOT_SECONDS = 0.5  # per process, like a (small) Rails app's boot
LOAD_SECONDS = 0.02  # per spec file a process loads
DOMINANT_SHARE = 0.5
SLOWDOWN = 2.0
TARGETS = {"S1": 1.02, "S2": 0.9, "S3": 0.8, "S4": 0.85}
OTHER_BENCHMARKS = ("bench/queue_modes.py", "bench/sleep_suite.py")
LOCK = "/tmp/shardrun-bench.lock"
# A run during which other processes kept more than this many cores busy on average (of
# 2) is repeated, up to MAX_TRIES times; the last try is kept whatever the load.
FOREIGN_CPU_LIMIT = 0.2
MAX_TRIES = 3

PARALLEL_TESTS = "parallel_tests"
KNAPSACK = "knapsack"
STATIC = "shardrun static"
QUEUE = "shardrun queue"
TOOLS = (PARALLEL_TESTS, KNAPSACK, STATIC, QUEUE)
PEERS = (PARALLEL_TESTS, KNAPSACK)

KNAPSACK_RUNNER = (
    'require "knapsack"; '
    "allocator = Knapsack::AllocatorBuilder.new(Knapsack::Adapters::RSpecAdapter).allocator; "
    'exec("rspec", "--default-path", allocator.test_dir, "--", *allocator.node_tests)'
)
# Which process is the slow one in S4, as each tool numbers its processes (suite.py reads
# BENCH_WORKER_VAR and BENCH_SLOW_WORKER).
SLOW_WORKER = {
    PARALLEL_TESTS: ("TEST_ENV_NUMBER", ""),  # parallel_tests' first process
    KNAPSACK: ("CI_NODE_INDEX", "0"),
    STATIC: ("SHARDRUN_WORKER_INDEX", "1"),
    QUEUE: ("SHARDRUN_WORKER_INDEX", "1"),
}
# Variables of the calling shell that would change what a tool does.
CLEARED_ENV = ("TEST_ENV_NUMBER", "CI_NODE_TOTAL", "CI_NODE_INDEX", "SHARDRUN_REDIS_URL",
               "KNAPSACK_REPORT_PATH", "KNAPSACK_TEST_FILE_PATTERN", "BENCH_SLOW_WORKER")


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    planned: Examples  # what the timing files say
    actual: Examples  # what the suite does
    slow: bool = False

    @property
    def target(self) -> float:
        return TARGETS[self.key]

    def lower_bound(self, workers: int, *, split: bool) -> float:
        """max(longest unit, total / capacity): units are files, or examples when `split`;
        capacity is N, or N - 1 + 1 / SLOWDOWN with one slow process (units then count
        at the fast speed)."""
        units = ([s for parts in self.actual.values() for s in parts] if split
                 else list(file_seconds(self.actual).values()))
        capacity = workers - 1 + 1 / SLOWDOWN if self.slow else workers
        return max(max(units), sum(units) / capacity)


@dataclass(frozen=True)
class Outcome:
    """One run of one tool. The rest is shardrun's, from the run record in its history."""

    wall: float
    before: float = math.nan  # command start -> first batch start
    after: float = math.nan  # last batch end -> command exit
    batches: float = math.nan
    # The run record's boot_seconds_per_batch: wall minus testcase seconds of the batches
    # that started their process (with warm runners, each worker's first batch).
    boot: float = math.nan
    examples: float = math.nan  # units that were examples of a split file
    last_worker: float = math.nan  # worker index of the batch that ended last
    foreign: float = math.nan  # cores other processes kept busy, on average, during it
    tries: int = 1  # runs discarded for other load, plus this one


@dataclass
class Cell:
    """One scenario at one N: every tool's runs."""

    runs: dict[str, list[Outcome]] = field(default_factory=dict)

    def walls(self, tool: str) -> list[float]:
        return [outcome.wall for outcome in self.runs[tool]]

    def median(self, tool: str, attribute: str = "wall") -> float:
        return statistics.median(getattr(outcome, attribute) for outcome in self.runs[tool])

    def best_peer(self) -> tuple[str, float]:
        return min(((tool, self.median(tool)) for tool in PEERS), key=lambda pair: pair[1])

    def ratio(self, tool: str) -> float:
        return self.median(tool) / self.best_peer()[1]


@dataclass(frozen=True)
class Settings:
    total: float
    workers: tuple[int, ...]
    rounds: int
    scenarios: tuple[str, ...]
    step: int


# --- scenarios -------------------------------------------------------------------------


def build_scenarios(settings: Settings) -> list[Scenario]:
    base = durations_from_dataset(DEFAULT_DATASET, settings.total, SEED, files=FILES,
                                  max_share=MAX_SHARE)
    examples = split_examples(base)
    planned, actual = history_step(HISTORY_PROJECT, settings.step, settings.total,
                                   files=FILES, max_share=MAX_SHARE)
    stale = split_examples(actual)
    dominant = split_examples(with_dominant(base, DOMINANT_SHARE))
    scenarios = [
        Scenario("S1", "exact timings", examples, examples),
        Scenario("S2", "stale timings", reshape(stale, planned), stale),
        Scenario("S3", "one file is half the suite", dominant, dominant),
        Scenario("S4", "one process at half speed", examples, examples, slow=True),
    ]
    return [scenario for scenario in scenarios if scenario.key in settings.scenarios]


def prepare(root: Path, scenario: Scenario) -> dict[Path, bytes]:
    """Write the scenario's suite and timing files; return the timing files' pristine bytes."""
    directory = root / scenario.key
    write_rspec_suite(directory, scenario.actual, cpu_fraction=CPU_FRACTION,
                      boot_seconds=BOOT_SECONDS, load_seconds=LOAD_SECONDS)
    write_rspec_histories(directory, scenario.planned)
    with_measured_boot(directory, shardrun_argv(2, "queue"),
                       tool_env(QUEUE, replace(scenario, slow=False)))
    timing_files = (PARALLEL_TESTS_LOG, KNAPSACK_REPORT, SHARDRUN_HISTORY)
    return {directory / name: (directory / name).read_bytes() for name in timing_files}


def restore(pristine: Mapping[Path, bytes]) -> None:
    for path, content in pristine.items():
        path.write_bytes(content)


# --- running the tools -----------------------------------------------------------------


def tool_env(tool: str, scenario: Scenario) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in CLEARED_ENV}
    env["KNAPSACK_LOG_LEVEL"] = "warn"
    if scenario.slow:
        variable, value = SLOW_WORKER[tool]
        env.update(BENCH_WORKER_VAR=variable, BENCH_SLOW_WORKER=value,
                   BENCH_SLOWDOWN=str(SLOWDOWN))
    return env


def checked(argv: Sequence[str], completed: subprocess.CompletedProcess[str]) -> None:
    if completed.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited {completed.returncode}:\n"
                           f"{completed.stdout[-3000:]}{completed.stderr[-3000:]}")


def timed(argv: Sequence[str], root: Path, env: Mapping[str, str]) -> float:
    started = time.monotonic()
    completed = subprocess.run(argv, cwd=root, env=dict(env), stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    checked(argv, completed)
    return wall


def parallel_tests_argv(workers: int) -> list[str]:
    return ["parallel_rspec", "-n", str(workers), "--group-by", "runtime",
            "--runtime-log", PARALLEL_TESTS_LOG, "spec"]


def run_parallel_tests(root: Path, workers: int, env: Mapping[str, str]) -> Outcome:
    return Outcome(timed(parallel_tests_argv(workers), root, env))


def knapsack_argv() -> list[str]:
    return ["ruby", "-e", KNAPSACK_RUNNER]


def run_knapsack(root: Path, workers: int, env: Mapping[str, str]) -> Outcome:
    """N nodes started together; the wall time is the slowest node's."""
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(tempfile.TemporaryFile(mode="w+")) for _ in range(workers)]
        started = time.monotonic()
        nodes = [subprocess.Popen(knapsack_argv(), cwd=root, stdin=subprocess.DEVNULL,
                                  stdout=log, stderr=subprocess.STDOUT, text=True,
                                  env={**env, "CI_NODE_TOTAL": str(workers),
                                       "CI_NODE_INDEX": str(index)})
                 for index, log in enumerate(logs)]
        codes = [node.wait() for node in nodes]
        wall = time.monotonic() - started
        for code, log in zip(codes, logs, strict=True):
            log.seek(0)
            checked(knapsack_argv(), subprocess.CompletedProcess([], code, log.read(), ""))
    return Outcome(wall)


def shardrun_argv(workers: int, mode: str) -> list[str]:
    return [sys.executable, "-m", "shardrun", "run", "spec", "--workers", str(workers),
            "--mode", mode]


def run_shardrun(root: Path, workers: int, env: Mapping[str, str], mode: str) -> Outcome:
    started_epoch = time.time()
    wall = timed(shardrun_argv(workers, mode), root, env)
    ended_epoch = started_epoch + wall
    run = read_last_run(root / SHARDRUN_HISTORY)
    batches = run.get("batches", [])
    first = min(float(batch["start"]) for batch in batches)
    last = max(float(batch["end"]) for batch in batches)
    examples = sum("[" in unit for batch in batches for unit in batch.get("units", []))
    last_worker = max(batches, key=lambda batch: float(batch["end"]))["worker_index"]
    return Outcome(wall, first - started_epoch, ended_epoch - last, len(batches),
                   float(run.get("boot_seconds_per_batch", math.nan)), examples,
                   float(last_worker))


def read_last_run(history: Path) -> dict:
    """The run record `shardrun run` appended to its history."""
    runs = json.loads(history.read_text()).get("runs") or [{}]
    return runs[-1] if isinstance(runs[-1], dict) else {}


RUNNERS: dict[str, Callable[[Path, int, Mapping[str, str]], Outcome]] = {
    PARALLEL_TESTS: run_parallel_tests,
    KNAPSACK: run_knapsack,
    STATIC: lambda root, workers, env: run_shardrun(root, workers, env, "static"),
    QUEUE: lambda root, workers, env: run_shardrun(root, workers, env, "queue"),
}


# --- measuring -------------------------------------------------------------------------


def wait_for_other_benchmarks(poll_seconds: float = 30.0) -> None:
    """Measurements must not overlap the other benchmarks on this small machine."""
    while running := [" ".join(process.info["cmdline"] or [])
                      for process in psutil.process_iter(["cmdline"])
                      if any(name in " ".join(process.info["cmdline"] or [])
                             for name in OTHER_BENCHMARKS)]:
        print(f"waiting for: {'; '.join(running)}", file=sys.stderr, flush=True)
        time.sleep(poll_seconds)


def rotated(tools: Sequence[str], offset: int) -> list[str]:
    """Round r starts with tool r: every tool runs in every position across the rounds."""
    offset %= len(tools)
    return [*tools[offset:], *tools[:offset]]


def warm_up(directory: Path) -> None:
    """Untimed: load ruby, rspec, knapsack and shardrun from disk once."""
    timed(["rspec", "--dry-run", "spec"], directory, os.environ)
    timed(["ruby", "-e", 'require "knapsack"; require "parallel_tests"'], directory, os.environ)
    timed([sys.executable, "-m", "shardrun", "--help"], directory, os.environ)


def measure(root: Path, scenarios: Sequence[Scenario],
            settings: Settings) -> dict[tuple[str, int], Cell]:
    pristine = {scenario.key: prepare(root, scenario) for scenario in scenarios}
    warm_up(root / scenarios[0].key)
    cells = {(scenario.key, workers): Cell() for scenario in scenarios
             for workers in settings.workers}
    for round_index in range(settings.rounds):
        for scenario in scenarios:
            for workers in settings.workers:
                for tool in rotated(TOOLS, round_index):
                    outcome = quiet_run(tool, root, scenario, workers, pristine[scenario.key])
                    cells[(scenario.key, workers)].runs.setdefault(tool, []).append(outcome)
                    print(f"round {round_index + 1} {scenario.key} N={workers} {tool}: "
                          f"{outcome.wall:.2f} s (other load {outcome.foreign:.2f} cores)",
                          file=sys.stderr, flush=True)
    return cells


def quiet_run(tool: str, root: Path, scenario: Scenario, workers: int,
              pristine: Mapping[Path, bytes]) -> Outcome:
    """One run of `tool`, repeated (up to MAX_TRIES) while other processes on the machine
    kept more than FOREIGN_CPU_LIMIT cores busy during it: this run measures the tool."""
    for attempt in range(1, MAX_TRIES + 1):
        restore(pristine)
        before = cpu_marks()
        outcome = RUNNERS[tool](root / scenario.key, workers, tool_env(tool, scenario))
        after = cpu_marks()
        machine, ours = (end - start for start, end in zip(before, after, strict=True))
        outcome = replace(outcome, foreign=max(machine - ours, 0.0) / outcome.wall,
                          tries=attempt)
        if outcome.foreign <= FOREIGN_CPU_LIMIT:
            break
        print(f"{scenario.key} N={workers} {tool}: {outcome.wall:.2f} s discarded, other "
              f"processes kept {outcome.foreign:.2f} cores busy", file=sys.stderr, flush=True)
    return outcome


def cpu_marks() -> tuple[float, float]:
    """CPU seconds the whole machine has been busy, and those of this process and every
    child it has reaped (the tools and, through them, their own children)."""
    times = psutil.cpu_times()
    machine = times.user + times.nice + times.system + getattr(times, "irq", 0.0) \
        + getattr(times, "softirq", 0.0)
    ours = sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return machine, ours


# --- reporting -------------------------------------------------------------------------


def walls_text(walls: Sequence[float]) -> str:
    return f"{statistics.median(walls):.2f} ({', '.join(f'{wall:.2f}' for wall in walls)})"


def verdict_text(scenario: Scenario, cell: Cell) -> str:
    return "met" if cell.ratio(QUEUE) <= scenario.target else "**missed**"


def scenario_table(scenario: Scenario, cells: Mapping[tuple[str, int], Cell],
                   workers: Sequence[int]) -> list[str]:
    lines = [
        "| N | bound, files s | bound, examples s | parallel_tests s | knapsack s "
        "| shardrun static s | shardrun queue s | queue / best peer | static / best peer "
        f"| target <= {scenario.target} | queue: before first batch s / after last s "
        "/ batches |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|---:|",
    ]
    for count in workers:
        cell = cells[(scenario.key, count)]
        phases = (f"{cell.median(QUEUE, 'before'):.2f} / {cell.median(QUEUE, 'after'):.2f}"
                  f" / {cell.median(QUEUE, 'batches'):.0f}")
        lines.append(
            f"| {count} | {scenario.lower_bound(count, split=False):.2f} "
            f"| {scenario.lower_bound(count, split=True):.2f} "
            + "".join(f"| {walls_text(cell.walls(tool))} " for tool in TOOLS)
            + f"| {cell.ratio(QUEUE):.3f} | {cell.ratio(STATIC):.3f} "
            f"| {verdict_text(scenario, cell)} | {phases} |"
        )
    return lines


def losses(scenarios: Sequence[Scenario], cells: Mapping[tuple[str, int], Cell],
           workers: Sequence[int]) -> list[str]:
    """One line per missed target: how far, and where shardrun's time went in that cell."""
    lines = []
    for scenario in scenarios:
        for count in workers:
            cell = cells[(scenario.key, count)]
            if cell.ratio(QUEUE) <= scenario.target:
                continue
            peer, best = cell.best_peer()
            lines.append(
                f"- {scenario.key} at N = {count}: queue {cell.median(QUEUE):.2f} s against "
                f"{peer} {best:.2f} s ({cell.median(QUEUE) - best:+.2f} s, "
                f"{cell.ratio(QUEUE):.3f}, target {scenario.target}). Outside its batches: "
                f"{cell.median(QUEUE, 'before'):.2f} s before the first, "
                f"{cell.median(QUEUE, 'after'):.2f} s after the last; "
                f"{cell.median(QUEUE, 'batches'):.0f} batches for {count} workers, "
                f"{cell.median(QUEUE, 'boot'):.2f} s of boot per worker"
                + (f"; {cell.median(QUEUE, 'examples'):.0f} units were examples of the split "
                   "file" if cell.median(QUEUE, "examples") else "; no file split")
                + f". Static: {cell.median(STATIC):.2f} s ({cell.ratio(STATIC):.3f})."
            )
    return lines


def why(scenarios: Sequence[Scenario], cells: Mapping[tuple[str, int], Cell],
        workers: Sequence[int]) -> list[str]:
    """What the measurements say about where shardrun's time goes."""
    fixed = [cells[("S1", count)].median(STATIC) - cells[("S1", count)].best_peer()[1]
             for count in workers if ("S1", count) in cells]
    boots = statistics.median(cell.median(QUEUE, "boot") for cell in cells.values())
    lines = [
        "Why:",
        "",
        "- *Its own processes.* A run starts a coordinator, a redis-server and N workers, "
        "each a Python process importing click, redis-py, rq, junitparser and psutil, on "
        "the same 2 cores as the test processes (*before first batch*), and at the end "
        "stops them, merges the JUnit XML and writes the history (*after last*)."
        + (f" With exact timings static mode runs one rspec process per worker, as the "
           f"peers do, and still takes {statistics.median(fixed):.2f} s (median over N) "
           "longer than the best peer." if fixed else ""),
        f"- *One boot per worker, after its own start.* Each worker boots one warm rspec "
        f"process (measured {boots:.2f} s, median: Ruby, rspec, the JUnit formatter and "
        f"spec_helper's {BOOT_SECONDS} s) and runs every batch in it, so queue mode's extra "
        "batches cost little. The worker starts it, and has it load spec_helper, as soon as "
        "its own Python process is up (the prewarm), while the coordinator plans; a peer's "
        "rspec processes start at once. On 2 cores N workers and N rspec processes booting "
        "together share the CPU, so past N = 2 the boots overlap less. Splitting a file "
        "costs one more boot in the coordinator: `rspec --dry-run` lists its examples.",
        *static_like(cells, workers),
        *unreachable(scenarios, cells, workers),
        *slow_tail(cells, workers),
    ]
    return lines


def static_like(cells: Mapping[tuple[str, int], Cell], workers: Sequence[int]) -> list[str]:
    """N where queue mode planned no more batches than workers: nothing to rebalance."""
    counts = [count for count in workers
              if all(cell.median(QUEUE, "batches") <= count
                     for (_, n), cell in cells.items() if n == count)]
    if not counts:
        return []
    return [f"- *No batches to rebalance at N = {', '.join(map(str, counts))}.* Each worker's "
            "share of the suite is under two minimum batches (4 boots each), so queue mode "
            "planned one batch per worker: the static plan, with a queue's costs, and no "
            "later batch a fast worker could take from a slow one (S2, S4)."]


def unreachable(scenarios: Sequence[Scenario], cells: Mapping[tuple[str, int], Cell],
                workers: Sequence[int]) -> list[str]:
    """Cells where splitting cannot lower the bound: a target below 1 is out of reach."""
    counts = [count for scenario in scenarios if scenario.key == "S3" for count in workers
              if (scenario.key, count) in cells
              and scenario.lower_bound(count, split=True)
              >= scenario.lower_bound(count, split=False)]
    if not counts:
        return []
    return [f"- *S3 at N = {', '.join(map(str, counts))}:* the half-suite file is total / N "
            "already, so whole files reach the bound and splitting cannot lower it; only "
            "overhead is left to compare."]


def slow_tail(cells: Mapping[tuple[str, int], Cell], workers: Sequence[int]) -> list[str]:
    """S4: how often the batch that ended last ran on the slow worker (index 1)."""
    runs = [outcome for count in workers if ("S4", count) in cells
            for outcome in cells[("S4", count)].runs[QUEUE]]
    if not runs:
        return []
    slow = sum(outcome.last_worker == 1 for outcome in runs)
    return [f"- *S4:* the batch that ended last ran on the slow worker in {slow} of "
            f"{len(runs)} queue runs: batches are handed out in planned order to whichever "
            "worker asks first, so the slow worker can take one of the last batches and "
            "finish it at half speed while the others wait."]


def suite_description(scenarios: Sequence[Scenario], settings: Settings) -> list[str]:
    first = scenarios[0]
    files = len(first.actual)
    examples = sum(len(parts) for parts in first.actual.values())
    return [
        f"The suite: {files} spec files sampled (seed {SEED}) from "
        f"`{DEFAULT_DATASET}` in `../shared/data/timings`, scaled to {settings.total:.0f} s "
        f"of examples, no file above {MAX_SHARE:.0%} of the total (longer ones capped, the "
        f"cut spread over the rest); {examples} examples of about 0.25 s. Every example does "
        f"its seconds of work: {CPU_FRACTION:.0%} burning CPU in a busy loop, the rest "
        f"sleeping (the machine has 2 cores: with a CPU-bound suite nothing could gain from "
        f"N > 2). `spec/spec_helper.rb` does {BOOT_SECONDS} s of such work once per process "
        f"(a Rails boot) and every spec file {LOAD_SECONDS} s when loaded. Generator: "
        "`bench/peers/suite.py`; every tool's timing file is written from the seconds the "
        "scenario plans with, as a previous run would have left it, and restored before "
        "every run; shardrun's history also holds the record of one untimed `shardrun run` "
        "in the scenario's suite (where shardrun measures a batch's boot), as a team's "
        "history would.",
        "",
        f"- **S1** exact timings. **S2** stale: the tools plan from version {settings.step} "
        f"and the suite sleeps version {settings.step + 1} of `history/{HISTORY_PROJECT}` "
        f"(the real per-file durations of a project's consecutive commits, {files} files "
        "mapped onto the spec files, the newer version scaled to the total and capped as "
        "above; step chosen as the median of the 18 by how much the files changed). **S3**: "
        f"the longest file made {DOMINANT_SHARE:.0%} of the suite, the others shrunk alike. "
        f"**S4**: S1's suite, one process {SLOWDOWN:g}x slower: `spec_helper` multiplies "
        "all its work (CPU and sleep, boot included) when the variable named by "
        "`BENCH_WORKER_VAR` equals `BENCH_SLOW_WORKER` (parallel_tests: TEST_ENV_NUMBER = "
        "\"\", its first process; knapsack: CI_NODE_INDEX = 0; shardrun: "
        "SHARDRUN_WORKER_INDEX = 1). A CPU hog pinned beside one process would not make it "
        f"half as fast here: only {CPU_FRACTION:.0%} of its work is CPU, and on 2 cores the "
        "hog would slow every process.",
    ]


def commands_description(workers: Sequence[int]) -> list[str]:
    return [
        "Commands, from each scenario's directory, N in "
        f"{', '.join(str(count) for count in workers)}:",
        "",
        f"- parallel_tests 4.1.0: `{shlex.join(parallel_tests_argv(0)).replace(' 0 ', ' N ')}`",
        "- knapsack 1.18.0, regular mode: N processes started together, each "
        "`CI_NODE_TOTAL=N CI_NODE_INDEX=i ruby -e '<runner>'` where the runner is what "
        "`knapsack rspec` does minus its `bundle exec` (no Gemfile): "
        f"`{KNAPSACK_RUNNER}`; wall = start to the last node's exit.",
        "- shardrun: `python -m shardrun run spec --workers N --mode static` and "
        "`... --mode queue` (a private redis-server per run), `.shardrun/timings.json` reset "
        "to `shardrun timings import knapsack_rspec_report.json` before every run.",
    ]


def section(scenarios: Sequence[Scenario], cells: Mapping[tuple[str, int], Cell],
            settings: Settings, argv: Sequence[str], loads: tuple[float, float],
            parts: int = 1) -> str:
    command = shlex.join(["flock", LOCK, "python", "bench/peers/rspec_peers.py", *argv])
    lines = [
        f"Measured by `{command}` (run from the repository root; without `--write` it only "
        f"prints), {machine_description()}."
        + ("" if math.isnan(loads[0]) else f" Load average (1 min): {loads[0]:.2f} at the "
           f"start, {loads[1]:.2f} at the end.")
        + f" Ruby {ruby_version()}.",
        "",
        *suite_description(scenarios, settings),
        "",
        *commands_description(settings.workers),
        "",
        f"Rounds: {settings.rounds}, interleaved: each round runs every scenario, N and "
        "tool once, the tools' order rotating by one each round. Cells: median wall time "
        "(every run). *bound* = max(longest unit, total / capacity) in test seconds "
        "(capacity N, or N - 1/2 in S4), without boots and loads; units are whole files "
        "(all a peer can move) or examples (shardrun's queue mode splits a file longer than "
        "its first batch target into examples). Target: shardrun's default mode (queue) / "
        "the best peer. *before first batch* and *after last* are shardrun's own cost "
        "around its batches (planning, redis-server, workers' start-up, listing examples; "
        "merging JUnit, history, shutdown).",
    ]
    lines += coverage_note(parts, sorted(set(TARGETS) - set(settings.scenarios)))
    lines += ["", *interference(cells)]
    for scenario in scenarios:
        lines += ["", f"### {scenario.key}: {scenario.title}", "",
                  *scenario_table(scenario, cells, settings.workers)]
    missed = losses(scenarios, cells, settings.workers)
    lines += ["", "### Where shardrun misses its target", ""]
    lines += ([*missed, "", *why(scenarios, cells, settings.workers)] if missed
              else ["Nowhere: every target met."])
    return "\n".join(lines)


def save_results(path: Path, cells: Mapping[tuple[str, int], Cell]) -> None:
    results = {f"{key} N={workers}": {tool: [asdict(outcome) for outcome in outcomes]
                                      for tool, outcomes in cell.runs.items()}
               for (key, workers), cell in cells.items()}
    path.write_text(json.dumps(results, indent=1) + "\n")


def interference(cells: Mapping[tuple[str, int], Cell]) -> list[str]:
    """How much other work the machine did during the kept runs, and what was repeated."""
    kept = [outcome for cell in cells.values() for runs in cell.runs.values()
            for outcome in runs]
    repeated = sum(outcome.tries - 1 for outcome in kept)
    loaded = sum(outcome.foreign > FOREIGN_CPU_LIMIT for outcome in kept)
    return [
        f"Other load: a run during which processes outside the benchmark kept more than "
        f"{FOREIGN_CPU_LIMIT} cores busy on average (machine busy CPU time minus this "
        f"script's and its reaped children's) was discarded and run again, up to {MAX_TRIES} "
        f"tries: {repeated} of {len(kept) + repeated} runs were discarded"
        + (f", and {loaded} kept after {MAX_TRIES} tries despite it" if loaded else "")
        + f". The kept runs saw at most {max(outcome.foreign for outcome in kept):.2f} "
        f"cores of other load (median {statistics.median(o.foreign for o in kept):.2f})."
    ]


def ruby_version() -> str:
    completed = subprocess.run(["ruby", "-e", "print RUBY_VERSION"], capture_output=True,
                               text=True, check=False)
    return completed.stdout.strip() or "unknown"


# --- main ------------------------------------------------------------------------------


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=list(WORKER_COUNTS))
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--total", type=float, default=TOTAL_SECONDS,
                        help="Seconds of examples in the suite.")
    parser.add_argument("--scenarios", nargs="+", choices=sorted(TARGETS),
                        default=sorted(TARGETS))
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="Write the suites here and keep them (default: a temp dir).")
    parser.add_argument("--results", type=Path, metavar="JSON",
                        help="Also save every run's numbers here.")
    parser.add_argument("--write", type=Path, metavar="MARKDOWN",
                        help="Rewrite the --heading section of this file.")
    parser.add_argument("--heading", default=HEADING,
                        help=f"The section's heading (default {HEADING!r}).")
    parser.add_argument("--from-results", type=Path, nargs="+", metavar="JSON",
                        help="Measure nothing: write the section from --results files (one "
                             "per scenario, say, when the matrix is measured in parts).")
    parser.add_argument("--loads", type=float, nargs=2, default=(math.nan, math.nan),
                        metavar=("START", "END"),
                        help="With --from-results: the load averages the run saw.")
    return parser.parse_args(argv)


def load_results(paths: Sequence[Path]) -> dict[tuple[str, int], Cell]:
    """The cells save_results wrote, from one file or several (a later one wins a cell)."""
    cells: dict[tuple[str, int], Cell] = {}
    for path in paths:
        for name, runs in json.loads(path.read_text()).items():
            key, workers = name.split(" N=")
            cells[(key, int(workers))] = Cell({
                tool: [Outcome(**outcome) for outcome in outcomes]
                for tool, outcomes in runs.items()})
    return cells


def shown(arguments: Sequence[str]) -> list[str]:
    """The measuring command as the section shows it: without the re-rendering options
    (--from-results and its files, --loads and its two numbers)."""
    kept: list[str] = []
    dropping = 0  # values left to drop; -1: every value up to the next option
    for argument in arguments:
        if dropping and not (dropping < 0 and argument.startswith("--")):
            dropping -= dropping > 0
            continue
        dropping = {"--from-results": -1, "--loads": 2}.get(argument, 0)
        if not dropping:
            kept.append(argument)
    return kept


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parse_arguments(arguments)
    settings = Settings(args.total, tuple(args.workers), args.rounds, tuple(args.scenarios),
                        typical_history_step(HISTORY_PROJECT, files=FILES,
                                             max_share=MAX_SHARE))
    scenarios = build_scenarios(settings)
    if args.from_results:
        cells, loads = load_results(args.from_results), tuple(args.loads)
    else:
        wait_for_other_benchmarks()
        byte_compile_shardrun()
        root = args.keep or Path(tempfile.mkdtemp(prefix="shardrun-rspec-peers-"))
        load = os.getloadavg()[0]
        try:
            cells = measure(root, scenarios, settings)
        finally:
            if args.keep is None:
                shutil.rmtree(root, ignore_errors=True)
        loads = (load, os.getloadavg()[0])
    body = section(scenarios, cells, settings, shown(arguments), loads,
                   len(args.from_results or ()))
    print(body)
    if args.write:
        write_section(args.write, args.heading, body)
    if args.results and not args.from_results:
        save_results(args.results, cells)
    met = all(cells[(scenario.key, count)].ratio(QUEUE) <= scenario.target
              for scenario in scenarios for count in settings.workers)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
