"""`shardrun worker` as a real process on a real Redis: what it refuses and what it runs.

Anyone who can write to the Redis can enqueue jobs, so a worker must run shardrun's own
job function and nothing else, and that function must not let a unit act as an option or
a path outside the checkout.
"""

from __future__ import annotations

import http.server
import os
import pickle
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import ClassVar

import pytest
from rq import Callback, Queue, Webhook
from rq.job import Job
from rq.serializers import JSONSerializer
from support.runs import clean_ci_env

from shardrun.models import Batch, BatchResult, Mode, RunMeta, RunSpec
from shardrun.queue import JOB_FUNCTION, Connection, RunQueue, connect, queue_name, register_run
from shardrun.run.worker_group import started_workers
from shardrun.work.context import WorkerContext
from shardrun.work.worker import Worker, execute

# A burst worker with one tiny job exits in about a second; this only bounds a hang.
WORKER_TIMEOUT_SECONDS = 60
# Python code that leaves a mark when imported: a worker must never import a job's module.
MODULE_THAT_MARKS_ON_IMPORT = """
from pathlib import Path
Path({marker!r}).touch()

def run(*args, **kwargs):
    Path({marker!r}).touch()
"""


def run_worker(
    redis_url: str, root: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m shardrun worker --burst` until its queues are empty; output in .stdout."""
    return subprocess.run(
        [sys.executable, "-m", "shardrun", "worker", "--redis-url", redis_url, "--burst",
         "--root", str(root), *extra],
        cwd=root, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=WORKER_TIMEOUT_SECONDS, check=False,
    )


def marking_template(marker: Path) -> str:
    """A command template that leaves `marker` behind if it ever runs."""
    return f"touch {marker} {{files}} {{junit}}"


@pytest.mark.parametrize("func", ["os.system", "marks_on_import.run"])
def test_worker_refuses_a_job_that_names_another_callable(
    redis_url: str, unique_id: str, tmp_path: Path, func: str
) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "marks_on_import.py").write_text(
        MODULE_THAT_MARKS_ON_IMPORT.format(marker=str(marker))
    )
    connection = connect(redis_url)
    rq_queue = Queue(queue_name(unique_id), connection=connection, serializer=JSONSerializer)
    job = rq_queue.enqueue_call(
        func=func, args=[f"touch {marker}"], ttl=600, result_ttl=600, failure_ttl=600
    )
    try:
        worker = run_worker(
            redis_url, tmp_path, "--run-id", unique_id, env={"PYTHONPATH": str(tmp_path)}
        )

        assert worker.returncode == 0, worker.stdout
        assert not marker.exists(), "the worker ran (or imported) a foreign callable"
        assert job.id in rq_queue.failed_job_registry.get_job_ids()
        refreshed = Job.fetch(job.id, connection=connection, serializer=JSONSerializer)
        assert refreshed.get_status() == "failed"
        assert "refused" in worker.stdout
        assert func in worker.stdout
    finally:
        RunQueue(connection, unique_id).delete()
        connection.close()


@pytest.mark.parametrize("hook", ["on_success", "on_failure", "on_stopped"])
def test_worker_refuses_shardrun_jobs_that_carry_a_callback(
    redis_url: str, unique_id: str, tmp_path: Path, hook: str
) -> None:
    """A callback is another callable the worker would import and run: refused as well."""
    marker = tmp_path / "pwned"
    (tmp_path / "marks_on_import.py").write_text(
        MODULE_THAT_MARKS_ON_IMPORT.format(marker=str(marker))
    )
    connection = connect(redis_url)
    rq_queue = Queue(queue_name(unique_id), connection=connection, serializer=JSONSerializer)
    # A payload whose unit is missing: run_shard returns normally (success callback), and
    # one that is not a dict makes it raise (failure callback).
    payload = Batch(unique_id, 0, ("missing.py",), 1.0, 60.0).to_dict()
    job = rq_queue.enqueue_call(
        func=JOB_FUNCTION, kwargs={"payload": payload if hook == "on_success" else "x"},
        ttl=600, result_ttl=600, failure_ttl=600,
        **{hook: Callback("marks_on_import.run")},
    )
    try:
        worker = run_worker(
            redis_url, tmp_path, "--run-id", unique_id, env={"PYTHONPATH": str(tmp_path)}
        )

        assert worker.returncode == 0, worker.stdout
        assert not marker.exists(), "the worker imported or ran a job's callback"
        assert job.id in rq_queue.failed_job_registry.get_job_ids()
        assert "refused" in worker.stdout
    finally:
        RunQueue(connection, unique_id).delete()
        connection.close()


class _TouchesOnUnpickle:
    """Unpickling this runs `touch marker`: the payload of a classic pickle attack."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, ...]]:
        return (os.system, (f"touch {self.marker}",))


def test_worker_never_unpickles_job_data_and_keeps_serving(
    redis_url: str, unique_id: str, tmp_path: Path
) -> None:
    """A job whose data is a pickle is refused unread, and the next job still runs."""
    marker = tmp_path / "pwned"
    (tmp_path / "ok.py").write_text("")
    connection = connect(redis_url)
    run_queue = RunQueue(connection, unique_id)
    rq_queue = run_queue.rq_queue
    poisoned = rq_queue.enqueue_call(func=JOB_FUNCTION, kwargs={}, ttl=600, failure_ttl=600)
    pickled = pickle.dumps((JOB_FUNCTION, None, [], {"payload": _TouchesOnUnpickle(marker)}))
    connection.hset(poisoned.key, "data", zlib.compress(pickled))
    good = Batch(unique_id, 1, ("ok.py",), 1.0, 60.0)
    try:
        run_queue.enqueue([good])
        worker = run_worker(redis_url, tmp_path, "--run-id", unique_id, "--framework", "command",
                            "--command", "true {files} {junit}")
        result = run_queue.wait_result(5)

        assert not marker.exists(), "the worker unpickled job data"
        assert poisoned.id in rq_queue.failed_job_registry.get_job_ids()
        assert "refused" in worker.stdout
        assert result is not None, worker.stdout
        assert (result.batch_id, result.outcome.exit_code) == (1, 0)
    finally:
        run_queue.delete()
        connection.close()


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.requests.append(f"{self.command} {self.path}")
        self.send_response(204)
        self.end_headers()

    do_GET = do_PUT = do_POST

    def log_message(self, format: str, *args: object) -> None:
        """Silent: the test reads `requests`, not the log."""


def test_worker_refuses_shardrun_jobs_that_carry_webhooks(
    redis_url: str, unique_id: str, tmp_path: Path
) -> None:
    """A webhook makes the worker send job data to any URL: refused, and never sent."""
    _RecordingHandler.requests = []
    with http.server.HTTPServer(("127.0.0.1", 0), _RecordingHandler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        connection = connect(redis_url)
        rq_queue = Queue(queue_name(unique_id), connection=connection, serializer=JSONSerializer)
        payload = Batch(unique_id, 0, ("missing.py",), 1.0, 60.0).to_dict()
        job = rq_queue.enqueue_call(
            func=JOB_FUNCTION, kwargs={"payload": payload}, ttl=600, result_ttl=600,
            failure_ttl=600, webhooks=[Webhook(url, "finished"), Webhook(url, "failed")],
        )
        try:
            worker = run_worker(redis_url, tmp_path, "--run-id", unique_id)
        finally:
            server.shutdown()
            thread.join()
            RunQueue(connection, unique_id).delete()
            connection.close()

    assert worker.returncode == 0, worker.stdout
    assert "refused" in worker.stdout
    assert job.id in worker.stdout
    assert _RecordingHandler.requests == []


@pytest.mark.parametrize(
    "unit",
    ["../../etc/passwd", "--require=evil.rb", "-x", "/etc/passwd", "tests/../../outside.py",
     "../../etc/passwd::test_x", "missing_file.py"],
)
def test_execute_refuses_units_that_are_not_files_in_the_checkout(
    tmp_path: Path, unit: str
) -> None:
    root = tmp_path / "checkout"
    (root / "tests").mkdir(parents=True)
    (tmp_path / "outside.py").write_text("")
    marker = tmp_path / "ran"
    job = Batch("run", 0, (unit,), 1.0, 60.0)
    context = WorkerContext(root, 1, tmp_path / "logs", tmp_path / "scratch")

    result = execute(job, Worker(context), RunSpec("command", marking_template(marker)))

    assert result.error is not None
    assert repr(unit) in result.error
    assert result.outcome.exit_code is None
    assert not marker.exists(), "the runner was started for a refused unit"


def test_run_shard_in_a_real_worker_reports_a_refused_unit_as_an_error(
    redis_url: str, unique_id: str, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "ok.py").write_text("")
    job = Batch(unique_id, 0, ("ok.py", "../../etc/passwd"), 1.0, 60.0)
    connection = connect(redis_url)
    run_queue = RunQueue(connection, unique_id)
    try:
        run_queue.enqueue([job])
        worker = run_worker(redis_url, tmp_path, "--run-id", unique_id, "--framework", "command",
                            "--command", marking_template(marker))
        result = run_queue.wait_result(5)

        assert worker.returncode == 0, worker.stdout
        assert result is not None, worker.stdout
        assert result.error is not None
        assert "refused unit '../../etc/passwd'" in result.error
        assert not marker.exists()
    finally:
        run_queue.delete()
        connection.close()


PYTEST_SUITE = {
    "pytest.ini": "[pytest]\n",
    "test_small.py": "def test_one():\n    pass\n\n\ndef test_two():\n    assert 1 + 1 == 2\n",
}


def test_worker_without_run_id_serves_an_announced_run(
    private_redis: str, unique_id: str, tmp_path: Path
) -> None:
    """On a private Redis: a worker without --run-id would also take other tests' runs."""
    for name, text in PYTEST_SUITE.items():
        (tmp_path / name).write_text(text)
    connection = connect(private_redis)
    run_queue = RunQueue(connection, unique_id)
    run_queue.enqueue([Batch(unique_id, 0, ("test_small.py",), 1.0, 120.0)])
    register_run(connection, unique_id)

    worker = run_worker(private_redis, tmp_path, "--framework", "pytest",
                        env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    result = run_queue.wait_result(5)

    assert worker.returncode == 0, worker.stdout
    assert isinstance(result, BatchResult), worker.stdout
    assert result.error is None
    assert result.outcome.exit_code == 0, result.outcome.output_tail
    assert sorted((test.id, test.outcome) for test in result.tests) == [
        ("test_small.py::test_one", "passed"), ("test_small.py::test_two", "passed")]
    # What a person tailing the worker's log sees: its start and each batch.
    assert "serving every announced run, with its own pytest settings" in worker.stdout
    assert f"run {unique_id} batch 0 attempt 1: 1 units in " in worker.stdout
    assert ": 2 tests, 0 failed" in worker.stdout
    assert_every_key_of_the_run_expires(connection, unique_id)
    connection.close()


def assert_every_key_of_the_run_expires(connection: Connection, run_id: str) -> None:
    """After a real worker ran the job: RQ's registries and results have TTLs too."""
    keys = [key.decode() for key in connection.scan_iter(f"*{run_id}*")]
    assert keys, "the run left no keys at all: the scan pattern is wrong"
    without_ttl = [key for key in keys if connection.ttl(key) <= 0]
    assert without_ttl == []


def test_the_local_workers_entry_point_imports_only_the_workers_code() -> None:
    """`shardrun run` starts N of these on the test cores: no coordinator, planner,
    dashboard or report code may ride along (shardrun.cli.worker's reason to exist)."""
    probe = ("import sys, shardrun.cli.worker; "
             "print(' '.join(sorted(m for m in sys.modules if m.startswith('shardrun'))))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True).stdout.split()
    assert "shardrun.work.worker" in loaded
    heavy = {"shardrun.cli.main", "shardrun.run.coordinator", "shardrun.plan.planner",
             "shardrun.report.dashboard", "shardrun.report.merge", "shardrun.plan.history"}
    assert heavy.isdisjoint(loaded), sorted(heavy & set(loaded))


def test_the_local_workers_entry_point_fails_in_one_line() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "shardrun.cli.worker", "--redis-url", "redis://127.0.0.1:1/0",
         "--burst"],
        capture_output=True, text=True, timeout=WORKER_TIMEOUT_SECONDS, check=False,
    )
    assert completed.returncode == 3, completed.stderr
    assert completed.stderr.startswith("shardrun: error: "), completed.stderr
    assert "Traceback" not in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1, completed.stderr


def test_prewarm_without_a_run_id_is_refused_in_one_line(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "shardrun.cli.worker", "--redis-url", "redis://127.0.0.1:1/0",
         "--root", str(tmp_path), "--prewarm", "pytest"],
        capture_output=True, text=True, timeout=WORKER_TIMEOUT_SECONDS, check=False,
    )
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.strip().splitlines() == [
        "shardrun: error: --prewarm needs --run-id: a warm runner serves one run; "
        "add --run-id or drop --prewarm"]


def test_a_worker_holds_no_pubsub_connection_and_stops_at_once(
    private_redis: str, unique_id: str, tmp_path: Path
) -> None:
    """RQ's command channel is not used: its listener thread made a SIGTERMed worker
    wait up to a second for a join, at the end of every local run."""
    connection = connect(private_redis)
    worker = subprocess.Popen(
        [sys.executable, "-m", "shardrun.cli.worker", "--redis-url", private_redis,
         "--run-id", unique_id, "--root", str(tmp_path)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + WORKER_TIMEOUT_SECONDS
        while not connection.smembers(f"rq:workers:{queue_name(unique_id)}"):
            assert worker.poll() is None and time.monotonic() < deadline, "never registered"
            time.sleep(0.05)
        assert connection.pubsub_channels() == []
        assert connection.pubsub_numpat() == 0
        worker.terminate()
        assert worker.wait(WORKER_TIMEOUT_SECONDS) == 0
    finally:
        worker.kill()
        connection.close()


def test_scaled_workers_of_a_group_number_themselves_and_are_counted(
    private_redis: str, unique_id: str, tmp_path: Path
) -> None:
    """`docker compose up --scale worker=3`: every container used to get the same
    TEST_ENV_NUMBER, and the coordinator a WORKERS count kept equal to the scale by hand.
    Three workers of one group, started at once, take 1, 2 and 3 from the group's Redis
    counter; `ci --workers 0` reads 3 from it. On a private Redis: these burst workers
    serve every announced run. Each also logs going idle, with no run announced."""
    group = f"compose-{unique_id}"
    argv = [sys.executable, "-m", "shardrun", "worker", "--redis-url", private_redis,
            "--burst", "--root", str(tmp_path), "--framework", "pytest"]
    env = {**os.environ, "SHARDRUN_WORKER_GROUP": group}
    env.pop("SHARDRUN_WORKER_INDEX", None)
    workers = [subprocess.Popen(argv, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(3)]
    outputs = [worker.communicate(timeout=WORKER_TIMEOUT_SECONDS)[0] for worker in workers]

    assert [worker.returncode for worker in workers] == [0, 0, 0], outputs
    indexes = sorted(int(out.split("(index ", 1)[1].split(")", 1)[0]) for out in outputs)
    assert indexes == [1, 2, 3], outputs
    assert all("idle: no run announced" in out for out in outputs), outputs
    assert started_workers(private_redis, group) == 3
    assert started_workers(private_redis, f"other-{unique_id}") is None
    connection = connect(private_redis)
    keys = [key.decode() for key in connection.scan_iter(f"*{group}*")]
    assert keys and all(connection.ttl(key) > 0 for key in keys), keys
    connection.close()


@pytest.mark.parametrize("live", [0, 1])
def test_a_worker_streams_finished_tests_only_when_the_run_asks(
    redis_url: str, unique_id: str, tmp_path: Path, live: int
) -> None:
    """`run --verbose` publishes `live` in the run's meta; without it a batch writes no
    live entry at all (the stream key never exists)."""
    for name, text in PYTEST_SUITE.items():
        (tmp_path / name).write_text(text)
    connection = connect(redis_url)
    run_queue = RunQueue(connection, unique_id)
    run_queue.publish_meta(RunMeta(unique_id, "pytest", Mode.QUEUE, 1, ("test_small.py",),
                                   0.0, live=live))
    run_queue.enqueue([Batch(unique_id, 0, ("test_small.py",), 1.0, 120.0)])
    try:
        worker = run_worker(redis_url, tmp_path, "--run-id", unique_id, "--framework",
                            "pytest", "--worker-index", "3",
                            env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
        assert worker.returncode == 0, worker.stdout
        assert isinstance(run_queue.wait_result(5), BatchResult), worker.stdout
        _, entries = run_queue.read_live("0")
        if live:
            assert sorted((entry["w"], entry["id"], entry["outcome"]) for entry in entries) == [
                (3, "test_small.py::test_one", "passed"), (3, "test_small.py::test_two", "passed")]
            assert connection.ttl(run_queue.key("live")) > 0
        else:
            assert entries == [] and not connection.exists(run_queue.key("live"))
    finally:
        run_queue.delete()
        connection.close()


def test_compose_topology_sizes_batches_for_the_workers_that_started(
    private_redis: str, unique_id: str, tmp_path: Path
) -> None:
    """docker-compose.yml without Docker: two pool workers of one group, then `shardrun ci
    --workers 0` with that group, as the coordinator service runs it. The coordinator
    counts 2 workers (no WORKERS to keep equal to --scale) and they run the suite."""
    for name, text in PYTEST_SUITE.items():
        (tmp_path / name).write_text(text)
    group = f"compose-{unique_id}"
    env = clean_ci_env(SHARDRUN_WORKER_GROUP=group)
    workers = [subprocess.Popen(
        [sys.executable, "-m", "shardrun", "worker", "--redis-url", private_redis, "--root",
         str(tmp_path), "--framework", "pytest"], cwd=tmp_path, env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)]
    try:
        started = [next(line for line in iter(worker.stdout.readline, "") if "(index" in line)
                   for worker in workers if worker.stdout is not None]
        assert sorted(line.split("(index ")[1][0] for line in started) == ["1", "2"], started
        coordinator = subprocess.run(
            [sys.executable, "-m", "shardrun", "ci", "--redis-url", private_redis,
             "--build-id", unique_id, "--node-index", "0", "--node-total", "1",
             "--workers", "0", "--junit-out", str(tmp_path / "merged.xml"),
             "--timings", str(tmp_path / "timings.json")],
            cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=WORKER_TIMEOUT_SECONDS, check=False)
    finally:
        for worker in workers:
            worker.terminate()
            worker.communicate(timeout=WORKER_TIMEOUT_SECONDS)
    assert coordinator.returncode == 0, coordinator.stdout + coordinator.stderr
    assert (f"shardrun ci: batches sized for the 2 started workers of group {group}"
            in coordinator.stdout), coordinator.stdout
    assert "2 passed, 0 failed" in coordinator.stdout.splitlines()
