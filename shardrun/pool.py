"""Local worker processes for `shardrun run`: the same `shardrun worker` a CI node runs.

Starting real `shardrun worker` processes (not threads or forks of the coordinator) means
a laptop run exercises exactly the path a fleet of containers does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import IO

from shardrun.process import kill_tree


class LocalWorkers:
    """N `python -m shardrun worker --burst` processes serving one run."""

    def __init__(self, url: str, run_id: str, count: int, root: Path, log_dir: Path):
        self.url = url
        self.run_id = run_id
        self.count = count
        self.root = root
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for index in range(1, self.count + 1):
            log = (self.log_dir / f"worker-{index}.log").open("wb")
            self._logs.append(log)
            self.processes.append(
                subprocess.Popen(
                    self.argv(index), cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )

    def argv(self, index: int) -> list[str]:
        return [
            sys.executable, "-m", "shardrun", "worker", "--redis-url", self.url,
            "--run-id", self.run_id, "--burst", "--worker-index", str(index),
            "--root", str(self.root),
        ]

    def all_exited(self) -> bool:
        return all(process.poll() is not None for process in self.processes)

    def stop(self) -> None:
        """Kill what still runs (Ctrl-C, or the run is over) and close the logs.

        The whole tree goes: the test processes a worker started sit in sessions of their
        own, so signalling the worker alone would orphan them.
        """
        for process in self.processes:
            if process.poll() is None:
                kill_tree(process.pid)
            process.wait()
        for log in self._logs:
            log.close()
        self._logs.clear()

    def __enter__(self) -> LocalWorkers:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
