"""What a worker's supervision of a running batch costs in CPU.

While a batch runs, its worker samples the batch's process tree ten times a second (peak
RSS, CPU time, processes to kill at the end) and renews its lease. That CPU is spent on
the same cores as the tests, N times over with N workers on one machine, so it should be
small against a core. This measures the worker's own CPU time per second of a batch
that only sleeps, with a fresh process per batch (`run_process`) and in a warm pytest
runner (`RunnerProcess`), once with each way of finding the tree's processes:
/proc/PID/task/TID/children along the tree, which shardrun uses on Linux, and psutil's
`children(recursive=True)`, which reads every process on the machine and is the fallback.

    python bench/supervision.py [--seconds 5] [--write docs/benchmarks.md]

Exits 1 when the default way costs more than TARGET_MS per second of batch.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
from _datasets import provenance, publish

from shardrun.runners import get_runner, worker_env
from shardrun.work import tree
from shardrun.work.process import run_process
from shardrun.work.tree import descendants
from shardrun.work.warm import RunnerProcess

HEADING = "## Supervising a running batch"
SECONDS = 5.0
TARGET_MS = 10.0  # 1% of a core per worker
DESCENDANTS_CALLS = 500


@dataclass(frozen=True)
class Cost:
    walk: str  # how the tree's processes were found
    descendants_ms: float  # one call on a tree of three processes
    cold_ms_per_s: float  # the worker's CPU ms per second of a fresh-process batch
    warm_ms_per_s: float  # the same in a warm pytest runner


@contextmanager
def walking(walk: str) -> Iterator[None]:
    """Make shardrun.work.tree find descendants by `walk` ("proc" or "psutil")."""
    original = tree._proc_children_readable
    if walk == "psutil":
        tree._proc_children_readable = lambda: False  # type: ignore[assignment]
    try:
        yield
    finally:
        tree._proc_children_readable = original  # type: ignore[assignment]


def cpu_ms_per_second(seconds: float, batch: Callable[[], object]) -> float:
    started = time.process_time()
    batch()
    return (time.process_time() - started) * 1000 / seconds


def descendants_ms() -> float:
    """One call's CPU on a shell with two sleeping children."""
    with psutil.Popen(["sh", "-c", "sleep 60 & sleep 60 & wait"]) as shell:
        deadline = time.monotonic() + 10
        while len(shell.children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.process_time()
        for _ in range(DESCENDANTS_CALLS):
            descendants(shell)
        spent = time.process_time() - started
        for child in shell.children():
            child.kill()
        shell.kill()
    return spent * 1000 / DESCENDANTS_CALLS


def measure(walk: str, seconds: float, scratch: Path) -> Cost:
    env = worker_env({**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}, 1, scratch)
    suite = scratch / "suite"
    (suite / "tests").mkdir(parents=True, exist_ok=True)
    (suite / "tests" / "test_sleep.py").write_text(
        f"import time\n\n\ndef test_sleeps():\n    time.sleep({seconds})\n")
    runner = get_runner("pytest", suite)
    server = runner.server_argv()
    assert server is not None
    with walking(walk):
        cold = cpu_ms_per_second(seconds, lambda: run_process(
            ["sleep", str(seconds)], cwd=scratch, env=env, log_path=scratch / "cold.log",
            timeout_seconds=seconds + 60))
        warm = RunnerProcess("pytest", server, suite, env, scratch / "boot.log")
        try:
            out = Path(tempfile.mkdtemp(dir=scratch))
            args = runner.batch_arguments(["tests/test_sleep.py"])
            # the first batch boots the runner: measure the second
            warm.run(args, out / "boot-batch.log", fork=True, timeout_seconds=seconds + 60)
            warm_ms = cpu_ms_per_second(seconds, lambda: warm.run(
                args, out / "batch.log", fork=True, timeout_seconds=seconds + 60))
        finally:
            warm.stop()
        return Cost(walk, statistics.median(descendants_ms() for _ in range(3)), cold, warm_ms)


def table(costs: Sequence[Cost]) -> list[str]:
    lines = [
        "| finding the tree's processes | one call ms | fresh process: worker CPU ms per s "
        "| warm runner: worker CPU ms per s |",
        "|:---|---:|---:|---:|",
    ]
    names = {"proc": "/proc/PID/task/TID/children (default on Linux)",
             "psutil": "psutil `children(recursive=True)` (fallback)"}
    lines += [f"| {names[cost.walk]} | {cost.descendants_ms:.2f} | {cost.cold_ms_per_s:.1f} "
              f"| {cost.warm_ms_per_s:.1f} |" for cost in costs]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--write", type=Path, metavar="MARKDOWN")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="shardrun-supervision-bench-"))
    try:
        costs = [measure(walk, args.seconds, scratch) for walk in ("proc", "psutil")]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    default = costs[0]
    met = max(default.cold_ms_per_s, default.warm_ms_per_s) <= TARGET_MS
    body = "\n".join([
        provenance(__file__, argv),
        "",
        f"One batch that sleeps {args.seconds:g} s, supervised as a worker does (the tree",
        "sampled every 0.1 s); the worker's own CPU time over the batch, per second.",
        f"{len(psutil.pids())} processes ran on the machine. *one call*: CPU of one",
        "search for a tree's processes (a shell and its two children). The psutil row",
        "is what every batch cost before shardrun read /proc along the tree.",
        "",
        *table(costs),
        "",
        f"Target: under {TARGET_MS:g} ms per second of batch (1% of a core per worker) "
        f"the default way: {'met' if met else 'missed'}.",
    ])
    publish(body, HEADING, args.write)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
