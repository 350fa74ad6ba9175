"""The `shardrun worker` command, importable without the rest of the CLI.

`python -m shardrun.cli.worker` imports only the worker's code (a container's entry
point may use it); `shardrun worker` is this same command, loaded lazily by cli/main.py.
The local workers of `shardrun run` are forks of the coordinator (run/forked.py) that
call the same `start_worker` this command ends in.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from shardrun.errors import InputError, ShardrunError
from shardrun.models import RunSpec
from shardrun.phases import mark
from shardrun.run.embedded import install_signal_handlers
from shardrun.run.worker_group import take_worker_number
from shardrun.runners import RUNNER_NAMES, SERVER_FRAMEWORKS
from shardrun.runspec import own_spec_from_environment
from shardrun.work.start import start_worker
from shardrun.work.warm import Prewarm, Runners


@click.command("worker")
@click.option("--redis-url", envvar="SHARDRUN_REDIS_URL", required=True,
              help="The Redis the coordinator uses.")
@click.option("--run-id", default=None, help="Serve only this run (default: every run).")
@click.option("--burst", is_flag=True, help="Exit when the queue is empty.")
@click.option("--worker-index", type=click.IntRange(min=1), envvar="SHARDRUN_WORKER_INDEX",
              default=None,
              help="1-based index: TEST_ENV_NUMBER is '' for 1, then '2', '3', ... "
                   "(default: the next number of --worker-group, else 1).")
@click.option("--worker-group", envvar="SHARDRUN_WORKER_GROUP", default=None, metavar="NAME",
              help="Take the next free index of this group from a Redis counter, so each "
                   "scaled container gets its own TEST_ENV_NUMBER; `ci --workers 0` with "
                   "the same group sizes its batches for the workers that started.")
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=".", help="The project checkout the units are relative to.")
@click.option("--prewarm", "prewarm_framework", type=click.Choice(SERVER_FRAMEWORKS),
              default=None, help="With --run-id: start the warm runner and boot the suite "
                                 "now, before the first batch arrives.")
@click.option("--prewarm-arg", "prewarm_args", multiple=True, metavar="ARG",
              help="A runner argument of the run (what follows `--`), for --prewarm.")
@click.option("--framework", type=click.Choice(RUNNER_NAMES), default=None,
              help="Run batches with this framework (and --command, and the runner "
                   "arguments after `--`), whatever the run publishes. Without it the "
                   "worker runs the run's settings only when signed with SHARDRUN_SECRET.")
@click.option("--command", "command_template", default=None, metavar="TEMPLATE",
              help="Run batches with this command template (the command framework).")
@click.option("--runners", type=click.Choice([mode.value for mode in Runners]),
              default=Runners.FORK.value, show_default=True, help="With --framework.")
@click.option("--python", default=None, metavar="PATH",
              help="With --framework pytest: the Python that runs the tests (default: the "
                   "active virtualenv, else --root's .venv, else python3 on PATH).")
@click.argument("runner_args", nargs=-1, type=click.UNPROCESSED)
def worker_command(
    redis_url: str, run_id: str | None, burst: bool, worker_index: int | None,
    worker_group: str | None, root: Path,
    prewarm_framework: str | None, prewarm_args: tuple[str, ...], framework: str | None,
    command_template: str | None, runners: str, python: str | None,
    runner_args: tuple[str, ...],
) -> None:
    """Pull shards from Redis and run them (what a container or CI node runs).

    What a batch runs comes from this worker's side, never from the batch: --framework
    (and --command, -- ARGS), or the settings of the `shardrun run`/`ci` that started it,
    or the run's published settings when signed with the SHARDRUN_SECRET it shares with
    the coordinator.
    """
    mark("worker start")
    install_signal_handlers()
    # Read by click already; the tests this worker runs inherit its environment and have
    # no use for the Redis password (local workers get the URL only here, pool.py).
    os.environ.pop("SHARDRUN_REDIS_URL", None)
    if prewarm_framework and not run_id:
        raise InputError("--prewarm needs --run-id: a warm runner serves one run; "
                         "add --run-id or drop --prewarm")
    own = own_spec_from_environment()
    if framework is None and command_template:
        # As `run --command` does: a command is the command framework, wherever it was set
        # (a top-level `command = ...` in .shardrun.toml reaches the worker too).
        framework = "command"
    if framework is not None:
        own = RunSpec(framework, command_template, tuple(runner_args), runners, python=python)
    elif runner_args or python:
        raise InputError("--python and runner arguments need --framework: they are this "
                         "worker's own settings; add --framework")
    if worker_index is None:
        worker_index = take_worker_number(redis_url, worker_group) if worker_group else 1
    wanted = Prewarm(prewarm_framework, prewarm_args) if prewarm_framework else None
    start_worker(redis_url, run_id, worker_index, root, own, wanted, burst=burst)


def main() -> None:
    """Errors as the full CLI shows them: one line, the error's exit code."""
    try:
        worker_command.main(prog_name="shardrun worker")
    except ShardrunError as error:
        click.echo(f"shardrun: error: {error}", err=True)
        sys.exit(error.exit_code)


if __name__ == "__main__":
    main()
