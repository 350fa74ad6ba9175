"""Automatic example splitting: a file too long for one batch becomes its examples.

The decision (which files) is batching.units_to_split's, a pure rule; this module does the
I/O it needs: one runner process that lists the examples of all those files
(`rspec --dry-run --format json`, `pytest --collect-only -q`), and their estimates.
A listing that fails is not an error: the file simply runs whole, as it would have.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from shardrun.errors import ShardrunError
from shardrun.plan.batching import units_to_split
from shardrun.plan.history import History
from shardrun.plan.per_test import known_test_counts, split_file
from shardrun.plan.timings import file_of_unit
from shardrun.runners.base import Runner
from shardrun.work.process import run_process

log = logging.getLogger(__name__)
# Listing examples boots the framework once; a suite that cannot list in this long is
# better run file by file than held up.
LIST_TIMEOUT_SECONDS = 120.0


def split_slow_files(
    estimates: Mapping[str, float],
    workers: int,
    boot_seconds: float,
    runner: Runner,
    history: History,
    root: Path,
) -> dict[str, float]:
    """The estimates with each file worth splitting replaced by its examples
    (per_test.py prices them: known tests from the history, new ones at their
    file's mean per-test time)."""
    known = history.examples()
    slow = units_to_split(estimates, workers, boot_seconds, known_test_counts(known))
    if not slow:
        return dict(estimates)
    listed = list_examples(runner, slow, root)
    split: dict[str, float] = {}
    for unit, seconds in estimates.items():
        examples = listed.get(unit, [])
        if len(examples) < 2:
            split[unit] = seconds
            continue
        split.update(split_file(seconds, examples, known, unit))
    return split


def list_examples(runner: Runner, files: Sequence[str], root: Path) -> dict[str, list[str]]:
    """Example ids per file, from one listing process; {} when the runner cannot list."""
    out_dir = Path(tempfile.mkdtemp(prefix="shardrun-list-"))
    try:
        argv = runner.list_examples_argv(files, out_dir)
        if argv is None:
            return {}
        log_path = out_dir / "list.log"
        outcome = run_process(
            argv, cwd=root, env=dict(os.environ), log_path=log_path,
            timeout_seconds=LIST_TIMEOUT_SECONDS,
        )
        if outcome.exit_code != 0:
            log.warning("listing examples failed (%s); running those files whole",
                        outcome.output_tail.strip().splitlines()[-1:] or outcome.exit_code)
            return {}
        output = log_path.read_text(encoding="utf-8", errors="replace")
        examples = runner.parse_examples(output, out_dir)
    except ShardrunError as error:
        log.warning("could not list examples (%s); running those files whole", error)
        return {}
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    by_file: dict[str, list[str]] = defaultdict(list)
    for example in examples:
        by_file[file_of_unit(example)].append(example)
    return dict(by_file)
