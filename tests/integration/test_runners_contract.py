"""One contract, every runner: really run the bundled example suites through each runner.

The contract (DESIGN.md rule 8): the argv a runner builds, run with cwd = the suite root,
writes a JUnit file with one testcase per example the runner's listing reports; example
ids from the listing work as units; extra args reach the framework; a failing example
makes the process exit nonzero. Only the two fast files of each suite are used, so the
whole module costs a few seconds of interpreter start-up, not the suites' sleeps.

This test runs processes with subprocess directly: it checks the argv, not process.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from shardrun.runners import Invocation, Runner, get_runner, worker_env

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FAIL_SWITCH = "SHARDRUN_EXAMPLE_FAIL"
PROCESS_TIMEOUT_SECONDS = 120  # generous: a cold interpreter on a loaded CI box


@dataclass(frozen=True)
class Case:
    """One runner under contract, and how to check it on one example suite."""

    framework: str
    suite: str  # directory under examples/
    files: tuple[str, ...]  # the fast files: 7 examples, 1 pending/skipped, 1 fail switch
    filter_args: tuple[str, ...]  # keeps the 3 examples whose name contains "adds"
    lister: str  # framework whose listing counts the examples (command cannot list)
    template: str | None = None
    needs_ruby: bool = False

    @property
    def root(self) -> Path:
        return EXAMPLES / self.suite


RSPEC_FILES = ("spec/lib/calculator_spec.rb", "spec/lib/string_utils_spec.rb")
PYTEST_FILES = ("tests/lib/test_calculator.py", "tests/lib/test_string_utils.py")
EXAMPLES_IN_FILES = 7
EXAMPLES_MATCHING_FILTER = 3

CASES = [
    pytest.param(
        Case("rspec", "rspec", RSPEC_FILES, ("--example", "adds"), "rspec", needs_ruby=True),
        id="rspec",
        marks=pytest.mark.ruby,
    ),
    pytest.param(Case("pytest", "pytest", PYTEST_FILES, ("-k", "adds"), "pytest"), id="pytest"),
    pytest.param(
        Case(
            "command", "pytest", PYTEST_FILES, ("-k", "adds"), "pytest",
            template=f"{sys.executable} -m pytest {{files}} --junitxml={{junit}} "
            "-o junit_family=xunit1 -p no:cacheprovider",
        ),
        id="command-pytest",
    ),
]


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest) -> Case:
    chosen: Case = request.param
    if chosen.needs_ruby:
        request.getfixturevalue("require_ruby")
    return chosen


def _env(tmp_path: Path, fail: bool = False) -> dict[str, str]:
    """A worker's environment, without the outer pytest's own PYTEST_* settings.

    Plugin autoload is off: the example suites use no plugins, and whatever this machine
    has installed (xdist, hypothesis, benchmark...) costs ~0.8 s per inner run and may
    leave files (.benchmarks/) in examples/.
    """
    base = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    base["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    base.pop(FAIL_SWITCH, None)
    if fail:
        base[FAIL_SWITCH] = "1"
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir(exist_ok=True)
    return worker_env(base, 2, tmpdir)


def _run(argv: Sequence[str], case: Case, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), cwd=case.root, env=env, capture_output=True, text=True,
        timeout=PROCESS_TIMEOUT_SECONDS, check=False,
    )


def _runner(case: Case) -> Runner:
    return get_runner(case.framework, case.root, case.template)


def _listed(case: Case, files: Sequence[str], tmp_path: Path) -> list[str]:
    """Example ids in `files`, via the listing runner's own argv and parser."""
    lister = get_runner(case.lister, case.root)
    out_dir = tmp_path / "listing"
    out_dir.mkdir(exist_ok=True)
    argv = lister.list_examples_argv(files, out_dir)
    assert argv is not None
    listing = _run(argv, case, _env(tmp_path))
    assert listing.returncode == 0, listing.stdout + listing.stderr
    return lister.parse_examples(listing.stdout, out_dir)


def _run_units(
    case: Case, units: Sequence[str], tmp_path: Path, extra_args: Sequence[str] = (),
    fail: bool = False,
) -> tuple[Invocation, subprocess.CompletedProcess[str]]:
    out_dir = tmp_path / "out"
    out_dir.mkdir(exist_ok=True)
    invocation = _runner(case).invocation(units, out_dir, extra_args)
    return invocation, _run(invocation.argv, case, _env(tmp_path, fail))


def _count(junit_path: Path, tag: str = "testcase") -> int:
    """How many `tag` elements the JUnit file has (just a count: report.py parses it)."""
    return sum(1 for _ in ET.parse(junit_path).getroot().iter(tag))


def test_run_outputs_agree_with_the_listing(case: Case, tmp_path: Path) -> None:
    """JUnit: one testcase per listed example; rspec's JSON: a time for each of them."""
    listed = _listed(case, case.files, tmp_path)
    invocation, completed = _run_units(case, case.files, tmp_path)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert len(listed) == EXAMPLES_IN_FILES
    assert all(example.startswith(case.files) for example in listed)  # root-relative ids
    assert _count(invocation.junit_path) == len(listed)
    assert _count(invocation.junit_path, "skipped") == 1
    times = _runner(case).example_times(invocation)
    if invocation.json_path is None:
        assert times == {}
    else:
        assert set(times) == set(listed)
        assert all(seconds >= 0 for seconds in times.values())


def test_listed_example_ids_run_as_units(case: Case, tmp_path: Path) -> None:
    listed = _listed(case, case.files, tmp_path)
    chosen = [listed[0], listed[-1]]  # one from each file
    invocation, completed = _run_units(case, chosen, tmp_path)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert _count(invocation.junit_path) == len(chosen)


def test_extra_args_reach_the_framework(case: Case, tmp_path: Path) -> None:
    invocation, completed = _run_units(case, case.files, tmp_path, case.filter_args)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert _count(invocation.junit_path) == EXAMPLES_MATCHING_FILTER


def test_fail_switch_makes_the_run_fail(case: Case, tmp_path: Path) -> None:
    invocation, completed = _run_units(case, case.files, tmp_path, fail=True)

    assert completed.returncode != 0
    assert _count(invocation.junit_path) == EXAMPLES_IN_FILES
    assert _count(invocation.junit_path, "failure") == 1
