"""RSpec: batches run in shardrun's RSpec runner server, which reports each example.

A batch's command line ends `--format progress` (stdout: the batch log and its output
tail) `--format ShardrunEventsFormatter` (the events; runners/rspec_server.rb). Formatters
given on the command line replace those in `.rspec`, so the project's own `--format`
settings cannot take the events away. Listing example ids for splitting is a dry run with
rspec's own JSON formatter.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shardrun.errors import InputError
from shardrun.runners.base import Runner, checked_units

LIST_JSON_FILENAME = "rspec-examples.json"
# The runner server (shardrun/work/warm.py) for RSpec, shipped as package data.
SERVER_SCRIPT = Path(__file__).with_name("rspec_server.rb")
# The server's formatter that reports each example as it starts and finishes.
EVENTS_FORMATTER = "ShardrunEventsFormatter"


def normalize_example_id(example_id: str) -> str:
    """"./spec/a_spec.rb[1:2]" -> "spec/a_spec.rb[1:2]", the unit form in models.py."""
    return example_id.removeprefix("./")


@dataclass(frozen=True)
class RspecRunner(Runner):
    """Runs spec files or example ids (spec/a_spec.rb[1:2]) with rspec in `root`."""

    root: Path
    name = "rspec"

    def command(self) -> tuple[str, ...]:
        """`bundle exec rspec` when the project has a Gemfile and bundler is installed.

        Without a Gemfile bundler would refuse to run; without bundler on PATH the system
        rspec is the only choice, so both cases fall back to plain `rspec`.
        """
        if (self.root / "Gemfile").is_file() and shutil.which("bundle"):
            return ("bundle", "exec", "rspec")
        return ("rspec",)

    def batch_arguments(
        self, units: Sequence[str], extra_args: Sequence[str] = ()
    ) -> tuple[str, ...]:
        return (*checked_units(units), *extra_args,
                "--format", "progress", "--format", EVENTS_FORMATTER)

    def server_argv(self) -> tuple[str, ...] | None:
        """`ruby rspec_server.rb`, under `bundle exec` when `command()` uses bundler."""
        ruby = ("bundle", "exec", "ruby") if self.command()[0] == "bundle" else ("ruby",)
        return (*ruby, str(SERVER_SCRIPT))

    def list_examples_argv(self, files: Sequence[str], out_dir: Path) -> tuple[str, ...] | None:
        """A dry run: loads the files and lists examples without running them."""
        listing = out_dir / LIST_JSON_FILENAME
        return (
            *self.command(),
            "--dry-run",
            "--format", "json", "--out", str(listing),
            *checked_units(files),
        )

    def parse_examples(self, output: str, out_dir: Path) -> list[str]:
        """Example ids from the dry run's JSON file; `output` only explains a failure.

        A file that fails to load is an error, not an empty file: silently splitting it
        into zero examples would drop its tests from the run.
        """
        listing = out_dir / LIST_JSON_FILENAME
        report = _read_json(listing)
        if report is None:
            raise InputError(f"rspec --dry-run wrote no readable {listing}: {output[-500:]}")
        errors = report.get("summary", {}).get("errors_outside_of_examples_count", 0)
        if errors:
            detail = " ".join(report.get("messages", []))[-500:] or output[-500:]
            raise InputError(f"rspec could not load the spec files: {detail.strip()}")
        return [normalize_example_id(str(e["id"])) for e in report.get("examples", [])]


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when rspec was killed before writing it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
