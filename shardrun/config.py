"""Settings: command line > SHARDRUN_* environment > .shardrun.toml or [tool.shardrun] > defaults.

Every option of `run`, `ci`, `worker` and `plan` is a setting. click applies the command
line; this module layers the environment over the project's file into click's
`default_map` and remembers where each value came from, for `shardrun config` and for
errors that name the file or variable. It knows the options only as `Setting`s, which
cli/configuration.py derives from the click commands, so an option added later is a
setting with no code here. Every default lives here with the reason for its value.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from shardrun.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

# Redis keys outlive any sane CI run but do not accumulate forever on a shared server.
KEY_TTL_SECONDS = 24 * 3600
# A blocking wait on Redis is cut into slices this long so Ctrl-C and worker deaths are
# noticed promptly without polling in a tight loop.
WAIT_SLICE_SECONDS = 1.0
# How long to keep trying to reach Redis before calling it an infrastructure error (exit 3).
REDIS_TIMEOUT_SECONDS = 5.0
# A worker renews its lease on a batch every third of this; a batch whose lease lapses is
# requeued. Long enough to ride out a stalled CI VM for a few seconds, short enough that a
# SIGKILLed worker's batch restarts well before anyone wonders.
DEFAULT_LEASE_SECONDS = 10.0

# The commands whose options are settings, each also a section of its own
# ([tool.shardrun.run], [run] in .shardrun.toml) for values only it should take.
CONFIGURED_COMMANDS = ("run", "ci", "worker", "plan")
# The file for projects without a pyproject.toml (a Rails app); same keys, no [tool.shardrun].
OWN_FILE = ".shardrun.toml"
PYPROJECT = "pyproject.toml"
ENV_PREFIX = "SHARDRUN_"

# How a value is written: one value, a list (a repeatable option), or true/false (a flag).
Shape = Literal["value", "list", "flag"]
CommandPath = tuple[str, ...]  # ("run",), ("timings", "import")


@dataclass(frozen=True)
class Setting:
    """One option of one command as a file key and an environment variable spell it."""

    key: str  # "junit-out": the long option without its dashes
    param: str  # "junit_out": click's parameter name, the key of its default_map
    shape: Shape
    expected: str  # "an integer >= 1, or auto": what a message says to write

    @property
    def envvar(self) -> str:
        return ENV_PREFIX + self.key.upper().replace("-", "_")


# Every command's settings by key.
Schema = Mapping[CommandPath, Mapping[str, Setting]]


@dataclass(frozen=True)
class ConfigFile:
    """The project's settings file: top-level keys and per-command sections, checked."""

    path: Path
    table: str  # "[tool.shardrun]" in pyproject.toml, "" in .shardrun.toml
    top: Mapping[str, Any]
    sections: Mapping[str, Mapping[str, Any]]

    def where(self, section: str | None = None) -> str:
        """`.shardrun.toml [run]`, `pyproject.toml [tool.shardrun]`: for messages."""
        prefix = self.table[1:-1] if self.table else ""
        table = ".".join(part for part in (prefix, section) if part)
        return f"{self.path.name} [{table}]" if table else self.path.name


@dataclass(frozen=True)
class Origin:
    """Where a setting's value came from: "env SHARDRUN_WORKERS", ".shardrun.toml [run]"."""

    label: str
    key: str
    raw: Any

    def describe(self) -> str:
        """`env SHARDRUN_WORKERS=x` or `.shardrun.toml: workers = "x"`: a message's start."""
        if self.label.startswith("env "):
            return f"{self.label}={self.raw}"
        return f"{self.label}: {self.key} = {_toml(self.raw)}"


@dataclass(frozen=True)
class Layered:
    """click's default_map (nested as its command tree) and each value's origin."""

    default_map: dict[str, Any]
    origins: dict[CommandPath, dict[str, Origin]]


def normal_key(key: str) -> str:
    """`junit_out` and `junit-out` are one key; messages and docs spell it with dashes."""
    return key.strip().replace("_", "-")


def available_cpus() -> int:
    """What `-w auto` means: the CPUs this process may run on. sched_getaffinity honours
    taskset and cgroup cpusets (a CI container given 2 of a host's 64 cores), which
    os.cpu_count() does not; where it is missing (macOS) cpu_count is the best we know."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return max(os.cpu_count() or 1, 1)


# ------------------------------------------------------------------ reading the file


def find_config(root: Path, schema: Schema) -> ConfigFile | None:
    """The project's settings: .shardrun.toml, or [tool.shardrun] in pyproject.toml.

    Both at once is refused: two files that each look authoritative would leave the reader
    guessing which value wins, so the user keeps one.
    """
    own = root / OWN_FILE
    pyproject = _pyproject_table(root / PYPROJECT)
    if own.is_file() and pyproject is not None:
        raise InputError(f"{OWN_FILE} and [tool.shardrun] in {PYPROJECT} both hold shardrun "
                         f"settings (in {root}); keep one ({OWN_FILE} is for projects without "
                         "a pyproject.toml)")
    if own.is_file():
        return parse_config(_read_toml(own), own, "", schema)
    if pyproject is not None:
        return parse_config(pyproject, root / PYPROJECT, "[tool.shardrun]", schema)
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not valid TOML ({error}); fix the file") from None


def _pyproject_table(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    table = _read_toml(path).get("tool", {}).get("shardrun")
    if table is not None and not isinstance(table, dict):
        raise InputError(f"{path}: tool.shardrun must be a table ([tool.shardrun]); fix the file")
    return table


def parse_config(data: Mapping[str, Any], path: Path, table: str, schema: Schema) -> ConfigFile:
    """Check every key and the shape of every value; an unknown key is an error, never
    ignored, and names the closest valid key."""
    config = ConfigFile(path, table, {}, {})
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    known = _top_level_settings(schema)
    for raw_key, value in data.items():
        if raw_key in CONFIGURED_COMMANDS and isinstance(value, dict):
            sections[raw_key] = _section(config, raw_key, value, schema)
            continue
        key = normal_key(raw_key)
        if key not in known:
            raise InputError(_unknown(config, None, raw_key, known))
        top[key] = _checked(config, None, key, value, known[key])
    return ConfigFile(path, table, top, sections)


def _section(
    config: ConfigFile, command: str, data: Mapping[str, Any], schema: Schema
) -> dict[str, Any]:
    settings = schema.get((command,), {})
    values: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = normal_key(raw_key)
        if key not in settings:
            raise InputError(_unknown(config, command, raw_key, settings, schema))
        values[key] = _checked(config, command, key, value, [settings[key]])
    return values


def _top_level_settings(schema: Schema) -> dict[str, list[Setting]]:
    """Every key of the configured commands, with each command's Setting for it."""
    known: dict[str, list[Setting]] = {}
    for command in CONFIGURED_COMMANDS:
        for key, setting in schema.get((command,), {}).items():
            known.setdefault(key, []).append(setting)
    return known


def _unknown(
    config: ConfigFile, section: str | None, raw_key: str, known: Mapping[str, Any],
    schema: Schema | None = None,
) -> str:
    where = config.where(section)
    key = normal_key(raw_key)
    if schema is not None and section is not None:
        owners = [name for name in CONFIGURED_COMMANDS if key in schema.get((name,), {})]
        if owners:
            return (f"{config.path.name}: [{_dotted(config, section)}] {raw_key}: `shardrun "
                    f"{section}` has no --{key} (it is an option of {', '.join(owners)}); "
                    "move it to their section or to the top level")
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    table = where.partition(" ")[2]
    return (f"{config.path.name}: unknown key {raw_key!r}{' in ' + table if table else ''}"
            f"{hint}; the keys are listed by `shardrun config` and in docs/configuration.md")


def _dotted(config: ConfigFile, section: str) -> str:
    return f"{config.table[1:-1]}.{section}" if config.table else section


def _checked(
    config: ConfigFile, section: str | None, key: str, value: Any, settings: list[Setting]
) -> Any:
    """The value in the shape its options take (a lone string for a list option becomes a
    one-item list); a table, a list for one value, or true for a number is an error."""
    for setting in settings:
        problem = _shape_problem(value, setting.shape)
        if problem:
            where = f" [{_dotted(config, section)}]" if section else ""
            raise InputError(f"{config.path.name}:{where} {key} = {_toml(value)}: {problem}; "
                             f"expected {setting.expected}")
    if settings[0].shape == "list" and not isinstance(value, list):
        return [value]
    return value


def _shape_problem(value: Any, shape: Shape) -> str | None:
    scalar = (str, int, float)
    if isinstance(value, dict):
        return "a table is not a value"
    if shape == "flag":
        return None if isinstance(value, bool) else "not true or false"
    if isinstance(value, bool):
        return "true/false is not a value of this option"
    if shape == "list":
        items = value if isinstance(value, list) else [value]
        ok = all(isinstance(item, scalar) and not isinstance(item, bool) for item in items)
        return None if ok else "a list of strings or numbers is expected"
    if isinstance(value, list):
        return "a list where one value is expected"
    return None if isinstance(value, scalar) else "not a value"


def _toml(value: Any) -> str:
    """A value as TOML spells it, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return str(value)


# ------------------------------------------------------------------ layering


def layer(schema: Schema, config: ConfigFile | None, env: Mapping[str, str]) -> Layered:
    """Environment over file (its command's section over its top level), per command.

    The command line is click's to apply on top: it beats anything in `default_map`.
    An empty variable counts as unset, as click treats its own `envvar`s.
    """
    default_map: dict[str, Any] = {}
    origins: dict[CommandPath, dict[str, Origin]] = {}
    for path, settings in schema.items():
        found = {setting.param: origin
                 for setting in settings.values()
                 if (origin := _origin(path, setting, config, env)) is not None}
        if not found:
            continue
        origins[path] = found
        target = default_map
        for name in path:
            target = target.setdefault(name, {})
        target.update({param: _value(origin, settings[origin.key])
                       for param, origin in found.items()})
    return Layered(default_map, origins)


def _origin(
    path: CommandPath, setting: Setting, config: ConfigFile | None, env: Mapping[str, str]
) -> Origin | None:
    text = env.get(setting.envvar)
    if text:
        return Origin(f"env {setting.envvar}", setting.key, text)
    if config is None:
        return None
    section = config.sections.get(path[0], {}) if len(path) == 1 else {}
    if setting.key in section:
        return Origin(config.where(path[0]), setting.key, section[setting.key])
    if setting.key in config.top:
        return Origin(config.where(), setting.key, config.top[setting.key])
    return None


def _value(origin: Origin, setting: Setting) -> Any:
    """A variable's text as click takes it: a list option's items split on whitespace."""
    if origin.label.startswith("env ") and setting.shape == "list":
        return str(origin.raw).split()
    return origin.raw


def settings_from(root: Path, schema: Schema, env: Mapping[str, str]) -> tuple[
        ConfigFile | None, Layered]:
    """The project's file (checked) and the layered defaults: what the CLI calls."""
    config = find_config(root, schema)
    return config, layer(schema, config, env)
