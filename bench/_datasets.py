"""Load the shared real-world timing files for the benchmarks.

A small, self-contained parser of the three formats in ../shared/data/timings (see its
README.md). It deliberately does not import `shardrun.plan.timings`: the benchmarks measure the
planner against the raw files, and must not change when the production loader does.

It also holds the few helpers every bench script needs to rewrite its own section of
docs/benchmarks.md and to say where the numbers were measured.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

TIMINGS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "timings"
HISTORY_DIR = TIMINGS_DIR / "history"

KNAPSACK = "knapsack"
PYTEST_SPLIT = "pytest-split"
PARALLEL_TESTS = "parallel_tests"

NODE_ID_SEPARATOR = "::"  # pytest node ids: "tests/test_x.py::TestY::test_z"


@dataclass(frozen=True)
class Dataset:
    """One timing file: its name, format and durations exactly as the file keys them."""

    name: str
    format: str
    durations: dict[str, float]

    @property
    def per_test(self) -> bool:
        """pytest-split files time single tests; the others already time whole files."""
        return self.format == PYTEST_SPLIT

    def by_file(self) -> dict[str, float]:
        return sum_by_file(self.durations)


@dataclass(frozen=True)
class Version:
    """One committed version of a project's durations file (history/<project>/)."""

    name: str  # "<date>_<commit>"
    durations: dict[str, float]


def sum_by_file(durations: Mapping[str, float]) -> dict[str, float]:
    """Per-file seconds: a node id's file is the part before "::" (a file path stays itself)."""
    totals: dict[str, float] = defaultdict(float)
    for unit, seconds in durations.items():
        totals[unit.split(NODE_ID_SEPARATOR, 1)[0]] += seconds
    return dict(totals)


def detect_format(path: Path) -> str | None:
    """The format from the file name, as the README names them; None for anything else."""
    name = path.name
    if name.endswith(".json") and "knapsack_" in name:
        return KNAPSACK
    if name.endswith(".test_durations") or (name.endswith(".json") and "durations" in name):
        return PYTEST_SPLIT
    if name.endswith(".log") and "parallel_runtime" in name:
        return PARALLEL_TESTS
    return None


def parse_json_durations(text: str) -> dict[str, float]:
    """knapsack and pytest-split files: one JSON object of unit -> seconds."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object of unit -> seconds")
    return {str(unit): float(seconds) for unit, seconds in data.items()}


def parse_parallel_runtime_log(lines: Iterable[str]) -> dict[str, float]:
    """parallel_tests logs: `path:seconds` lines, last value wins, anything else ignored.

    Logs hold stray rspec output ("Randomized with seed 1234", "Run options: ..."), and one
    holds many concatenated runs, hence "last value wins".
    """
    durations: dict[str, float] = {}
    for line in lines:
        path, sep, value = line.strip().rpartition(":")
        if not sep or not path:
            continue
        try:
            seconds = float(value)
        except ValueError:
            continue
        if math.isfinite(seconds):
            durations[path] = seconds
    return durations


def load_timing_file(path: Path) -> Dataset | None:
    """One file as a Dataset, or None when its name matches none of the three formats."""
    kind = detect_format(path)
    if kind is None:
        return None
    text = path.read_text(encoding="utf-8")
    if kind == PARALLEL_TESTS:
        durations = parse_parallel_runtime_log(text.splitlines())
    else:
        durations = parse_json_durations(text)
    return Dataset(path.name, kind, durations)


def load_datasets(directory: Path = TIMINGS_DIR) -> list[Dataset]:
    """Every timing file directly in `directory`, sorted by name (history/ is separate)."""
    found = (load_timing_file(path) for path in sorted(directory.iterdir()) if path.is_file())
    return [dataset for dataset in found if dataset is not None and dataset.durations]


def load_history(directory: Path = HISTORY_DIR) -> dict[str, list[Version]]:
    """project -> its versions oldest first; file names start with the date, so sort works."""
    projects: dict[str, list[Version]] = {}
    for project in sorted(path for path in directory.iterdir() if path.is_dir()):
        projects[project.name] = [
            Version(path.stem, parse_json_durations(path.read_text(encoding="utf-8")))
            for path in sorted(project.glob("*.data"))
        ]
    return projects


# --- docs/benchmarks.md ----------------------------------------------------------------
# Each bench script owns one "## " section of docs/benchmarks.md and rewrites only that,
# so scripts written by different people can share the file.

BENCHMARKS_DOC_TITLE = "# Benchmarks"


def replace_section(document: str, heading: str, body: str) -> str:
    """`document` with the section under `heading` ("## ...") replaced, or appended.

    The section runs to the next "## " heading or the end; other sections stay byte for byte.
    """
    lines = document.splitlines()
    section = [heading, "", *body.strip("\n").splitlines(), ""]
    if heading not in lines:
        base = lines or [BENCHMARKS_DOC_TITLE, ""]
        if base[-1].strip():
            base.append("")
        return "\n".join([*base, *section]).rstrip("\n") + "\n"
    start = lines.index(heading)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join([*lines[:start], *section, *lines[end:]]).rstrip("\n") + "\n"


def write_section(path: Path, heading: str, body: str) -> None:
    """Replace (or add) one section of the markdown file at `path`, creating the file."""
    document = path.read_text(encoding="utf-8") if path.exists() else ""
    path.write_text(replace_section(document, heading, body), encoding="utf-8")


def publish(body: str, heading: str, write: Path | None) -> None:
    """Print a benchmark's section, and with --write put it into that markdown file."""
    print(body)
    if write:
        write_section(write, heading, body)


def byte_compile_shardrun(python: str = sys.executable) -> None:
    """Compile the modules of `python`'s shardrun as `pip install` does, before timing
    whole commands (a --baseline's too, with its own interpreter).

    An editable install leaves none, and with PYTHONDONTWRITEBYTECODE set (this machine
    sets it) Python writes none either, so every shardrun process compiled its modules
    again: 60-80 ms of every run's start-up (2026-12-07), which no user of an installed
    shardrun pays and no peer, installed with its bytecode, paid in the same benchmark.
    """
    script = ("import compileall, os, shardrun, sys\n"
              "sys.exit(not compileall.compile_dir(os.path.dirname(shardrun.__file__), quiet=1))")
    if subprocess.run([python, "-c", script], check=False).returncode != 0:
        raise SystemExit(f"could not byte-compile the shardrun of {python}")


def machine_description() -> str:
    """Where a number was measured: date, OS, CPU count (as `nproc` reports), Python."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{date.today().isoformat()} on {platform.system()} {platform.machine()}, "
        f"{cpus} CPUs (nproc), Python {platform.python_version()}"
    )


def coverage_note(parts: int, missing: Sequence[str]) -> list[str]:
    """A peers section's caveat when it was rendered from several --results files, or
    lacks scenarios: a blank line and one paragraph, or nothing."""
    notes = []
    if parts > 1:
        notes.append(f"Measured in {parts} parts, one `--results` file each (bench/results/): "
                     "rounds interleave the tools and N within a part, not across parts. The "
                     "parts ran at different times on a virtual machine whose speed varies, "
                     "so compare the tools within a scenario, not one scenario's seconds "
                     "with another's.")
    if missing:
        notes.append(f"Not measured at this size yet: {', '.join(missing)}.")
    return ["", " ".join(notes)] if notes else []


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The command that reproduces this run, as typed from the repository root."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", f"bench/{Path(script).name}", *arguments])


def provenance(script: str, argv: Sequence[str] | None) -> str:
    """The opening lines of a section: which command measured it, where and when."""
    return (
        f"Measured by `{command_line(script, argv)}` (run from the repository root;"
        f" without `--write` it only prints), {machine_description()}."
    )
