"""Local worker processes for `shardrun run`: the same worker a CI node runs.

Each is a fork of the coordinator (forked.py: no new interpreter, no second import of
redis and rq) that runs the entry `shardrun worker` ends in (work/start.py): the same RQ
loop and job function as a fleet of containers, on their own process each, so a test
that kills its worker kills no other. They serve the run until the coordinator stops
them (not --burst): a batch requeued after a lost lease still finds a worker. A worker
that dies is restarted (forked again), a bounded number of times.

A worker killed with SIGKILL cannot stop its test processes: they sit in sessions of their
own and are re-parented to init, where no process tree leads to them. Left alone they run
on beside the batch's retry (on the same TEST_ENV_NUMBER, so the same database) and
outlive the run. Every local worker therefore carries an environment tag its test
processes inherit; the tagged processes of a dead worker are killed before it is
replaced, and whatever still carries the pool's tag when the pool stops.

If the coordinator itself is SIGKILLed none of that runs: each worker is started with a
parent-death signal (lifeline.py) and so is each worker's runner, so the kernel ends them.
A forked worker's command line is the coordinator's: the Redis URL is on it only if it
was on `shardrun run`'s (pass a password through SHARDRUN_REDIS_URL, not --redis-url).
The tests a worker runs see neither the URL nor the run's secret.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import psutil

from shardrun.config import available_cpus
from shardrun.errors import InfrastructureError, InputError, file_error
from shardrun.models import RunSpec
from shardrun.phases import mark
from shardrun.run.embedded import install_signal_handlers
from shardrun.run.forked import ForkedProcess, fork_child
from shardrun.runspec import own_spec_from_environment
from shardrun.work.start import start_worker
from shardrun.work.tree import kill_tree
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
# The variable `shardrun worker` reads its Redis URL from (cli/worker.py's envvar).
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
    """N worker processes serving one run, forked from this one (forked.py)."""

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
        self.processes: list[ForkedProcess] = []
        self.restarts = 0
        self._logs: list[IO[bytes]] = []
        self._pids: list[int] = []
        self._asked_to_stop: set[int] = set()  # pids sent SIGTERM already
        # Unique per pool, not per run: in CI mode several nodes (on one host in tests)
        # run pools for the same run id, and must never kill each other's workers.
        self._pool_tag = f"{run_id}/{uuid.uuid4().hex}/"

    def start(self) -> None:
        """Start the workers from the calling thread, which must outlive them (lifeline.py)."""
        self.processes = [self._spawn(index) for index in range(1, self.count + 1)]

    def _spawn(self, index: int) -> ForkedProcess:
        process = fork_child(lambda: self._serve(index), self._open_log(index), self.root,
                             {WORKER_TAG_VARIABLE: self._tag(index)},
                             WORKER_PARENT_DEATH_SIGNAL)
        self._pids.append(process.pid)
        return process

    def _serve(self, index: int) -> None:
        """In the forked child: what `shardrun worker --run-id ID --worker-index I --root
        R [--prewarm F]` does, with the pool's settings as the worker's own."""
        install_signal_handlers()
        mark("worker start")
        os.environ.pop(REDIS_URL_VARIABLE, None)  # not for the tests to read
        inherited = own_spec_from_environment()  # and taken out of theirs, too
        own = self.spec if self.spec is not None else inherited
        start_worker(self.url, self.run_id, index, self.root, own, self.prewarm, burst=False)

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

    def request_stop(self) -> None:
        """Ask each worker to stop (SIGTERM, once: a second one would cut short the stop of
        its runner) without waiting; `stop` waits. After the last result the coordinator
        asks first and merges the report while the workers and their runners exit."""
        for process in self.processes:
            if process.pid in self._asked_to_stop or process.poll() is not None:
                continue
            self._asked_to_stop.add(process.pid)
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        """Stop the workers and their test processes, and close the logs.

        A worker is asked first (SIGTERM): one running a batch kills its runner and hands
        the batch back unreported (worker.run_shard), since only the worker was stopped,
        not the tests. Signalling the runners at the same time would race that: a runner
        killed first looks like a batch whose tests were killed. Then the whole tree goes:
        the test processes a worker started sit in sessions of their own, so signalling
        the worker alone could orphan them.
        """
        self.request_stop()
        running = [process for process in self.processes if process.poll() is None]
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
