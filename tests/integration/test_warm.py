"""Runner processes (shardrun/work/warm.py) with real rspec and pytest: fork and reuse modes.

Each suite's boot (spec_helper.rb, conftest.py) appends its pid to BOOT_LOG, so a test
can count how often the suite booted. Batches are run the way a worker runs them: the
runner's batch arguments sent to one RunnerProcess, which reports each test as an event.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.files import write_files, write_pytest_suite
from support.runs import clean_env, is_alive, run_options, shardrun
from support.waiting import wait_for

from shardrun.runners import get_runner, worker_env
from shardrun.runners.base import Runner
from shardrun.work.accounting import reconcile
from shardrun.work.warm import BatchRun, RunnerPool, RunnerProcess

BATCH_TIMEOUT = 120.0  # generous: only the hang test is meant to reach its timeout

RSPEC_FILES = {
    ".rspec": "--require spec_helper\n",
    "spec/spec_helper.rb": """
        File.open(ENV.fetch("BOOT_LOG"), "a") { |f| f.puts(Process.pid) }
    """,
    "spec/pass_spec.rb": """
        RSpec.describe "pass" do
          it "adds" do
            expect(1 + 1).to eq(2)
          end
          it "subtracts" do
            expect(2 - 1).to eq(1)
          end
        end
    """,
    "spec/fail_spec.rb": """
        RSpec.describe "fail" do
          it "fails first" do
            expect(1).to eq(2)
          end
          it "would pass" do
            expect(1).to eq(1)
          end
        end
    """,
    "spec/hang_spec.rb": """
        RSpec.describe "hang" do
          it "hangs" do
            sleep 1000
          end
        end
    """,
    "spec/leak_spec.rb": """
        RSpec.describe "leak" do
          it "leaves a process behind" do
            pid = Process.spawn("sleep", "1000", pgroup: true)
            Process.detach(pid)
            File.write(ENV.fetch("LEAK_PID"), pid.to_s)
          end
        end
    """,
    "spec/chdir_spec.rb": """
        RSpec.describe "chdir" do
          it "leaves the cwd elsewhere" do
            Dir.chdir("/")
          end
        end
    """,
    # RSpec keeps every batch's example groups alive unless the runner drops the
    # references RSpec.clear_examples leaves (rspec-core #2767, knapsack_pro-ruby #200).
    "spec/retained_spec.rb": """
        RSpec.describe "retained" do
          shared_examples "a shared group" do
            it("runs") { expect(1).to eq(1) }
          end
          it_behaves_like "a shared group"
          it "sees no example group left from an earlier batch" do
            GC.start
            groups = ObjectSpace.each_object(Class).count { |c| c < RSpec::Core::ExampleGroup }
            expect(groups).to be < 10
          end
          it "sees no file left open by an earlier batch" do
            expect(Dir.children("/proc/self/fd").size).to be < 40
          end
        end
    """,
    "spec/crash_spec.rb": """
        RSpec.describe "crash" do
          it "kills its own process" do
            Process.kill(:KILL, Process.pid)
          end
        end
    """,
    # What one batch leaves in the process: a global, a constant, a configuration change.
    "spec/pollute_spec.rb": """
        $polluted = true
        POLLUTED = true
        RSpec.configure { |config| config.add_setting :polluted_by_a_batch }
        RSpec.describe "pollute" do
          it "leaves state behind" do
            expect(1).to eq(1)
          end
        end
    """,
    "spec/clean_spec.rb": """
        RSpec.describe "clean" do
          it "sees no global of an earlier batch" do
            expect($polluted).to be_nil
          end
          it "sees no constant of an earlier batch" do
            expect(defined?(POLLUTED)).to be_nil
          end
          it "sees no configuration of an earlier batch" do
            expect(RSpec.configuration).not_to respond_to(:polluted_by_a_batch)
          end
        end
    """,
}

PYTEST_FILES = {
    # pytest imports conftest.py again in every session (it drops a top-level "conftest"
    # from sys.modules first), but what conftest imports stays in sys.modules: the boot a
    # warm runner saves is the imports (an app, a framework), as here.
    "tests/conftest.py": """
        import suite_boot  # noqa: F401
    """,
    "tests/suite_boot.py": """
        import os
        with open(os.environ["BOOT_LOG"], "a") as log:
            log.write(f"{os.getpid()}\\n")
        booted = True
    """,
    "tests/test_pass.py": """
        def test_adds():
            assert 1 + 1 == 2

        def test_subtracts():
            assert 2 - 1 == 1
    """,
    "tests/test_fail.py": """
        def test_fails_first():
            assert 1 == 2

        def test_would_pass():
            assert 1 == 1
    """,
    "tests/test_retained.py": """
        import gc
        import os

        import _pytest.main

        def test_runs():
            assert True

        def test_sees_no_session_left_from_an_earlier_batch():
            gc.collect()
            sessions = [o for o in gc.get_objects() if isinstance(o, _pytest.main.Session)]
            assert len(sessions) < 3

        def test_sees_no_file_left_open_by_an_earlier_batch():
            assert len(os.listdir("/proc/self/fd")) < 40
    """,
    "tests/test_hang.py": """
        import time

        def test_hangs():
            time.sleep(1000)
    """,
    "tests/test_leak.py": """
        import os
        import subprocess

        def test_leaves_a_process_behind():
            child = subprocess.Popen(["sleep", "1000"], start_new_session=True)
            with open(os.environ["LEAK_PID"], "w") as out:
                out.write(str(child.pid))
    """,
    "tests/test_chdir.py": """
        import os

        def test_leaves_the_cwd_elsewhere():
            os.chdir("/")
    """,
    "tests/test_crash.py": """
        import os
        import signal

        def test_kills_its_own_process():
            os.kill(os.getpid(), signal.SIGKILL)
    """,
    "tests/test_pollute.py": """
        import suite_boot

        def test_leaves_state_behind():
            suite_boot.polluted = True
    """,
    "tests/test_clean.py": """
        import suite_boot

        def test_sees_no_global_of_an_earlier_batch():
            assert not getattr(suite_boot, "polluted", False)

        def test_sees_the_boot_unchanged():
            assert suite_boot.booted
    """,
}


@dataclass(frozen=True)
class Suite:
    framework: str
    root: Path
    evidence: Path
    fork: bool

    def unit(self, name: str) -> str:
        return f"spec/{name}_spec.rb" if self.framework == "rspec" else f"tests/test_{name}.py"

    @property
    def runner(self) -> Runner:
        return get_runner(self.framework, self.root)

    def boots(self) -> list[int]:
        log = self.evidence / "boot.log"
        return [int(line) for line in log.read_text().split()] if log.exists() else []

    def env(self) -> dict[str, str]:
        extra = {"BOOT_LOG": str(self.evidence / "boot.log"),
                 "LEAK_PID": str(self.evidence / "leak.pid")}
        return worker_env(clean_env(**extra), 1, self.evidence)

    @contextlib.contextmanager
    def started(self) -> Iterator[RunnerProcess]:
        """A runner for one test, stopped whatever the test asserts."""
        runner = self.start()
        try:
            yield runner
        finally:
            runner.stop()

    def start(self, name: str = "first") -> RunnerProcess:
        argv = self.runner.server_argv()
        assert argv is not None
        return RunnerProcess("key", argv, self.root, self.env(), self.evidence / f"{name}.log")

    def run(self, runner: RunnerProcess, name: str, *extra: str,
            timeout: float = BATCH_TIMEOUT) -> tuple[BatchRun, list[tuple[str, str]], Path]:
        log = self.evidence / f"batch-{name}-{time.monotonic_ns()}.log"
        units = [self.unit(name)]
        args = self.runner.batch_arguments(units, extra)
        batch = runner.run(args, log, fork=self.fork, timeout_seconds=timeout, units=units)
        return batch, finished(batch), log


def finished(batch: BatchRun) -> list[tuple[str, str]]:
    """(name, outcome) of each test the batch reported finished, sorted."""
    names = {e["id"]: e.get("name", e["id"]) for e in batch.events if e.get("e") == "start"}
    return sorted((names.get(e["id"], e["id"]), e["outcome"])
                  for e in batch.events if e.get("e") == "finish")


@pytest.fixture(params=["rspec", "pytest"])
def framework(request: pytest.FixtureRequest) -> str:
    if request.param == "rspec":
        request.getfixturevalue("require_ruby")
    return str(request.param)


def make_suite(framework: str, tmp_path: Path, *, fork: bool) -> Suite:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    if framework == "rspec":
        root = write_files(tmp_path / "suite", RSPEC_FILES)
    else:
        root = write_pytest_suite(tmp_path / "suite", PYTEST_FILES)
    return Suite(framework, root, evidence, fork)


@pytest.fixture(params=[True, False], ids=["fork", "reuse"])
def suite(request: pytest.FixtureRequest, framework: str, tmp_path: Path) -> Suite:
    return make_suite(framework, tmp_path, fork=request.param)


@pytest.fixture
def forking(framework: str, tmp_path: Path) -> Suite:
    return make_suite(framework, tmp_path, fork=True)


@pytest.fixture
def reusing(framework: str, tmp_path: Path) -> Suite:
    return make_suite(framework, tmp_path, fork=False)


def names(cases: list[tuple[str, str]]) -> list[str]:
    return [name.rsplit(" ", 1)[-1].removeprefix("test_") for name, _ in cases]


def test_batches_share_one_boot_and_each_reports_only_its_own_tests(suite: Suite) -> None:
    with suite.started() as runner:
        runner.prewarm((), suite.evidence / "prewarm.log")
        first, first_cases, _ = suite.run(runner, "pass")
        second, second_cases, second_log = suite.run(runner, "fail")
        third, third_cases, _ = suite.run(runner, "pass")
        codes = [batch.outcome.exit_code for batch in (first, second, third)]
        assert codes == [0, 1, 0]
        assert names(first_cases) == names(third_cases) == ["adds", "subtracts"]
        assert [outcome for _, outcome in second_cases] == ["failed", "passed"]
        assert "first" in second_log.read_text()  # the failure went to this batch's log
        assert "first" in second.outcome.output_tail
        assert suite.boots() == [runner.pid]  # the suite booted once, in the runner
        assert runner.alive()
    assert not is_alive(runner.pid)


def test_each_test_is_reported_as_it_starts_and_finishes(suite: Suite) -> None:
    with suite.started() as runner:
        batch, _, _ = suite.run(runner, "fail")
    kinds = [event["e"] for event in batch.events if event["e"] != "note"]
    # RSpec also times the file's top-level group, hooks included (report/shared_time.py).
    group = ["file_time"] if suite.framework == "rspec" else []
    assert kinds == ["collected", "start", "finish", "start", "finish", *group, "done"]
    for event in batch.events:
        if event["e"] == "file_time":
            assert event["file"] == suite.unit("fail") and event["seconds"] >= 0
    collected = batch.events[0]["tests"]
    starts = [event["id"] for event in batch.events if event["e"] == "start"]
    assert collected == starts and all(test.startswith(suite.unit("fail")) for test in starts)
    failure = next(e for e in batch.events if e["e"] == "finish" and e["outcome"] == "failed")
    assert failure["message"] and failure["details"]


def test_the_projects_fail_fast_does_not_drop_a_batchs_tests(suite: Suite) -> None:
    flag = "--exitfirst" if suite.framework == "pytest" else "--fail-fast"
    with suite.started() as runner:
        failed, failed_cases, _ = suite.run(runner, "fail", flag)
        assert [outcome for _, outcome in failed_cases] == ["failed", "passed"]
        assert any(e["e"] == "note" for e in failed.events)
        passed, passed_cases, _ = suite.run(runner, "pass")
        assert passed.outcome.exit_code == 0 and len(passed_cases) == 2


def test_a_timeout_in_a_fork_kills_only_the_child(forking: Suite) -> None:
    with forking.started() as runner:
        runner.prewarm((), forking.evidence / "prewarm.log")
        hung, cases, _ = forking.run(runner, "hang", timeout=3.0)
        assert hung.outcome.timed_out and cases == []
        assert [e["e"] for e in hung.events][:2] == ["collected", "start"]
        assert runner.alive()  # the booted parent stays for the next batch
        batch, cases, _ = forking.run(runner, "pass")
        assert batch.outcome.exit_code == 0 and len(cases) == 2
        assert forking.boots() == [runner.pid]


def test_a_timeout_without_a_fork_kills_the_runner(reusing: Suite) -> None:
    pool = RunnerPool()
    runner, reused = pool.get("key", reusing.start)
    assert not reused
    try:
        hung, _, _ = reusing.run(runner, "hang", timeout=3.0)
        assert hung.outcome.timed_out
        assert not runner.alive() and not is_alive(runner.pid)
        pool.discard_dead()
        fresh, reused = pool.get("key", lambda: reusing.start("second"))
        assert fresh.pid != runner.pid and not reused
        batch, cases, _ = reusing.run(fresh, "pass")
        assert batch.outcome.exit_code == 0 and len(cases) == 2
        assert pool.get("key", reusing.start) == (fresh, True)
    finally:
        pool.close()


def test_what_a_batch_leaves_running_is_killed_and_the_runner_stays(suite: Suite) -> None:
    with suite.started() as runner:
        runner.prewarm((), suite.evidence / "prewarm.log")
        batch, _, _ = suite.run(runner, "leak")
        assert batch.outcome.exit_code == 0
        leaked = int((suite.evidence / "leak.pid").read_text())
        assert not is_alive(leaked)
        assert runner.alive()
        assert suite.run(runner, "pass")[0].outcome.exit_code == 0
        assert len(suite.boots()) == 1


def test_a_batch_that_changes_the_cwd_does_not_lose_the_next_batchs_files(
    suite: Suite,
) -> None:
    with suite.started() as runner:
        assert suite.run(runner, "chdir")[0].outcome.exit_code == 0
        batch, cases, _ = suite.run(runner, "pass")
        assert batch.outcome.exit_code == 0 and len(cases) == 2


def test_a_test_that_kills_its_process_takes_only_a_fork_with_it(suite: Suite) -> None:
    with suite.started() as runner:
        batch, cases, _ = suite.run(runner, "crash")
        assert batch.outcome.signal == 9 and batch.outcome.exit_code is None
        assert not batch.outcome.timed_out and cases == []
        assert [e["e"] for e in batch.events] == ["collected", "start"]
        assert runner.alive() is suite.fork


def test_a_fork_starts_every_batch_from_the_boot_and_reuse_does_not(suite: Suite) -> None:
    """Reloading spec files in one process changed outcomes on a real suite: a batch in
    a fork of the booted runner sees nothing an earlier batch left behind."""
    with suite.started() as runner:
        runner.prewarm((), suite.evidence / "prewarm.log")
        assert suite.run(runner, "pollute")[0].outcome.exit_code == 0
        _, cases, log = suite.run(runner, "clean")
    outcomes = [outcome for _, outcome in cases]
    if suite.fork:
        assert outcomes and set(outcomes) == {"passed"}, log.read_text()
    else:
        assert "failed" in outcomes


def test_a_runner_keeps_nothing_of_earlier_batches(suite: Suite) -> None:
    with suite.started() as runner:
        for _ in range(30):
            batch, cases, log = suite.run(runner, "retained")
        assert batch.outcome.exit_code == 0, log.read_text()
        assert [outcome for _, outcome in cases] == ["passed"] * 3


def test_a_prewarmed_runner_boots_the_suite_before_its_first_batch(suite: Suite) -> None:
    with suite.started() as runner:
        runner.prewarm((), suite.evidence / "prewarm.log")
        wait_for(lambda: suite.boots() == [runner.pid], "the boot")  # no batch was sent
        batch, cases, log = suite.run(runner, "fail")
        # The batch's own end, not the prewarm's (which came first, and was exit 0 or 5).
        assert batch.outcome.exit_code == 1, log.read_text()
        assert [result for _, result in cases] == ["failed", "passed"]
        assert suite.boots() == [runner.pid]
        assert suite.run(runner, "pass")[0].outcome.exit_code == 0


BROKEN_BOOT = {
    "rspec": {".rspec": "--require spec_helper\n",
              "spec/spec_helper.rb": 'raise "no database at boot"\n',
              "spec/pass_spec.rb": RSPEC_FILES["spec/pass_spec.rb"]},
    "pytest": {"tests/conftest.py": "raise RuntimeError('no database at boot')\n",
               "tests/test_pass.py": PYTEST_FILES["tests/test_pass.py"]},
}


def test_a_boot_that_fails_in_the_prewarm_fails_the_first_batch_with_its_error(
    suite: Suite, tmp_path: Path
) -> None:
    files = BROKEN_BOOT[suite.framework]
    writer = write_files if suite.framework == "rspec" else write_pytest_suite
    broken = Suite(suite.framework, writer(tmp_path / "broken", files), suite.evidence,
                   suite.fork)
    with broken.started() as runner:
        prewarm_log = suite.evidence / "prewarm.log"
        runner.prewarm((), prewarm_log)
        batch, cases, log = broken.run(runner, "pass")
        assert batch.outcome.exit_code not in (0, None) and cases == []
        settled = reconcile([broken.unit("pass")], batch.events, batch.outcome)
        assert not any(test.outcome == "passed" for test in settled.tests)
        assert settled.empty_units == ()  # never "ran with zero tests"
        assert "no database at boot" in log.read_text()  # where the batch's report looks
        assert "no database at boot" in prewarm_log.read_text()
        assert runner.alive()


# What a spec file finds loaded before its first `describe` (one line per batch). RSpec
# requires the mock and expectation libraries there; a forked batch would require them
# again every time, so the runner loads what its first batch used (rspec_server.rb).
FRAMEWORKS_SPEC = """
    {prelude}
    LOADED_BEFORE_DESCRIBE = [defined?(RSpec::Mocks), defined?(RSpec::Expectations)].map(&:to_s)
    RSpec.describe "frameworks" do
      it "finds what the batches before it loaded" do
        File.write(ENV.fetch("LEAK_PID"), LOADED_BEFORE_DESCRIBE.join(",") + "\\n", mode: "a")
      end
    end
"""
NO_MOCKS = "RSpec.configure { |config| config.mock_with :nothing }"


@pytest.mark.parametrize(("helper", "prelude", "loaded"), [
    # the defaults: the second batch finds rspec-mocks and rspec-expectations loaded
    ("", "", [",", "constant,constant"]),
    # spec_helper chose no mocks: never rspec-mocks
    (NO_MOCKS, "", [",", ",constant"]),
    # a helper the spec file requires chose no mocks (as `require "rails_helper"` can):
    # a serial run never loads rspec-mocks, which would give every object `stub`
    ("", NO_MOCKS, [",", ",constant"]),
], ids=["defaults", "chosen-by-spec-helper", "chosen-by-a-spec-file"])
def test_an_rspec_runner_loads_the_frameworks_its_batches_used_once(
    require_ruby: None, tmp_path: Path, helper: str, prelude: str, loaded: list[str]
) -> None:
    files = {".rspec": "--require spec_helper\n", "spec/spec_helper.rb": helper,
             "spec/frameworks_spec.rb": FRAMEWORKS_SPEC.format(prelude=prelude)}
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    suite = Suite("rspec", write_files(tmp_path / "suite", files), evidence, fork=True)
    with suite.started() as runner:
        runner.prewarm((), evidence / "prewarm.log")
        for _ in loaded:
            batch, cases, log = suite.run(runner, "frameworks")
            assert batch.outcome.exit_code == 0 and cases == [
                ("frameworks finds what the batches before it loaded", "passed")], log.read_text()
    assert (evidence / "leak.pid").read_text().splitlines() == loaded


def test_another_key_stops_the_old_runner(suite: Suite) -> None:
    pool = RunnerPool()
    old, _ = pool.get("run-1", suite.start)
    try:
        new, reused = pool.get("run-2", lambda: suite.start("second"))
        assert not reused and new is not old
        wait_for(lambda: not is_alive(old.pid), "the old runner to exit", timeout=5)
    finally:
        pool.close()


# --- through `shardrun run`: a worker keeps its runner between batches


def run_record(tmp_path: Path) -> dict:
    history = json.loads((tmp_path / "run-timings.json").read_text())
    return history["runs"][-1]


def suite_with_files(tmp_path: Path, count: int) -> Path:
    files = {
        f"tests/test_file{index:02d}.py": f"def test_{index}():\n    assert True\n"
        for index in range(count)
    }
    files["tests/conftest.py"] = PYTEST_FILES["tests/conftest.py"]
    files["tests/suite_boot.py"] = PYTEST_FILES["tests/suite_boot.py"]
    return write_pytest_suite(tmp_path / "suite", files)


@pytest.mark.parametrize("mode", ["fork", "reuse", "fresh"])
def test_run_prewarms_and_boots_once_per_worker_unless_asked_for_a_process_per_batch(
    tmp_path: Path, mode: str
) -> None:
    root = suite_with_files(tmp_path, 12)
    boot_log = tmp_path / "boot.log"
    per_batch = mode == "fresh"
    flags = ["--runners", mode]
    completed = shardrun(root, "tests", "--workers", "2", *flags, *run_options(tmp_path),
                         env=clean_env(BOOT_LOG=str(boot_log)))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    batches = run_record(tmp_path)["batches"]
    assert len(batches) > 2  # no timings yet: size estimates give several rounds
    boots = boot_log.read_text().split()
    prewarm_logs = sorted((root / ".shardrun" / "logs").rglob("prewarm-worker-*.log"))
    if per_batch:
        assert len(boots) == len(batches) and not any(b["warm"] for b in batches)
        assert prewarm_logs == []
    else:  # each worker booted its runner's session, which collects each batch's files
        assert len(set(boots)) == len(boots) <= 2
        assert sum(1 for b in batches if b["warm"]) == len(batches) - len(boots)
        assert [path.name for path in prewarm_logs] == ["prewarm-worker-1.log",
                                                        "prewarm-worker-2.log"]
        assert all("pytest session booted" in path.read_text() for path in prewarm_logs)
        assert len(set(boots)) == len(boots) == 2
    assert os.path.exists(tmp_path / "run.xml")


def test_a_runner_above_runner_max_rss_is_restarted_for_the_next_batch(tmp_path: Path) -> None:
    # Every test keeps 8 MB in a module the runner imported once, as a leaking cache does.
    files = {
        f"tests/test_file{index:02d}.py":
            "import suite_boot\n\n"
            f"def test_{index}():\n    suite_boot.kept.append(b'x' * (8 << 20))\n"
        for index in range(12)
    }
    files["tests/conftest.py"] = PYTEST_FILES["tests/conftest.py"]
    files["tests/suite_boot.py"] = PYTEST_FILES["tests/suite_boot.py"].rstrip() + (
        "\n        kept = []\n")
    root = write_pytest_suite(tmp_path / "suite", files)
    boot_log = tmp_path / "boot.log"
    completed = shardrun(root, "tests", "--workers", "1", "--runners", "reuse",
                         "--runner-max-rss", "60",
                         *run_options(tmp_path), env=clean_env(BOOT_LOG=str(boot_log)))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    batches = run_record(tmp_path)["batches"]
    boots = boot_log.read_text().split()
    assert 1 < len(boots) <= len(batches)  # restarted, and only after a batch
    assert sum(1 for b in batches if b["warm"]) == len(batches) - len(boots)
    logs = [path.read_text() for path in (root / ".shardrun" / "logs").rglob("*.log")]
    restarts = [log for log in logs if "(--runner-max-rss 60)" in log]
    assert len(restarts) == len(boots) - 1 or len(restarts) == len(boots)  # the last may too
