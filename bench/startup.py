"""Start-up and finish budget: where `shardrun run -w N` spends the time its tests do not.

For a one-test pytest suite, a one-test RSpec suite and the two bundled example suites
(examples/, copied to a scratch directory), at N = 1, 2, 4, 8 local workers, it measures
`shardrun run -w N` against the bare framework (`python -m pytest`, `rspec`) in the same
rounds, and splits shardrun's extra time into phases:

- every shardrun process appends `<time> <pid> <phase>` lines to the file named by
  SHARDRUN_PHASES (shardrun/phases.py): the coordinator's "cli imported", "planned",
  "redis ready", "workers started", "enqueued", "last result", "workers stopped",
  "merged", "junit written", "history saved", "redis stopped", "exit"; each worker's
  "worker start", "worker connected", "batch start", "batch end"; each runner's
  "runner booted";
- a test-side hook (a pytest plugin given with `-p`, an RSpec file given with
  `--require`, to shardrun and to the bare run alike) adds "test start" and "test end"
  for every test, so "first test" and "last test" are the tests', not shardrun's, word.

Each suite gets one untimed shardrun run first, so the timed runs plan from a history as
every run after a project's first does. Rounds interleave the bare run and every N, so a
noisy machine slows all of them alike; each cell is the median of the rounds.

    python bench/startup.py                             # print the tables
    python bench/startup.py --suites one-test --rounds 5
    python bench/startup.py --write docs/benchmarks.md  # and rewrite "## Start-up and finish"
    python bench/startup.py --baseline ../wt-main/.venv/bin/shardrun  # before/after, same rounds

With --baseline, another install's `shardrun` (an older commit) runs in the same rounds
too, and each cell shows "now (baseline)".

Exits 1 when a target is missed: the one-test suites at -w 2 more than 1.0 s over the
bare framework, or `shardrun --help` over 0.3 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from _datasets import byte_compile_shardrun, provenance, write_section

from shardrun.phases import PHASES_VARIABLE

HEADING = "## Start-up and finish"
REPOSITORY = Path(__file__).resolve().parents[1]
WORKER_COUNTS = (1, 2, 4, 8)
ROUNDS = 3
HELP_RUNS = 5
TARGET_OVER_SECONDS = 1.0  # one-test suite, -w 2, over the bare framework
TARGET_HELP_SECONDS = 0.3
TARGET_WORKERS = 2
MS = 1000.0
# The test-side marks: every test's start and end, in the phases file.
PYTEST_MARKS = '''
import os, time

def _mark(phase):
    path = os.environ.get("SHARDRUN_PHASES")
    if path:
        with open(path, "a") as phases:
            phases.write(f"{time.time():.6f} {os.getpid()} {phase}\\n")

def pytest_runtest_logstart(nodeid, location):
    _mark("test start")

def pytest_runtest_logfinish(nodeid, location):
    _mark("test end")
'''
RSPEC_MARKS = '''
def shardrun_bench_mark(phase)
  path = ENV["SHARDRUN_PHASES"]
  File.write(path, format("%.6f %d %s\\n", Time.now.to_f, Process.pid, phase), mode: "a") if path
end
RSpec.configure do |config|
  config.before(:example) { shardrun_bench_mark("test start") }
  config.after(:example) { shardrun_bench_mark("test end") }
end
'''
ONE_PYTEST = "def test_one():\n    assert 1 + 1 == 2\n"
ONE_RSPEC = 'RSpec.describe "one" do\n  it("adds") { expect(1 + 1).to eq(2) }\nend\n'
# `--suites many-tests`: 20 files of 100 trivial tests, where what shardrun does per test
# (its events, merging, the JUnit, the history) is most of what it adds.
MANY_FILES, MANY_TESTS = 20, 100


def many_pytest() -> dict[str, str]:
    body = "".join(f"def test_{n}():\n    assert {n} == {n}\n\n" for n in range(MANY_TESTS))
    return {"pytest.ini": "", **{f"tests/test_{i:02d}.py": body for i in range(MANY_FILES)}}


def many_rspec() -> dict[str, str]:
    body = "".join(f"  it('t{n}') {{ expect({n}).to eq({n}) }}\n" for n in range(MANY_TESTS))
    return {f"spec/f{i:02d}_spec.rb": f"RSpec.describe 'f{i}' do\n{body}end\n"
            for i in range(MANY_FILES)}

# The milestones shown, in the order a run reaches them: (phase, first or last of them).
START_MILESTONES = (
    ("cli imported", "first"), ("redis ready", "first"), ("workers started", "first"),
    ("worker start", "last"), ("planned", "first"), ("enqueued", "first"),
    ("worker connected", "last"), ("runner booted", "last"), ("batch start", "first"),
    ("test start", "first"),
)
FINISH_MILESTONES = (
    ("test end", "last"), ("batch end", "last"), ("last result", "first"),
    ("workers stopped", "first"), ("merged", "first"), ("junit written", "first"),
    ("history saved", "first"), ("redis stopped", "first"), ("exit", "first"),
)


@dataclass(frozen=True)
class Suite:
    name: str
    framework: str
    files: dict[str, str]  # generated files, or {} for a copied example
    example: str | None = None  # examples/<name> to copy
    group: str = "one-test"  # what --suites names it by

    def bare_argv(self, marks: Path) -> list[str]:
        if self.framework == "pytest":
            return [sys.executable, "-m", "pytest", "-q", "-p", marks.stem, "tests"]
        return ["rspec", "--require", str(marks)]

    def runner_args(self, marks: Path) -> list[str]:
        return ["-p", marks.stem] if self.framework == "pytest" else ["--require", str(marks)]

    @property
    def path(self) -> str:
        return "tests" if self.framework == "pytest" else "spec"


SUITES = (
    Suite("pytest, one test", "pytest", {"tests/test_one.py": ONE_PYTEST, "pytest.ini": ""}),
    Suite("rspec, one test", "rspec", {"spec/one_spec.rb": ONE_RSPEC}),
    Suite("pytest, examples/pytest", "pytest", {}, "pytest", "examples"),
    Suite("rspec, examples/rspec", "rspec", {}, "rspec", "examples"),
    Suite("pytest, 2,000 tests", "pytest", many_pytest(), group="many-tests"),
    Suite("rspec, 2,000 tests", "rspec", many_rspec(), group="many-tests"),
)
# `--suites all`: the groups the "Start-up and finish" section has always shown.
ALL_GROUPS = ("one-test", "examples")


@dataclass(frozen=True)
class Sample:
    """One timed command: its wall time and each phase's times, from the command's start."""

    seconds: float
    phases: dict[str, list[float]]

    def at(self, phase: str, which: str) -> float | None:
        times = self.phases.get(phase)
        if not times:
            return None
        return min(times) if which == "first" else max(times)

    @property
    def to_first_test(self) -> float | None:
        return self.at("test start", "first")

    @property
    def after_last_test(self) -> float | None:
        last = self.at("test end", "last")
        return None if last is None else self.seconds - last


def shardrun_executable() -> list[str]:
    """The `shardrun` a user types, next to this interpreter (else `python -m shardrun`)."""
    script = Path(sys.executable).parent / "shardrun"
    return [str(script)] if script.exists() else [sys.executable, "-m", "shardrun"]


def prepare(suite: Suite, scratch: Path) -> tuple[Path, Path]:
    """The suite's directory and its marks file, written under `scratch`."""
    root = scratch / suite.name.replace(", ", "-").replace("/", "-").replace(" ", "-")
    if suite.example:
        shutil.copytree(REPOSITORY / "examples" / suite.example, root)
    for name, text in suite.files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    marks = root / ("shardrun_bench_marks.py" if suite.framework == "pytest"
                    else "shardrun_bench_marks.rb")
    marks.write_text(PYTEST_MARKS if suite.framework == "pytest" else RSPEC_MARKS,
                     encoding="utf-8")
    return root, marks


def timed(argv: Sequence[str], cwd: Path) -> Sample:
    """Run `argv` once with a fresh phases file; its phases relative to its start."""
    phases_file = cwd.parent / f"{cwd.name}.phases"
    phases_file.unlink(missing_ok=True)
    env = {**os.environ, PHASES_VARIABLE: str(phases_file), "PYTHONPATH": str(cwd)}
    started = time.time()
    completed = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, check=False)
    seconds = time.time() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {completed.returncode}:\n"
                           f"{completed.stdout[-3000:]}{completed.stderr[-3000:]}")
    return Sample(seconds, read_phases(phases_file, started))


def read_phases(path: Path, started: float) -> dict[str, list[float]]:
    phases: dict[str, list[float]] = {}
    if not path.exists():
        return phases
    for line in path.read_text(encoding="utf-8").splitlines():
        stamp, _pid, phase = line.split(" ", 2)
        phases.setdefault(phase, []).append(float(stamp) - started)
    return phases


def run_argv(shardrun: Sequence[str], suite: Suite, marks: Path, workers: int) -> list[str]:
    return [*shardrun, "run", suite.path, "-w", str(workers), "--", *suite.runner_args(marks)]


@dataclass(frozen=True)
class Cell:
    suite: str
    workers: int
    bare: list[Sample]
    runs: list[Sample]
    baseline: list[Sample]  # empty without --baseline


@dataclass(frozen=True)
class Helps:
    now: list[float]
    baseline: list[float]


def measure(suites: Sequence[Suite], counts: Sequence[int], rounds: int, scratch: Path,
            baseline: Sequence[str] | None) -> tuple[list[Cell], Helps]:
    """Every suite and N, `rounds` times interleaved; and `shardrun --help` each round."""
    versions = {"now": shardrun_executable(), **({"baseline": baseline} if baseline else {})}
    prepared = {suite.name: prepare(suite, scratch) for suite in suites}
    for suite in suites:  # one untimed run: the timed ones plan from a history
        root, marks = prepared[suite.name]
        timed(run_argv(versions["now"], suite, marks, TARGET_WORKERS), root)
    samples: dict[tuple[str, str, int], list[Sample]] = {}
    helps: dict[str, list[float]] = {"now": [], "baseline": []}
    for _ in range(rounds):
        for version, shardrun in versions.items():
            helps[version].extend(timed([*shardrun, "--help"], scratch).seconds
                                  for _ in range(HELP_RUNS))
        for suite in suites:
            root, marks = prepared[suite.name]
            samples.setdefault(("bare", suite.name, 0), []).append(
                timed(suite.bare_argv(marks), root))
            for workers in counts:
                for version, shardrun in versions.items():
                    samples.setdefault((version, suite.name, workers), []).append(
                        timed(run_argv(shardrun, suite, marks, workers), root))
    cells = [Cell(suite.name, workers, samples[("bare", suite.name, 0)],
                  samples[("now", suite.name, workers)],
                  samples.get(("baseline", suite.name, workers), []))
             for suite in suites for workers in counts]
    return cells, Helps(helps["now"], helps["baseline"])


def median(values: Iterable[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def wall(samples: Sequence[Sample]) -> float:
    return median(sample.seconds for sample in samples) or 0.0


def summary_table(cells: Sequence[Cell]) -> list[str]:
    """One row per suite and N; with a baseline, "now (baseline)" in shardrun's columns."""
    lines = [
        "| suite | N | bare s | shardrun s | over bare s | ratio | to first test s "
        "| after last test s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in cells:
        now = columns(cell.runs, cell.bare)
        before = columns(cell.baseline, cell.bare) if cell.baseline else None
        shown = [value + (f" ({before[i]})" if before else "") for i, value in enumerate(now)]
        bare_first = seconds(median(sample.to_first_test for sample in cell.bare))
        bare_after = seconds(median(sample.after_last_test for sample in cell.bare))
        lines.append(
            f"| {cell.suite} | {cell.workers} | {wall(cell.bare):.2f} | {' | '.join(shown[:3])} "
            f"| {shown[3]} [bare {bare_first}] | {shown[4]} [bare {bare_after}] |"
        )
    return lines


def columns(runs: Sequence[Sample], bare: Sequence[Sample]) -> list[str]:
    """shardrun s, over bare s, ratio, to first test s, after last test s."""
    seconds_run, seconds_bare = wall(runs), wall(bare)
    return [f"{seconds_run:.2f}", f"{seconds_run - seconds_bare:+.2f}",
            f"{seconds_run / seconds_bare:.2f}",
            seconds(median(sample.to_first_test for sample in runs)),
            seconds(median(sample.after_last_test for sample in runs))]


def milestone_table(cells: Sequence[Cell], suite: str) -> list[str]:
    """Median ms from the command's start to each milestone, one column per N."""
    mine = [cell for cell in cells if cell.suite == suite]
    header = "| milestone (ms from start) | " + " | ".join(f"N={c.workers}" for c in mine) + " |"
    lines = [header, "|---|" + "---:|" * len(mine)]
    for phase, which in (*START_MILESTONES, *FINISH_MILESTONES):
        shown = [milestone(cell, partial(Sample.at, phase=phase, which=which))
                 for cell in mine]
        if any(text.strip("-() ") for text in shown):
            lines.append(f"| {which} {phase} | {' | '.join(shown)} |")
    ends = [milestone(cell, lambda sample: sample.seconds) for cell in mine]
    lines.append(f"| process end | {' | '.join(ends)} |")
    return lines


def milestone(cell: Cell, at: Callable[[Sample], float | None]) -> str:
    """Median ms to a milestone: "now (baseline)" with a baseline, "-" where not reached."""
    shown = []
    for samples in (cell.runs, *([cell.baseline] if cell.baseline else [])):
        value = median(at(sample) for sample in samples)
        shown.append("-" if value is None else f"{value * MS:.0f}")
    return shown[0] + (f" ({shown[1]})" if len(shown) > 1 else "")


def misses(cells: Sequence[Cell], helps: Helps) -> list[str]:
    found = []
    for cell in cells:
        if cell.workers != TARGET_WORKERS or "one test" not in cell.suite:
            continue
        over = wall(cell.runs) - wall(cell.bare)
        if over > TARGET_OVER_SECONDS:
            found.append(f"{cell.suite}, -w {cell.workers}: {over:.2f} s over bare")
    help_median = statistics.median(helps.now)
    if help_median > TARGET_HELP_SECONDS:
        found.append(f"`shardrun --help`: {help_median:.2f} s")
    return found


def section(cells: Sequence[Cell], helps: Helps, rounds: int,
            argv: Sequence[str] | None, load: float) -> str:
    missed = misses(cells, helps)
    verdict = "met." if not missed else "missed by " + "; ".join(missed) + "."
    body = [
        provenance(__file__, argv),
        "",
        f"`shardrun run PATH -w N` against the bare framework (`python -m pytest`, `rspec`)"
        f" in the same rounds, median of {rounds} rounds; one untimed run first, so every",
        "timed run plans from a history. *to first test*: from the command's start to the",
        "first test's start; *after last test*: from the last test's end to the command's",
        "exit (the tests' own hooks say when). Phases come from `SHARDRUN_PHASES`",
        "(shardrun/phases.py).",
        "",
        *summary_table(cells),
        "",
        f"`shardrun --help`: median {statistics.median(helps.now):.2f} s"
        + (f" ({statistics.median(helps.baseline):.2f} s)" if helps.baseline else "")
        + f" over {len(helps.now)} runs.",
    ]
    for suite in dict.fromkeys(cell.suite for cell in cells):
        body += ["", f"Milestones, {suite} (first/last over the run's processes):", "",
                 *milestone_table(cells, suite)]
    body += [
        "",
        f"Load average while measuring (1 min, other work on the machine included): "
        f"{load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end.",
    ]
    if any("one test" in cell.suite for cell in cells):  # the targets are about those
        body += [
            "",
            f"Targets: one-test suites at -w {TARGET_WORKERS} at most "
            f"{TARGET_OVER_SECONDS:.1f} s over the bare framework, `shardrun --help` at most "
            f"{TARGET_HELP_SECONDS:.1f} s: {verdict}",
        ]
    return "\n".join(body)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--suites", choices=("all", "one-test", "examples", "many-tests"),
                        default="all")
    parser.add_argument("--workers", type=int, nargs="+", default=list(WORKER_COUNTS))
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--baseline", type=Path, metavar="SHARDRUN",
                        help="Also measure this `shardrun` executable (another install).")
    parser.add_argument("--write", type=Path, metavar="MARKDOWN",
                        help=f"Rewrite the {HEADING!r} section of this file.")
    parser.add_argument("--heading", default=HEADING, help="The section --write rewrites.")
    args = parser.parse_args(argv)
    groups = ALL_GROUPS if args.suites == "all" else (args.suites,)
    suites = [suite for suite in SUITES if suite.group in groups]
    if shutil.which("rspec") is None:
        suites = [suite for suite in suites if suite.framework != "rspec"]
        print("rspec not found: measuring the pytest suites only")
    byte_compile_shardrun()
    if args.baseline:
        byte_compile_shardrun(str(args.baseline.absolute().with_name("python")))
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="shardrun-startup-") as scratch:
        baseline = [str(args.baseline.absolute())] if args.baseline else None
        cells, helps = measure(suites, args.workers, args.rounds, Path(scratch), baseline)
    text = section(cells, helps, args.rounds, argv, load)
    print(text)
    if args.write:
        write_section(args.write, args.heading, text)
    return 1 if misses(cells, helps) else 0


if __name__ == "__main__":
    sys.exit(main())
