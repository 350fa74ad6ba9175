"""One run from start to finish: plan -> enqueue -> watch -> collect -> report -> history.

The coordinator owns the run's plan, so it can account for every unit at the end: a
shard whose worker vanished or whose runner died is reported, never silently dropped.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shardrun import queue
from shardrun.config import DEFAULT_LEASE_SECONDS, REDIS_TIMEOUT_SECONDS
from shardrun.errors import (
    EXIT_INFRASTRUCTURE,
    EXIT_OK,
    EXIT_TESTS_FAILED,
    InputError,
    ShardrunError,
)
from shardrun.models import Plan, RunSpec, ShardJob
from shardrun.phases import mark
from shardrun.plan.batching import DEFAULT_BOOT_SECONDS, DEFAULT_WARM_BATCH_SECONDS, queue_batches
from shardrun.plan.discovery import Suite, discover
from shardrun.plan.history import History
from shardrun.plan.planner import plan_shards
from shardrun.plan.splitting import split_slow_files
from shardrun.plan.timings import Durations, file_of_unit, load_durations
from shardrun.report.junit_writer import write_junit
from shardrun.report.merge import RunReport, merge
from shardrun.report.runlog import boot_seconds, record_run, warm_batch_seconds
from shardrun.run.embedded import EmbeddedRedis, describe_redis_server
from shardrun.run.ledger import Ledger
from shardrun.run.pool import LocalWorkers
from shardrun.run.watch import ProgressCallback, Watcher, WatchOutcome
from shardrun.runners import Runner, get_runner
from shardrun.runspec import published, secret_from_environment
from shardrun.work.process import default_timeout, git_head
from shardrun.work.warm import Prewarm, Runners


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
    # Whether any estimate came from measured seconds. Without, the estimates are file
    # sizes in made-up units: fit for balancing, not for showing as predicted seconds.
    timed: bool = True


@dataclass(frozen=True)
class RunOptions:
    request: PlanRequest
    redis_url: str | None = None
    junit_out: Path | None = None
    runner_args: tuple[str, ...] = ()
    command_template: str | None = None
    timeout_seconds: float | None = None
    mode: str = "queue"  # "queue": factoring batches from a queue; "static": one per shard
    retries: int = 1
    retry_budget: int | None = None  # failed tests retried at most; None: ledger's default
    max_attempts: int = 3
    fail_fast: int | None = None
    redis_timeout: float = REDIS_TIMEOUT_SECONDS
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    runners: str = Runners.FORK.value  # how runners run batches (shardrun/work/warm.py)
    runner_max_rss_mb: int | None = None  # restart a warm runner above this RSS


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    planned: PlannedSuite
    dispatched: Plan  # the shards or batches actually enqueued (after example splitting)
    report: RunReport
    exit_code: int
    junit_path: Path | None
    infrastructure_error: str | None = None
    # From the command's planning (CI: the leader's start) to the merged report: what the
    # run cost in time, as against report.seconds, the tests' own seconds summed over every
    # worker.
    wall_seconds: float | None = None


def prepare(request: PlanRequest) -> PlannedSuite:
    """Discover the suite, estimate every unit from history (+ --from-junit), plan it."""
    return plan_suite(request, find_suite(request))


def find_suite(request: PlanRequest) -> Suite:
    """The suite's files and framework, the options checked: all `run` needs to start its
    workers, whose runners then boot the suite while `plan_suite` reads the history (a
    second or more for a thousand files on a loaded machine)."""
    if request.workers < 1:
        raise InputError("--workers must be at least 1")
    suite = discover(request.paths, request.framework, request.root)
    expand_globs(request.from_junit, request.root)  # a typo stops the run before it starts
    return suite


def plan_suite(request: PlanRequest, suite: Suite) -> PlannedSuite:
    """Estimate every unit of `suite` from history (+ --from-junit) and plan it."""
    history = History.load(request.timings_path)
    for path in expand_globs(request.from_junit, request.root):
        history.record(load_durations(path))
    estimates = history.estimates(suite.files, request.root)
    timed = any(history.estimate(unit) is not None for unit in estimates)
    return PlannedSuite(suite, history, estimates, plan_shards(estimates, request.workers),
                        timed)


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


def run(
    options: RunOptions, on_progress: ProgressCallback | None = None,
    announce: Callable[[str], None] = lambda line: None,
) -> RunOutcome:
    """Run the suite on N local workers, on the given Redis or a private one; `announce`
    hears each step before it is taken, so a person sees the run start at once."""
    started_at = time.time()  # the run's time includes planning and the private Redis
    suite = find_suite(options.request)
    if options.redis_url:
        announce(f"Redis: {queue.redact(options.redis_url)}")
        return _run_on(options.redis_url, options, suite, on_progress, started_at, announce)
    with EmbeddedRedis() as embedded:
        mark("redis ready")
        announce(describe_redis_server(embedded.binary or "redis-server"))
        outcome = _run_on(embedded.url, options, suite, on_progress, started_at, announce)
    mark("redis stopped")
    return outcome


def planned_line(planned: PlannedSuite, options: RunOptions) -> str:
    """What is about to run: the files, the framework, the workers, what it planned from."""
    files = len(planned.suite.files)
    timings = ("timings from earlier runs" if planned.timed
               else "no timings yet, so file sizes")
    return (f"{files} {planned.suite.framework} file{'s' if files != 1 else ''} on "
            f"{options.request.workers} local worker{'s' if options.request.workers != 1 else ''}"
            f" ({options.mode} mode, --runners {options.runners}); planned from {timings}")


def _run_on(
    url: str, options: RunOptions, suite: Suite, on_progress: ProgressCallback | None,
    started_at: float, announce: Callable[[str], None],
) -> RunOutcome:
    connection = queue.connect(url, options.redis_timeout)
    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    run_queue = queue.RunQueue(connection, run_id, redis_timeout=options.redis_timeout)
    root = options.request.root
    log_dir = root / ".shardrun" / "logs" / run_id
    spec = suite_spec(suite, options)
    try:
        # The workers' runners boot the suite while the coordinator plans and batches.
        with LocalWorkers(url, run_id, options.request.workers, root, log_dir,
                          suite_prewarm(suite, options), spec) as workers:
            mark("workers started")
            planned = plan_suite(options.request, suite)
            mark("planned")
            announce(planned_line(planned, options))
            dispatched = dispatch_plan(planned, options)
            mark("batched")
            ledger = new_ledger(options, spec)
            jobs = ledger.add(batch_jobs(run_id, dispatched, options))
            publish = _publisher(run_queue, connection, run_id, planned, options, spec)
            publish()
            enqueue_first_batches_first(run_queue, jobs, options.request.workers)
            mark("enqueued")
            watched = Watcher(run_queue, ledger, workers, on_progress, publish).run()
            mark("last result")
            workers.request_stop()  # every result is in: they stop while the report is made
            outcome = finish(run_id, planned, options, dispatched, ledger, watched, started_at)
        mark("workers stopped")
    finally:
        _forget(run_queue, connection)
    return outcome


def enqueue_first_batches_first(
    run_queue: queue.RunQueue, jobs: Sequence[ShardJob], workers: int
) -> None:
    """One batch per worker in a pipeline of its own, then the rest: the workers start
    on theirs while the other thousand batches of a big suite are still being written."""
    run_queue.enqueue(jobs[:workers])
    if jobs[workers:]:
        run_queue.enqueue(jobs[workers:])


def _publisher(
    run_queue: queue.RunQueue, connection: queue.Connection, run_id: str,
    planned: PlannedSuite, options: RunOptions, spec: RunSpec,
) -> Callable[[], None]:
    """Announce the run (again, after Redis lost it): its meta key and the run registry.
    The meta carries the run's settings, signed when SHARDRUN_SECRET is set, for workers
    that have none of their own (runspec.py)."""
    meta = {"run_id": run_id, "framework": planned.suite.framework, "mode": options.mode,
            "workers": options.request.workers,
            "spec": published(spec, secret_from_environment())}

    def publish() -> None:
        run_queue.publish_meta(meta)
        queue.register_run(connection, run_id)

    return publish


def _forget(run_queue: queue.RunQueue, connection: queue.Connection) -> None:
    with contextlib.suppress(ShardrunError):  # Redis gone: every key expires on its own
        run_queue.delete()
    connection.close()


def dispatch_plan(planned: PlannedSuite, options: RunOptions) -> Plan:
    """Static: the plan's shards. Queue: slow files split into examples, then batches."""
    if options.mode == "static":
        return planned.plan
    framework = "command" if options.command_template else planned.suite.framework
    root, workers = options.request.root, options.request.workers
    runner = get_runner(framework, root, options.command_template)
    boot = batch_overhead(planned.history.runs(), framework, warm=_warm(runner, options))
    if not planned.timed:
        # No timings yet: estimates are file sizes, not seconds, so a boot cost in seconds
        # means nothing against them. Batch without it: small batches let the queue even
        # out what the sizes got wrong, and this run's timings fix the next one.
        boot = 0.0
    estimates = dict(planned.estimates)
    if not options.command_template:
        estimates = split_slow_files(estimates, workers, boot, runner, planned.history, root)
    return queue_batches(estimates, workers, boot)


def _warm(runner: Runner, options: RunOptions) -> bool:
    return options.runners != Runners.FRESH.value and runner.server_argv() is not None


def prewarm_for(planned: PlannedSuite, options: RunOptions) -> Prewarm | None:
    """What local workers can boot before their first batch: the run's warm runner."""
    return suite_prewarm(planned.suite, options)


def suite_prewarm(suite: Suite, options: RunOptions) -> Prewarm | None:
    """`prewarm_for`, known before the suite is planned."""
    if options.command_template:
        return None
    framework = suite.framework
    if not _warm(get_runner(framework, options.request.root), options):
        return None
    return Prewarm(framework, options.runner_args)


def batch_overhead(runs: Sequence[Mapping[str, Any]], framework: str, *, warm: bool) -> float:
    """What one batch costs outside its tests, for the cost model (docs/queue.md).

    With warm runners a worker boots once and every later batch costs only its dispatch
    and one framework session; otherwise every batch boots a process.
    """
    if warm:
        return warm_batch_seconds(runs) or DEFAULT_WARM_BATCH_SECONDS
    return boot_seconds(runs) or DEFAULT_BOOT_SECONDS[framework]


def batch_jobs(run_id: str, dispatched: Plan, options: RunOptions) -> list[ShardJob]:
    """One job per non-empty shard or batch, longest first so the big ones start first."""
    shards = [shard for shard in dispatched.shards if shard.units]
    if options.mode == "static":
        shards.sort(key=lambda shard: (-shard.predicted_seconds, shard.index))
    commit = git_head(options.request.root)
    return [
        ShardJob(
            run_id=run_id,
            shard_index=shard.index,
            units=shard.units,
            predicted_seconds=shard.predicted_seconds,
            timeout_seconds=options.timeout_seconds or default_timeout(shard.predicted_seconds),
            commit=commit,
            lease_seconds=options.lease_seconds,
        )
        for shard in shards
    ]


def finish(
    run_id: str,
    planned: PlannedSuite,
    options: RunOptions,
    dispatched: Plan,
    ledger: Ledger,
    watched: WatchOutcome,
    started_at: float,
) -> RunOutcome:
    """Merge, write the JUnit, learn the timings, and pick the exit code."""
    units = [unit for shard in dispatched.shards for unit in shard.units]
    report = merge(units, watched.results, skipped_units(ledger, watched),
                   ledger.lost_reasons())
    report = replace(report, notes=(*report.notes, *retry_notes(ledger)))
    mark("merged")
    junit_path = options.junit_out or options.request.root / ".shardrun" / "junit.xml"
    write_junit(report, junit_path)
    mark("junit written")
    learn(planned.history, report)
    record_run(planned.history, run_id, dispatched, watched.results, report, time.time(),
               timed=planned.timed)
    planned.history.save(options.request.root)
    mark("history saved")
    exit_code = EXIT_OK if report.passed else EXIT_TESTS_FAILED
    if report.missing or watched.infrastructure_error:
        exit_code = EXIT_INFRASTRUCTURE
    return RunOutcome(run_id, planned, dispatched, report, exit_code, junit_path,
                      watched.infrastructure_error, max(time.time() - started_at, 0.0))


def new_ledger(options: RunOptions, spec: RunSpec) -> Ledger:
    return Ledger(options.max_attempts, options.retries, options.fail_fast, options.retry_budget,
                  framework=spec.framework)


def run_spec(planned: PlannedSuite, options: RunOptions) -> RunSpec:
    """How this run's batches are executed: what workers receive from their own side or,
    signed, from the run's meta (runspec.py); never through a batch's payload."""
    return suite_spec(planned.suite, options)


def suite_spec(suite: Suite, options: RunOptions) -> RunSpec:
    """`run_spec`, known before the suite is planned."""
    return RunSpec(
        framework="command" if options.command_template else suite.framework,
        command_template=options.command_template, runner_args=options.runner_args,
        runners=options.runners, runner_max_rss_mb=options.runner_max_rss_mb,
    )


def retry_notes(ledger: Ledger) -> tuple[str, ...]:
    """What the summary says when failures were left unretried, and why."""
    count = len(ledger.not_retried)
    if not count:
        return ()
    return (f"{count} failed test(s) were not retried: more failed than the retry budget "
            f"({ledger.budget} tests; by default the larger of 5 and 1% of the tests), so "
            "the failures look deterministic and a retry would only add their time again; "
            "--retry-budget N raises it",)


def skipped_units(ledger: Ledger, watched: WatchOutcome) -> dict[str, str]:
    """Units deliberately not run: after --fail-fast tripped, whatever had not finished."""
    if not ledger.stopped:
        return {}
    done = {unit for result in watched.results for unit in result.units}
    reason = f"not run: --fail-fast stopped the run after {ledger.failures} failure(s)"
    return {unit: reason for job in ledger.unfinished() for unit in job.units
            if unit not in done}


def learn(history: History, report: RunReport) -> None:
    """Record what each file and test took in this run, from the merged report: a file
    split across batches counts once, in full, and a retried test its final attempt only.
    Tests a runner did not finish (interrupted, never ran) teach nothing."""
    planned_files = {file_of_unit(unit) for unit in report.units}
    files: dict[str, float] = defaultdict(float)
    examples: dict[str, float] = {}
    for case in report.cases:
        if case.origin or case.file not in planned_files:
            continue
        files[case.file] += case.seconds
        if case.id and case.id != case.file:
            examples[case.id] = case.seconds
    history.record(Durations(dict(files), examples, "run"))
