"""report.merge and the merged JUnit: each test once, each unit accounted for, XML validity.

Batches are built from runner events the way a worker builds them (support.events); the
`command` framework's JUnit path from JUnit text (support.junit_samples). The terminal
summary and the rerun command are tested in test_summary.py.
"""

from __future__ import annotations

import json
import signal
from dataclasses import replace
from pathlib import Path

import pytest
from junitparser import JUnitXml
from lxml import etree
from support.events import batch, collected, done, process, ran, start
from support.junit_samples import outcome, result, rspec_case, suite

from shardrun.report.junit_writer import junit_xml, write_junit
from shardrun.report.merge import NO_RESULT, RunReport, merge
from shardrun.report.summary import rerun_command, summary_lines

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "fixtures" / "junit-shardrun.xsd"
A, B = "spec/a_spec.rb", "spec/b_spec.rb"


def validate(xml: str) -> None:
    """Fail with lxml's message when `xml` does not follow junit-shardrun.xsd."""
    schema = etree.XMLSchema(etree.parse(str(SCHEMA_PATH)))
    document = etree.fromstring(xml.encode("utf-8"))
    assert schema.validate(document), schema.error_log


def outcomes(report: RunReport) -> list[tuple[str, str, str]]:
    return [(case.id, case.unit, case.outcome) for case in report.cases]


def test_totals_count_every_test_once(mixed: RunReport) -> None:
    assert (mixed.tests, mixed.failures, mixed.errors, mixed.skipped) == (4, 1, 0, 1)
    assert mixed.seconds == pytest.approx(3.75)
    assert not mixed.passed
    root = etree.fromstring(junit_xml(mixed).encode())
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "1", "0")
    assert float(root.get("time")) == pytest.approx(3.75)
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert suites[A].get("skipped") == "1"
    assert suites[A].get("tests") == "3"
    assert suites[B].get("time") == "2.0"


def test_suite_totals_are_what_junitparser_counts_in_the_written_xml(mixed: RunReport) -> None:
    """The writer counts each suite from its results, not from the XML: junitparser,
    reading the XML back, must find the same totals."""
    written = JUnitXml.fromstring(junit_xml(mixed).encode("utf-8"))
    totals = [(s.name, s.tests, s.failures, s.errors, s.skipped, s.time) for s in written]
    written.update_statistics()
    assert [(s.name, s.tests, s.failures, s.errors, s.skipped, s.time) for s in written] == totals
    assert sum(s.tests for s in written) == mixed.tests == written.tests


def test_every_testcase_keeps_its_file_and_line(mixed: RunReport) -> None:
    """CircleCI's timing split and GitLab's file links read these attributes."""
    xml = junit_xml(mixed)
    validate(xml)
    root = etree.fromstring(xml.encode())
    cases = {case.get("name"): case for case in root.iter("testcase")}
    assert {case.get("file") for case in cases.values()} == {A, B}
    assert cases["A fails"].get("line") == "12"  # the failing line of its backtrace
    assert cases["A passes"].get("line") == "3"  # where the runner said the test starts


def test_all_passing_run_passes() -> None:
    only = batch(0, [B], [collected(f"{B}[1:1]"), ran(f"{B}[1:1]"), done(0)])
    report = merge([B], [only])
    assert report.passed
    assert summary_lines(report, framework="rspec")[-1] == "1 passed, 0 failed"
    assert rerun_command(report, "rspec") is None


def test_a_flaky_test_appears_once_with_its_failed_attempt_inside() -> None:
    first = batch(0, [A, B], [ran(f"{A}[1:1]"), ran(f"{B}[1:1]", "failed", message="boom",
                                                  details="trace", name="B wobbles"), done(1)],
                  ending=process(1))
    retry = batch(1, [f"{B}[1:1]"], [ran(f"{B}[1:1]", name="B wobbles"), done(0)],
                  attempt=2, finished=20.0)
    report = merge([A, B], [first, retry])
    assert outcomes(report) == [(f"{A}[1:1]", A, "passed"), (f"{B}[1:1]", B, "passed")]
    assert report.passed and report.tests == 2
    [flaky] = report.flaky
    assert (flaky.attempt, [(e.attempt, e.outcome, e.message) for e in flaky.earlier]) == (
        2, [(1, "failed", "boom")])
    assert report.attempts == {A: 1, B: 1, f"{B}[1:1]": 2}
    xml = junit_xml(report)
    validate(xml)
    root = etree.fromstring(xml.encode())
    [case] = root.findall(".//testcase[@name='B wobbles']")
    [earlier] = case.findall("flakyFailure")
    assert (earlier.get("message"), earlier.find("stackTrace").text) == ("boom", "trace")
    assert case.find("failure") is None
    assert any(line.startswith("Flaky (failed, then passed on attempt 2)")
               for line in summary_lines(report, framework="rspec"))


def test_failing_again_on_retry_is_a_failure_with_its_reruns_not_flaky() -> None:
    first = batch(0, [B], [ran(f"{B}[1:1]", "failed", message="one"), done(1)], ending=process(1))
    retry = batch(1, [f"{B}[1:1]"], [ran(f"{B}[1:1]", "failed", message="two"), done(1)],
                  attempt=2, ending=process(1))
    report = merge([B], [first, retry])
    assert report.failures == 1 and not report.flaky and not report.passed
    assert report.cases[0].message == "two"
    case = etree.fromstring(junit_xml(report).encode()).find(".//testcase")
    assert [e.get("message") for e in case.findall("rerunFailure")] == ["one"]
    assert case.find("failure").get("message") == "two"


def test_a_retry_that_ran_nothing_never_replaces_what_an_earlier_attempt_reported() -> None:
    """A retry batch that dies at once (empty log, exit 1) once replaced 130 real
    testcases with one "no JUnit written"; the result of a test that ran stands."""
    first = batch(0, [A], [ran(f"{A}[1:1]"), ran(f"{A}[1:2]", "failed", message="real"),
                           done(1)], ending=process(1))
    retry = batch(1, [f"{A}[1:2]"], [], attempt=2, ending=process(1))
    again = batch(2, [f"{A}[1:2]"], [], attempt=3, ending=process(1))
    report = merge([A], [first, retry, again])
    assert outcomes(report) == [(f"{A}[1:1]", A, "passed"), (f"{A}[1:2]", A, "failed")]
    assert report.cases[1].message == "real"


def test_duplicate_delivery_keeps_the_later_finish() -> None:
    early = batch(0, [B], [ran(f"{B}[1:1]", name="one"), done(0)], finished=1.0)
    late = batch(0, [B], [ran(f"{B}[1:1]", name="two"), done(0)], finished=2.0)
    report = merge([B], [late, early])
    assert [case.name for case in report.cases] == ["two"]


def test_tests_a_batch_never_started_are_covered_by_the_batch_that_ran_them() -> None:
    crashed = batch(0, [A, B], [collected(f"{A}[1:1]"), start(f"{A}[1:1]")],
                    ending=process(None, sig=signal.SIGKILL))
    requeue = batch(1, [B], [ran(f"{B}[1:1]"), done(0)], attempt=2)
    report = merge([A, B], [crashed, requeue])
    assert outcomes(report) == [(f"{A}[1:1]", A, "error"), (f"{B}[1:1]", B, "passed")]
    assert report.cases[0].message == "interrupted: killed by signal 9 (SIGKILL)"
    assert not report.missing


def test_what_never_ran_even_on_its_second_try_is_an_error_saying_why() -> None:
    tail = "Segmentation fault\x1b[0m\n"
    crashed = batch(0, [A, B], [], ending=process(None, sig=signal.SIGSEGV, tail=tail))
    again = batch(1, [A, B], [], attempt=2, ending=process(None, sig=signal.SIGSEGV, tail=tail))
    report = merge([A, B], [crashed, again])
    assert outcomes(report) == [(A, A, "error"), (B, B, "error")]
    assert report.cases[0].message == "never ran: killed by signal 11 (SIGSEGV)"
    assert report.cases[0].system_out == tail
    assert [case.unit for case in report.crashed] == [A, B]
    assert not report.passed
    xml = junit_xml(report)
    validate(xml)  # the escape character is replaced, not written into the XML
    assert "Segmentation fault" in xml


def test_unit_without_any_result_is_an_error_the_run_cannot_vouch_for() -> None:
    only = batch(0, [A], [ran(f"{A}[1:1]"), done(0)])
    report = merge([A, "spec/z_spec.rb"], [only])
    lost = report.cases[-1]
    assert (lost.unit, lost.outcome, lost.message, lost.batch_id) == (
        "spec/z_spec.rb", "error", NO_RESULT, -1)
    assert report.missing == ("spec/z_spec.rb",)
    validate(junit_xml(report))


def test_a_clean_batch_with_nothing_for_a_unit_ran_it_with_zero_tests() -> None:
    only = batch(0, [A, "spec/empty_spec.rb"], [ran(f"{A}[1:1]"), done(0)])
    report = merge([A, "spec/empty_spec.rb"], [only])
    assert report.empty_units == ("spec/empty_spec.rb",)
    assert report.passed
    assert "Ran with zero examples: spec/empty_spec.rb" in summary_lines(report, framework="rspec")


def test_tests_of_unplanned_files_are_kept_and_flagged() -> None:
    only = batch(0, [A], [ran(f"{A}[1:1]"), ran("spec/helper_spec.rb[1:1]"), done(0)])
    report = merge([A], [only])
    assert outcomes(report) == [(f"{A}[1:1]", A, "passed"),
                                ("spec/helper_spec.rb[1:1]", "", "passed")]
    assert report.unplanned_files == ("spec/helper_spec.rb",)
    lines = summary_lines(report, framework="rspec")
    assert "Reported but never planned (kept in the report): spec/helper_spec.rb" in lines


def test_an_inherited_test_counts_for_the_module_that_collected_it() -> None:
    """pytest's own JUnit names the base class's module; 684 tests of a real suite went
    missing that way. The node id names the module that collected the test."""
    node = "tests/test_child.py::TestChild::test_x"
    only = batch(0, ["tests/test_child.py", "tests/base.py"], [ran(node), done(0)])
    report = merge(["tests/test_child.py"], [only])
    assert outcomes(report) == [(node, "tests/test_child.py", "passed")]
    assert report.passed


def test_units_and_tests_skipped_by_fail_fast_are_skipped_not_missing() -> None:
    failing = batch(0, [A], [ran(f"{A}[1:1]", "failed"), done(1)], ending=process(1))
    report = merge([A, B, "spec/c_spec.rb"], [failing],
                   skipped={B: "fail-fast: stopped after 1 failure"})
    by_unit = {case.unit: case for case in report.cases}
    assert by_unit[B].outcome == "skipped"
    assert "fail-fast" in by_unit[B].message
    assert report.missing == ("spec/c_spec.rb",)
    validate(junit_xml(report))


def test_split_file_examples_are_each_accounted_for_and_rerun_by_id() -> None:
    units = [f"{A}[1:1]", f"{A}[1:2]", f"{A}[1:3]"]
    batch0 = batch(0, units[:2], [ran(units[0]), ran(units[1]), done(0)])
    batch1 = batch(1, units[2:], [start(units[2])], ending=process(None, sig=signal.SIGKILL))
    report = merge(units, [batch0, batch1])
    assert [case.outcome for case in report.cases] == ["passed", "passed", "error"]
    assert rerun_command(report, "rspec") == "rspec 'spec/a_spec.rb[1:3]'"
    validate(junit_xml(report))


def test_merged_xml_validates_and_groups_tests_by_file_and_batch() -> None:
    props = {"stdout": "out", "stderr": "err"}
    batch0 = batch(0, [f"{A}[1:1]"], [ran(f"{A}[1:1]", "failed", details="x\x07y"),
                                       ran(f"{A}[1:1]", "skipped"), done(1)], ending=process(1))
    batch1 = batch(1, [f"{A}[1:2]", "tests/test_t.py"], [
        ran(f"{A}[1:2]"), ran("tests/test_t.py::test_fast", seconds=1e-07),
        ran("tests/test_t.py::test_props", **props), done(0)])
    report = merge([f"{A}[1:1]", f"{A}[1:2]", "tests/test_t.py", "spec/lost_spec.rb"],
                   [batch0, batch1])
    xml = junit_xml(report)
    validate(xml)
    root = etree.fromstring(xml.encode())
    names = [s.get("name") for s in root.iter("testsuite")]
    assert len(names) == len(set(names)) == 4
    first = root.find("testsuite")
    assert {p.get("name"): p.get("value") for p in first.iter("property")} == {
        "shard": "0", "worker": "host0:100", "attempt": "1"}
    assert first.get("hostname") == "host0"
    assert first.get("file") == A
    assert root.find(".//testcase[@name='test_props']/system-err").text == "err"


def test_to_dict_is_json_with_failures_and_shards(mixed: RunReport) -> None:
    data = json.loads(json.dumps(mixed.to_dict()))
    assert data["counts"] == {"tests": 4, "failures": 1, "errors": 0, "skipped": 1, "units": 2}
    assert data["passed"] is False
    assert [(f["file"], f["line"], f["name"]) for f in data["failed"]] == [(A, 12, "A fails")]
    assert [(s["index"], s["predicted_seconds"], s["actual_seconds"]) for s in data["shards"]] == [
        (0, 1.5, 2.0), (1, 1.5, 2.0)]


def test_write_junit_replaces_the_file_whole(mixed: RunReport, tmp_path: Path) -> None:
    target = tmp_path / "reports" / "junit.xml"
    target.parent.mkdir()
    target.write_text("old")
    write_junit(mixed, target)
    assert target.read_text(encoding="utf-8") == junit_xml(mixed)
    assert [p.name for p in target.parent.iterdir()] == ["junit.xml"]


def test_runner_notes_are_reported_once() -> None:
    note = {"e": "note", "text": "the project's pytest options --maxfail=1 were ignored"}
    batches = [batch(i, [f"t{i}.py"], [note, ran(f"t{i}.py::a"), done(0)]) for i in range(3)]
    report = merge([f"t{i}.py" for i in range(3)], batches)
    assert report.notes == ("the project's pytest options --maxfail=1 were ignored; shardrun's "
                            "own --fail-fast [N] stops the whole run",)


# --- `command` batches: settled from their JUnit (accounting.reconcile_junit)


@pytest.mark.parametrize(
    "xml",
    [
        "<testsuite name='x' tests='1'><testcase name='a'>",  # cut off mid-write
        "not xml at all",
        "<html><body>502 Bad Gateway</body></html>",
        "<testsuite><testcase name='a' time='soon'/></testsuite>",
        ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 '
         '"&lol;&lol;&lol;&lol;">]><testsuite name="&lol2;"/>'),
        ('<?xml version="1.0"?><!DOCTYPE t [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
         '<testsuite name="&x;"/>'),
    ],
)
def test_malformed_junit_of_a_command_never_counts_as_a_run(xml: str) -> None:
    shard = result(0, (A,), xml, process=outcome(1))
    report = merge([A], [shard])
    [case] = report.cases
    assert case.outcome == "error"
    assert case.message.startswith("never ran: malformed JUnit XML")
    assert "root:" not in junit_xml(report)


def test_a_command_killed_mid_run_marks_its_files_incomplete() -> None:
    partial = suite(rspec_case("A passes", A))
    shard = result(0, (A, B), partial, process=outcome(None, timed_out=True, wall=300.0))
    report = merge([A, B], [shard])
    assert [(case.unit, case.outcome) for case in report.cases] == [
        (A, "passed"), (A, "error"), (B, "error")]
    assert report.cases[1].message.startswith("results may be incomplete: killed after")
    assert report.cases[2].message.startswith("never ran: killed after")


def test_a_failure_only_in_a_reused_runner_is_pollution_not_flakiness() -> None:
    """Flaky means failed, then passed under the same conditions: a test that failed in a
    runner earlier batches had used and passed in a fresh process is named apart."""
    node = "tests/test_v.py::test_victim"
    first = replace(batch(0, ["tests/test_v.py"], [ran(node, "failed"), done(1)],
                          ending=process(1)), reused_runner=True)
    retry = batch(1, [node], [ran(node), done(0)], attempt=2)
    report = merge(["tests/test_v.py"], [first, retry])
    assert report.passed and not report.flaky
    assert [case.id for case in report.polluted] == [node]
    assert any(line.startswith("Polluted (failed in a runner earlier batches had used")
               for line in summary_lines(report, framework="pytest"))
    same_conditions = merge(["tests/test_v.py"], [replace(first, reused_runner=False), retry])
    assert [case.id for case in same_conditions.flaky] == [node]
    assert not same_conditions.polluted
