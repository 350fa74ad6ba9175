"""One contract, every runner: really run the bundled example suites through each runner.

The contract (DESIGN.md rule 8): a batch of units, run as the worker runs it (in the
runner's server for rspec and pytest, the command's argv for `command`, cwd = the suite
root), reports one finished test per example the runner's listing reports, under the same
ids; example ids from the listing work as units; extra args reach the framework; a
failing example fails the batch. Only the two fast files of each suite are used, so the
whole module costs a few seconds of interpreter start-up, not the suites' sleeps.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from shardrun.models import ProcessOutcome, TestResult
from shardrun.report.junit_reader import read_testcases
from shardrun.runners import Runner, get_runner, worker_env
from shardrun.work.accounting import reconcile, reconcile_junit
from shardrun.work.warm import RunnerProcess

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


@dataclass(frozen=True)
class Ran:
    tests: tuple[TestResult, ...]
    exit_code: int | None
    output: str


def _run_units(
    case: Case, units: Sequence[str], tmp_path: Path, extra_args: Sequence[str] = (),
    fail: bool = False,
) -> Ran:
    """The batch as a worker runs it, settled as a worker settles it."""
    runner = _runner(case)
    server = runner.server_argv()
    out_dir = tmp_path / "out"
    out_dir.mkdir(exist_ok=True)
    if server is None:
        invocation = runner.invocation(units, out_dir, extra_args)
        completed = _run(invocation.argv, case, _env(tmp_path, fail))
        tests, _ = read_testcases(invocation.junit_path.read_text())
        ending = ProcessOutcome(completed.returncode, None, False, 0.0, 0.0, 0)
        settled = reconcile_junit(units, tests, ending)
        return Ran(settled.tests, completed.returncode, completed.stdout + completed.stderr)
    log = out_dir / "batch.log"
    process = RunnerProcess("key", server, case.root, _env(tmp_path, fail), log)
    try:
        batch = process.run(runner.batch_arguments(units, extra_args), log, fork=False,
                            timeout_seconds=PROCESS_TIMEOUT_SECONDS)
    finally:
        process.stop()
    settled = reconcile(units, batch.events, batch.outcome)
    assert settled.unrun == ()
    return Ran(settled.tests, batch.outcome.exit_code, log.read_text())


def _outcomes(ran: Ran, outcome: str) -> int:
    return sum(1 for test in ran.tests if test.outcome == outcome)


def test_run_outputs_agree_with_the_listing(case: Case, tmp_path: Path) -> None:
    """One test per listed example, under the listed id (pytest and rspec)."""
    listed = _listed(case, case.files, tmp_path)
    ran = _run_units(case, case.files, tmp_path)

    assert ran.exit_code == 0, ran.output
    assert len(listed) == EXAMPLES_IN_FILES
    assert all(example.startswith(case.files) for example in listed)  # root-relative ids
    assert len(ran.tests) == len(listed)
    assert _outcomes(ran, "skipped") == 1
    if case.framework != "command":
        assert sorted(test.id for test in ran.tests) == sorted(listed)
        assert all(test.seconds >= 0 and test.line for test in ran.tests)


def test_listed_example_ids_run_as_units(case: Case, tmp_path: Path) -> None:
    listed = _listed(case, case.files, tmp_path)
    chosen = [listed[0], listed[-1]]  # one from each file
    ran = _run_units(case, chosen, tmp_path)

    assert ran.exit_code == 0, ran.output
    assert len(ran.tests) == len(chosen)
    if case.framework != "command":
        assert sorted(test.unit for test in ran.tests) == sorted(chosen)


def test_extra_args_reach_the_framework(case: Case, tmp_path: Path) -> None:
    ran = _run_units(case, case.files, tmp_path, case.filter_args)

    assert ran.exit_code == 0, ran.output
    assert len(ran.tests) == EXAMPLES_MATCHING_FILTER


def test_fail_switch_makes_the_run_fail(case: Case, tmp_path: Path) -> None:
    ran = _run_units(case, case.files, tmp_path, fail=True)

    assert ran.exit_code != 0
    assert len(ran.tests) == EXAMPLES_IN_FILES
    assert _outcomes(ran, "failed") == 1
