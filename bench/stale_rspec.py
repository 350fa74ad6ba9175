"""Stale timings on all ~750 files of a real RSpec suite: shardrun against parallel_tests.

Issue 19's target: a suite of many small RSpec files, every tool planning from version k of
a real knapsack report while the suite runs version k + 1, N = 4: shardrun's queue mode
<= 0.90 x parallel_tests. The suite is every file of history/<PROJECT> (../shared/data/
timings) in both versions of step k (the median step by `suite.step_change`, or `--step`),
version k + 1 scaled to `--total` seconds of examples; the timing files say version k,
scaled alike, and are restored before every run (bench/peers/suite.py writes both; the
tools run as bench/peers/rspec_peers.py runs them). Rounds interleave the tools, rotating
their order. Every run must exit 0 and report every example (parallel_tests' summary
lines, shardrun's merged JUnit); the script exits 1 when one did not or the target is
missed.

    flock /tmp/shardrun-bench.lock nice .venv/bin/python bench/stale_rspec.py --total 10 --rounds 1
    flock /tmp/shardrun-bench.lock nice .venv/bin/python bench/stale_rspec.py \
        --results bench/results/stale-rspec.json --write docs/benchmarks.md
    .venv/bin/python bench/stale_rspec.py --from-results bench/results/stale-rspec.json \
        --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH / "peers"), str(BENCH)]

import rspec_peers as peers  # noqa: E402
import suite as generator  # noqa: E402
from _datasets import byte_compile_shardrun, machine_description, write_section  # noqa: E402
from suite import Examples, file_seconds  # noqa: E402

HEADING = "## Stale timings on many small RSpec files (issue 19)"
PROJECT = "DFE-Digital__early-careers-framework__knapsack_rspec_report.json"
ALL_FILES = 10**6  # suite.history_step samples this many files: all of them
TOTAL_SECONDS = 60.0
CPU_FRACTION = 0.2
BOOT_SECONDS = 0.5
# Per file a process loads: 2 ms (a small spec file's require), 1.5 s over the ~750 files.
LOAD_SECONDS = 0.002
TARGET = 0.90
PARALLEL_TESTS, STATIC, QUEUE = "parallel_tests", "shardrun static", "shardrun queue"
TOOLS = (PARALLEL_TESTS, STATIC, QUEUE)
SUMMARY = re.compile(r"^(\d+) examples?, (\d+) failures?", re.MULTILINE)


@dataclass(frozen=True)
class Run:
    wall: float
    examples: int  # examples the run reported
    failures: int
    before: float = math.nan  # shardrun: command start -> first batch start
    after: float = math.nan  # shardrun: last batch end -> command exit
    batches: float = math.nan
    boot: float = math.nan  # shardrun: its run record's boot_seconds_per_batch
    foreign: float = math.nan  # cores other processes kept busy during the run
    tries: int = 1
    # shardrun: the batch that ended last: its units, predicted and actual seconds
    tail: tuple[float, float, float] = (math.nan, math.nan, math.nan)


@dataclass
class Suite:
    step: int
    total: float
    planned: Examples = field(default_factory=dict)  # version k, what the timing files say
    actual: Examples = field(default_factory=dict)  # version k + 1, what the suite does

    @classmethod
    def build(cls, step: int, total: float) -> Suite:
        planned, actual = generator.history_step(PROJECT, step, total, files=ALL_FILES)
        examples = generator.split_examples(actual)
        return cls(step, total, generator.reshape(examples, planned), examples)

    def count(self) -> int:
        return sum(len(parts) for parts in self.actual.values())

    def bound(self, workers: int, *, split: bool) -> float:
        units = ([s for parts in self.actual.values() for s in parts] if split
                 else list(file_seconds(self.actual).values()))
        return max(max(units), sum(units) / workers)

    def stale_lpt(self, workers: int) -> float:
        """The longest group of a longest-first plan made from version k, in k + 1's
        seconds: what the stale timings alone cost a static plan of whole files."""
        planned, actual = file_seconds(self.planned), file_seconds(self.actual)
        groups = [0.0] * workers
        real = [0.0] * workers
        for stem in sorted(planned, key=lambda stem: -planned[stem]):
            index = groups.index(min(groups))
            groups[index] += planned[stem]
            real[index] += actual[stem]
        return max(real)


# --- running ---------------------------------------------------------------------------


def environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in peers.CLEARED_ENV}


def run_parallel_tests(root: Path, workers: int) -> Run:
    argv = peers.parallel_tests_argv(workers)
    started = time.monotonic()
    completed = subprocess.run(argv, cwd=root, env=environment(), stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    peers.checked(argv, completed)
    # One summary per process, then parallel_tests' own total: sum the processes'.
    counts = [(int(e), int(f)) for e, f in SUMMARY.findall(completed.stdout)][:workers]
    return Run(wall, sum(e for e, _ in counts), sum(f for _, f in counts))


def run_shardrun_mode(root: Path, workers: int, mode: str) -> Run:
    junit = root / ".shardrun" / "junit.xml"
    junit.unlink(missing_ok=True)
    outcome = peers.run_shardrun(root, workers, environment(), mode)
    cases = list(ElementTree.parse(junit).getroot().iter("testcase"))
    failed = sum(case.find("failure") is not None or case.find("error") is not None
                 for case in cases)
    # Distinct examples: one run twice would not hide another that never ran.
    distinct = {(case.get("file") or case.get("classname"), case.get("name")) for case in cases}
    last = max(peers.read_last_run(root / generator.SHARDRUN_HISTORY)["batches"],
               key=lambda batch: float(batch["end"]))
    tail = (len(last["units"]), last["predicted_seconds"], last["actual_seconds"])
    return Run(outcome.wall, len(distinct), failed, outcome.before, outcome.after,
               outcome.batches, outcome.boot, tail=tail)


def quiet_run(tool: str, root: Path, workers: int, pristine: Mapping[Path, bytes]) -> Run:
    """One run, repeated (up to MAX_TRIES) while other processes kept the machine busy."""
    for attempt in range(1, peers.MAX_TRIES + 1):
        for path, content in pristine.items():
            path.write_bytes(content)
        before = peers.cpu_marks()
        run = (run_parallel_tests(root, workers) if tool == PARALLEL_TESTS
               else run_shardrun_mode(root, workers, tool.split()[-1]))
        machine, ours = (end - start for start, end in zip(before, peers.cpu_marks(), strict=True))
        run = replace(run, foreign=max(machine - ours, 0.0) / run.wall, tries=attempt)
        if run.foreign <= peers.FOREIGN_CPU_LIMIT:
            break
        print(f"N={workers} {tool}: {run.wall:.2f} s discarded, other load "
              f"{run.foreign:.2f} cores", file=sys.stderr, flush=True)
    return run


def measure(root: Path, suite: Suite, workers: Sequence[int],
            rounds: int) -> dict[int, dict[str, list[Run]]]:
    generator.write_rspec_suite(root, suite.actual, cpu_fraction=CPU_FRACTION,
                                boot_seconds=BOOT_SECONDS, load_seconds=LOAD_SECONDS)
    generator.write_rspec_histories(root, suite.planned)
    generator.with_measured_boot(root, peers.shardrun_argv(workers[0], "queue"), environment())
    pristine = {root / name: (root / name).read_bytes()
                for name in (generator.PARALLEL_TESTS_LOG, generator.KNAPSACK_REPORT,
                             generator.SHARDRUN_HISTORY)}
    peers.warm_up(root)
    cells: dict[int, dict[str, list[Run]]] = {count: {} for count in workers}
    for round_index in range(rounds):
        for count in workers:
            for tool in peers.rotated(TOOLS, round_index):
                run = quiet_run(tool, root, count, pristine)
                cells[count].setdefault(tool, []).append(run)
                print(f"round {round_index + 1} N={count} {tool}: {run.wall:.2f} s, "
                      f"{run.examples} examples, {run.failures} failures (other load "
                      f"{run.foreign:.2f})", file=sys.stderr, flush=True)
    return cells


# --- reporting -------------------------------------------------------------------------


def median(runs: Sequence[Run], attribute: str = "wall") -> float:
    return statistics.median(getattr(run, attribute) for run in runs)


def miscounted(suite: Suite, cells: Mapping[int, Mapping[str, Sequence[Run]]]) -> list[str]:
    expected = suite.count()
    return [f"{tool} at N = {count} reported {run.examples} examples ({run.failures} "
            f"failed), not {expected}" for count, runs in cells.items()
            for tool, tool_runs in runs.items() for run in tool_runs
            if run.examples != expected or run.failures]


def versions(step: int) -> tuple[str, str]:
    names = sorted(path.stem for path in (generator.HISTORY_DIR / PROJECT).glob("*.data"))
    return names[step], names[step + 1]


def suite_text(suite: Suite) -> list[str]:
    old, new = versions(suite.step)
    files = file_seconds(suite.actual)
    planned = sum(file_seconds(suite.planned).values())
    small = sum(seconds < 0.1 for seconds in files.values())
    return [
        f"The suite: all {len(files)} spec files present in versions {suite.step} "
        f"(`{old}`) and {suite.step + 1} (`{new}`) of `history/{PROJECT}` in "
        f"`../shared/data/timings` (the project's committed knapsack report; `suite."
        f"step_change` = {generator.step_change((file_seconds(suite.planned), files)):.3f}"
        + (": the median step by how much its files changed, typical, not picked for effect"
           if suite.step == generator.typical_history_step(PROJECT, files=ALL_FILES)
           else ", chosen by `--step`")
        + f"). The suite does version "
        f"{suite.step + 1} scaled to {suite.total:.0f} s of examples: {suite.count()} "
        f"examples, {small} files under 0.1 s (median {statistics.median(files.values()):.3f} "
        f"s, longest {max(files.values()):.2f} s). Every tool plans from version "
        f"{suite.step} scaled by the same factor ({planned:.1f} s in all). Examples burn "
        f"{CPU_FRACTION:.0%} of their seconds as CPU and sleep the rest; "
        f"`spec/spec_helper.rb` does {BOOT_SECONDS} s of such work once per process (a "
        f"Rails boot), every spec file {LOAD_SECONDS * 1000:.0f} ms when loaded. "
        "Generator: `bench/peers/suite.py`; each tool's timing file is written from "
        "version k and restored before every run (shardrun's history: `shardrun timings "
        "import knapsack_rspec_report.json` plus one untimed run's record, where it "
        "measures a batch's boot).",
        "",
        "- parallel_tests: `parallel_rspec -n N --group-by runtime --runtime-log "
        "tmp/parallel_runtime_rspec.log spec`",
        "- shardrun: `python -m shardrun run spec --workers N --mode static` and "
        "`... --mode queue` (a private redis-server per run)",
    ]


def table(suite: Suite, cells: Mapping[int, Mapping[str, Sequence[Run]]]) -> list[str]:
    lines = ["| N | bound, files s | bound, examples s | stale LPT s | parallel_tests s "
             "| shardrun static s | shardrun queue s | queue / parallel_tests "
             f"| static / parallel_tests | target <= {TARGET:.2f} | queue: before first "
             "batch s / after last s / batches |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|---:|"]
    for count, runs in cells.items():
        peer = median(runs[PARALLEL_TESTS])
        walls = "".join(f"| {median(runs[tool]):.2f} ("
                        + ", ".join(f"{run.wall:.2f}" for run in runs[tool]) + ") "
                        for tool in TOOLS)
        ratio = median(runs[QUEUE]) / peer
        lines.append(
            f"| {count} | {suite.bound(count, split=False):.2f} "
            f"| {suite.bound(count, split=True):.2f} | {suite.stale_lpt(count):.2f} {walls}"
            f"| {ratio:.3f} | {median(runs[STATIC]) / peer:.3f} "
            f"| {'met' if ratio <= TARGET else '**missed**'} "
            f"| {median(runs[QUEUE], 'before'):.2f} / {median(runs[QUEUE], 'after'):.2f} / "
            f"{median(runs[QUEUE], 'batches'):.0f} |")
    return lines


def floor_text(suite: Suite, count: int, runs: Mapping[str, Sequence[Run]]) -> str:
    """The least any tool can take: every process boots once (rspec and spec_helper, as
    shardrun measured it) and loads its share of the spec files, besides the examples'
    own seconds (the bound). A target under it is out of reach, whoever runs the suite."""
    boot = median(runs[QUEUE], "boot")
    loads = len(suite.actual) * LOAD_SECONDS / count
    floor = suite.bound(count, split=True) + boot + loads
    target = TARGET * median(runs[PARALLEL_TESTS])
    verdict = ("so the target is out of reach on this suite; the nearest reachable one is "
               "parallel_tests' own time (<= 1.00 x)" if target < floor else
               "so the target is within reach")
    return (f"No tool finishes under the bound + one boot + its share of the file loads "
            f"({len(suite.actual)} x {LOAD_SECONDS * 1000:.0f} ms / {count}): "
            f"{floor:.2f} s, against the target's {target:.2f} s, {verdict}.")


def why(suite: Suite, cells: Mapping[int, Mapping[str, Sequence[Run]]]) -> list[str]:
    lines = []
    for count, runs in cells.items():
        peer, static, queue = (median(runs[tool]) for tool in TOOLS)
        bound, lpt = suite.bound(count, split=False), suite.stale_lpt(count)
        tails = "; ".join(f"{units:.0f} units, predicted {predicted:.2f} s, took {took:.2f} s"
                          for units, predicted, took in (run.tail for run in runs[QUEUE]))
        lines.append(
            f"- N = {count}: queue {queue:.2f} s against parallel_tests {peer:.2f} s "
            f"({queue - peer:+.2f} s, {queue / peer:.3f}); static {static:.2f} s "
            f"({static / peer:.3f}; *static - parallel_tests* {static - peer:+.2f} s, "
            f"*queue - static* {queue - static:+.2f} s). The target needs {TARGET * peer:.2f} s, "
            f"{TARGET * peer - bound:.2f} s above the bound ({bound:.2f} s), "
            + ("less" if TARGET * peer - bound < median(runs[QUEUE], "boot") else "more")
            + f" than one rspec process's boot as shardrun measures it "
            f"({median(runs[QUEUE], 'boot'):.2f} s). {floor_text(suite, count, runs)} "
            "parallel_tests "
            f"is {peer - bound:.2f} s above it, of which only {lpt - bound:.2f} s is the "
            f"stale plan (*stale LPT*). shardrun queue: {median(runs[QUEUE], 'before'):.2f} s "
            f"before its first batch, {median(runs[QUEUE], 'after'):.2f} s after its last, "
            f"{median(runs[QUEUE], 'batches'):.0f} batches; the batch that ended last, per "
            f"run: {tails}.")
    return [
        *lines,
        "",
        "Why:",
        "",
        "- *The stale timings cost little here.* A step of this project's report changes a "
        "file by a few per cent, and over hundreds of files per process the errors "
        "average out: a longest-first plan from version k is within *stale LPT - bound* "
        "(above) of total / N in version k + 1's seconds. A queue has almost nothing to "
        "rebalance, so the target asks shardrun to finish 10 % before parallel_tests "
        "while paying the same boots and loads plus its own fixed costs.",
        "- *shardrun's fixed cost.* Before its first batch it starts a coordinator, a "
        "redis-server and N Python workers on the same 2 cores, and each worker boots its "
        "warm rspec runner; after its last it stops them, merges the JUnit XML and writes "
        "its history. parallel_tests starts N rspec processes and nothing else.",
        "- *Per-batch and per-file costs.* Each queue batch is a fork of the warm runner "
        "that loads its files, writes a JUnit file and goes through Redis; with nothing "
        "stale to rebalance, queue mode's extra batches only add these (*queue - static*). "
        "Planning longest first leaves the many small files (most take under 0.1 s here) "
        "to the last batches. A file's recorded seconds leave out its load and rspec's and "
        "the JUnit formatter's cost per example. Queue mode prices them with a per-unit "
        "cost fitted over earlier runs' batches of different sizes (`report/runlog.py` "
        "`unit_seconds`); here the history holds one untimed run whose warm batches all "
        "held 12 to 21 files, too alike to tell a file's cost from the noise, so the fit "
        "can come out near 0 and the batch that ends the run holds 126 files, predicted "
        "at 0.88 s, taking about 1.5 s (above). In a sitting where the fit found the cost, "
        "that batch held 56 files, predicted 0.46 s, took 0.56-0.60 s, and queue was "
        "0.36 s faster (commit b4727ae). parallel_tests pays the same per-file costs, "
        "spread over its processes' whole runs instead of at the end.",
    ]


def section(suite: Suite, cells: Mapping[int, Mapping[str, Sequence[Run]]],
            argv: Sequence[str], loads: Sequence[float], rounds: int) -> str:
    command = shlex.join(["flock", peers.LOCK, "nice", ".venv/bin/python", "bench/stale_rspec.py",
                          *argv])
    problems = miscounted(suite, cells)
    kept = [run for runs in cells.values() for tool_runs in runs.values() for run in tool_runs]
    return "\n".join([
        f"Measured by `{command}` (run from the repository root; without `--write` it only "
        f"prints), {machine_description()}, Ruby {peers.ruby_version()}."
        + ("" if math.isnan(loads[0]) else f" Load average (1 min): {loads[0]:.2f} at the "
           f"start, {loads[1]:.2f} at the end."),
        "",
        *suite_text(suite),
        "",
        f"Rounds: {rounds}, the tools' order rotating each round. Cells: median wall time "
        "(every run). *bound* = max(longest unit, total / N) of version "
        f"{suite.step + 1}'s seconds, without boots and loads; units are whole files or "
        "examples. *stale LPT*: the longest group of a longest-first plan of whole files "
        f"from version {suite.step}, in version {suite.step + 1}'s seconds. Runs during "
        f"which other processes kept more than {peers.FOREIGN_CPU_LIMIT} cores busy were run "
        f"again (up to {peers.MAX_TRIES} tries): {sum(run.tries - 1 for run in kept)} were. "
        + (f"Every run exited 0 and reported all {suite.count()} examples, none failed "
           "(parallel_tests: its processes' summary lines; shardrun: its merged JUnit)."
           if not problems else "**Runs that lost examples:** " + "; ".join(problems) + "."),
        "",
        *table(suite, cells),
        "",
        "### Where it misses / why",
        "",
        *why(suite, cells),
    ])


# --- main ------------------------------------------------------------------------------


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[4])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--total", type=float, default=TOTAL_SECONDS,
                        help="Seconds of examples in the suite (version k + 1).")
    parser.add_argument("--step", type=int, help="History step k (default: the median).")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="Write the suite here.")
    parser.add_argument("--results", type=Path, metavar="JSON")
    parser.add_argument("--from-results", type=Path, metavar="JSON",
                        help="Measure nothing: render the section from --results.")
    parser.add_argument("--write", type=Path, metavar="MARKDOWN")
    parser.add_argument("--heading", default=HEADING)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parse_arguments(arguments)
    if args.from_results:
        saved = json.loads(args.from_results.read_text())
        step, total, rounds = saved["step"], saved["total"], saved["rounds"]
        loads, shown_argv = saved["loads"], saved["argv"]
        cells = {int(count): {tool: [Run(**run) for run in runs] for tool, runs in tools.items()}
                 for count, tools in saved["cells"].items()}
    else:
        step = (generator.typical_history_step(PROJECT, files=ALL_FILES) if args.step is None
                else args.step)
        total, rounds, shown_argv = args.total, args.rounds, peers.shown(arguments)
    suite = Suite.build(step, total)
    if not args.from_results:
        peers.wait_for_other_benchmarks()
        byte_compile_shardrun()
        root = args.keep or Path(tempfile.mkdtemp(prefix="shardrun-stale-rspec-"))
        start_load = os.getloadavg()[0]
        try:
            cells = measure(root, suite, args.workers, rounds)
        finally:
            if args.keep is None:
                shutil.rmtree(root, ignore_errors=True)
        loads = [start_load, os.getloadavg()[0]]
        if args.results:
            args.results.write_text(json.dumps({
                "step": step, "total": total, "rounds": rounds, "loads": loads,
                "argv": shown_argv, "cells": {str(count): {
                    tool: [asdict(run) for run in runs] for tool, runs in tools.items()}
                    for count, tools in cells.items()}}, indent=1) + "\n")
    body = section(suite, cells, shown_argv, loads, rounds)
    print(body)
    if args.write:
        write_section(args.write, args.heading, body)
    met = all(median(runs[QUEUE]) / median(runs[PARALLEL_TESTS]) <= TARGET
              for runs in cells.values())
    return 0 if met and not miscounted(suite, cells) else 1


if __name__ == "__main__":
    sys.exit(main())
