"""Timing files in, Durations out: JUnit XML, rspec JSON, knapsack, pytest-split, parallel_tests.

Pure (DESIGN.md rule 1): this module reads files but imports neither redis, rq nor
subprocess. What is kept between runs and how units are priced lives in history.py, which
imports this module (never the reverse). The input formats are documented in
docs/timings.md; keep the two in step.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from xml.etree.ElementTree import Element, ParseError

import junitparser
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as defused_fromstring

from shardrun.errors import InputError

SUPPORTED_FORMATS = (
    "JUnit XML (<testsuites> or <testsuite>)",
    "rspec --format json",
    'knapsack report {"path": seconds}',
    'pytest-split .test_durations {"node id": seconds}',
    "parallel_tests runtime log (path:seconds lines)",
)
# Source extensions that mark a dotted JUnit classname as a file name (jest: "foo.test.js").
_PATH_SUFFIXES = frozenset({"rb", "py", "js", "jsx", "mjs", "cjs", "ts", "tsx", "go", "feature"})
_RSPEC_ID = re.compile(r"^(?P<file>.+?)\[[\d:]+\]$")  # spec/a_spec.rb[1:2:1]
_RSPEC_LOCATION = re.compile(r"^(?P<file>.+?)(?::\d+)+$")  # spec/a_spec.rb:12:30
_DOTTED_NAME = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")
# "path:seconds"; a path has no whitespace, so "Run options: ..." and blank lines are skipped.
_RUNTIME_LINE = re.compile(r"^(?P<path>\S+):(?P<seconds>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)$")
# The most seconds one sample may claim: 30 days. No CI keeps a job running that long
# (GitHub Actions stops one after 6 h, GitLab's longest timeout is a month), so more is a
# typo or a broken clock; and a bound keeps sums of samples far from float overflow (1e308
# summed twice is inf, which no plan can be judged by).
MAX_SAMPLE_SECONDS = 30 * 24 * 3600.0
# A Windows drive ("C:/Users/..."): as absolute as "/home/...".
_DRIVE = re.compile(r"^[A-Za-z]:/")


@dataclass(frozen=True)
class Durations:
    """What one timing source says: seconds per test file and, when it knows, per example."""

    files: dict[str, float]
    examples: dict[str, float]
    source: str


# A key is normalized wherever it crosses a boundary (history, plan, results, merge), so
# the same few thousand keys are normalized tens of thousands of times at the end of a run:
# 0.1-0.2 s for 2,400 examples. Both functions are pure, so their answers are kept.
_KEYS_REMEMBERED = 1 << 17


@functools.lru_cache(maxsize=_KEYS_REMEMBERED)
def normalize_path(path: str) -> str:
    """One spelling per file, so timings from rspec ("./spec/x") and discovery ("spec/x") meet."""
    path = re.sub(r"/{2,}", "/", path.strip().replace("\\", "/"))
    while path.startswith("./"):
        path = path[2:].lstrip()
    return path


def is_absolute_key(path: str) -> bool:
    """A timing key that names a file from the root of some machine's disk."""
    return path.startswith("/") or bool(_DRIVE.match(path))


def is_project_key(path: str) -> bool:
    """A normalized timing key that stays inside the project: relative, no ".." part.

    Keys come from files anyone can commit or upload; "../../etc/passwd" or "/etc/passwd"
    must neither be kept in the history nor shown, whatever exists on this machine.
    """
    return bool(path) and not is_absolute_key(path) and ".." not in path.split("/")


@functools.lru_cache(maxsize=_KEYS_REMEMBERED)
def file_of_unit(unit: str) -> str:
    """The file a unit runs in: a file is itself; an rspec id or pytest node id its file."""
    if "::" in unit:
        return normalize_path(unit.split("::", 1)[0])
    path = normalize_path(unit)
    for pattern in (_RSPEC_ID, _RSPEC_LOCATION):
        match = pattern.match(path)
        if match:
            return match["file"]
    return path


def normalize_unit(unit: str) -> str:
    """Normalize only the path part: a pytest parameter id may hold a backslash."""
    if "::" in unit:
        path, rest = unit.split("::", 1)
        return f"{normalize_path(path)}::{rest}"
    return normalize_path(unit)


def _seconds(value: Any, what: str, source: str) -> float:
    """Seconds from a timing file: a finite number; negatives (clock skew) count as 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{source}: {what}: {value!r} is not a finite number of seconds; fix it")
    if value > MAX_SAMPLE_SECONDS:
        raise InputError(
            f"{source}: {what}: {value!r} seconds is more than {MAX_SAMPLE_SECONDS:.0f} (30 days)"
            "; no test runs that long: fix or regenerate the file"
        )
    return max(float(value), 0.0)


def _add(totals: dict[str, float], key: str, seconds: float) -> None:
    totals[key] = totals.get(key, 0.0) + seconds


# ---------------------------------------------------------------- JUnit XML


class _FileTestCase(junitparser.TestCase):
    """junitparser's testcase plus the `file` attribute rspec and pytest xunit1 write."""

    file = junitparser.Attr()


class _FileTestSuite(junitparser.TestSuite):
    testcase = _FileTestCase


class _FileJUnitXml(junitparser.JUnitXml):
    testsuite = _FileTestSuite


def testcase_file(
    classname: str | None,
    file_attr: str | None,
    name: str | None = None,
    *,
    root: Path | None = None,
) -> str | None:
    """The file a JUnit testcase belongs to, or None when nothing says (docs/timings.md).

    `file` wins (rspec, pytest xunit1). Otherwise a classname with a "/" is a path (jest,
    gotestsum) and a dotted one a Python module; pytest writes collection errors with an
    empty classname and the module in `name`. `root`, when given, resolves dotted names
    to the longest prefix that is a real module.
    """
    if file_attr and file_attr.strip():
        return normalize_path(file_attr)
    dotted = (classname or "").strip() or (name or "").strip()
    if not dotted:
        return None
    if "/" in dotted or "\\" in dotted or dotted.rsplit(".", 1)[-1] in _PATH_SUFFIXES:
        return normalize_path(dotted)
    if not _DOTTED_NAME.match(dotted):
        return None  # free text, e.g. jest's "Calculator adds": no file to be found
    return _module_file(dotted.split("."), root)


def _module_file(parts: list[str], root: Path | None) -> str:
    """Map `a.b.test_c.TestX` to `a/b/test_c.py` (rspec's `spec.x_spec` to `spec/x_spec.rb`)."""
    if root is not None:
        for end in range(len(parts), 0, -1):
            candidate = "/".join(parts[:end]) + ".py"
            if (root / candidate).is_file():
                return candidate
    for index in range(len(parts) - 1, -1, -1):
        part = parts[index]
        if part.startswith("test_") or part.endswith("_test"):
            return "/".join(parts[: index + 1]) + ".py"
        if part.endswith("_spec"):
            return "/".join(parts[: index + 1]) + ".rb"
    end = len(parts)
    while end > 1 and parts[end - 1][:1].isupper():
        end -= 1  # drop class names: CapWords by PEP 8
    return "/".join(parts[:end]) + ".py"


def _pytest_example_id(path: str, classname: str | None, name: str | None) -> str | None:
    """Rebuild the pytest node id `file::Class::name`; only Python files have them here."""
    if not path.endswith(".py") or not classname or not name:
        return None
    module = path[: -len(".py")].replace("/", ".")
    if classname.startswith(module + "."):
        classes = classname[len(module) + 1 :].split(".")
    else:
        classes = [part for part in classname.split(".") if part[:1].isupper()]
    return "::".join([path, *[c for c in classes if c], name])


def _junit_root(xml: str | bytes, source: str) -> Element:
    """Parse through defusedxml: reports come from CI artifacts, i.e. from anyone."""
    if not xml.strip():
        raise InputError(f"{source}: the JUnit file is empty; did the test run crash? rerun it")
    try:
        return defused_fromstring(xml)
    except DefusedXmlException as exc:
        raise InputError(
            f"{source}: refusing XML with entity or DTD tricks ({exc!r}); JUnit reports never"
            " need them: regenerate the report with your test runner"
        ) from exc
    except (ParseError, ValueError) as exc:
        raise InputError(
            f"{source}: not well-formed XML ({exc}); it is truncated (did the test run"
            " crash?) or not XML at all: rerun the tests or delete the file"
        ) from exc


def _case_seconds(case: _FileTestCase, source: str) -> float:
    what = f"testcase {case.name!r} time"
    try:
        return _seconds(case.time or 0.0, what, source)
    except ValueError as exc:  # junitparser's float() of the attribute
        raise InputError(f"{source}: {what} is not a number of seconds; fix the file") from exc


def _parse_junit(xml: str | bytes, source: str, root: Path | None) -> Durations:
    """Per-file seconds = the sum of its testcases; pytest testcases also give example ids."""
    element = _junit_root(xml, source)
    if element.tag not in ("testsuites", "testsuite"):
        raise InputError(
            f"{source}: not a JUnit report: the root element is <{element.tag}>, not"
            " <testsuites> or <testsuite>; pass the XML file your test runner wrote"
        )
    report = _FileJUnitXml.fromroot(cast(Any, element))
    files: dict[str, float] = {}
    examples: dict[str, float] = {}
    for suite in report:
        for case in cast(Iterable[_FileTestCase], suite):
            path = testcase_file(case.classname, case.file, case.name, root=root)
            if path is None:
                continue
            seconds = _case_seconds(case, source)
            _add(files, path, seconds)
            example = _pytest_example_id(path, case.classname, case.name)
            if example is not None:
                _add(examples, example, seconds)
    return Durations(files, examples, source)


def parse_junit_text(xml: str, source: str, *, root: Path | None = None) -> Durations:
    """Durations from JUnit XML text (a worker's report); errors name `source`."""
    return _parse_junit(xml, source, root)


def read_junit(path: Path, *, root: Path | None = None) -> Durations:
    """Durations from a JUnit XML file; bytes go to the parser so its encoding is honoured."""
    return _parse_junit(_read_bytes(path), str(path), root)


# ---------------------------------------------------------------- other formats


def parse_rspec_json(text: str, source: str) -> Durations:
    """rspec --format json: per-example run_time, summed per file.

    The file is the one in the example id, which is what rspec runs; `file_path` names
    where a shared example is *defined* and is used only when there is no id (rspec < 3.3).
    """
    data = _load_json(text, source)
    if not isinstance(data, dict) or not isinstance(data.get("examples"), list):
        raise InputError(f'{source}: not rspec JSON (no "examples" list); run rspec --format json')
    files: dict[str, float] = {}
    examples: dict[str, float] = {}
    for index, example in enumerate(data["examples"]):
        if not isinstance(example, dict):
            raise InputError(f"{source}: examples[{index}] is not an object; fix the file")
        seconds = _seconds(example.get("run_time") or 0.0, f"examples[{index}].run_time", source)
        unit = normalize_unit(str(example.get("id") or example.get("file_path") or ""))
        if not unit:
            continue
        _add(files, file_of_unit(unit), seconds)
        if unit != file_of_unit(unit):
            _add(examples, unit, seconds)
    return Durations(files, examples, source)


def _durations_from_mapping(data: Mapping[str, Any], source: str) -> Durations:
    """knapsack (file -> s) and pytest-split (node id -> s): one shape, split by key kind.

    A file listed directly keeps its own total; otherwise its examples are summed.
    """
    direct: dict[str, float] = {}
    summed: dict[str, float] = {}
    examples: dict[str, float] = {}
    for key, value in data.items():
        seconds = _seconds(value, repr(key), source)
        unit = normalize_unit(key)
        path = file_of_unit(unit)
        if path == unit:
            direct[path] = seconds
        else:
            examples[unit] = seconds
            _add(summed, path, seconds)
    return Durations({**summed, **direct}, examples, source)


def _parse_runtime_log(text: str, source: str) -> Durations | None:
    """parallel_tests: `path:seconds` lines; the last value wins (logs hold runs back to back)."""
    files: dict[str, float] = {}
    for line in text.splitlines():
        match = _RUNTIME_LINE.match(line.strip())
        if match:
            path = normalize_path(match["path"])
            files[path] = _seconds(float(match["seconds"]), repr(path), source)
    return Durations(files, {}, source) if files else None


def _load_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}: not valid JSON ({exc}); regenerate the file") from exc
    except RecursionError:  # json recurses once per level: "[[[[..." 100,000 deep
        raise InputError(
            f"{source}: JSON nested too deeply to be a timing file; regenerate the file"
        ) from None


def _unknown_format(source: str, what: str) -> InputError:
    formats = "; ".join(SUPPORTED_FORMATS)
    return InputError(f"{source}: {what}: not a supported timing format ({formats})")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror}); check the path") from exc


def _parse_json_durations(text: str, source: str) -> Durations:
    data = _load_json(text, source)
    if isinstance(data, dict) and "examples" in data:
        return parse_rspec_json(text, source)
    if isinstance(data, dict) and all(isinstance(k, str) for k in data):
        return _durations_from_mapping(data, source)
    raise _unknown_format(source, "JSON of an unknown shape")


def _looks_like_xml(raw: bytes) -> bool:
    """Starts with "<" after a UTF-8 BOM and whitespace: an XML declaration may name any
    encoding, so XML must not first be decoded as UTF-8."""
    return raw.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"<")


def load_durations(path: Path) -> Durations:
    """Any supported timing file, recognised by its content rather than its name."""
    raw = _read_bytes(path)
    source = str(path)
    if _looks_like_xml(raw):  # the parser honours its declared encoding (ISO-8859-1, ...)
        return _parse_junit(raw, source, None)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _unknown_format(source, "not UTF-8 text") from exc
    head = text.lstrip()
    if not head:
        raise InputError(f"{source}: the file is empty; point at a timing file with content")
    if head.startswith("<"):
        return _parse_junit(raw, source, None)
    if head[0] in "{[":
        return _parse_json_durations(text, source)
    log = _parse_runtime_log(text, source)
    if log is None:
        raise _unknown_format(source, "no line looks like path:seconds")
    return log
