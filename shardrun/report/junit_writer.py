"""The merged JUnit XML document: what GitHub, GitLab, CircleCI and Jenkins read.

Kept apart from report.py's accounting because its shape is dictated by what CI tools
read rather than by shardrun's rules: Jenkins/Ant's junit-10.xsd (a copy in
tests/fixtures), plus two conventions outside it that the tools rely on:

- `file` and `line` on each testcase, as rspec_junit_formatter and pytest write them
  (CircleCI splits by timings per file with them, GitLab links failures to the file);
- Maven Surefire's rerun elements for a test that ran more than once: its final result is
  the testcase's, and each earlier failed attempt is a `<flakyFailure>`/`<flakyError>`
  (the test then passed) or `<rerunFailure>`/`<rerunError>` (it failed again) inside it,
  which Jenkins' JUnit plugin and others show as flaky. One testcase per test, always.

tests/fixtures/junit-shardrun.xsd is junit-10.xsd with exactly these additions.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from junitparser import Attr, Error, Failure, JUnitXml, Skipped, TestCase, TestSuite

from shardrun.files import write_text
from shardrun.report.merge import Attempt, CaseResult, RunReport

# XML 1.0 forbids most control characters; test output (ANSI colours) is full of them.
_NOT_XML_CHARACTERS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class _FileSuite(TestSuite):
    """A testsuite with the `file` attribute junit-10.xsd allows on testsuite (not testcase)."""

    file = Attr()

    def count(self, cases: list[CaseResult]) -> None:
        """The suite's totals from the results it was made of, as junitparser's
        update_statistics would count them from the XML it holds: that walk, done once by
        add_testcases and again by the root, was a third of writing a 2,400-test report."""
        outcomes = Counter(case.outcome for case in cases)
        self.tests = len(cases)  # in junitparser's order: the XML stays byte for byte
        self.errors = outcomes["error"]
        self.failures = outcomes["failed"]
        self.skipped = outcomes["skipped"]
        self.time = round(sum(round(case.seconds, 3) for case in cases), 3)


class _MergedXml(JUnitXml):
    """The testsuites root as junit-10.xsd allows it: no `skipped` attribute there."""

    def update_statistics(self) -> None:
        """The totals of the suites, each counted as it was made (`_FileSuite.count`)."""
        suites = list(self)
        self.tests = sum(suite.tests for suite in suites)
        self.failures = sum(suite.failures for suite in suites)
        self.errors = sum(suite.errors for suite in suites)
        self.time = round(sum(suite.time for suite in suites), 3)


def junit_xml(report: RunReport) -> str:
    """One JUnit document valid against junit-10.xsd: a testsuite per (file, shard attempt).

    Per file because GitLab, GitHub reporters and CircleCI group and link results by suite
    name, file and classname, so "spec/a_spec.rb" reads better than "shard 3". Split by
    shard attempt because the schema allows <properties> on testsuite only, never on
    testcase: the suite's shard/worker/attempt properties then hold for each testcase in it.
    """
    groups: dict[tuple[str, int, int, str], list[CaseResult]] = defaultdict(list)
    for case in report.cases:
        groups[(case.file, case.batch_id, case.attempt, case.worker)].append(case)
    name_counts = Counter(file for file, _, _, _ in groups)
    root = _MergedXml("shardrun")
    for (file, batch_id, attempt, worker), cases in groups.items():
        name = file or "(unknown file)"
        if name_counts[file] > 1:
            name = f"{name} (shard {batch_id}, attempt {attempt})"
        suite = _FileSuite(_xml_text(name))
        if file:
            suite.file = _xml_text(file)
        if batch_id >= 0:
            suite.hostname = _xml_text(worker.rsplit(":", 1)[0])
            for key, value in (("shard", batch_id), ("worker", worker), ("attempt", attempt)):
                suite.add_property(key, _xml_text(str(value)))
        suite.extend([_junit_case(case) for case in cases])  # type: ignore[no-untyped-call]
        suite.count(cases)
        root.append(suite)  # type: ignore[no-untyped-call]  # not add_testsuite: O(n^2)
    root.update_statistics()
    text: bytes = root.tostring()  # type: ignore[no-untyped-call]
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + text.decode("utf-8") + "\n"


def _junit_case(case: CaseResult) -> TestCase:
    """One testcase: name, classname, file, line, time, its final result element, its
    earlier failed attempts, and its output."""
    junit_case = TestCase(_xml_text(case.name), _xml_text(case.classname), round(case.seconds, 3))
    if case.file:
        junit_case._elem.set("file", _xml_text(case.file))
    if case.line:
        junit_case._elem.set("line", str(case.line))
    kinds = {"failed": Failure, "error": Error, "skipped": Skipped}
    if case.outcome in kinds:
        entry = kinds[case.outcome](_xml_text(case.message), _xml_text(case.result_type))
        if case.details:
            entry.text = _xml_text(case.details)
        junit_case.result = [entry]
    for attempt in case.earlier:
        _add_attempt(junit_case, attempt, passed_at_last=case.outcome == "passed")
    if case.system_out:
        junit_case.system_out = _xml_text(case.system_out)
    if case.system_err:
        junit_case.system_err = _xml_text(case.system_err)
    return junit_case


def _add_attempt(junit_case: TestCase, attempt: Attempt, *, passed_at_last: bool) -> None:
    """An earlier failed attempt, as Surefire writes it: flaky when the test passed in
    the end, a rerun when it kept failing."""
    kind = "Failure" if attempt.outcome == "failed" else "Error"
    element = _child(junit_case._elem, ("flaky" if passed_at_last else "rerun") + kind)
    element.set("message", _xml_text(attempt.message))
    element.set("type", _xml_text(attempt.result_type))
    for tag, text in (("stackTrace", attempt.details), ("system-out", attempt.system_out),
                      ("system-err", attempt.system_err)):
        if text:
            _child(element, tag).text = _xml_text(text)


def _child(parent: Any, tag: str) -> Any:
    """A new child element, made by the parent's own library (junitparser uses lxml when
    it is installed, else xml.etree: their elements do not mix)."""
    child = parent.makeelement(tag, {})
    parent.append(child)
    return child


def _xml_text(text: str) -> str:
    return _NOT_XML_CHARACTERS.sub("\ufffd", text)


def write_junit(report: RunReport, path: Path) -> None:
    """Write the merged XML as files.write_text writes: through a symlink, in place into a
    FIFO or device (`--junit-out /dev/stdout`), else through a temp file and a rename, so
    a CI uploader or a concurrent reader never sees half a report."""
    write_text(path, junit_xml(report), "merged JUnit")
