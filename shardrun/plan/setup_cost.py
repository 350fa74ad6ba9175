"""A runner's set-up, told apart from the tests that happened to pay for it. Pure.

The first test a fresh runner runs carries the session's set-up (a test database created,
assets compiled): pytest-xdist and parallel runs record it as that test's duration. In
HyphaApp/hypha's committed `.test_durations` (../shared/data/timings/history) 6 to 12
tests per version, one per xdist worker, take 28-75 s where their files' other tests take
0.1-0.5 s, and the excess is alike within a version: it is 50-75% of the recorded total.
Which tests carry it changes between versions. Planning from those numbers puts a
phantom minute on a few tests (and their files), so shards and batches are built around
costs that will land elsewhere.

The rule: a test is a *candidate* when it took more than SETUP_RATIO times the median of
its file's other tests (the suite's median test when the file has too few others to
judge) and more than SETUP_MIN_SECONDS above it. Set-up is per runner, so it shows as
several candidates with a similar excess; one slow test alone is just a slow test. When at
least MIN_CARRIERS candidates have an excess within SIMILAR_FACTOR of their median, they
are *carriers*: each gets its reference time back, and the median excess is the runner's
set-up cost, which the cost model charges per runner instead (docs/timings.md).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from shardrun.plan.timings import Durations, file_of_unit

# A carrier took this many times what its neighbours take: set-up (tens of seconds) over
# unit tests (tenths). Lower would catch a genuinely slow integration test among fast ones.
SETUP_RATIO = 20.0
# ... and at least this much more: a 20x of 0.01 s is noise, not a database being built.
SETUP_MIN_SECONDS = 5.0
# Carriers' excesses are alike: within this factor of their median. Within one run they
# differ by <= 25% (hypha); pytest-split keeps a test's duration until it runs again, so
# one file can hold carriers of two runs, e.g. 47 s and 65 s.
SIMILAR_FACTOR = 2.0
# Set-up is per runner: one outlier alone is a slow test, not a pattern.
MIN_CARRIERS = 2
# Others needed in a file to judge a test against its own file rather than the suite.
MIN_NEIGHBOURS = 2
# Above this many tests a file's median stands for each test's neighbours (keeps it linear).
LARGE_FILE = 20


@dataclass(frozen=True)
class SetupSplit:
    tests: dict[str, float]  # the durations, carriers given their reference time back
    setup_seconds: float | None  # per runner: the carriers' median excess; None: none seen
    carriers: tuple[str, ...] = ()


def split_setup(tests: Mapping[str, float]) -> SetupSplit:
    """Take a runner's set-up out of the tests that carried it (see the module docstring)."""
    references = _references(tests)
    excess = {test: seconds - references[test] for test, seconds in tests.items()
              if seconds > SETUP_RATIO * references[test]
              and seconds - references[test] > SETUP_MIN_SECONDS}
    if len(excess) < MIN_CARRIERS:
        return SetupSplit(dict(tests), None)
    typical = statistics.median(excess.values())
    carriers = sorted(test for test, extra in excess.items()
                      if typical / SIMILAR_FACTOR <= extra <= typical * SIMILAR_FACTOR)
    if len(carriers) < MIN_CARRIERS:
        return SetupSplit(dict(tests), None)
    cleaned = dict(tests)
    for test in carriers:
        cleaned[test] = references[test]
    return SetupSplit(cleaned, statistics.median(excess[test] for test in carriers),
                      tuple(carriers))


def _references(tests: Mapping[str, float]) -> dict[str, float]:
    """What each test would take without set-up: the median of its file's other tests."""
    by_file: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for test, seconds in tests.items():
        by_file[file_of_unit(test)].append((test, seconds))
    suite_median = statistics.median(tests.values()) if tests else 0.0
    references: dict[str, float] = {}
    for members in by_file.values():
        if len(members) > LARGE_FILE:  # one test barely moves the median of many
            whole = statistics.median(seconds for _, seconds in members)
            references.update((test, whole) for test, _ in members)
            continue
        for test, _ in members:
            others = [seconds for other, seconds in members if other != test]
            references[test] = (statistics.median(others) if len(others) >= MIN_NEIGHBOURS
                                 else suite_median)
    return references


def without_setup(durations: Durations) -> tuple[Durations, float | None]:
    """`durations` with the set-up taken out of its tests and their files, and the set-up
    (None when no carriers were seen). Sources without per-test times are returned as
    they are: one file cannot be told apart from its set-up."""
    split = split_setup(durations.examples)
    if split.setup_seconds is None:
        return durations, None
    files = dict(durations.files)
    for test in split.carriers:
        path = file_of_unit(test)
        if path in files:
            taken = durations.examples[test] - split.tests[test]
            files[path] = max(files[path] - taken, 0.0)
    return Durations(files, split.tests, durations.source), split.setup_seconds
