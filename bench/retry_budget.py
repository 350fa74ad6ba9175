"""What retries cost on a suite with dozens of deterministic failures (issue 25).

A generated pytest suite of FILES files x TESTS tests (each sleeping SLEEP seconds), of
which FAILING files hold one test that fails every time, runs through `shardrun run -w
WORKERS` with the default retry budget, with `--retries 0`, and with every failure retried
(`--retry-budget 100000`, what shardrun did before the budget), interleaved ROUNDS times.
The target: the default within 5% of `--retries 0`.

    python bench/retry_budget.py [--rounds 3] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _datasets import provenance, publish

HEADING = "## Retries on a suite with dozens of deterministic failures"
FILES, TESTS, SLEEP, FAILING, WORKERS = 40, 10, 0.05, 40, 2
SETTINGS = {"default": [], "--retries 0": ["--retries", "0"],
            "every failure retried": ["--retry-budget", "100000"]}
TARGET = 1.05


def write_suite(root: Path) -> None:
    root.mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    for index in range(FILES):
        tests = [f"def test_{n}():\n    time.sleep({SLEEP})\n" for n in range(TESTS - 1)]
        fails = index < FAILING
        tests.append("def test_needs_a_service():\n    assert not "
                     f"{'True' if fails else 'False'}, 'the service is down'\n")
        path = root / "tests" / f"test_{index:02d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("import time\n\n\n" + "\n\n".join(tests))


def run(root: Path, scratch: Path, extra: Sequence[str]) -> tuple[float, int]:
    """Wall seconds of one `shardrun run`, and how many retry batches it ran."""
    timings = scratch / "timings.json"
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "shardrun", "run", "tests", "-w", str(WORKERS),
         "--python", sys.executable, "--junit-out", str(scratch / "junit.xml"),
         "--timings", str(timings), *extra],
        cwd=root, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if completed.returncode != 1 or not re.search(rf"\b{FAILING} failed\b", completed.stdout):
        sys.exit(f"unexpected run: {completed.stdout[-2000:]}{completed.stderr[-2000:]}")
    record = json.loads(timings.read_text())["runs"][-1]
    return wall, sum(1 for batch in record["batches"] if batch["attempt"] > 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", type=Path, default=None)
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="shardrun-retry-budget-"))
    walls: dict[str, list[float]] = {name: [] for name in SETTINGS}
    retried: dict[str, int] = {}
    try:
        root = scratch / "suite"
        write_suite(root)
        run(root, scratch, [])  # timings for the measured runs, which plan alike
        for _ in range(args.rounds):
            for name, extra in SETTINGS.items():
                wall, retried[name] = run(root, scratch, extra)
                walls[name].append(wall)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    base = statistics.median(walls["--retries 0"])
    lines = ["| retries | wall s (median) | retry batches | / `--retries 0` |",
             "|:---|---:|---:|---:|"]
    lines += [f"| {name} | {statistics.median(values):.2f} | {retried[name]} | "
              f"{statistics.median(values) / base:.3f} |" for name, values in walls.items()]
    ratio = statistics.median(walls["default"]) / base
    body = "\n".join([
        provenance("bench/retry_budget.py", argv), "",
        f"{FILES} pytest files of {TESTS} tests ({SLEEP} s each), {FAILING} of them with one "
        f"test that fails every time, `shardrun run -w {WORKERS}`, {args.rounds} interleaved "
        f"rounds after one run that records timings. Target: the default within "
        f"{TARGET:.2f} x `--retries 0`: {'met' if ratio <= TARGET else 'NOT met'} "
        f"({ratio:.3f}).", "", *lines, ""])
    publish(body, HEADING, args.write)
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
