"""The merged JUnit XML document: what GitHub, GitLab, CircleCI and Jenkins read.

Kept apart from report.py's accounting because its shape is dictated by a schema
(Jenkins/Ant junit-10.xsd, a copy in tests/fixtures) rather than by shardrun's rules.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

from junitparser import Attr, Error, Failure, JUnitXml, Skipped, TestCase, TestSuite

from shardrun.files import write_text
from shardrun.report import CaseResult, RunReport

# XML 1.0 forbids most control characters; test output (ANSI colours) is full of them.
_NOT_XML_CHARACTERS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class _FileSuite(TestSuite):
    """A testsuite with the `file` attribute junit-10.xsd allows on testsuite (not testcase)."""

    file = Attr()


class _MergedXml(JUnitXml):
    """The testsuites root as junit-10.xsd allows it: no `skipped` attribute there."""

    def update_statistics(self) -> None:
        suites = list(self)
        for suite in suites:
            suite.update_statistics()
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
        groups[(case.file, case.shard_index, case.attempt, case.worker)].append(case)
    name_counts = Counter(file for file, _, _, _ in groups)
    root = _MergedXml("shardrun")
    for (file, shard_index, attempt, worker), cases in groups.items():
        name = file or "(unknown file)"
        if name_counts[file] > 1:
            name = f"{name} (shard {shard_index}, attempt {attempt})"
        suite = _FileSuite(_xml_text(name))
        if file:
            suite.file = _xml_text(file)
        if shard_index >= 0:
            suite.hostname = _xml_text(worker.rsplit(":", 1)[0])
            for key, value in (("shard", shard_index), ("worker", worker), ("attempt", attempt)):
                suite.add_property(key, _xml_text(str(value)))
        flaky = [case.name for case in cases if case.flaky]
        if flaky:  # the schema has no place for properties on a testcase
            suite.add_property("flaky", _xml_text(", ".join(flaky)))
        suite.add_testcases([_junit_case(case) for case in cases])
        root.append(suite)  # not add_testsuite: it compares every pair of suites
    root.update_statistics()
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + root.tostring().decode("utf-8") + "\n"


def _junit_case(case: CaseResult) -> TestCase:
    """A fresh testcase (a copy of the input's would carry file/line/properties, which the
    schema forbids): name, classname, time, one result element and the output."""
    junit_case = TestCase(_xml_text(case.name), _xml_text(case.classname), round(case.seconds, 3))
    kinds = {"failed": Failure, "error": Error, "skipped": Skipped}
    if case.outcome in kinds:
        entry = kinds[case.outcome](_xml_text(case.message), _xml_text(case.result_type))
        if case.details:
            entry.text = _xml_text(case.details)
        junit_case.result = [entry]
    if case.system_out:
        junit_case.system_out = _xml_text(case.system_out)
    if case.system_err:
        junit_case.system_err = _xml_text(case.system_err)
    return junit_case


def _xml_text(text: str) -> str:
    return _NOT_XML_CHARACTERS.sub("\ufffd", text)


def write_junit(report: RunReport, path: Path) -> None:
    """Write the merged XML as files.write_text writes: through a symlink, in place into a
    FIFO or device (`--junit-out /dev/stdout`), else through a temp file and a rename, so
    a CI uploader or a concurrent reader never sees half a report."""
    write_text(path, junit_xml(report), "merged JUnit")
