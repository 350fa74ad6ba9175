"""What `shardrun run --verbose` costs: every finished test sent through Redis and printed.

A generated pytest suite of FILES files x TESTS trivial tests (so the per-test cost is all
there is to see) runs through `shardrun run -w WORKERS` plain, with `-v` and with `-vv`,
output to a pipe as in CI, interleaved ROUNDS times after one run that records timings.
Without -v a worker writes nothing to the live stream (tests/integration/test_worker.py
checks that); with it, each finished test is one stream entry and one printed line.

    python bench/verbose_cost.py [--rounds 3] [--write docs/benchmarks.md]
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
from collections.abc import Sequence
from pathlib import Path

from _datasets import provenance, publish

HEADING = "## What --verbose costs"
FILES, TESTS, WORKERS = 20, 100, 2
SETTINGS = {"plain": [], "-v": ["-v"], "-vv": ["-vv"]}


def write_suite(root: Path) -> None:
    root.mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    for index in range(FILES):
        body = "".join(f"def test_{n}():\n    print({n})\n\n" for n in range(TESTS))
        path = root / "tests" / f"test_{index:02d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)


def run(root: Path, scratch: Path, extra: Sequence[str]) -> tuple[float, int]:
    """Wall seconds of one `shardrun run`, and the result lines it printed."""
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "shardrun", "run", "tests", "-w", str(WORKERS),
         "--junit-out", str(scratch / "junit.xml"), "--timings", str(scratch / "t.json"),
         *extra],
        cwd=root, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if completed.returncode != 0:
        sys.exit(f"unexpected run: {completed.stdout[-2000:]}{completed.stderr[-2000:]}")
    lines = sum(1 for line in completed.stdout.splitlines() if line.startswith("[w"))
    return wall, lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", type=Path, default=None)
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="shardrun-verbose-cost-"))
    walls: dict[str, list[float]] = {name: [] for name in SETTINGS}
    printed: dict[str, int] = {}
    try:
        root = scratch / "suite"
        write_suite(root)
        run(root, scratch, [])  # timings, so every measured run plans alike
        names = list(SETTINGS)
        for round_index in range(args.rounds):
            shift = round_index % len(names)  # each setting takes each position in turn
            for name in names[shift:] + names[:shift]:
                wall, printed[name] = run(root, scratch, SETTINGS[name])
                walls[name].append(wall)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    base = statistics.median(walls["plain"])
    tests = FILES * TESTS
    lines = ["| output | wall s (median) | result lines | added per test ms |",
             "|:---|---:|---:|---:|"]
    lines += [f"| {name} | {statistics.median(values):.2f} | {printed[name]} | "
              f"{(statistics.median(values) - base) / tests * 1000:.3f} |"
              for name, values in walls.items()]
    body = "\n".join([
        provenance("bench/verbose_cost.py", argv), "",
        f"{FILES} pytest files of {TESTS} trivial tests that print a line, `shardrun run -w "
        f"{WORKERS}` with its output to a pipe, {args.rounds} interleaved rounds (the order "
        "rotating) after one run that records timings; wall time of the whole command, on "
        "a 2-core machine shared with other work.", "", *lines, ""])
    publish(body, HEADING, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
