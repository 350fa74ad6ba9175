"""`shardrun plan`: show or print a split without running anything."""

from __future__ import annotations

import json
from pathlib import Path

import click

from shardrun.cli.options import framework_option, from_junit_option, timings_option, workers_option
from shardrun.plan.gather import PlannedSuite, PlanRequest, prepare
from shardrun.report.terminal import printable

# How many file names a shard line shows before "...".
FILES_SHOWN_PER_SHARD = 3


@click.command("plan")
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
