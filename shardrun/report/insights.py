"""Per-test views for the dashboard: the failure history and flaky rate of each test that
failed or flaked in the runs shown, and the slowest tests.

Why: the dashboard knew files and runs; a test that failed in every run appeared nowhere,
and a flaky test showed a count without a rate. knapsack_pro's and CircleCI's test
insights show both per test. Pure (DESIGN.md rule 1): run records and history entries in,
JSON-able dicts out (docs/dashboard.md, "Tests").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shardrun.plan.history import FileStats
from shardrun.plan.timings import file_of_unit
from shardrun.report.records import RunRecord

# Tests listed in the failure history (most failed first) and in the slowest list.
TESTS_SHOWN = 50
SLOWEST_TESTS_SHOWN = 20
# A run's state for one test, oldest run first: failed (its final attempt failed or
# errored), flaky (failed, then passed on a retry), ok (neither), or None for a record
# written before records kept their failed tests (so nobody knows).
FAILED, FLAKY, OK = "failed", "flaky", "ok"


def _state(test: str, failed: set[str] | None, flaky: set[str]) -> str | None:
    if test in flaky:
        return FLAKY
    if failed is None:
        return None
    return FAILED if test in failed else OK


def failure_history(
    records: Sequence[RunRecord], top: int = TESTS_SHOWN,
) -> list[dict[str, Any]]:
    """Every test that failed or was flaky in these runs: its state per run, how often,
    and its rates over the runs that can tell (failure rate: runs that kept failed tests)."""
    failed_by_run = [None if record.failed is None else set(record.failed)
                     for record in records]
    flaky_by_run = [set(record.flaky) for record in records]
    tests = set().union(*(ids or set() for ids in failed_by_run), *flaky_by_run)
    rows: list[dict[str, Any]] = []
    for test in tests:
        states = [_state(test, failed, flaky)
                  for failed, flaky in zip(failed_by_run, flaky_by_run, strict=True)]
        known = sum(1 for state in states if state is not None)
        failed_runs = states.count(FAILED)
        flaky_runs = states.count(FLAKY)
        last = max(index for index, state in enumerate(states) if state in (FAILED, FLAKY))
        rows.append({
            "id": test,
            "file": file_of_unit(test),
            "failed_runs": failed_runs,
            "flaky_runs": flaky_runs,
            "failure_rate": round(failed_runs / known, 4) if known else None,
            "flaky_rate": round(flaky_runs / len(records), 4),
            "last_seen_run": records[last].run_id,
            "history": states,
        })
    rows.sort(key=lambda row: (-int(row["failed_runs"]), -int(row["flaky_runs"]),
                               str(row["id"])))
    return rows[:top]


def slowest_tests(examples: Mapping[str, FileStats],
                  top: int = SLOWEST_TESTS_SHOWN) -> list[dict[str, Any]]:
    """The `top` tests with the largest estimate, as the history times them."""
    ranked = sorted(examples.items(), key=lambda item: (-item[1].estimate, item[0]))[:top]
    return [{"id": test, "file": file_of_unit(test), "estimate": round(stats.estimate, 6),
             "samples": len(stats.samples)} for test, stats in ranked]


def split_estimates(files: Mapping[str, float],
                    examples: Mapping[str, FileStats]) -> dict[str, float]:
    """The units queue mode (the default) plans with: a file whose tests the history
    knows counts as those tests (their shares of the file's estimate), as queue mode
    splits a slow file into its tests. So the capacity advice never says "bounded by" a
    file that is split anyway; a single test still bounds it."""
    known: dict[str, dict[str, float]] = {}
    for test, stats in examples.items():
        known.setdefault(file_of_unit(test), {})[test] = stats.estimate
    units: dict[str, float] = {}
    for file, estimate in files.items():
        tests = known.get(file, {})
        total = sum(tests.values())
        if len(tests) < 2 or total <= 0:
            units[file] = estimate
            continue
        for test, seconds in tests.items():
            units[test] = estimate * seconds / total
    return units
