"""Minitest: batches run in shardrun's Minitest runner server, which reports each test.

The server (runners/minitest_server.rb) puts `test/` and `lib/` on the load path as
`ruby -Itest` and `bin/rails test` do, boots `test/test_helper.rb` once, and runs each
batch with `Minitest.run` and a reporter that sends every test's start and finish. A unit
is a test file or one test, `test/a_test.rb::ATest#test_b` (file, "::", the class as
Ruby names it, "#", the method); a batch's arguments are its units, "--", then Minitest's
own options (the runner arguments after `shardrun run ... --`). Listing ids for splitting
loads the files in the same script and writes them as JSON.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shardrun.errors import InputError
from shardrun.runners.base import Runner, checked_units

SERVER_SCRIPT = Path(__file__).with_name("minitest_server.rb")
LIST_JSON_FILENAME = "minitest-tests.json"
# Between a batch's units and Minitest's own options (`--seed 1`, `-n /x/`).
OPTIONS_SEPARATOR = "--"


def ruby_command(root: Path) -> tuple[str, ...]:
    """`bundle exec ruby` when the project has a Gemfile and bundler is installed, as
    RspecRunner.command() decides; plain `ruby` otherwise."""
    if (root / "Gemfile").is_file() and shutil.which("bundle"):
        return ("bundle", "exec", "ruby")
    return ("ruby",)


@dataclass(frozen=True)
class MinitestRunner(Runner):
    """Runs test files or test ids (test/a_test.rb::ATest#test_b) with Minitest in `root`."""

    root: Path
    name = "minitest"

    def batch_arguments(
        self, units: Sequence[str], extra_args: Sequence[str] = ()
    ) -> tuple[str, ...]:
        return (*checked_units(units), OPTIONS_SEPARATOR, *extra_args)

    def server_argv(self) -> tuple[str, ...] | None:
        return (*ruby_command(self.root), str(SERVER_SCRIPT))

    def list_examples_argv(self, files: Sequence[str], out_dir: Path) -> tuple[str, ...] | None:
        return (*ruby_command(self.root), str(SERVER_SCRIPT), "--list",
                str(out_dir / LIST_JSON_FILENAME), *checked_units(files))

    def parse_examples(self, output: str, out_dir: Path) -> list[str]:
        """Test ids from the listing's JSON; a file that fails to load is an error, never a
        file split into zero tests."""
        listing = out_dir / LIST_JSON_FILENAME
        try:
            report = json.loads(listing.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise InputError(
                f"listing minitest tests wrote no readable {listing}: {output[-500:]}"
            ) from None
        if report.get("errors"):
            detail = "; ".join(str(error) for error in report["errors"])[-500:]
            raise InputError(f"minitest could not load the test files: {detail}")
        return [str(test_id) for test_id in report.get("tests", [])]
