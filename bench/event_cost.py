"""What reporting every test as an event costs, per test (issue 16's "events must not slow
a run").

A generated suite of FILES x TESTS trivial tests runs, interleaved ROUNDS times, (a) as the
framework's own plain command (`python -m pytest -q`, `rspec`), and (b) as one batch in a
fresh shardrun runner process (the server, its events plugin or formatter, the worker
reading the events and settling the batch). Both are a cold process that runs the same
tests, so (b - a) / tests is what the events, their JSON and the settling add per test.

    python bench/event_cost.py [--rounds 5] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from _datasets import provenance, publish

from shardrun.runners import get_runner, worker_env
from shardrun.work.accounting import reconcile
from shardrun.work.warm import RunnerProcess

HEADING = "## What per-test events cost"
FILES = 20
TESTS = 100  # per file: 2,000 tests


def pytest_suite(root: Path) -> list[str]:
    (root / "pytest.ini").write_text("[pytest]\n")
    files = []
    for index in range(FILES):
        body = "".join(f"def test_{n}():\n    assert {n} == {n}\n\n" for n in range(TESTS))
        path = root / "tests" / f"test_{index:02d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
        files.append(f"tests/test_{index:02d}.py")
    return files


def rspec_suite(root: Path) -> list[str]:
    files = []
    for index in range(FILES):
        body = "".join(f"  it('t{n}') {{ expect({n}).to eq({n}) }}\n" for n in range(TESTS))
        path = root / "spec" / f"f{index:02d}_spec.rb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"RSpec.describe 'f{index}' do\n{body}end\n")
        files.append(f"spec/f{index:02d}_spec.rb")
    return files


def timed(action: Callable[[], None]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def measure(framework: str, rounds: int, scratch: Path) -> tuple[float, float]:
    """Median seconds of the plain command and of the shardrun batch."""
    root = scratch / framework
    root.mkdir()
    files = (rspec_suite if framework == "rspec" else pytest_suite)(root)
    env = worker_env({**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}, 1, scratch)
    plain = (["rspec", *files] if framework == "rspec"
             else [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files])
    runner = get_runner(framework, root)
    server = runner.server_argv()
    assert server is not None

    def run_plain() -> None:
        subprocess.run(plain, cwd=root, env=env, capture_output=True, check=True)

    def run_batch() -> None:
        log = scratch / f"{framework}.log"
        process = RunnerProcess("bench", server, root, env, log)
        try:
            batch = process.run(runner.batch_arguments(files), log, fork=False,
                                timeout_seconds=600)
        finally:
            process.stop()
        settled = reconcile(files, batch.events, batch.outcome)
        assert len(settled.tests) == FILES * TESTS and not settled.unrun

    plains, batches = [], []
    for _ in range(rounds):
        plains.append(timed(run_plain))
        batches.append(timed(run_batch))
    return statistics.median(plains), statistics.median(batches)


def table(rows: Sequence[tuple[str, float, float]]) -> list[str]:
    tests = FILES * TESTS
    lines = ["| framework | tests | plain command s | shardrun batch s | added per test ms |",
             "|:---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {tests} | {plain:.2f} | {batch:.2f} | "
              f"{(batch - plain) / tests * 1000:.3f} |" for name, plain, batch in rows]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write", type=Path, default=None)
    args = parser.parse_args(argv)
    frameworks = ["pytest", *(["rspec"] if shutil.which("rspec") else [])]
    scratch = Path(tempfile.mkdtemp(prefix="shardrun-event-cost-"))
    try:
        rows = [(name, *measure(name, args.rounds, scratch)) for name in frameworks]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    body = "\n".join([
        provenance("bench/event_cost.py", argv), "",
        f"{FILES} files of {TESTS} trivial tests, each run as the framework's plain command "
        "and as one batch in a fresh shardrun runner (events read and settled), interleaved, "
        f"median of {args.rounds}. The difference divided by the tests is what reporting "
        "each test as it happens costs.", "", *table(rows), ""])
    publish(body, HEADING, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
