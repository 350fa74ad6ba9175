"""The one Protocol every test runner implements, plus what all runners share.

A runner only knows how to *describe* a test process: the runner server that reports each
test as it runs (rspec, pytest) and the command line of a batch, or, for a plain command,
the argv and where its JUnit XML will be; how to list example ids. Starting, timing and
killing processes is `warm.py`'s and `process.py`'s job, so a runner never imports
subprocess and a new framework overrides a few small methods (pytest-xdist's scheduler
protocol is the model). Concrete runners subclass `Runner` explicitly to inherit the
defaults for what they do not support.
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
    """One test process: argv (never a shell string) and the JUnit XML it leaves behind.

    The caller runs `argv` with cwd = the project root; units in argv are relative to it,
    output paths are whatever `out_dir` was (usually absolute, in the worker's scratch dir).
    """

    argv: tuple[str, ...]
    junit_path: Path


class Runner(Protocol):
    """How to run a set of units with one test framework.

    A runner with a server (`server_argv`) runs batches of `batch_arguments` there and
    reports each test as an event; one without runs `invocation`'s argv and is read from
    its JUnit XML. The defaults below mean "not supported".
    """

    name: str  # "rspec" | "pytest" | "command"

    def server_argv(self) -> tuple[str, ...] | None:
        """The argv of this framework's runner server (shardrun/work/warm.py), or None.

        The server takes `batch_arguments` batch after batch and reports every test.
        """
        return None

    def batch_arguments(
        self, units: Sequence[str], extra_args: Sequence[str] = ()
    ) -> tuple[str, ...]:
        """The framework's own command line for `units`, as the server receives it."""
        raise _unsupported(self.name, "runs commands, not a runner server")

    def invocation(
        self, units: Sequence[str], out_dir: Path, extra_args: Sequence[str] = ()
    ) -> Invocation:
        """The argv that runs `units` and writes JUnit XML under `out_dir` (no server)."""
        raise _unsupported(self.name, "runs in its runner server")

    def list_examples_argv(self, files: Sequence[str], out_dir: Path) -> tuple[str, ...] | None:
        """The argv that lists the example ids in `files`, or None if unsupported.

        Used to split a slow file into examples; the output goes to `parse_examples`.
        """
        return None

    def parse_examples(self, output: str, out_dir: Path) -> list[str]:
        """Example ids from a `list_examples_argv` run (its stdout, and files in out_dir)."""
        return []



def _unsupported(name: str, why: str) -> NotImplementedError:
    """What a runner raises for the half of the protocol it does not implement (a
    function, so type checkers do not take the defaults for abstract methods)."""
    return NotImplementedError(f"{name} {why}")


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
