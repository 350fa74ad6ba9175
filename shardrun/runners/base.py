"""The one Protocol every test runner implements, plus what all runners share.

A runner only knows how to *describe* a test process: the argv for some units, where the
JUnit XML will be, how to list example ids and read per-example times. Starting, timing and
killing the process is `process.py`'s job, so a runner never imports subprocess and a new
framework overrides a few small methods (pytest-xdist's scheduler protocol is the model).
Concrete runners subclass `Runner` explicitly to inherit the defaults for what they do not
support (listing examples, per-example times).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from shardrun.errors import InputError

JUNIT_FILENAME = "junit.xml"


@dataclass(frozen=True)
class Invocation:
    """One test process: argv (never a shell string) and the files it leaves behind.

    The caller runs `argv` with cwd = the project root; units in argv are relative to it,
    output paths are whatever `out_dir` was (usually absolute, in the worker's scratch dir).
    """

    argv: tuple[str, ...]
    junit_path: Path
    json_path: Path | None = None  # rspec's own JSON (example ids + run_time), else None
    # How many leading argv items name the program ("python", "-m", "pytest"): the rest is
    # the framework's own command line, which is what a warm runner is sent.
    program_length: int = 0

    @property
    def arguments(self) -> tuple[str, ...]:
        return self.argv[self.program_length:]


class Runner(Protocol):
    """How to run a set of units with one test framework.

    Only `name` and `invocation` are required; the defaults below mean "not supported".
    """

    name: str  # "rspec" | "pytest" | "command"

    def invocation(
        self, units: Sequence[str], out_dir: Path, extra_args: Sequence[str] = ()
    ) -> Invocation:
        """The argv that runs `units`, writing JUnit XML (and maybe JSON) under `out_dir`."""
        ...

    def server_argv(self) -> tuple[str, ...] | None:
        """The argv of a warm runner (shardrun/warm.py) for this framework, or None.

        A warm runner takes `Invocation.arguments` batch after batch in one process.
        """
        return None

    def list_examples_argv(self, files: Sequence[str], out_dir: Path) -> tuple[str, ...] | None:
        """The argv that lists the example ids in `files`, or None if unsupported.

        Used to split a slow file into examples; the output goes to `parse_examples`.
        """
        return None

    def parse_examples(self, output: str, out_dir: Path) -> list[str]:
        """Example ids from a `list_examples_argv` run (its stdout, and files in out_dir)."""
        return []

    def example_times(self, invocation: Invocation) -> dict[str, float]:
        """Seconds per example id from a finished run, when the framework reports them.

        Missing or unreadable output gives {}: the JUnit XML stays the source of truth,
        these are only a finer-grained bonus for the timing history.
        """
        return {}


def checked_units(units: Sequence[str]) -> tuple[str, ...]:
    """Refuse units a test framework would read as an option instead of a path.

    Units go into argv as separate items, so quoting is never the problem; a leading "-"
    is, because rspec and pytest would parse "-x_spec.rb" as flags.
    """
    if not units:
        raise InputError("no test units to run: the shard is empty (check the file globs)")
    for unit in units:
        if not unit or unit.startswith("-"):
            raise InputError(
                f"test unit {unit!r} is not a relative path: rename the file or fix the glob"
            )
    return tuple(units)


def worker_env(base: Mapping[str, str], worker_index: int, tmpdir: Path) -> dict[str, str]:
    """The environment for a test process on worker `worker_index` (1-based).

    Follows the parallel_tests convention that suites already use to pick a database per
    worker: TEST_ENV_NUMBER is "" on the first worker and "2", "3", ... on the others.
    TMPDIR/TMP/TEMP point at a per-worker directory (the caller creates it) so workers on
    one host never share temp files. Everything else in `base` is kept.
    """
    if worker_index < 1:
        raise ValueError(f"worker_index is 1-based, got {worker_index}")
    env = dict(base)
    env["TEST_ENV_NUMBER"] = "" if worker_index == 1 else str(worker_index)
    env["SHARDRUN_WORKER_INDEX"] = str(worker_index)
    for name in ("TMPDIR", "TMP", "TEMP"):
        env[name] = str(tmpdir)
    return env
