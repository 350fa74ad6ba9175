"""accounting.reconcile: one batch's events settled against the units it was sent.

Each case asks the question of the fault matrix (docs/faults.md): could a test that hung,
failed or never ran end up passed, or missing?
"""

from __future__ import annotations

import signal

from support.events import collected, done, file_time, finish, process, ran, start

from shardrun.models import TestResult
from shardrun.work.accounting import OUTSIDE_FILES_ID, reconcile, reconcile_junit

A, B, C = "spec/a_spec.rb", "spec/b_spec.rb", "spec/c_spec.rb"


def flat(*events: object) -> list[dict]:
    out: list[dict] = []
    for event in events:
        out += event if isinstance(event, list) else [event]  # type: ignore[list-item]
    return out


def outcomes(settled) -> dict[str, tuple[str, str]]:  # type: ignore[no-untyped-def]
    return {test.id: (test.unit, test.outcome) for test in settled.tests}


def test_a_clean_batch_reports_each_test_and_a_unit_without_tests_as_empty() -> None:
    events = flat(collected(f"{A}[1:1]", f"{A}[1:2]"), ran(f"{A}[1:1]"),
                  ran(f"{A}[1:2]", "failed", message="expected 2"), done(1))
    settled = reconcile([A, B], events, process(1))
    assert outcomes(settled) == {f"{A}[1:1]": (A, "passed"), f"{A}[1:2]": (A, "failed")}
    assert settled.empty_units == (B,)
    assert settled.unrun == ()


def test_the_name_a_test_finishes_with_is_its_name() -> None:
    """RSpec names a one-liner (`it { is_expected.to eq 2 }`) only as it runs it: the
    start says "two ", the finish "two is expected to eq 2", as a serial run's JUnit."""
    events = flat(collected(f"{A}[1:1]"), start(f"{A}[1:1]", name="two "),
                  finish(f"{A}[1:1]", name="two is expected to eq 2"), done(0))
    settled = reconcile([A], events, process(0))
    assert [test.name for test in settled.tests] == ["two is expected to eq 2"]


def test_a_test_killed_at_the_timeout_is_an_error_and_the_rest_go_back() -> None:
    """rspec_junit_formatter wrote such a hung example as passed: here it is an error."""
    events = flat(collected(f"{A}[1:1]", f"{A}[1:2]", f"{A}[1:3]"), ran(f"{A}[1:1]"),
                  start(f"{A}[1:2]"))
    settled = reconcile([A, B], events, process(2, timed_out=True), timeout_seconds=3)
    hung = next(t for t in settled.tests if t.id == f"{A}[1:2]")
    assert (hung.outcome, hung.origin) == ("error", "interrupted")
    assert hung.message == "interrupted: killed after the batch timeout (--timeout 3 s)"
    assert settled.unrun == (f"{A}[1:3]", B)
    assert settled.unrun_reason == "killed after the batch timeout (--timeout 3 s)"
    assert settled.empty_units == ()


def test_a_runner_killed_by_a_signal_names_the_signal() -> None:
    events = flat(collected(f"{A}[1:1]"), start(f"{A}[1:1]"))
    settled = reconcile([A], events, process(None, sig=signal.SIGKILL))
    assert settled.tests[0].message == "interrupted: killed by signal 9 (SIGKILL)"


def test_exit_inside_a_test_is_an_error_even_with_exit_status_zero() -> None:
    events = flat(collected(f"{A}[1:1]", f"{A}[1:2]"), start(f"{A}[1:1]"),
                  {"e": "abort", "reason": "the process exited (exit 0) during the batch"})
    settled = reconcile([A], events, process(0))
    assert outcomes(settled) == {f"{A}[1:1]": (A, "error")}
    assert "exited (exit 0)" in settled.tests[0].message
    assert settled.unrun == (f"{A}[1:2]",)


def test_an_abort_outranks_a_done_event() -> None:
    """pytest.exit(returncode=0) ends the session 'cleanly': the abort still counts."""
    events = flat(collected("t.py::a", "t.py::b"), start("t.py::a"),
                  {"e": "abort", "reason": "the session was stopped (Exit: bye)"}, done(0))
    settled = reconcile(["t.py"], events, process(0))
    assert settled.tests[0].outcome == "error"
    assert settled.unrun == ("t.py::b",)


def test_a_runner_that_exits_without_ending_the_batch_sends_everything_back() -> None:
    settled = reconcile([A, B], [], process(1))
    assert settled.tests == ()
    assert settled.unrun == (A, B)
    assert settled.unrun_reason == "the runner exited with code 1 before the batch ended"


def test_tests_collected_but_never_started_after_a_clean_end_go_back() -> None:
    """A project's own -x/--fail-fast the runner could not override: never silence."""
    events = flat(collected("t.py::a", "t.py::b"), ran("t.py::a", "failed"), done(1))
    settled = reconcile(["t.py"], events, process(1))
    assert settled.unrun == ("t.py::b",)
    assert "early-stop" in settled.unrun_reason


def test_a_file_that_fails_to_load_is_an_error_and_the_others_go_back() -> None:
    """rspec runs no example at all once one file fails to load."""
    events = flat(collected(f"{A}[1:1]"),
                  {"e": "file_error", "file": B, "message": "An error occurred while loading "
                   "./spec/b_spec.rb.", "details": "SyntaxError"}, done(1))
    settled = reconcile([A, B, C], events, process(1))
    assert outcomes(settled) == {B: (B, "error")}
    assert settled.unrun == (A, C)  # C had nothing collected, but the error may hide it
    assert "failed to load" in settled.unrun_reason


def test_a_load_error_of_a_file_whose_tests_ran_is_an_error_of_its_own() -> None:
    """An after(:context) hook fails after its examples passed: serial rspec exits 1."""
    events = flat(collected(f"{A}[1:1]"), ran(f"{A}[1:1]"),
                  {"e": "file_error", "file": A, "message": "after(:context) hook"}, done(1))
    settled = reconcile([A], events, process(1))
    assert outcomes(settled) == {f"{A}[1:1]": (A, "passed"), A: (A, "error")}


def test_a_suite_hook_error_fails_every_unit_that_ran_nothing_or_the_run() -> None:
    before = flat(collected(), {"e": "batch_error", "message": "before(:suite)"}, done(1))
    assert outcomes(reconcile([A, B], before, process(1))) == {A: (A, "error"), B: (B, "error")}
    after = flat(collected(f"{A}[1:1]"), ran(f"{A}[1:1]"),
                 {"e": "batch_error", "message": "after(:suite)"}, done(1))
    assert outcomes(reconcile([A], after, process(1)))[OUTSIDE_FILES_ID] == ("", "error")


def test_ids_map_to_the_closest_unit_of_the_batch() -> None:
    units = ["t.py::TestX", "t.py::test_p", f"{A}[1:2]"]
    events = flat(ran("t.py::TestX::test_y"), ran("t.py::test_p[1]"), ran(f"{A}[1:2:3]"),
                  ran("u.py::test_z"), done(0))
    settled = reconcile(units, events, process(0))
    assert outcomes(settled) == {"t.py::TestX::test_y": ("t.py::TestX", "passed"),
                                 "t.py::test_p[1]": ("t.py::test_p", "passed"),
                                 f"{A}[1:2:3]": (f"{A}[1:2]", "passed"),
                                 "u.py::test_z": ("", "passed")}


def test_malformed_events_are_ignored_and_do_not_count_as_results() -> None:
    events = [{"e": "start"}, {"e": "finish", "id": 7}, {"no": "kind"}, {"e": "collected"},
              *ran(f"{A}[1:1]", "bogus", seconds=float("nan")), done(0)]
    settled = reconcile([A], events, process(0))
    [test] = settled.tests
    assert (test.outcome, test.seconds) == ("error", 0.0)


def test_file_times_are_summed_per_file_of_the_batch() -> None:
    """Two top-level groups of one file add up; a file outside the batch (a helper's
    group) and a malformed time teach nothing."""
    events = flat(ran(f"{A}[1:1]"), file_time(A, 1.5), ran(f"{A}[2:1]"), file_time(A, 0.75),
                  file_time("spec/support/helper.rb", 9.0),
                  {"e": "file_time", "file": B, "seconds": "soon"},
                  {"e": "file_time", "seconds": 3.0}, done(0))
    settled = reconcile([A, B], events, process(0))
    assert dict(settled.file_seconds) == {A: 2.25, B: 0.0}


def test_the_fixture_set_up_a_test_shares_is_read_and_never_above_its_seconds() -> None:
    events = flat(ran(f"{A}::test_a", seconds=2.5, shared=2.0),
                  ran(f"{A}::test_b", seconds=0.5, shared=9.0),
                  ran(f"{A}::test_c", seconds=0.5, shared="lots"), done(0))
    settled = reconcile([A], events, process(0))
    assert [test.shared_seconds for test in settled.tests] == [2.0, 0.5, 0.0]


def test_notes_are_kept_once() -> None:
    note = {"e": "note", "text": "the project's fail_fast (1) was ignored per batch"}
    settled = reconcile([A], [note, note, done(0)], process(0))
    assert settled.notes == ("the project's fail_fast (1) was ignored per batch",)


def junit_test(test_id: str, file: str, outcome: str = "passed") -> TestResult:
    return TestResult(test_id, "", file, outcome)


def test_a_partial_junit_from_a_killed_command_is_marked_incomplete() -> None:
    """A `command` batch cannot report events: a file with testcases after a kill gets an
    error saying its results may be incomplete; files without any go back."""
    tests = [junit_test("tests/a.py::t", "tests/a.py")]
    settled = reconcile_junit(["tests/a.py", "tests/b.py"], tests,
                              process(None, sig=signal.SIGTERM))
    assert [(t.id, t.outcome) for t in settled.tests] == [
        ("tests/a.py::t", "passed"), ("tests/a.py (incomplete)", "error")]
    assert settled.unrun == ("tests/b.py",)


def test_a_clean_command_batch_trusts_its_junit() -> None:
    tests = [junit_test("tests/a.py::t", "tests/a.py", "failed")]
    settled = reconcile_junit(["tests/a.py", "tests/b.py"], tests, process(1))
    assert [t.unit for t in settled.tests] == ["tests/a.py"]
    assert settled.empty_units == ("tests/b.py",)
    assert reconcile_junit(["tests/a.py"], [], process(3)).unrun == ("tests/a.py",)
