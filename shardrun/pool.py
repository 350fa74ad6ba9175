"""Local worker processes for `shardrun run`: the same `shardrun worker` a CI node runs.

Starting real `shardrun worker` processes (not threads or forks of the coordinator) means
a laptop run exercises exactly the path a fleet of containers does. They serve the run
until the coordinator stops them (not --burst): a batch requeued after a lost lease still
finds a worker. A worker that dies is restarted, a bounded number of times.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

from shardrun.errors import InfrastructureError
from shardrun.process import kill_tree

# Restarts allowed per worker slot before the run gives up on local workers: enough to
# ride out a few crashes (OOM kills, a Redis restart), not a crash loop.
MAX_RESTARTS_PER_WORKER = 3


class LocalWorkers:
    """N `python -m shardrun worker` processes serving one run."""

    def __init__(self, url: str, run_id: str, count: int, root: Path, log_dir: Path):
        self.url = url
        self.run_id = run_id
        self.count = count
        self.root = root
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.restarts = 0
        self._logs: list[IO[bytes]] = []
        self._pids: list[int] = []

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.processes = [self._spawn(index) for index in range(1, self.count + 1)]

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"worker-{index}.log").open("ab")
        self._logs.append(log)
        process = subprocess.Popen(
            self.argv(index), cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self._pids.append(process.pid)
        return process

    def argv(self, index: int) -> list[str]:
        return [
            sys.executable, "-m", "shardrun", "worker", "--redis-url", self.url,
            "--run-id", self.run_id, "--worker-index", str(index), "--root", str(self.root),
        ]

    def ensure_alive(self) -> None:
        """Restart workers that died (SIGKILL, OOM, lost Redis), within the restart budget."""
        for position, process in enumerate(self.processes):
            if process.poll() is None:
                continue
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
        """Kill the workers and their test processes, all at once, and close the logs.

        The whole tree goes: the test processes a worker started sit in sessions of their
        own, so signalling the worker alone would orphan them.
        """
        running = [process for process in self.processes if process.poll() is None]
        if running:
            with ThreadPoolExecutor(max_workers=len(running)) as pool:
                list(pool.map(lambda process: kill_tree(process.pid), running))
        for process in self.processes:
            process.wait()
        for log in self._logs:
            log.close()
        self._logs.clear()

    def __enter__(self) -> LocalWorkers:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
