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

import hashlib
import json
import logging
import math
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from shardrun.errors import InputError, ShardrunError
from shardrun.files import locked, read_regular_bytes, write_text
from shardrun.plan.estimate import Known, estimate_units, sizes_needed
from shardrun.plan.setup_cost import without_setup
from shardrun.plan.timings import (
    MAX_SAMPLE_SECONDS,
    Durations,
    file_of_unit,
    is_project_key,
    normalize_unit,
)
from shardrun.report.records import RunRecord, read_runs

log = logging.getLogger(__name__)

DEFAULT_HISTORY_PATH = Path(".shardrun/timings.json")
HISTORY_VERSION = 1
# Samples kept per unit: about two weeks of daily CI runs. Their median ignores up to four
# outlier runs (cold cache, noisy neighbour) yet follows a real change within ~5 runs.
SAMPLES_KEPT = 10
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
        # Keys of the file that were not kept on load (outside the project): for a warning.
        self.ignored_keys = 0
        # What this process added since load, replayed onto the file's newest content when
        # saving, so concurrent runs in one checkout all reach the history (see `save`).
        self._journal: list[tuple[dict[str, float], dict[str, float], float]] = []
        self._setup_journal: list[tuple[float, float]] = []
        self._new_runs: list[RunRecord] = []
        self._run_records: list[RunRecord] | None = None  # "runs" read, once (see `runs`)
        self._said_skipped = False  # the skipped records are warned about once per process
        # The digest of the file's bytes as this object last read or wrote them: a save
        # that finds the same bytes has nothing to merge (see `_merged_with_file`).
        self._digest: bytes | None = None

    @classmethod
    def load(cls, path: Path) -> History:
        """A missing file is an empty history; a corrupt one is moved aside (never lost)."""
        raw = read_regular_bytes(path, "timing history")
        if raw is None:
            return cls(path)
        history = _parse(path, raw)
        if isinstance(history, str):
            raise _quarantine(path, history)
        history._digest = _digest(raw)
        return history

    def record(self, durations: Durations, at: float | None = None) -> int:
        """Append one sample per file and per example, keeping the last SAMPLES_KEPT.

        Keys outside the project (absolute, or with "..") are not kept: the number of
        them is returned. Negative seconds (a clock that stepped back) count as 0.
        """
        at = time.time() if at is None else at
        durations, setup = without_setup(durations)
        if setup is not None:
            self._record_setup(setup, at)
            self._setup_journal.append((setup, at))
        kept: list[dict[str, float]] = [{}, {}]
        for target, measured, accepted in (
            (self._files, durations.files, kept[0]),
            (self._examples, durations.examples, kept[1]),
        ):
            for unit, seconds in measured.items():
                key = normalize_unit(unit)
                if not is_project_key(file_of_unit(key)):
                    continue
                old = target[key].samples if key in target else ()
                target[key] = FileStats.from_samples((*old, _clamped(seconds)), at)
                accepted[key] = _clamped(seconds)
        self._journal.append((kept[0], kept[1], at))
        return len(durations.files) + len(durations.examples) - len(kept[0]) - len(kept[1])

    def estimate(self, unit: str) -> float | None:
        """The median of the kept samples of a known file or example; None if unknown."""
        key = normalize_unit(unit)
        stats = self._files.get(key) or self._examples.get(key)
        return stats.estimate if stats else None

    def estimates(self, units: Sequence[str], root: Path) -> dict[str, float]:
        """Seconds for every unit (keys as given), guessing unknown ones (docs/timings.md):
        gathers the file sizes the pure rule (plan/estimate.py) needs, then applies it."""
        known = self.known()
        sizes = {path: _size(root / path) for path in sizes_needed(units, known)}
        return estimate_units(units, known, sizes)

    def known(self) -> Known:
        """Every timed file's and example's estimate, for the pure estimator."""
        return Known({key: stats.estimate for key, stats in self._files.items()},
                     {key: stats.estimate for key, stats in self._examples.items()})

    def setup_seconds(self) -> float | None:
        """A runner's set-up (plan/setup_cost.py): the median of the kept samples."""
        section = self.extra.get("setup")
        samples = section.get("samples") if isinstance(section, dict) else None
        if not isinstance(samples, list) or not samples or not all(map(_is_sample, samples)):
            return None
        return FileStats.from_samples(samples, None).estimate

    def _record_setup(self, seconds: float, at: float) -> None:
        section = self.extra.get("setup")
        old = section.get("samples") if isinstance(section, dict) else None
        samples = [s for s in old if _is_sample(s)] if isinstance(old, list) else []
        kept = FileStats.from_samples([*samples, _clamped(seconds)], at)
        self.extra["setup"] = {"samples": list(kept.samples), "updated_at": at}

    def files(self) -> dict[str, FileStats]:
        return dict(self._files)

    def examples(self) -> dict[str, FileStats]:
        return dict(self._examples)

    def runs(self) -> list[RunRecord]:
        """The run records, oldest first, read once.

        An entry that is not a record (a hand edit gone wrong, a newer shardrun's version)
        is skipped with a warning and left in the file as it is: teams commit and edit
        this file, and a bad record must neither stop a run nor be silently lost.
        """
        if self._run_records is None:
            self._run_records, problems = read_runs(self.extra.get("runs"))
            if not self._said_skipped:
                self._warn_skipped(problems)
        return list(self._run_records)

    def _warn_skipped(self, problems: Sequence[str]) -> None:
        for problem in problems:
            log.warning("shardrun: warning: %s: %s; that run record is skipped "
                        "(left in the file as it is)", self.path, problem)
        self._said_skipped = bool(problems)

    def add_run(self, record: RunRecord, keep: int = RUNS_KEPT) -> None:
        """Append a run record, keeping the last `keep`; older ones drop their unit lists.

        Works on the section's JSON, so the records this version cannot read, and those
        it did not write, are written back exactly as they were.
        """
        self._new_runs.append(record)
        section = self.extra.get("runs")
        kept = section if isinstance(section, list) else []
        runs = [*kept, record.to_dict()][-keep:] if keep > 0 else []
        cut = len(runs) - RUNS_WITH_UNITS
        self.extra["runs"] = [_without_units(run) if i < cut else run for i, run in enumerate(runs)]
        self._run_records = None

    def save(self, root: Path | None = None) -> None:
        """Merge into the file under a lock and write it; with `root`, first forget units
        whose file is gone from it.

        Three `shardrun run` in one checkout each load the history, run for minutes and
        save: a plain write would keep only the last run's samples. Under the lock the
        file is read again, this process's samples and runs are added to what is there
        now, and the result is written (atomically) before the lock is released.
        """
        with locked(self.path, "timing history"):
            merged = self._merged_with_file()
            if root is not None:
                merged._forget_missing(root)
            text = merged._to_json()
            write_text(self.path, text, "timing history")
        self._files, self._examples = merged._files, merged._examples
        self.extra, self._run_records = merged.extra, None
        self._digest = _digest(text.encode("utf-8"))
        # saved: a later save must not add them again
        self._journal, self._setup_journal, self._new_runs = [], [], []

    def _merged_with_file(self) -> History:
        """The file's current content plus what this process recorded; self if no file.

        A file that became unreadable or corrupt since load is overwritten with this
        process's view rather than failing the run at its very end. A file no other run
        wrote since this one read it is what this object already holds (it applied its
        journal to itself as it went): parsing it again would cost a tenth of a second
        at the end of every run on a large history, for nothing.
        """
        try:
            raw = read_regular_bytes(self.path, "timing history")
        except ShardrunError:
            raw = None
        if raw is not None and self._digest is not None and _digest(raw) == self._digest:
            return self
        current = _parse(self.path, raw) if raw is not None else None
        if not isinstance(current, History):
            return self
        for files, examples, at in self._journal:
            current.record(Durations(files, examples, "merge"), at)
        for setup, at in self._setup_journal:
            current._record_setup(setup, at)
        for run in self._new_runs:
            current.add_run(run)
        return current

    def _forget_missing(self, root: Path) -> None:
        """Drop the units whose file is gone: one stat per file, not one per example."""
        files = {*self._files, *(file_of_unit(k) for k in self._examples)}
        present = {file for file in files if (root / file).exists()}
        self._files = {k: v for k, v in self._files.items() if k in present}
        self._examples = {k: v for k, v in self._examples.items() if file_of_unit(k) in present}

    def _to_json(self) -> str:
        extra = {k: v for k, v in self.extra.items() if k not in _HISTORY_SECTIONS}
        data = {
            "version": HISTORY_VERSION,
            "files": _entries_to_json(self._files),
            "examples": _entries_to_json(self._examples),
            **extra,
        }
        return _one_entry_per_line(data)


def _parse(path: Path, raw: bytes) -> History | str:
    """The history in `raw`, or why it is corrupt (the caller decides to quarantine)."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"not JSON: {exc}"
    except RecursionError:
        return "not JSON a history can be: nested too deeply"
    reason = _version_problem(path, data)
    if reason is not None:
        return reason
    history = History(path)
    try:
        history._files, dropped_files = _entries_from_json(data.get("files", {}), "files")
        history._examples, dropped_examples = _entries_from_json(
            data.get("examples", {}), "examples")
    except _HistoryShapeError as exc:
        return str(exc)
    history.ignored_keys = dropped_files + dropped_examples
    history.extra = {k: v for k, v in data.items() if k not in _HISTORY_SECTIONS}
    return history


def _one_entry_per_line(data: Mapping[str, Any]) -> str:
    """JSON with each file, example and run record on a line of its own.

    Teams commit this file: a run changes a line per unit it timed and adds a line per
    run record, which is what a diff should show. `indent=2` gave the same diffs spread
    over many more lines, and json's indenting encoder is pure Python: 35 ms for 2,400
    examples at the end of every run, against 10 ms this way.
    """
    sections = []
    for key, value in data.items():
        name = json.dumps(key)
        if isinstance(value, dict) and value:
            lines = [f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items()]
            sections.append(f"  {name}: {{\n" + ",\n".join(lines) + "\n  }")
        elif isinstance(value, list) and value:
            lines = [f"    {json.dumps(item)}" for item in value]
            sections.append(f"  {name}: [\n" + ",\n".join(lines) + "\n  ]")
        else:
            sections.append(f"  {name}: {json.dumps(value)}")
    return "{\n" + ",\n".join(sections) + "\n}\n"


def _digest(raw: bytes) -> bytes:
    return hashlib.blake2b(raw, digest_size=16).digest()


def _clamped(seconds: float) -> float:
    """A recorded sample: negatives (clock skew) are 0, so a median cannot go below 0."""
    return max(float(seconds), 0.0)


def _without_units(run: Any) -> Any:
    """A run record whose batches keep their unit count but not the unit names (anything
    else in the "runs" section as it is)."""
    batches = run.get("batches") if isinstance(run, dict) else None
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


def _version_problem(path: Path, data: Any) -> str | None:
    """Why `data` is not a history of this version, or None. A newer file is left alone
    (an upgrade can read it): that raises instead of being reported as corrupt."""
    version = data.get("version") if isinstance(data, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version > HISTORY_VERSION:
        raise InputError(
            f"{path}: timing history version {version} was written by a newer shardrun; "
            "upgrade shardrun or pass --timings with another file"
        )
    if version != HISTORY_VERSION:
        return f'expected an object with "version": {HISTORY_VERSION}'
    return None


def _entries_from_json(section: Any, name: str) -> tuple[dict[str, FileStats], int]:
    """The entries of one section, and how many keys outside the project were dropped.

    A negative sample counts as 0 (as when recording); one above MAX_SAMPLE_SECONDS or
    not a finite number makes the file corrupt: shardrun never writes such a sample.
    """
    if not isinstance(section, dict):
        raise _HistoryShapeError(f'"{name}" is not an object')
    entries, dropped = {}, 0
    for unit, entry in section.items():
        samples = entry.get("samples") if isinstance(entry, dict) else None
        if not isinstance(samples, list) or not samples or not all(map(_is_sample, samples)):
            raise _HistoryShapeError(
                f'"{name}"["{unit}"] has no list of sample seconds (0 to {MAX_SAMPLE_SECONDS:.0f})'
            )
        if not is_project_key(file_of_unit(normalize_unit(unit))):
            dropped += 1
            continue
        updated_at = entry.get("updated_at")
        at = float(updated_at) if isinstance(updated_at, (int, float)) else None
        entries[unit] = FileStats.from_samples([_clamped(s) for s in samples], at)
    return entries, dropped


def _is_sample(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value <= MAX_SAMPLE_SECONDS)


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


