"""shardrun's pytest plugin (the `pytest11` entry point `shardrun`): three options for
people who would rather stay in pytest.

- `pytest --shardrun [-n N|auto] [ARGS]`: the session runs through shardrun's queue, as
  `shardrun run --framework pytest` would (session.py);
- `pytest --shardrun-group I --shardrun-groups N`: this CI job runs only its share of a
  static split, pytest-split's `--group/--splits` (groups.py);
- `pytest --shardrun-record`: a plain pytest run, xdist's included, records its test
  durations into shardrun's timing history (record.py).

pytest imports this module in every session of every project that installed shardrun,
so it imports nothing but pytest, modules of the standard library pytest has loaded
already, and the small pure arguments.py; the three modes import their modules, and
with them the rest of shardrun, only when asked for.
"""

from __future__ import annotations

import importlib.util
import os
import weakref
from typing import Any

import pytest

from shardrun.pytest_plugin.arguments import XDIST

# Set in every test process a shardrun worker starts (runners/base.worker_env): a batch's
# own pytest session must not start shardrun again when the project's addopts (or
# PYTEST_ADDOPTS) say --shardrun, nor record or select a group.
WORKER_VARIABLE = "SHARDRUN_WORKER_INDEX"
# Options that only print something and exit: pytest does those, not shardrun.
INFORMATIONAL_OPTIONS = ("help", "version", "collectonly", "showfixtures", "show_fixtures_per_test",
                         "markers")

# The parser of each session (for session.py, which asks it how pytest read the command
# line), kept by plugin manager so in-process sessions (pytester) do not mix theirs.
_parsers: weakref.WeakKeyDictionary[Any, pytest.Parser] = weakref.WeakKeyDictionary()


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    _parsers[pluginmanager] = parser
    group = parser.getgroup("shardrun", "shardrun: balanced runs from timing history")
    group.addoption("--shardrun", action="store_true", default=False,
                    help="Run the session through shardrun's queue on -n local workers: "
                         "planned from the timing history, one merged JUnit (--junitxml), "
                         "shardrun's summary and exit code.")
    if not xdist_installed(pluginmanager):
        # pytest reserves lowercase short options for itself through `addoption`; xdist
        # registers its `-n` through `_addoption`, and so does this stand-in for it.
        group._addoption("-n", "--numprocesses", dest="numprocesses", default=None,
                        metavar="N|auto",
                        help="With --shardrun: local workers (auto: one per CPU). With "
                             "pytest-xdist installed this is xdist's option; --shardrun "
                             "reads its value.")
    group.addoption("--shardrun-workers", default=None, metavar="N|auto",
                    help="With --shardrun: local workers; wins over -n.")
    group.addoption("--shardrun-group", type=int, default=None, metavar="I",
                    help="Run only group I (1..N) of a static split into --shardrun-groups "
                         "N, balanced from the committed timing history.")
    group.addoption("--shardrun-groups", type=int, default=None, metavar="N",
                    help="The number of groups (CI jobs) for --shardrun-group.")
    group.addoption("--shardrun-record", action="store_true", default=False,
                    help="Record this run's test durations into shardrun's timing history.")
    group.addoption("--shardrun-timings", default=None, metavar="FILE",
                    help="shardrun's timing history (default: .shardrun/timings.json in "
                         "the rootdir).")


def xdist_installed(pluginmanager: pytest.PytestPluginManager) -> bool:
    """Whether pytest-xdist can register `-n`: a second `-n` would make pytest fail to
    start (argparse refuses a repeated option), whichever plugin loads first."""
    if pluginmanager.has_plugin(XDIST):
        return True
    return not pluginmanager.is_blocked(XDIST) and importlib.util.find_spec(XDIST) is not None


def inside_worker() -> bool:
    return WORKER_VARIABLE in os.environ


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """`--shardrun`: shardrun runs the session; pytest's own (and xdist's) never starts."""
    if not config.option.shardrun or inside_worker():
        return None
    if any(getattr(config.option, name, False) for name in INFORMATIONAL_OPTIONS):
        return None
    from shardrun.pytest_plugin.session import run_through_shardrun

    return run_through_shardrun(config, _parsers.get(config.pluginmanager))


def pytest_configure(config: pytest.Config) -> None:
    if inside_worker():
        return
    option = config.option
    if option.shardrun_group is not None or option.shardrun_groups is not None:
        from shardrun.pytest_plugin.groups import GroupSelection

        config.pluginmanager.register(GroupSelection.from_config(config), "shardrun-group")
    # An xdist worker's reports reach the controller, which records them all once.
    if option.shardrun_record and not hasattr(config, "workerinput"):
        from shardrun.pytest_plugin.record import DurationRecorder

        config.pluginmanager.register(DurationRecorder.from_config(config), "shardrun-record")
