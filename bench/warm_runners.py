"""Runners over many batches: does a long-lived rspec or pytest process grow?

knapsack_pro's Queue Mode runs every batch of a CI node in one RSpec process, and its
users found it leaking memory batch after batch (knapsack_pro-ruby #200). shardrun's
`--runners reuse` does the same, one process per worker, so this runs the same batch (the
two fast files of each bundled example suite) BATCHES times in one runner, batch after
batch in the process itself, and reads the runner's RSS as it goes; plus what a batch
costs beside its tests there, in a fork of the booted runner (`--runners fork`, the
default, whose runner does not grow: every batch runs in a child), and in a fresh
process per batch (`--runners fresh`).

    python bench/warm_runners.py [--batches 300] [--write docs/benchmarks.md]

Exits 1 when the runner's RSS after the last batch is more than MAX_GROWTH x its RSS
after the tenth (the first batches load code that stays loaded, which is the point), or
when it holds more open files than after the tenth.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
from _datasets import provenance, publish

from shardrun.runners import Runner, get_runner, worker_env
from shardrun.work.warm import BatchRun, RunnerProcess

HEADING = "## Warm runners over many batches"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SUITES = {
    "rspec": ("spec/lib/calculator_spec.rb", "spec/lib/string_utils_spec.rb"),
    "pytest": ("tests/lib/test_calculator.py", "tests/lib/test_string_utils.py"),
}
BATCHES = 300
COLD_BATCHES = 20  # fresh processes to compare with: enough for a median
MARKS = (1, 10, 100, 300, 1000)
MAX_GROWTH = 1.5


@dataclass(frozen=True)
class Measured:
    framework: str
    rss_mb: dict[int, float]  # after batch n
    open_files: dict[int, int]  # the runner's open file descriptors after batch n
    warm_batch: float  # median wall time of a batch in the reused runner, seconds
    fork_batch: float  # ... in a fork of the booted runner
    cold_batch: float  # ... in a fresh process
    # ... in a fork that starts a session of its own (pytest before collect-once; for
    # rspec, whose runner has no booted session, the same as fork_batch)
    fork_session_batch: float

    @property
    def growth(self) -> float:
        last = max(self.rss_mb)
        return self.rss_mb[last] / self.rss_mb[10]

    @property
    def files_kept(self) -> int:
        """Descriptors opened after the 10th batch and still open after the last."""
        return self.open_files[max(self.open_files)] - self.open_files[10]


def measure(framework: str, batches: int, scratch: Path) -> Measured:
    root = EXAMPLES / framework
    runner = get_runner(framework, root)
    env = worker_env({**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}, 1, scratch)
    server = runner.server_argv()
    assert server is not None
    warm = RunnerProcess(framework, server, root, env, scratch / "boot.log")
    rss: dict[int, float] = {}
    files: dict[int, int] = {}
    walls: list[float] = []
    forks: list[float] = []
    try:
        warm.prewarm((), scratch / "boot.log")
        for number in range(1, batches + 1):
            walls.append(_batch(runner, scratch, lambda args, units, log: warm.run(
                args, log, fork=False, timeout_seconds=120, units=units)))
            if number in MARKS or number == batches:
                process = psutil.Process(warm.pid)
                rss[number] = process.memory_info().rss / 2**20
                files[number] = process.num_fds()
        forks = [_batch(runner, scratch, lambda args, units, log: warm.run(
            args, log, fork=True, timeout_seconds=120, units=units))
            for _ in range(COLD_BATCHES)]
        # Without its units a batch cannot run from the booted session's collection: it
        # starts a session of its own in the fork, as every batch did before collect-once.
        sessions = [_batch(runner, scratch, lambda args, units, log: warm.run(
            args, log, fork=True, timeout_seconds=120)) for _ in range(COLD_BATCHES)]
    finally:
        warm.stop()
    cold = [_batch(runner, scratch,
                   lambda args, units, log: _fresh(server, root, env, args, log))
            for _ in range(COLD_BATCHES)]
    return Measured(framework, rss, files, statistics.median(walls), statistics.median(forks),
                    statistics.median(cold), statistics.median(sessions))


def _fresh(server: Sequence[str], root: Path, env: dict[str, str], args: Sequence[str],
           log: Path) -> BatchRun:
    process = RunnerProcess("fresh", server, root, env, log)
    try:
        return process.run(args, log, fork=False, timeout_seconds=120)
    finally:
        process.stop()


def _batch(
    runner: Runner, scratch: Path,
    run: Callable[[Sequence[str], Sequence[str], Path], BatchRun],
) -> float:
    """Wall seconds of one batch of the suite's fast files, run by `run`."""
    out = Path(tempfile.mkdtemp(dir=scratch))
    started = time.monotonic()
    units = SUITES[runner.name]
    batch = run(runner.batch_arguments(units), units, out / "batch.log")
    wall = time.monotonic() - started
    if batch.outcome.exit_code != 0:
        sys.exit(f"{runner.name} batch failed: {batch.outcome.output_tail}")
    shutil.rmtree(out)
    return wall


def table(rows: Sequence[Measured]) -> list[str]:
    marks = sorted({mark for row in rows for mark in row.rss_mb})
    lines = [
        "| runner | " + " | ".join(f"RSS after {mark} MB" for mark in marks)
        + " | last / 10th | files kept open | batch in the reused runner s "
        "| in a fork of it s | in a fork, a session of its own s | in a fresh process s |",
        "|:---|" + "---:|" * (len(marks) + 6),
    ]
    for row in rows:
        cells = " | ".join(f"{row.rss_mb.get(mark, float('nan')):.1f}" for mark in marks)
        lines.append(f"| {row.framework} | {cells} | {row.growth:.2f} | {row.files_kept} "
                     f"| {row.warm_batch:.3f} | {row.fork_batch:.3f} "
                     f"| {row.fork_session_batch:.3f} | {row.cold_batch:.3f} |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--batches", type=int, default=BATCHES)
    parser.add_argument("--frameworks", nargs="+", default=[
        name for name in SUITES if name != "rspec" or shutil.which("rspec")])
    parser.add_argument("--write", type=Path, metavar="MARKDOWN")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="shardrun-warm-bench-"))
    try:
        rows = [measure(framework, args.batches, scratch) for framework in args.frameworks]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    met = all(row.growth <= MAX_GROWTH and row.files_kept <= 0 for row in rows)
    body = "\n".join([
        provenance(__file__, argv),
        "",
        "The two fast files of each bundled example suite (7 examples, about 5 ms of test",
        f"work), run {args.batches} times in one warm runner, as a worker runs its batches;",
        "RSS is the runner process's after batch n. Then the same batch in a fresh process",
        f"({COLD_BATCHES} times, median), which is what every batch cost before warm runners",
        "and still costs with `--process-per-batch`; and in a fork of the booted runner, from",
        "its collection (pytest: the booted session collected the files once) and starting a",
        "session of its own (what every pytest batch did before).",
        f"Target: RSS after the last batch <= {MAX_GROWTH} x after the 10th, and no file",
        "descriptor opened after the 10th batch still open after the last (files kept open).",
        "",
        *table(rows),
        "",
        f"Target {'met' if met else 'missed'}.",
    ])
    publish(body, HEADING, args.write)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
