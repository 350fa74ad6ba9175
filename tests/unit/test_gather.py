"""plan/gather.py: what a plan is made from, the history's measured costs included."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from shardrun.plan.gather import PlanRequest, find_suite, plan_suite
from shardrun.plan.history import History
from shardrun.plan.timings import Durations
from shardrun.report.records import BatchRecord, RunRecord

RECORD_V2 = Path(__file__).resolve().parent.parent / "fixtures" / "runs" / "record-v2.json"


def _first_batch(index: int, units: int, outside: float) -> BatchRecord:
    """A worker's first batch (not warm), `outside` seconds beyond its 1 s of testcases."""
    return BatchRecord(index=index, attempt=1, worker="w1", worker_index=1, start=0.0,
                       end=1.0 + outside, predicted_seconds=1.0, actual_seconds=1.0 + outside,
                       case_seconds=1.0, outcome="passed", warm=False, unit_count=units)


def test_a_static_plan_prices_each_file_s_load_as_the_history_fitted_it(
    tmp_path: Path,
) -> None:
    """One file of 1.0 s and ten of 0.1 s, N = 2: by testcase seconds alone the ten tiny
    files fill one shard. The history's first batches cost 0.1 s per unit outside their
    testcases (loading each file): priced in, the tiny files are spread."""
    files = {"tests/test_big.py": 1.0, **{f"tests/test_tiny{i}.py": 0.1 for i in range(10)}}
    for file in files:
        (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / file).write_text("def test_x():\n    pass\n")
    history = History(tmp_path / "timings.json")
    history.record(Durations(files, {}, "run"))
    run = RunRecord.from_dict(json.loads(RECORD_V2.read_text(encoding="utf-8")))
    cold = tuple(_first_batch(i, units, 0.2 + 0.1 * units)
                 for i, units in enumerate((1, 4, 7, 10)))
    history.add_run(replace(run, batches=cold))
    history.save()
    request = PlanRequest(tmp_path, ("tests",), "pytest", 2, history.path)
    planned = plan_suite(request, find_suite(request))
    big = next(shard for shard in planned.plan.shards if "tests/test_big.py" in shard.units)
    assert len(big.units) == 3  # with two tiny files: 1.1 + 0.2 + 0.2 against 8 x 0.2
    assert planned.estimates["tests/test_big.py"] == pytest.approx(1.0)  # still testcases'
