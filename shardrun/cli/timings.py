"""`shardrun timings`: learn from existing timing files, list the slowest files."""

from __future__ import annotations

from pathlib import Path

import click

from shardrun.cli.options import timings_option
from shardrun.plan.history import History
from shardrun.plan.imports import describe, match_to_root
from shardrun.plan.timings import load_durations
from shardrun.report import dashboard
from shardrun.report.terminal import printable


@click.group("timings")
def timings() -> None:
    """Import and inspect the timing history."""


@timings.command("import")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@timings_option
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=Path("."), show_default=True,
              help="The project root the recorded paths are relative to.")
def timings_import(files: tuple[Path, ...], timings: Path, root: Path) -> None:
    """Learn timings from JUnit XML, rspec JSON, knapsack, pytest-split or parallel_tests files.

    Only files that exist under --root are kept; each input says what it dropped and why.
    """
    history = History.load(timings)
    found = 0
    for path in files:
        match = match_to_root(load_durations(path), root)
        history.record(match.durations)
        found += match.found
        click.echo(f"{printable(str(path))}: {describe(match, printable(str(root)))}")
    history.save(root)
    click.echo(f"history: {timings} ({len(history.files())} files)")
    if not found:
        click.echo(f"shardrun: warning: nothing imported: no recorded file exists under "
                   f"{printable(str(root))}", err=True)


@timings.command("show")
@timings_option
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True)
def timings_show(timings: Path, top: int) -> None:
    """Print the slowest files in the history with their sample counts and trend."""
    history = History.load(timings)
    rows = dashboard.file_rows(history)  # the dashboard export's numbers
    if history.ignored_keys:
        click.echo(f"note: {history.ignored_keys} entries of {timings} name paths outside the "
                   "project (absolute or with ..); they are ignored", err=True)
    if not rows:
        click.echo(f"{timings}: no timings yet (run `shardrun run` or `shardrun timings import`)")
        return
    click.echo(f"{'estimate':>10}  {'samples':>7}  {'trend':>6}  file")
    for row in dashboard.slowest_files(rows, top):
        trend = f"x{row.trend:.2f}" if row.trend is not None else "-"
        click.echo(f"{row.estimate:9.2f}s  {len(row.samples):>7}  {trend:>6}  "
                   f"{printable(row.path)}")
    total = sum(row.estimate for row in rows)
    click.echo(f"{len(rows)} files, {total:.2f}s estimated in total")


# --- dashboard: the timing history as versioned JSON (docs/dashboard.md) or one HTML page
