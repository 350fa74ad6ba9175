"""The peers on the real suites (bench/real_suites.py): the tools teams use today, each
planned from the serial run's timings, as shardrun's first round is.

- pytest: pytest-xdist (`python -m pytest PATHS -n N`) and pytest-split (N processes
  `--splits N --group i --durations-path <the serial run's durations>` started at once;
  wall = until the last exits). Both plugins are installed in the suite's virtualenv
  (`pip install pytest-xdist pytest-split`); autoloaded, they stay inert in the other
  runs (no `-n`, no `--splits`).
- RSpec: parallel_tests (`parallel_rspec -n N --group-by runtime --runtime-log <the
  serial run's seconds per file>`) and knapsack (N nodes `CI_NODE_TOTAL=N
  CI_NODE_INDEX=i`, knapsack's allocator on a report of the serial run's seconds per
  file, then rspec on the node's files, as bench/peers/rspec_peers.py runs it).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

PEERS = {"pytest": ("xdist", "pytest-split"), "rspec": ("parallel_tests", "knapsack")}
DURATIONS = "test_durations.json"
RUNTIME_LOG = "parallel_runtime_rspec.log"
KNAPSACK_REPORT = "knapsack_rspec_report.json"
KNAPSACK_RUNNER = (
    'require "knapsack"; '
    "allocator = Knapsack::AllocatorBuilder.new(Knapsack::Adapters::RSpecAdapter).allocator; "
    'exec("rspec", "--default-path", allocator.test_dir, "--", *allocator.node_tests)'
)
TIMEOUT_SECONDS = 1800

Launch = tuple[list[str], dict[str, str]]  # argv, extra environment


def write_timing_files(
    serial: Path, framework: str, scratch: Path, collecting_file: Callable[[str, str], str],
) -> None:
    """Each peer's timing file, from the serial run's JUnit."""
    root = ET.parse(serial).getroot()
    if framework == "pytest":
        durations = {}
        for case in root.iter("testcase"):
            classname = case.get("classname", "")
            if not classname:
                continue  # a module skipped as it was collected: no test to time
            file = collecting_file(classname, "")
            module = file.removesuffix(".py").replace("/", ".")
            rest = classname[len(module):].strip(".")
            node = "::".join([file, *([rest.replace(".", "::")] if rest else []),
                              case.get("name", "")])
            durations[node] = float(case.get("time") or 0.0)
        (scratch / DURATIONS).write_text(json.dumps(durations), encoding="utf-8")
        return
    per_file: dict[str, float] = defaultdict(float)
    for case in root.iter("testcase"):
        per_file[(case.get("file") or "").removeprefix("./")] += float(case.get("time") or 0)
    (scratch / RUNTIME_LOG).write_text(
        "".join(f"{file}:{seconds:.4f}\n" for file, seconds in per_file.items()),
        encoding="utf-8")
    (scratch / KNAPSACK_REPORT).write_text(json.dumps(per_file), encoding="utf-8")


def launches(
    tool: str, python: str, paths: Sequence[str], workers: int, scratch: Path,
) -> list[Launch]:
    """The processes one run of `tool` starts together."""
    pytest = [python, "-m", "pytest", *paths, "-q", "-p", "no:cacheprovider"]
    if tool == "xdist":
        return [([*pytest, "-n", str(workers)], {})]
    if tool == "pytest-split":
        return [([*pytest, "--splits", str(workers), "--group", str(group),
                  "--durations-path", str(scratch / DURATIONS)], {})
                for group in range(1, workers + 1)]
    if tool == "parallel_tests":
        return [(["parallel_rspec", "-n", str(workers), "--group-by", "runtime",
                  "--runtime-log", str(scratch / RUNTIME_LOG), *paths], {})]
    if tool == "knapsack":
        return [(["ruby", "-e", KNAPSACK_RUNNER],
                 {"CI_NODE_TOTAL": str(workers), "CI_NODE_INDEX": str(index),
                  "KNAPSACK_REPORT_PATH": str(scratch / KNAPSACK_REPORT),
                  "KNAPSACK_LOG_LEVEL": "warn"})
                for index in range(workers)]
    raise ValueError(f"unknown peer {tool}")


def run_peer(
    tool: str, python: str, paths: Sequence[str], workers: int, scratch: Path, cwd: Path,
    env: Mapping[str, str], log: Path,
) -> tuple[float, int]:
    """Wall time from the first start to the last exit, and the worst exit code."""
    with log.open("w", encoding="utf-8") as output:
        started = time.monotonic()
        processes = [subprocess.Popen(argv, cwd=cwd, env={**env, **extra},
                                      stdin=subprocess.DEVNULL, stdout=output,
                                      stderr=subprocess.STDOUT)
                     for argv, extra in launches(tool, python, paths, workers, scratch)]
        codes = [process.wait(timeout=TIMEOUT_SECONDS) for process in processes]
        wall = time.monotonic() - started
    return wall, max(codes, key=abs)


def peer_available(tool: str, python: str) -> bool:
    """Whether the peer can run here (its plugin or command is installed)."""
    if tool in ("xdist", "pytest-split"):
        module = "xdist" if tool == "xdist" else "pytest_split"
        return subprocess.run([python, "-c", f"import {module}"], capture_output=True,
                              check=False).returncode == 0
    command = "parallel_rspec" if tool == "parallel_tests" else "ruby"
    found = any(os.access(Path(folder) / command, os.X_OK)
                for folder in os.environ.get("PATH", "").split(os.pathsep))
    if tool == "knapsack" and found:
        return subprocess.run(["ruby", "-e", 'require "knapsack"'], capture_output=True,
                              check=False).returncode == 0
    return found
