"""The coordinator's books for one run: which batch is where, and what to dispatch next. Pure.

Every unit is dispatched in some batch; a batch is queued, running (a worker holds its
lease), done (a result arrived) or abandoned (lost more often than `max_attempts`). The
ledger decides, from events only, what has to be (re)enqueued:

- a batch whose lease expired without a result is requeued with attempt + 1, until it
  has been tried `max_attempts` times; then its units are reported as infrastructure
  errors;
- a unit that failed is retried `retries` times in a batch of its own (preferably on
  another worker); if it then passes it is flaky;
- after `fail_fast` failures nothing new is dispatched; what did not run is skipped.

A result for a batch that is already done (a "lost" worker that did finish after all) is
ignored here; the report also keeps one outcome per unit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from shardrun.models import ShardJob, ShardResult


class BatchStatus(Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    ABANDONED = "abandoned"


@dataclass
class BatchEntry:
    job: ShardJob
    status: BatchStatus = BatchStatus.QUEUED
    losses: int = 0


@dataclass
class Ledger:
    """Run bookkeeping; batch ids (`ShardJob.shard_index`) are unique within the run.

    Every status change goes through `_set`, which keeps the sets of queued and running
    batches: the watch loop asks `complete` once per result and looks at queued and
    running batches once a second, and scanning every batch for that made the
    coordinator's CPU grow with the run's size (bench/scale.py, one job per unit).
    """

    max_attempts: int = 3
    retries: int = 1
    fail_fast: int | None = None
    batches: dict[int, BatchEntry] = field(default_factory=dict)
    failures: int = 0
    retried_units: dict[str, int] = field(default_factory=dict)
    _queued: set[int] = field(default_factory=set, init=False, repr=False)
    _running: set[int] = field(default_factory=set, init=False, repr=False)
    _next_id: int = field(default=0, init=False, repr=False)

    def add(self, jobs: Iterable[ShardJob]) -> list[ShardJob]:
        added = list(jobs)
        for job in added:
            self.batches[job.shard_index] = BatchEntry(job)
            self._set(job.shard_index, BatchStatus.QUEUED)
            self._next_id = max(self._next_id, job.shard_index + 1)
        return added

    def _set(self, batch_id: int, status: BatchStatus) -> None:
        self.batches[batch_id].status = status
        for members, wanted in ((self._queued, BatchStatus.QUEUED),
                                (self._running, BatchStatus.RUNNING)):
            if status is wanted:
                members.add(batch_id)
            else:
                members.discard(batch_id)

    def restore(self, jobs: Iterable[ShardJob], done: Iterable[int]) -> None:
        """Rebuild the books from Redis when a node takes over from a leader that died:
        every batch as last enqueued, those with a collected result done. Retry batches
        (single units that avoid a worker) count as retries already spent."""
        done_ids = set(done)
        for job in self.add(jobs):
            if job.shard_index in done_ids:
                self._set(job.shard_index, BatchStatus.DONE)
            if job.avoid_worker is not None:
                for unit in job.units:
                    self.retried_units[unit] = self.retried_units.get(unit, 0) + 1

    def next_batch_id(self) -> int:
        return self._next_id

    @property
    def stopped(self) -> bool:
        """Fail-fast tripped: nothing new is dispatched."""
        return self.fail_fast is not None and self.failures >= self.fail_fast

    def started(self, batch_id: int) -> None:
        if batch_id in self._queued:
            self._set(batch_id, BatchStatus.RUNNING)

    def accepts(self, result: ShardResult) -> bool:
        """Whether this result is the first for its batch (any attempt: a worker given up
        for lost that did finish still delivers a valid result)."""
        entry = self.batches.get(result.shard_index)
        return entry is not None and entry.status not in (BatchStatus.DONE, BatchStatus.ABANDONED)

    def finished(self, result: ShardResult, failed_units: Sequence[str]) -> list[ShardJob]:
        """Record a result; returns retry batches for its failed units (if any are due)."""
        if not self.accepts(result):
            return []  # a duplicate: the batch is already accounted for
        self._set(result.shard_index, BatchStatus.DONE)
        self.failures += len(failed_units)
        if self.stopped or self.retries < 1:
            return []
        due = [u for u in failed_units if self.retried_units.get(u, 0) < self.retries]
        return self._retry_batches(due, result)

    def _retry_batches(self, units: Sequence[str], result: ShardResult) -> list[ShardJob]:
        retries: list[ShardJob] = []
        for unit in units:
            self.retried_units[unit] = self.retried_units.get(unit, 0) + 1
            job = replace(
                self.batches[result.shard_index].job,
                shard_index=self.next_batch_id(),
                units=(unit,),
                attempt=result.attempt + 1,
                predicted_seconds=result.predicted_seconds / max(len(result.units), 1),
                avoid_worker=result.worker,
            )
            retries.extend(self.add([job]))
        return retries

    def lost(self, batch_id: int) -> ShardJob | None:
        """A running batch lost its lease: the job to enqueue again, or None if abandoned."""
        entry = self.batches[batch_id]
        if entry.status is not BatchStatus.RUNNING:
            return None
        entry.losses += 1
        if entry.job.attempt >= self.max_attempts:
            self._set(batch_id, BatchStatus.ABANDONED)
            return None
        entry.job = replace(entry.job, attempt=entry.job.attempt + 1)
        self._set(batch_id, BatchStatus.QUEUED)
        return entry.job

    def refused(self, batch_id: int) -> ShardJob | None:
        """A worker declined the batch (another commit): try another, like a lost lease."""
        self._set(batch_id, BatchStatus.RUNNING)
        return self.lost(batch_id)

    def requeue_unfinished(self) -> list[ShardJob]:
        """Redis lost the queue: every open batch is queued again, attempts unchanged
        (losing Redis is not the batch's fault)."""
        jobs = self.unfinished()
        for job in jobs:
            self._set(job.shard_index, BatchStatus.QUEUED)
        return jobs

    def queued(self) -> list[ShardJob]:
        return [self.batches[batch_id].job for batch_id in sorted(self._queued)]

    def running(self) -> list[ShardJob]:
        return [self.batches[batch_id].job for batch_id in sorted(self._running)]

    def unfinished(self) -> list[ShardJob]:
        """Queued or running batches, for re-enqueueing after Redis lost the queue."""
        return [self.batches[batch_id].job for batch_id in sorted(self._queued | self._running)]

    def abandoned_units(self) -> list[str]:
        return [unit for e in self.batches.values() if e.status is BatchStatus.ABANDONED
                for unit in e.job.units]

    @property
    def complete(self) -> bool:
        """Nothing left to wait for: all done or abandoned, or fail-fast stopped the rest."""
        return self.stopped or not (self._queued or self._running)
