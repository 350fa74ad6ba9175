"""One CI node of `shardrun ci`: every parallel job of a build step runs this.

The nodes of a build share one run (run id from the CI build id, ci.py). Each node starts
its local workers; the first node to claim the build's leader key plans (deterministic,
so any node would plan alike), publishes the batches and watches the queue. The leader
key has a lease: if the leader dies, another node takes over, rebuilds the ledger from
Redis (every batch, every collected result) and carries on. Whoever leads when the last
unit is accounted for merges the report, writes --junit-out and the history, and marks
the run complete; every node then writes its own results and exits with the run's code.

A job retried after the run completed finds it complete and reports the stored outcome
without running anything; a node joining a run still under way (a retried job whose
first attempt died) just works the queue: only what is not done runs.

Without Redis (unreachable within --redis-timeout) each node runs its deterministic
static share, the same split as `shardrun plan --index I --total N`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from shardrun import queue
from shardrun.errors import EXIT_INFRASTRUCTURE, InfrastructureError, ShardrunError
from shardrun.models import Plan, RunSpec, Shard, ShardResult
from shardrun.plan.planner import plan_shards
from shardrun.report.junit_writer import write_junit
from shardrun.report.merge import RunReport, merge
from shardrun.report.summary import summary_lines
from shardrun.run.ci_env import CiContext
from shardrun.run.coordinator import (
    PlannedSuite,
    RunOptions,
    batch_jobs,
    dispatch_plan,
    finish,
    new_ledger,
    prepare,
    prewarm_for,
    run_spec,
)
from shardrun.run.ledger import Ledger
from shardrun.run.pool import LocalWorkers
from shardrun.run.shared_split import plan_digest, shared_estimates
from shardrun.run.watch import ProgressCallback, Watcher, WatchHooks, WatchOutcome
from shardrun.runspec import published, secret_from_environment
from shardrun.work.warm import Prewarm, Runners
from shardrun.work.worker import default_context, execute

# How long a follower waits, at most, between checks that the leader is still alive.
FOLLOWER_CHECK_SECONDS = 1.0


@dataclass
class CiOptions:
    run: RunOptions  # request.workers: worker processes on this node (0: coordinate only)
    context: CiContext
    node_junit_out: Path | None = None
    mine: set[int] = field(default_factory=set)  # pids of this node's workers, ever
    # Workers across the build, when not nodes x --workers (a pool of worker containers).
    total_workers: int | None = None


@dataclass(frozen=True)
class CiOutcome:
    exit_code: int
    role: str  # "leader" | "follower" | "fallback" | "retry of a completed run"
    summary_lines: tuple[str, ...]
    report: RunReport | None  # the merged report (leader) or this node's share (fallback)
    node_report: RunReport | None
    message: str = ""
    framework: str = ""  # of the suite, for the rerun command in CI output (leader, fallback)


def suite_key(planned: PlannedSuite) -> str:
    """Two steps of one build that run different suites must never share a run."""
    text = "\n".join([planned.suite.framework, *planned.suite.files])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def plan_workers(options: CiOptions) -> int:
    """How many workers the batches are sized for: the whole build's, not this node's."""
    if options.total_workers:
        return options.total_workers
    return options.context.node_total * max(options.run.request.workers, 1)


def run_node(options: CiOptions, on_progress: ProgressCallback | None = None) -> CiOutcome:
    request = replace(options.run.request, workers=plan_workers(options))
    planned = prepare(request)
    try:
        connection = queue.connect(options.run.redis_url or "", options.run.redis_timeout)
    except InfrastructureError as error:
        return fallback(planned, options, str(error))
    run_id = options.context.run_id(suite_key(planned))
    run_queue = queue.RunQueue(connection, run_id, redis_timeout=options.run.redis_timeout)
    try:
        stored = run_queue.completion()
        if stored is not None:
            return _outcome_from(stored, "retry of a completed run", run_queue, set())
        with _local_workers(options, run_id, prewarm_for(planned, options.run),
                            run_spec(planned, options.run)) as workers:
            return _take_part(options, planned, run_queue, workers, on_progress)
    finally:
        connection.close()


@contextlib.contextmanager
def _local_workers(
    options: CiOptions, run_id: str, prewarm: Prewarm | None, spec: RunSpec
) -> Iterator[LocalWorkers | None]:
    count = options.run.request.workers
    if count < 1:
        yield None
        return
    root = options.run.request.root
    log_dir = root / ".shardrun" / "logs" / run_id
    with LocalWorkers(options.run.redis_url or "", run_id, count, root, log_dir,
                      prewarm, spec) as workers:
        yield workers


def node_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _take_part(
    options: CiOptions,
    planned: PlannedSuite,
    run_queue: queue.RunQueue,
    workers: LocalWorkers | None,
    on_progress: ProgressCallback | None,
) -> CiOutcome:
    """Lead if the build has no leader, else follow until the run completes."""
    lease = options.run.lease_seconds
    while True:
        if workers is not None:
            options.mine |= workers.pids
        if run_queue.claim_leadership(node_name(), lease):
            led = _lead(options, planned, run_queue, workers, on_progress)
            if led is not None:
                return led
            # Another node holds the lease now (this one stalled past it): follow it.
        stored = run_queue.wait_completion(FOLLOWER_CHECK_SECONDS)
        if workers is not None:
            workers.ensure_alive()
            options.mine |= workers.pids
        if stored is not None:
            outcome = _outcome_from(stored, "follower", run_queue, options.mine)
            _write_node_junit(options, outcome.node_report)
            return outcome


class _LeaderHooks(WatchHooks):
    def __init__(self, run_queue: queue.RunQueue, lease_seconds: float):
        self.run_queue = run_queue
        self.lease_seconds = lease_seconds
        self.lost = False

    def accepted(self, result: ShardResult) -> None:
        self.run_queue.save_collected(result)

    def enqueued(self, jobs: list[Any]) -> None:
        self.run_queue.save_batches(jobs)

    def checked(self) -> None:
        if not self.run_queue.renew_leadership(node_name(), self.lease_seconds):
            self.lost = True
            raise InfrastructureError("lost the leadership of the build to another node")


def _lead(
    options: CiOptions,
    planned: PlannedSuite,
    run_queue: queue.RunQueue,
    workers: LocalWorkers | None,
    on_progress: ProgressCallback | None,
) -> CiOutcome | None:
    """Plan (or take over), watch, merge. None if the leadership passed to another node
    meanwhile: two nodes must never both merge and mark the run complete."""
    run = options.run
    spec = run_spec(planned, run)
    ledger = new_ledger(run, spec)
    meta = run_queue.meta()
    if meta is None:  # the first leader: plan, publish, enqueue
        # Batches for every worker of every node, not this node's (0 when coordinating only).
        fleet = replace(run.request, workers=plan_workers(options))
        dispatched = dispatch_plan(planned, replace(run, request=fleet))
        jobs = ledger.add(batch_jobs(run_queue.run_id, dispatched, run))
        run_queue.save_batches(jobs)
        meta = {"units": [u for shard in dispatched.shards for u in shard.units],
                "framework": planned.suite.framework, "started_at": time.time(),
                "spec": published(spec, secret_from_environment()),
                "lower_bound": dispatched.lower_bound,
                "predicted_makespan": dispatched.predicted_makespan}
        run_queue.publish_meta(meta)
        queue.register_run(run_queue.connection, run_queue.run_id)
        run_queue.enqueue(jobs)
    else:  # took over from a leader that died: rebuild the books from Redis
        done = [result.shard_index for result in run_queue.collected()]
        ledger.restore(run_queue.load_batches(), done)
    hooks = _LeaderHooks(run_queue, run.lease_seconds)
    try:
        watched = Watcher(run_queue, ledger, workers, on_progress,
                          lambda: run_queue.publish_meta(meta), hooks).run()
    except BaseException:  # cancelled (SIGTERM, Ctrl-C): another node takes over at once
        with contextlib.suppress(ShardrunError):
            run_queue.release_leadership(node_name())
        raise
    if hooks.lost:
        return None
    return _merge_as_leader(options, planned, run_queue, ledger, watched, meta)


def _merge_as_leader(
    options: CiOptions,
    planned: PlannedSuite,
    run_queue: queue.RunQueue,
    ledger: Ledger,
    watched: WatchOutcome,
    meta: dict[str, Any],
) -> CiOutcome:
    """Merge from what every leader collected, write the run's files, mark it complete."""
    results = _all_results(run_queue, watched)
    dispatched = Plan(
        workers=plan_workers(options),
        shards=(Shard(0, tuple(meta["units"]), 0.0),),
        predicted_makespan=float(meta.get("predicted_makespan", 0.0)),
        lower_bound=float(meta.get("lower_bound", 0.0)),
        total_seconds=0.0,
    )
    outcome = finish(run_queue.run_id, planned, options.run, dispatched, ledger,
                     replace(watched, results=results), float(meta["started_at"]))
    lines = summary_lines(outcome.report, framework=planned.suite.framework,
                          wall_seconds=outcome.wall_seconds, timed=planned.timed)
    with contextlib.suppress(ShardrunError):  # Redis gone: this node still reports
        run_queue.mark_complete({"exit_code": outcome.exit_code, "lines": lines,
                                 "infrastructure_error": outcome.infrastructure_error})
    node_report = _node_report(outcome.report, options.mine)
    _write_node_junit(options, node_report)
    return CiOutcome(outcome.exit_code, "leader", tuple(lines), outcome.report, node_report,
                     outcome.infrastructure_error or "", planned.suite.framework)


def _all_results(run_queue: queue.RunQueue, watched: WatchOutcome) -> list[ShardResult]:
    """This leader's results plus those an earlier leader collected, one per batch."""
    by_batch = {result.shard_index: result for result in watched.results}
    with contextlib.suppress(ShardrunError):
        for result in run_queue.collected():
            by_batch.setdefault(result.shard_index, result)
    return list(by_batch.values())


def _node_report(report: RunReport, worker_pids: set[int]) -> RunReport | None:
    """This node's own share of the merged run: the tests whose final attempt its worker
    processes ran, each once (earlier attempts inside, wherever they ran), so the nodes'
    files together hold the suite once."""
    cases = tuple(case for case in report.cases if _ran_here(case.worker, worker_pids))
    if not cases:
        return None
    mine = tuple(result for result in report.results if _ran_here(result.worker, worker_pids))
    units = tuple(dict.fromkeys(case.unit for case in cases if case.unit))
    return replace(report, cases=cases, units=units, results=mine, empty_units=(),
                   unplanned_files=())


def _ran_here(worker: str, worker_pids: set[int]) -> bool:
    host, _, pid = worker.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and int(pid) in worker_pids


def _write_node_junit(options: CiOptions, report: RunReport | None) -> None:
    if options.node_junit_out is not None and report is not None:
        write_junit(report, options.node_junit_out)


def _outcome_from(
    stored: dict[str, Any], role: str, run_queue: queue.RunQueue, worker_pids: set[int]
) -> CiOutcome:
    node_report = None
    meta = run_queue.meta() or {}
    if worker_pids:
        merged = merge(list(meta.get("units", ())), run_queue.collected())
        node_report = _node_report(merged, worker_pids)
    return CiOutcome(int(stored["exit_code"]), role, tuple(stored.get("lines", ())), None,
                     node_report, stored.get("infrastructure_error") or "",
                     str(meta.get("framework", "")))


def alike_estimates(planned: PlannedSuite, options: CiOptions) -> tuple[dict[str, float], str]:
    """Estimates every node of the build has alike, and where they come from (without
    Redis the nodes cannot agree on a plan, so each computes the same one: shared_split)."""
    request = options.run.request
    return shared_estimates(planned.suite.files, request.timings_path, request.root)


def fallback(planned: PlannedSuite, options: CiOptions, reason: str) -> CiOutcome:
    """No Redis: run this node's share of a static split every node computes alike."""
    started = time.monotonic()
    context = options.context
    estimates, source = alike_estimates(planned, options)
    static = plan_shards(estimates, context.node_total)
    shard = static.shards[context.node_index]
    units = shard.units
    message = (f"{reason.rstrip('.')}. Running this node's static share instead: shard "
               f"{context.node_index} of {context.node_total} (0-based; {len(units)} files), "
               f"split from {source}, plan digest {plan_digest(estimates)}. Every node must "
               "print the same digest: then the union over all nodes is the whole suite.")
    results = []
    if units:
        job = batch_jobs("fallback", replace(static, shards=(shard,)), options.run)[0]
        # One batch: nothing to keep warm.
        spec = replace(run_spec(planned, options.run), runners=Runners.FRESH.value)
        root = options.run.request.root
        worker_context = replace(default_context(root, 1), commit=None)
        results.append(execute(job, worker_context, spec))
    report = merge(list(units), results)
    junit = options.run.junit_out or options.run.request.root / ".shardrun" / "junit.xml"
    write_junit(report, junit)
    _write_node_junit(options, report)
    lines = summary_lines(report, framework=planned.suite.framework,
                          wall_seconds=time.monotonic() - started, timed=planned.timed)
    exit_code = 0 if report.passed else 1
    if report.missing:
        exit_code = EXIT_INFRASTRUCTURE
    return CiOutcome(exit_code, "fallback", tuple(lines), report, report, message,
                     planned.suite.framework)
