"""Seconds for every unit of a plan, from what the history knows and the files' sizes.

Pure (DESIGN.md rule 1): the gather step (plan/gather.py, History.estimates) reads the
history and stats the files; this module only computes. The rule for units without
history is docs/timings.md's:

- a known file or example: the median of its kept samples (history.FileStats);
- an unknown example: the median of its file's known examples, else its file's estimate
  shared among the examples asked for in that file;
- an unknown file: its size times the median seconds per byte of timed files still on
  disk (one odd fixture-heavy file cannot skew it), else the median known file.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shardrun.plan.timings import file_of_unit, normalize_unit

# Seconds per byte of test source when no file under the root has history. Only ratios
# matter for balancing; 1e-4 s/byte makes a typical 5 KB spec file take 0.5 s.
DEFAULT_SECONDS_PER_BYTE = 1e-4
# Seconds for a unit that neither the history nor the file system knows.
FALLBACK_SECONDS = 1.0


@dataclass(frozen=True)
class Known:
    """What the history knows: each timed file's and example's estimate, in seconds."""

    files: Mapping[str, float]
    examples: Mapping[str, float]

    def get(self, unit: str) -> float | None:
        return self.files.get(unit, self.examples.get(unit))


def sizes_needed(units: Sequence[str], known: Known) -> set[str]:
    """The files whose sizes `estimate_units` reads: what the gather step must stat."""
    return {file_of_unit(normalize_unit(unit)) for unit in units} | set(known.files)


def estimate_units(
    units: Sequence[str], known: Known, sizes: Mapping[str, int | None]
) -> dict[str, float]:
    """Seconds for every unit (keys as given); `sizes` maps a file to its byte size, None
    when it has none (missing, not a regular file)."""
    return _Estimator(units, known, sizes).run()


class _Estimator:
    """The figures the rule shares across units, computed once per plan."""

    def __init__(self, units: Sequence[str], known: Known,
                 sizes: Mapping[str, int | None]) -> None:
        self.known = known
        self.sizes = sizes
        self.units = {unit: normalize_unit(unit) for unit in units}
        self.examples_requested: dict[str, int] = defaultdict(int)
        for unit in self.units.values():
            if file_of_unit(unit) != unit:
                self.examples_requested[file_of_unit(unit)] += 1
        self.known_examples: dict[str, list[float]] = defaultdict(list)
        for example, seconds in known.examples.items():
            self.known_examples[file_of_unit(example)].append(seconds)
        known_files = list(known.files.values())
        self.fallback = statistics.median(known_files) if known_files else FALLBACK_SECONDS
        self.seconds_per_byte = self._seconds_per_byte()

    def _seconds_per_byte(self) -> float:
        """Median rate over timed files still on disk: robust to one odd (fixture-heavy) file."""
        rates = [seconds / size for path, seconds in self.known.files.items()
                 if (size := self.sizes.get(path))]
        return statistics.median(rates) if rates else DEFAULT_SECONDS_PER_BYTE

    def file_seconds(self, path: str) -> float:
        known = self.known.get(path)
        if known is not None:
            return known
        size = self.sizes.get(path)
        return self.fallback if size is None else size * self.seconds_per_byte

    def unit_seconds(self, unit: str) -> float:
        known = self.known.get(unit)
        if known is not None:
            return known
        path = file_of_unit(unit)
        if path == unit:
            return self.file_seconds(path)
        siblings = self.known_examples.get(path)
        if siblings:
            return statistics.median(siblings)
        return self.file_seconds(path) / max(self.examples_requested[path], 1)

    def run(self) -> dict[str, float]:
        return {unit: self.unit_seconds(key) for unit, key in self.units.items()}
