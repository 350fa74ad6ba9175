"""What a person reads while a run is under way: the progress line and live test lines.

Why a module of its own: the watch loop (run/watch.py) counts units and predicted
seconds; a person counts tests. This module counts tests the way the summary does (each
once, by its latest result; a test that failed and then passed is flaky, not failed), so
the last progress line and the summary never disagree, and words them.

Pure (DESIGN.md rule 1): results and numbers in, text out. The CLI decides where the
text goes (one redrawn line on a terminal, plain periodic lines in a CI log).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shardrun.models import FAILED_OUTCOMES, BatchResult
from shardrun.plan.timings import file_of_unit
from shardrun.report.terminal import printable

# The width of the bar on a terminal, in characters.
BAR_WIDTH = 24
# Outcome words of a live line, as pytest -v and rspec's documentation format say them.
_OUTCOME_WORDS = {"passed": "PASSED", "failed": "FAILED", "error": "ERROR",
                  "skipped": "SKIPPED"}


def expected_tests(units: Sequence[str], known_examples: Iterable[str]) -> int | None:
    """How many tests these units hold, as the history knows them: a test id counts one,
    a file the tests the history recorded in it. None when a file has none recorded (a
    first run, a new file): then nobody knows, and the progress line counts units."""
    per_file: dict[str, int] = {}
    for example in known_examples:
        file = file_of_unit(example)
        per_file[file] = per_file.get(file, 0) + 1
    total = 0
    for unit in units:
        if file_of_unit(unit) != unit:
            total += 1
        elif per_file.get(unit):
            total += per_file[unit]
        else:
            return None
    return total


@dataclass
class ResultTally:
    """Tests counted as the summary counts them: each once, by its latest result."""

    latest: dict[str, str] = field(default_factory=dict)
    failed_before: set[str] = field(default_factory=set)

    def add(self, result: BatchResult) -> None:
        """A retry's result replaces the earlier one; a test that never ran does not
        replace one that did (as merge.py decides)."""
        for test in result.tests:
            if test.origin == "never_ran" and test.id in self.latest:
                continue
            if self.latest.get(test.id) in FAILED_OUTCOMES:
                self.failed_before.add(test.id)
            self.latest[test.id] = test.outcome

    @property
    def done(self) -> int:
        return len(self.latest)

    @property
    def failed(self) -> int:
        return sum(1 for outcome in self.latest.values() if outcome in FAILED_OUTCOMES)

    @property
    def flaky(self) -> int:
        return sum(1 for test in self.failed_before if self.latest.get(test) == "passed")


@dataclass(frozen=True)
class Snapshot:
    """The numbers of one progress line (from the watch loop's Progress and a tally)."""

    done_units: int
    total_units: int
    planned_tests: int | None
    eta_seconds: float | None


def status(tally: ResultTally, snapshot: Snapshot) -> str:
    """'120/450 tests, 3 failed, 1 flaky, 330 left, ETA 14s' (tests planned known), or
    '120 tests, 3 failed, 1 flaky, 12/40 units, ETA 14s' (a first run)."""
    counts = f"{tally.failed} failed, {tally.flaky} flaky"
    if snapshot.planned_tests is not None:
        planned = max(snapshot.planned_tests, tally.done)  # new tests: never a negative left
        text = f"{tally.done}/{planned} tests, {counts}, {planned - tally.done} left"
    else:
        text = (f"{tally.done} tests, {counts}, "
                f"{snapshot.done_units}/{snapshot.total_units} units")
    return text + eta_text(snapshot.eta_seconds)


def fraction(tally: ResultTally, snapshot: Snapshot) -> float:
    """How far the run is, 0 to 1: by tests when their number is known, else by units."""
    if snapshot.planned_tests:
        return min(tally.done / max(snapshot.planned_tests, tally.done, 1), 1.0)
    return min(snapshot.done_units / max(snapshot.total_units, 1), 1.0)


def bar(done: float, width: int = BAR_WIDTH) -> str:
    filled = int(width * min(max(done, 0.0), 1.0))
    return f"[{'#' * filled}{'.' * (width - filled)}]"


def eta_text(seconds: float | None) -> str:
    """', ETA 14s' or ', ETA 2m05s'; '' before anything finished. Never negative."""
    if seconds is None:
        return ""
    whole = max(round(seconds), 0)
    if whole < 60:
        return f", ETA {whole}s"
    return f", ETA {whole // 60}m{whole % 60:02d}s"


def batch_note(result: BatchResult) -> str:
    """What the plain (CI log) progress line says of the batch that just came back."""
    return (f"batch {result.batch_id} done on worker {result.worker_index} in "
            f"{result.outcome.wall_seconds:.1f}s")


def live_lines(entry: Mapping[str, Any], level: int) -> list[str]:
    """'[w2] PASSED tests/test_a.py::test_x 0.12s', and with level 2 the test's
    captured output under it. Every piece passes through `printable`."""
    outcome = str(entry.get("outcome", ""))
    word = _OUTCOME_WORDS.get(outcome, outcome.upper() or "DONE")
    seconds = entry.get("seconds")
    took = f" {seconds:.2f}s" if isinstance(seconds, (int, float)) else ""
    lines = [f"[w{printable(str(entry.get('w', '?')))}] {word} "
             f"{printable(str(entry.get('id', '')))}{took}"]
    if level >= 2:
        for name in ("message", "stdout", "stderr"):
            text = entry.get(name)
            if isinstance(text, str) and text.strip():
                lines.append(f"    {name}:")
                lines += [f"    | {printable(line)}" for line in text.rstrip("\n").splitlines()]
    return lines
