"""run/options.py: how a learned runner set-up enters the queue's cost model."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardrun.plan.gather import PlanRequest
from shardrun.plan.history import History
from shardrun.plan.timings import Durations
from shardrun.run.options import RunOptions, oversubscribed, setup_per_batch


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
