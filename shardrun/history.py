"""The timing history: recent samples per unit in a versioned JSON file, and estimates.

Why a module of its own: timings.py turns what test runners wrote (JUnit XML, rspec JSON,
knapsack, pytest-split, parallel_tests) into Durations; this module is what shardrun keeps
between runs and how it prices units. It reads Durations from timings and never the
reverse, so parsing stays free of the file-keeping rules (atomic writes, moving a corrupt
file aside) and of the guess for units without history.

Pure (DESIGN.md rule 1): reads and writes its own file but imports neither redis, rq nor
subprocess. The history schema, the estimate and the rule for units without history are
documented in docs/timings.md; keep the two in step.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from shardrun.errors import InputError
from shardrun.timings import Durations, file_of_unit, normalize_unit

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
_HISTORY_SECTIONS = ("version", "files", "examples")
# Run records kept in the "runs" section (runlog.py, docs/dashboard.md): about two weeks of
# a few CI runs a day, enough for the dashboard's trend charts.
RUNS_KEPT = 50
# Only the newest runs keep their batches' unit lists (the dashboard's Gantt hover shows
# the latest run's): 50 runs x 5,000 spec paths would otherwise add ~15 MB to a file that
# every plan reads. Older batches keep `unit_count`.
RUNS_WITH_UNITS = 3


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
                key = normalize_unit(unit)
                old = target[key].samples if key in target else ()
                target[key] = FileStats.from_samples((*old, float(seconds)), at)

    def estimate(self, unit: str) -> float | None:
        """The median of the kept samples of a known file or example; None if unknown."""
        key = normalize_unit(unit)
        stats = self._files.get(key) or self._examples.get(key)
        return stats.estimate if stats else None

    def estimates(self, units: Sequence[str], root: Path) -> dict[str, float]:
        """Seconds for every unit (keys as given), guessing unknown ones (docs/timings.md)."""
        return _Estimator(self, units, root).run()

    def files(self) -> dict[str, FileStats]:
        return dict(self._files)

    def examples(self) -> dict[str, FileStats]:
        return dict(self._examples)

    def runs(self) -> list[dict[str, Any]]:
        """The run records, oldest first; anything in "runs" that is not an object is skipped."""
        runs = self.extra.get("runs")
        return [run for run in runs if isinstance(run, dict)] if isinstance(runs, list) else []

    def add_run(self, record: Mapping[str, Any], keep: int = RUNS_KEPT) -> None:
        """Append a run record, keeping the last `keep`; older ones drop their unit lists."""
        runs = [*self.runs(), dict(record)][-keep:] if keep > 0 else []
        cut = len(runs) - RUNS_WITH_UNITS
        self.extra["runs"] = [_without_units(run) if i < cut else run for i, run in enumerate(runs)]

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
        self.units = {unit: normalize_unit(unit) for unit in units}
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


def _without_units(run: dict[str, Any]) -> dict[str, Any]:
    """A run record whose batches keep their unit count but not the unit names."""
    batches = run.get("batches")
    if not isinstance(batches, list):
        return run
    slim = [
        {key: value for key, value in batch.items() if key != "units"}
        if isinstance(batch, dict) else batch
        for batch in batches
    ]
    return {**run, "batches": slim}


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
