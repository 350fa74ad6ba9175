"""One run session: the steps `shardrun run` and a `shardrun ci` leader take alike.

Publish the run, enqueue its batches, watch them to the end, merge one report, write the
JUnit, learn the timings, pick the exit code: once, here. What differs between the two
commands is where the books are kept (DESIGN.md rule 2: one Protocol per point of
variation):

- `LocalBooks`: a laptop run keeps them in this process; nobody else can take over.
- `LeaderBooks`: a CI leader keeps them in Redis under a lease (every batch, every
  collected result), so when it dies another node takes the lead, restores the ledger from
  Redis and carries on; it merges what every leader collected, and marks the run complete
  for the nodes waiting on it.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from shardrun import queue
from shardrun.errors import (
    EXIT_INFRASTRUCTURE,
    EXIT_OK,
    EXIT_TESTS_FAILED,
    InfrastructureError,
    ShardrunError,
)
from shardrun.models import Batch, BatchResult, Mode, Plan, RunMeta
from shardrun.phases import mark
from shardrun.plan.gather import PlannedSuite
from shardrun.plan.history import History
from shardrun.plan.timings import Durations, file_of_unit
from shardrun.report.junit_writer import write_junit
from shardrun.report.merge import RunReport, merge
from shardrun.report.progress import expected_tests
from shardrun.report.runlog import record_run
from shardrun.report.shared_time import file_shared_seconds, own_seconds
from shardrun.report.summary import summary_lines
from shardrun.run.ledger import Ledger
from shardrun.run.live import LiveCallback, LiveTail
from shardrun.run.options import (
    RunOptions,
    RunOutcome,
    batch_jobs,
    begin_dispatch,
    new_ledger,
    run_spec,
)
from shardrun.run.origin import run_origin
from shardrun.run.watch import ProgressCallback, Watcher, WatchOutcome, Workers
from shardrun.runspec import published, secret_from_environment


class Leadership(Protocol):
    """Where a session keeps its books besides the ledger (see the module docstring)."""

    lost: bool  # the lead passed to another node mid-watch: this session must not merge
    # Whether the first batches may go out before the rest is planned (run/options.py
    # begin_dispatch): only where no other node could take over between the two.
    stages_dispatch: bool

    def stored(self) -> RunMeta | None:
        """The run as an earlier leader published it; None for a run not yet planned."""

    def restore(self, ledger: Ledger) -> None:
        """Fill the ledger with an earlier leader's batches and what they collected."""

    def accepted(self, result: BatchResult) -> None:
        """A result was accepted for its batch."""

    def enqueued(self, jobs: list[Batch]) -> None:
        """Batches were (re)enqueued: the first ones, retries, requeues."""

    def checked(self) -> None:
        """Once a second; raises ShardrunError to end the watch (leadership lost)."""

    def results(self, watched: Sequence[BatchResult]) -> list[BatchResult]:
        """Every batch's result: this session's and those earlier leaders collected."""

    def completed(self, outcome: RunOutcome) -> None:
        """The report is written; tell whoever waits on the run."""

    def cancelled(self) -> None:
        """The session is stopping early (SIGTERM, Ctrl-C): let another node lead now."""


class LocalBooks:
    """`shardrun run`: the ledger in this process is the whole of the books."""

    lost = False
    stages_dispatch = True

    def stored(self) -> RunMeta | None:
        return None

    def restore(self, ledger: Ledger) -> None:
        """Nothing to restore: a local run is never taken over."""

    def accepted(self, result: BatchResult) -> None:
        """In memory only."""

    def enqueued(self, jobs: list[Batch]) -> None:
        """In memory only."""

    def checked(self) -> None:
        """Nobody can take the lead."""

    def results(self, watched: Sequence[BatchResult]) -> list[BatchResult]:
        return list(watched)

    def completed(self, outcome: RunOutcome) -> None:
        """Nobody waits on a local run."""

    def cancelled(self) -> None:
        """Nobody takes over."""


class LeaderBooks:
    """A CI leader's books in Redis, under a leadership lease renewed once a second."""

    # A leader that died between the first batches and the rest would leave its
    # successor a run whose meta names files no stored batch holds: it plans all at once.
    stages_dispatch = False

    def __init__(self, run_queue: queue.RunQueue, node: str, lease_seconds: float):
        self.run_queue = run_queue
        self.node = node
        self.lease_seconds = lease_seconds
        self.lost = False

    def stored(self) -> RunMeta | None:
        return self.run_queue.meta()

    def restore(self, ledger: Ledger) -> None:
        done = [result.batch_id for result in self.run_queue.collected()]
        ledger.restore(self.run_queue.load_batches(), done)

    def accepted(self, result: BatchResult) -> None:
        self.run_queue.save_collected(result)

    def enqueued(self, jobs: list[Batch]) -> None:
        self.run_queue.save_batches(jobs)

    def checked(self) -> None:
        if not self.run_queue.renew_leadership(self.node, self.lease_seconds):
            self.lost = True
            raise InfrastructureError("lost the leadership of the build to another node")

    def results(self, watched: Sequence[BatchResult]) -> list[BatchResult]:
        by_batch = {result.batch_id: result for result in watched}
        with contextlib.suppress(ShardrunError):  # Redis gone: what this leader saw
            for result in self.run_queue.collected():
                by_batch.setdefault(result.batch_id, result)
        return list(by_batch.values())

    def completed(self, outcome: RunOutcome) -> None:
        """Followers print the leader's summary lines and exit with its code."""
        lines = summary_lines(outcome.report, framework=outcome.planned.suite.framework,
                              wall_seconds=outcome.wall_seconds, timed=outcome.planned.timed)
        with contextlib.suppress(ShardrunError):  # Redis gone: this node still reports
            self.run_queue.mark_complete({
                "exit_code": outcome.exit_code, "lines": lines,
                "infrastructure_error": outcome.infrastructure_error,
            })

    def cancelled(self) -> None:
        with contextlib.suppress(ShardrunError):
            self.run_queue.release_leadership(self.node)


@dataclass(frozen=True)
class Session:
    """One run's inputs to the steps below. `options.request.workers` is what the batches
    are sized for (the build's workers in CI); `workers` the processes on this machine."""

    run_queue: queue.RunQueue
    planned: PlannedSuite
    options: RunOptions
    books: Leadership
    workers: Workers | None
    started_at: float  # epoch seconds when the command started planning
    on_live: LiveCallback | None = None  # `run --verbose`: each test as it finishes


def lead(session: Session, on_progress: ProgressCallback | None = None) -> RunOutcome | None:
    """Plan and publish the run (or take it over), watch it to the end, and report it.
    None when the lead passed to another node meanwhile: two nodes must never both merge."""
    ledger = new_ledger(session.options, run_spec(session.planned, session.options))
    meta, dispatched = _begin(session, ledger)
    live = session.on_live if session.options.live else None
    units = [unit for entry in ledger.batches.values() for unit in entry.job.units]
    watcher = Watcher(session.run_queue, ledger, session.books, session.workers, on_progress,
                      lambda: publish(session.run_queue, meta),
                      on_tick=LiveTail(session.run_queue, live) if live else None,
                      planned_tests=expected_tests(units, session.planned.history.examples()))
    try:
        watched = watcher.run()
    except BaseException:  # cancelled: another node may take over at once
        session.books.cancelled()
        raise
    mark("last result")
    if session.books.lost:
        return None
    if session.workers is not None:
        session.workers.request_stop()  # every result is in: they stop while we report
    watched = replace(watched, results=session.books.results(watched.results))
    outcome = finish(session, dispatched, ledger, watched, meta.started_at)
    session.books.completed(outcome)
    return outcome


def _begin(session: Session, ledger: Ledger) -> tuple[RunMeta, Plan]:
    """The first leader plans, publishes and enqueues; a later one restores the books."""
    stored = session.books.stored()
    if stored is not None:
        session.books.restore(ledger)
        return stored, stored.plan()
    run_queue, options, planned = session.run_queue, session.options, session.planned
    dispatch = begin_dispatch(planned, options, staged=session.books.stages_dispatch)
    mark("batched")
    jobs = ledger.add(batch_jobs(run_queue.run_id, dispatch.first, options))
    meta = run_meta(session, dispatch.first)
    session.books.enqueued(jobs)
    publish(run_queue, meta)
    enqueue_first_batches_first(run_queue, jobs, options.request.workers)
    mark("enqueued")
    rest = dispatch.rest()
    if rest.shards:  # the batches that waited for the listing (`begin_dispatch`)
        later = ledger.add(batch_jobs(run_queue.run_id, rest, options))
        session.books.enqueued(later)
        run_queue.enqueue(later)
        meta = run_meta(session, dispatch.plan())
        publish(run_queue, meta)  # every unit, should Redis lose the run and need it again
        mark("listed and enqueued")
    return meta, dispatch.plan()


def enqueue_first_batches_first(
    run_queue: queue.RunQueue, jobs: Sequence[Batch], workers: int
) -> None:
    """One batch per worker in a pipeline of its own, then the rest: the workers start
    on theirs while the other thousand batches of a big suite are still being written."""
    run_queue.enqueue(jobs[:workers])
    if jobs[workers:]:
        run_queue.enqueue(jobs[workers:])


def publish(run_queue: queue.RunQueue, meta: RunMeta) -> None:
    """Announce the run (again, after Redis lost it): its meta key and the run registry."""
    run_queue.publish_meta(meta)
    queue.register_run(run_queue.connection, run_queue.run_id)


def run_meta(session: Session, dispatched: Plan) -> RunMeta:
    """What the run publishes: its settings, signed when SHARDRUN_SECRET is set, for
    workers that have none of their own (runspec.py), and the plan, for a later leader."""
    spec = run_spec(session.planned, session.options)
    return RunMeta(
        run_id=session.run_queue.run_id, framework=session.planned.suite.framework,
        mode=Mode(session.options.mode), workers=dispatched.workers,
        units=tuple(unit for shard in dispatched.shards for unit in shard.units),
        started_at=session.started_at, predicted_makespan=dispatched.predicted_makespan,
        lower_bound=dispatched.lower_bound, bounding_unit=dispatched.bounding_unit,
        spec=published(spec, secret_from_environment()), live=session.options.live,
    )


def finish(
    session: Session, dispatched: Plan, ledger: Ledger, watched: WatchOutcome,
    started_at: float,
) -> RunOutcome:
    """Merge, write the JUnit, learn the timings, and pick the exit code."""
    planned, options, run_id = session.planned, session.options, session.run_queue.run_id
    units = [unit for shard in dispatched.shards for unit in shard.units]
    report = merge(units, watched.results, skipped_units(ledger, watched),
                   ledger.lost_reasons())
    report = replace(report, notes=(*report.notes, *retry_notes(ledger)))
    mark("merged")
    junit_path = options.junit_out or options.request.root / ".shardrun" / "junit.xml"
    write_junit(report, junit_path)
    mark("junit written")
    learn(planned.history, report)
    ended_at = time.time()  # the record's wall time and the summary's "in N s" are one
    record_run(planned.history, run_id, dispatched, watched.results, report, ended_at,
               timed=planned.timed, run_started_at=started_at,
               origin=run_origin(options.request.root))
    planned.history.save(options.request.root)
    mark("history saved")
    exit_code = EXIT_OK if report.passed else EXIT_TESTS_FAILED
    if report.missing or watched.infrastructure_error:
        exit_code = EXIT_INFRASTRUCTURE
    return RunOutcome(run_id, planned, dispatched, report, exit_code, junit_path,
                      watched.infrastructure_error, max(ended_at - started_at, 0.0))


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
    split across batches counts once, in full, with the set-up its tests share once
    (report/shared_time.py: RSpec's hooks, pytest's module and class fixtures), each
    test without it, and a retried test its final attempt only. Tests a runner did not
    finish (interrupted, never ran) teach nothing."""
    planned_files = {file_of_unit(unit) for unit in report.units}
    files: dict[str, float] = defaultdict(float)
    examples: dict[str, float] = {}
    for case in report.cases:
        if case.origin or case.file not in planned_files:
            continue
        files[case.file] += own_seconds(case)
        if case.id and case.id != case.file:
            examples[case.id] = own_seconds(case)
    for file, shared in file_shared_seconds(report.results).items():
        if file in files:
            files[file] += shared
    history.record(Durations(dict(files), examples, "run"))
