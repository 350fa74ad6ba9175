"""The fault matrix: hostile suites through `shardrun run`, real rspec and pytest.

Each test answers one question: could this end green while a test failed, hung or never
ran? It asserts the exit code and the merged JUnit's set of (classname, name, outcome),
against a serial run of the same suite where one can finish, or against the tests written
into the suite where it cannot (a hang, a test that kills its process). docs/faults.md
lists the cases with what shardrun does; the CI-node cases are in test_ci_mode.py and the
worker and Redis faults in test_queue_mode.py.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

import pytest
from support.files import write_files, write_pytest_suite
from support.runs import (
    assert_each_once,
    clean_env,
    junit_cases,
    run_options,
    serial_cases,
    shardrun,
)

HANG_TIMEOUT = "3"


def run(root: Path, tmp_path: Path, *args: str, env: Mapping[str, str] | None = None):
    completed = shardrun(root, *args, *run_options(tmp_path), env=env)
    return completed, junit_cases(tmp_path / "run.xml")


def messages(tmp_path: Path) -> dict[str, str]:
    """Testcase name -> the message of its error or failure."""
    found = {}
    for case in ET.parse(tmp_path / "run.xml").getroot().iter("testcase"):
        for child in case:
            if child.tag in ("error", "failure"):
                found[case.get("name", "")] = child.get("message", "")
    return found


# --- 1: a test that hangs until the batch timeout kills it

RSPEC_HANG = {
    "spec/a_spec.rb": """
        RSpec.describe "a" do
          it("passes") { expect(1).to eq(1) }
          it("hangs") { sleep 100 }
          it("runs after the hang") { expect(1).to eq(1) }
          it("fails after the hang") { expect(1).to eq(2) }
        end
    """,
    "spec/b_spec.rb": """
        RSpec.describe "b" do
          it("passes") { expect(2).to eq(2) }
        end
    """,
}
PYTEST_HANG = {
    "tests/test_a.py": """
        import time

        def test_passes():
            pass

        def test_hangs():
            time.sleep(100)

        def test_runs_after_the_hang():
            pass

        def test_fails_after_the_hang():
            assert 1 == 2
    """,
    "tests/test_b.py": """
        def test_passes():
            pass
    """,
}
HANG_EXPECTED = {
    "rspec": {("spec.a_spec", "a passes", "passed"), ("spec.a_spec", "a hangs", "error"),
              ("spec.a_spec", "a runs after the hang", "passed"),
              ("spec.a_spec", "a fails after the hang", "failed"),
              ("spec.b_spec", "b passes", "passed")},
    "pytest": {("tests.test_a", "test_passes", "passed"), ("tests.test_a", "test_hangs", "error"),
               ("tests.test_a", "test_runs_after_the_hang", "passed"),
               ("tests.test_a", "test_fails_after_the_hang", "failed"),
               ("tests.test_b", "test_passes", "passed")},
}


def hang_suite(framework: str, tmp_path: Path) -> Path:
    if framework == "rspec":
        return write_files(tmp_path / "suite", RSPEC_HANG)
    return write_pytest_suite(tmp_path / "suite", PYTEST_HANG)


@pytest.mark.parametrize("framework", [pytest.param("rspec", marks=pytest.mark.ruby), "pytest"])
@pytest.mark.parametrize("split", [False, True], ids=["whole-file", "split-file"])
def test_a_hung_test_is_an_error_and_the_tests_after_it_still_run(
    framework: str, split: bool, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """rspec_junit_formatter wrote such a hung example as passed, and the run exited 0."""
    if framework == "rspec":
        request.getfixturevalue("require_ruby")
    root = hang_suite(framework, tmp_path)
    paths = ["spec"] if framework == "rspec" else ["tests"]
    extra: list[str] = []
    if split:  # timings that make the file longer than a first batch: run as examples
        big, small = ("spec/a_spec.rb", "spec/b_spec.rb") if framework == "rspec" else (
            "tests/test_a.py", "tests/test_b.py")
        timings = tmp_path / "knapsack.json"
        timings.write_text(json.dumps({big: 100.0, small: 1.0}))
        extra = ["--from-junit", str(timings)]
    completed, cases = run(root, tmp_path, *paths, "-w", "2", "--timeout", HANG_TIMEOUT,
                           "--retries", "0", *extra)
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert_each_once(cases, frozenset(HANG_EXPECTED[framework]))
    hung = next(name for name in messages(tmp_path) if "hangs" in name)
    assert messages(tmp_path)[hung] == (
        f"interrupted: killed after the batch timeout (--timeout {HANG_TIMEOUT} s)")
    if split:
        record = json.loads((tmp_path / "run-timings.json").read_text())["runs"][-1]
        assert any("[" in unit or "::" in unit for b in record["batches"] for unit in b["units"])


# --- 2: a test that ends its own process

INTERRUPTING = {
    "pytest-sigint": ("import os, signal; os.kill(os.getpid(), signal.SIGINT)",
                      "interrupted (KeyboardInterrupt"),
    "pytest-os-exit-0": ("import os; os._exit(0)", "the runner exited with code 0"),
    "pytest-segfault": ("import ctypes; ctypes.string_at(0)", "SIGSEGV"),
    "pytest-exit": ("import pytest; pytest.exit('bye', returncode=0)",
                    "the session was stopped (Exit: bye)"),
    "rspec-exit-0": ("exit 0", "the process exited (exit 0)"),
    "rspec-kill-9": ("Process.kill(:KILL, Process.pid)", "SIGKILL"),
    "rspec-exit-bang": ("exit!(0)", "the runner exited with code 0"),
}


def interrupting_suite(kind: str, tmp_path: Path) -> tuple[Path, str, set]:
    body, _ = INTERRUPTING[kind]
    if kind.startswith("rspec"):
        files = {"spec/a_spec.rb": f"""
            RSpec.describe "a" do
              it("passes first") {{ expect(1).to eq(1) }}
              it("ends its process") {{ {body} }}
              it("fails after it") {{ expect(1).to eq(2) }}
              it("passes after it") {{ expect(1).to eq(1) }}
            end
        """}
        expected = {("spec.a_spec", "a passes first", "passed"),
                    ("spec.a_spec", "a ends its process", "error"),
                    ("spec.a_spec", "a fails after it", "failed"),
                    ("spec.a_spec", "a passes after it", "passed")}
        return write_files(tmp_path / "suite", files), "spec", expected
    files = {"tests/test_a.py": f"""
        def test_passes_first():
            pass

        def test_ends_its_process():
            {body}

        def test_fails_after_it():
            assert 1 == 2

        def test_passes_after_it():
            pass
    """}
    expected = {("tests.test_a", "test_passes_first", "passed"),
                ("tests.test_a", "test_ends_its_process", "error"),
                ("tests.test_a", "test_fails_after_it", "failed"),
                ("tests.test_a", "test_passes_after_it", "passed")}
    return write_pytest_suite(tmp_path / "suite", files), "tests", expected


@pytest.mark.parametrize("runners", ["fork", "reuse", "fresh"])
@pytest.mark.parametrize("kind", sorted(INTERRUPTING))
def test_a_test_that_ends_its_own_process_fails_the_run_and_loses_no_other_test(
    kind: str, runners: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The tests after it never ran, and the run said "Ran with zero examples", exit 0."""
    if kind.startswith("rspec"):
        request.getfixturevalue("require_ruby")
    root, path, expected = interrupting_suite(kind, tmp_path)
    completed, cases = run(root, tmp_path, path, "-w", "1", "--retries", "0",
                           "--runners", runners)
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert_each_once(cases, frozenset(expected))
    [message] = [text for name, text in messages(tmp_path).items()
                 if "ends" in name and "process" in name]
    assert message.startswith("interrupted: ") and INTERRUPTING[kind][1] in message, message


# --- 3: the project's own early-stop settings

EARLY_STOP = {
    "rspec-dot-rspec": {".rspec": "--fail-fast\n"},
    "rspec-spec-helper": {".rspec": "--require spec_helper\n",
                          "spec/spec_helper.rb": "RSpec.configure { |c| c.fail_fast = 1 }\n"},
    "pytest-addopts-x": {"pytest.ini": "[pytest]\naddopts = -x\n"},
    "pytest-maxfail": {"pytest.ini": "[pytest]\naddopts = --maxfail=1\n"},
}


@pytest.mark.parametrize("kind", sorted(EARLY_STOP))
def test_the_projects_early_stop_setting_drops_no_test(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A 74-test suite reported 56 tests: every test after a batch's first failure was
    dropped, a failing one included. The serial run without the setting is the truth."""
    rspec = kind.startswith("rspec")
    if rspec:
        request.getfixturevalue("require_ruby")
        files = {f"spec/f{index}_spec.rb": f"""
            RSpec.describe "f{index}" do
              it("fails") {{ expect({index}).to eq(-1) }}
              it("passes") {{ expect({index}).to eq({index}) }}
            end
        """ for index in range(4)}
        plain = write_files(tmp_path / "plain", files)
        root = write_files(tmp_path / "suite", {**files, **EARLY_STOP[kind]})
    else:
        files = {f"tests/test_f{index}.py": f"""
            def test_fails():
                assert {index} == -1

            def test_passes():
                pass
        """ for index in range(4)}
        plain = write_pytest_suite(tmp_path / "plain", files)
        root = write_files(tmp_path / "suite", {**files, **EARLY_STOP[kind]})
    framework, path = ("rspec", "spec") if rspec else ("pytest", "tests")
    _, serial = serial_cases(framework, plain, tmp_path / "serial.xml")
    completed, cases = run(root, tmp_path, path, "-w", "2", "--retries", "0")
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert_each_once(cases, frozenset(serial))
    assert len(cases) == 8
    assert "shardrun's own --fail-fast [N] stops the whole run" in completed.stdout


# --- 4: files that fail to load, a boot that fails

LOAD_ERRORS = {
    "rspec": {"spec/ok_spec.rb": 'RSpec.describe("ok") { it("passes") { expect(1).to eq(1) } }\n',
              "spec/broken_spec.rb": "RSpec.describe('broken') do\n  it('x') {\n"},
    "pytest": {"tests/test_ok.py": "def test_passes():\n    pass\n",
               "tests/test_broken.py": "import no_such_module\n"},
}


@pytest.mark.parametrize("framework", [pytest.param("rspec", marks=pytest.mark.ruby), "pytest"])
def test_a_file_that_fails_to_load_is_an_error_and_the_others_run(
    framework: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """rspec runs no example at all once one file of a batch fails to load."""
    if framework == "rspec":
        request.getfixturevalue("require_ruby")
        root = write_files(tmp_path / "suite", LOAD_ERRORS["rspec"])
    else:
        root = write_pytest_suite(tmp_path / "suite", LOAD_ERRORS["pytest"])
    path = "spec" if framework == "rspec" else "tests"
    completed, cases = run(root, tmp_path, path, "-w", "1", "--retries", "0")
    assert completed.returncode == 1, completed.stdout + completed.stderr
    outcomes = {(name, outcome) for _, name, outcome in cases}
    broken = f"{path}/broken_spec.rb" if framework == "rspec" else "tests/test_broken.py"
    passing = "ok passes" if framework == "rspec" else "test_passes"
    assert outcomes == {(passing, "passed"), (broken, "error")}, completed.stdout


@pytest.mark.ruby
@pytest.mark.usefixtures("require_ruby")
def test_a_spec_helper_that_fails_to_load_never_ends_green(tmp_path: Path) -> None:
    """It fails before any formatter exists: rspec then runs nothing and ends "cleanly"."""
    root = write_files(tmp_path / "suite", {
        ".rspec": "--require spec_helper\n",
        "spec/spec_helper.rb": 'raise "no database"\n',
        "spec/a_spec.rb": 'RSpec.describe("a") { it("passes") { expect(1).to eq(1) } }\n',
    })
    completed, cases = run(root, tmp_path, "spec", "-w", "1", "--retries", "0")
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert {outcome for _, _, outcome in cases} == {"error"}
    assert "Ran with zero examples" not in completed.stdout


# --- 5: a flaky example of a split file is retried by its own id

FLAKY_SPLIT = {
    "spec/a_spec.rb": """
        RSpec.describe "a" do
          it("passes") { expect(1).to eq(1) }
          it "fails the first time" do
            marker = ENV.fetch("FLAKY_MARKER")
            first = !File.exist?(marker)
            File.write(marker, "x")
            expect(first).to be(false)
          end
          it("passes too") { expect(1).to eq(1) }
        end
    """,
    "spec/b_spec.rb": 'RSpec.describe("b") { it("passes") { expect(1).to eq(1) } }\n',
}


@pytest.mark.ruby
@pytest.mark.usefixtures("require_ruby")
def test_a_flaky_example_second_in_a_split_files_batch_is_retried_by_its_id(
    tmp_path: Path,
) -> None:
    """The retry used to run the batch's first unit: the flaky example never ran again."""
    root = write_files(tmp_path / "suite", FLAKY_SPLIT)
    timings = tmp_path / "knapsack.json"
    timings.write_text(json.dumps({"spec/a_spec.rb": 100.0, "spec/b_spec.rb": 1.0}))
    env = clean_env(FLAKY_MARKER=str(tmp_path / "marker"))
    completed, cases = run(root, tmp_path, "spec", "-w", "2", "--from-junit", str(timings),
                           env=env)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert_each_once(cases)
    assert ("spec.a_spec", "a fails the first time", "passed") in cases
    flaky = [line for line in completed.stdout.splitlines() if line.startswith("Flaky")]
    assert flaky == ["Flaky (failed, then passed on attempt 2): spec/a_spec.rb:3 "
                     "a fails the first time"], completed.stdout


# --- 6: the progress line and the summary count the same tests

PROGRESS_SUITE = {
    "tests/test_flaky.py": """
        import os
        from pathlib import Path

        def test_fails_the_first_time():
            marker = Path(os.environ["FLAKY_MARKER"])
            first = not marker.exists()
            marker.write_text("x")
            assert not first

        def test_passes():
            pass
    """,
    "tests/test_broken.py": """
        def test_always_fails():
            assert 1 == 2

        def test_passes():
            pass
    """,
    **{f"tests/test_ok_{index}.py": "def test_ok():\n    pass\n" for index in range(4)},
}


def test_the_last_progress_line_counts_what_the_summary_counts(tmp_path: Path) -> None:
    """Retries were counted as failures ("5 failed" against "2 failures") and as more
    units (33 grew to 36): the last progress line now says what the summary says."""
    root = write_pytest_suite(tmp_path / "suite", PROGRESS_SUITE)
    env = clean_env(FLAKY_MARKER=str(tmp_path / "marker"))
    completed, cases = run(root, tmp_path, "tests", "-w", "2", env=env)
    assert completed.returncode == 1, completed.stdout + completed.stderr
    progress = [line for line in completed.stdout.splitlines()
                if line.startswith("progress: ")]
    totals = {re.search(r"/(\d+) units", line)[1] for line in progress}  # type: ignore[index]
    assert len(totals) == 1, completed.stdout  # the total never grows
    [units] = totals
    # The flaky test passed on its retry: flaky, not failed, on both lines.
    assert (f"{len(cases)} tests, 1 failed, 1 flaky, {units}/{units} units"
            in progress[-1]), completed.stdout
    assert f"{len(cases) - 1} passed, 1 failed" in completed.stdout.splitlines()


# --- 7: retries that pay for themselves, and never erase a result (issue 25)


def test_only_a_budget_of_deterministic_failures_is_retried(tmp_path: Path) -> None:
    """12 of 20 files fail every time: 5 are retried (max(5, 1% of the tests)), the other
    7 are not, the summary says so, and every failure is reported once."""
    files = {f"tests/test_{index:02d}.py": (
        "def test_x():\n    assert False, 'fails every time'\n" if index < 12
        else "def test_x():\n    pass\n") for index in range(20)}
    root = write_pytest_suite(tmp_path / "suite", files)
    completed, cases = run(root, tmp_path, "tests", "-w", "2")
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert_each_once(cases)
    assert sum(1 for _, _, outcome in cases if outcome == "failed") == 12
    record = json.loads((tmp_path / "run-timings.json").read_text())["runs"][-1]
    assert sum(1 for b in record["batches"] if b["attempt"] == 2) == 5
    assert "Note: 7 failed test(s) were not retried: more failed than the retry budget (5 " \
        "tests" in completed.stdout, completed.stdout


POLLUTION = {
    "tests/state.py": "leaked = []\n",
    "tests/test_polluter.py": """
        from tests import state

        def test_leaves_state_behind():
            state.leaked.append("x")
    """,
    "tests/test_victim.py": """
        from tests import state

        def test_needs_a_clean_module():
            assert state.leaked == []
    """,
    "tests/__init__.py": "",
}


@pytest.mark.parametrize("runners", ["reuse", "fork"])
def test_state_a_reused_runner_leaks_is_named_pollution_and_a_fork_has_none(
    runners: str, tmp_path: Path
) -> None:
    """Timings put the polluter alone in the first batch and the victim in a later one on
    the same worker: in a reused runner the victim fails, then passes in a fresh process
    (polluted, not flaky); in a fork of the booted runner it passes at once."""
    root = write_pytest_suite(tmp_path / "suite", POLLUTION)
    timings = tmp_path / "knapsack.json"
    timings.write_text(json.dumps({"tests/test_polluter.py": 10.0,
                                   "tests/test_victim.py": 0.1}))
    completed, cases = run(root, tmp_path, "tests/test_polluter.py", "tests/test_victim.py",
                           "-w", "1", "--runners", runners, "--from-junit", str(timings))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert ("tests.test_victim", "test_needs_a_clean_module", "passed") in cases
    lines = completed.stdout.splitlines()
    polluted = [line for line in lines if line.startswith("Polluted")]
    assert not any(line.startswith("Flaky") for line in lines), completed.stdout
    if runners == "reuse":
        assert polluted == ["Polluted (failed in a runner earlier batches had used, passed in "
                            "a fresh process: state an earlier batch left behind): "
                            "tests/test_victim.py::test_needs_a_clean_module"], completed.stdout
    else:
        assert polluted == []
