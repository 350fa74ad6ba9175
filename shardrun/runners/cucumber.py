"""Cucumber: batches run in shardrun's Cucumber runner server, which reports each scenario.

The server (runners/cucumber_server.rb) runs each batch as one Cucumber run with a
formatter that sends every scenario's start and finish and a filter that sends what the
batch will run. A unit is a feature file or one scenario by `file:line`, the form
`cucumber features/a.feature:12` runs (an outline's example row by the row's line); the
batch's arguments are cucumber's own command line. Listing scenario ids for splitting is
a dry run in the same script.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shardrun.errors import InputError
from shardrun.runners.base import Runner, checked_units
from shardrun.runners.minitest import ruby_command

SERVER_SCRIPT = Path(__file__).with_name("cucumber_server.rb")
LIST_JSON_FILENAME = "cucumber-scenarios.json"


@dataclass(frozen=True)
class CucumberRunner(Runner):
    """Runs feature files or scenarios (features/a.feature:12) with Cucumber in `root`."""

    root: Path
    name = "cucumber"

    def batch_arguments(
        self, units: Sequence[str], extra_args: Sequence[str] = ()
    ) -> tuple[str, ...]:
        return (*checked_units(units), *extra_args)

    def server_argv(self) -> tuple[str, ...] | None:
        return (*ruby_command(self.root), str(SERVER_SCRIPT))

    def list_examples_argv(self, files: Sequence[str], out_dir: Path) -> tuple[str, ...] | None:
        return (*ruby_command(self.root), str(SERVER_SCRIPT), "--list",
                str(out_dir / LIST_JSON_FILENAME), *checked_units(files))

    def parse_examples(self, output: str, out_dir: Path) -> list[str]:
        """Scenario ids from the dry run's JSON; a run that failed is an error, never a
        feature split into zero scenarios."""
        listing = out_dir / LIST_JSON_FILENAME
        try:
            report = json.loads(listing.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise InputError(
                f"cucumber --dry-run wrote no readable {listing}: {output[-500:]}"
            ) from None
        if report.get("errors"):
            detail = "; ".join(str(error) for error in report["errors"])[-500:]
            raise InputError(f"cucumber could not list the scenarios: {detail}")
        return [str(test_id) for test_id in report.get("tests", [])]
