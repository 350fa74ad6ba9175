"""Testcases of a `command` batch's JUnit XML, as TestResults. Pure.

rspec and pytest batches report each test as an event (accounting.py); a user's command
(`--command 'bin/test {files} --junit-out {junit}'`) can only leave a JUnit file behind,
which the worker reads here. defusedxml parses (the file is written by arbitrary test
code: no DTD, no entity expansion) and junitparser reads the tree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, cast
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as safe_etree
from defusedxml import DefusedXmlException
from junitparser import Attr, Error, Failure, JUnitXml, JUnitXmlError, Skipped, TestCase, TestSuite

from shardrun.models import TestResult
from shardrun.plan.timings import testcase_file


class _SourceCase(TestCase):
    """junitparser's testcase plus the `file`/`line` attributes rspec and xunit1 write."""

    file = Attr()
    line = Attr()


class _SourceSuite(TestSuite):
    testcase = _SourceCase


class _SourceXml(JUnitXml):
    testsuite = _SourceSuite


def read_testcases(xml: str | None) -> tuple[list[TestResult], str | None]:
    """The report's testcases, or why it is unusable; never raises on bad input."""
    if not xml or not xml.strip():
        return [], "no JUnit written"
    try:
        root = safe_etree.fromstring(xml, forbid_dtd=True)
        suites = _SourceXml.fromroot(cast(Any, root))
        return [_result_of(case) for suite in suites
                for case in cast(Iterable[_SourceCase], suite)], None
    except (ParseError, DefusedXmlException, JUnitXmlError, ValueError, TypeError) as exc:
        return [], f"malformed JUnit XML ({type(exc).__name__}: {exc})"


def _result_of(case: _SourceCase) -> TestResult:
    outcome, entry = _outcome_of(case)
    file = testcase_file(case.classname, case.file, case.name) or ""
    name, classname = case.name or "", case.classname or ""
    return TestResult(
        id=testcase_id(file, classname, name), unit="", file=file, outcome=outcome,
        seconds=_seconds_of(case), line=int(case.line) if (case.line or "").isdigit() else None,
        name=name, classname=classname,
        message=(entry.message or "") if entry is not None else "",
        details=(entry.text or "") if entry is not None else "",
        result_type=(entry.type or "") if entry is not None else "",
        stdout=case.system_out or "", stderr=case.system_err or "",
    )


def testcase_id(file: str, classname: str, name: str) -> str:
    """The pytest node id when the classname is the file's module (xunit), else
    `file::classname::name`: unique within the report, though no framework selects it."""
    if file.endswith(".py") and name:
        module = file[: -len(".py")].replace("/", ".")
        if classname == module or classname.startswith(module + "."):
            classes = classname[len(module) + 1:].split(".") if classname != module else []
            return "::".join([file, *classes, name])
    return "::".join(part for part in (file, classname, name) if part)


def _seconds_of(case: TestCase) -> float:
    """The testcase's time; a negative (clock skew) or non-finite one counts as 0."""
    seconds = case.time or 0.0
    return seconds if math.isfinite(seconds) and seconds > 0 else 0.0


def _outcome_of(case: TestCase) -> tuple[str, Error | Failure | Skipped | None]:
    """The worst result element wins: error over failure over skipped."""
    entries = case.result
    for kind, outcome in ((Error, "error"), (Failure, "failed"), (Skipped, "skipped")):
        for entry in entries:
            if isinstance(entry, kind):
                return outcome, entry
    return "passed", None
