"""Run records for tests of what the history's runs teach the planner."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from shardrun.report.records import BatchRecord, RunRecord

RECORD_V2 = Path(__file__).resolve().parent.parent / "fixtures" / "runs" / "record-v2.json"


def batch_costing(index: int, units: int, outside: float, *, warm: bool) -> BatchRecord:
    """A batch of `units` units with 1 s of testcases and `outside` seconds beyond them."""
    return BatchRecord(index=index, attempt=1, worker="w1", worker_index=1, start=0.0,
                       end=1.0 + outside, predicted_seconds=1.0, actual_seconds=1.0 + outside,
                       case_seconds=1.0, outcome="passed", warm=warm, unit_count=units)


def run_with(batches: Sequence[BatchRecord], **changes: object) -> RunRecord:
    """The fixture's v2 run record holding `batches` (and any other field `changes`)."""
    run = RunRecord.from_dict(json.loads(RECORD_V2.read_text(encoding="utf-8")))
    return replace(run, batches=tuple(batches), **changes)
