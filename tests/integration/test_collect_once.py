"""The booted pytest session (runners/pytest_session.py): a prewarmed pytest runner
collects each test file once and runs the node ids each batch is sent, in a fork of the
session or in the session itself, without losing a test that fails to load."""

from __future__ import annotations

import contextlib
import json
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from support.files import write_pytest_suite
from support.runs import clean_env, run_command, shardrun

from shardrun.runners import get_runner, worker_env
from shardrun.work.accounting import Settled, reconcile
from shardrun.work.warm import BatchRun, RunnerProcess

BATCH_TIMEOUT = 120.0

FILES = {
    # Each import of a test module and each session fixture's set-up and teardown is
    # written down with the pid that did it.
    "tests/conftest.py": """
        import os
        import pytest

        def note(what):
            with open(os.environ["EVIDENCE"], "a") as log:
                log.write(f"{what} {os.getpid()}\\n")

        @pytest.fixture(scope="session")
        def database():
            note("setup")
            yield "db"
            note("teardown")
    """,
    "tests/test_counted.py": """
        from conftest import note

        note("import")

        def test_a(database):
            assert database == "db"

        def test_b():
            assert True

        def test_c():
            assert 1 == 2
    """,
    "tests/test_broken.py": """
        raise RuntimeError("cannot import this module")

        def test_never():
            pass
    """,
    "tests/base.py": """
        class Base:
            def test_inherited(self):
                assert True
    """,
    "tests/test_child.py": """
        from base import Base

        class TestChild(Base):
            def test_own(self):
                assert True
    """,
}


class Runner:
    """One pytest runner process, prewarmed as a worker prewarms it."""

    def __init__(self, root: Path, evidence: Path, runner_args: Sequence[str] = ()) -> None:
        self.root, self.evidence = root, evidence
        self.runner = get_runner("pytest", root)
        self.runner_args = tuple(runner_args)
        argv = self.runner.server_argv()
        assert argv is not None
        env = worker_env(clean_env(EVIDENCE=str(evidence / "notes")), 1, evidence)
        self.process = RunnerProcess("key", argv, root, env, evidence / "boot.log")
        self.process.prewarm(self.runner_args, evidence / "prewarm.log")

    def run(self, *units: str, fork: bool) -> tuple[BatchRun, Settled, Path]:
        log = self.evidence / f"batch-{time.monotonic_ns()}.log"
        args = self.runner.batch_arguments(units, self.runner_args)
        batch = self.process.run(args, log, fork=fork, timeout_seconds=BATCH_TIMEOUT,
                                 units=units)
        return batch, reconcile(units, batch.events, batch.outcome), log

    def notes(self) -> list[tuple[str, int]]:
        path = self.evidence / "notes"
        lines = path.read_text().split("\n") if path.exists() else []
        return [(what, int(pid)) for what, pid in (line.split() for line in lines if line)]


@contextlib.contextmanager
def started(tmp_path: Path, runner_args: Sequence[str] = ()) -> Iterator[Runner]:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    runner = Runner(write_pytest_suite(tmp_path / "suite", FILES), evidence, runner_args)
    try:
        yield runner
    finally:
        runner.process.stop()


def outcomes(settled: Settled) -> dict[str, str]:
    return {test.id: test.outcome for test in settled.tests}


@pytest.mark.parametrize("fork", [True, False], ids=["fork", "reuse"])
def test_a_file_split_over_batches_is_imported_once_in_the_booted_runner(
    tmp_path: Path, fork: bool
) -> None:
    with started(tmp_path) as runner:
        results = [runner.run(f"tests/test_counted.py::test_{name}", fork=fork)
                   for name in "abc"]
        assert [outcomes(settled) for _, settled, _ in results] == [
            {"tests/test_counted.py::test_a": "passed"},
            {"tests/test_counted.py::test_b": "passed"},
            {"tests/test_counted.py::test_c": "failed"},
        ]
        assert [batch.outcome.exit_code for batch, _, _ in results] == [0, 0, 1]
        assert "assert 1 == 2" in results[2][2].read_text()  # the failure, in its own log
        imports = [pid for what, pid in runner.notes() if what == "import"]
        assert imports == [runner.process.pid]  # collected once, by the booted runner
        assert "pytest session booted" in (runner.evidence / "prewarm.log").read_text()


def test_each_forked_batch_sets_up_and_tears_down_its_session_fixtures(tmp_path: Path) -> None:
    with started(tmp_path) as runner:
        for _ in range(2):
            _, settled, _ = runner.run("tests/test_counted.py::test_a", fork=True)
            assert outcomes(settled) == {"tests/test_counted.py::test_a": "passed"}
        fixtures = [(what, pid) for what, pid in runner.notes() if what != "import"]
    # Each batch's own process, never the booted runner, holds the session fixture.
    assert [what for what, _ in fixtures] == ["setup", "teardown", "setup", "teardown"]
    assert fixtures[0][1] == fixtures[1][1] != fixtures[2][1] == fixtures[3][1]
    assert runner.process.pid not in {pid for _, pid in fixtures}


@pytest.mark.parametrize("fork", [True, False], ids=["fork", "reuse"])
def test_a_module_that_fails_to_import_is_an_error_in_every_batch_that_runs_it(
    tmp_path: Path, fork: bool
) -> None:
    with started(tmp_path) as runner:
        batch, first, log = runner.run("tests/test_broken.py", "tests/test_child.py",
                                       fork=fork)
        _, second, _ = runner.run("tests/test_broken.py", fork=fork)
    assert outcomes(first) == {
        "tests/test_broken.py": "error",
        "tests/test_child.py::TestChild::test_inherited": "passed",
        "tests/test_child.py::TestChild::test_own": "passed",
    }
    assert outcomes(second) == {"tests/test_broken.py": "error"}
    for settled in (first, second):
        error = next(test for test in settled.tests if test.unit == "tests/test_broken.py")
        assert "cannot import this module" in error.details
        assert settled.unrun == () and settled.empty_units == ()
    assert batch.outcome.exit_code == 1, log.read_text()


def test_a_node_id_the_file_no_longer_has_is_an_error_not_an_empty_unit(tmp_path: Path) -> None:
    with started(tmp_path) as runner:
        _, settled, _ = runner.run("tests/test_counted.py::test_b",
                                   "tests/test_counted.py::test_gone", fork=True)
    assert outcomes(settled) == {"tests/test_counted.py::test_b": "passed",
                                 "tests/test_counted.py::test_gone": "error"}
    assert settled.empty_units == ()


def test_the_runner_arguments_select_in_the_booted_session(tmp_path: Path) -> None:
    with started(tmp_path, ("-k", "test_a or test_own")) as runner:
        _, counted, _ = runner.run("tests/test_counted.py", fork=True)
        _, deselected, _ = runner.run("tests/test_counted.py::test_b", fork=False)
        _, child, _ = runner.run("tests/test_child.py::TestChild", fork=True)
    assert outcomes(counted) == {"tests/test_counted.py::test_a": "passed"}
    assert outcomes(deselected) == {} and deselected.empty_units == (
        "tests/test_counted.py::test_b",)
    assert outcomes(child) == {"tests/test_child.py::TestChild::test_own": "passed"}


# --- splitting a file whose tests the history knows


def test_a_file_that_grew_since_its_timings_is_split_with_its_new_tests(tmp_path: Path) -> None:
    files = {f"tests/test_file{index}.py": "def test_a():\n    pass\n\ndef test_b():\n    pass\n"
             for index in range(8)}
    files["tests/test_grown.py"] = "".join(f"def test_{index}():\n    pass\n\n"
                                           for index in range(6))
    root = write_pytest_suite(tmp_path / "suite", files)
    # The history knows three tests of test_grown.py; it has six now. It is not among
    # the longest files, which the first round takes whole before the listing, and it is
    # worth a listing (batching.units_to_split): it would run whole late in the run.
    durations = {f"tests/test_grown.py::test_{index}": 0.4 for index in range(3)}
    durations.update({f"tests/test_file{index}.py::test_{name}": 1.0
                      for index in range(8) for name in "ab"})
    (tmp_path / ".test_durations").write_text(json.dumps(durations))
    timings = tmp_path / "timings.json"
    imported = run_command([sys.executable, "-m", "shardrun", "timings", "import",
                            str(tmp_path / ".test_durations"), "--timings", str(timings)],
                           root, clean_env())
    assert imported.returncode == 0, imported.stdout + imported.stderr
    completed = shardrun(root, "tests", "--workers", "2", "--timings", str(timings),
                         "--junit-out", str(tmp_path / "run.xml"))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    names = Counter(case.get("name") for case in ET.parse(tmp_path / "run.xml").iter("testcase")
                    if case.get("classname") == "tests.test_grown")
    assert names == Counter(f"test_{index}" for index in range(6))
    [record] = json.loads(timings.read_text())["runs"]
    units = {unit for batch in record["batches"] for unit in batch["units"]}
    assert {f"tests/test_grown.py::test_{index}" for index in range(6)} <= units


def test_forked_batches_inherit_what_a_plugin_imports_at_every_session_end(
    tmp_path: Path,
) -> None:
    """hypothesis' pytest plugin imports hypothesis at the end of every session, tests of
    it or not (0.4-1.2 s): a forked batch that finishes its session paid it per batch.
    The booted runner imports it once; a fork finds it imported before its first test."""
    pytest.importorskip("_hypothesis_pytestplugin")  # a dev dependency: always in CI
    suite = write_pytest_suite(tmp_path / "suite", {"tests/test_sees.py": (
        "import sys\n\n\ndef test_hypothesis_was_imported_by_the_runner():\n"
        "    assert 'hypothesis' in sys.modules\n")})
    runner = get_runner("pytest", suite, python=sys.executable)
    argv = runner.server_argv()
    assert argv is not None
    env = worker_env(clean_env(), 1, tmp_path)
    del env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"]  # as a project has it: installed plugins load
    process = RunnerProcess("key", argv, suite, env, tmp_path / "boot.log")
    try:
        process.prewarm((), tmp_path / "prewarm.log")
        units = ("tests/test_sees.py",)
        batch = process.run(runner.batch_arguments(units), tmp_path / "batch.log", fork=True,
                            timeout_seconds=BATCH_TIMEOUT, units=units)
    finally:
        process.stop()
    assert outcomes(reconcile(units, batch.events, batch.outcome)) == {
        "tests/test_sees.py::test_hypothesis_was_imported_by_the_runner": "passed"}
