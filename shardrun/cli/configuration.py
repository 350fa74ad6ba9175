"""Settings for every option, derived from the click commands themselves.

config.py layers the environment over the project's file; this module tells it which
settings exist (every long option of the command tree, so an option added later is a
setting with no code here), hands the result to click as `default_map`, turns click's
complaint about a configured value into one line naming the file or variable, and
implements `shardrun config`.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from shardrun.config import (
    CONFIGURED_COMMANDS,
    CommandPath,
    ConfigFile,
    Origin,
    Schema,
    Setting,
    Shape,
    settings_from,
)
from shardrun.errors import InputError
from shardrun.redaction import redact

# Where the layered origins live in click's context: `meta` is shared by a context and its
# children, so a subcommand (and an error raised in it) finds them.
ORIGINS_META = "shardrun.config.origins"
CONFIG_META = "shardrun.config.file"


def schema_of(group: click.Group) -> Schema:
    """Every command's long options as settings, keyed by the option's name."""
    return {path: {setting.key: setting for setting in map(_setting, command.params)
                   if setting is not None}
            for path, command in _walk(group, ())}


def _walk(group: click.Group, prefix: CommandPath) -> Iterator[tuple[CommandPath, click.Command]]:
    """Every command below `group`, loading those a lazy group (cli/lazy.py) has not yet:
    a setting of a command not imported must still be known, or it would read as unknown."""
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        if command is None:
            continue
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _walk(command, (*prefix, name))


def _setting(param: click.Parameter) -> Setting | None:
    if not isinstance(param, click.Option) or param.name is None:
        return None
    long_names = [opt for opt in param.opts if opt.startswith("--")]
    if not long_names:
        return None
    shape: Shape = "list" if param.multiple else "flag" if param.is_flag else "value"
    return Setting(long_names[0][2:], param.name, shape, expected(param))


def expected(param: click.Option) -> str:
    """What a value of this option looks like, in words, for messages and the docs."""
    kind = param.type
    if param.is_flag:
        text = "true or false"
    elif isinstance(kind, click.Choice):
        text = "one of " + ", ".join(str(choice) for choice in kind.choices)
    elif isinstance(kind, (click.IntRange, click.FloatRange)):
        number = "an integer" if isinstance(kind, click.IntRange) else "a number"
        bounds = [f">= {kind.min}" if kind.min is not None else "",
                  f"<= {kind.max}" if kind.max is not None else ""]
        text = " ".join([number, *filter(None, bounds)])
    elif isinstance(kind, click.Path):
        text = "a path"
    elif kind is click.STRING:
        text = "a string"
    else:
        text = getattr(kind, "description", None) or f"a {kind.name}"
    if not param.multiple:
        return text
    return f"a list of {text[2:]}s" if text.startswith("a ") else f"a list, each {text}"


def apply(ctx: click.Context, group: click.Group) -> None:
    """Give click the project's settings and remember where each came from."""
    config, layered = settings_from(Path.cwd(), schema_of(group), os.environ)
    ctx.default_map = layered.default_map
    ctx.meta[ORIGINS_META] = layered.origins
    ctx.meta[CONFIG_META] = config


def _path(ctx: click.Context) -> CommandPath:
    names = []
    while ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return tuple(reversed(names))


def _origin(ctx: click.Context, param: str) -> Origin | None:
    origins: dict[CommandPath, dict[str, Origin]] = ctx.meta.get(ORIGINS_META, {})
    return origins.get(_path(ctx), {}).get(param)


def configured_error(error: click.BadParameter) -> InputError | None:
    """click's "Invalid value for '--workers'" about a value from the file or environment,
    as one line naming where it was set and what is expected; None for the command line."""
    ctx, param = error.ctx, error.param
    if ctx is None or not isinstance(param, click.Option) or param.name is None:
        return None
    if ctx.get_parameter_source(param.name) is not ParameterSource.DEFAULT_MAP:
        return None
    origin = _origin(ctx, param.name)
    if origin is None:
        return None
    message, wanted = error.message.rstrip("."), expected(param)
    return InputError(f"{origin.describe()}: {message}"
                      + ("" if wanted in message else f"; expected {wanted}"))


def came_from_environment(ctx: click.Context, param: str) -> bool:
    """Whether a value was set by its SHARDRUN_* variable (the file's would say otherwise)."""
    origin = _origin(ctx, param)
    return origin is not None and origin.label.startswith("env ")


# ------------------------------------------------------------------ shardrun config


@click.command("config", context_settings={"ignore_unknown_options": True,
                                           "allow_extra_args": True})
@click.argument("command_name", metavar="[COMMAND]", required=False, default="run",
                type=click.Choice(CONFIGURED_COMMANDS))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def config_command(ctx: click.Context, command_name: str, args: tuple[str, ...]) -> None:
    """Print COMMAND's effective settings (default: run) and where each came from.

    Options after COMMAND count as the command line: `shardrun config run -w 4`.
    Precedence: command line > SHARDRUN_* environment > .shardrun.toml or
    [tool.shardrun] > default.
    """
    root = ctx.find_root()
    group = root.command
    assert isinstance(group, click.Group)
    target = group.commands[command_name]
    probe = _without_required(target)
    with probe.make_context(command_name, list(args), parent=root) as probed:
        config: ConfigFile | None = ctx.meta.get(CONFIG_META)
        source = config.where() if config else "none (no .shardrun.toml, no [tool.shardrun])"
        click.echo(f"shardrun {command_name}: settings file {source}")
        rows = [_row(probed, setting) for setting in schema_of(group)[(command_name,)].values()]
        width = max(len(key) for key, _, _ in rows)
        value_width = min(max(len(value) for _, value, _ in rows), 40)
        for key, value, where in rows:
            click.echo(f"  {key:<{width}}  {value:<{value_width}}  {where}")


def _without_required(command: click.Command) -> click.Command:
    """The command with no required option, so `config ci` shows an unset --redis-url."""
    probe = copy.copy(command)
    probe.params = []
    for param in command.params:
        relaxed = copy.copy(param)
        relaxed.required = False
        probe.params.append(relaxed)
    return probe


def _row(ctx: click.Context, setting: Setting) -> tuple[str, str, str]:
    value = ctx.params.get(setting.param)
    source = ctx.get_parameter_source(setting.param)
    if source is ParameterSource.COMMANDLINE:
        where = "command line"
    elif source is ParameterSource.ENVIRONMENT:
        param = next(p for p in ctx.command.params if p.name == setting.param)
        where = f"env {param.envvar}"
    elif source is ParameterSource.DEFAULT_MAP:
        origin = _origin(ctx, setting.param)
        where = origin.label if origin else "default"
    else:
        where = "default"
    return setting.key, _shown(setting, value), where


def _shown(setting: Setting, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return " ".join(str(item) for item in value) if value else "-"
    if setting.key == "redis-url":
        return redact(str(value))
    return str(value) + (" (auto)" if getattr(value, "auto", False) else "")
