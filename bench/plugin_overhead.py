"""What shardrun's pytest plugin costs a session that does not use it.

pytest imports every installed `pytest11` plugin in every session, so a project that
installs shardrun pays for `shardrun.pytest_plugin` on each `pytest` it runs, `--shardrun`
or not. Measured two ways, on a one-test project, with the plugin autoload off so only
shardrun's plugin differs:

- the module's import time (`python -X importtime`, cumulative, after pytest is imported),
  median of ROUNDS fresh interpreters;
- a whole `pytest -q` session with `-p shardrun.pytest_plugin` against one without,
  interleaved, median of ROUNDS each: its CPU time (user + system, what the plugin adds
  to the machine, little moved by other load) and its wall time.

With bytecode caching on, as most users have it (PYTHONDONTWRITEBYTECODE is removed for
the measured processes, and one warm-up session fills the caches): pytest rewrites the
asserts of every plugin module, and without a cache it parses and compiles them again in
every session.

    python bench/plugin_overhead.py                            # print
    python bench/plugin_overhead.py --write docs/benchmarks.md  # and rewrite the section
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _datasets import machine_description, publish

HEADING = "## The pytest plugin's cost to every session"
ROUNDS = 30
PLUGIN = "shardrun.pytest_plugin"
# Measured once by hand (the same A/B with PYTHONDONTWRITEBYTECODE=1, and cProfile).
NO_CACHE_NOTE = """\
Without bytecode caches (PYTHONDONTWRITEBYTECODE=1, as on the machine shardrun is
developed on) pytest parses, rewrites and compiles the plugin's modules in every session:
about 9 ms of CPU more per session there (the same A/B without the cache; 7 ms of it in
pytest's assertion rewriting, by cProfile), still inside the wall-time noise."""


def environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}


def import_microseconds() -> float:
    """Cumulative -X importtime of the plugin module, pytest already imported."""
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import pytest; import {PLUGIN}"],
        capture_output=True, text=True, check=True, env=environment())
    for line in completed.stderr.splitlines():
        fields = [field.strip() for field in line.removeprefix("import time:").split("|")]
        if len(fields) == 3 and fields[2] == PLUGIN:
            return float(fields[1])
    raise RuntimeError(f"no import time for {PLUGIN}:\n{completed.stderr[-2000:]}")


def session_seconds(root: Path, with_plugin: bool) -> tuple[float, float]:
    """(wall, CPU) seconds of one session."""
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            *(["-p", PLUGIN] if with_plugin else [])]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, cwd=root, env=environment(), capture_output=True, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(rounds: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {
        "import": [], "with": [], "without": [], "with cpu": [], "without cpu": []}
    with tempfile.TemporaryDirectory(prefix="plugin-overhead-") as tmp:
        root = Path(tmp)
        (root / "pytest.ini").write_text("[pytest]\n")
        (root / "test_one.py").write_text("def test_one():\n    pass\n")
        session_seconds(root, True)  # fills the bytecode caches, rewritten ones included
        for index in range(rounds):
            samples["import"].append(import_microseconds())
            order = (True, False) if index % 2 == 0 else (False, True)
            for with_plugin in order:
                key = "with" if with_plugin else "without"
                wall, cpu = session_seconds(root, with_plugin)
                samples[key].append(wall)
                samples[f"{key} cpu"].append(cpu)
    return samples


def section(samples: dict[str, list[float]], argv: Sequence[str], load: float) -> str:
    imported = statistics.median(samples["import"]) / 1000
    median_ms = {key: statistics.median(values) * 1000 for key, values in samples.items()}
    spread = statistics.quantiles(samples["without"], n=4)
    return "\n".join([
        f"`{' '.join(['python bench/plugin_overhead.py', *argv])}`",
        "",
        machine_description(),
        "",
        f"A one-test project, plugin autoload off, bytecode caches on, "
        f"{len(samples['with'])} rounds each, interleaved. Medians:",
        "",
        "| what | CPU ms | wall ms |",
        "| --- | ---: | ---: |",
        f"| `import {PLUGIN}` (cumulative, pytest already imported) | | {imported:.2f} |",
        f"| `pytest -q` with `-p {PLUGIN}` | {median_ms['with cpu']:.0f} | "
        f"{median_ms['with']:.0f} |",
        f"| `pytest -q` without | {median_ms['without cpu']:.0f} | {median_ms['without']:.0f} |",
        f"| difference | {median_ms['with cpu'] - median_ms['without cpu']:+.0f} | "
        f"{median_ms['with'] - median_ms['without']:+.0f} |",
        "",
        f"The sessions without the plugin spread {spread[0] * 1000:.0f} to "
        f"{spread[2] * 1000:.0f} ms of wall time between their quartiles (load average "
        f"{load:.2f} at the start, other work on the machine included), so the CPU column",
        "is the one to read. The plugin imports pytest, `importlib.util` and one small pure "
        "module;",
        "the CLI, Redis, RQ and the planner are imported only by `--shardrun`,",
        "`--shardrun-group` or `--shardrun-record` (checked by",
        "`tests/integration/test_pytest_plugin.py::test_the_plugin_costs_a_session_nothing_it_does_not_use`).",
        "",
        *NO_CACHE_NOTE.splitlines(),
    ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--write", type=Path, metavar="MARKDOWN",
                        help=f"Rewrite the {HEADING!r} section of this file.")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    samples = measure(args.rounds)
    shown = list(argv if argv is not None else sys.argv[1:])
    publish(section(samples, shown, load), HEADING, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
