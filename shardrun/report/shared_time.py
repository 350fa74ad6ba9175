"""What a file's tests share: RSpec's before(:context) hooks, pytest's module fixtures. Pure.

An example's run time leaves out the before(:context) and after(:context) hooks of its
groups; `let_it_be` and `before(:all)` put a file's database records there, once per file.
A history built from test seconds alone prices such a file at what its examples take, so a
file that spends 2 s in a hook and 10 ms in its examples was planned at 10 ms and left for
the last batch of the run, which it then ended 2 s late. parallel_tests' runtime log and
knapsack time each file's top-level groups, hooks included.

The RSpec runner reports each file's top-level groups' wall time per batch
(BatchResult.file_seconds); what exceeds the file's tests in that batch is what they share.
pytest has the like inside a test's own time: a module- or class-scoped fixture is set up
by the first test that uses it, and the pytest runner reports that part of the test's
seconds (TestResult.shared_seconds). A file split across batches pays its shared set-up
in every piece, and a whole file once: its history entry gets it once, the least any
batch measured, and each test its own seconds without it (`own_seconds`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from shardrun.models import BatchResult, TestResult
from shardrun.report.merge import CaseResult


def own_seconds(test: TestResult | CaseResult) -> float:
    """A test's seconds without the fixtures its file's tests share."""
    return max(test.seconds - test.shared_seconds, 0.0)


def hooks_outside_tests(result: BatchResult) -> dict[str, float]:
    """Per file of the batch, its top-level groups' time beyond its tests' seconds (RSpec's
    hooks, >= 0); empty where the runner measures no group times."""
    if not result.file_seconds:
        return {}
    tests: dict[str, float] = defaultdict(float)
    for test in result.tests:
        tests[test.file] += test.seconds
    return {file: max(seconds - tests[file], 0.0)
            for file, seconds in result.file_seconds.items()}


def shared_seconds(result: BatchResult) -> dict[str, float]:
    """Per file of the batch, the set-up its tests share: RSpec's hooks outside its
    tests' seconds, pytest's fixtures inside them (>= 0)."""
    shared = hooks_outside_tests(result)
    for test in result.tests:
        if test.shared_seconds:
            shared[test.file] = shared.get(test.file, 0.0) + test.shared_seconds
    return shared


def file_shared_seconds(results: Iterable[BatchResult]) -> dict[str, float]:
    """Per file, the least shared time any batch of the run measured for it: a whole
    file's hooks once, whether it ran whole or in pieces that each paid them."""
    least: dict[str, float] = {}
    for result in results:
        for file, seconds in shared_seconds(result).items():
            least[file] = min(seconds, least.get(file, seconds))
    return least
