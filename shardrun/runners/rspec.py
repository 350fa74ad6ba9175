"""RSpec: JUnit through rspec_junit_formatter, example ids and times through `--format json`.

RSpec binds each `--out FILE` to the `--format` right before it, so the argv is
`--format progress` (stdout, for the output tail) then `--format RspecJunitFormatter --out
junit.xml` then `--format json --out rspec.json`. Formatters given on the command line
replace those in `.rspec`, so the project's own `--format` settings cannot steal the files.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shardrun.errors import InputError
from shardrun.runners.base import JUNIT_FILENAME, Invocation, Runner, checked_units

RUN_JSON_FILENAME = "rspec.json"
LIST_JSON_FILENAME = "rspec-examples.json"
# The warm runner (shardrun/warm.py) for RSpec, shipped as package data.
SERVER_SCRIPT = Path(__file__).with_name("rspec_server.rb")


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

    def invocation(
        self, units: Sequence[str], out_dir: Path, extra_args: Sequence[str] = ()
    ) -> Invocation:
        junit_path = out_dir / JUNIT_FILENAME
        json_path = out_dir / RUN_JSON_FILENAME
        program = self.command()
        argv = (
            *program,
            *checked_units(units),
            "--format", "progress",
            "--format", "RspecJunitFormatter", "--out", str(junit_path),
            "--format", "json", "--out", str(json_path),
            *extra_args,
        )
        return Invocation(
            argv=argv, junit_path=junit_path, json_path=json_path, program_length=len(program)
        )

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

    def example_times(self, invocation: Invocation) -> dict[str, float]:
        if invocation.json_path is None:
            return {}
        report = _read_json(invocation.json_path)
        if report is None:
            return {}
        return {
            normalize_example_id(str(example["id"])): float(example["run_time"])
            for example in report.get("examples", [])
            if "id" in example and example.get("run_time") is not None
        }


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when rspec was killed before writing it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
