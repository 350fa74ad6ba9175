"""What the Minitest and Cucumber runners share: a Ruby runner server started by its path
(under `bundle exec` when the project uses bundler) that also lists test ids as JSON.

Each framework's module says only what differs: its server script, its listing file and
how its batch's command line is built.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from shardrun.errors import InputError
from shardrun.runners.base import Runner, checked_units


def ruby_command(root: Path) -> tuple[str, ...]:
    """`bundle exec ruby` when the project has a Gemfile and bundler is installed, as
    RspecRunner.command() decides; plain `ruby` otherwise."""
    if (root / "Gemfile").is_file() and shutil.which("bundle"):
        return ("bundle", "exec", "ruby")
    return ("ruby",)


@dataclass(frozen=True)
class RubyServerRunner(Runner):
    """A runner whose server script, given `--list FILE FILES...`, writes the test ids of
    FILES (and the errors of those that failed to load) as JSON to FILE."""

    root: Path
    name = "ruby"
    server_script: ClassVar[Path]
    listing_name: ClassVar[str]

    def server_argv(self) -> tuple[str, ...] | None:
        return (*ruby_command(self.root), str(self.server_script))

    def list_examples_argv(self, files: Sequence[str], out_dir: Path) -> tuple[str, ...] | None:
        return (*ruby_command(self.root), str(self.server_script), "--list",
                str(out_dir / self.listing_name), *checked_units(files))

    def parse_examples(self, output: str, out_dir: Path) -> list[str]:
        """Test ids from the listing's JSON; a file that fails to load is an error, never a
        file split into zero tests."""
        listing = out_dir / self.listing_name
        try:
            report = json.loads(listing.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise InputError(
                f"listing {self.name} tests wrote no readable {listing}: {output[-500:]}"
            ) from None
        if not isinstance(report, dict):
            raise InputError(f"listing {self.name} tests wrote no JSON object to {listing}")
        if report.get("errors"):
            detail = "; ".join(str(error) for error in report["errors"])[-500:]
            raise InputError(f"{self.name} could not list the tests: {detail}")
        return [str(test_id) for test_id in report.get("tests", [])]
