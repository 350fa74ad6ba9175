"""pytest: batches run in shardrun's pytest runner server, which reports each test.

An interpreter (not a `pytest` on PATH) runs it: the project's, as get_runner finds it
(runners/interpreter.py), so the project's environment decides which pytest and plugins
run; `sys.executable` is only the default of a runner built directly. The server
(runners/pytest_server.py) runs each batch as one `pytest.main()` session with an events
plugin: no JUnit file is written or read.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shardrun.errors import InputError
from shardrun.runners.base import Runner, checked_units

# The runner server, shipped as package data beside this module.
SERVER_SCRIPT = Path(__file__).with_name("pytest_server.py")
# Workers on one checkout would race on .pytest_cache (lastfailed, nodeids), and a
# per-shard cache makes --lf/--ff meaningless anyway: no worker sees the whole suite.
NO_CACHE = ("-p", "no:cacheprovider")

# `--collect-only -qq` (when the project's addopts already has -q) prints "file: count"
# instead of node ids; recognised so that case fails loudly instead of listing nothing.
_PER_FILE_COUNT = re.compile(r"^\S+\.py: \d+$")


@dataclass(frozen=True)
class PytestRunner(Runner):
    """Runs test files or node ids (tests/test_a.py::TestX::test_y) with pytest in `root`.

    `root` should be pytest's rootdir (where its ini file is), since node ids are relative
    to the rootdir and units are relative to `root`.
    """

    root: Path
    python: str = sys.executable
    name = "pytest"

    def batch_arguments(
        self, units: Sequence[str], extra_args: Sequence[str] = ()
    ) -> tuple[str, ...]:
        return (*checked_units(units), *NO_CACHE, *extra_args)

    def server_argv(self) -> tuple[str, ...] | None:
        """The server by its path: it imports nothing of shardrun, so any interpreter
        with pytest runs it."""
        return (self.python, str(SERVER_SCRIPT))

    def list_examples_argv(self, files: Sequence[str], out_dir: Path) -> tuple[str, ...] | None:
        return (self.python, "-m", "pytest", "--collect-only", "-q", *NO_CACHE,
                *checked_units(files))

    def parse_examples(self, output: str, out_dir: Path) -> list[str]:
        """Node ids: the "::" lines before the first blank line (the summary follows it)."""
        node_ids: list[str] = []
        for line in output.splitlines():
            if not line.strip():
                break
            if "::" in line:
                node_ids.append(line.strip())
            elif _PER_FILE_COUNT.match(line.strip()):
                raise InputError(
                    "pytest --collect-only printed per-file counts, not node ids: "
                    "remove -q from addopts in the project's pytest configuration"
                )
        return node_ids
