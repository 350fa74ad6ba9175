"""run/options.py: what the history says batches and units cost, for the queue's cost model."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.records import batch_costing, run_with

from shardrun.plan.discovery import Suite
from shardrun.plan.gather import PlannedSuite, PlanRequest
from shardrun.plan.history import History
from shardrun.plan.planner import plan_shards
from shardrun.plan.timings import Durations
from shardrun.run.options import RunOptions, batch_inputs, oversubscribed, setup_per_batch


def options(runners: str) -> RunOptions:
    return RunOptions(PlanRequest(Path("."), (), "pytest", 4, Path("t.json")), runners=runners)


def history_with_setup(tmp_path: Path, seconds: float) -> History:
    examples = {f"tests/{name}.py::t{index}": 0.2 for name in "ab" for index in range(5)}
    examples["tests/a.py::t0"] += seconds
    examples["tests/b.py::t0"] += seconds
    history = History(tmp_path / "timings.json")
    history.record(Durations({}, examples, "run"))
    return history


@pytest.mark.parametrize(("runners", "charged"), [("fork", 30.0), ("fresh", 30.0),
                                                  ("reuse", 0.0)])
def test_each_batch_pays_the_set_up_unless_one_runner_is_reused(
    tmp_path: Path, runners: str, charged: float
) -> None:
    history = history_with_setup(tmp_path, 30.0)
    assert setup_per_batch(history, options(runners)) == pytest.approx(charged)


def test_without_a_learned_set_up_nothing_is_added(tmp_path: Path) -> None:
    assert setup_per_batch(History(tmp_path / "none.json"), options("fork")) == 0.0


def test_more_workers_than_cpus_is_said_once_with_what_to_do() -> None:
    assert oversubscribed(2, 2) == ""
    assert oversubscribed(1, 4) == ""
    line = oversubscribed(8, 2)
    assert "8 workers share 2 CPUs" in line and "up to 4x slower" in line
    assert "-w auto (2)" in line


def test_queue_mode_prices_a_batch_by_the_fit_and_each_unit_by_its_slope(
    tmp_path: Path,
) -> None:
    """A warm batch cost 0.04 s plus 20 ms per unit outside its testcases (the mean over
    the run: 0.3 s). Units carry the 20 ms, batches the 0.04 s: not the 0.3 s again."""
    history = History(tmp_path / "timings.json")
    batches = [batch_costing(i, units, 0.04 + 0.02 * units, warm=True)
               for i, units in enumerate((2, 8, 14, 20))]
    history.add_run(run_with(batches, warm_seconds_per_batch=0.3))
    files = ("tests/test_a.py", "tests/test_b.py")
    estimates = {"tests/test_a.py": 1.0, "tests/test_b.py": 2.0}
    planned = PlannedSuite(Suite("pytest", tmp_path, files), history, estimates,
                           plan_shards(estimates, 2))
    request = PlanRequest(tmp_path, files, "pytest", 2, history.path)
    inputs, _ = batch_inputs(planned, RunOptions(request, python="python3"))
    assert inputs.batch_seconds == pytest.approx(0.04)
    assert inputs.estimates == pytest.approx({"tests/test_a.py": 1.02, "tests/test_b.py": 2.02})
