"""The `shardrun` command: the only place that prints for humans or picks an exit code."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any, NoReturn

import click

from shardrun.cli import configuration
from shardrun.cli.lazy import LazyCommand, LazyGroup
from shardrun.errors import EXIT_USAGE, ShardrunError, file_error
from shardrun.phases import mark

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


def leave(code: str | int | None) -> NoReturn:
    """Exit with `code` now, without tearing the interpreter down.

    By then every `with` block has run (workers stopped, the private Redis shut down,
    the report and the history written and closed): what Python's own exit would add is
    freeing every module and object one by one, 50 ms on an idle machine and a few
    hundred under load, between the summary and the shell's prompt. Under a profiler or
    a tracer (cProfile, coverage) Python exits as usual, so they can write their reports.
    """
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)
    if code is not None and not isinstance(code, int):  # sys.exit("message")
        print(code, file=sys.stderr)
        code = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code or 0)


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


class ShardrunGroup(LazyGroup):
    """Every command's errors as one line and their own exit code, Ctrl-C as 130."""

    # Each command's whole first sentence: click cuts them at 45 characters, which left
    # "Every parallel CI node runs this: together they run PATHS...".
    summary_chars = SHORT_HELP_CHARS

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


CONFIG_SUMMARY = ("Print COMMAND's effective settings (default: run) and where each came "
                  "from.")
# Each command's module is imported when it runs, not for `--help` or another command
# (cli/lazy.py); the summaries are what `--help` lists.
COMMANDS = {
    "plan": LazyCommand("shardrun.cli.plan:plan",
                        "Show how PATHS would be split into balanced shards."),
    "run": LazyCommand("shardrun.cli.run:run", "Run PATHS on WORKERS local workers; arguments "
                       "after `--` go to the test runner."),
    "ci": LazyCommand("shardrun.cli.run:ci_command", "Every parallel CI node runs this: "
                      "together they run PATHS once, as one run."),
    "worker": LazyCommand("shardrun.cli.worker:worker_command", "Pull shards from Redis and "
                          "run them (what a container or CI node runs)."),
    "timings": LazyCommand("shardrun.cli.timings:timings",
                           "Import and inspect the timing history."),
    "dashboard": LazyCommand("shardrun.cli.dashboard:dashboard_group", "Export the timing "
                             "dashboard as JSON, or as one self-contained HTML page."),
    "config": LazyCommand("shardrun.cli.configuration:config_command", CONFIG_SUMMARY),
}


@click.group(cls=ShardrunGroup, lazy=COMMANDS, epilog=EXAMPLES,
             context_settings={"help_option_names": ["-h", "--help"]})
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



def main() -> None:
    mark("cli imported")
    try:
        cli.main(prog_name="shardrun")
    except SystemExit as done:  # how click ends every command
        leave(done.code)
    except KeyboardInterrupt:
        click.echo("shardrun: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except ShardrunError as error:  # raised outside a command, e.g. while parsing
        click.echo(f"shardrun: error: {error}", err=True)
        sys.exit(EXIT_USAGE)
