"""`shardrun dashboard`: the timing history as versioned JSON (docs/dashboard.md) or one
HTML page."""

from __future__ import annotations

import time
from pathlib import Path

import click

from shardrun.cli.options import timings_option
from shardrun.plan.history import History
from shardrun.report import dashboard


@click.group("dashboard")
def dashboard_group() -> None:
    """Export the timing dashboard as JSON, or as one self-contained HTML page."""


runs_option = click.option(
    "--runs", type=click.IntRange(min=0), default=dashboard.DEFAULT_RUNS, show_default=True,
    help="How many of the latest recorded runs to include.",
)


@dashboard_group.command("export")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the JSON here (default: standard output).")
@runs_option
@timings_option
def dashboard_export(out: Path | None, runs: int, timings: Path) -> None:
    """Print or write the dashboard JSON: files, runs, slowest, drifting, capacity."""
    text = dashboard.export_json(dashboard.export(History.load(timings), now=time.time(),
                                                  runs=runs))
    if out is None:
        click.echo(text, nl=False)
    else:
        dashboard.write_output(out, text)
        click.echo(f"dashboard JSON: {out}")


@dashboard_group.command("html")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path(".shardrun/dashboard.html"), show_default=True,
              help="Write the page here.")
@runs_option
@timings_option
def dashboard_html(out: Path, runs: int, timings: Path) -> None:
    """Write one HTML file (no network needed) charting the history and the last run."""
    data = dashboard.export(History.load(timings), now=time.time(), runs=runs)
    dashboard.write_output(out, dashboard.render_html(data))
    click.echo(f"dashboard: {out}")
