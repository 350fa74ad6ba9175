"""Timing files a team already has, used on shardrun's first run in a project.

A team moving from knapsack, parallel_tests or pytest-split has its suite's timings in
their files; planning its first run from file sizes would throw them away. When there is
no shardrun history yet, the planning inputs step reads the files these tools write at
their default paths (the same importers as `shardrun timings import`) and says so in one
line. Reads files; imports neither redis, rq nor subprocess (DESIGN.md rule 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shardrun.errors import InputError
from shardrun.plan.imports import match_to_root
from shardrun.plan.timings import Durations, load_durations

# Each tool's default report path, by the framework whose files it times: knapsack's
# KNAPSACK_REPORT_PATH default, parallel_tests' --runtime-log default
# (tmp/parallel_runtime_<type>.log; its Minitest/Test::Unit type is "test"), and
# pytest-split's --durations-path default.
CONVENTIONAL_FILES: dict[str, tuple[str, ...]] = {
    "rspec": ("knapsack_rspec_report.json", "tmp/parallel_runtime_rspec.log"),
    "minitest": ("knapsack_minitest_report.json", "tmp/parallel_runtime_test.log"),
    "cucumber": ("knapsack_cucumber_report.json", "tmp/parallel_runtime_cucumber.log"),
    "pytest": (".test_durations",),
}


@dataclass(frozen=True)
class ExistingTimings:
    """What was imported (only files that exist under the root) and the line saying so."""

    durations: tuple[Durations, ...]
    line: str | None


def conventional_files(root: Path, framework: str) -> list[str]:
    """The timing files present at their tools' default paths for this framework (every
    tool's for a `--command` suite, whose framework says nothing about its files)."""
    names = CONVENTIONAL_FILES.get(framework)
    if names is None:
        names = tuple(name for group in CONVENTIONAL_FILES.values() for name in group)
    return [name for name in names if (root / name).is_file()]


def existing_timings(root: Path, framework: str) -> ExistingTimings:
    """Import every conventional timing file found; one that cannot be read is named in
    the line and skipped, since nobody asked for it (`shardrun timings import` would fail)."""
    imported: list[Durations] = []
    used: list[str] = []
    skipped: list[str] = []
    for name in conventional_files(root, framework):
        try:
            match = match_to_root(load_durations(root / name), root)
        except InputError as error:
            skipped.append(f"{name} not used ({error})")
            continue
        if match.found:
            imported.append(match.durations)
            used.append(f"{match.found} file{'s' if match.found != 1 else ''} from {name}")
        else:
            skipped.append(f"{name} not used (none of its {match.recorded} files is in "
                           "this project)")
    parts = [f"imported {' and '.join(used)} (no shardrun history yet)"] if used else []
    if not parts and not skipped:
        return ExistingTimings((), None)
    return ExistingTimings(tuple(imported), "timings: " + "; ".join([*parts, *skipped]))
