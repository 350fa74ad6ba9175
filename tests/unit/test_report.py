"""report.merge and friends on small JUnit texts: accounting, crashes, XML validity, JSON.

The terminal summary and the rerun command are tested in test_summary.py.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from lxml import etree
from support.junit_samples import (
    PYTEST_FAILURE,
    RSPEC_FAILURE,
    outcome,
    pytest_case,
    result,
    rspec_case,
    suite,
)

from shardrun.junit_writer import junit_xml, write_junit
from shardrun.models import ProcessOutcome
from shardrun.report import CRASH_ERROR_TYPE, NO_RESULT, RunReport, merge
from shardrun.summary import rerun_command, summary_lines

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "fixtures" / "junit-10.xsd"


def validate(xml: str) -> None:
    """Fail with lxml's message when `xml` does not follow junit-10.xsd."""
    schema = etree.XMLSchema(etree.parse(str(SCHEMA_PATH)))
    document = etree.fromstring(xml.encode("utf-8"))
    assert schema.validate(document), schema.error_log


def outcomes(report: RunReport) -> list[tuple[str, str]]:
    return [(case.unit, case.outcome) for case in report.cases]


def test_totals_count_every_testcase_once(mixed: RunReport) -> None:
    assert (mixed.tests, mixed.failures, mixed.errors, mixed.skipped) == (4, 1, 0, 1)
    assert mixed.seconds == pytest.approx(3.75)
    assert not mixed.passed
    root = etree.fromstring(junit_xml(mixed).encode())
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "1", "0")
    assert float(root.get("time")) == pytest.approx(3.75)
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert suites["spec/a_spec.rb"].get("skipped") == "1"
    assert suites["spec/a_spec.rb"].get("tests") == "3"
    assert suites["spec/b_spec.rb"].get("time") == "2.0"


def test_all_passing_run_passes() -> None:
    shard = result(0, ("spec/b_spec.rb",), suite(rspec_case("B passes", "spec/b_spec.rb")))
    report = merge(["spec/b_spec.rb"], [shard])
    assert report.passed
    assert summary_lines(report, framework="rspec")[-1] == "1 passed, 0 failed"
    assert rerun_command(report, "rspec") is None


def test_retry_replaces_earlier_attempt() -> None:
    first = result(0, ("spec/a_spec.rb",), suite(
        rspec_case("A fails", "spec/a_spec.rb", body=RSPEC_FAILURE)), process=outcome(1))
    retry = result(0, ("spec/a_spec.rb",), suite(rspec_case("A fails", "spec/a_spec.rb")),
                   attempt=2, finished=5.0)
    report = merge(["spec/a_spec.rb"], [retry, first])
    assert outcomes(report) == [("spec/a_spec.rb", "passed")]
    assert report.cases[0].attempt == 2
    assert report.passed


def test_duplicate_delivery_keeps_the_later_finish() -> None:
    early = result(0, ("spec/b_spec.rb",), suite(rspec_case("B one", "spec/b_spec.rb")),
                   finished=1.0)
    late = result(0, ("spec/b_spec.rb",), suite(rspec_case("B two", "spec/b_spec.rb")),
                  finished=2.0)
    report = merge(["spec/b_spec.rb"], [late, early])
    assert [case.name for case in report.cases] == ["B two"]


def test_retry_of_a_crashed_shard_covers_its_units() -> None:
    crashed = result(0, ("spec/a_spec.rb", "spec/b_spec.rb"), None, process=outcome(None, sig=9))
    retry = result(0, ("spec/a_spec.rb", "spec/b_spec.rb"), suite(
        rspec_case("A", "spec/a_spec.rb"), rspec_case("B", "spec/b_spec.rb")), attempt=2)
    report = merge(["spec/a_spec.rb", "spec/b_spec.rb"], [crashed, retry])
    assert report.passed
    assert report.tests == 2


def test_signal_crash_gives_an_error_per_unit_with_the_signal_name() -> None:
    tail = "Segmentation fault\x1b[0m\n"
    crashed = result(1, ("spec/c_spec.rb", "spec/d_spec.rb"), None,
                     process=outcome(None, sig=signal.SIGSEGV, tail=tail))
    report = merge(["spec/c_spec.rb", "spec/d_spec.rb"], [crashed])
    assert outcomes(report) == [("spec/c_spec.rb", "error"), ("spec/d_spec.rb", "error")]
    case = report.cases[0]
    assert case.message == "killed by signal 11 (SIGSEGV)"
    assert (case.classname, case.name, case.result_type) == ("spec/c_spec.rb", "spec/c_spec.rb",
                                                             CRASH_ERROR_TYPE)
    assert case.system_out == tail
    assert [c.unit for c in report.crashed] == ["spec/c_spec.rb", "spec/d_spec.rb"]
    xml = junit_xml(report)
    validate(xml)  # the escape character is replaced, not written into the XML
    assert "Segmentation fault" in xml


def test_crash_after_some_files_ran_only_errors_the_rest() -> None:
    partial = suite(rspec_case("A passes", "spec/a_spec.rb"))
    shard = result(0, ("spec/a_spec.rb", "spec/b_spec.rb"), partial,
                   process=outcome(None, timed_out=True, wall=300.0))
    report = merge(["spec/a_spec.rb", "spec/b_spec.rb"], [shard])
    assert outcomes(report) == [("spec/a_spec.rb", "passed"), ("spec/b_spec.rb", "error")]
    assert report.cases[1].message == "timed out after 300.0 s"


@pytest.mark.parametrize(
    ("xml", "process", "error", "message"),
    [
        (None, outcome(139), None, "no JUnit written; exit code 139"),
        ("", outcome(0), None, "no JUnit written; exit code 0"),
        (None, outcome(None), "rspec: command not found", "worker error: rspec: command not found"),
        (suite(), outcome(3), None, "exit code 3 and no testcase for this unit"),
    ],
)
def test_lost_units_say_why(xml: str | None, process: ProcessOutcome, error: str | None,
                            message: str) -> None:
    shard = result(0, ("tests/test_t.py",), xml, process=process, error=error)
    report = merge(["tests/test_t.py"], [shard])
    assert [(case.outcome, case.message) for case in report.cases] == [("error", message)]
    assert not report.passed


def test_unit_without_any_result_is_an_error() -> None:
    shard = result(0, ("spec/a_spec.rb",), suite(rspec_case("A", "spec/a_spec.rb")))
    report = merge(["spec/a_spec.rb", "spec/z_spec.rb"], [shard])
    lost = report.cases[-1]
    assert (lost.unit, lost.outcome, lost.message, lost.shard_index) == (
        "spec/z_spec.rb", "error", NO_RESULT, -1)
    validate(junit_xml(report))


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
def test_malformed_junit_is_a_crash_not_an_exception(xml: str) -> None:
    shard = result(0, ("spec/a_spec.rb",), xml, process=outcome(1))
    report = merge(["spec/a_spec.rb"], [shard])
    [case] = report.cases
    assert case.outcome == "error"
    assert case.message.startswith("malformed JUnit XML")
    assert "root:" not in junit_xml(report)


def test_clean_exit_without_testcases_is_zero_examples() -> None:
    shard = result(0, ("spec/a_spec.rb", "spec/empty_spec.rb"),
                   suite(rspec_case("A", "spec/a_spec.rb")))
    report = merge(["spec/a_spec.rb", "spec/empty_spec.rb"], [shard])
    assert report.empty_units == ("spec/empty_spec.rb",)
    assert report.passed
    assert "Ran with zero examples: spec/empty_spec.rb" in summary_lines(report, framework="rspec")


def test_pytest_no_tests_collected_is_zero_examples() -> None:
    shard = result(0, ("tests/test_empty.py",), suite(), process=outcome(5))
    report = merge(["tests/test_empty.py"], [shard])
    assert report.empty_units == ("tests/test_empty.py",)
    assert report.passed


def test_exit_one_explained_by_failures_leaves_empty_files_empty() -> None:
    xml = suite(rspec_case("A fails", "spec/a_spec.rb", body=RSPEC_FAILURE))
    shard = result(0, ("spec/a_spec.rb", "spec/empty_spec.rb"), xml, process=outcome(1))
    report = merge(["spec/a_spec.rb", "spec/empty_spec.rb"], [shard])
    assert report.empty_units == ("spec/empty_spec.rb",)
    assert report.errors == 0


def test_exit_one_without_failures_is_a_load_error() -> None:
    """rspec exits 1 and runs nothing when a spec file fails to load: never green."""
    shard = result(0, ("spec/a_spec.rb", "spec/broken_spec.rb"), suite(), process=outcome(1))
    report = merge(["spec/a_spec.rb", "spec/broken_spec.rb"], [shard])
    assert [case.message for case in report.cases] == [
        "exit code 1 and no testcase for this unit"] * 2
    assert not report.passed


def test_pytest_interrupted_run_errors_the_uncollected_files() -> None:
    collection_error = pytest_case("", "tests.test_bad", 0.0,
                                   '<error message="collection failure">ImportError</error>')
    shard = result(0, ("tests/test_bad.py", "tests/test_t.py"), suite(collection_error),
                   process=outcome(2))
    report = merge(["tests/test_bad.py", "tests/test_t.py"], [shard])
    assert outcomes(report) == [("tests/test_bad.py", "error"), ("tests/test_t.py", "error")]
    assert report.cases[1].message == "exit code 2 and no testcase for this unit"


def test_testcases_of_unplanned_files_are_kept_and_flagged() -> None:
    xml = suite(rspec_case("A", "spec/a_spec.rb"), rspec_case("Helper", "spec/helper_spec.rb"))
    report = merge(["spec/a_spec.rb"], [result(0, ("spec/a_spec.rb",), xml)])
    assert outcomes(report) == [("spec/a_spec.rb", "passed"), ("", "passed")]
    assert report.unplanned_files == ("spec/helper_spec.rb",)
    assert report.tests == 2
    lines = summary_lines(report, framework="rspec")
    assert "Reported but never planned (kept in the report): spec/helper_spec.rb" in lines


def test_pytest_node_id_units_of_a_split_file() -> None:
    units = ["tests/test_t.py::TestT::test_a", "tests/test_t.py::test_b",
             "tests/test_t.py::test_c"]
    shard0 = result(0, (units[0], units[2]), suite(
        pytest_case("tests.test_t.TestT", "test_a", body=PYTEST_FAILURE)), process=outcome(1))
    shard1 = result(1, (units[1],), suite(pytest_case("tests.test_t", "test_b[1]"),
                                          pytest_case("tests.test_t", "test_b[2]")))
    report = merge(units, [shard0, shard1])
    assert sorted(outcomes(report)) == sorted([
        (units[0], "failed"), (units[1], "passed"), (units[1], "passed")])
    assert report.empty_units == (units[2],)  # deselected or gone: exit 1 is explained


def test_rspec_example_ids_of_one_file_share_its_testcases() -> None:
    units = ["spec/a_spec.rb[1:1]", "spec/a_spec.rb[1:2]", "spec/a_spec.rb[1:3]"]
    shard0 = result(0, (units[0], units[1]), suite(rspec_case("A one", "spec/a_spec.rb"),
                                                   rspec_case("A two", "spec/a_spec.rb")))
    shard1 = result(1, (units[2],), None, process=outcome(None, sig=signal.SIGKILL))
    report = merge(units, [shard0, shard1])
    assert outcomes(report) == [(units[0], "passed"), (units[0], "passed"), (units[2], "error")]
    assert report.cases[2].message == "killed by signal 9 (SIGKILL)"
    assert rerun_command(report, "rspec") == "rspec 'spec/a_spec.rb[1:3]'"
    validate(junit_xml(report))


def test_merged_xml_validates_against_junit_10_schema() -> None:
    tiny_time = pytest_case("tests.test_t", "test_fast", 1e-07)
    odd_times = [pytest_case("tests.test_t", f"test_{t}", t) for t in ("nan", "inf", "-3")]
    props = ('<properties><property name="k" value="v"/></properties>'
             "<system-out>out</system-out><system-err>err</system-err>")
    shard0 = result(0, ("spec/a_spec.rb[1:1]",), suite(
        rspec_case("A fails", "spec/a_spec.rb", body=RSPEC_FAILURE),
        rspec_case("A waits", "spec/a_spec.rb", body="<skipped message='later'/>")),
        process=outcome(1))
    shard1 = result(1, ("spec/a_spec.rb[1:2]", "tests/test_t.py"), suite(
        rspec_case("A passes", "spec/a_spec.rb"), tiny_time, *odd_times,
        pytest_case("tests.test_t", "test_props", body=props)))
    report = merge(["spec/a_spec.rb[1:1]", "spec/a_spec.rb[1:2]", "tests/test_t.py",
                    "spec/lost_spec.rb"], [shard0, shard1])
    xml = junit_xml(report)
    validate(xml)
    root = etree.fromstring(xml.encode())
    names = [s.get("name") for s in root.iter("testsuite")]
    assert len(names) == len(set(names)) == 4
    first = root.find("testsuite")
    assert {p.get("name"): p.get("value") for p in first.iter("property")} == {
        "shard": "0", "worker": "host0:100", "attempt": "1"}
    assert first.get("hostname") == "host0"
    assert first.get("file") == "spec/a_spec.rb"
    assert root.find(".//testcase[@name='test_props']/system-err").text == "err"


def test_to_dict_is_json_with_failures_and_shards(mixed: RunReport) -> None:
    data = json.loads(json.dumps(mixed.to_dict()))
    assert data["counts"] == {"tests": 4, "failures": 1, "errors": 0, "skipped": 1, "units": 2}
    assert data["passed"] is False
    assert [(f["file"], f["line"], f["name"]) for f in data["failed"]] == [
        ("spec/a_spec.rb", 12, "A fails")]
    assert [(s["index"], s["predicted_seconds"], s["actual_seconds"]) for s in data["shards"]] == [
        (0, 1.5, 2.0), (1, 1.5, 2.0)]


def test_write_junit_replaces_the_file_whole(mixed: RunReport, tmp_path: Path) -> None:
    target = tmp_path / "reports" / "junit.xml"
    target.parent.mkdir()
    target.write_text("old")
    write_junit(mixed, target)
    assert target.read_text(encoding="utf-8") == junit_xml(mixed)
    assert [p.name for p in target.parent.iterdir()] == ["junit.xml"]
    validate(target.read_text(encoding="utf-8"))


def test_failed_then_passed_on_retry_is_flaky_and_counted_once() -> None:
    first = result(0, ("spec/a_spec.rb", "spec/b_spec.rb"), suite(
        rspec_case("A passes", "spec/a_spec.rb"),
        rspec_case("B wobbles", "spec/b_spec.rb", body=RSPEC_FAILURE),
    ), process=outcome(1))
    retry = result(1, ("spec/b_spec.rb",), suite(rspec_case("B wobbles", "spec/b_spec.rb")),
                   attempt=2, finished=20.0)
    report = merge(["spec/a_spec.rb", "spec/b_spec.rb"], [first, retry])
    assert outcomes(report) == [("spec/a_spec.rb", "passed"), ("spec/b_spec.rb", "passed")]
    assert report.passed
    assert [case.name for case in report.flaky] == ["B wobbles"]
    assert report.attempts == {"spec/a_spec.rb": 1, "spec/b_spec.rb": 2}
    xml = junit_xml(report)
    validate(xml)
    assert 'name="flaky" value="B wobbles"' in xml
    assert any(line.startswith("Flaky (failed, then passed on attempt 2)")
               for line in summary_lines(report, framework="rspec"))


def test_failing_again_on_retry_is_a_failure_not_flaky() -> None:
    body = RSPEC_FAILURE
    first = result(0, ("spec/b_spec.rb",), suite(rspec_case("B", "spec/b_spec.rb", body=body)),
                   process=outcome(1))
    retry = result(1, ("spec/b_spec.rb",), suite(rspec_case("B", "spec/b_spec.rb", body=body)),
                   attempt=2, process=outcome(1))
    report = merge(["spec/b_spec.rb"], [first, retry])
    assert report.failures == 1 and not report.flaky and not report.passed


def test_units_skipped_by_fail_fast_are_skipped_not_missing() -> None:
    failing = suite(rspec_case("A", "spec/a_spec.rb", body=RSPEC_FAILURE))
    shard = result(0, ("spec/a_spec.rb",), failing, process=outcome(1))
    report = merge(["spec/a_spec.rb", "spec/b_spec.rb", "spec/c_spec.rb"], [shard],
                   skipped={"spec/b_spec.rb": "fail-fast: stopped after 1 failure"})
    by_unit = {case.unit: case for case in report.cases}
    assert by_unit["spec/b_spec.rb"].outcome == "skipped"
    assert "fail-fast" in by_unit["spec/b_spec.rb"].message
    assert report.missing == ("spec/c_spec.rb",)
    validate(junit_xml(report))


def test_rspec_example_ids_sharing_a_batch_are_all_accounted_for() -> None:
    """rspec's JUnit names no example id: ids of one file in one batch share its testcases."""
    units = ("spec/a_spec.rb[1:1]", "spec/a_spec.rb[1:2]")
    shard = result(0, units, suite(rspec_case("one", "spec/a_spec.rb"),
                                   rspec_case("two", "spec/a_spec.rb")))
    report = merge(list(units), [shard])
    assert report.passed and not report.missing


def test_retried_pytest_example_keeps_only_its_latest_attempt() -> None:
    """A file split into node ids: only the failed one is retried, and counts once."""
    units = ("tests/test_t.py::test_a", "tests/test_t.py::test_b")
    first = result(0, units, suite(pytest_case("tests.test_t", "test_a"),
                                   pytest_case("tests.test_t", "test_b", body=PYTEST_FAILURE)),
                   process=outcome(1))
    retry = result(1, (units[1],), suite(pytest_case("tests.test_t", "test_b",
                                                     body=PYTEST_FAILURE)),
                   attempt=2, process=outcome(1))
    report = merge(list(units), [first, retry])
    assert outcomes(report) == [(units[0], "passed"), (units[1], "failed")]
    assert report.failures == 1


def test_retried_rspec_example_replaces_its_first_run_only() -> None:
    """rspec example ids: the first batch's testcases are credited to its first id, so
    the retried example must be dropped from it by name."""
    units = ("spec/a_spec.rb[1:1]", "spec/a_spec.rb[1:2]")
    first = result(0, units, suite(rspec_case("one", "spec/a_spec.rb"),
                                   rspec_case("two", "spec/a_spec.rb", body=RSPEC_FAILURE)),
                   process=outcome(1))
    retry = result(1, (units[1],), suite(rspec_case("two", "spec/a_spec.rb")), attempt=2)
    report = merge(list(units), [first, retry])
    assert sorted((case.name, case.outcome, case.flaky) for case in report.cases) == [
        ("one", "passed", False), ("two", "passed", True)]
    assert report.passed
