"""Small JUnit texts, and shard results built from them as a worker builds a `command`
batch's result (junit_reader + accounting.reconcile_junit), for the report tests."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from shardrun.models import BatchResult, ProcessOutcome
from shardrun.report.junit_reader import read_testcases
from shardrun.work.accounting import reconcile_junit

RSPEC_FAILURE = ('<failure message="expected: 2 got: 1" type="RSpec::Expectations::'
                 'ExpectationNotMetError">Failure/Error: expect(1).to eq(2)\n'
                 "./spec/a_spec.rb:12:in `block (2 levels)'</failure>")
PYTEST_FAILURE = ('<failure message="assert 1 == 2">def test_x():\n&gt;  assert 1 == 2\n\n'
                  "tests/test_t.py:7: AssertionError</failure>")


def rspec_case(name: str, file: str, seconds: float = 0.5, body: str = "") -> str:
    classname = file.removesuffix(".rb").replace("/", ".")
    return (f'<testcase classname="{classname}" name={quoteattr(name)} file="./{file}" '
            f'time="{seconds}">{body}</testcase>')


def pytest_case(classname: str, name: str, seconds: float = 0.5, body: str = "") -> str:
    return (f'<testcase classname="{classname}" name={quoteattr(name)} time="{seconds}">'
            f"{body}</testcase>")


def suite(*cases: str, errors: int = 0) -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="rspec" tests="{len(cases)}" '
            f'failures="0" errors="{errors}" skipped="0" time="1.0">{"".join(cases)}</testsuite>')


def outcome(exit_code: int | None = 0, *, sig: int | None = None, timed_out: bool = False,
            wall: float = 2.0, tail: str = "") -> ProcessOutcome:
    return ProcessOutcome(exit_code, sig, timed_out, wall, 1.0, 1024, tail)


def result(shard: int, units: tuple[str, ...], xml: str | None, *, attempt: int = 1,
           finished: float = 10.0, process: ProcessOutcome | None = None,
           error: str | None = None, predicted: float = 1.5) -> BatchResult:
    process = process or outcome(0)
    tests, problem = read_testcases(xml)
    settled = reconcile_junit(units, tests, process, error=error, problem=problem)
    return BatchResult(
        run_id="run", batch_id=shard, attempt=attempt, worker=f"host{shard}:{100 + shard}",
        worker_index=shard, units=units, outcome=process, started_at=0.0,
        finished_at=finished, predicted_seconds=predicted, tests=settled.tests,
        unrun=settled.unrun, unrun_reason=settled.unrun_reason,
        empty_units=settled.empty_units, error=error,
    )
