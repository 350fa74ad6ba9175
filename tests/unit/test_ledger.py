from __future__ import annotations

from dataclasses import replace

from shardrun.ledger import BatchStatus, Ledger
from shardrun.models import ProcessOutcome, ShardJob, ShardResult
from shardrun.watch import failed_units


def job(batch_id: int, *units: str, attempt: int = 1) -> ShardJob:
    return ShardJob("run", batch_id, units, "pytest", float(len(units)), 60.0, attempt=attempt)


def result(batch: ShardJob, worker: str = "host:1", exit_code: int = 0) -> ShardResult:
    outcome = ProcessOutcome(exit_code, None, False, 1.0, 0.5, 0)
    return ShardResult("run", batch.shard_index, batch.attempt, worker, 1, batch.units, outcome,
                       0.0, 1.0, predicted_seconds=batch.predicted_seconds)


def test_lost_batch_requeued_until_max_attempts_then_abandoned() -> None:
    ledger = Ledger(max_attempts=3)
    first = ledger.add([job(0, "a.py", "b.py")])[0]
    attempts = []
    ledger.started(0)
    while (again := ledger.lost(0)) is not None:
        attempts.append(again.attempt)
        ledger.started(0)
    assert attempts == [2, 3]
    assert ledger.batches[0].status is BatchStatus.ABANDONED
    assert ledger.abandoned_units() == list(first.units)
    assert ledger.complete


def test_queued_batch_is_not_lost_and_late_result_of_lost_worker_counts_once() -> None:
    ledger = Ledger()
    batch = ledger.add([job(0, "a.py")])[0]
    assert ledger.lost(0) is None  # never started: still queued, nothing to requeue
    ledger.started(0)
    requeued = ledger.lost(0)
    assert requeued is not None and requeued.attempt == 2
    late = result(batch)  # attempt 1 finished after all
    assert ledger.accepts(late)
    ledger.finished(late, [])
    assert not ledger.accepts(result(requeued))  # the duplicate is ignored
    assert ledger.complete


def test_failed_units_retried_once_on_a_batch_of_their_own() -> None:
    ledger = Ledger(retries=1)
    batch = ledger.add([job(0, "a.py", "b.py")])[0]
    retries = ledger.finished(result(batch, worker="host:7", exit_code=1), ["b.py"])
    assert [(r.units, r.attempt, r.avoid_worker) for r in retries] == [(("b.py",), 2, "host:7")]
    assert retries[0].shard_index == 1 and not ledger.complete
    assert ledger.finished(result(retries[0], exit_code=1), ["b.py"]) == []  # only once
    assert ledger.complete and ledger.failures == 2


def test_no_retries_when_disabled() -> None:
    ledger = Ledger(retries=0)
    batch = ledger.add([job(0, "a.py")])[0]
    assert ledger.finished(result(batch, exit_code=1), ["a.py"]) == []


def test_fail_fast_stops_dispatch_after_n_failures() -> None:
    ledger = Ledger(fail_fast=2, retries=1)
    first, _second, _third = ledger.add([job(0, "a.py", "b.py"), job(1, "c.py"), job(2, "d.py")])
    assert ledger.finished(result(first, exit_code=1), ["a.py", "b.py"]) == []
    assert ledger.stopped and ledger.complete
    assert {j.shard_index for j in ledger.unfinished()} == {1, 2}


def test_failed_units_reads_the_junit_only_when_it_can_hold_a_failure() -> None:
    batch = job(0, "tests/test_a.py")
    passing = ('<testsuite><testcase classname="tests.test_a" name="test_x" '
               'file="tests/test_a.py" time="0.1"/></testsuite>')
    failing = passing.replace('time="0.1"/>', 'time="0.1"><failure message="boom"/></testcase>')
    clean = replace(result(batch), junit_xml=passing)
    assert failed_units(clean) == []
    assert failed_units(replace(result(batch, exit_code=1), junit_xml=failing)) == [
        "tests/test_a.py"]
    # A clean exit whose JUnit reports a failure anyway (a custom command) still counts.
    assert failed_units(replace(clean, junit_xml=failing)) == ["tests/test_a.py"]
    # No JUnit at all after a clean exit: the unit is a crash, so it is failed.
    assert failed_units(replace(clean, junit_xml=None)) == ["tests/test_a.py"]


def test_queued_and_running_follow_every_status_change() -> None:
    """The watch loop trusts these views instead of scanning every batch."""
    ledger = Ledger(max_attempts=2, retries=1)
    first, _second, third = ledger.add([job(0, "a.py"), job(1, "b.py"), job(2, "c.py")])
    ledger.started(0)
    ledger.started(1)
    assert [j.shard_index for j in ledger.queued()] == [2]
    assert [j.shard_index for j in ledger.running()] == [0, 1]
    ledger.lost(1)  # back on the queue, attempt 2
    retries = ledger.finished(result(first, exit_code=1), ["a.py"])
    assert [j.shard_index for j in ledger.queued()] == [1, 2, 3]
    assert retries[0].shard_index == 3 and ledger.running() == []
    ledger.started(1)
    assert ledger.lost(1) is None  # second loss of a 2-attempt batch: abandoned
    for batch in (third, retries[0]):
        ledger.finished(result(batch), [])
    assert ledger.queued() == ledger.running() == ledger.unfinished() == []
    assert ledger.complete and ledger.abandoned_units() == ["b.py"]
    assert ledger.next_batch_id() == 4
