"""The RQ job function `run_shard`, and the `shardrun worker` loop that serves it.

A worker runs in the project checkout: the payload names units relative to that root, and
the runner writes JUnit into a scratch directory whose text goes back to the coordinator
(the coordinator may be on another host). The job function never raises: whatever goes
wrong becomes a BatchResult the report turns into error testcases.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from types import FrameType
from typing import Any

from shardrun import queue
from shardrun.errors import ShardrunError
from shardrun.models import Batch, BatchResult, ProcessOutcome, RunSpec, TestResult
from shardrun.phases import mark
from shardrun.plan.timings import file_of_unit
from shardrun.runners import Runner, get_runner
from shardrun.runspec import UntrustedSpec, verified
from shardrun.work import rq_worker
from shardrun.work.accounting import Settled, reconcile
from shardrun.work.context import WorkerContext, default_context
from shardrun.work.executors import CommandExecutor, Executor, ServerExecutor, batch_log
from shardrun.work.live import LiveFeed, live_level
from shardrun.work.warm import (
    EventCallback,
    Prewarm,
)

log = logging.getLogger(__name__)
# The signals that stop a worker: a batch running when one arrives goes back to the queue.
HAND_BACK_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# How long an idle worker without --run-id waits before looking for new runs again.
IDLE_RECHECK_SECONDS = 1.0


@dataclass
class Worker:
    """One worker: its context, and the executors that run its batches (the server one
    keeps this worker's runner between batches)."""

    context: WorkerContext
    servers: ServerExecutor = field(default_factory=ServerExecutor)
    commands: CommandExecutor = field(default_factory=CommandExecutor)

    def executor_for(self, runner: Runner) -> Executor:
        return self.servers if runner.server_argv() is not None else self.commands

    def close(self) -> None:
        self.servers.close()


# The worker `serve` runs in this thread's context: RQ calls the job function by name,
# so it finds its worker here. A context variable, not a module global: bench/scale.py
# runs many worker loops as threads of one process, each with its own worker.
_current: ContextVar[Worker | None] = ContextVar("shardrun_worker", default=None)


def configure(context: WorkerContext) -> Worker:
    """Make a worker of `context` the current one (what `serve` does; benches too)."""
    worker = Worker(context)
    _current.set(worker)
    return worker


def current_worker() -> Worker:
    """The configured worker, or one derived from the environment (RQ's CLI, tests)."""
    worker = _current.get()
    if worker is not None:
        return worker
    index = int(os.environ.get("SHARDRUN_WORKER_INDEX", "1"))
    return configure(default_context(Path.cwd(), index))


class Lease:
    """This worker's hold on a batch, renewed from the loop that watches the test process.

    Renewals use a Redis timeout of a third of the lease: a renewal that cannot get
    through in time is skipped (the coordinator will requeue), never allowed to stall the
    supervision of the test process.
    """

    def __init__(self, job: Batch, worker: str):
        self.job = job
        self.worker = worker
        self.interval = job.lease_seconds / 3
        connection = queue.current_run_queue(job.run_id).connection
        self.run_queue = queue.RunQueue(connection, job.run_id, redis_timeout=self.interval)
        self.renewed_at = 0.0

    def hold(self) -> None:
        self.run_queue.hold_lease(
            self.job.batch_id, self.job.attempt, self.worker, self.job.lease_seconds
        )
        self.renewed_at = time.monotonic()

    def renew(self) -> None:
        if time.monotonic() - self.renewed_at < self.interval:
            return
        try:
            self.hold()
        except ShardrunError as error:
            log.warning("could not renew the lease of batch %s: %s", self.job.batch_id, error)

    def release(self) -> None:
        try:
            self.run_queue.release_lease(self.job.batch_id)
        except ShardrunError as error:
            log.warning("could not release batch %s: %s", self.job.batch_id, error)


def run_shard(payload: dict[str, Any]) -> dict[str, Any]:
    """RQ job function: run one batch under a lease and push its result to the run."""
    job = Batch.from_dict(payload)
    worker = current_worker()
    context = worker.context
    run_queue = queue.current_run_queue(job.run_id)
    stop = run_queue.stop_reason()
    if stop is not None:  # fail-fast: the coordinator reports this batch as skipped
        return {"batch_id": job.batch_id, "skipped": stop}
    if job.avoid_worker == context.name and run_queue.workers_listening() > 1:
        run_queue.enqueue([replace(job, avoid_worker=None)], id_suffix="-elsewhere")
        return {"batch_id": job.batch_id, "deferred": True}
    spec = trusted_spec(context, run_queue)
    feed = _live_feed(job, context, run_queue)
    mark("batch start")
    lease = Lease(job, context.name)
    lease.hold()
    try:
        with _handing_back_on_signals():
            result = execute(job, worker, spec, on_poll=_poll(lease, feed),
                             on_event=feed.on_event if feed else None)
        if feed is not None:
            feed.flush()
        run_queue.push_result(result)
        mark("batch end")
        log.info("%s", batch_line(result))
    except Cancelled as cancelled:
        log.warning("stopping (%s): batch %s handed back unfinished", cancelled,
                    job.batch_id)
        cancelled.deliver()
        return {"batch_id": job.batch_id, "handed_back": True}
    finally:
        lease.release()
    return {"batch_id": result.batch_id, "attempt": result.attempt}


def _live_feed(job: Batch, context: WorkerContext,
               run_queue: queue.RunQueue) -> LiveFeed | None:
    """The batch's live feed when the run asked for one (`run --verbose`), else None."""
    try:
        level = live_level(run_queue.meta())
    except queue.MalformedMeta:  # the batch itself is refused for it (trusted_spec)
        return None
    if not level:
        return None
    return LiveFeed(run_queue.connection, job.run_id, context.worker_index, level)


def _poll(lease: Lease, feed: LiveFeed | None) -> Callable[[], None]:
    if feed is None:
        return lease.renew

    def poll() -> None:
        lease.renew()
        feed.tick()

    return poll


def batch_line(result: BatchResult) -> str:
    """What a worker's log says of each batch it ran."""
    failed = sum(1 for test in result.tests if test.failed)
    how = "refused" if result.refused else (
        f"{len(result.tests)} tests, {failed} failed" + (
            f", {len(result.unrun)} never started" if result.unrun else ""))
    return (f"run {result.run_id} batch {result.batch_id} attempt {result.attempt}: "
            f"{len(result.units)} units in {result.outcome.wall_seconds:.1f} s: {how}")


class Cancelled(BaseException):
    """The worker was asked to stop (SIGTERM, SIGINT: a cancelled CI job, `docker stop`,
    Ctrl-C) while a batch ran. Not an Exception, so nothing on the way catches it."""

    def __init__(self, signum: int, previous: Any) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.previous = previous

    def deliver(self) -> None:
        """Pass the signal on to the handler it interrupted (RQ's), which stops the
        worker once this job returns."""
        if callable(self.previous):
            self.previous(self.signum, None)


@contextlib.contextmanager
def _handing_back_on_signals() -> Iterator[None]:
    """While a batch runs, SIGTERM and SIGINT stop it at once: its runner is killed, no
    result is pushed and the lease is released, so the coordinator hands the batch to
    another worker. Reporting a batch the signal cut short would report its tests as
    killed, when only the worker was."""
    previous = {sig: signal.getsignal(sig) for sig in HAND_BACK_SIGNALS}

    def hand_back(signum: int, frame: FrameType | None) -> None:
        raise Cancelled(signum, previous[signal.Signals(signum)])

    for sig in HAND_BACK_SIGNALS:
        signal.signal(sig, hand_back)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def trusted_spec(context: WorkerContext, run_queue: queue.RunQueue) -> RunSpec | str:
    """The settings this worker may run the batch with, or why it has none (runspec.py):
    never the payload's, which anyone who can write to Redis could have written."""
    if context.spec is not None:
        return context.spec
    try:
        meta = run_queue.meta() if context.secret else None  # no secret: nothing to verify
        return verified(meta.spec if meta else None, context.secret)
    except (UntrustedSpec, queue.MalformedMeta) as error:
        return str(error)


def execute(
    job: Batch, worker: Worker, spec: RunSpec | str,
    on_poll: Callable[[], None] | None = None, on_event: EventCallback | None = None,
) -> BatchResult:
    """Run the batch with `spec`; a str instead is why the worker refuses it (as it
    refuses a batch of another commit): the coordinator reports the reason."""
    context = worker.context
    started = time.time()
    reason = spec if isinstance(spec, str) else None
    if reason is None and job.commit and context.commit and job.commit != context.commit:
        reason = (f"worker checkout is at {context.commit[:12]}, the run at {job.commit[:12]}"
                  "; refusing the batch")
    if reason is not None or isinstance(spec, str):
        result = _failed_result(job, context, started, str(reason), retry=True)
        return replace(result, refused=True)
    try:
        validate_units(job.units, context.root)
        runner = get_runner(spec.framework, context.root, spec.command_template, spec.python)
        ran = worker.executor_for(runner).run(job, spec, runner, context,
                                              batch_log(context, job), on_poll, on_event)
        result = _result(job, context, started, ran.outcome, ran.settled, warm=ran.warm)
        return replace(result, reused_runner=ran.reused_runner)
    except ShardrunError as error:
        return _failed_result(job, context, started, str(error), retry=False)
    except Exception as error:  # the report must learn why, whatever it was
        log.exception("shard %s failed before its runner finished", job.batch_id)
        return _failed_result(job, context, started, f"{type(error).__name__}: {error}",
                              retry=True)


def validate_units(units: tuple[str, ...], root: Path) -> None:
    """Refuse units that could act as options or escape the checkout."""
    for unit in units:
        path = PurePosixPath(file_of_unit(unit))
        if unit.startswith("-") or path.is_absolute() or ".." in path.parts:
            raise ShardrunError(f"refused unit {unit!r}: units must be paths inside the project")
        if not (root / path).is_file():
            raise ShardrunError(f"unit {unit!r} does not exist in the worker's checkout {root}")


def _result(
    job: Batch, context: WorkerContext, started: float, outcome: ProcessOutcome,
    settled: Settled, *, warm: bool = False, error: str | None = None,
) -> BatchResult:
    return BatchResult(
        run_id=job.run_id, batch_id=job.batch_id, attempt=job.attempt,
        worker=context.name, worker_index=context.worker_index, units=job.units,
        outcome=outcome, started_at=started, finished_at=time.time(),
        predicted_seconds=job.predicted_seconds, tests=settled.tests, unrun=settled.unrun,
        unrun_reason=settled.unrun_reason, empty_units=settled.empty_units,
        notes=settled.notes, error=error, warm=warm, file_seconds=dict(settled.file_seconds),
    )


def _failed_result(
    job: Batch, context: WorkerContext, started: float, error: str, *, retry: bool
) -> BatchResult:
    """The worker could not run the batch. A problem worth another try (the runner did
    not start) sends every unit back; one that would recur (a unit outside the checkout)
    is an error of each unit at once."""
    outcome = ProcessOutcome(None, None, False, time.time() - started, 0.0, 0, error)
    if retry:
        settled = reconcile(job.units, [], outcome, error=error)
    else:
        settled = Settled(tuple(
            TestResult(id=unit, unit=unit, file=file_of_unit(unit), outcome="error",
                       name=unit, classname=file_of_unit(unit), message=f"worker error: {error}",
                       result_type="shardrun.worker_error", origin="never_ran")
            for unit in job.units))
    return _result(job, context, started, outcome, settled, error=error)


def serve(
    url: str, context: WorkerContext, run_id: str | None, *, burst: bool,
    prewarm_runner: Prewarm | None = None,
) -> None:
    """Work one run (--run-id) or every announced run, until the queues drain in burst mode.

    The context's scratch directory (the tests' TMPDIR) goes when the worker stops.
    """
    worker = configure(context)
    try:
        if prewarm_runner is not None and run_id:
            worker.servers.prewarm(context, run_id, prewarm_runner)
            mark("prewarm sent")
        connection = queue.connect(url)
        mark("worker connected")
        log.info("%s", _start_line(context, run_id))  # once Redis answered: no error came
        _serve_on(connection, run_id, burst=burst)
    finally:
        worker.close()
        shutil.rmtree(context.tmp_dir, ignore_errors=True)


def _start_line(context: WorkerContext, run_id: str | None) -> str:
    """What a worker's log says as it starts serving: where, what, with which settings."""
    settings = f"its own {context.spec.framework} settings" if context.spec else (
        "the run's signed settings" if context.secret else "no settings: it will refuse "
        "batches until given --framework or SHARDRUN_SECRET")
    serving = f"run {run_id}" if run_id else "every announced run"
    return (f"worker {context.name} (index {context.worker_index}) in {context.root} "
            f"serving {serving}, with {settings}")


def _serve_on(connection: queue.Connection, run_id: str | None, *, burst: bool) -> None:
    try:
        if run_id:
            rq_worker.work(connection, [run_id], burst=burst)
            return
        _serve_announced_runs(connection, burst=burst)
    finally:
        connection.close()


def _serve_announced_runs(connection: queue.Connection, *, burst: bool) -> None:
    idle = False
    while True:
        runs = queue.active_runs(connection)
        if runs:
            idle = False
            rq_worker.work(connection, runs, burst=True)
        elif not idle:
            idle = True
            log.info("idle: no run announced; looking again every %.0f s", IDLE_RECHECK_SECONDS)
        if burst:
            return
        time.sleep(IDLE_RECHECK_SECONDS)
