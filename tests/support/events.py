"""Runner events, as runners/pytest_server.py and rspec_server.rb write them, and batch
results built from them the way a worker builds them (accounting.reconcile)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shardrun.models import BatchResult, ProcessOutcome
from shardrun.plan.timings import file_of_unit
from shardrun.work.accounting import reconcile

Event = dict[str, Any]


def collected(*ids: str) -> Event:
    return {"e": "collected", "tests": list(ids)}


def start(test_id: str, line: int | None = 3, name: str | None = None) -> Event:
    file = file_of_unit(test_id)
    return {"e": "start", "id": test_id, "file": file, "line": line,
            "name": name or test_id.rsplit("::", 1)[-1],
            "classname": file.rsplit(".", 1)[0].replace("/", ".")}


def finish(test_id: str, outcome: str = "passed", seconds: float = 0.5, **extra: Any) -> Event:
    return {"e": "finish", "id": test_id, "outcome": outcome, "seconds": seconds, **extra}


def ran(test_id: str, outcome: str = "passed", seconds: float = 0.5, **extra: Any) -> list[Event]:
    """A test that started and finished."""
    return [start(test_id, name=extra.pop("name", None)), finish(test_id, outcome, seconds,
                                                                  **extra)]


def file_time(file: str, seconds: float) -> Event:
    """What rspec_server.rb sends as a file's top-level group ends: its wall time."""
    return {"e": "file_time", "file": file, "seconds": seconds}


def done(code: int = 0) -> Event:
    return {"e": "done", "code": code}


def process(exit_code: int | None = 0, *, sig: int | None = None, timed_out: bool = False,
            wall: float = 2.0, tail: str = "") -> ProcessOutcome:
    return ProcessOutcome(exit_code, sig, timed_out, wall, 1.0, 1024, tail)


def batch(shard: int, units: Sequence[str], events: Sequence[Event | list[Event]], *,
          attempt: int = 1, finished: float = 10.0, ending: ProcessOutcome | None = None,
          predicted: float = 1.5, timeout: float | None = None, worker: str | None = None,
          ) -> BatchResult:
    """A batch's result from its events (nested lists from `ran` are flattened)."""
    flat: list[Event] = []
    for item in events:
        flat += item if isinstance(item, list) else [item]
    ending = ending or process(0)
    settled = reconcile(units, flat, ending, timeout_seconds=timeout)
    return BatchResult(
        run_id="run", batch_id=shard, attempt=attempt,
        worker=worker or f"host{shard}:{100 + shard}", worker_index=shard, units=tuple(units),
        outcome=ending, started_at=0.0, finished_at=finished, predicted_seconds=predicted,
        tests=settled.tests, unrun=settled.unrun, unrun_reason=settled.unrun_reason,
        empty_units=settled.empty_units, notes=settled.notes,
        file_seconds=dict(settled.file_seconds),
    )
