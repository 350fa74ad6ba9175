"""Queue mode against what goes wrong in real life: real Redis, real workers, no mocks.

Workers SIGKILLed (their orphaned tests must not outlive them) or hung mid-batch, a
redis-server killed and restarted without persistence or gone for good, a flaky test, a
slow file split into examples across workers, hostile payloads, fail-fast, a checkout
at another commit. Every run is `python -m shardrun run` (or `shardrun worker`)
as a subprocess on a suite generated into tmp_path, and the checks are what a CI job
sees: the exit code, stderr, the summary and the merged JUnit, whose testcases must be
the serial run's, each exactly once, or the run must say (exit 3) what it cannot vouch for.

The helpers are test_run.py's, shared through tests/support/: inner pytest runs get
PYTEST_DISABLE_PLUGIN_AUTOLOAD=1, none of the outer run's PYTEST_*/SHARDRUN_* variables,
and a pytest.ini of their own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import psutil
import pytest
from support.files import write_files, write_pytest_suite
from support.requirements import missing
from support.runs import (
    RUN_TIMEOUT_SECONDS,
    Testcase,
    assert_each_once,
    clean_env,
    free_port,
    is_alive,
    junit_cases,
    run_options,
    serial_cases,
    shardrun,
    shardrun_argv,
)
from support.waiting import wait_for

from shardrun.errors import InfrastructureError
from shardrun.models import Batch, BatchResult
from shardrun.plan.timings import file_of_unit
from shardrun.queue import RunQueue, connect
from shardrun.run.forked import WORKER_PROCESS_NAME

# Bounds for waiting on something a run does (a file written by an inner test): they only
# turn a hang into a failure, a passing run needs a fraction of them.
# A short lease so a SIGKILLed worker's batch comes back within a couple of seconds.
SHORT_LEASE = ("--lease-seconds", "1.5")
KILL_LOOP_ITERATIONS = 10
# The issue asks for a restart "1-2 s later": Redis stays down on purpose for this long,
# longer than a lease, shorter than --redis-timeout.
REDIS_DOWN_SECONDS = 1.5
REDIS_TIMEOUT = ("--redis-timeout", "10")
# A run whose Redis is gone for good with --redis-timeout 2 ends in about that long, plus
# stopping the workers and writing the report; generous for a loaded CI machine.
REDIS_GONE_BUDGET_SECONDS = 30.0
WORKER_NAME = WORKER_PROCESS_NAME  # what psutil calls a local (forked) worker

# --- suites

# The inner test that gets its worker killed: it names the `shardrun worker` process
# running it (psutil parent chain) and itself in $KILL_EVIDENCE/victim.json, then goes
# on like the rest of a long batch would, orphaned once its worker is gone, until
# something kills it. The retry of its batch finds victim.json and passes at once; so
# does a serial run, which has no KILL_EVIDENCE.
KILL_TEST = f"""
    import json
    import os
    import time
    from pathlib import Path

    import psutil

    WORKER_NAME = {WORKER_NAME!r}
    ORPHAN_SECONDS = 30

    def test_first():
        time.sleep(0.1)

    def test_worker_is_killed_under_me():
        evidence = os.environ.get("KILL_EVIDENCE")
        if not evidence or Path(evidence, "victim.json").exists():
            return
        worker = next(process for process in psutil.Process().parents()
                      if process.name() == WORKER_NAME)
        victim = {{"pid": worker.pid, "test_pid": os.getpid(),
                   "index": os.environ["SHARDRUN_WORKER_INDEX"]}}
        partial = Path(evidence, "victim.partial")
        partial.write_text(json.dumps(victim))
        partial.rename(Path(evidence, "victim.json"))
        time.sleep(ORPHAN_SECONDS)

    def test_last():
        time.sleep(0.1)
"""

KILL_SUITE = {
    "tests/test_before.py": """
        import time

        def test_one():
            time.sleep(0.1)

        def test_two():
            time.sleep(0.1)
    """,
    "tests/test_kill.py": KILL_TEST,
    "tests/test_after.py": """
        import time

        def test_passes():
            time.sleep(0.1)

        def test_fails():
            time.sleep(0.1)
            assert 1 + 1 == 3, "the failing example"
    """,
    "tests/sub/test_more.py": """
        import pytest

        @pytest.mark.parametrize("n", [1, 2, 3])
        def test_squares(n):
            assert n * n == n ** 2
    """,
}

# The inner test whose worker hangs (SIGSTOP) mid-batch. The first attempt names its
# worker, the second (after the lease lapsed) says it started; both then wait until the
# outer test has resumed the hung worker, so both attempts deliver a result.
HANG_TEST = f"""
    import json
    import os
    import time
    from pathlib import Path

    import psutil

    WORKER_NAME = {WORKER_NAME!r}
    WAIT_SECONDS = 30

    def test_worker_hangs_under_me():
        evidence = os.environ.get("HANG_EVIDENCE")
        if not evidence:
            return
        victim = Path(evidence, "victim.json")
        if victim.exists():
            Path(evidence, "second-started").touch()
        else:
            worker = next(process for process in psutil.Process().parents()
                          if process.name() == WORKER_NAME)
            partial = Path(evidence, "victim.partial")
            partial.write_text(json.dumps({{"pid": worker.pid}}))
            partial.rename(victim)
        deadline = time.monotonic() + WAIT_SECONDS
        while not Path(evidence, "resumed").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
"""

HANG_SUITE = {
    **{name: text for name, text in KILL_SUITE.items() if name != "tests/test_kill.py"},
    "tests/test_hang.py": HANG_TEST,
}

# A long batch to kill Redis under: it says when it started, then takes a few seconds.
REDIS_RESTART_SUITE = {
    "tests/test_long.py": """
        import os
        import time
        from pathlib import Path

        def test_long():
            started = os.environ.get("LONG_STARTED")
            if started:
                Path(started).touch()
            time.sleep(3)
    """,
    **{
        f"tests/test_short_{index}.py": f"""
            import time

            def test_short_{index}_first():
                time.sleep(0.2)

            def test_short_{index}_second():
                time.sleep(0.2)
        """
        for index in range(4)
    },
}

FLAKY_SUITE = {
    "tests/test_flaky.py": """
        import os
        import subprocess
        import time
        from pathlib import Path

        def redis(*args):
            argv = ["redis-cli", "-u", os.environ["FLAKY_REDIS"], *args]
            return subprocess.run(argv, capture_output=True, text=True,
                                  check=True).stdout.split()

        def other_worker_waits_on_an_empty_queue():
            # This worker is busy with this test: an idle one is the other. With nothing
            # left on the queue it stays idle, blocked on it, until the retry comes.
            queued = sum(int(redis("LLEN", key)[0])
                         for key in redis("--scan", "--pattern", "rq:queue:shardrun:*"))
            states = [redis("HGET", worker, "state") for worker in redis("SMEMBERS", "rq:workers")]
            return queued == 0 and ["idle"] in states

        def test_fails_first_time():
            marker = Path(os.environ["FLAKY_MARKER"])
            if not marker.exists():
                marker.touch()
                deadline = time.monotonic() + 60
                while not other_worker_waits_on_an_empty_queue():
                    assert time.monotonic() < deadline, "the other worker never went idle"
                    time.sleep(0.05)
                raise AssertionError("fails until the marker exists")

        def test_steady_neighbour():
            pass
    """,
    "tests/test_steady.py": """
        def test_steady():
            assert True
    """,
}

BIG_FILE_EXAMPLES = 200
BIG_FILE_SLEEP = 0.02
# What the imported history claims per example: the file (5 s) must be longer than the
# first batch target and than two minimum batches (8 x the default 0.5 s boot).
BIG_FILE_ESTIMATE_PER_EXAMPLE = 0.025
SPEC_EXAMPLES = 60
SPEC_SLEEP = 0.05
SPEC_ESTIMATE_PER_EXAMPLE = 0.085


def big_pytest_suite() -> dict[str, str]:
    tests = "\n".join(
        f"def test_example_{index:03d}():\n    time.sleep({BIG_FILE_SLEEP})\n"
        for index in range(BIG_FILE_EXAMPLES)
    )
    small = {
        f"tests/test_small_{index}.py": f"def test_small_{index}():\n    pass\n"
        for index in range(3)
    }
    return {"tests/test_big.py": "import time\n\n\n" + tests, **small}


def big_pytest_history(root: Path, tmp_path: Path) -> Path:
    """A history that knows big_pytest_suite's tests (pytest-split's file, imported), so
    the big file is long enough to split; its path."""
    durations = {f"tests/test_big.py::test_example_{index:03d}": BIG_FILE_ESTIMATE_PER_EXAMPLE
                 for index in range(BIG_FILE_EXAMPLES)}
    durations.update({f"tests/test_small_{index}.py::test_small_{index}": 0.05
                      for index in range(3)})
    (tmp_path / ".test_durations").write_text(json.dumps(durations))
    timings = tmp_path / "timings.json"
    imported = subprocess.run(
        [sys.executable, "-m", "shardrun", "timings", "import", str(tmp_path / ".test_durations"),
         "--timings", str(timings)],
        cwd=root, env=clean_env(), capture_output=True, text=True, check=False,
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr
    return timings


def big_rspec_suite() -> dict[str, str]:
    examples = "\n".join(
        f'  it "example {index:02d}" do\n    sleep {SPEC_SLEEP}\n  end\n'
        for index in range(SPEC_EXAMPLES)
    )
    small = {
        f"spec/small_{index}_spec.rb":
            f'RSpec.describe "Small {index}" do\n  it "works" do\n  end\nend\n'
        for index in range(3)
    }
    return {".rspec": "", "spec/big_spec.rb": f'RSpec.describe "Big" do\n{examples}end\n',
            **small}


# --- helpers: started runs, waiting, suite properties (the rest: tests/support/)


def start_shardrun(root: Path, *args: str, env: Mapping[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        shardrun_argv(*args), cwd=root, env=dict(env), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    """Wait for a started run; (exit code, stdout, stderr)."""
    with process:
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_SECONDS)
    return process.returncode, stdout, stderr


def wait_during(
    run: subprocess.Popen[str], condition: Callable[[], bool], what: str
) -> None:
    """wait_for, showing what the run printed if it ends first."""
    def explain(ended: list[subprocess.Popen[str]]) -> str:
        code, stdout, stderr = finish(ended[0])
        return f"the run ended (exit {code}):\n{stdout}\n{stderr}"

    wait_for(condition, what, processes=[run], explain=explain)


def suite_properties(path: Path) -> list[tuple[dict[str, str], list[ET.Element]]]:
    """Each testsuite's properties (shard, worker, attempt, flaky) and its testcases."""
    root = ET.parse(path).getroot()
    return [
        ({prop.get("name", ""): prop.get("value", "") for prop in suite.iter("property")},
         list(suite.iter("testcase")))
        for suite in root.iter("testsuite")
    ]


class RedisServer:
    """A redis-server of the test's own, persistence off, that the test may kill and restart."""

    def __init__(self, directory: Path):
        if not shutil.which("redis-server"):
            missing("redis-server not on PATH (apt-get install redis-server)")
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(self.answers, f"redis-server on port {self.port}")

    def answers(self) -> bool:
        try:
            connect(self.url, timeout=1).close()
        except InfrastructureError:  # not listening yet
            return False
        return True

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def restartable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.kill()


# --- 1 and 7: a worker SIGKILLed mid-batch


def kill_victim(evidence: Path, process: subprocess.Popen[str]) -> dict[str, str | int]:
    """Wait until the inner test names its worker, then SIGKILL that worker."""
    victim_file = evidence / "victim.json"
    wait_during(process, victim_file.exists, "the inner test to name its worker")
    victim: dict[str, str | int] = json.loads(victim_file.read_text())
    worker = psutil.Process(int(victim["pid"]))
    assert worker.name() == WORKER_NAME
    worker.kill()  # SIGKILL: no cleanup, no lease release, no result
    return victim


def run_and_kill_a_worker(
    root: Path, tmp_path: Path, name: str, url: str, *extra: str
) -> tuple[int, str, str, dict[str, str | int]]:
    evidence = tmp_path / f"{name}-evidence"
    evidence.mkdir()
    scratch = tmp_path / f"{name}-scratch"  # the killed worker's temp dir stays behind here
    scratch.mkdir()
    process = start_shardrun(
        root, "tests", "--workers", "2", "--redis-url", url, *SHORT_LEASE,
        *run_options(tmp_path, name), *extra,
        env=clean_env(KILL_EVIDENCE=str(evidence), TMPDIR=str(scratch)),
    )
    try:
        victim = kill_victim(evidence, process)
    finally:
        code, stdout, stderr = finish(process)
    return code, stdout, stderr, victim


@pytest.fixture(scope="module")
def kill_suite(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, Counter[Testcase]]:
    """The suite whose middle test gets its worker killed, and its serial run."""
    root = write_pytest_suite(tmp_path_factory.mktemp("kill-suite"), KILL_SUITE)
    code, cases = serial_cases("pytest", root, root.parent / "kill-serial.xml")
    return root, code, cases


@pytest.mark.slow
def test_sigkilled_worker_loses_no_test_ten_times_in_a_row(
    kill_suite: tuple[Path, int, Counter[Testcase]], private_redis: str, tmp_path: Path
) -> None:
    root, serial_code, serial = kill_suite
    assert serial_code == 1  # one failing example: the exit code must survive the kills
    assert_each_once(serial)
    for iteration in range(KILL_LOOP_ITERATIONS):
        name = f"kill-{iteration}"
        code, stdout, stderr, victim = run_and_kill_a_worker(
            root, tmp_path, name, private_redis, "--retries", "0"
        )
        context = f"iteration {iteration}:\n{stdout}\n{stderr}"
        assert code == serial_code, context
        assert junit_cases(tmp_path / f"{name}.xml") == serial, context
        [(properties, _)] = [
            (properties, cases) for properties, cases in suite_properties(tmp_path / f"{name}.xml")
            if any(case.get("name") == "test_worker_is_killed_under_me" for case in cases)
        ]
        assert int(properties["attempt"]) >= 2, context  # the lost batch came back
        assert not properties["worker"].endswith(f":{victim['pid']}"), context
        assert not is_alive(int(victim["test_pid"])), f"iteration {iteration}: orphan left"


def missing_units(stderr: str) -> list[str]:
    """The units the CLI's "never reported" line lists."""
    lines = [line for line in stderr.splitlines() if "never reported: " in line]
    assert len(lines) == 1, stderr
    return lines[0].split("never reported: ", 1)[1].split(", ")


def unit_of_testcase(case: Testcase, units: Sequence[str]) -> str | None:
    """Which of `units` (files or node ids) a module-level pytest testcase belongs to."""
    classname, name, _ = case
    file = classname.replace(".", "/") + ".py"
    return next((unit for unit in units if unit in (file, f"{file}::{name}")), None)


def test_lost_batch_beyond_max_attempts_exits_3_and_names_its_units(
    kill_suite: tuple[Path, int, Counter[Testcase]], private_redis: str, tmp_path: Path
) -> None:
    root, _, serial = kill_suite
    code, stdout, stderr, victim = run_and_kill_a_worker(
        root, tmp_path, "once", private_redis, "--max-attempts", "1", "--retries", "0"
    )
    assert code == 3, stdout + stderr
    assert not is_alive(int(victim["test_pid"])), "the killed worker's test still runs"
    missing = missing_units(stderr)
    assert any(file_of_unit(unit) == "tests/test_kill.py" for unit in missing), missing
    # The lost batch's units are error testcases; everything else ran, once.
    expected = Counter({case: 1 for case in serial if unit_of_testcase(case, missing) is None})
    expected.update((file_of_unit(unit), unit, "error") for unit in missing)
    assert junit_cases(tmp_path / "once.xml") == expected, stdout


def test_hung_worker_loses_its_batch_and_its_late_result_counts_once(
    private_redis: str, tmp_path: Path
) -> None:
    """A worker that stops (SIGSTOP) stops renewing: its batch runs again elsewhere. When
    it resumes it delivers the same batch too, and each testcase is still reported once."""
    root = write_pytest_suite(tmp_path / "suite", HANG_SUITE)
    serial_code, serial = serial_cases("pytest", root, tmp_path / "serial.xml")
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    process = start_shardrun(
        root, "tests", "--workers", "2", "--redis-url", private_redis, *SHORT_LEASE,
        "--max-attempts", "2", "--retries", "0", *run_options(tmp_path),
        env=clean_env(HANG_EVIDENCE=str(evidence), TMPDIR=str(tmp_path)),
    )
    try:
        wait_during(process, (evidence / "victim.json").exists, "the inner test to name its worker")
        worker = psutil.Process(json.loads((evidence / "victim.json").read_text())["pid"])
        worker.suspend()  # SIGSTOP: alive, but renewing nothing
        try:
            wait_during(process, (evidence / "second-started").exists, "the batch to run again")
        finally:
            worker.resume()
        (evidence / "resumed").touch()
    finally:
        code, stdout, stderr = finish(process)
    assert code == serial_code, stdout + stderr
    assert junit_cases(tmp_path / "run.xml") == serial, stdout + stderr
    assert list(root.glob(".shardrun/logs/*/shard-*-attempt-2.log")), "no second attempt"


# --- 2: Redis killed and restarted (no persistence) mid-run


def test_redis_restart_mid_run_completes_or_exits_3_never_false_green(
    restartable_redis: RedisServer, tmp_path: Path
) -> None:
    root = write_pytest_suite(tmp_path / "suite", REDIS_RESTART_SUITE)
    serial_code, serial = serial_cases("pytest", root, tmp_path / "serial.xml")
    assert serial_code == 0
    started = tmp_path / "long-started"
    process = start_shardrun(
        root, "tests", "--workers", "2", "--redis-url", restartable_redis.url, *REDIS_TIMEOUT,
        *SHORT_LEASE, *run_options(tmp_path),
        env=clean_env(LONG_STARTED=str(started), TMPDIR=str(tmp_path)),
    )
    try:
        wait_during(process, started.exists, "the long batch to start")
        restartable_redis.kill()
        time.sleep(REDIS_DOWN_SECONDS)  # a deliberate outage, not a wait for an event
        restartable_redis.start()
    finally:
        code, stdout, stderr = finish(process)
    assert code in (0, 3), stdout + stderr
    merged = junit_cases(tmp_path / "run.xml")
    if code == 0:
        assert merged == serial, stdout + stderr
    else:
        assert stderr.strip(), stdout
        assert set(merged) - set(serial), "exit 3 must show what is missing in the report"


def test_redis_gone_for_good_exits_3_with_what_completed(
    restartable_redis: RedisServer, tmp_path: Path
) -> None:
    root = write_pytest_suite(tmp_path / "suite", REDIS_RESTART_SUITE)
    started = tmp_path / "long-started"
    began = time.monotonic()
    process = start_shardrun(
        root, "tests", "--workers", "2", "--redis-url", restartable_redis.url,
        "--redis-timeout", "2", *SHORT_LEASE, *run_options(tmp_path),
        env=clean_env(LONG_STARTED=str(started), TMPDIR=str(tmp_path)),
    )
    try:
        wait_during(process, started.exists, "the long batch to start")
        restartable_redis.kill()
    finally:
        code, stdout, stderr = finish(process)
    elapsed = time.monotonic() - began
    assert code == 3, stdout + stderr
    assert "Redis" in stderr, stderr
    assert "tests/test_long.py" in stderr, stderr  # listed as never reported
    assert elapsed < REDIS_GONE_BUDGET_SECONDS
    merged = junit_cases(tmp_path / "run.xml")
    assert ("tests/test_long.py", "tests/test_long.py", "error") in merged
    assert ("tests.test_long", "test_long", "passed") not in merged
    assert_each_once(merged)


# --- 3: a test that fails, then passes


def test_failing_then_passing_test_is_flaky_unless_retries_are_off(
    tmp_path: Path, private_redis: str
) -> None:
    """The retry runs on the other worker: deterministic, because the failing attempt
    waits (reading RQ's worker states in Redis) until the other worker is idle on an empty
    queue, so it is the one blocked on the queue when the retry arrives."""
    if not shutil.which("redis-cli"):
        missing("redis-cli not on PATH (apt-get install redis-tools)")
    root = write_pytest_suite(tmp_path / "suite", FLAKY_SUITE)
    marker = tmp_path / "flaky-marker"
    env = clean_env(FLAKY_MARKER=str(marker), FLAKY_REDIS=private_redis)

    retried = shardrun(root, "tests", "--workers", "2", "--redis-url", private_redis,
                       *run_options(tmp_path, "retried"), env=env)

    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert marker.exists()
    flaky_lines = [line for line in retried.stdout.splitlines() if line.startswith("Flaky")]
    assert len(flaky_lines) == 1, retried.stdout
    assert "test_fails_first_time" in flaky_lines[0]
    flaky = [case.get("name") for case in ET.parse(tmp_path / "retried.xml").iter("testcase")
             if case.find("flakyFailure") is not None]
    assert flaky == ["test_fails_first_time"]  # its failed attempt, inside its testcase
    merged = junit_cases(tmp_path / "retried.xml")
    assert merged[("tests.test_flaky", "test_fails_first_time", "passed")] == 1
    assert_each_once(merged)
    [record] = json.loads((tmp_path / "retried-timings.json").read_text())["runs"]
    assert any("test_fails_first_time" in test for test in record["flaky"])
    # The file may run whole or split into examples (without timings, sizes decide).
    ran_flaky = {batch["attempt"]: batch["worker"] for batch in record["batches"]
                 if {"tests/test_flaky.py", "tests/test_flaky.py::test_fails_first_time"}
                 & set(batch["units"])}
    assert set(ran_flaky) == {1, 2}
    assert ran_flaky[1] != ran_flaky[2], "the retry should run on the other worker"

    marker.unlink()
    strict = shardrun(root, "tests", "--workers", "2", "--retries", "0", "--redis-url",
                      private_redis, *run_options(tmp_path, "strict"), env=env)

    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert not any(line.startswith("Flaky") for line in strict.stdout.splitlines())
    assert junit_cases(tmp_path / "strict.xml")[
        ("tests.test_flaky", "test_fails_first_time", "failed")] == 1


# --- 4: one slow file split into examples across four workers


def workers_of(junit: Path, classname: str) -> tuple[Counter[str], set[str]]:
    """Testcase names of `classname` and the workers (suite properties) they ran on."""
    names: Counter[str] = Counter()
    workers: set[str] = set()
    for properties, cases in suite_properties(junit):
        own = [case for case in cases if case.get("classname") == classname]
        names.update(case.get("name", "") for case in own)
        if own:
            workers.add(properties["worker"])
    return names, workers


def test_slow_pytest_file_is_split_across_workers(tmp_path: Path) -> None:
    root = write_pytest_suite(tmp_path / "suite", big_pytest_suite())
    timings = big_pytest_history(root, tmp_path)

    serial_code, serial = serial_cases("pytest", root, tmp_path / "serial.xml")
    phases = tmp_path / "phases"
    completed = shardrun(root, "tests", "--workers", "4", "--timings", str(timings),
                         "--junit-out", str(tmp_path / "run.xml"),
                         env=clean_env(SHARDRUN_PHASES=str(phases)))

    assert serial_code == 0 and completed.returncode == 0, completed.stdout + completed.stderr
    assert junit_cases(tmp_path / "run.xml") == serial
    names, workers = workers_of(tmp_path / "run.xml", "tests.test_big")
    assert len(names) == BIG_FILE_EXAMPLES
    assert set(names.values()) == {1}
    assert len(workers) > 1, f"all {BIG_FILE_EXAMPLES} examples ran on {workers}"
    assert_each_once(junit_cases(tmp_path / "run.xml"))
    [record] = json.loads(timings.read_text())["runs"]
    batches_with_big = [batch for batch in record["batches"]
                        if any(unit.startswith("tests/test_big.py::") for unit in batch["units"])]
    assert len(batches_with_big) > 1
    assert len({batch["worker"] for batch in batches_with_big}) > 1
    # The small files went out whole, first, before the listing of the big one returned
    # (run/options.py begin_dispatch); the big file's tests came after them.
    marks = [line.split(" ", 2)[2].strip() for line in phases.read_text().splitlines()]
    assert marks.index("enqueued") < marks.index("listed and enqueued")
    first = sorted(batch["index"] for batch in record["batches"]
                   if all("::" not in unit for unit in batch["units"]))
    assert first == [0, 1, 2]
    assert min(batch["index"] for batch in batches_with_big) == 3


LISTING_FAILS = """\
import pytest


def pytest_configure(config):
    # Only the coordinator's listing collects with the python plugin and --collect-only
    # (a runner's prewarm does without the plugin; batches do not --collect-only).
    if config.option.collectonly and config.pluginmanager.has_plugin("python"):
        raise pytest.UsageError("this project cannot be listed")
"""


def test_a_failed_listing_runs_the_rest_whole_after_the_first_round(tmp_path: Path) -> None:
    """The first round is out before the listing fails; the big file then runs whole,
    and every test is still in the report once, as in a serial run."""
    root = write_pytest_suite(tmp_path / "suite",
                              {**big_pytest_suite(), "tests/conftest.py": LISTING_FAILS})
    timings = big_pytest_history(root, tmp_path)
    serial_code, serial = serial_cases("pytest", root, tmp_path / "serial.xml")

    completed = shardrun(root, "tests", "--workers", "4", "--timings", str(timings),
                         "--junit-out", str(tmp_path / "run.xml"))

    assert serial_code == 0 and completed.returncode == 0, completed.stdout + completed.stderr
    assert "listing examples failed" in completed.stdout + completed.stderr
    assert junit_cases(tmp_path / "run.xml") == serial
    [record] = json.loads(timings.read_text())["runs"]
    assert [batch["units"] for batch in record["batches"]
            if "tests/test_big.py" in batch["units"]] == [["tests/test_big.py"]]


@pytest.mark.ruby
def test_slow_spec_file_is_split_across_workers(require_ruby: None, tmp_path: Path) -> None:
    root = write_files(tmp_path / "suite", big_rspec_suite())
    knapsack = {"spec/big_spec.rb": SPEC_EXAMPLES * SPEC_ESTIMATE_PER_EXAMPLE,
                **{f"spec/small_{index}_spec.rb": 0.05 for index in range(3)}}
    (tmp_path / "knapsack_rspec_report.json").write_text(json.dumps(knapsack))
    timings = tmp_path / "timings.json"
    imported = subprocess.run(
        [sys.executable, "-m", "shardrun", "timings", "import",
         str(tmp_path / "knapsack_rspec_report.json"), "--timings", str(timings)],
        cwd=root, env=clean_env(), capture_output=True, text=True, check=False,
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr
    serial_code, serial = serial_cases("rspec", root, tmp_path / "serial.xml")
    assert serial_code == 0

    completed = shardrun(root, "spec", "--workers", "4", "--timings", str(timings),
                         "--junit-out", str(tmp_path / "run.xml"))

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert junit_cases(tmp_path / "run.xml") == serial
    assert_each_once(serial)
    names, workers = workers_of(tmp_path / "run.xml", "spec.big_spec")
    assert len(names) == SPEC_EXAMPLES
    assert len(workers) > 1, f"all {SPEC_EXAMPLES} examples ran on {workers}"


# --- 5 and 8: what a real worker refuses


def run_worker(
    url: str, root: Path, run_id: str, *settings: str
) -> subprocess.CompletedProcess[str]:
    """`python -m shardrun worker --burst SETTINGS` until the run's queue is empty."""
    return subprocess.run(
        [sys.executable, "-m", "shardrun", "worker", "--redis-url", url, "--run-id", run_id,
         "--burst", "--root", str(root), *settings],
        cwd=root, env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=RUN_TIMEOUT_SECONDS, check=False,
    )


def work_jobs(
    url: str, root: Path, run_id: str, jobs: Sequence[Batch], *settings: str
) -> tuple[list[BatchResult], str]:
    """Enqueue `jobs`, let one burst worker (its own SETTINGS) serve them, and read one
    result per job."""
    connection = connect(url)
    run_queue = RunQueue(connection, run_id)
    try:
        run_queue.enqueue(jobs)
        worker = run_worker(url, root, run_id, *settings)
        assert worker.returncode == 0, worker.stdout
        results = [run_queue.wait_result(5) for _ in jobs]
        assert run_queue.wait_result(0.1) is None  # nothing else came back
    finally:
        run_queue.delete()
        connection.close()
    assert all(result is not None for result in results), worker.stdout
    return [result for result in results if result is not None], worker.stdout


HOSTILE_UNITS = ("../../etc/passwd", "--require=evil.rb", "$(touch x)")


@pytest.mark.parametrize("framework", ["pytest", "rspec", "command"])
def test_real_worker_refuses_hostile_units_and_runs_nothing(
    private_redis: str, unique_id: str, tmp_path: Path, framework: str
) -> None:
    root = write_pytest_suite(tmp_path / "checkout", {"tests/test_ok.py": "def test_ok():\n"
                                                      "    pass\n"})
    marker = tmp_path / "ran"
    settings = ["--framework", framework]
    if framework == "command":
        settings += ["--command", f"touch {marker} {{files}} {{junit}}"]
    jobs = [Batch(unique_id, index, (unit,), 1.0, 60.0)
            for index, unit in enumerate(HOSTILE_UNITS)]

    results, output = work_jobs(private_redis, root, unique_id, jobs, *settings)

    by_batch = {result.batch_id: result for result in results}
    for index, unit in enumerate(HOSTILE_UNITS):
        result = by_batch[index]
        assert result.error is not None, output
        assert repr(unit) in result.error
        assert result.outcome.exit_code is None  # no test process was started
        assert [(test.id, test.outcome) for test in result.tests] == [(unit, "error")]
    assert not marker.exists()
    for where in (root, tmp_path, Path.cwd()):
        assert not (where / "x").exists(), f"$(touch x) ran in {where}"


def test_unit_named_like_a_shell_command_stays_one_literal_argument(
    private_redis: str, unique_id: str, tmp_path: Path
) -> None:
    """A file really named `$(touch x)` is a valid unit: it reaches the command as one
    argv item, never through a shell (here `cp` copies its JUnit content)."""
    junit = ('<testsuite name="s" tests="1"><testcase classname="c" name="literal" '
             'file="$(touch x)" time="0.1"/></testsuite>')
    root = write_files(tmp_path / "checkout", {"$(touch x)": junit})
    job = Batch(unique_id, 0, ("$(touch x)",), 1.0, 60.0)

    [result], output = work_jobs(private_redis, root, unique_id, [job], "--framework",
                                 "command", "--command", "cp {files} {junit}")

    assert result.error is None, output
    assert result.outcome.exit_code == 0, result.outcome.output_tail
    assert [(test.name, test.unit) for test in result.tests] == [("literal", "$(touch x)")]
    for where in (root, tmp_path, Path.cwd()):
        assert not (where / "x").exists(), f"$(touch x) ran in {where}"


def git(root: Path, *args: str) -> str:
    completed = subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=shardrun tests",
         "-c", "user.email=tests@shardrun.invalid", "-c", "commit.gpgsign=false", *args],
        capture_output=True, text=True, timeout=30, check=True,
    )
    return completed.stdout.strip()


def test_worker_at_another_commit_refuses_the_batch(
    private_redis: str, unique_id: str, tmp_path: Path
) -> None:
    if not shutil.which("git"):
        missing("git not on PATH (apt-get install git)")
    root = write_pytest_suite(tmp_path / "checkout", {"tests/test_ok.py": "def test_ok():\n"
                                                      "    pass\n"})
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "suite")
    marker = tmp_path / "ran"
    other_commit = "0" * 40
    assert git(root, "rev-parse", "HEAD") != other_commit
    job = Batch(unique_id, 0, ("tests/test_ok.py",), 1.0, 60.0, commit=other_commit)

    [result], output = work_jobs(private_redis, root, unique_id, [job], "--framework",
                                 "command", "--command", f"touch {marker} {{files}} {{junit}}")

    assert result.refused, output
    assert result.error is not None
    assert other_commit[:12] in result.error
    assert result.outcome.exit_code is None
    assert not marker.exists(), "the worker ran a batch of another commit"


# --- 6: --fail-fast


FAIL_FAST_FILES = 12
FAILING_FILES = 4


def fail_fast_suite() -> dict[str, str]:
    """Twelve files; the four failing ones are the largest, so the first batches hold them
    (without timings, file size is the estimate)."""
    files = {}
    for index in range(FAIL_FAST_FILES):
        failing = index < FAILING_FILES
        padding = "# padding to make this file the larger\n" * 20 if failing else ""
        body = "assert False, 'fails on purpose'" if failing else "pass"
        files[f"tests/test_file_{index:02d}.py"] = (
            f"import time\n{padding}\n\ndef test_{index:02d}_a():\n    time.sleep(0.2)\n"
            f"    {body}\n\n\ndef test_{index:02d}_b():\n    time.sleep(0.2)\n"
        )
    return files


def test_fail_fast_stops_and_reports_the_rest_as_skipped(tmp_path: Path) -> None:
    root = write_pytest_suite(tmp_path / "suite", fail_fast_suite())
    suite_size = 2 * FAIL_FAST_FILES

    completed = shardrun(root, "tests", "--workers", "2", "--fail-fast", "1",
                         *run_options(tmp_path))

    assert completed.returncode == 1, completed.stdout + completed.stderr
    merged = junit_cases(tmp_path / "run.xml")
    assert_each_once(merged)
    ran = [case for case in merged if case[2] != "skipped"]
    assert 0 < len(ran) < suite_size, completed.stdout
    root_element = ET.parse(tmp_path / "run.xml").getroot()
    reasons = [skipped.get("message", "") for skipped in root_element.iter("skipped")]
    assert reasons, completed.stdout
    assert all("fail-fast" in reason for reason in reasons), reasons
    assert any(case[2] in ("failed", "error") for case in ran)
    # Every file of the suite is accounted for: ran, or skipped by name.
    files = {f"tests/test_file_{index:02d}.py" for index in range(FAIL_FAST_FILES)}
    seen = {classname.replace(".", "/") + ".py" for classname, _, _ in ran} | {
        name for _, name, outcome in merged if outcome == "skipped"}
    assert files <= seen, sorted(files - seen)
