"""The lazy `shardrun` group: `--help` lists what the real commands say, without them."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from shardrun.cli.lazy import LazyCommand, LazyGroup
from shardrun.cli.main import COMMANDS, ShardrunGroup


def fresh_group() -> click.Group:
    """The `shardrun` group as a new process has it: no command imported yet."""
    return ShardrunGroup(name="shardrun", lazy=COMMANDS)


def help_text(group: click.Group, width: int) -> str:
    result = CliRunner().invoke(group, ["--help"], terminal_width=width)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("width", [50, 80, 120])
def test_help_lists_what_the_loaded_commands_would(width: int) -> None:
    lazy = fresh_group()
    before = help_text(lazy, width)
    assert not lazy.commands  # nothing was imported to print it
    loaded = fresh_group()
    for name in COMMANDS:
        loaded.get_command(click.Context(loaded), name)
    assert set(loaded.commands) == set(COMMANDS)
    assert before == help_text(loaded, width)


def test_each_summary_is_its_commands_first_paragraph() -> None:
    for name, lazy in COMMANDS.items():
        command = lazy.load()
        assert command.help is not None, name
        assert lazy.summary == command.help.split("\n\n")[0].replace("\n", " "), name


def test_a_command_is_imported_when_it_is_run() -> None:
    result = CliRunner().invoke(fresh_group(), ["plan", "--help"])
    assert result.exit_code == 0, result.output
    assert "Show how PATHS would be split" in result.output


def test_a_target_that_is_not_a_command_is_refused() -> None:
    group = LazyGroup(name="g", lazy={"x": LazyCommand("shardrun.cli.main:COMMANDS", "x")})
    with pytest.raises(TypeError, match="not a click command"):
        group.get_command(click.Context(group), "x")
