"""A static split every machine computes alike, without talking to the others.

Two users: `shardrun ci` nodes that cannot reach Redis (ci_node.fallback), and CI jobs
running `pytest --shardrun-group I --shardrun-groups N` (pytest-split's use case), which
never talk to each other at all. Each job keeps only its share, so the shares cover the
suite exactly once only if every job plans from the same inputs: the sorted file list and
a timing file committed, unchanged, in the checkout. A history restored from a per-job CI
cache may differ from job to job (then shares overlap and some files run nowhere), so it
is left out: without a committed timing file the split balances file sizes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from shardrun.checkout import committed_unchanged
from shardrun.plan.history import History

# Where the estimates come from without a committed timing file (they are not seconds).
SIZES_SOURCE = "file sizes (no timing file committed in the checkout)"


def shared_estimates(
    files: Iterable[str], timings: Path, root: Path
) -> tuple[dict[str, float], str]:
    """Estimates every job of the build has alike, and where they come from."""
    path = timings if timings.is_absolute() else root / timings
    if committed_unchanged(path, root):
        history, source = History.load(path), f"{timings} as committed"
    else:
        history, source = History(path), SIZES_SOURCE
    return history.estimates(sorted(files), root), source


def plan_digest(estimates: dict[str, float]) -> str:
    """12 hex digits of the files and estimates a split was made from: equal on every job
    when their splits agree."""
    text = json.dumps(sorted((unit, round(seconds, 6)) for unit, seconds in estimates.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:12]
