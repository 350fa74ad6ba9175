"""Seconds for the tests of a split file: known tests from the history, new ones at their
file's mean. Pure.

A file is split into the tests a listing finds now (splitting.py); the history knows the
tests of its last runs. The file's estimate covers those known tests plus what they
share (module fixtures, before(:all) hooks), so known tests are scaled to carry their
part of it, and a test the history has never seen costs the file's mean per known test:
a file that gained tests since its timings is priced bigger, not spread thinner, and one
that lost tests smaller.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

from shardrun.plan.history import FileStats
from shardrun.plan.timings import file_of_unit, normalize_unit


def known_test_counts(examples: Mapping[str, FileStats]) -> dict[str, int]:
    """How many tests the history knows per file (its `examples` section)."""
    return dict(Counter(file_of_unit(test) for test in examples if file_of_unit(test) != test))


def known_test_seconds(examples: Mapping[str, FileStats]) -> dict[str, float]:
    """What the tests the history knows take per file, without what they share: a file's
    estimate above it is set-up its tests share (RSpec's before(:context) hooks, pytest's
    module and class fixtures), which every piece of the file would pay again if it were
    split."""
    seconds: dict[str, float] = {}
    for test, stats in examples.items():
        file = file_of_unit(test)
        if file != test:
            seconds[file] = seconds.get(file, 0.0) + stats.estimate
    return seconds


def split_file(
    file_seconds: float, tests: Sequence[str], known: Mapping[str, FileStats], file: str
) -> dict[str, float]:
    """Seconds for each of `tests` (the listing of `file`, whose estimate is
    `file_seconds`), from what the history knows of the file's tests (`known`)."""
    of_file = {test: stats.estimate for test, stats in known.items()
               if file_of_unit(test) == file and test != file}
    if not of_file:
        share = file_seconds / len(tests)
        return {test: share for test in tests}
    known_total = math.fsum(of_file.values())
    mean = file_seconds / len(of_file)
    scale = file_seconds / known_total if known_total > 0 else 0.0
    seconds = {}
    for test in tests:
        estimate = of_file.get(normalize_unit(test))
        seconds[test] = mean if estimate is None or scale == 0.0 else estimate * scale
    return seconds


def split_listed(
    estimates: Mapping[str, float], listed: Mapping[str, Sequence[str]],
    known: Mapping[str, FileStats],
) -> dict[str, float]:
    """The estimates with each listed file replaced by its tests (`listed`: the tests a
    listing found now, per file), priced by `split_file`. A file listed with fewer than
    two tests stays whole: splitting it would only add a batch."""
    split: dict[str, float] = {}
    for unit, seconds in estimates.items():
        tests = listed.get(unit, ())
        if len(tests) < 2:
            split[unit] = seconds
            continue
        split.update(split_file(seconds, tests, known, unit))
    return split
