"""What a file's tests share outside their own seconds: RSpec's before(:context) hooks. Pure.

An example's run time leaves out the before(:context) and after(:context) hooks of its
groups; `let_it_be` and `before(:all)` put a file's database records there, once per file.
A history built from test seconds alone prices such a file at what its examples take, so a
file that spends 2 s in a hook and 10 ms in its examples was planned at 10 ms and left for
the last batch of the run, which it then ended 2 s late. parallel_tests' runtime log and
knapsack time each file's top-level groups, hooks included.

The RSpec runner reports each file's top-level groups' wall time per batch
(BatchResult.file_seconds); what exceeds the file's tests in that batch is what they share.
A file split across batches pays it in every piece, and a whole file once: its history
entry gets it once, the least any batch measured.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from shardrun.models import BatchResult


def shared_seconds(result: BatchResult) -> dict[str, float]:
    """Per file of the batch, its groups' time outside its tests' own seconds (>= 0)."""
    if not result.file_seconds:
        return {}
    tests: dict[str, float] = defaultdict(float)
    for test in result.tests:
        tests[test.file] += test.seconds
    return {file: max(seconds - tests[file], 0.0)
            for file, seconds in result.file_seconds.items()}


def file_shared_seconds(results: Iterable[BatchResult]) -> dict[str, float]:
    """Per file, the least shared time any batch of the run measured for it: a whole
    file's hooks once, whether it ran whole or in pieces that each paid them."""
    least: dict[str, float] = {}
    for result in results:
        for file, seconds in shared_seconds(result).items():
            least[file] = min(seconds, least.get(file, seconds))
    return least
