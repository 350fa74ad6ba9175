"""`shardrun run` end to end: the real CLI, real Redis, real workers, real rspec and pytest.

Every test starts `python -m shardrun run ...` as a subprocess with cwd = a small suite
written into tmp_path, then checks what a user or a CI job sees: the exit code, stderr,
the summary on stdout, the merged JUnit file and the timing history. The suites sleep
0.1-0.3 s per example so the whole module stays around a minute on two cores.

Inner pytest runs get PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 and none of the outer run's
PYTEST_* variables, and each generated pytest suite has its own pytest.ini, so neither this
machine's plugins nor shardrun's own pyproject settings (warnings as errors) reach them.
Those helpers, shared with the other end-to-end modules, are in tests/support/.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from support.files import write_files, write_pytest_suite
from support.runs import (
    RUN_TIMEOUT_SECONDS,
    Testcase,
    clean_env,
    free_port,
    is_alive,
    junit_testcases,
    run_options,
    serial_testcases,
    shardrun,
    shardrun_argv,
)

# What the brief promises for an unreachable Redis: the answer within 5 s.
UNREACHABLE_REDIS_BUDGET_SECONDS = 5.0
SUMMARY_LAST_LINE = re.compile(r"^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?$")
COUNTS_LINE = re.compile(r"^Finished in (?P<wall>[\d.]+) s "
                         r"\((?P<tests>[\d.]+) s of test time\)$", re.MULTILINE)
SHARD_LINE = re.compile(r"predicted ([\d.]+) s, actual ([\d.]+) s")
NO_TTL = -1  # what Redis TTL answers for a key that never expires
PYTEST_FILES = {
    "tests/test_alpha.py": """
        import time

        def test_adds():
            time.sleep(0.2)
            assert 1 + 1 == 2

        class TestAlpha:
            def test_subtracts(self):
                time.sleep(0.2)
                assert 3 - 1 == 2
    """,
    "tests/test_beta.py": """
        import time

        def test_multiplies():
            time.sleep(0.3)
            assert 2 * 3 == 6

        def test_divides_wrongly():
            time.sleep(0.1)
            assert 6 / 3 == 3, "the failing example"
    """,
    "tests/test_gamma.py": """
        import time

        import pytest

        def test_concatenates():
            time.sleep(0.2)
            assert "a" + "b" == "ab"

        @pytest.mark.skip(reason="the skipped example")
        def test_not_yet():
            raise AssertionError("never runs")
    """,
    "tests/sub/test_delta.py": """
        import time

        import pytest

        @pytest.fixture
        def broken():
            raise RuntimeError("the erroring fixture")

        @pytest.mark.parametrize("n", [1, 2])
        def test_squares(n):
            time.sleep(0.1)
            assert n * n == n ** 2

        def test_uses_broken_fixture(broken):
            pass
    """,
}

RSPEC_DOTFILE = "--require spec_helper\n"
RSPEC_FILES = {
    "spec/spec_helper.rb": """
        RSpec.configure do |config|
          config.disable_monkey_patching!
        end
    """,
    "spec/alpha_spec.rb": """
        RSpec.describe "Alpha" do
          it "adds" do
            sleep 0.2
            expect(1 + 1).to eq(2)
          end

          it "subtracts" do
            sleep 0.2
            expect(3 - 1).to eq(2)
          end
        end
    """,
    "spec/beta_spec.rb": """
        RSpec.describe "Beta" do
          it "multiplies" do
            sleep 0.3
            expect(2 * 3).to eq(6)
          end

          it "divides wrongly" do
            sleep 0.1
            expect(6 / 3).to eq(3)
          end
        end
    """,
    "spec/gamma_spec.rb": """
        RSpec.describe "Gamma" do
          it "concatenates" do
            sleep 0.2
            expect("a" + "b").to eq("ab")
          end

          it "is not written yet" do
            skip "the skipped example"
          end
        end
    """,
    "spec/sub/delta_spec.rb": """
        RSpec.describe "Delta" do
          describe "squares" do
            it "squares 1" do
              sleep 0.1
              expect(1 * 1).to eq(1)
            end

            it "squares 2" do
              sleep 0.1
              expect(2 * 2).to eq(4)
            end
          end
        end
    """,
}


@dataclass(frozen=True)
class Suite:
    """A generated suite and the testcases of one plain serial run of it."""

    framework: str
    root: Path
    paths: tuple[str, ...]
    serial: frozenset[Testcase]


# --- helpers: summaries, run logs, Redis keys, errors (the rest: tests/support/)


def error_messages(junit_path: Path) -> list[str]:
    root = ET.parse(junit_path).getroot()
    return [error.get("message", "") for error in root.iter("error")]


def summary_counts(stdout: str) -> tuple[int, int, int]:
    """(passed, failed, skipped) from the summary's last line ("N passed, M failed...")."""
    lines = [line for line in stdout.splitlines() if SUMMARY_LAST_LINE.match(line)]
    assert lines, stdout
    match = SUMMARY_LAST_LINE.match(lines[-1])
    assert match is not None
    return int(match[1]), int(match[2]), int(match[3] or 0)


def expected_counts(cases: frozenset[Testcase]) -> tuple[int, int, int]:
    outcomes = [outcome for _, _, outcome in cases]
    failed = outcomes.count("failed") + outcomes.count("error")
    return outcomes.count("passed"), failed, outcomes.count("skipped")


def shard_errors(stdout: str) -> float:
    """Total |predicted - actual| seconds over the shards listed in the summary."""
    pairs = [(float(p), float(a)) for p, a in SHARD_LINE.findall(stdout)]
    assert pairs, stdout
    return sum(abs(actual - predicted) for predicted, actual in pairs)


def run_ids(suite_root: Path) -> list[str]:
    """The ids of the runs made in a suite (each has its own log directory)."""
    return [path.name for path in (suite_root / ".shardrun" / "logs").iterdir()]


def keys_without_ttl(url: str, run_id: str) -> list[str]:
    """Keys naming the run that would stay in a shared Redis forever."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"*{run_id}*"))
        return [key.decode() for key in keys if client.ttl(key) == NO_TTL]
    finally:
        client.close()


def assert_one_line_error(completed: subprocess.CompletedProcess[str], exit_code: int) -> str:
    """The CLI's error contract: the exit code, one line on stderr, no traceback."""
    lines = completed.stderr.strip().splitlines()
    assert completed.returncode == exit_code, completed.stdout + completed.stderr
    assert len(lines) == 1, completed.stderr
    assert "Traceback" not in completed.stdout + completed.stderr
    return lines[0]


# --- fixtures


@pytest.fixture(scope="module")
def pytest_suite(tmp_path_factory: pytest.TempPathFactory) -> Suite:
    root = write_pytest_suite(tmp_path_factory.mktemp("pytest-suite"), PYTEST_FILES)
    serial = serial_testcases("pytest", root, root.parent / "pytest-serial.xml", ["tests"])
    return Suite("pytest", root, ("tests",), serial)


@pytest.fixture(scope="module")
def rspec_suite(tmp_path_factory: pytest.TempPathFactory) -> Suite:
    root = tmp_path_factory.mktemp("rspec-suite")
    write_files(root, {".rspec": RSPEC_DOTFILE, **RSPEC_FILES})
    serial = serial_testcases("rspec", root, root.parent / "rspec-serial.xml", ["spec"])
    return Suite("rspec", root, ("spec",), serial)


@pytest.fixture(params=[pytest.param("rspec", marks=pytest.mark.ruby), "pytest"])
def suite(request: pytest.FixtureRequest) -> Suite:
    if request.param == "rspec":
        request.getfixturevalue("require_ruby")
    chosen: Suite = request.getfixturevalue(f"{request.param}_suite")
    return chosen


# --- 1, 2: the merged report is the serial run's, and failures are counted


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_merged_report_has_the_serial_runs_testcases(
    suite: Suite, workers: int, tmp_path: Path
) -> None:
    # The serial run itself must show what the comparison is about.
    outcomes = {outcome for _, _, outcome in suite.serial}
    assert {"passed", "failed", "skipped"} <= outcomes
    completed = shardrun(suite.root, *suite.paths, "--workers", str(workers),
                         *run_options(tmp_path))
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert junit_testcases(tmp_path / "run.xml") == suite.serial
    assert summary_counts(completed.stdout) == expected_counts(suite.serial)


def test_failures_and_errors_are_counted_apart(pytest_suite: Suite, tmp_path: Path) -> None:
    completed = shardrun(pytest_suite.root, "tests", "--workers", "2", *run_options(tmp_path))
    assert completed.returncode == 1, completed.stdout + completed.stderr
    outcomes = [outcome for _, _, outcome in pytest_suite.serial]
    assert (outcomes.count("failed"), outcomes.count("error")) == (1, 1)
    lines = completed.stdout.splitlines()
    # Each failure says which it is; the one count (the last line) counts errors as failed.
    labels = [line.split()[0] for line in lines if line.startswith(("  FAILED ", "  ERROR "))]
    assert sorted(labels) == ["ERROR", "FAILED"], completed.stdout
    assert summary_counts(completed.stdout) == (6, 2, 1)
    root = ET.parse(tmp_path / "run.xml").getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("9", "1", "1")


def test_summary_gives_the_runs_time_and_the_tests_apart(
    pytest_suite: Suite, tmp_path: Path
) -> None:
    # "in X s" is how long the run took, as rspec and pytest mean it; the tests' own
    # seconds, summed over the workers, are named apart.
    started = time.monotonic()
    completed = shardrun(pytest_suite.root, "tests", "--workers", "2", *run_options(tmp_path))
    stopwatch = time.monotonic() - started
    assert completed.returncode == 1, completed.stdout + completed.stderr
    match = COUNTS_LINE.search(completed.stdout)
    assert match is not None, completed.stdout
    wall, test_time = float(match["wall"]), float(match["tests"])
    root = ET.parse(tmp_path / "run.xml").getroot()
    junit_time = sum(float(case.get("time") or 0) for case in root.iter("testcase"))
    assert test_time == pytest.approx(junit_time, abs=0.06)
    longest = max(float(case.get("time") or 0) for case in root.iter("testcase"))
    assert longest <= wall + 0.05 and wall <= stopwatch, (wall, stopwatch)


# --- 3: a runner that crashes or writes nothing


CRASH_SCRIPTS = {
    "segfault": ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n",
                 f"never ran: killed by signal {int(signal.SIGSEGV)} (SIGSEGV)"),
    "no-junit": ("import sys\nsys.exit(0)\n", "never ran: no JUnit written"),
}


@pytest.mark.parametrize("kind", sorted(CRASH_SCRIPTS))
def test_crashed_runner_becomes_error_testcases(kind: str, tmp_path: Path) -> None:
    script, reason = CRASH_SCRIPTS[kind]
    (tmp_path / "crash.py").write_text(script, encoding="utf-8")
    files = {f"tests/test_{name}.py": "def test_x():\n    pass\n" for name in ("a", "b", "c")}
    root = write_pytest_suite(tmp_path / "suite", files)
    template = f"{sys.executable} {tmp_path / 'crash.py'} {{files}} --junit {{junit}}"
    completed = shardrun(root, "tests", "--workers", "2", "--command", template,
                         *run_options(tmp_path))
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert junit_testcases(tmp_path / "run.xml") == {(unit, unit, "error") for unit in files}
    assert error_messages(tmp_path / "run.xml") == [reason] * len(files)
    assert summary_counts(completed.stdout) == (0, len(files), 0)


# --- 4: a hung test is killed at the timeout, with its children

HANGING_TEST = """
    import os
    import subprocess
    import time
    from pathlib import Path

    def test_hangs():
        child = subprocess.Popen(["sleep", "600"])
        Path({pids!r}).write_text(f"{{os.getpid()}} {{child.pid}}")
        time.sleep(600)
"""


def test_hung_test_is_killed_at_the_timeout(tmp_path: Path, evidence: Path) -> None:
    pid_file = evidence / "pids"
    root = write_pytest_suite(
        tmp_path / "suite", {"tests/test_hang.py": HANGING_TEST.format(pids=str(pid_file))}
    )
    started = time.monotonic()
    completed = shardrun(root, "tests", "--workers", "1", "--timeout", "2",
                         *run_options(tmp_path))
    elapsed = time.monotonic() - started
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert junit_testcases(tmp_path / "run.xml") == {("tests.test_hang", "test_hangs", "error")}
    [message] = error_messages(tmp_path / "run.xml")
    assert message == "interrupted: killed after the batch timeout (--timeout 2 s)", message
    assert elapsed < 60, f"the 2 s timeout took {elapsed:.1f} s to act"
    pids = [int(pid) for pid in pid_file.read_text().split()]
    assert len(pids) == 2
    assert [pid for pid in pids if is_alive(pid)] == []


# --- 5: two runs on one Redis at once


def test_concurrent_runs_on_one_redis_do_not_mix(redis_url: str, tmp_path: Path) -> None:
    suites = {}
    for name in ("left", "right"):
        files = {
            f"tests/test_{name}_{index}.py": f"""
                import time

                def test_{name}_{index}_first():
                    time.sleep(0.2)

                def test_{name}_{index}_second():
                    time.sleep(0.1)
            """
            for index in range(3)
        }
        suites[name] = write_pytest_suite(tmp_path / name, files)
    processes = {
        name: subprocess.Popen(
            shardrun_argv("tests", "--workers", "2", "--redis-url", redis_url,
                          *run_options(tmp_path, name)),
            cwd=root, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for name, root in suites.items()
    }
    outputs = {}
    for name, process in processes.items():
        with process:
            outputs[name] = process.communicate(timeout=RUN_TIMEOUT_SECONDS)
    for name, process in processes.items():
        assert process.returncode == 0, "".join(outputs[name])
        serial = serial_testcases("pytest", suites[name], tmp_path / f"{name}-s.xml", ["tests"])
        assert junit_testcases(tmp_path / f"{name}.xml") == serial
        assert len(serial) == 6
        [run_id] = run_ids(suites[name])
        assert keys_without_ttl(redis_url, run_id) == []


# --- 6: Redis unreachable


def test_unreachable_redis_is_an_infrastructure_error(
    pytest_suite: Suite, tmp_path: Path
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    completed = shardrun(pytest_suite.root, "tests", "--redis-url", url, *run_options(tmp_path))
    elapsed = time.monotonic() - started
    line = assert_one_line_error(completed, 3)
    assert "Redis" in line
    assert "--redis-url" in line
    assert elapsed < UNREACHABLE_REDIS_BUDGET_SECONDS


# --- 7: per-worker environment

ENVIRONMENT_TEST = """
    import json
    import os
    import tempfile
    import time
    from pathlib import Path

    EVIDENCE = Path({evidence!r})
    WORKERS = 3
    BARRIER_SECONDS = 60

    def test_records_environment():
        seen = {{name: os.environ.get(name) for name in
                ("TEST_ENV_NUMBER", "SHARDRUN_WORKER_INDEX", "TMPDIR")}}
        seen["gettempdir"] = tempfile.gettempdir()
        (EVIDENCE / (os.path.basename(__file__) + ".json")).write_text(json.dumps(seen))
        # A rendezvous: all three shards are running at once, so on three workers.
        deadline = time.monotonic() + BARRIER_SECONDS
        while len(list(EVIDENCE.glob("*.json"))) < WORKERS and time.monotonic() < deadline:
            time.sleep(0.05)
"""


def test_each_worker_has_its_own_environment(tmp_path: Path, evidence: Path) -> None:
    body = ENVIRONMENT_TEST.format(evidence=str(evidence))
    files = {f"tests/test_env_{index}.py": body for index in range(3)}
    root = write_pytest_suite(tmp_path / "suite", files)
    scratch = tmp_path / "scratch"  # where the workers make their own temp dirs
    scratch.mkdir()
    completed = shardrun(root, "tests", "--workers", "3", *run_options(tmp_path),
                         env=clean_env(TMPDIR=str(scratch)))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    seen = [json.loads(path.read_text()) for path in sorted(evidence.glob("*.json"))]
    assert len(seen) == 3
    assert {entry["TEST_ENV_NUMBER"] for entry in seen} == {"", "2", "3"}
    assert {entry["SHARDRUN_WORKER_INDEX"] for entry in seen} == {"1", "2", "3"}
    tmpdirs = {entry["TMPDIR"] for entry in seen}
    assert len(tmpdirs) == 3
    assert tmpdirs == {entry["gettempdir"] for entry in seen}
    assert all(Path(path).is_relative_to(scratch) for path in tmpdirs)
    assert list(scratch.iterdir()) == []  # the workers removed theirs when they stopped


# --- 8: learning from the previous run

LEARNING_FILES = {
    "tests/test_slow.py": "import time\n\ndef test_slow():\n    time.sleep(1.0)\n",
    "tests/test_medium.py": "import time\n\ndef test_medium():\n    time.sleep(0.6)\n",
}


def test_second_run_predicts_better(tmp_path: Path) -> None:
    root = write_pytest_suite(tmp_path / "suite", LEARNING_FILES)
    options = run_options(tmp_path)
    first = shardrun(root, "tests", "--workers", "2", *options)
    assert first.returncode == 0, first.stdout + first.stderr
    history = json.loads((tmp_path / "run-timings.json").read_text())
    assert set(history["files"]) == set(LEARNING_FILES)
    assert history["runs"][-1]["timed"] is False  # the dashboard shows no prediction for it
    # Without timings the plan balanced file sizes: nothing it could call a prediction.
    assert "no timings yet" in first.stdout and not SHARD_LINE.search(first.stdout), first.stdout
    second = shardrun(root, "tests", "--workers", "2", *options)
    assert second.returncode == 0, second.stdout + second.stderr
    actual = sum(float(seconds) for _, seconds in SHARD_LINE.findall(second.stdout))
    assert shard_errors(second.stdout) < actual / 2, second.stdout
    history = json.loads((tmp_path / "run-timings.json").read_text())
    assert history["runs"][-1]["timed"] is True


def test_a_malformed_run_record_in_the_history_is_skipped_with_a_warning(
    pytest_suite: Suite, tmp_path: Path,
) -> None:
    """Teams commit and edit the history: a record with a string where a number goes
    must neither stop the run nor be lost; the run says so and adds its own record."""
    bad = {"version": 2, "run_id": "edited by hand", "boot_seconds_per_batch": "fast"}
    timings = tmp_path / "run-timings.json"
    timings.write_text(json.dumps({"version": 1, "files": {}, "runs": [bad]}))
    completed = shardrun(pytest_suite.root, "tests", "--workers", "2", *run_options(tmp_path))
    assert completed.returncode == 1, completed.stdout + completed.stderr  # the suite fails
    assert (f"shardrun: warning: {timings}: runs[0]: no \"started_at\"; that run record is "
            "skipped (left in the file as it is)") in completed.stderr, completed.stderr
    first, new = json.loads(timings.read_text())["runs"]
    assert first == bad
    assert new["version"] == 2 and new["tests"] > 0


# --- 9: runner arguments after `--`


def test_runner_args_reach_the_runner(pytest_suite: Suite, tmp_path: Path) -> None:
    completed = shardrun(pytest_suite.root, "tests", "--workers", "2",
                         *run_options(tmp_path), "--", "-k", "adds or multiplies")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    expected = serial_testcases("pytest", pytest_suite.root, tmp_path / "serial.xml",
                                ["tests", "-k", "adds or multiplies"])
    assert {name for _, name, _ in expected} == {"test_adds", "test_multiplies"}
    assert junit_testcases(tmp_path / "run.xml") == expected


# --- 10: usage errors


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        pytest.param(("tests", "--workers", "0"), "--workers", id="zero-workers"),
        pytest.param(("no/such/dir",), "no/such/dir", id="missing-path"),
        pytest.param(("tests", "--redis-url", "http://127.0.0.1:6379"), "--redis-url",
                     id="bad-redis-scheme"),
    ],
)
def test_usage_errors_are_one_line_exit_2(
    pytest_suite: Suite, tmp_path: Path, args: tuple[str, ...], mentions: str
) -> None:
    completed = shardrun(pytest_suite.root, *args, *run_options(tmp_path))
    line = assert_one_line_error(completed, 2)
    assert mentions in line
    assert not (tmp_path / "run.xml").exists()
