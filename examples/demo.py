"""`make demo`: one bundled example suite, run twice on 4 local workers, on one screen.

Why twice: the first run has no timings, so its plan can only balance file sizes, and a
short file of slow browser-like tests fools it; that run records how long every file took,
and the second run plans from those seconds. Each summary closes with the run's wall time
against the same tests back to back, which is the point of shardrun.

Run it with the virtualenv's python (the Makefile does): shardrun must be importable, and
the runs start `python -m shardrun` with this same interpreter.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from shardrun.plan.history import DEFAULT_HISTORY_PATH, History
from shardrun.report.records import RunRecord
from shardrun.run.embedded import describe_redis_server, find_redis_server

EXAMPLES = Path(__file__).resolve().parent
# More workers than a small CI box has cores: the example tests sleep, as tests waiting on a
# database or a browser do, so 4 workers finish ~3x sooner even on 2 cores (start-up is
# the rest).
WORKERS = 4
TEST_PATHS = {"rspec": "spec", "pytest": "tests"}
# The pytest example uses no plugins; the ones in this virtualenv (hypothesis, from
# shardrun's own dev extra) would add ~0.7 s of imports to every worker's pytest start.
# VIRTUAL_ENV: the Makefile's virtualenv is the example's environment (it has pytest), as
# if activated; shardrun runs the pytest example under it (shardrun/runners/interpreter.py).
EXAMPLE_ENV = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "VIRTUAL_ENV": sys.prefix}
RUN_HEADINGS = (
    "run 1 of 2: no timings yet, so the plan can only balance file sizes",
    "run 2 of 2: planned from the seconds run 1 recorded",
)


def rspec_missing() -> str | None:
    """Why the RSpec example cannot run here, or None: it needs rspec and its JUnit formatter."""
    if shutil.which("rspec") is None or shutil.which("ruby") is None:
        return "rspec not installed"
    probe = subprocess.run(["ruby", "-e", "require 'rspec_junit_formatter'"],
                           capture_output=True, check=False)
    return None if probe.returncode == 0 else "rspec_junit_formatter not installed"


def choose_suite(requested: str) -> str:
    """The RSpec example when it can run, else the pytest one (saying why), or as asked."""
    if requested != "auto":
        return requested
    why_not = rspec_missing()
    if why_not is None:
        return "rspec"
    print(f"{why_not}: running the pytest example instead")
    return "pytest"


def forget_timings(root: Path) -> None:
    """Start from no history, so run 1 shows what a plan without timings does, every time."""
    history = root / DEFAULT_HISTORY_PATH
    if history.exists():
        history.unlink()
        print(f"(removed {history.relative_to(EXAMPLES.parent)} so that run 1 starts fresh)")


def run_twice(framework: str) -> int:
    """The two runs, each announced by the command a user would type; the first failure wins."""
    root = EXAMPLES / framework
    command = ["shardrun", "run", TEST_PATHS[framework], "--workers", str(WORKERS)]
    for heading in RUN_HEADINGS:
        print(f"\n== {heading}\n$ {' '.join(command)}   (in examples/{framework})", flush=True)
        completed = subprocess.run([sys.executable, "-m", *command], cwd=root, env=EXAMPLE_ENV,
                                   check=False)
        if completed.returncode != 0:
            return completed.returncode
    print(balance_line(History.load(root / DEFAULT_HISTORY_PATH).runs()[-2:]))
    return 0


def balance_line(runs: list[RunRecord]) -> str:
    """How evenly the two runs loaded their workers, from the run records shardrun keeps in
    the history (docs/dashboard.md): the narrower the range, the less the others wait for
    the last worker."""
    ranges = []
    for number, run in enumerate(runs, start=1):
        busy = [worker.busy_seconds for worker in run.per_worker]
        if busy:
            ranges.append(f"run {number} {min(busy):.1f} to {max(busy):.1f} s")
    return "Seconds each worker was busy: " + "; ".join(ranges)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", nargs="?", choices=["auto", *TEST_PATHS], default="auto")
    framework = choose_suite(parser.parse_args(argv).suite)
    binary = find_redis_server()
    if binary is not None:  # without one, shardrun itself says what to install
        print(describe_redis_server(binary))
    forget_timings(EXAMPLES / framework)
    return run_twice(framework)


if __name__ == "__main__":
    sys.exit(main())
