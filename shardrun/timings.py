"""Timing files in, estimates out: JUnit XML and friends -> Durations -> history -> seconds.

Pure (DESIGN.md rule 1): this module reads and writes files but imports neither redis, rq
nor subprocess. The input formats, the history schema, the estimate and the rule for
units without history are documented in docs/timings.md; keep the two in step.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import junitparser
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as defused_fromstring

from shardrun.errors import InputError

DEFAULT_HISTORY_PATH = Path(".shardrun/timings.json")
HISTORY_VERSION = 1
# Samples kept per unit: about two weeks of daily CI runs. Their median ignores up to four
# outlier runs (cold cache, noisy neighbour) yet follows a real change within ~5 runs.
SAMPLES_KEPT = 10
# Seconds per byte of test source when no file under the root has history. Only ratios
# matter for balancing; 1e-4 s/byte makes a typical 5 KB spec file take 0.5 s.
DEFAULT_SECONDS_PER_BYTE = 1e-4
# Seconds for a unit that neither the history nor the file system knows.
FALLBACK_SECONDS = 1.0
SUPPORTED_FORMATS = (
    "JUnit XML (<testsuites> or <testsuite>)",
    "rspec --format json",
    'knapsack report {"path": seconds}',
    'pytest-split .test_durations {"node id": seconds}',
    "parallel_tests runtime log (path:seconds lines)",
)
_HISTORY_SECTIONS = ("version", "files", "examples")
# Source extensions that mark a dotted JUnit classname as a file name (jest: "foo.test.js").
_PATH_SUFFIXES = frozenset({"rb", "py", "js", "jsx", "mjs", "cjs", "ts", "tsx", "go", "feature"})
_RSPEC_ID = re.compile(r"^(?P<file>.+?)\[[\d:]+\]$")  # spec/a_spec.rb[1:2:1]
_RSPEC_LOCATION = re.compile(r"^(?P<file>.+?)(?::\d+)+$")  # spec/a_spec.rb:12:30
_DOTTED_NAME = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")
# "path:seconds"; a path has no whitespace, so "Run options: ..." and blank lines are skipped.
_RUNTIME_LINE = re.compile(r"^(?P<path>\S+):(?P<seconds>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)$")


@dataclass(frozen=True)
class Durations:
    """What one timing source says: seconds per test file and, when it knows, per example."""

    files: dict[str, float]
    examples: dict[str, float]
    source: str


@dataclass(frozen=True)
class FileStats:
    """The samples kept for one file or example, and the estimate the planner uses."""

    samples: tuple[float, ...]
    estimate: float
    updated_at: float | None = None

    @classmethod
    def from_samples(cls, samples: Sequence[float], updated_at: float | None) -> FileStats:
        """Median, not mean: one slow CI run must not reshuffle every shard for ten runs."""
        kept = tuple(float(s) for s in samples[-SAMPLES_KEPT:])
        return cls(kept, statistics.median(kept), updated_at)


class _HistoryShapeError(ValueError):
    """The history file is JSON but not the documented schema."""


def normalize_path(path: str) -> str:
    """One spelling per file, so timings from rspec ("./spec/x") and discovery ("spec/x") meet."""
    path = re.sub(r"/{2,}", "/", path.strip().replace("\\", "/"))
    while path.startswith("./"):
        path = path[2:].lstrip()
    return path


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


def _normalize_unit(unit: str) -> str:
    """Normalize only the path part: a pytest parameter id may hold a backslash."""
    if "::" in unit:
        path, rest = unit.split("::", 1)
        return f"{normalize_path(path)}::{rest}"
    return normalize_path(unit)


def _seconds(value: Any, what: str, source: str) -> float:
    """Seconds from a timing file: a finite number; negatives (clock skew) count as 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{source}: {what}: {value!r} is not a finite number of seconds; fix it")
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
    report = _FileJUnitXml.fromroot(element)
    files: dict[str, float] = {}
    examples: dict[str, float] = {}
    for suite in report:
        for case in suite:
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
        unit = _normalize_unit(str(example.get("id") or example.get("file_path") or ""))
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
        unit = _normalize_unit(key)
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
            files[normalize_path(match["path"])] = float(match["seconds"])
    return Durations(files, {}, source) if files else None


def _load_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}: not valid JSON ({exc}); regenerate the file") from exc


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


def load_durations(path: Path) -> Durations:
    """Any supported timing file, recognised by its content rather than its name."""
    raw = _read_bytes(path)
    source = str(path)
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


# ---------------------------------------------------------------- history


class History:
    """Recent samples per file and per example, kept in a versioned JSON file.

    `extra` holds top-level sections this version does not know (e.g. "runs"), written
    back untouched so later features can add data without a version bump.
    """

    def __init__(self, path: Path = DEFAULT_HISTORY_PATH) -> None:
        self.path = path
        self._files: dict[str, FileStats] = {}
        self._examples: dict[str, FileStats] = {}
        self.extra: dict[str, Any] = {}

    @classmethod
    def load(cls, path: Path) -> History:
        """A missing file is an empty history; a corrupt one is moved aside (never lost)."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls(path)
        except OSError as exc:
            raise InputError(f"{path}: cannot read the timing history ({exc.strerror})") from exc
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _quarantine(path, f"not JSON: {exc}") from exc
        _check_version(path, data)
        history = cls(path)
        try:
            history._files = _entries_from_json(data.get("files", {}), "files")
            history._examples = _entries_from_json(data.get("examples", {}), "examples")
        except _HistoryShapeError as exc:
            raise _quarantine(path, str(exc)) from exc
        history.extra = {k: v for k, v in data.items() if k not in _HISTORY_SECTIONS}
        return history

    def record(self, durations: Durations, at: float | None = None) -> None:
        """Append one sample per file and per example, keeping the last SAMPLES_KEPT."""
        at = time.time() if at is None else at
        for target, measured in (
            (self._files, durations.files),
            (self._examples, durations.examples),
        ):
            for unit, seconds in measured.items():
                key = _normalize_unit(unit)
                old = target[key].samples if key in target else ()
                target[key] = FileStats.from_samples((*old, float(seconds)), at)

    def estimate(self, unit: str) -> float | None:
        """The median of the kept samples of a known file or example; None if unknown."""
        key = _normalize_unit(unit)
        stats = self._files.get(key) or self._examples.get(key)
        return stats.estimate if stats else None

    def estimates(self, units: Sequence[str], root: Path) -> dict[str, float]:
        """Seconds for every unit (keys as given), guessing unknown ones (docs/timings.md)."""
        return _Estimator(self, units, root).run()

    def files(self) -> dict[str, FileStats]:
        return dict(self._files)

    def examples(self) -> dict[str, FileStats]:
        return dict(self._examples)

    def save(self, root: Path | None = None) -> None:
        """Write atomically; with `root`, first forget units whose file is gone from it."""
        if root is not None:
            self._files = {k: v for k, v in self._files.items() if (root / k).exists()}
            self._examples = {
                k: v for k, v in self._examples.items() if (root / file_of_unit(k)).exists()
            }
        extra = {k: v for k, v in self.extra.items() if k not in _HISTORY_SECTIONS}
        data = {
            "version": HISTORY_VERSION,
            "files": _entries_to_json(self._files),
            "examples": _entries_to_json(self._examples),
            **extra,
        }
        _write_atomically(self.path, json.dumps(data, indent=2) + "\n")


class _Estimator:
    """The unknown-unit rule of docs/timings.md, computed once per `estimates` call."""

    def __init__(self, history: History, units: Sequence[str], root: Path) -> None:
        self.history = history
        self.root = root
        self.units = {unit: _normalize_unit(unit) for unit in units}
        self.examples_requested: dict[str, int] = defaultdict(int)
        for unit in self.units.values():
            if file_of_unit(unit) != unit:
                self.examples_requested[file_of_unit(unit)] += 1
        self.known_examples: dict[str, list[float]] = defaultdict(list)
        for example, stats in history.examples().items():
            self.known_examples[file_of_unit(example)].append(stats.estimate)
        known_files = [stats.estimate for stats in history.files().values()]
        self.fallback = statistics.median(known_files) if known_files else FALLBACK_SECONDS
        self.seconds_per_byte = self._seconds_per_byte()

    def _seconds_per_byte(self) -> float:
        """Median rate over timed files still on disk: robust to one odd (fixture-heavy) file."""
        rates = []
        for path, stats in self.history.files().items():
            size = _size(self.root / path)
            if size:
                rates.append(stats.estimate / size)
        return statistics.median(rates) if rates else DEFAULT_SECONDS_PER_BYTE

    def file_seconds(self, path: str) -> float:
        known = self.history.estimate(path)
        if known is not None:
            return known
        size = _size(self.root / path)
        return self.fallback if size is None else size * self.seconds_per_byte

    def unit_seconds(self, unit: str) -> float:
        known = self.history.estimate(unit)
        if known is not None:
            return known
        path = file_of_unit(unit)
        if path == unit:
            return self.file_seconds(path)
        siblings = self.known_examples.get(path)
        if siblings:
            return statistics.median(siblings)
        return self.file_seconds(path) / max(self.examples_requested[path], 1)

    def run(self) -> dict[str, float]:
        return {unit: self.unit_seconds(key) for unit, key in self.units.items()}


def _size(path: Path) -> int | None:
    """Byte size of a regular file, None when there is none (a directory has no useful size)."""
    try:
        return path.stat().st_size if path.is_file() else None
    except OSError:
        return None


def _check_version(path: Path, data: Any) -> None:
    """A newer file is left alone (an upgrade can read it); anything else unversioned is corrupt."""
    version = data.get("version") if isinstance(data, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version > HISTORY_VERSION:
        raise InputError(
            f"{path}: timing history version {version} was written by a newer shardrun; "
            "upgrade shardrun or pass --timings with another file"
        )
    if version != HISTORY_VERSION:
        raise _quarantine(path, f'expected an object with "version": {HISTORY_VERSION}')


def _entries_from_json(section: Any, name: str) -> dict[str, FileStats]:
    if not isinstance(section, dict):
        raise _HistoryShapeError(f'"{name}" is not an object')
    entries = {}
    for unit, entry in section.items():
        samples = entry.get("samples") if isinstance(entry, dict) else None
        if (
            not isinstance(samples, list)
            or not samples
            or not all(
                isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s)
                for s in samples
            )
        ):
            raise _HistoryShapeError(f'"{name}"["{unit}"] has no list of sample seconds')
        updated_at = entry.get("updated_at")
        at = float(updated_at) if isinstance(updated_at, (int, float)) else None
        entries[unit] = FileStats.from_samples(samples, at)
    return entries


def _entries_to_json(entries: Mapping[str, FileStats]) -> dict[str, dict[str, Any]]:
    """Sorted, rounded: teams commit this file, so diffs should show only real changes."""
    return {
        unit: {
            "samples": [round(s, 6) for s in stats.samples],
            "estimate": round(stats.estimate, 6),
            "updated_at": stats.updated_at,
        }
        for unit, stats in sorted(entries.items())
    }


def _quarantine(path: Path, reason: str) -> InputError:
    """Move a corrupt history aside under a new name and say so; the next run starts afresh."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    attempt = 1
    while True:
        suffix = "" if attempt == 1 else f"-{attempt}"
        target = path.with_name(f"{path.name}.corrupt-{stamp}{suffix}")
        try:
            os.link(path, target)  # unlike rename, fails rather than overwrite an earlier copy
            break
        except FileExistsError:
            attempt += 1
    path.unlink()
    return InputError(
        f"{path}: timing history is corrupt ({reason}); moved it to {target.name}. "
        "Run again: a new history starts (the old one is kept for inspection)"
    )


def _write_atomically(path: Path, text: str) -> None:
    """Temp file in the same directory + os.replace: readers see the old or the new file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise InputError(f"{path}: cannot write the timing history ({exc})") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        if isinstance(exc, OSError):
            raise InputError(f"{path}: cannot write the timing history ({exc})") from exc
        raise
