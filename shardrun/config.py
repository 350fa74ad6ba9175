"""Settings: command-line options > SHARDRUN_* environment > [tool.shardrun] > defaults.

click applies the first two; this module supplies the third as click's `default_map`, so
a team can commit e.g. `workers = 8` or `command = "bundle exec rspec {files} ..."` once.
Every default lives here with the reason for its value.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

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
# Settings that name files or commands and so may usefully be shared in pyproject.toml.
SETTING_NAMES = frozenset(
    {"workers", "timings", "framework", "redis_url", "junit_out", "command", "timeout",
     "from_junit"}
)


def load_project_settings(root: Path) -> dict[str, Any]:
    """Read [tool.shardrun] from root/pyproject.toml; unknown keys are an error, not ignored."""
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        return {}
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{pyproject}: not valid TOML ({error}); fix the file") from None
    settings = data.get("tool", {}).get("shardrun", {})
    unknown = sorted(set(settings) - SETTING_NAMES)
    if unknown:
        known = ", ".join(sorted(SETTING_NAMES))
        raise InputError(
            f"{pyproject}: unknown [tool.shardrun] setting(s) {', '.join(unknown)}; "
            f"known: {known}"
        )
    return {key.replace("-", "_"): value for key, value in settings.items()}


# Settings whose click parameter has another name than the option: `--command` fills
# `command_template`, and click's default_map is keyed by parameter name, so
# `command = "..."` under [tool.shardrun] was silently ignored.
PARAMETER_NAMES = {"command": "command_template"}


def click_default_map(settings: dict[str, Any], commands: list[str]) -> dict[str, Any]:
    """The same settings for every command, keyed by click parameter name; click ignores
    keys a command has no option for."""
    by_parameter = {PARAMETER_NAMES.get(key, key): value for key, value in settings.items()}
    return {name: dict(by_parameter) for name in commands}
