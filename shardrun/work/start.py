"""Starting a worker, the same way for `shardrun worker` and for `shardrun run`'s forks.

`shardrun worker` (cli/worker.py) parses its options and calls `start_worker`; a local
worker forked by `shardrun run` or `shardrun ci` (run/pool.py) calls it in the child. So
both serve batches with the same context, settings and RQ worker loop.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

from shardrun.models import RunSpec
from shardrun.runspec import SECRET_VARIABLE
from shardrun.work import worker
from shardrun.work.context import default_context
from shardrun.work.warm import Prewarm

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def start_worker(
    url: str, run_id: str | None, worker_index: int, root: Path, own: RunSpec | None,
    prewarm: Prewarm | None, *, burst: bool,
) -> None:
    """Serve batches until stopped (or, with `burst`, until the queues are empty).

    `own` is this worker's own settings (runspec.py); without them the worker runs a
    run's settings only when they are signed with the secret in SHARDRUN_SECRET, which
    is taken out of the environment here: it is not for the tests to read.
    """
    # force: a forked worker's logging is its own, not what its parent had set up.
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, force=True)
    secret = os.environ.pop(SECRET_VARIABLE, None) or None
    context = replace(default_context(root.resolve(), worker_index), spec=own,
                      secret=secret)
    worker.serve(url, context, run_id, burst=burst, prewarm_runner=prewarm)
