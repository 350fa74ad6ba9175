"""The watch loop against a fake queue and a fake clock: what it does when results come,
when a worker vanishes with a batch, when a lease lapses, when Redis loses the run.

The fake stands where queue.RunQueue stands (watch.BatchQueue); its `wait_results`
advances the clock by the slice it would have blocked for and lets a scripted "fleet"
act, so every case is deterministic and takes milliseconds (as pytest-xdist tests its
schedulers with MockNode).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from shardrun.errors import InfrastructureError
from shardrun.models import Batch, BatchResult, ProcessOutcome, TestResult
from shardrun.run.ledger import Ledger
from shardrun.run.watch import CHECK_INTERVAL_SECONDS, Watcher

FAKE_SECONDS_AT_MOST = 600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeQueue:
    clock: Clock
    run_id: str = "run"
    queued: list[Batch] = field(default_factory=list)
    results: list[BatchResult] = field(default_factory=list)
    leases: set[int] = field(default_factory=set)
    started: dict[int, tuple[int, str]] = field(default_factory=dict)
    meta: bool = True
    stop_reason: str | None = None
    enqueues: list[tuple[tuple[int, int], ...]] = field(default_factory=list)
    fleet: Callable[[FakeQueue], None] = lambda queue: None

    def wait_results(self, timeout: float) -> list[BatchResult]:
        self.clock.now += timeout
        # A loop that would never end fails the test instead of hanging it.
        assert self.clock.now < 1000.0 + FAKE_SECONDS_AT_MOST, "the watch never ended"
        self.fleet(self)
        taken, self.results = self.results, []
        return taken

    def enqueue(self, jobs: Sequence[Batch], id_suffix: str = "") -> None:
        self.queued.extend(jobs)
        self.enqueues.append(tuple((job.batch_id, job.attempt) for job in jobs))

    def meta_present(self) -> bool:
        return self.meta

    def queued_batches(self) -> set[tuple[int, int]]:
        return {(job.batch_id, job.attempt) for job in self.queued}

    def started_batches(self, batch_ids: Sequence[int]) -> dict[int, tuple[int, str]]:
        return {b: self.started[b] for b in batch_ids if b in self.started}

    def results_pending(self) -> bool:
        return bool(self.results)

    def leased(self, batch_ids: Sequence[int]) -> set[int]:
        return {b for b in batch_ids if b in self.leases}

    def request_stop(self, reason: str) -> None:
        self.stop_reason = reason

    # what a worker does -------------------------------------------------------------
    def take(self) -> Batch:
        job = self.queued.pop(0)
        self.started[job.batch_id] = (job.attempt, "host:1")
        self.leases.add(job.batch_id)
        return job

    def finish(self, job: Batch, *tests: TestResult) -> None:
        self.leases.discard(job.batch_id)
        exit_code = 1 if any(test.outcome == "failed" for test in tests) else 0
        outcome = ProcessOutcome(exit_code, None, False, 1.0, 0.5, 0)
        self.results.append(BatchResult(
            "run", job.batch_id, job.attempt, "host:1", 1, job.units, outcome, 0.0, 1.0,
            predicted_seconds=job.predicted_seconds, tests=tests))


class NoBooks:
    def __init__(self, fail_after_checks: int | None = None) -> None:
        self.accepted_ids: list[int] = []
        self.enqueued_ids: list[int] = []
        self.checks = 0
        self.fail_after_checks = fail_after_checks

    def accepted(self, result: BatchResult) -> None:
        self.accepted_ids.append(result.batch_id)

    def enqueued(self, jobs: list[Batch]) -> None:
        self.enqueued_ids.extend(job.batch_id for job in jobs)

    def checked(self) -> None:
        self.checks += 1
        if self.fail_after_checks is not None and self.checks > self.fail_after_checks:
            raise InfrastructureError("lost the leadership of the build to another node")


def passed(unit: str) -> TestResult:
    return TestResult(f"{unit}::test_ok", unit, unit, "passed")


def failed(unit: str) -> TestResult:
    return TestResult(f"{unit}::test_bad", unit, unit, "failed")


def start(units: Sequence[str], retries: int = 1, **queue_args: object) -> tuple[
        FakeQueue, Ledger, Clock]:
    clock = Clock()
    fake = FakeQueue(clock, **queue_args)  # type: ignore[arg-type]
    ledger = Ledger(max_attempts=3, retries=retries)
    jobs = ledger.add([Batch("run", index, (unit,), 1.0, 60.0, lease_seconds=5.0)
                       for index, unit in enumerate(units)])
    fake.enqueue(jobs)
    return fake, ledger, clock


def test_every_result_is_accepted_once_and_the_loop_ends_when_the_ledger_is_complete() -> None:
    def fleet(queue: FakeQueue) -> None:
        if queue.queued:
            job = queue.take()
            queue.finish(job, passed(job.units[0]))

    fake, ledger, clock = start(["a.py", "b.py"], fleet=fleet)
    books = NoBooks()
    watched = Watcher(fake, ledger, books, clock=clock).run()
    assert watched.infrastructure_error is None
    assert sorted(result.batch_id for result in watched.results) == [0, 1]
    assert sorted(books.accepted_ids) == [0, 1]
    assert ledger.complete


def test_a_failed_test_goes_back_on_the_queue_by_itself_and_its_retry_is_booked() -> None:
    def fleet(queue: FakeQueue) -> None:
        if queue.queued:
            job = queue.take()
            first_try = job.attempt == 1
            queue.finish(job, failed(job.units[0]) if first_try else passed(job.units[0]))

    fake, ledger, clock = start(["a.py"], fleet=fleet)
    books = NoBooks()
    watched = Watcher(fake, ledger, books, clock=clock).run()
    assert [result.attempt for result in watched.results] == [1, 2]
    assert books.enqueued_ids == [1]  # the retry is a batch of its own, and booked
    assert watched.results[1].units == ("a.py::test_bad",)


def test_a_batch_whose_lease_lapses_is_requeued_as_its_next_attempt() -> None:
    """A worker took the batch, started it, then vanished: its lease is gone."""
    taken: list[Batch] = []

    def fleet(queue: FakeQueue) -> None:
        if queue.queued and not taken:
            taken.append(queue.take())
            queue.leases.clear()  # the worker died holding nothing
        elif queue.queued:
            queue.finish(queue.take(), passed("a.py"))

    fake, ledger, clock = start(["a.py"], fleet=fleet)
    watched = Watcher(fake, ledger, NoBooks(), clock=clock).run()
    assert fake.enqueues[1:] == [((0, 2),)]
    assert [(r.batch_id, r.attempt) for r in watched.results] == [(0, 2)]


def test_a_batch_taken_off_the_queue_but_never_started_is_requeued_after_a_lease() -> None:
    """The worker died between popping the job and taking the lease: no lease ever shows,
    so only time tells. Requeued once `lease_seconds` passed, not before."""
    popped: list[float] = []

    def fleet(queue: FakeQueue) -> None:
        if queue.queued and not popped:
            queue.queued.pop(0)
            popped.append(queue.clock.now)
        elif queue.queued:
            queue.finish(queue.take(), passed("a.py"))

    fake, ledger, clock = start(["a.py"], fleet=fleet)
    watched = Watcher(fake, ledger, NoBooks(), clock=clock).run()
    assert [(r.batch_id, r.attempt) for r in watched.results] == [(0, 2)]
    requeued_after = clock.now - popped[0]
    assert requeued_after >= 5.0  # the batch's lease_seconds


def test_redis_losing_the_run_republishes_it_and_requeues_what_is_not_done() -> None:
    republished: list[float] = []
    finished_first: list[bool] = []

    def fleet(queue: FakeQueue) -> None:
        if not finished_first:
            queue.finish(queue.take(), passed("a.py"))
            finished_first.append(True)
            queue.meta, queue.queued = False, []  # a restart without persistence
        elif queue.meta and queue.queued:
            queue.finish(queue.take(), passed("b.py"))

    fake, ledger, clock = start(["a.py", "b.py"], fleet=fleet)

    def republish() -> None:
        republished.append(clock.now)
        fake.meta = True

    watched = Watcher(fake, ledger, NoBooks(), republish=republish, clock=clock).run()
    assert len(republished) == 1
    assert sorted(r.batch_id for r in watched.results) == [0, 1]  # a.py not run again


def test_books_that_lose_the_lead_end_the_watch_with_the_reason() -> None:
    fake, ledger, clock = start(["a.py"])  # nobody works the queue
    watched = Watcher(fake, ledger, NoBooks(fail_after_checks=2), clock=clock).run()
    assert watched.infrastructure_error == "lost the leadership of the build to another node"
    assert clock.now - 1000.0 >= 2 * CHECK_INTERVAL_SECONDS


def test_fail_fast_asks_the_workers_to_stop() -> None:
    def fleet(queue: FakeQueue) -> None:
        if queue.queued:
            queue.finish(queue.take(), failed("a.py"))

    clock = Clock()
    fake = FakeQueue(clock, fleet=fleet)
    ledger = Ledger(max_attempts=3, retries=0, fail_fast=1)
    fake.enqueue(ledger.add([Batch("run", 0, ("a.py",), 1.0, 60.0),
                             Batch("run", 1, ("b.py",), 1.0, 60.0)]))
    Watcher(fake, ledger, NoBooks(), clock=clock).run()
    assert ledger.stopped
    assert fake.stop_reason == "--fail-fast: 1 failure(s)"


@pytest.mark.parametrize("lease_present", [True, False])
def test_a_running_batch_is_left_alone_while_its_lease_is_held(lease_present: bool) -> None:
    """One check with the batch running: requeued only when its lease is gone."""
    fake, ledger, clock = start(["a.py"])
    fake.take()
    if not lease_present:
        fake.leases.clear()
    watcher = Watcher(fake, ledger, NoBooks(), clock=clock)
    watcher._check()  # the batch is seen started
    watcher._check()
    assert (fake.enqueues[1:] == []) is lease_present
