"""Listing the tests of the files queue mode splits: the I/O of example splitting.

Which files to split is batching.units_to_split's pure rule, and what each listed test
is worth per_test.py's; this module runs the one process between them that lists the
tests of all those files (`rspec --dry-run --format json`, `pytest --collect-only -q`).
A listing that fails is not an error: the files simply run whole, as they would have.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from shardrun.errors import ShardrunError
from shardrun.plan.timings import file_of_unit
from shardrun.runners.base import Runner
from shardrun.work.process import run_process

log = logging.getLogger(__name__)
# Listing examples boots the framework once; a suite that cannot list in this long is
# better run file by file than held up.
LIST_TIMEOUT_SECONDS = 120.0


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
