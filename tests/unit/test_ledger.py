from __future__ import annotations

from dataclasses import replace

from shardrun.models import Batch, BatchResult, ProcessOutcome, TestResult
from shardrun.run.ledger import BatchStatus, Ledger, retry_units


def job(batch_id: int, *units: str, attempt: int = 1) -> Batch:
    return Batch("run", batch_id, units, float(len(units)), 60.0, attempt=attempt)


def result(batch: Batch, worker: str = "host:1", exit_code: int = 0,
           tests: tuple[TestResult, ...] = (), unrun: tuple[str, ...] = ()) -> BatchResult:
    outcome = ProcessOutcome(exit_code, None, False, 1.0, 0.5, 0)
    return BatchResult("run", batch.batch_id, batch.attempt, worker, 1, batch.units, outcome,
                       0.0, 1.0, predicted_seconds=batch.predicted_seconds, tests=tests,
                       unrun=unrun, unrun_reason="killed by signal 9 (SIGKILL)" if unrun else "")


def case(test_id: str, unit: str, outcome: str = "failed", origin: str = "") -> TestResult:
    return TestResult(test_id, unit, unit.split("[")[0].split("::")[0], outcome, origin=origin)




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
    ledger.finished(late)
    assert not ledger.accepts(result(requeued))  # the duplicate is ignored
    assert ledger.complete


def test_failed_tests_are_retried_once_by_their_own_id() -> None:
    ledger = Ledger(retries=1)
    batch = ledger.add([job(0, "a.py", "b.py")])[0]
    failed = case("b.py::test_x", "b.py")
    retries = ledger.finished(result(batch, worker="host:7", exit_code=1, tests=(failed,)))
    assert [(r.units, r.attempt, r.avoid_worker) for r in retries] == [
        (("b.py::test_x",), 2, "host:7")]
    assert retries[0].batch_id == 1 and not ledger.complete
    assert ledger.finished(result(retries[0], exit_code=1, tests=(failed,))) == []  # only once
    assert ledger.complete and ledger.failures == 2


def test_the_retry_of_a_split_spec_file_runs_the_example_that_failed() -> None:
    """Second example of a batch of a split file fails: the retry must run that example,
    not the batch's first unit (a flaky test was never detected that way)."""
    ledger = Ledger(retries=1, framework="rspec")
    batch = ledger.add([job(0, "spec/a_spec.rb[1:1]", "spec/a_spec.rb[1:2]")])[0]
    tests = (case("spec/a_spec.rb[1:1]", "spec/a_spec.rb[1:1]", "passed"),
             case("spec/a_spec.rb[1:2]", "spec/a_spec.rb[1:2]"))
    retries = ledger.finished(result(batch, exit_code=1, tests=tests))
    assert [r.units for r in retries] == [("spec/a_spec.rb[1:2]",)]


def test_a_command_batch_retries_the_unit_of_a_failed_testcase() -> None:
    """No command selects a JUnit testcase: the file it belongs to runs again."""
    batch = job(0, "spec/a_spec.rb")
    tests = (case("spec/a_spec.rb::spec.a_spec::fails", "spec/a_spec.rb"),)
    assert retry_units(result(batch, exit_code=1, tests=tests), "command") == ["spec/a_spec.rb"]


def test_tests_that_never_started_go_back_once_in_a_fresh_runner() -> None:
    ledger = Ledger(retries=1)
    batch = ledger.add([job(0, "a.py", "b.py")])[0]
    hung = case("a.py::test_hangs", "a.py", "error", origin="interrupted")
    followers = ledger.finished(result(batch, tests=(hung,), unrun=("a.py::test_after", "b.py")))
    requeue = [f for f in followers if f.fresh_runner]
    assert [(f.units, f.attempt) for f in requeue] == [(("a.py::test_after", "b.py"), 2)]
    retried = [f.units for f in followers if not f.fresh_runner]
    assert retried == [("a.py::test_hangs",)]  # the interrupted test is a failure to retry
    # Never started again: not sent out a third time (the report makes them errors).
    assert ledger.finished(result(requeue[0], unrun=("b.py",))) == []


def test_a_node_taking_over_knows_which_unrun_tests_were_sent_again() -> None:
    ledger = Ledger()
    requeue = replace(job(3, "b.py", attempt=2), fresh_runner=True)
    ledger.restore([job(0, "a.py", "b.py"), requeue], done=[0])
    assert ledger.finished(result(requeue, unrun=("b.py",))) == []


def test_no_retries_when_disabled() -> None:
    ledger = Ledger(retries=0)
    batch = ledger.add([job(0, "a.py")])[0]
    assert ledger.finished(result(batch, exit_code=1, tests=(case("a.py::t", "a.py"),))) == []


def test_fail_fast_stops_dispatch_after_n_failures() -> None:
    ledger = Ledger(fail_fast=2, retries=1)
    first, _second, _third = ledger.add([job(0, "a.py", "b.py"), job(1, "c.py"), job(2, "d.py")])
    tests = (case("a.py::t", "a.py"), case("b.py::t", "b.py"))
    assert ledger.finished(result(first, exit_code=1, tests=tests)) == []
    assert ledger.stopped and ledger.complete
    assert {j.batch_id for j in ledger.unfinished()} == {1, 2}


def test_queued_and_running_follow_every_status_change() -> None:
    """The watch loop trusts these views instead of scanning every batch."""
    ledger = Ledger(max_attempts=2, retries=1)
    first, _second, third = ledger.add([job(0, "a.py"), job(1, "b.py"), job(2, "c.py")])
    ledger.started(0)
    ledger.started(1)
    assert [j.batch_id for j in ledger.queued()] == [2]
    assert [j.batch_id for j in ledger.running()] == [0, 1]
    ledger.lost(1)  # back on the queue, attempt 2
    retries = ledger.finished(result(first, exit_code=1, tests=(case("a.py::t", "a.py"),)))
    assert [j.batch_id for j in ledger.queued()] == [1, 2, 3]
    assert retries[0].batch_id == 3 and ledger.running() == []
    ledger.started(1)
    assert ledger.lost(1) is None  # second loss of a 2-attempt batch: abandoned
    for batch in (third, retries[0]):
        ledger.finished(result(batch))
    assert ledger.queued() == ledger.running() == ledger.unfinished() == []
    assert ledger.complete and ledger.abandoned_units() == ["b.py"]
    assert ledger.next_batch_id() == 4


def test_only_a_budget_of_failed_tests_is_retried_the_rest_are_noted() -> None:
    """Dozens of tests failing the same way are deterministic: retrying them all doubled
    their time on a real suite. By default at most max(5, 1% of the tests) are retried."""
    ledger = Ledger(retries=1)
    batch = ledger.add([job(0, *(f"t{i}.py" for i in range(20)))])[0]
    failed = tuple(case(f"t{i}.py::x", f"t{i}.py") for i in range(8))
    retries = ledger.finished(result(batch, exit_code=1, tests=failed))
    assert ledger.budget == 5
    assert [r.units for r in retries] == [(f"t{i}.py::x",) for i in range(5)]
    assert ledger.not_retried == [f"t{i}.py::x" for i in range(5, 8)]


def test_the_budget_grows_with_the_suite_and_can_be_set() -> None:
    big = Ledger()
    big.add([job(0, *(f"t{i}.py" for i in range(1000)))])
    assert big.budget == 10  # 1% of 1,000 tests
    assert Ledger(retry_budget=0).budget == 0


def test_a_test_failing_in_a_reused_runner_is_retried_in_a_fresh_one() -> None:
    ledger = Ledger(retries=1)
    batch = ledger.add([job(0, "a.py")])[0]
    polluted = replace(result(batch, exit_code=1, tests=(case("a.py::x", "a.py"),)),
                       reused_runner=True)
    [retry] = ledger.finished(polluted)
    assert retry.fresh_runner and retry.units == ("a.py::x",)
