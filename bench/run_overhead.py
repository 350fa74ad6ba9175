"""shardrun's own cost per shard: queue dispatch and result collection around a no-op runner.

Real `shardrun worker` processes serve a private redis-server (the one `shardrun run` starts
when no --redis-url is given) and run shards with the `command` framework and a template
that runs `true`, so the test process costs almost nothing and what is left is shardrun:

- enqueue -> start: from `RunQueue.enqueue` in the coordinator to the job function
  starting on a worker (`BatchResult.started_at`). Measured closed-loop: one shard per
  worker in flight, the next enqueued as a result comes back, so no shard waits behind
  another and the number is dispatch latency, not queueing.
- finish -> collected: from the worker's `finished_at` (runner done, JUnit read) to the
  coordinator's `wait_result` returning it.
- gap between shards: with every shard enqueued at once (what `shardrun run` does), the
  time a worker spends between finishing one shard and starting its next one.

Coordinator and workers share one host and clock, so the timestamps compare directly.

    python bench/run_overhead.py                             # print the table
    python bench/run_overhead.py --write docs/benchmarks.md  # and rewrite "## Run overhead"

Exits 1 when a median misses the 10 ms target.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
from _datasets import provenance, write_section

from shardrun.models import Batch, BatchResult
from shardrun.queue import RunQueue, connect
from shardrun.run.embedded import EmbeddedRedis
from shardrun.work.tree import kill_tree

HEADING = "## Run overhead"
SHARDS = 200
WORKER_COUNTS = (1, 4)
TARGET_MEDIAN_MS = 10.0
# A no-op "test command": `true` ignores its arguments, and the runner only needs the
# {files} and {junit} placeholders to be present.
NOOP_TEMPLATE = "true {files} {junit}"
# Shards each worker runs before measuring: worker start-up and first-use costs.
WARMUP_SHARDS_PER_WORKER = 3
# Bound on waiting for one result; a no-op shard takes milliseconds.
RESULT_TIMEOUT_SECONDS = 60.0
MS = 1000.0


@dataclass(frozen=True)
class Sample:
    enqueued_at: float
    collected_at: float
    result: BatchResult

    @property
    def enqueue_to_start_ms(self) -> float:
        return (self.result.started_at - self.enqueued_at) * MS

    @property
    def finish_to_collected_ms(self) -> float:
        return (self.collected_at - self.result.finished_at) * MS


@dataclass(frozen=True)
class Latency:
    """Closed loop: `in_flight` shards queued or running at any time."""

    workers: int
    in_flight: int
    enqueue_to_start: tuple[float, float]
    finish_to_collected: tuple[float, float]


@dataclass(frozen=True)
class Throughput:
    """Every shard enqueued at once, as `shardrun run` does."""

    workers: int
    gap_between_shards: tuple[float, float]
    runner_ms: float
    worker_cpu_ms_per_shard: float
    shards_per_second: float


def median_p95(values: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


class Workers:
    """N long-running `shardrun worker` processes (not --burst: the queue empties often)."""

    def __init__(self, url: str, run_id: str, count: int, root: Path):
        self.logs = [(root / f"worker-{index}.log").open("wb") for index in range(1, count + 1)]
        self.processes = [
            subprocess.Popen(
                [sys.executable, "-m", "shardrun", "worker", "--redis-url", url,
                 "--run-id", run_id, "--worker-index", str(index), "--root", str(root),
                 "--framework", "command", "--command", NOOP_TEMPLATE],
                cwd=root, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
            for index, log in enumerate(self.logs, start=1)
        ]

    def cpu_seconds(self) -> float:
        """CPU the workers used so far, with the test processes they waited for."""
        total = 0.0
        for process in self.processes:
            times = psutil.Process(process.pid).cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        return total

    def stop(self) -> None:
        for process in self.processes:
            kill_tree(process.pid)
            process.wait()
        for log in self.logs:
            log.close()


def make_units(root: Path, count: int) -> list[str]:
    """Real (empty) files: the worker checks that every unit exists in its checkout."""
    units = []
    for index in range(count):
        name = f"test_{index:04d}.py"
        (root / name).write_text("")
        units.append(name)
    return units


def noop_jobs(run_id: str, units: Sequence[str], first_index: int) -> list[Batch]:
    """One shard per unit; indexes (and so RQ job ids) distinct across the phases."""
    return [
        Batch(run_id, first_index + offset, (unit,), 0.0, 60.0)
        for offset, unit in enumerate(units)
    ]


def next_result(run_queue: RunQueue) -> tuple[BatchResult, float]:
    result = run_queue.wait_result(RESULT_TIMEOUT_SECONDS)
    collected_at = time.time()
    if result is None:
        raise RuntimeError("no result within the timeout: see the worker logs")
    if result.error or result.outcome.exit_code != 0:
        raise RuntimeError(f"shard {result.batch_id} failed: {result.error}")
    return result, collected_at


def closed_loop(run_queue: RunQueue, jobs: Sequence[Batch], in_flight: int) -> list[Sample]:
    """Keep `in_flight` shards queued or running; enqueue the next as each result arrives."""
    enqueued_at: dict[int, float] = {}
    samples: list[Sample] = []
    waiting = list(reversed(jobs))

    def enqueue_next() -> None:
        job = waiting.pop()
        enqueued_at[job.batch_id] = time.time()
        run_queue.enqueue([job])

    for _ in range(min(in_flight, len(jobs))):
        enqueue_next()
    while len(samples) < len(jobs):
        result, collected_at = next_result(run_queue)
        samples.append(Sample(enqueued_at[result.batch_id], collected_at, result))
        if waiting:
            enqueue_next()
    return samples


def all_at_once(run_queue: RunQueue, jobs: Sequence[Batch]) -> tuple[list[BatchResult], float]:
    """Enqueue every shard in one pipeline, as `shardrun run` does; results and wall time."""
    started = time.monotonic()
    run_queue.enqueue(jobs)
    results = [next_result(run_queue)[0] for _ in jobs]
    return results, time.monotonic() - started


def gaps_ms(results: Sequence[BatchResult]) -> list[float]:
    """Per worker, from finishing one shard to starting the next."""
    by_worker: dict[str, list[BatchResult]] = {}
    for result in results:
        by_worker.setdefault(result.worker, []).append(result)
    gaps = []
    for worker_results in by_worker.values():
        ordered = sorted(worker_results, key=lambda result: result.started_at)
        gaps.extend((b.started_at - a.finished_at) * MS for a, b in itertools.pairwise(ordered))
    return gaps


def measure(url: str, workers: int, shards: int) -> tuple[list[Latency], Throughput]:
    """Closed loops with 1 and `workers` shards in flight, then all shards at once."""
    with tempfile.TemporaryDirectory(prefix="shardrun-overhead-") as directory:
        root = Path(directory)
        units = make_units(root, shards)
        connection = connect(url)
        run_queue = RunQueue(connection, f"overhead-{uuid.uuid4().hex[:8]}")
        run_id = run_queue.run_id
        pool = Workers(url, run_id, workers, root)
        try:
            warmup = units[: workers * WARMUP_SHARDS_PER_WORKER]
            closed_loop(run_queue, noop_jobs(run_id, warmup, -len(warmup)), workers)
            latencies = []
            for phase, in_flight in enumerate(sorted({1, workers}), start=1):
                jobs = noop_jobs(run_id, units, phase * shards)
                samples = closed_loop(run_queue, jobs, in_flight)
                latencies.append(Latency(
                    workers, in_flight,
                    median_p95([sample.enqueue_to_start_ms for sample in samples]),
                    median_p95([sample.finish_to_collected_ms for sample in samples]),
                ))
            cpu_before = pool.cpu_seconds()
            results, wall = all_at_once(run_queue, noop_jobs(run_id, units, 0))
            worker_cpu = pool.cpu_seconds() - cpu_before
        finally:
            pool.stop()
            run_queue.delete()
            connection.close()
    throughput = Throughput(
        workers,
        gap_between_shards=median_p95(gaps_ms(results)),
        runner_ms=statistics.median(result.outcome.wall_seconds * MS for result in results),
        worker_cpu_ms_per_shard=worker_cpu * MS / len(results),
        shards_per_second=len(results) / wall,
    )
    return latencies, throughput


def pair(values: tuple[float, float]) -> str:
    return f"{values[0]:.1f} / {values[1]:.1f}"


def latency_table(latencies: Sequence[Latency]) -> list[str]:
    return [
        "| workers | shards in flight | enqueue -> start ms (median / p95) "
        "| finish -> collected ms (median / p95) |",
        "|---:|---:|---:|---:|",
        *(
            f"| {row.workers} | {row.in_flight} | {pair(row.enqueue_to_start)} "
            f"| {pair(row.finish_to_collected)} |"
            for row in latencies
        ),
    ]


def throughput_table(throughputs: Sequence[Throughput]) -> list[str]:
    return [
        "| workers | gap between shards ms (median / p95) | `true` itself ms (median) "
        "| worker CPU ms per shard | shards/s |",
        "|---:|---:|---:|---:|---:|",
        *(
            f"| {row.workers} | {pair(row.gap_between_shards)} | {row.runner_ms:.1f} "
            f"| {row.worker_cpu_ms_per_shard:.1f} | {row.shards_per_second:.0f} |"
            for row in throughputs
        ),
    ]


def misses(latencies: Sequence[Latency], throughputs: Sequence[Throughput]) -> list[str]:
    """Every median over the target, named; empty when all meet it."""
    found = []
    for latency in latencies:
        for name, (median, _p95) in (("enqueue -> start", latency.enqueue_to_start),
                                     ("finish -> collected", latency.finish_to_collected)):
            if median >= TARGET_MEDIAN_MS:
                found.append(f"{name} with {latency.workers} worker(s), "
                             f"{latency.in_flight} in flight: {median:.1f} ms")
    for throughput in throughputs:
        median = throughput.gap_between_shards[0]
        if median >= TARGET_MEDIAN_MS:
            found.append(f"gap between shards with {throughput.workers} worker(s): "
                         f"{median:.1f} ms")
    return found


def section(
    latencies: Sequence[Latency], throughputs: Sequence[Throughput], shards: int,
    argv: Sequence[str] | None, load: float,
) -> str:
    missed = misses(latencies, throughputs)
    verdict = "met." if not missed else "missed by " + "; ".join(missed) + "."
    return "\n".join([
        provenance(__file__, argv),
        "",
        f"{shards} one-file shards per measurement, run by real `shardrun worker` processes on",
        "a private redis-server (unix socket, as `shardrun run` starts without `--redis-url`)",
        f"with `--command '{NOOP_TEMPLATE}'` as the runner, so the test process costs almost",
        "nothing and what is measured is shardrun, RQ and Redis.",
        "",
        "*enqueue -> start*: the coordinator's `RunQueue.enqueue` to the job function starting",
        "(`BatchResult.started_at`); closed loop, the next shard enqueued as each result comes",
        "back, so no shard waits behind another. *finish -> collected*: the worker's",
        "`finished_at` to the coordinator's `wait_result` returning the result.",
        "",
        *latency_table(latencies),
        "",
        "All shards enqueued at once (what `shardrun run` does). *gap between shards*: a",
        "worker's time from finishing one shard to starting its next; *worker CPU*: the",
        "workers' CPU time (with the `true` processes) over the phase, per shard.",
        "",
        *throughput_table(throughputs),
        "",
        f"Load average while measuring (1 min, other work on the machine included): "
        f"{load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end.",
        "",
        f"Target: every median < {TARGET_MEDIAN_MS:.0f} ms: {verdict}",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=SHARDS)
    parser.add_argument("--redis-url", default=None,
                        help="Measure on this Redis instead of a private redis-server.")
    parser.add_argument("--write", type=Path, metavar="MARKDOWN",
                        help=f"Rewrite the {HEADING!r} section of this file.")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    load = os.getloadavg()[0]
    if args.redis_url:
        measured = [measure(args.redis_url, workers, args.shards) for workers in WORKER_COUNTS]
    else:
        with EmbeddedRedis() as embedded:
            measured = [measure(embedded.url, workers, args.shards) for workers in WORKER_COUNTS]
    latencies = [latency for rows, _ in measured for latency in rows]
    throughputs = [throughput for _, throughput in measured]
    for line in [*latency_table(latencies), "", *throughput_table(throughputs)]:
        print(line)
    missed = misses(latencies, throughputs)
    for line in missed:
        print(f"over the {TARGET_MEDIAN_MS:.0f} ms target: {line}")
    if args.write:
        write_section(args.write, HEADING, section(latencies, throughputs, args.shards, argv, load))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
