"""Cucumber: batches run in shardrun's Cucumber runner server, which reports each scenario.

The server (runners/cucumber_server.rb) runs each batch as one Cucumber run with a
formatter that sends every scenario's start and finish and a filter that sends what the
batch will run. A unit is a feature file or one scenario by `file:line`, the form
`cucumber features/a.feature:12` runs (an outline's example row by the row's line); the
batch's arguments are cucumber's own command line. Listing scenario ids for splitting is
a dry run in the same script.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shardrun.runners.base import checked_units
from shardrun.runners.ruby import RubyServerRunner

SERVER_SCRIPT = Path(__file__).with_name("cucumber_server.rb")
LIST_JSON_FILENAME = "cucumber-scenarios.json"


@dataclass(frozen=True)
class CucumberRunner(RubyServerRunner):
    """Runs feature files or scenarios (features/a.feature:12) with Cucumber in `root`."""

    name = "cucumber"
    server_script = SERVER_SCRIPT
    listing_name = LIST_JSON_FILENAME

    def batch_arguments(
        self, units: Sequence[str], extra_args: Sequence[str] = ()
    ) -> tuple[str, ...]:
        return (*checked_units(units), *extra_args)
