"""Options shared by several commands, declared once so they read and behave alike."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from shardrun.config import DEFAULT_LEASE_SECONDS, REDIS_TIMEOUT_SECONDS, available_cpus
from shardrun.plan.discovery import FRAMEWORKS
from shardrun.plan.history import DEFAULT_HISTORY_PATH
from shardrun.work.warm import Runners

framework_option = click.option(
    "--framework", type=click.Choice(FRAMEWORKS), default=None,
    help="Test framework (default: the one whose files the paths hold; several: exit 2).",
)
timings_option = click.option(
    "--timings", "timings", type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_HISTORY_PATH, show_default=True,
    help="Timing history file.",
)
from_junit_option = click.option(
    "--from-junit", "from_junit", multiple=True, metavar="GLOB",
    help="Also learn timings from these JUnit XML (or other timing) files.",
)


class AutoCount(int):
    """A worker count `-w auto` chose: an int that remembers it was not given, so the
    opening line can say where the number comes from."""

    auto = True


if TYPE_CHECKING:  # click 8.2+ types ParamType by its value; older clicks cannot subscript it
    _IntParamType = click.ParamType[int]
else:
    _IntParamType = click.ParamType


class WorkerCount(_IntParamType):
    """`-w N` or `-w auto`: the CPUs this process may use (config.available_cpus)."""

    name = "N|auto"

    def __init__(self, minimum: int) -> None:
        self.minimum = minimum
        self.description = f"an integer >= {minimum} or auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, AutoCount):
            return value
        if isinstance(value, str) and value.strip().lower() == "auto":
            return AutoCount(available_cpus())
        try:
            return int(click.IntRange(min=self.minimum).convert(value, param, ctx))
        except click.BadParameter:
            self.fail(f"{value!r} is not {self.description}", param, ctx)


def workers_option(
    default: str | int = "auto", minimum: int = 1,
    help_text: str = "Shards / local worker processes; auto: the CPUs this process may use.",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """-w, and -n as pytest-xdist and parallel_tests users type it (no other option of
    these commands is -n)."""
    return click.option("--workers", "-w", "-n", type=WorkerCount(minimum), default=default,
                        show_default=True, help=help_text)


def _non_blank_command(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> str | None:
    """`--command ''` (or `command = ""` in pyproject.toml) is a mistake, not "no command":
    running rspec or pytest instead would hide it."""
    if value is not None and not value.strip():
        raise click.BadParameter(
            "is empty; give a command such as 'bin/test {files} --junit-out {junit}', "
            "or leave the option out to use rspec or pytest", ctx, param)
    return value


class RunnerArgsCommand(click.Command):
    """Everything after `--` belongs to the test runner, not to PATHS."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta["runner_args"] = tuple(args[cut + 1 :])
            args = args[:cut]
        return super().parse_args(ctx, args)


_EXECUTION_OPTIONS = (
    click.option("--junit-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="Merged JUnit XML (default: .shardrun/junit.xml)."),
    click.option("--command", "command_template", default=None, metavar="TEMPLATE",
                 callback=_non_blank_command,
                 help="Run batches with this command; {files} and {junit} are filled in."),
    click.option("--timeout", type=click.FloatRange(min=1), default=None,
                 help="Per-batch timeout in seconds (default: 3x the estimate + 60 s)."),
    click.option("--mode", type=click.Choice(["queue", "static"]), default="queue",
                 show_default=True,
                 help="queue: batches pulled as workers free up; static: one job per shard."),
    click.option("--retries", type=click.IntRange(min=0), default=1, show_default=True,
                 help="Run a failed test again this often; passing then marks it flaky."),
    click.option("--retry-budget", type=click.IntRange(min=0), default=None, metavar="N",
                 help="Retry at most N failed tests per run (default: the larger of 5 and "
                      "1% of the tests): many failures are deterministic, not flaky."),
    click.option("--max-attempts", type=click.IntRange(min=1), default=3, show_default=True,
                 help="Times a batch whose worker was lost is tried before it is reported."),
    click.option("--fail-fast", type=click.IntRange(min=1), is_flag=False, flag_value=1,
                 default=None, metavar="[N]", help="Stop after N failures (default 1)."),
    click.option("--redis-timeout", type=click.FloatRange(min=0.1),
                 default=REDIS_TIMEOUT_SECONDS, show_default=True,
                 help="Seconds Redis may be unreachable before exit 3 (or, in ci, fallback)."),
    click.option("--lease-seconds", type=click.FloatRange(min=0.5),
                 default=DEFAULT_LEASE_SECONDS, show_default=True,
                 help="A batch whose worker stops renewing is requeued after this."),
    click.option("--runners", type=click.Choice([mode.value for mode in Runners]),
                 default=Runners.FORK.value, show_default=True,
                 help="fork: each batch in a fresh fork of a runner that booted the suite "
                      "once; reuse: one runner runs batch after batch (fastest, state leaks "
                      "between batches); fresh: a new process per batch."),
    click.option("--process-per-batch", is_flag=True, default=False,
                 help="Same as --runners fresh."),
    click.option("--runner-max-rss", type=click.IntRange(min=1), default=None, metavar="MB",
                 help="Restart a worker's warm runner after a batch leaves it above MB of "
                      "memory, for suites whose code leaks (default: never)."),
    click.option("--python", default=None, metavar="PATH",
                 help="pytest: the Python that runs the tests (default: the active "
                      "virtualenv, else the project's .venv, else python3 on PATH)."),
    timings_option,
    from_junit_option,
    framework_option,
)


def execution_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of `run` and `ci` that decide how the suite is run and reported."""
    for option in reversed(_EXECUTION_OPTIONS):
        command = option(command)
    return command
