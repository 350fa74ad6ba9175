"""plan/gather.py: what a plan is made from, the history's measured costs included."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.records import batch_costing, run_with

from shardrun.plan.gather import PlanRequest, find_suite, plan_suite
from shardrun.plan.history import History
from shardrun.plan.timings import Durations


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
    first_batches = [batch_costing(i, units, 0.2 + 0.1 * units, warm=False)
                     for i, units in enumerate((1, 4, 7, 10))]
    history.add_run(run_with(first_batches))
    history.save()
    request = PlanRequest(tmp_path, ("tests",), "pytest", 2, history.path)
    planned = plan_suite(request, find_suite(request))
    big = next(shard for shard in planned.plan.shards if "tests/test_big.py" in shard.units)
    assert len(big.units) == 3  # with two tiny files: 1.1 + 0.2 + 0.2 against 8 x 0.2
    assert planned.estimates["tests/test_big.py"] == pytest.approx(1.0)  # still testcases'
