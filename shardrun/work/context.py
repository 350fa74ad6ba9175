"""What one worker knows about itself: its checkout, its number, its scratch and logs.

Shared by the job function (worker.py) and the executors that run a batch
(executors.py), so neither imports the other for it.
"""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shardrun.checkout import git_head
from shardrun.models import RunSpec
from shardrun.runners import worker_env


@dataclass(frozen=True)
class WorkerContext:
    """What one worker process knows about itself; set once by `serve`."""

    root: Path
    worker_index: int
    log_dir: Path
    tmp_dir: Path
    commit: str | None = None  # the checkout's HEAD; None when it is not a git checkout
    # How to run batches, from this worker's own side (runspec.py); None: the run's
    # published settings, if `secret` verifies them.
    spec: RunSpec | None = None
    secret: str | None = None

    @property
    def name(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}"


def default_context(root: Path, worker_index: int) -> WorkerContext:
    scratch = Path(tempfile.mkdtemp(prefix=f"shardrun-w{worker_index}-"))
    logs = root / ".shardrun" / "logs"
    return WorkerContext(root, worker_index, logs, scratch, git_head(root))


def runner_env(context: WorkerContext) -> dict[str, str]:
    """The test process's environment: a warm runner keeps the one it started with."""
    tmp = context.tmp_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return worker_env(os.environ, context.worker_index, tmp)


def run_log_dir(context: WorkerContext, run_id: str) -> Path:
    log_dir = context.log_dir / run_id
    log_dir.mkdir(parents=True, exist_ok=True)
    return log_dir
