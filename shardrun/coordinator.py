"""One run from start to finish: plan -> enqueue -> watch -> collect -> report -> history.

The coordinator owns the run's plan, so it can account for every unit at the end: a
shard whose worker vanished or whose runner died is reported, never silently dropped.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shardrun import queue
from shardrun.config import WAIT_SLICE_SECONDS
from shardrun.discovery import Suite, discover
from shardrun.embedded import EmbeddedRedis
from shardrun.errors import EXIT_INFRASTRUCTURE, EXIT_OK, EXIT_TESTS_FAILED, InputError
from shardrun.history import History
from shardrun.junit_writer import write_junit
from shardrun.models import Plan, ShardJob, ShardResult
from shardrun.planner import plan_shards
from shardrun.pool import LocalWorkers
from shardrun.process import default_timeout
from shardrun.report import RunReport, merge
from shardrun.runlog import record_run
from shardrun.timings import Durations, load_durations, parse_junit_text


@dataclass(frozen=True)
class PlanRequest:
    """What `plan` and `run` both need to decide the shards."""

    root: Path
    paths: tuple[str, ...]
    framework: str | None
    workers: int
    timings_path: Path
    from_junit: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlannedSuite:
    suite: Suite
    history: History
    estimates: dict[str, float]
    plan: Plan


@dataclass(frozen=True)
class RunOptions:
    request: PlanRequest
    redis_url: str | None = None
    junit_out: Path | None = None
    runner_args: tuple[str, ...] = ()
    command_template: str | None = None
    timeout_seconds: float | None = None


@dataclass
class Progress:
    """What the CLI shows while a run is under way."""

    total_units: int
    done_units: int = 0
    failed_shards: int = 0
    eta_seconds: float | None = None
    results: list[ShardResult] = field(default_factory=list)


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    planned: PlannedSuite
    report: RunReport
    exit_code: int
    junit_path: Path | None


ProgressCallback = Callable[[Progress], None]


def prepare(request: PlanRequest) -> PlannedSuite:
    """Discover the suite, estimate every unit from history (+ --from-junit), plan it."""
    if request.workers < 1:
        raise InputError("--workers must be at least 1")
    suite = discover(request.paths, request.framework, request.root)
    history = History.load(request.timings_path)
    for path in expand_globs(request.from_junit, request.root):
        history.record(load_durations(path))
    estimates = history.estimates(suite.files, request.root)
    return PlannedSuite(suite, history, estimates, plan_shards(estimates, request.workers))


def expand_globs(patterns: Sequence[str], root: Path) -> list[Path]:
    """--from-junit 'reports/*.xml': every pattern must match something (a typo is an error)."""
    paths: list[Path] = []
    for pattern in patterns:
        matches = sorted(root.glob(pattern)) if not Path(pattern).is_absolute() else (
            [Path(pattern)] if Path(pattern).exists() else []
        )
        if not matches:
            raise InputError(f"--from-junit {pattern!r}: matches no file; check the glob")
        paths.extend(matches)
    return paths


def run(options: RunOptions, on_progress: ProgressCallback | None = None) -> RunOutcome:
    """Run the suite on N local workers, on the given Redis or a private one."""
    planned = prepare(options.request)
    if options.redis_url:
        return _run_on(options.redis_url, options, planned, on_progress)
    with EmbeddedRedis() as embedded:
        return _run_on(embedded.url, options, planned, on_progress)


def _run_on(
    url: str, options: RunOptions, planned: PlannedSuite, on_progress: ProgressCallback | None
) -> RunOutcome:
    connection = queue.connect(url)
    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    run_queue = queue.RunQueue(connection, run_id)
    jobs = shard_jobs(run_id, planned, options)
    root = options.request.root
    try:
        run_queue.enqueue(jobs)
        queue.register_run(connection, run_id)
        log_dir = root / ".shardrun" / "logs" / run_id
        with LocalWorkers(url, run_id, options.request.workers, root, log_dir) as workers:
            results = collect(run_queue, jobs, workers, on_progress)
    finally:
        run_queue.delete()
        connection.close()
    return finish(run_id, planned, options, results)


def shard_jobs(run_id: str, planned: PlannedSuite, options: RunOptions) -> list[ShardJob]:
    """One job per non-empty shard, longest first so the big ones start immediately."""
    shards = sorted(
        (shard for shard in planned.plan.shards if shard.units),
        key=lambda shard: (-shard.predicted_seconds, shard.index),
    )
    return [
        ShardJob(
            run_id=run_id,
            shard_index=shard.index,
            units=shard.units,
            framework="command" if options.command_template else planned.suite.framework,
            predicted_seconds=shard.predicted_seconds,
            timeout_seconds=options.timeout_seconds or default_timeout(shard.predicted_seconds),
            runner_args=options.runner_args,
            command_template=options.command_template,
        )
        for shard in shards
    ]


def collect(
    run_queue: queue.RunQueue,
    jobs: Sequence[ShardJob],
    workers: LocalWorkers,
    on_progress: ProgressCallback | None,
) -> list[ShardResult]:
    """Block on the result list until every job answered or no worker is left to answer."""
    progress = Progress(total_units=sum(len(job.units) for job in jobs))
    pending = {job.shard_index: job for job in jobs}
    started = time.monotonic()
    while pending:
        result = run_queue.wait_result(WAIT_SLICE_SECONDS)
        if result is None:
            if workers.all_exited():
                result = run_queue.wait_result(0.01)  # a last result may still be in flight
                if result is None:
                    break
            else:
                continue
        if pending.pop(result.shard_index, None) is None:
            continue  # a duplicate: the report keeps one per shard anyway
        _advance(progress, result, jobs, pending, time.monotonic() - started)
        if on_progress:
            on_progress(progress)
    return progress.results


def _advance(
    progress: Progress,
    result: ShardResult,
    jobs: Sequence[ShardJob],
    pending: dict[int, ShardJob],
    elapsed: float,
) -> None:
    progress.results.append(result)
    progress.done_units += len(result.units)
    if result.error or result.outcome.exit_code != 0:
        progress.failed_shards += 1
    predicted_done = sum(job.predicted_seconds for job in jobs) - sum(
        job.predicted_seconds for job in pending.values()
    )
    remaining = sum(job.predicted_seconds for job in pending.values())
    # Scale what is left by how fast the finished work went compared with its prediction.
    progress.eta_seconds = elapsed * remaining / predicted_done if predicted_done > 0 else None


def finish(
    run_id: str, planned: PlannedSuite, options: RunOptions, results: list[ShardResult]
) -> RunOutcome:
    """Merge, write the JUnit, learn the timings, and pick the exit code."""
    report = merge(planned.suite.files, results)
    junit_path = options.junit_out or options.request.root / ".shardrun" / "junit.xml"
    junit_path.parent.mkdir(parents=True, exist_ok=True)
    write_junit(report, junit_path)
    learn(planned.history, results, set(planned.suite.files))
    record_run(planned.history, run_id, planned.plan, results, report, time.time())
    planned.history.save(options.request.root)
    answered = {result.shard_index for result in results}
    lost = any(shard.units and shard.index not in answered for shard in planned.plan.shards)
    exit_code = EXIT_OK if report.passed else EXIT_TESTS_FAILED
    if lost:
        exit_code = EXIT_INFRASTRUCTURE
    return RunOutcome(run_id, planned, report, exit_code, junit_path)


def learn(history: History, results: Sequence[ShardResult], planned_files: set[str]) -> None:
    """Record the measured time of every file that really ran (crashed shards teach nothing)."""
    for result in results:
        if not result.junit_xml or result.outcome.signal or result.outcome.timed_out:
            continue
        try:
            measured = parse_junit_text(result.junit_xml, f"shard {result.shard_index}")
        except InputError:
            continue
        files = {path: secs for path, secs in measured.files.items() if path in planned_files}
        history.record(Durations(files, dict(result.example_times), measured.source))
