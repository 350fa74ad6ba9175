"""Test runners behind one Protocol (`base.Runner`), chosen by framework name."""

from __future__ import annotations

import os
from pathlib import Path

from shardrun.errors import InputError
from shardrun.runners.base import Invocation, Runner, worker_env
from shardrun.runners.command import CommandRunner
from shardrun.runners.cucumber import CucumberRunner
from shardrun.runners.interpreter import find_python
from shardrun.runners.minitest import MinitestRunner
from shardrun.runners.pytest import PytestRunner
from shardrun.runners.rspec import RspecRunner

# The framework names the CLI offers (click.Choice) and Batch.framework carries.
RUNNER_NAMES = ("rspec", "pytest", "minitest", "cucumber", "command")
# The frameworks whose runner is a server a worker can boot ahead (`worker --prewarm`).
SERVER_FRAMEWORKS = ("rspec", "pytest", "minitest", "cucumber")

__all__ = [
    "RUNNER_NAMES",
    "SERVER_FRAMEWORKS",
    "CommandRunner",
    "CucumberRunner",
    "Invocation",
    "MinitestRunner",
    "PytestRunner",
    "RspecRunner",
    "Runner",
    "get_runner",
    "worker_env",
]


def get_runner(
    framework: str, root: Path, command_template: str | None = None, python: str | None = None
) -> Runner:
    """The runner for `framework` in project `root`; InputError for anything unknown.

    `command_template` is required by, and only used for, the "command" framework;
    `python` (--python) by pytest, which otherwise runs under the project's interpreter
    as runners/interpreter.py finds it in this process's environment.
    """
    if framework == "rspec":
        return RspecRunner(root)
    if framework == "pytest":
        return PytestRunner(root, find_python(python, root, os.environ).path)
    if framework == "minitest":
        return MinitestRunner(root)
    if framework == "cucumber":
        return CucumberRunner(root)
    if framework == "command":
        if not command_template:
            raise InputError(
                "framework 'command' needs a command template, e.g. "
                "'bundle exec rspec {files} --format RspecJunitFormatter --out {junit}'"
            )
        return CommandRunner(root, command_template)
    raise InputError(
        f"unknown framework {framework!r}: choose one of {', '.join(RUNNER_NAMES)}"
    )
