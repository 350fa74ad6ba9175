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
from shardrun.errors import (
    EXIT_INFRASTRUCTURE,
    EXIT_OK,
    EXIT_TESTS_FAILED,
    InfrastructureError,
)
from shardrun.models import RunSpec
from shardrun.plan.gather import PlannedSuite, prepare
from shardrun.plan.planner import plan_shards
from shardrun.report.junit_writer import write_junit
from shardrun.report.merge import RunReport, merge
from shardrun.report.summary import summary_lines
from shardrun.run.ci_env import CiContext
from shardrun.run.options import RunOptions, batch_jobs, prewarm_for, run_spec
from shardrun.run.pool import LocalWorkers
from shardrun.run.session import LeaderBooks, Session, lead
from shardrun.run.shared_split import plan_digest, shared_estimates
from shardrun.run.watch import ProgressCallback
from shardrun.work.context import default_context
from shardrun.work.warm import Prewarm, Runners
from shardrun.work.worker import Worker, execute

# How long a follower waits, at most, between checks that the leader is still alive.
FOLLOWER_CHECK_SECONDS = 1.0


@dataclass
class CiOptions:
    # As given on this node's command line: request.workers is its worker processes (0:
    # coordinate only); run_node sizes the plan for the build (build_options).
    run: RunOptions
    context: CiContext
    node_junit_out: Path | None = None
    mine: set[int] = field(default_factory=set)  # pids of this node's workers, ever
    # Workers across the build, when not nodes x --workers (a pool of worker containers).
    total_workers: int | None = None
    started_at: float = field(default_factory=time.time)  # the node's command started


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
    return options.context.node_total * max(options.run.worker_processes, 1)


def build_options(options: CiOptions) -> RunOptions:
    """The node's settings with the plan sized for the build and its own processes kept."""
    run = options.run
    return replace(run, request=replace(run.request, workers=plan_workers(options)),
                   local_workers=run.worker_processes)


def run_node(options: CiOptions, on_progress: ProgressCallback | None = None) -> CiOutcome:
    options = replace(options, run=build_options(options))
    planned = prepare(options.run.request)
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
    count = options.run.worker_processes
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


def _lead(
    options: CiOptions,
    planned: PlannedSuite,
    run_queue: queue.RunQueue,
    workers: LocalWorkers | None,
    on_progress: ProgressCallback | None,
) -> CiOutcome | None:
    """The run session with its books in Redis (session.LeaderBooks): plan or take over,
    watch, merge. None if the lead passed to another node meanwhile."""
    books = LeaderBooks(run_queue, node_name(), options.run.lease_seconds)
    session = Session(run_queue, planned, options.run, books, workers, options.started_at)
    outcome = lead(session, on_progress)
    if outcome is None:
        return None
    lines = summary_lines(outcome.report, framework=planned.suite.framework,
                          wall_seconds=outcome.wall_seconds, timed=planned.timed)
    node_report = _node_report(outcome.report, options.mine)
    _write_node_junit(options, node_report)
    return CiOutcome(outcome.exit_code, "leader", tuple(lines), outcome.report, node_report,
                     outcome.infrastructure_error or "", planned.suite.framework)


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
    meta = run_queue.meta()
    if worker_pids and meta is not None:
        merged = merge(list(meta.units), run_queue.collected())
        node_report = _node_report(merged, worker_pids)
    return CiOutcome(int(stored["exit_code"]), role, tuple(stored.get("lines", ())), None,
                     node_report, stored.get("infrastructure_error") or "",
                     meta.framework if meta else "")


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
        worker = Worker(replace(default_context(root, 1), commit=None))
        try:
            results.append(execute(job, worker, spec))
        finally:
            worker.close()
    report = merge(list(units), results)
    junit = options.run.junit_out or options.run.request.root / ".shardrun" / "junit.xml"
    write_junit(report, junit)
    _write_node_junit(options, report)
    lines = summary_lines(report, framework=planned.suite.framework,
                          wall_seconds=time.monotonic() - started, timed=planned.timed)
    exit_code = EXIT_OK if report.passed else EXIT_TESTS_FAILED
    if report.missing:
        exit_code = EXIT_INFRASTRUCTURE
    return CiOutcome(exit_code, "fallback", tuple(lines), report, report, message,
                     planned.suite.framework)
