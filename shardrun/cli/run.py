"""`shardrun run` (a laptop or one CI job) and `shardrun ci` (every node of a CI build).

Kept apart from cli.py because these two share their options and their output: the
summary, the merged JUnit's path, and why an infrastructure problem ended the run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from shardrun.cli.configuration import came_from_environment
from shardrun.cli.options import RunnerArgsCommand, execution_options, workers_option
from shardrun.cli.progress import ProgressReporter
from shardrun.models import Mode
from shardrun.phases import mark
from shardrun.plan.gather import PlanRequest
from shardrun.report.merge import RunReport
from shardrun.report.summary import github_annotations, github_step_summary, summary_lines
from shardrun.report.terminal import printable
from shardrun.run import ci_env as ci
from shardrun.run import ci_node, coordinator
from shardrun.run.embedded import install_signal_handlers
from shardrun.run.options import RunOptions
from shardrun.run.worker_group import started_workers


def _run_options(
    paths: tuple[str, ...], workers: int, redis_url: str | None, settings: dict[str, Any],
    live: int = 0,
) -> RunOptions:
    runner_args = click.get_current_context().meta.get("runner_args", ())
    request = PlanRequest(Path.cwd(), paths, settings["framework"], workers,
                          settings["timings"], settings["from_junit"])
    return RunOptions(
        request, redis_url=redis_url, junit_out=settings["junit_out"], runner_args=runner_args,
        command_template=settings["command_template"], timeout_seconds=settings["timeout"],
        mode=Mode(settings["mode"]), retries=settings["retries"],
        retry_budget=settings["retry_budget"], max_attempts=settings["max_attempts"],
        fail_fast=settings["fail_fast"], redis_timeout=settings["redis_timeout"],
        lease_seconds=settings["lease_seconds"],
        runners="fresh" if settings["process_per_batch"] else settings["runners"],
        runner_max_rss_mb=settings["runner_max_rss"], live=live, python=settings["python"],
    )


@click.command(cls=RunnerArgsCommand)
@click.argument("paths", nargs=-1)
@workers_option(help_text="Local worker processes; auto: the CPUs this process may use.")
@click.option("--redis-url", envvar="SHARDRUN_REDIS_URL", default=None,
              help="Redis to use (default: a private redis-server for this run).")
@click.option("--verbose", "-v", "verbosity", count=True,
              help="Print each test's result as it finishes, tagged with its worker "
                   "([w2] PASSED tests/test_a.py::test_x 0.12s); -vv also its captured "
                   "output.")
@execution_options
def run(paths: tuple[str, ...], workers: int, redis_url: str | None, verbosity: int,
        **settings: Any) -> None:
    """Run PATHS on WORKERS local workers; arguments after `--` go to the test runner."""
    install_signal_handlers()
    options = _run_options(paths, workers, redis_url, settings, live=min(verbosity, 2))
    reporter = ProgressReporter(sys.stdout.isatty(), verbosity)
    click.echo(f"shardrun run: {workers_phrase(workers)}; finding the tests"
               + (f" under {' '.join(paths)}" if paths else ""))
    outcome = coordinator.run(options, reporter,
                              lambda line: click.echo(f"shardrun run: {printable(line)}"),
                              on_live=reporter.live if verbosity else None)
    reporter.close()
    _print_summary(summary_lines(outcome.report, framework=outcome.planned.suite.framework,
                                 wall_seconds=outcome.wall_seconds,
                                 timed=outcome.planned.timed))
    click.echo(f"merged JUnit: {outcome.junit_path}")
    _print_problems(outcome.report, outcome.infrastructure_error)
    mark("exit")
    sys.exit(outcome.exit_code)


@click.command(cls=RunnerArgsCommand)
@click.argument("paths", nargs=-1)
@workers_option(default=1, minimum=0,
                help_text="Worker processes on this node (0: coordinate only; auto: its CPUs).")
@click.option("--redis-url", envvar="SHARDRUN_REDIS_URL", required=True,
              help="The Redis every node of the build reaches.")
@click.option("--build-id", default=None, help="Overrides the CI's build id (SHARDRUN_BUILD_ID).")
@click.option("--node-index", type=click.IntRange(min=0), default=None,
              help="This node, 0-based (SHARDRUN_NODE_INDEX; GitHub: strategy.job-index).")
@click.option("--node-total", type=click.IntRange(min=1), default=None,
              help="Number of nodes (SHARDRUN_NODE_TOTAL; GitHub: strategy.job-total).")
@click.option("--node-junit-out", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="This node's own results as JUnit XML.")
@click.option("--total-workers", type=click.IntRange(min=1), default=None,
              help="Workers in the whole build (default: nodes x --workers; with "
                   "--workers 0 and --worker-group, the group's workers that started).")
@click.option("--worker-group", envvar="SHARDRUN_WORKER_GROUP", default=None, metavar="NAME",
              help="The group a pool of `shardrun worker --worker-group NAME` containers "
                   "numbered themselves in (docker-compose.yml).")
@execution_options
def ci_command(
    paths: tuple[str, ...], workers: int, redis_url: str, build_id: str | None,
    node_index: int | None, node_total: int | None, node_junit_out: Path | None,
    total_workers: int | None, worker_group: str | None, **settings: Any,
) -> None:
    """Every parallel CI node runs this: together they run PATHS once, as one run."""
    install_signal_handlers()
    context = ci.detect(**_ci_overrides(build_id=build_id, node_index=node_index,
                                        node_total=node_total))
    click.echo(f"shardrun ci: {context.describe()}")
    if total_workers is None and workers == 0 and worker_group:
        total_workers = started_workers(redis_url, worker_group, settings["redis_timeout"])
        group = printable(worker_group)
        click.echo(f"shardrun ci: batches sized for the {total_workers} started workers of "
                   f"group {group}" if total_workers else f"shardrun ci: no worker of group "
                   f"{group} has started yet; batches sized for one")
    options = ci_node.CiOptions(_run_options(paths, workers, redis_url, settings), context,
                                node_junit_out, total_workers=total_workers)
    reporter = ProgressReporter(sys.stdout.isatty())
    outcome = ci_node.run_node(options, reporter)
    reporter.close()
    if outcome.role == "fallback":
        click.echo(f"shardrun: WARNING: {outcome.message}", err=True)
    click.echo(f"shardrun ci: this node was the {outcome.role}")
    _print_summary(list(outcome.summary_lines))
    if outcome.report is not None:
        _github_output(outcome.report, outcome.framework)
        _print_problems(outcome.report, outcome.message if outcome.role == "leader" else None)
    else:
        _github_node_summary(outcome, context.describe())
    sys.exit(outcome.exit_code)


def workers_phrase(workers: int) -> str:
    """`4 workers` or `2 workers (auto: the CPUs this process may use)`."""
    count = f"{workers} worker{'s' if workers != 1 else ''}"
    return count + (" (auto: the CPUs this process may use)" if getattr(workers, "auto", False)
                    else "")


def _ci_overrides(**options: Any) -> dict[str, Any]:
    """--build-id/--node-index/--node-total as given on the command line or in the settings
    file; one set by its SHARDRUN_* variable is left to ci_env, which reads that variable
    itself and names it in its messages."""
    ctx = click.get_current_context()
    return {name: None if came_from_environment(ctx, name) else value
            for name, value in options.items()}


def _github_node_summary(outcome: ci_node.CiOutcome, node: str) -> None:
    """On GitHub Actions, a node that did not merge writes its own step summary too: the
    run's verdict, this node's share, and where the merged report is."""
    summary_path = os.environ.get("GITHUB_STEP_SUMMARY")
    if os.environ.get("GITHUB_ACTIONS") != "true" or not summary_path:
        return
    verdict = "passed" if outcome.exit_code == 0 else "failed"
    text = (f"### shardrun: {node}, {outcome.role}: the run {verdict}\n\n"
            "The merged JUnit and the timing history are written by the node that led the "
            "run (its step summary has every failure).\n\n")
    if outcome.node_report is not None:
        text += "This node's share:\n\n" + github_step_summary(outcome.node_report,
                                                              outcome.framework)
    with open(summary_path, "a", encoding="utf-8") as summary:
        summary.write(text)


def _print_summary(lines: list[str]) -> None:
    for line in lines:
        click.echo(printable(line))


def _print_problems(report: RunReport, infrastructure_error: str | None) -> None:
    if infrastructure_error:
        click.echo(f"shardrun: error: {printable(infrastructure_error)}", err=True)
    if report.missing:
        click.echo(f"shardrun: error: {len(report.missing)} unit(s) never reported: "
                   + printable(", ".join(report.missing)), err=True)


def _github_output(report: RunReport, framework: str) -> None:
    """On GitHub Actions: the step summary and one annotation per failure."""
    if os.environ.get("GITHUB_ACTIONS") != "true":
        return
    for line in github_annotations(report):
        click.echo(line)
    summary_path = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_path:
        with open(summary_path, "a", encoding="utf-8") as summary:
            summary.write(github_step_summary(report, framework))
