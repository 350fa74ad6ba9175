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

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shardrun.runners.base import checked_units
from shardrun.runners.ruby import RubyServerRunner

SERVER_SCRIPT = Path(__file__).with_name("minitest_server.rb")
LIST_JSON_FILENAME = "minitest-tests.json"
# Between a batch's units and Minitest's own options (`--seed 1`, `-n /x/`).
OPTIONS_SEPARATOR = "--"


@dataclass(frozen=True)
class MinitestRunner(RubyServerRunner):
    """Runs test files or test ids (test/a_test.rb::ATest#test_b) with Minitest in `root`."""

    name = "minitest"
    server_script = SERVER_SCRIPT
    listing_name = LIST_JSON_FILENAME

    def batch_arguments(
        self, units: Sequence[str], extra_args: Sequence[str] = ()
    ) -> tuple[str, ...]:
        return (*checked_units(units), OPTIONS_SEPARATOR, *extra_args)
