"""Run records as data: `RunRecord` (one per run), its `BatchRecord`s (one per batch
attempt) and `WorkerRecord`s (one per worker), each with one JSON shape.

Why a module of its own: runlog.py computes a record from a run; this module is what a
record *is* once computed, which several stages read (the history keeps them, the
dashboard and the insights chart them, queue mode sizes batches by their boot overhead).
It imports nothing of shardrun's, so the history (plan/) can parse records without
depending on how the report computes them.

Records are read back from the timing history, a file teams commit and edit by hand, and
from older shardruns: `from_dict` checks every field it reads and raises MalformedRecord
rather than let a bad value reach a median three modules away. `read_runs` turns the
history's "runs" section into the records it can read and a reason for each it cannot.
The shape is docs/dashboard.md ("Run records") and docs/dashboard.schema.json; keep them
in step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# 2: `wall_seconds` is the run's own time (as the terminal says it), `started_at` the
# run's start; `origin` and `failed` are new. Records of version 1 still load: without
# them, `failed` reads as unknown (None), not as "nothing failed".
RUN_RECORD_VERSION = 2
# Batch outcomes, worst first: a worker error or a signal is a crash, a kill at the
# timeout is "timed_out", any other nonzero exit (tests failed, pytest usage error) is
# "failed". pytest's 5 ("no tests collected") is a clean run of units with no examples.
OUTCOMES = ("crashed", "timed_out", "failed", "passed")
_ORIGIN_KEYS = ("commit", "branch", "build")


class MalformedRecord(ValueError):
    """A run record that is not the documented shape (a hand edit, a truncated merge)."""


def _field(data: Mapping[str, Any], key: str) -> Any:
    if key not in data:
        raise MalformedRecord(f'no "{key}"')
    return data[key]


def _int(data: Mapping[str, Any], key: str) -> int:
    value = _field(data, key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedRecord(f'"{key}" is not a whole number')
    return value


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _float(data: Mapping[str, Any], key: str) -> float:
    value = _field(data, key)
    if not _is_number(value):
        raise MalformedRecord(f'"{key}" is not a number')
    return float(value)


def _float_or_none(data: Mapping[str, Any], key: str) -> float | None:
    """A number, or None for null and for a key older records did not have."""
    value = data.get(key)
    return None if value is None else _float(data, key)


def _str(data: Mapping[str, Any], key: str) -> str:
    value = _field(data, key)
    if not isinstance(value, str):
        raise MalformedRecord(f'"{key}" is not a string')
    return value


def _str_or_none(data: Mapping[str, Any], key: str) -> str | None:
    return None if data.get(key) is None else _str(data, key)


def _bool(data: Mapping[str, Any], key: str, default: bool | None = None) -> bool:
    """True or false; `default` for a key older records did not have (None: required)."""
    value = _field(data, key) if default is None else data.get(key, default)
    if not isinstance(value, bool):
        raise MalformedRecord(f'"{key}" is not true or false')
    return value


def _strings(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = _field(data, key)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise MalformedRecord(f'"{key}" is not a list of strings')
    return tuple(value)


def _strings_or_none(data: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    """A list of strings; None when the key is absent (a record older than the key)."""
    return _strings(data, key) if key in data else None


def _objects(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = _field(data, key)
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise MalformedRecord(f'"{key}" is not a list of objects')
    return value


@dataclass(frozen=True)
class BatchRecord:
    """One batch attempt of a run: who ran it, when, against its prediction, how it ended.

    `case_seconds` is None for an attempt the report superseded (its testcases were
    replaced by a later attempt's). `units` is None once the history dropped the list
    (only the newest records keep it); `unit_count` stays.
    """

    index: int
    attempt: int
    worker: str
    worker_index: int
    start: float
    end: float
    predicted_seconds: float
    actual_seconds: float
    case_seconds: float | None
    outcome: str  # one of OUTCOMES
    warm: bool
    unit_count: int
    units: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "index": self.index, "attempt": self.attempt, "worker": self.worker,
            "worker_index": self.worker_index, "start": self.start, "end": self.end,
            "predicted_seconds": self.predicted_seconds,
            "actual_seconds": self.actual_seconds, "case_seconds": self.case_seconds,
            "outcome": self.outcome, "warm": self.warm, "unit_count": self.unit_count,
        }
        if self.units is not None:
            data["units"] = list(self.units)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchRecord:
        """Raises MalformedRecord. `warm` is absent in records older than warm runners."""
        outcome = _str(data, "outcome")
        if outcome not in OUTCOMES:
            raise MalformedRecord(f'"outcome" is not one of {", ".join(OUTCOMES)}')
        return cls(
            index=_int(data, "index"), attempt=_int(data, "attempt"),
            worker=_str(data, "worker"), worker_index=_int(data, "worker_index"),
            start=_float(data, "start"), end=_float(data, "end"),
            predicted_seconds=_float(data, "predicted_seconds"),
            actual_seconds=_float(data, "actual_seconds"),
            case_seconds=_float_or_none(data, "case_seconds"), outcome=outcome,
            warm=_bool(data, "warm", False), unit_count=_int(data, "unit_count"),
            units=_strings_or_none(data, "units"),
        )


@dataclass(frozen=True)
class WorkerRecord:
    """One worker's share of a run: busy (its batches' wall time), span (first start to
    last end) and idle (the run's wall time minus busy, at least 0)."""

    worker: str
    worker_index: int
    batches: int
    busy_seconds: float
    span_seconds: float
    idle_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "worker": self.worker, "worker_index": self.worker_index, "batches": self.batches,
            "busy_seconds": self.busy_seconds, "span_seconds": self.span_seconds,
            "idle_seconds": self.idle_seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkerRecord:
        return cls(
            worker=_str(data, "worker"), worker_index=_int(data, "worker_index"),
            batches=_int(data, "batches"), busy_seconds=_float(data, "busy_seconds"),
            span_seconds=_float(data, "span_seconds"), idle_seconds=_float(data, "idle_seconds"),
        )


@dataclass(frozen=True)
class Origin:
    """What a run was of; each None when unknown (run/origin.py finds them)."""

    commit: str | None = None
    branch: str | None = None
    build: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"commit": self.commit, "branch": self.branch, "build": self.build}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Origin:
        return cls(*(_str_or_none(data, key) for key in _ORIGIN_KEYS))


def _origin(data: Mapping[str, Any]) -> Origin | None:
    value = data.get("origin")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise MalformedRecord('"origin" is not an object')
    return Origin.from_dict(value)


@dataclass(frozen=True)
class RunRecord:
    """How one run went (docs/dashboard.md, "Run records"): built by runlog.py, kept in
    the timing history's "runs" section, charted by the dashboard.

    None in `origin` and `failed` means the record is older than the key (version 1):
    its origin and its failures are unknown, which is not the same as none.
    """

    version: int
    run_id: str
    started_at: float
    finished_at: float
    wall_seconds: float
    makespan: float
    workers: int
    predicted_makespan: float
    lower_bound: float
    bounding_unit: str | None
    idle_seconds: float
    boot_overhead_seconds: float
    boot_seconds_per_batch: float | None
    retries: int
    passed: bool
    tests: int
    failures: int
    errors: int
    skipped: int
    suite_seconds: float
    flaky: tuple[str, ...]
    per_worker: tuple[WorkerRecord, ...]
    batches: tuple[BatchRecord, ...]
    origin: Origin | None = None
    # False: the plan balanced file sizes, not seconds (a first run). Absent reads as True.
    timed: bool = True
    warm_seconds_per_batch: float | None = None
    failed: tuple[str, ...] | None = None
    polluted: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON object, keys in the order the history has always had them."""
        head: dict[str, Any] = {"version": self.version, "run_id": self.run_id}
        if self.origin is not None:
            head["origin"] = self.origin.to_dict()
        report: dict[str, Any] = {"flaky": list(self.flaky)}
        if self.failed is not None:
            report["failed"] = list(self.failed)
        return {
            **head,
            "started_at": self.started_at, "finished_at": self.finished_at,
            "wall_seconds": self.wall_seconds, "makespan": self.makespan,
            "workers": self.workers, "predicted_makespan": self.predicted_makespan,
            "lower_bound": self.lower_bound, "bounding_unit": self.bounding_unit,
            "timed": self.timed, "idle_seconds": self.idle_seconds,
            "boot_overhead_seconds": self.boot_overhead_seconds,
            "boot_seconds_per_batch": self.boot_seconds_per_batch,
            "warm_seconds_per_batch": self.warm_seconds_per_batch,
            "retries": self.retries, "passed": self.passed, "tests": self.tests,
            "failures": self.failures, "errors": self.errors, "skipped": self.skipped,
            "suite_seconds": self.suite_seconds,
            **report,
            "polluted": list(self.polluted),
            "per_worker": [row.to_dict() for row in self.per_worker],
            "batches": [batch.to_dict() for batch in self.batches],
        }

    @classmethod
    def from_dict(cls, data: Any) -> RunRecord:
        """Raises MalformedRecord on anything but a record of a version this shardrun
        writes or wrote (keys added later read as their documented default)."""
        if not isinstance(data, dict):
            raise MalformedRecord("not an object")
        version = _int(data, "version")
        if not 1 <= version <= RUN_RECORD_VERSION:
            raise MalformedRecord(f"version {version} is not one this shardrun reads "
                                  f"(1 to {RUN_RECORD_VERSION})")
        return cls(
            version=version, run_id=_str(data, "run_id"), origin=_origin(data),
            started_at=_float(data, "started_at"), finished_at=_float(data, "finished_at"),
            wall_seconds=_float(data, "wall_seconds"), makespan=_float(data, "makespan"),
            workers=_int(data, "workers"), predicted_makespan=_float(data, "predicted_makespan"),
            lower_bound=_float(data, "lower_bound"),
            bounding_unit=_str_or_none(data, "bounding_unit"), timed=_bool(data, "timed", True),
            idle_seconds=_float(data, "idle_seconds"),
            boot_overhead_seconds=_float(data, "boot_overhead_seconds"),
            boot_seconds_per_batch=_float_or_none(data, "boot_seconds_per_batch"),
            warm_seconds_per_batch=_float_or_none(data, "warm_seconds_per_batch"),
            retries=_int(data, "retries"), passed=_bool(data, "passed"), tests=_int(data, "tests"),
            failures=_int(data, "failures"), errors=_int(data, "errors"),
            skipped=_int(data, "skipped"), suite_seconds=_float(data, "suite_seconds"),
            flaky=_strings(data, "flaky"), failed=_strings_or_none(data, "failed"),
            polluted=_strings_or_none(data, "polluted") or (),
            per_worker=tuple(WorkerRecord.from_dict(row) for row in _objects(data, "per_worker")),
            batches=tuple(BatchRecord.from_dict(batch) for batch in _objects(data, "batches")),
        )


def read_runs(section: Any) -> tuple[list[RunRecord], list[str]]:
    """The records of the history's "runs" section, oldest first, and why each entry
    that is not one was skipped ("runs[3]: "tests" is not a whole number").

    A missing section is no runs and no problem."""
    if section is None:
        return [], []
    if not isinstance(section, list):
        return [], ['"runs" is not a list']
    records, problems = [], []
    for position, entry in enumerate(section):
        try:
            records.append(RunRecord.from_dict(entry))
        except MalformedRecord as exc:
            problems.append(f"runs[{position}]: {exc}")
    return records, problems
