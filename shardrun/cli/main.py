"""The `shardrun` command: the only place that prints for humans or picks an exit code."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from shardrun.cli import configuration
from shardrun.cli import run as cli_run
from shardrun.cli.options import framework_option, from_junit_option, timings_option, workers_option
from shardrun.cli.worker import worker_command
from shardrun.errors import EXIT_USAGE, ShardrunError, file_error
from shardrun.plan.gather import PlannedSuite, PlanRequest, prepare
from shardrun.plan.history import History
from shardrun.plan.imports import describe, match_to_root
from shardrun.plan.timings import load_durations
from shardrun.report import dashboard
from shardrun.report.terminal import printable

# How many file names a shard line shows before "...".
FILES_SHOWN_PER_SHARD = 3
# A command's first sentence in `shardrun --help`: long enough for any of ours, whole.
SHORT_HELP_CHARS = 300
# What `shardrun --help` ends with: the commands a newcomer types first. `\b` keeps
# click from rewrapping the block.
EXAMPLES = """Examples:

\b
  shardrun run spec -w 8                  RSpec on 8 local workers, private Redis
  shardrun run tests -w 4 -v              pytest; print each test as it finishes
  shardrun run -w 4 -- -k "not slow"      arguments after -- go to the runner
  shardrun plan spec -w 8                 the split, without running anything
  shardrun timings import reports/*.xml   learn timings from JUnit XML
  shardrun ci spec --redis-url "$REDIS_URL" --junit-out rspec.xml
                                          the same step on every CI node
  shardrun worker --redis-url "$REDIS_URL" --framework rspec
                                          a worker container's command
  shardrun dashboard html --out dash.html one offline page of the history

Each command's own --help lists its options. Docs: README.md and docs/ in the
shardrun checkout."""
# 128 + SIGINT, as shells, rspec and pytest exit on Ctrl-C.
EXIT_INTERRUPTED = 130


class ShardrunClickError(click.ClickException):
    """A ShardrunError shown the click way: one line on stderr, its own exit code."""

    def __init__(self, error: ShardrunError):
        super().__init__(str(error))
        self.exit_code = error.exit_code  # type: ignore[misc]  # click's is a class default

    def show(self, file: Any = None) -> None:
        click.echo(f"shardrun: error: {self.format_message()}", err=True)


class OneLineUsageError(click.UsageError):
    """click's usage errors, but as the one line every other error is."""

    def show(self, file: Any = None) -> None:
        hint = f" (see `{self.ctx.command_path} --help`)" if self.ctx else ""
        click.echo(f"shardrun: error: {self.format_message()}{hint}", err=True)


class ShardrunGroup(click.Group):
    """Every command's errors as one line and their own exit code, Ctrl-C as 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ShardrunError as error:
            raise ShardrunClickError(error) from None
        except KeyboardInterrupt:
            # The `with` blocks (workers, private Redis) have unwound by now. click would
            # print "Aborted!" and exit 1, the code for failed tests; rspec, pytest and
            # shells exit 128 + SIGINT.
            click.echo("shardrun: interrupted", err=True)
            raise SystemExit(EXIT_INTERRUPTED) from None
        except OSError as error:
            # A file error no module turned into a ShardrunError: still one line, and
            # exit 2 or 3 (a full disk), never a traceback with 1 ("tests failed").
            where = error.filename or "shardrun"
            raise ShardrunClickError(file_error(where, error, "go on")) from None
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as error:
            if isinstance(error, OneLineUsageError):
                raise
            configured = (configuration.configured_error(error)
                          if isinstance(error, click.BadParameter) else None)
            if configured is not None:  # a value from the settings file or SHARDRUN_*
                raise ShardrunClickError(configured) from None
            raise OneLineUsageError(error.format_message(), error.ctx) from None


    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command's whole first sentence: click cuts them at 45 characters, which
        left "Every parallel CI node runs this: together they run PATHS..."."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=SHORT_HELP_CHARS)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=ShardrunGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=EXAMPLES)
@click.version_option(package_name="shardrun")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Split a test suite into balanced shards and run them on workers through Redis.

    Every option of run, ci, worker and plan can be set in .shardrun.toml (or
    [tool.shardrun] in pyproject.toml) and as SHARDRUN_<OPTION>; `shardrun config` shows
    what is in effect and where it came from.
    """
    if ctx.default_map is None:
        configuration.apply(ctx, cli)


@cli.command()
@click.argument("paths", nargs=-1)
@workers_option()
@timings_option
@from_junit_option
@framework_option
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON (docs/plan.md).")
@click.option("--index", type=click.IntRange(min=0), default=None,
              help="Print only shard INDEX's files, one per line (0-based).")
@click.option("--total", type=click.IntRange(min=1), default=None,
              help="With --index: the number of shards (same as --workers).")
def plan(
    paths: tuple[str, ...], workers: int, timings: Path, from_junit: tuple[str, ...],
    framework: str | None, as_json: bool, index: int | None, total: int | None,
) -> None:
    """Show how PATHS would be split into balanced shards."""
    shards = total or workers
    if index is not None and index >= shards:
        raise click.BadParameter(f"must be below the shard count {shards}", param_hint="--index")
    request = PlanRequest(Path.cwd(), paths, framework, shards, timings, from_junit)
    planned = prepare(request)
    if index is not None or as_json:  # standard output is for a program: notes to stderr
        for note in planned.notes:
            click.echo(note, err=True)
    if index is not None:
        for unit in planned.plan.shards[index].units:
            click.echo(printable(unit))
    elif as_json:
        click.echo(json.dumps(planned.plan.to_dict(), indent=2))
    else:
        for line in plan_lines(planned):
            click.echo(line)


def plan_lines(planned: PlannedSuite) -> list[str]:
    """The human view of a plan; file names pass through `printable`."""
    plan = planned.plan
    lines = []
    for shard in plan.shards:
        shown = ", ".join(printable(unit) for unit in shard.units[:FILES_SHOWN_PER_SHARD])
        more = len(shard.units) - FILES_SHOWN_PER_SHARD
        suffix = f", ... (+{more})" if more > 0 else ""
        # Without timings the estimates are file sizes: showing them as seconds would
        # read as a prediction nobody made.
        seconds = f"{shard.predicted_seconds:9.2f}s" if planned.timed else "    no timings"
        lines.append(f"shard {shard.index}: {len(shard.units):>4} files {seconds}  "
                     f"{shown}{suffix}")
    lines.append(_plan_total_line(planned))
    lines.extend(planned.notes)
    lines.extend(_untimed_notes(planned))
    if plan.bounding_unit:
        lines.append(
            f"note: {printable(plan.bounding_unit)} alone takes longer than total/{plan.workers}; "
            "more workers will not finish sooner unless that file is split"
        )
    return lines


def _plan_total_line(planned: PlannedSuite) -> str:
    plan = planned.plan
    files = f"{len(planned.suite.files)} {planned.suite.framework} files"
    if not planned.timed:
        return f"{files}: no timings yet, so no predicted seconds (ratio -)"
    ratio = f"{plan.predicted_makespan / plan.lower_bound:.3f}" if plan.lower_bound else "-"
    return (f"{files}, {plan.total_seconds:.2f}s in total: predicted makespan "
            f"{plan.predicted_makespan:.2f}s, lower bound {plan.lower_bound:.2f}s "
            f"(ratio {ratio})")


def _untimed_notes(planned: PlannedSuite) -> list[str]:
    """Say when the plan rests on no measurement, so nobody reads its seconds as real."""
    if planned.plan.total_seconds <= 0 and planned.suite.files:
        return ["note: untimed plan: every estimate is 0 s (empty files, no timings), so "
                "files are dealt out by count; run once (or `shardrun timings import`) to "
                "time them"]
    if not planned.timed:
        return ["note: untimed plan: no timings for these files, so the split is by file "
                "size; run once (or `shardrun timings import`) to time them"]
    return []


@cli.group()
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


@cli.group("dashboard")
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


cli.add_command(worker_command, "worker")
cli.add_command(cli_run.run, "run")
cli.add_command(cli_run.ci_command, "ci")
cli.add_command(configuration.config_command, "config")


def main() -> None:
    try:
        cli.main(prog_name="shardrun")
    except KeyboardInterrupt:
        click.echo("shardrun: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except ShardrunError as error:  # raised outside a command, e.g. while parsing
        click.echo(f"shardrun: error: {error}", err=True)
        sys.exit(EXIT_USAGE)
