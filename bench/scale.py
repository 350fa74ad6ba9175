"""200 workers x 20,000 units on one Redis: dispatch throughput, coordinator CPU and memory.

What is real and what is simulated:

- **Redis**: a private `redis-server` this script starts on a free TCP port of 127.0.0.1,
  persistence off (`--save "" --appendonly no`), one per measurement.
- **Coordinator**: a process of its own (so its CPU time and peak RSS are its own) running
  shardrun's code path of `shardrun run --command 'true {files} {junit}'`, minus starting
  local worker processes: `gather.prepare` (discovery of the 20,000 files, estimates
  from the timing history, the static plan), `options.dispatch_plan` (queue mode:
  factoring batches) or one unit per job, `options.batch_jobs`, `Ledger`,
  `RunQueue.publish_meta` + `RunQueue.enqueue`, `watch.Watcher.run` (results, leases,
  requeues, progress) and `session.finish` (merge 20,000 units into one JUnit XML,
  learn the timings, write the history).
- **Workers**: 200 RQ worker loops, `WORKER_PROCESSES` processes x 50 threads (200
  processes would not fit 2 CPUs). Each thread runs shardrun's own `ShardrunWorker` (RQ's
  SimpleWorker loop: dequeue, job registries, heartbeats, success handling, the refusal
  check, `expire_rq_keys`) with shardrun's job function `worker.run_shard` (stop check,
  lease held while running, result pushed, lease released). Three things differ from a
  `shardrun worker` process: signal handlers and RQ's SIGALRM job timeout are not
  installed (both need the main thread); and the test process is not started:
  `worker.execute` is replaced by a function that checks the units exist (the real
  `validate_units`) and returns at once with a passing JUnit testcase per unit, as
  `true {files} {junit}` would if it wrote JUnit. Spawning 20,000 processes (about 9 ms
  of CPU each here, "Run overhead") would measure fork/exec, not dispatch.

Dispatch throughput is units / (start of enqueue -> last result accepted by the Watcher).
CPU times of the coordinator (getrusage), redis-server and the worker processes (psutil)
are read at both ends of that window, to show which of them the 2 CPUs were spent on.

    python bench/scale.py                                      # print the table
    flock /tmp/shardrun-bench.lock python bench/scale.py --write docs/benchmarks.md

Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import pstats
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO

import psutil
from _datasets import provenance, write_section
from rq.serializers import JSONSerializer
from rq.timeouts import BaseDeathPenalty

from shardrun.models import (
    Batch,
    BatchResult,
    Mode,
    Plan,
    ProcessOutcome,
    RunSpec,
    Shard,
    TestResult,
)
from shardrun.plan.gather import PlannedSuite, PlanRequest, prepare
from shardrun.plan.history import History
from shardrun.plan.timings import Durations
from shardrun.queue import RunQueue, connect, queue_name
from shardrun.run.options import RunOptions, batch_jobs, dispatch_plan, new_ledger, run_spec
from shardrun.run.session import LocalBooks, Session, finish, publish, run_meta
from shardrun.run.watch import Watcher
from shardrun.work import worker as shardrun_worker
from shardrun.work.context import WorkerContext
from shardrun.work.rq_worker import ShardrunWorker
from shardrun.work.tree import kill_tree

HEADING = "## Scale: 200 workers x 20,000 units"
WORKERS = 200
UNITS = 20_000
# 200 worker loops as threads of a few processes: one process per RQ loop would need
# 200 interpreters (about 40 MB each) on a 2-CPU machine.
WORKER_PROCESSES = 4
# Test files per directory: 20,000 files in 100 directories, as a big suite spreads them.
FILES_PER_DIRECTORY = 200
NOOP_TEMPLATE = "true {files} {junit}"
# Unit durations in the timing history: lognormal, median 1 s, sigma 1.5 (as
# bench/plan_scale.py), seeded. They only shape the batches; nothing sleeps.
SEED = 20240611
LOG_SIGMA = 1.5
DISPATCHES = ("batches", "per-unit")
TARGET_UNITS_PER_SECOND = 2000.0
TARGET_PEAK_MB = 300.0
HISTORY = Path(".shardrun/timings.json")
READY_TIMEOUT_SECONDS = 180.0
REDIS_START_SECONDS = 10.0
COORDINATOR_TIMEOUT_SECONDS = 900.0
BACKLOG_SAMPLE_SECONDS = 0.25
# Where the coordinator's time goes (--profile): (file, function, what it does).
PROFILED_FUNCTIONS = (
    ("shardrun/queue.py", "enqueue", "`RunQueue.enqueue`: every job, one pipeline"),
    ("shardrun/run/watch.py", "run", "`Watcher.run`: the whole watch, of which"),
    ("shardrun/run/ledger.py", "complete", "- `Ledger.complete`: the loop's condition"),
    ("shardrun/queue.py", "wait_results",
     "- `RunQueue.wait_results`: BLPOP, then up to 255 waiting results in one read"),
    ("shardrun/run/watch.py", "_accept", "- `Watcher._accept`: failed units, ledger, progress"),
    ("shardrun/run/watch.py", "_check", "- `Watcher._check`, once a second, of which"),
    ("shardrun/run/watch.py", "_off_queue",
     "-- `Watcher._off_queue`: LRANGE of the queue against the ledger's queued batches"),
    ("shardrun/queue.py", "started_batches",
     "-- `RunQueue.started_batches`: HMGET of the batches that left the queue"),
    ("shardrun/run/watch.py", "_reclaim_lost_leases",
     "-- `Watcher._reclaim_lost_leases`: an EXISTS per running batch, when no result waits"),
    ("shardrun/run/watch.py", "_reclaim_vanished",
     "-- `Watcher._reclaim_vanished`: batches off the queue that never started"),
    ("shardrun/run/session.py", "finish", "`finish`: merge, JUnit, history"),
)
MB = 1024.0 * 1024.0


# --- the simulated workers (the `workers` role) ------------------------------------------


class NoDeathPenalty(BaseDeathPenalty):
    """RQ's job timeout uses SIGALRM, which only the main thread can set; a no-op job
    needs none."""

    def setup_death_penalty(self) -> None:
        return None

    def cancel_death_penalty(self) -> None:
        return None


class ThreadedShardrunWorker(ShardrunWorker):
    """shardrun's RQ worker, runnable in a thread."""

    death_penalty_class = NoDeathPenalty

    def _install_signal_handlers(self) -> None:
        """Signals reach the main thread only; the bench ends worker processes by pid."""


def passing_tests(units: Sequence[str]) -> tuple[TestResult, ...]:
    """What a worker reports when each unit ran one passing test."""
    return tuple(TestResult(f"{unit}::test_noop", unit, unit, "passed", 0.001, name="test_noop")
                 for unit in units)


def noop_execute(
    job: Batch, worker: shardrun_worker.Worker, spec: RunSpec | str,
    on_poll: Callable[[], None] | None = None,
) -> BatchResult:
    """Stands in for `worker.execute`: the units are checked, no test process runs."""
    started = time.time()
    context = worker.context
    shardrun_worker.validate_units(job.units, context.root)
    if on_poll is not None:
        on_poll()
    return BatchResult(
        run_id=job.run_id, batch_id=job.batch_id, attempt=job.attempt,
        worker=f"{context.name}/{threading.current_thread().name}",
        worker_index=context.worker_index, units=job.units,
        outcome=ProcessOutcome(0, None, False, 0.0, 0.0, 0), started_at=started,
        finished_at=time.time(), predicted_seconds=job.predicted_seconds,
        tests=passing_tests(job.units),
    )


def worker_loop(url: str, run_id: str, name: str, context: WorkerContext) -> None:
    shardrun_worker.configure(context)  # per thread: the job function finds it there
    worker = ThreadedShardrunWorker(
        [queue_name(run_id)], connection=connect(url), serializer=JSONSerializer, name=name
    )
    worker.work(burst=False, logging_level="WARNING")


def serve_workers(url: str, run_id: str, root: Path, threads: int, index: int) -> None:
    """One worker process: `threads` RQ worker loops until the bench kills the process."""
    scratch = Path(tempfile.mkdtemp(prefix=f"shardrun-scale-w{index}-"))
    context = WorkerContext(root, index, root / ".shardrun" / "logs", scratch,
                            spec=RunSpec("command", NOOP_TEMPLATE))
    shardrun_worker.execute = noop_execute
    loops = [
        threading.Thread(target=worker_loop, name=f"t{number}", daemon=True,
                         args=(url, run_id, f"scale-{os.getpid()}-{number}", context))
        for number in range(threads)
    ]
    for loop in loops:
        loop.start()
    for loop in loops:
        loop.join()


# --- the coordinator (the `coordinator` role) ----------------------------------------------


@dataclass(frozen=True)
class CoordinatorReport:
    """What the coordinator process measured; printed as one JSON line."""

    jobs: int
    units: int
    exit_code: int
    rss_after_imports_mb: float
    peak_rss_mb: float
    plan_seconds: float
    enqueue_seconds: float
    watch_seconds: float
    finish_seconds: float
    enqueue_started: float  # time.monotonic() (system-wide on Linux) when enqueue began
    cpu_plan: float
    cpu_dispatch: float  # enqueue + watch
    cpu_finish: float
    observed_cpu: dict[str, float]  # pid group -> CPU seconds during enqueue + watch


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB  # KiB on Linux


def process_cpu(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def one_unit_per_job(planned: PlannedSuite) -> Plan:
    """Every unit a job of its own, longest first: the most jobs 20,000 units can make."""
    ordered = sorted(planned.estimates.items(), key=lambda item: (-item[1], item[0]))
    shards = tuple(Shard(index, (unit,), seconds) for index, (unit, seconds) in enumerate(ordered))
    return replace(planned.plan, shards=shards)


def coordinate(
    url: str, run_id: str, root: Path, dispatch: str, observed: dict[str, list[int]]
) -> CoordinatorReport:
    """shardrun's coordinator path for one run on workers that are already listening."""
    rss_after_imports = peak_rss_mb()
    request = PlanRequest(root, ("tests",), "pytest", WORKERS, root / HISTORY)
    options = RunOptions(request, redis_url=url, command_template=NOOP_TEMPLATE, mode=Mode.QUEUE)
    started_at, clock, cpu = time.time(), [time.monotonic()], [cpu_seconds()]

    def mark() -> None:
        clock.append(time.monotonic())
        cpu.append(cpu_seconds())

    planned = prepare(request)
    dispatched = dispatch_plan(planned, options) if dispatch == "batches" else (
        one_unit_per_job(planned))
    ledger = new_ledger(options, run_spec(planned, options))
    jobs = ledger.add(batch_jobs(run_id, dispatched, options))
    run_queue = RunQueue(connect(url), run_id)
    session = Session(run_queue, planned, options, LocalBooks(), None, started_at)
    mark()
    before = {name: process_cpu(pids) for name, pids in observed.items()}
    publish(run_queue, run_meta(session, dispatched))
    run_queue.enqueue(jobs)
    mark()
    watched = Watcher(run_queue, ledger, LocalBooks()).run()
    mark()
    after = {name: process_cpu(pids) for name, pids in observed.items()}
    outcome = finish(session, dispatched, ledger, watched, started_at)
    mark()
    return CoordinatorReport(
        jobs=len(jobs), units=sum(len(job.units) for job in jobs), exit_code=outcome.exit_code,
        rss_after_imports_mb=rss_after_imports, peak_rss_mb=peak_rss_mb(),
        plan_seconds=clock[1] - clock[0], enqueue_seconds=clock[2] - clock[1],
        watch_seconds=clock[3] - clock[2], finish_seconds=clock[4] - clock[3],
        enqueue_started=clock[1], cpu_plan=cpu[1] - cpu[0], cpu_dispatch=cpu[3] - cpu[1],
        cpu_finish=cpu[4] - cpu[3],
        observed_cpu={name: after[name] - before[name] for name in observed},
    )


# --- the bench (default role) --------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    dispatch: str
    report: CoordinatorReport
    worker_processes: int
    backlog: Backlog

    @property
    def drained_seconds(self) -> float:
        """Enqueue start -> the workers had taken every job."""
        return self.backlog.drained_after(self.report.enqueue_started)

    @property
    def dispatch_seconds(self) -> float:
        return self.report.enqueue_seconds + self.report.watch_seconds

    @property
    def units_per_second(self) -> float:
        return self.report.units / self.dispatch_seconds

    @property
    def jobs_per_second(self) -> float:
        return self.report.jobs / self.dispatch_seconds

    @property
    def coordinator_ceiling(self) -> float:
        """Units/s if the coordinator had one CPU to itself and never waited."""
        return self.report.units / self.report.cpu_dispatch

    def cpu_share(self, seconds: float) -> float:
        """CPU seconds as a share of the machine's CPU time over the dispatch window."""
        return seconds / (self.dispatch_seconds * machine_cpus())

    @property
    def meets_target(self) -> bool:
        return (self.units_per_second >= TARGET_UNITS_PER_SECOND
                and self.report.peak_rss_mb < TARGET_PEAK_MB and self.report.exit_code == 0)


def machine_cpus() -> int:
    return len(os.sched_getaffinity(0))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateRedis:
    """redis-server on a free port of 127.0.0.1, nothing written to disk."""

    def __init__(self, directory: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = (directory / "redis.log").open("wb")
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(directory), "--maxclients", "10000"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + REDIS_START_SECONDS
        while True:
            try:
                connect(self.url, timeout=1.0).close()
                return
            except Exception:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()
        self.log.close()


def write_suite(root: Path) -> None:
    """20,000 empty test files and a timing history that knows each of them."""
    rng = random.Random(SEED)
    files: dict[str, float] = {}
    for index in range(UNITS):
        path = f"tests/d{index // FILES_PER_DIRECTORY:03d}/test_{index:05d}.py"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("")
        files[path] = round(rng.lognormvariate(0.0, LOG_SIGMA), 4)
    (root / "pytest.ini").write_text("[pytest]\n")
    history = History(root / HISTORY)
    history.record(Durations(files, {}, "bench/scale.py"))
    (root / HISTORY).parent.mkdir(parents=True, exist_ok=True)
    history.save(root)


class WorkerPool:
    """The worker processes, each running its share of the 200 threads."""

    def __init__(self, url: str, run_id: str, root: Path, processes: int, logs: Path):
        self.logs: list[IO[bytes]] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        for index in range(processes):
            threads = WORKERS // processes + (1 if index < WORKERS % processes else 0)
            log = (logs / f"workers-{index}.log").open("wb")
            self.logs.append(log)
            self.processes.append(subprocess.Popen(
                [sys.executable, __file__, "--role", "workers", "--url", url, "--run-id", run_id,
                 "--root", str(root), "--threads", str(threads), "--index", str(index + 1)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            ))

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def wait_ready(self, run_queue: RunQueue) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while run_queue.workers_listening() < WORKERS:
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                raise RuntimeError(f"only {run_queue.workers_listening()} of {WORKERS} worker "
                                   "loops registered: see the workers-*.log files")
            time.sleep(0.2)

    def stop(self) -> None:
        for process in self.processes:
            kill_tree(process.pid)
            process.wait()
        for log in self.logs:
            log.close()


@dataclass(frozen=True)
class Backlog:
    """The run's two Redis lists, sampled: jobs not yet taken by a worker, results not yet
    read by the coordinator."""

    times: tuple[float, ...]  # time.monotonic()
    queued: tuple[int, ...]
    results: tuple[int, ...]

    def drained_after(self, since: float) -> float:
        """Seconds from `since` until the workers had taken every job (NaN if never seen)."""
        seen = False
        for at, queued in zip(self.times, self.queued, strict=True):
            seen = seen or (at >= since and queued > 0)
            if seen and queued == 0:
                return at - since
        return math.nan

    @property
    def max_results(self) -> int:
        return max(self.results, default=0)


class BacklogSampler:
    """Reads the lengths of the run's job queue and result list every BACKLOG_SAMPLE_SECONDS
    from a thread of the bench process (two LLENs: no load to speak of)."""

    def __init__(self, url: str, run_id: str):
        self.run_queue = RunQueue(connect(url), run_id)
        self.samples: list[tuple[float, int, int]] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        connection = self.run_queue.connection
        while not self.done.wait(BACKLOG_SAMPLE_SECONDS):
            queued = connection.llen(self.run_queue.rq_queue.key)
            results = connection.llen(self.run_queue.key("results"))
            self.samples.append((time.monotonic(), int(queued), int(results)))

    def __enter__(self) -> BacklogSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.done.set()
        self.thread.join()
        self.run_queue.connection.close()

    def backlog(self) -> Backlog:
        times, queued, results = zip(*self.samples, strict=True) if self.samples else ((), (), ())
        return Backlog(tuple(times), tuple(queued), tuple(results))


def run_coordinator(
    url: str, run_id: str, root: Path, dispatch: str, observed: dict[str, list[int]],
    profile: Path | None = None,
) -> CoordinatorReport:
    argv = [sys.executable, __file__, "--role", "coordinator", "--url", url, "--run-id", run_id,
            "--root", str(root), "--dispatch", dispatch, "--observe", json.dumps(observed)]
    if profile is not None:
        argv += ["--profile-out", str(profile)]
    completed = subprocess.run(argv, capture_output=True, text=True, check=False,
                               stdin=subprocess.DEVNULL, timeout=COORDINATOR_TIMEOUT_SECONDS)
    if completed.returncode != 0:
        raise RuntimeError(f"the coordinator exited {completed.returncode}:\n{completed.stderr}")
    return CoordinatorReport(**json.loads(completed.stdout.strip().splitlines()[-1]))


def measure(
    root: Path, dispatch: str, processes: int, pristine: str, profile: Path | None = None
) -> Row:
    """One run: a fresh Redis, the workers listening, then the coordinator process
    (under cProfile, its stats written to `profile`, when that is given)."""
    (root / HISTORY).write_text(pristine)
    redis_server = PrivateRedis(root)
    run_id = f"scale-{uuid.uuid4().hex[:8]}"
    pool = WorkerPool(redis_server.url, run_id, root, processes, root)
    try:
        connection = connect(redis_server.url)
        pool.wait_ready(RunQueue(connection, run_id))
        connection.close()
        observed = {"redis-server": [redis_server.process.pid], "workers": pool.pids}
        with BacklogSampler(redis_server.url, run_id) as sampler:
            report = run_coordinator(redis_server.url, run_id, root, dispatch, observed,
                                     profile)
    finally:
        pool.stop()
        redis_server.stop()
    row = Row(dispatch, report, processes, sampler.backlog())
    print(f"{dispatch}: {report.units} units in {report.jobs} jobs, "
          f"{row.units_per_second:.0f} units/s", file=sys.stderr)
    return row


@dataclass(frozen=True)
class ProfileLine:
    label: str
    calls: int
    cumulative: float  # seconds under cProfile, callees included


@dataclass(frozen=True)
class Profile:
    lines: tuple[ProfileLine, ...]
    total: float  # seconds under cProfile, the whole coordinator role


def read_profile(path: Path) -> Profile:
    stats = pstats.Stats(str(path))
    entries = stats.stats  # type: ignore[attr-defined]  # {(file, line, name): (cc, nc, tt, ct, callers)}
    lines = []
    for suffix, function, label in PROFILED_FUNCTIONS:
        found = [values for (filename, _line, name), values in entries.items()
                 if name == function and filename.endswith(suffix)]
        lines.append(ProfileLine(label, sum(values[1] for values in found),
                                 sum(values[3] for values in found)))
    return Profile(tuple(lines), stats.total_tt)  # type: ignore[attr-defined]


def profile_table(profile: Profile) -> list[str]:
    lines = ["| coordinator code (per-unit dispatch) | calls | seconds under cProfile | share |",
             "|:---|---:|---:|---:|"]
    for line in profile.lines:
        lines.append(f"| {line.label} | {line.calls:,} | {line.cumulative:.1f} "
                     f"| {line.cumulative / profile.total:.0%} |")
    return lines


def table(rows: Sequence[Row]) -> list[str]:
    lines = [
        "| dispatch | jobs | units | enqueue s | workers took the last job after s "
        "| results waiting, max | enqueue -> last result s | units/s | jobs/s "
        "| coordinator CPU s (share of 2 CPUs) | redis-server CPU s (share) "
        "| worker processes CPU s (share) | coordinator units per CPU s "
        "| coordinator peak RSS MB | target |",
        "|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|",
    ]
    for row in rows:
        report = row.report
        redis_cpu, workers_cpu = report.observed_cpu["redis-server"], report.observed_cpu["workers"]
        lines.append(
            f"| {row.dispatch} | {report.jobs:,} | {report.units:,} "
            f"| {report.enqueue_seconds:.2f} | {row.drained_seconds:.2f} "
            f"| {row.backlog.max_results:,} | {row.dispatch_seconds:.2f} "
            f"| {row.units_per_second:,.0f} | {row.jobs_per_second:,.0f} "
            f"| {report.cpu_dispatch:.1f} ({row.cpu_share(report.cpu_dispatch):.0%}) "
            f"| {redis_cpu:.1f} ({row.cpu_share(redis_cpu):.0%}) "
            f"| {workers_cpu:.1f} ({row.cpu_share(workers_cpu):.0%}) "
            f"| {row.coordinator_ceiling:,.0f} | {report.peak_rss_mb:.0f} "
            f"| {'met' if row.meets_target else 'missed'} |"
        )
    return lines


def phases_table(rows: Sequence[Row]) -> list[str]:
    lines = [
        "| dispatch | plan s (CPU s) | enqueue + watch s (CPU s) | finish s (CPU s) "
        "| RSS after imports MB | peak RSS MB | exit code |",
        "|:---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        report = row.report
        lines.append(
            f"| {row.dispatch} | {report.plan_seconds:.2f} ({report.cpu_plan:.2f}) "
            f"| {row.dispatch_seconds:.2f} ({report.cpu_dispatch:.2f}) "
            f"| {report.finish_seconds:.2f} ({report.cpu_finish:.2f}) "
            f"| {report.rss_after_imports_mb:.0f} | {report.peak_rss_mb:.0f} "
            f"| {report.exit_code} |"
        )
    return lines


def verdict(rows: Sequence[Row]) -> list[str]:
    parts = []
    for row in rows:
        throughput = "met" if row.units_per_second >= TARGET_UNITS_PER_SECOND else "missed"
        memory = "met" if row.report.peak_rss_mb < TARGET_PEAK_MB else "missed"
        parts.append(f"{row.dispatch}: {row.units_per_second:,.0f} units/s ({throughput}), "
                     f"peak RSS {row.report.peak_rss_mb:.0f} MB ({memory})")
    return [f"Targets: >= {TARGET_UNITS_PER_SECOND:,.0f} units/s and coordinator peak RSS < "
            f"{TARGET_PEAK_MB:.0f} MB. " + "; ".join(parts) + "."]


def section(rows: Sequence[Row], argv: Sequence[str] | None, load: float,
            analysis: Sequence[str]) -> str:
    return "\n".join([
        provenance(__file__, argv),
        "",
        f"{UNITS:,} empty test files (in {UNITS // FILES_PER_DIRECTORY} directories) with a "
        f"timing history (lognormal, median 1 s, sigma {LOG_SIGMA}, seed {SEED}); "
        f"{WORKERS} workers on one private `redis-server` (TCP on 127.0.0.1, persistence",
        "off, a fresh one per row). The **coordinator** is a process of its own running",
        "shardrun's code path of `shardrun run --command 'true {files} {junit}'` without",
        "starting local workers: `prepare` (discovery, estimates, plan), `dispatch_plan`",
        "(*batches*: queue mode's factoring batches, what `run` enqueues) or one job per unit",
        "(*per-unit*: the most jobs these units can make), `batch_jobs`, `Ledger`,",
        "`RunQueue.enqueue`, `Watcher.run` and `finish` (merged JUnit, history).",
        f"The **workers** are {WORKERS} RQ worker loops, threads of {rows[0].worker_processes} "
        "processes: each runs",
        "shardrun's `ShardrunWorker` (RQ's SimpleWorker loop: dequeue, registries, heartbeat,",
        "success handling, refusal check, `expire_rq_keys`) and shardrun's job function",
        "`run_shard` (stop check, lease, result push, lease release). Simulated: no test",
        "process starts (`worker.execute` is replaced by a function that runs the real",
        "`validate_units` and returns a passing JUnit testcase per unit), and RQ's SIGALRM",
        "job timeout and the signal handlers are off (they need the main thread).",
        "",
        "*units/s* = units / (start of enqueue -> last result accepted). *workers took the",
        "last job after*: from the start of the enqueue until the job queue was empty, and",
        "*results waiting*: the longest the result list got (results the coordinator had not",
        f"read yet), both sampled every {BACKLOG_SAMPLE_SECONDS} s from the bench process. "
        "CPU seconds are over the",
        "dispatch window (coordinator: getrusage; others: psutil), with their share of the",
        f"machine's {machine_cpus()} CPUs. *coordinator units per CPU s* is what the "
        "coordinator could sustain",
        "with a CPU to itself (its ceiling, Redis's side aside). Peak RSS is the coordinator",
        "process's getrusage maximum over its whole life (plan, dispatch and `finish`).",
        "",
        *table(rows),
        "",
        "Coordinator phases (wall s, CPU s in parentheses) and memory (getrusage max RSS):",
        "",
        *phases_table(rows),
        "",
        f"Load average (1 min, other work included): {load:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end.",
        "",
        *verdict(rows),
        "",
        *analysis,
    ])


def analyse(rows: Sequence[Row]) -> list[str]:
    """What bounded each row: the workers' pace, or the coordinator falling behind."""
    lines = []
    for row in rows:
        report = row.report
        lag = row.dispatch_seconds - row.drained_seconds
        workers_pace = report.units / row.drained_seconds
        if lag > 0.2 * row.dispatch_seconds:
            verdict = "The coordinator was the bottleneck: results waited for it"
            if workers_pace < TARGET_UNITS_PER_SECOND:
                verdict += ("; the simulated workers alone were below the target too (the "
                            "RQ loop's own bookkeeping per job, 4 processes on 2 CPUs)")
        else:
            verdict = "The workers were the bottleneck: the coordinator kept up"
            if workers_pace < TARGET_UNITS_PER_SECOND:
                verdict += (f" (the simulated workers spent "
                            f"{1000 * report.observed_cpu['workers'] / report.jobs:.1f} ms of "
                            f"CPU per job in the RQ loop's own bookkeeping, on the same 2 "
                            f"CPUs; on their own machines the coordinator's CPU per job is "
                            f"the limit)")
        lines.append(
            f"- *{row.dispatch}*: {report.jobs:,} jobs. The workers took the last one "
            f"{row.drained_seconds:.1f} s after the enqueue began ({workers_pace:,.0f} units/s "
            f"at their pace); the coordinator read the last result {lag:.1f} s after that "
            f"(up to {row.backlog.max_results:,} results waiting). {verdict}. CPU while "
            f"dispatching: coordinator {row.cpu_share(report.cpu_dispatch):.0%}, redis-server "
            f"{row.cpu_share(report.observed_cpu['redis-server']):.0%}, workers "
            f"{row.cpu_share(report.observed_cpu['workers']):.0%} of the machine's; the "
            f"coordinator spent {1000 * report.cpu_dispatch / report.jobs:.2f} ms of CPU per job."
        )
    return lines


def profile_section(profile: Profile) -> list[str]:
    return [
        "",
        "Where the coordinator's time goes: the per-unit run once more, the coordinator "
        f"process under cProfile ({profile.total:.0f} s in all; profiling slows it,",
        "so read the shares):",
        "",
        *profile_table(profile),
        "",
        "The coordinator keeps the sets of queued and running batches as they change,",
        "reads results in bulk once they wait, and once a second asks Redis only about the",
        "batches that left the queue since the last look (HMGET) and about leases only when",
        "no result waits to be read. Before that (commit dd56b77's table) `Ledger.complete`",
        "scanned every batch per result and each check read every batch started so far and",
        "sent an EXISTS per running one: 2.0 ms of coordinator CPU per job, 220 units/s with",
        "up to 19,000 results waiting for it.",
    ]


def bench(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    load = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="shardrun-scale-"))
    try:
        write_suite(root)
        pristine = (root / HISTORY).read_text()
        rows = [measure(root, dispatch, args.processes, pristine) for dispatch in args.dispatch]
        profile = None
        if args.profile:
            measure(root, "per-unit", args.processes, pristine, root / "coordinator.prof")
            profile = read_profile(root / "coordinator.prof")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    analysis = analyse(rows) + (profile_section(profile) if profile else [])
    for line in [*table(rows), "", *phases_table(rows), "", *verdict(rows), "", *analysis]:
        print(line)
    if args.write:
        write_section(args.write, HEADING, section(rows, argv, load, analysis))
    return 0 if all(row.meets_target for row in rows) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dispatch", nargs="+", choices=DISPATCHES, default=list(DISPATCHES))
    parser.add_argument("--processes", type=int, default=WORKER_PROCESSES,
                        help="Worker processes the 200 worker threads are spread over.")
    parser.add_argument("--profile", action="store_true",
                        help="Then run the per-unit dispatch once more with the coordinator "
                             "under cProfile and show where its time goes.")
    parser.add_argument("--write", type=Path, metavar="MARKDOWN",
                        help=f"Rewrite the {HEADING!r} section of this file.")
    # Internal: the script runs itself as the coordinator and as the worker processes.
    parser.add_argument("--role", choices=("bench", "coordinator", "workers"), default="bench",
                        help=argparse.SUPPRESS)
    for name in ("--url", "--run-id", "--root", "--observe", "--profile-out"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "workers":
        serve_workers(args.url, args.run_id, Path(args.root), args.threads, args.index)
        return 0
    if args.role == "coordinator":
        profiler = cProfile.Profile() if args.profile_out else None
        if profiler is not None:
            profiler.enable()
        report = coordinate(args.url, args.run_id, Path(args.root), args.dispatch[0],
                            json.loads(args.observe))
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile_out)
        print(json.dumps(asdict(report)))
        return 0
    return bench(args, argv)


if __name__ == "__main__":
    sys.exit(main())
