"""The coordinator's books for one run: which batch is where, and what to dispatch next. Pure.

Every unit is dispatched in some batch; a batch is queued, running (a worker holds its
lease), done (a result arrived) or abandoned (lost more often than `max_attempts`). The
ledger decides, from events only, what has to be (re)enqueued:

- a batch whose lease expired without a result is requeued with attempt + 1, until it
  has been tried `max_attempts` times; then its units are reported as infrastructure
  errors;
- a test that failed is retried `retries` times by its own id (the rspec example id, the
  pytest node id; a `command` batch's file) in a batch of its own, preferably on another
  worker (and in a fresh process when it failed in a reused runner); if it then passes it
  is flaky. Retries are enqueued behind the first pass's batches, so they never delay the
  suite's other tests. Only so many failed tests are retried per run (`retry_budget`):
  when dozens fail the same way, the failures are real and retrying them only makes the
  run slower, as ci-queue's requeue tolerance reasons;
- tests or units a batch never started (its runner stopped first) go out once more, in
  a batch of their own that starts a fresh runner; the report makes errors of those
  that never run;
- after `fail_fast` failures nothing new is dispatched; what did not run is skipped.

A result for a batch that is already done (a "lost" worker that did finish after all) is
ignored here; the report also keeps one outcome per unit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from shardrun.models import Batch, BatchResult


def retry_units(result: BatchResult, framework: str) -> list[str]:
    """What to run again for the result's failed tests: each test by its own id, which
    rspec and pytest select it by; a `command` batch's tests by their unit (no command
    selects a JUnit testcase). Tests that never ran are requeued through `unrun` instead."""
    by_id = framework != "command"
    units = [test.id if by_id else test.unit for test in result.tests
             if test.failed and test.origin != "never_ran" and test.unit]
    return list(dict.fromkeys(units))


class BatchStatus(Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    ABANDONED = "abandoned"


@dataclass
class BatchEntry:
    job: Batch
    status: BatchStatus = BatchStatus.QUEUED
    losses: int = 0


# The retry budget, when not given: retry at most this many failed tests, or this share
# of the tests, whichever is larger. A run with more failures than that has deterministic
# failures (a broken commit, a missing service), and retrying them all doubled the time
# they took on a real suite (64 environment failures: 127 s of 223 s went to retries).
MIN_RETRIED_TESTS = 5
RETRIED_SHARE = 0.01


def default_retry_budget(tests: int) -> int:
    return max(MIN_RETRIED_TESTS, math.ceil(RETRIED_SHARE * tests))


@dataclass
class Ledger:
    """Run bookkeeping; batch ids (`Batch.batch_id`) are unique within the run.

    Every status change goes through `_set`, which keeps the sets of queued and running
    batches: the watch loop asks `complete` once per result and looks at queued and
    running batches once a second, and scanning every batch for that made the
    coordinator's CPU grow with the run's size (bench/scale.py, one job per unit).
    """

    max_attempts: int = 3
    retries: int = 1
    fail_fast: int | None = None
    # Failed tests retried in the run at most; None: default_retry_budget of the tests.
    retry_budget: int | None = None
    framework: str = ""  # of the run's RunSpec: `command` batches retry whole units
    batches: dict[int, BatchEntry] = field(default_factory=dict)
    failures: int = 0
    retried_units: dict[str, int] = field(default_factory=dict)
    requeued_unrun: set[str] = field(default_factory=set)
    not_retried: list[str] = field(default_factory=list)  # failed beyond the budget
    tests_seen: set[str] = field(default_factory=set)
    planned_units: int = 0  # of the first pass: what the default budget is a share of
    refusals: dict[int, str] = field(default_factory=dict)  # batch id -> the last refusal
    _queued: set[int] = field(default_factory=set, init=False, repr=False)
    _running: set[int] = field(default_factory=set, init=False, repr=False)
    _next_id: int = field(default=0, init=False, repr=False)

    def add(self, jobs: Iterable[Batch]) -> list[Batch]:
        added = list(jobs)
        for job in added:
            if job.attempt == 1:
                self.planned_units += len(job.units)
            self.batches[job.batch_id] = BatchEntry(job)
            self._set(job.batch_id, BatchStatus.QUEUED)
            self._next_id = max(self._next_id, job.batch_id + 1)
        return added

    def _set(self, batch_id: int, status: BatchStatus) -> None:
        self.batches[batch_id].status = status
        for members, wanted in ((self._queued, BatchStatus.QUEUED),
                                (self._running, BatchStatus.RUNNING)):
            if status is wanted:
                members.add(batch_id)
            else:
                members.discard(batch_id)

    def restore(self, jobs: Iterable[Batch], done: Iterable[int]) -> None:
        """Rebuild the books from Redis when a node takes over from a leader that died:
        every batch as last enqueued, those with a collected result done. Retry batches
        (single units that avoid a worker) count as retries already spent."""
        done_ids = set(done)
        for job in self.add(jobs):
            if job.batch_id in done_ids:
                self._set(job.batch_id, BatchStatus.DONE)
            if job.fresh_runner:
                self.requeued_unrun.update(job.units)
            elif job.avoid_worker is not None:
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

    def accepts(self, result: BatchResult) -> bool:
        """Whether this result is the first for its batch (any attempt: a worker given up
        for lost that did finish still delivers a valid result)."""
        entry = self.batches.get(result.batch_id)
        return entry is not None and entry.status not in (BatchStatus.DONE, BatchStatus.ABANDONED)

    def finished(self, result: BatchResult) -> list[Batch]:
        """Record a result; returns the batches it makes due: one for the tests it never
        started (once), one per failed test to retry."""
        if not self.accepts(result):
            return []  # a duplicate: the batch is already accounted for
        self._set(result.batch_id, BatchStatus.DONE)
        failed = retry_units(result, self.framework)
        self.failures += len(failed)
        self.tests_seen.update(test.id for test in result.tests)
        if self.stopped:
            return []
        jobs = self._unrun_batch(result)
        if self.retries >= 1:
            due = [u for u in failed if self.retried_units.get(u, 0) < self.retries]
            jobs += self._retry_batches(self._within_budget(due), result)
        return jobs

    @property
    def budget(self) -> int:
        """How many failed tests the run may retry: as given, or by default the larger of
        MIN_RETRIED_TESTS and RETRIED_SHARE of the tests (planned units, or tests seen)."""
        if self.retry_budget is not None:
            return self.retry_budget
        return default_retry_budget(max(self.planned_units, len(self.tests_seen)))

    def _within_budget(self, due: Sequence[str]) -> list[str]:
        """The tests to retry now; a test retried before (another attempt) needs no more
        budget, the others are retried while the budget lasts and noted when it is spent."""
        fresh = [unit for unit in due if unit not in self.retried_units]
        if not fresh:
            return list(due)
        room = max(self.budget - len(self.retried_units), 0)
        self.not_retried += fresh[room:]
        allowed = set(fresh[:room])
        return [unit for unit in due if unit in self.retried_units or unit in allowed]

    def _unrun_batch(self, result: BatchResult) -> list[Batch]:
        due = [unit for unit in result.unrun if unit not in self.requeued_unrun]
        if not due:
            return []
        self.requeued_unrun.update(due)
        share = result.predicted_seconds * len(due) / max(len(result.units), 1)
        return self._next(result, due, share, fresh_runner=True)

    def _retry_batches(self, units: Sequence[str], result: BatchResult) -> list[Batch]:
        retries: list[Batch] = []
        for unit in units:
            self.retried_units[unit] = self.retried_units.get(unit, 0) + 1
            share = result.predicted_seconds / max(len(result.units), 1)
            retries += self._next(result, [unit], share, avoid_worker=result.worker,
                                  fresh_runner=result.reused_runner)
        return retries

    def _next(
        self, result: BatchResult, units: Sequence[str], predicted_seconds: float,
        *, avoid_worker: str | None = None, fresh_runner: bool = False,
    ) -> list[Batch]:
        job = replace(
            self.batches[result.batch_id].job,
            batch_id=self.next_batch_id(),
            units=tuple(units),
            attempt=result.attempt + 1,
            predicted_seconds=predicted_seconds,
            avoid_worker=avoid_worker,
            fresh_runner=fresh_runner,
        )
        return self.add([job])

    def lost(self, batch_id: int) -> Batch | None:
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

    def refused(self, batch_id: int, reason: str = "") -> Batch | None:
        """A worker declined the batch (another commit, no trusted settings): try another,
        like a lost lease; the reason is what the report says if no worker runs it."""
        if reason:
            self.refusals[batch_id] = reason
        self._set(batch_id, BatchStatus.RUNNING)
        return self.lost(batch_id)

    def lost_reasons(self) -> dict[str, str]:
        """Units of abandoned batches a worker refused -> the refusal, for the report."""
        return {unit: self.refusals[batch_id] for batch_id, entry in self.batches.items()
                if entry.status is BatchStatus.ABANDONED and batch_id in self.refusals
                for unit in entry.job.units}

    def requeue_unfinished(self) -> list[Batch]:
        """Redis lost the queue: every open batch is queued again, attempts unchanged
        (losing Redis is not the batch's fault)."""
        jobs = self.unfinished()
        for job in jobs:
            self._set(job.batch_id, BatchStatus.QUEUED)
        return jobs

    def queued(self) -> list[Batch]:
        return [self.batches[batch_id].job for batch_id in sorted(self._queued)]

    def running(self) -> list[Batch]:
        return [self.batches[batch_id].job for batch_id in sorted(self._running)]

    def unfinished(self) -> list[Batch]:
        """Queued or running batches, for re-enqueueing after Redis lost the queue."""
        return [self.batches[batch_id].job for batch_id in sorted(self._queued | self._running)]

    def abandoned_units(self) -> list[str]:
        return [unit for e in self.batches.values() if e.status is BatchStatus.ABANDONED
                for unit in e.job.units]

    @property
    def complete(self) -> bool:
        """Nothing left to wait for: all done or abandoned, or fail-fast stopped the rest."""
        return self.stopped or not (self._queued or self._running)
