"""Gather a plan's inputs, then compute the static plan from them.

Gathering is the I/O: find the suite's files (discovery.py), load the timing history and
any --from-junit reports (history.py, timings.py). The plan itself is then one pure call
(planner.plan_shards). `shardrun plan` stops here; `run` and `ci` go on to batch it
(run/options.py) and run it (run/session.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shardrun.errors import (
    InputError,
)
from shardrun.models import Plan
from shardrun.plan.discovery import Suite, discover
from shardrun.plan.existing import existing_timings
from shardrun.plan.history import History
from shardrun.plan.planner import plan_shards
from shardrun.plan.timings import load_durations
from shardrun.report.runlog import unit_seconds


@dataclass(frozen=True)
class PlanRequest:
    """What `plan` and `run` both need to decide the shards."""

    root: Path
    paths: tuple[str, ...]
    framework: str | None
    workers: int
    timings_path: Path
    from_junit: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlannedSuite:
    suite: Suite
    history: History
    estimates: dict[str, float]
    plan: Plan
    # Whether any estimate came from measured seconds. Without, the estimates are file
    # sizes in made-up units: fit for balancing, not for showing as predicted seconds.
    timed: bool = True
    notes: tuple[str, ...] = ()  # for the user: e.g. timings imported from another tool


def prepare(request: PlanRequest) -> PlannedSuite:
    """Discover the suite, estimate every unit from history (+ --from-junit), plan it."""
    return plan_suite(request, find_suite(request))


def find_suite(request: PlanRequest) -> Suite:
    """The suite's files and framework, the options checked: all `run` needs to start its
    workers, whose runners then boot the suite while `plan_suite` reads the history (a
    second or more for a thousand files on a loaded machine)."""
    if request.workers < 1:
        raise InputError("--workers must be at least 1")
    suite = discover(request.paths, request.framework, request.root)
    expand_globs(request.from_junit, request.root)  # a typo stops the run before it starts
    return suite


def plan_suite(request: PlanRequest, suite: Suite) -> PlannedSuite:
    """Gather the history (+ --from-junit, + other tools' files on a first run), then
    compute: estimate every unit of `suite` and plan it."""
    history = History.load(request.timings_path)
    for path in expand_globs(request.from_junit, request.root):
        history.record(load_durations(path))
    notes = _first_run_timings(history, request, suite.framework)
    estimates = history.estimates(suite.files, request.root)
    timed = any(history.estimate(unit) is not None for unit in estimates)
    return PlannedSuite(suite, history, estimates,
                        plan_shards(_with_unit_cost(estimates, history, timed), request.workers),
                        timed, notes)


def _with_unit_cost(estimates: dict[str, float], history: History,
                    timed: bool) -> dict[str, float]:
    """Each unit's estimate plus what its batch pays for it outside its testcases (its
    file's load), as the history's runs fitted it for a worker's first batch, which a
    static shard is. parallel_tests' runtime log counts a file's load; per-example
    seconds do not, so a static shard of many tiny files was planned short (queue mode
    adds the same cost, run/options.py). `estimates` themselves stay testcase seconds."""
    per_unit = unit_seconds(history.runs(), warm=False) if timed else 0.0
    if not per_unit:
        return estimates
    return {unit: seconds + per_unit for unit, seconds in estimates.items()}


def _first_run_timings(history: History, request: PlanRequest, framework: str) -> tuple[str, ...]:
    """No history and no --from-junit: learn from knapsack / parallel_tests / pytest-split
    files at their default paths (plan/existing.py), and say so."""
    if history.files() or request.from_junit:
        return ()
    found = existing_timings(request.root, framework)
    for durations in found.durations:
        history.record(durations)
    return (found.line,) if found.line else ()


def expand_globs(patterns: Sequence[str], root: Path) -> list[Path]:
    """--from-junit 'reports/*.xml': every pattern must match something (a typo is an error)."""
    paths: list[Path] = []
    for pattern in patterns:
        matches = sorted(root.glob(pattern)) if not Path(pattern).is_absolute() else (
            [Path(pattern)] if Path(pattern).exists() else []
        )
        if not matches:
            raise InputError(f"--from-junit {pattern!r}: matches no file; check the glob")
        paths.extend(matches)
    return paths
