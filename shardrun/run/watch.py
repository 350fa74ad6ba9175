"""The coordinator's loop while a run is under way: collect results, reclaim lost work.

It blocks on the run's result list (no polling) and, about once a second, looks after
what can go wrong without a result ever arriving: a batch whose worker stopped renewing
its lease, a batch taken off the queue by a worker that died before it took the lease,
Redis restarted without the run's data, local workers that died. What to do about each
is the ledger's decision; this module only observes and enqueues.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from shardrun.config import WAIT_SLICE_SECONDS
from shardrun.errors import ShardrunError
from shardrun.models import Batch, BatchResult
from shardrun.run.ledger import Ledger

log = logging.getLogger(__name__)
# How often the loop checks leases, the queue and the workers while results flow.
CHECK_INTERVAL_SECONDS = 1.0


@dataclass
class Progress:
    """What the watch loop knows while a run is under way: planned units done, predicted
    seconds done, the results so far. Tests are counted by the CLI's tally
    (report/progress.py), as the summary counts them."""

    total_units: int
    done_units: int = 0
    # Tests the history knows these units hold; None when some unit's count is unknown.
    planned_tests: int | None = None
    predicted_total: float = 0.0
    predicted_done: float = 0.0
    elapsed: float = 0.0
    results: list[BatchResult] = field(default_factory=list)

    @property
    def eta_seconds(self) -> float | None:
        """What is left, at the pace the finished work went compared with its prediction;
        never negative (retries can run past the prediction)."""
        if self.predicted_done <= 0:
            return None
        left = max(self.predicted_total - self.predicted_done, 0.0)
        return self.elapsed * left / self.predicted_done

    def add(self, result: BatchResult, planned: set[str], done: set[str]) -> None:
        """Count a result: its planned units (less those it never started) and, for a
        first attempt, its predicted seconds."""
        self.results.append(result)
        done.update(unit for unit in result.units if unit in planned)
        done.difference_update(result.unrun)
        self.done_units = len(done)
        if result.attempt == 1:
            self.predicted_done += result.predicted_seconds


@dataclass
class WatchOutcome:
    results: list[BatchResult]
    infrastructure_error: str | None = None


ProgressCallback = Callable[[Progress], None]


class BatchQueue(Protocol):
    """What the loop needs of the run's queue: queue.RunQueue in a run, a fake in the
    loop's unit tests (tests/unit/test_watch.py), as xdist tests its schedulers."""

    run_id: str

    def wait_results(self, timeout: float) -> list[BatchResult]: ...
    def enqueue(self, jobs: Sequence[Batch], id_suffix: str = "") -> None: ...
    def meta_present(self) -> bool: ...
    def queued_batches(self) -> set[tuple[int, int]]: ...
    def started_batches(self, batch_ids: Sequence[int]) -> dict[int, tuple[int, str]]: ...
    def results_pending(self) -> bool: ...
    def leased(self, batch_ids: Sequence[int]) -> set[int]: ...
    def request_stop(self, reason: str) -> None: ...


class Workers(Protocol):
    """Local worker processes the loop keeps alive (run/pool.py), when this node has any."""

    def ensure_alive(self) -> None: ...

    def request_stop(self) -> None: ...


class Books(Protocol):
    """Where the run's books are kept besides the ledger: nowhere for a local run, in Redis
    under a lease for a CI leader (run/session.py)."""

    def accepted(self, result: BatchResult) -> None:
        """A result was accepted for its batch."""

    def enqueued(self, jobs: list[Batch]) -> None:
        """Batches were (re)enqueued: retries, requeues after a lost lease."""

    def checked(self) -> None:
        """Once a second; may raise ShardrunError to end the watch (leadership lost)."""


class Watcher:
    def __init__(
        self,
        run_queue: BatchQueue,
        ledger: Ledger,
        books: Books,
        workers: Workers | None = None,
        on_progress: ProgressCallback | None = None,
        republish: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_tick: Callable[[], None] | None = None,
        planned_tests: int | None = None,
    ):
        self.run_queue = run_queue
        self.ledger = ledger
        self.workers = workers
        self.on_progress = on_progress
        self.republish = republish
        self.books = books
        self.clock = clock
        self.on_tick = on_tick  # each pass of the loop: `run --verbose` reads live results
        self.results: list[BatchResult] = []
        jobs = [entry.job for entry in ledger.batches.values()]
        self.planned = {unit for job in jobs for unit in job.units}
        self.done: set[str] = set()
        self.progress = Progress(
            total_units=len(self.planned),
            predicted_total=sum(job.predicted_seconds for job in jobs),
            planned_tests=planned_tests,
        )
        self.started = self.clock()
        self.checked = self.started
        self.off_queue_since: dict[int, float] = {}
        self.recoveries = 0

    def run(self) -> WatchOutcome:
        try:
            while not self.ledger.complete:
                results = self.run_queue.wait_results(WAIT_SLICE_SECONDS)
                if self.on_tick:  # a batch's live results were sent before its result
                    self.on_tick()
                for result in results:
                    self._accept(result)
                if self.clock() - self.checked >= CHECK_INTERVAL_SECONDS:
                    self._check()
            if self.ledger.stopped:
                self.run_queue.request_stop(f"--fail-fast: {self.ledger.failures} failure(s)")
        except ShardrunError as error:  # Redis gone for good, all workers dead
            log.error("%s", error)
            return WatchOutcome(self.results, str(error))
        return WatchOutcome(self.results)

    def _accept(self, result: BatchResult) -> None:
        if not self.ledger.accepts(result):
            return
        if result.refused:
            reason = f"refused by worker {result.worker}: {result.error}"
            log.warning("batch %s %s", result.batch_id, reason)
            self._requeue(self.ledger.refused(result.batch_id, reason))
            return
        followers = self.ledger.finished(result)
        self.books.accepted(result)
        if followers:  # retries of failed tests, tests the batch never started
            self.books.enqueued(followers)
            self.run_queue.enqueue(followers)
        self.results.append(result)
        self.progress.add(result, self.planned, self.done)
        self.progress.elapsed = self.clock() - self.started
        if self.on_progress:
            self.on_progress(self.progress)

    def _check(self) -> None:
        self.checked = self.clock()
        self.books.checked()
        if not self.run_queue.meta_present():
            self._recover()
        off_queue = self._off_queue()
        started = self.run_queue.started_batches([job.batch_id for job in off_queue])
        unstarted = []
        for job in off_queue:
            if started.get(job.batch_id, (0, ""))[0] == job.attempt:
                self.ledger.started(job.batch_id)
            else:
                unstarted.append(job)
        self._reclaim_lost_leases()
        self._reclaim_vanished(unstarted)
        if self.workers is not None:
            self.workers.ensure_alive()

    def _off_queue(self) -> list[Batch]:
        """Batches the ledger has queued that are no longer on the queue: a worker took
        them. Only these can have started since the last check."""
        queued = self.ledger.queued()
        if not queued:
            return []
        on_queue = self.run_queue.queued_batches()
        return [job for job in queued if (job.batch_id, job.attempt) not in on_queue]

    def _reclaim_lost_leases(self) -> None:
        """Running batches nobody holds: their worker died, vanished or hung."""
        running = [job.batch_id for job in self.ledger.running()]
        if not running or self.run_queue.results_pending():
            return  # results not read yet release leases: look once they are read
        held = self.run_queue.leased(running)
        if self.run_queue.results_pending():
            return  # a released lease may belong to a result not read yet
        for batch_id in running:
            if batch_id not in held:
                log.warning("batch %s lost its lease; requeueing", batch_id)
                self._requeue(self.ledger.lost(batch_id))

    def _reclaim_vanished(self, unstarted: list[Batch]) -> None:
        """Queued batches that left the queue but never started: the worker that took
        them died before taking the lease. Given a lease's time to show up, they are
        treated like a lost lease."""
        now = self.clock()
        current = {job.batch_id for job in unstarted}
        for batch_id in [b for b in self.off_queue_since if b not in current]:
            del self.off_queue_since[batch_id]
        for job in unstarted:
            since = self.off_queue_since.setdefault(job.batch_id, now)
            if now - since > job.lease_seconds:
                self.off_queue_since.pop(job.batch_id)
                self.ledger.started(job.batch_id)
                self._requeue(self.ledger.lost(job.batch_id))

    def _recover(self) -> None:
        """Redis lost the run (a restart without persistence): enqueue again from the
        ledger everything not done; results already collected stay collected."""
        self.recoveries += 1
        log.warning("Redis lost run %s; re-enqueueing what is not done", self.run_queue.run_id)
        if self.republish:
            self.republish()
        self.run_queue.enqueue(self.ledger.requeue_unfinished(), id_suffix=f"-r{self.recoveries}")
        self.off_queue_since.clear()

    def _requeue(self, job: Batch | None) -> None:
        if job is not None:
            self.books.enqueued([job])
            self.run_queue.enqueue([job])
