"""Local worker processes for `shardrun run`: the same `shardrun worker` a CI node runs.

Starting real `shardrun worker` processes (not threads or forks of the coordinator) means
a laptop run exercises exactly the path a fleet of containers does. They serve the run
until the coordinator stops them (not --burst): a batch requeued after a lost lease still
finds a worker. A worker that dies is restarted, a bounded number of times.

A worker killed with SIGKILL cannot stop its test processes: they sit in sessions of their
own and are re-parented to init, where no process tree leads to them. Left alone they run
on beside the batch's retry (on the same TEST_ENV_NUMBER, so the same database) and
outlive the run. Every local worker therefore carries an environment tag its test
processes inherit; the tagged processes of a dead worker are killed before it is
replaced, and whatever still carries the pool's tag when the pool stops.

If the coordinator itself is SIGKILLed none of that runs: each worker is started with a
parent-death signal (lifeline.py) and so is each worker's runner, so the kernel ends them.
The Redis URL reaches the workers through SHARDRUN_REDIS_URL, not their command line,
where `ps` would show its password to every user of the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import psutil

from shardrun.config import available_cpus
from shardrun.errors import InfrastructureError, InputError, file_error
from shardrun.models import RunSpec
from shardrun.runspec import SPEC_VARIABLE
from shardrun.work.lifeline import die_with_parent
from shardrun.work.process import kill_tree
from shardrun.work.warm import Prewarm

# Restarts allowed per worker slot before the run gives up on local workers: enough to
# ride out a few crashes (OOM kills, a Redis restart), not a crash loop.
MAX_RESTARTS_PER_WORKER = 3
# How long stopped workers get to hand their batches back before their trees are killed:
# a runner dies within KILL_GRACE_SECONDS of its worker's SIGTERM.
HAND_BACK_SECONDS = 5.0
# The environment variable naming the pool and worker slot of every process a local
# worker starts: "<run_id>/<pool>/<index>/" (its test processes inherit it via worker_env).
WORKER_TAG_VARIABLE = "SHARDRUN_LOCAL_WORKER"
# The variable `shardrun worker` reads its Redis URL from (worker_cli.py's envvar).
REDIS_URL_VARIABLE = "SHARDRUN_REDIS_URL"
# Local workers per CPU at most. Each is a Python process plus a warm rspec or pytest
# process (50-300 MB, a Rails app's boot each): past a few per core even a suite that
# mostly waits (browsers, network) gains nothing, and each extra worker's boot is paid on
# the same cores. `run -w 100000` would fork until the machine falls over; pytest-xdist's
# `-n auto` likewise ties the count to the CPUs. Wider runs belong on more machines
# (`shardrun worker` processes or `shardrun ci` nodes), which this limit does not touch.
LOCAL_WORKERS_PER_CPU = 8
# ...but never below this: a 1- or 2-CPU CI box may still run an I/O-bound suite wide.
MIN_LOCAL_WORKER_LIMIT = 16
# A worker whose coordinator died is killed outright: on SIGTERM, RQ's worker would wait
# for its current batch to finish (a "warm shutdown"), for up to the batch's timeout, for
# a coordinator that will never read the result. Its runner gets SIGTERM in turn.
WORKER_PARENT_DEATH_SIGNAL = signal.SIGKILL


def local_worker_limit() -> int:
    return max(MIN_LOCAL_WORKER_LIMIT, LOCAL_WORKERS_PER_CPU * available_cpus())


def check_local_workers(count: int) -> None:
    """Refuse a local worker count no machine of this size can use (exit 2)."""
    limit = local_worker_limit()
    if count > limit:
        raise InputError(
            f"--workers {count}: at most {limit} local workers here ({LOCAL_WORKERS_PER_CPU} "
            f"per CPU, {available_cpus()} CPUs, at least {MIN_LOCAL_WORKER_LIMIT}); more only "
            "queue for the same cores. To go wider, start `shardrun worker` on more machines"
            " or run `shardrun ci` on several nodes"
        )


class LocalWorkers:
    """N `shardrun worker` processes serving one run (through `python -m
    shardrun.cli.worker`, which spares each the rest of the CLI's imports)."""

    def __init__(
        self, url: str, run_id: str, count: int, root: Path, log_dir: Path,
        prewarm: Prewarm | None = None, spec: RunSpec | None = None,
    ):
        check_local_workers(count)
        self.url = url
        self.prewarm = prewarm  # each worker boots its runner as it starts
        self.spec = spec  # how to run the batches: the workers' own settings (runspec.py)
        self.run_id = run_id
        self.count = count
        self.root = root
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.restarts = 0
        self._logs: list[IO[bytes]] = []
        self._pids: list[int] = []
        # Unique per pool, not per run: in CI mode several nodes (on one host in tests)
        # run pools for the same run id, and must never kill each other's workers.
        self._pool_tag = f"{run_id}/{uuid.uuid4().hex}/"

    def start(self) -> None:
        """Start the workers from the calling thread, which must outlive them (lifeline.py)."""
        self.processes = [self._spawn(index) for index in range(1, self.count + 1)]

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        log = self._open_log(index)
        env = {**os.environ, WORKER_TAG_VARIABLE: self._tag(index), REDIS_URL_VARIABLE: self.url}
        if self.spec is not None:
            env[SPEC_VARIABLE] = json.dumps(self.spec.to_dict())
        process = subprocess.Popen(
            self.argv(index), cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env,
            preexec_fn=die_with_parent(WORKER_PARENT_DEATH_SIGNAL),
        )
        self._pids.append(process.pid)
        return process

    def _open_log(self, index: int) -> IO[bytes]:
        """worker-<index>.log in the run's log dir; a read-only or full .shardrun is a
        one-line error (exit 2 or 3), not a traceback."""
        path = self.log_dir / f"worker-{index}.log"
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = path.open("ab")
        except OSError as error:
            raise file_error(path, error, "write the worker log") from None
        self._logs.append(log)
        return log

    def _tag(self, index: int) -> str:
        return f"{self._pool_tag}{index}/"  # the trailing "/" keeps slot 1 from matching 10

    def argv(self, index: int) -> list[str]:
        return [
            sys.executable, "-m", "shardrun.cli.worker",  # the Redis URL is in the environment
            "--run-id", self.run_id, "--worker-index", str(index), "--root", str(self.root),
            *(self.prewarm.worker_arguments() if self.prewarm else ()),
        ]

    def ensure_alive(self) -> None:
        """Restart workers that died (SIGKILL, OOM, lost Redis), within the restart budget."""
        for position, process in enumerate(self.processes):
            if process.poll() is None:
                continue
            kill_tagged(self._tag(position + 1))  # what the dead worker left running
            if self.restarts >= MAX_RESTARTS_PER_WORKER * self.count:
                if self.all_exited():
                    raise InfrastructureError(
                        f"all {self.count} local workers died and were restarted "
                        f"{self.restarts} times; see {self.log_dir}/worker-*.log"
                    )
                return
            self.restarts += 1
            self.processes[position] = self._spawn(position + 1)

    @property
    def pids(self) -> set[int]:
        """Every worker process this pool started (restarted ones included)."""
        return set(self._pids)

    def all_exited(self) -> bool:
        return all(process.poll() is not None for process in self.processes)

    def stop(self) -> None:
        """Stop the workers and their test processes, and close the logs.

        A worker is asked first (SIGTERM): one running a batch kills its runner and hands
        the batch back unreported (worker.run_shard), since only the worker was stopped,
        not the tests. Signalling the runners at the same time would race that: a runner
        killed first looks like a batch whose tests were killed. Then the whole tree goes:
        the test processes a worker started sit in sessions of their own, so signalling
        the worker alone could orphan them.
        """
        running = [process for process in self.processes if process.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + HAND_BACK_SECONDS
        for process in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(deadline - time.monotonic(), 0.0))
        running = [process for process in running if process.poll() is None]
        if running:
            with ThreadPoolExecutor(max_workers=len(running)) as pool:
                list(pool.map(lambda process: kill_tree(process.pid), running))
        for process in self.processes:
            process.wait()
        kill_tagged(self._pool_tag)  # the test processes of workers that died
        for log in self._logs:
            log.close()
        self._logs.clear()

    def __enter__(self) -> LocalWorkers:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def kill_tagged(prefix: str) -> None:
    """Kill (with their trees) the processes whose worker tag starts with `prefix`.

    A process of another user, one that just exited or a zombie cannot be read: none of
    them is running tests.
    """
    for process in psutil.process_iter():
        try:
            tag = process.environ().get(WORKER_TAG_VARIABLE)
        except psutil.Error:
            continue
        if tag is not None and tag.startswith(prefix) and process.pid != os.getpid():
            kill_tree(process.pid)
