"""A click group that imports a command's module only when that command runs.

`shardrun --help` used to import every command's code (the coordinator, redis, rq, the
planner, the dashboard: 1.2 s on a loaded 2-core machine) to print one screen. As in
click's docs ("Lazily Loading Subcommands"), each command is named by `module:attribute`
and imported on first use; unlike there, the group's help lists each command's one-line
summary from a table instead of importing every module to read its docstring
(tests/unit/test_cli_lazy.py checks the table against the docstrings).
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Mapping
from dataclasses import dataclass

import click


@dataclass(frozen=True)
class LazyCommand:
    """Where a command lives and what `--help` says of it without importing it."""

    target: str  # "package.module:attribute"
    summary: str  # the first paragraph of the command's docstring, as click shows it

    def stand_in(self, name: str) -> click.Command:
        """A command with only this summary: click shortens it as it would the real one's."""
        return click.Command(name, help=self.summary)

    def load(self) -> click.Command:
        """Import the command's module with the cyclic garbage collector paused: an import
        allocates thousands of objects and frees almost none, so the collections it
        triggers find nothing; `run`'s imports take 8 % less (27 ms here)."""
        module_name, attribute = self.target.split(":")
        collecting = gc.isenabled()
        gc.disable()
        try:
            command = getattr(importlib.import_module(module_name), attribute)
        finally:
            if collecting:
                gc.enable()
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.target} is not a click command")
        return command


class LazyGroup(click.Group):
    """Commands from `lazy` are imported by `get_command`, not when the group is built."""

    summary_chars: int | None = None  # how much of each summary --help shows; None: a line

    def __init__(self, *args: object, lazy: Mapping[str, LazyCommand] | None = None,
                 **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy: dict[str, LazyCommand] = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self.add_command(self.lazy[cmd_name].load(), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's own listing, with the summaries of commands not imported yet."""
        names = self.list_commands(ctx)
        limit = self.summary_chars or (
            formatter.width - 6 - max((len(name) for name in names), default=0))
        rows = []
        for name in names:
            loaded = self.commands.get(name)
            if loaded is None:
                rows.append((name, self.lazy[name].stand_in(name).get_short_help_str(limit)))
            elif not loaded.hidden:
                rows.append((name, loaded.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
