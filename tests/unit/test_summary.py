"""shardrun.report.summary: the terminal summary and the command that reruns the failures.

Batches come from runner events (support.events) or, for `command` batches, small JUnit
texts (support.junit_samples), like test_report.py's, and the `mixed` report from
tests/unit/conftest.py; merging is tested in test_report.py.
"""

from __future__ import annotations

import re
import signal
from dataclasses import replace

from support.events import batch, done, file_time, process, ran
from support.junit_samples import (
    PYTEST_FAILURE,
    RSPEC_FAILURE,
    outcome,
    pytest_case,
    result,
    rspec_case,
    suite,
)

from shardrun.report.merge import RunReport, merge
from shardrun.report.summary import (
    github_annotations,
    github_step_summary,
    rerun_command,
    summary_lines,
)


def test_rspec_rerun_names_example_ids_and_whole_files() -> None:
    shard0 = batch(0, ["spec/a_spec.rb"], [ran("spec/a_spec.rb[1:2]", "failed"), done(1)],
                   ending=process(1))
    shard1 = batch(1, ["spec/c d_spec.rb"], [], ending=process(None, sig=9))
    report = merge(["spec/a_spec.rb", "spec/c d_spec.rb"], [shard0, shard1])
    assert rerun_command(report, "rspec") == "rspec 'spec/a_spec.rb[1:2]' 'spec/c d_spec.rb'"


def test_a_command_batch_reruns_by_failure_line() -> None:
    xml = suite(rspec_case("A fails", "spec/a_spec.rb", body=RSPEC_FAILURE))
    report = merge(["spec/a_spec.rb"], [result(0, ("spec/a_spec.rb",), xml, process=outcome(1))])
    assert report.cases[0].line == 12
    assert rerun_command(report, "rspec") == "rspec spec/a_spec.rb:12"


def test_rerun_whole_file_wins_over_its_lines() -> None:
    xml = suite(rspec_case("A fails", "spec/a_spec.rb", body=RSPEC_FAILURE),
                rspec_case("A breaks", "spec/a_spec.rb", body="<error message='boom'/>"))
    report = merge(["spec/a_spec.rb"], [result(0, ("spec/a_spec.rb",), xml, process=outcome(1))])
    assert rerun_command(report, "rspec") == "rspec spec/a_spec.rb"


def test_pytest_rerun_quotes_node_ids() -> None:
    xml = suite(pytest_case("tests.test_t.TestT", "test_x[a b]", body=PYTEST_FAILURE),
                pytest_case("tests.test_t", "test_y", body=PYTEST_FAILURE),
                pytest_case("tests.test_t", "test_z"))
    report = merge(["tests/test_t.py"], [result(0, ("tests/test_t.py",), xml,
                                                process=outcome(1))])
    assert rerun_command(report, "pytest") == (
        "python -m pytest 'tests/test_t.py::TestT::test_x[a b]' tests/test_t.py::test_y")
    assert rerun_command(report, "command") is None
    assert report.cases[0].line == 7


def test_summary_lines(mixed: RunReport) -> None:
    lines = summary_lines(mixed, framework="rspec", slowest=1)
    assert lines[0] == "Failures:"
    assert "  FAILED spec/a_spec.rb:12 A fails: expected: 2" in lines
    assert "  rspec 'spec/a_spec.rb[1:2]'" in lines
    assert "  shard 0 attempt 1 on w0 (host0:100): predicted 1.5 s, actual 2.0 s (+0.5 s)" in lines
    assert lines[lines.index("Slowest files:") + 1] == "  2.0 s  spec/b_spec.rb"
    assert "  1.8 s  spec/a_spec.rb" not in lines
    assert lines[-2:] == ["Finished (3.8 s of test time)", "2 passed, 1 failed, 1 skipped"]


def test_summary_gives_the_runs_time_and_the_tests_apart(mixed: RunReport) -> None:
    lines = summary_lines(mixed, framework="rspec", wall_seconds=1.25)
    assert lines[-2] == "Finished in 1.2 s (3.8 s of test time)"


def test_summary_counts_once(mixed: RunReport) -> None:
    """The counts were given twice (first line and last), which invites a mismatch: only
    the last line counts, as the last line of rspec and pytest does."""
    lines = summary_lines(mixed, framework="rspec", wall_seconds=1.25)
    counting = [line for line in lines if re.search(r"\d+ (passed|failures?|tests?)\b", line)]
    assert counting == ["2 passed, 1 failed, 1 skipped"], lines


def test_summary_predicts_nothing_without_timings(mixed: RunReport) -> None:
    lines = summary_lines(mixed, framework="rspec", timed=False)
    assert "  shard 0 attempt 1 on w0 (host0:100): actual 2.0 s" in lines
    assert not any("predicted 1.5 s" in line for line in lines)
    assert any(line.startswith("Shards (no timings yet") for line in lines)


def test_summary_compares_the_run_with_the_tests_back_to_back(mixed: RunReport) -> None:
    """3.75 s of tests plus the least time a batch spent outside its tests (shard 1: none)."""
    lines = summary_lines(mixed, framework="rspec", wall_seconds=1.25)
    assert lines[-3] == "2 workers: 1.2 s; back to back these tests take ~4 s (3.0x)"
    assert not any("back to back" in line
                   for line in summary_lines(mixed, framework="rspec"))  # no wall time


def test_back_to_back_adds_one_boot_and_ignores_crashed_batches() -> None:
    """One boot: the least time outside its tests of a batch that started its process
    (here 1.0 s), else of any batch (0.4 s). A batch killed at once ran no test: it is
    neither a boot nor a worker."""
    shard0 = result(0, ("spec/a_spec.rb",), suite(rspec_case("A", "spec/a_spec.rb", 10.0)),
                    process=outcome(0, wall=11.0))
    shard1 = result(1, ("spec/b_spec.rb",), suite(rspec_case("B", "spec/b_spec.rb", 12.0)),
                    process=outcome(0, wall=12.4))
    killed = result(2, ("spec/c_spec.rb",), None, process=outcome(None, sig=9, wall=0.1))
    units = ["spec/a_spec.rb", "spec/b_spec.rb", "spec/c_spec.rb"]

    booted = merge(units, [shard0, replace(shard1, warm=True), killed])
    assert "2 workers: 8.0 s; back to back these tests take ~23 s (2.9x)" in summary_lines(
        booted, framework="rspec", wall_seconds=8.0)
    all_warm = merge(units, [replace(shard0, warm=True), replace(shard1, warm=True), killed])
    assert "2 workers: 8.0 s; back to back these tests take ~22 s (2.8x)" in summary_lines(
        all_warm, framework="rspec", wall_seconds=8.0)


def test_back_to_back_counts_each_files_hooks_once_and_not_as_a_boot() -> None:
    """A file whose before(:all) takes 2 s runs it once back to back too; it is no
    process start, and the cheapest start (0.1 s, the plain file's batch) stays one."""
    hooked = batch(0, ["spec/h_spec.rb"], [
        ran("spec/h_spec.rb[1:1]", seconds=0.5), file_time("spec/h_spec.rb", 2.5), done(0)],
        ending=process(0, wall=2.6))
    plain = batch(1, ["spec/p_spec.rb"], [
        ran("spec/p_spec.rb[1:1]", seconds=0.5), file_time("spec/p_spec.rb", 0.5), done(0)],
        ending=process(0, wall=0.6))
    report = merge(["spec/h_spec.rb", "spec/p_spec.rb"], [hooked, plain])
    # 1 s of tests, 2 s of hook, 0.1 s of boot: 3.1 s, not 1.1 s.
    lines = summary_lines(report, framework="rspec", wall_seconds=2.6)
    assert "2 workers: 2.6 s; back to back these tests take ~3 s (1.2x)" in lines
    slowest = lines.index("Slowest files:")
    assert lines[slowest + 1:slowest + 3] == ["  2.5 s  spec/h_spec.rb", "  0.5 s  spec/p_spec.rb"]


def test_summary_names_crashed_units_and_counts_errors_as_failed() -> None:
    crashed = batch(0, ["spec/c_spec.rb"], [], ending=process(None, sig=signal.SIGSEGV))
    lines = summary_lines(merge(["spec/c_spec.rb"], [crashed]), framework="rspec")
    assert "Not run: spec/c_spec.rb: never ran: killed by signal 11 (SIGSEGV)" in lines
    assert "Failures:" not in lines  # a lost unit is listed once, under "Not run"
    assert lines[-1] == "0 passed, 1 failed"



def test_github_annotations_and_step_summary(mixed: RunReport) -> None:
    annotations = github_annotations(mixed)
    assert annotations == [
        "::error file=spec/a_spec.rb,line=12,title=spec.a_spec A fails::expected: 2"
    ]
    markdown = github_step_summary(mixed, "rspec")
    assert "### shardrun: failed" in markdown
    assert "| 4 | 1 | 0 | 1 | 0 |" in markdown
    assert "rspec 'spec/a_spec.rb[1:2]'" in markdown


def test_github_annotation_escapes_newlines_and_separators() -> None:
    shard = result(0, ("spec/a_spec.rb",), suite(rspec_case(
        "a, b: c", "spec/a_spec.rb",
        body='<failure message="line one&#10;line two 100%">x</failure>')), process=outcome(1))
    report = merge(["spec/a_spec.rb"], [shard])
    (annotation,) = github_annotations(report)
    assert "title=spec.a_spec a%2C b%3A c" in annotation
    assert annotation.endswith("::line one%0Aline two 100%25")


def test_per_worker_lines_say_1_batch_not_1_batches() -> None:
    units = [f"tests/test_{index}.py" for index in range(13)]
    results = [replace(batch(index, [unit], [ran(f"{unit}::test_x"), done()],
                             worker="busy:1" if index else "late:2"),
                       worker_index=1 if index else 2)
               for index, unit in enumerate(units)]
    lines = summary_lines(merge(units, results), framework="pytest")
    assert any(line.startswith("  w2 (late:2): 1 batch, ") for line in lines), lines
    assert any(line.startswith("  w1 (busy:1): 12 batches, ") for line in lines), lines
