"""Redis is a trust boundary: whoever can write to it must not choose what workers run.

Each test writes to a real Redis what an attacker with access to it could write (a job
payload, the run's published settings) and runs a real `shardrun worker` on it. The
worker runs what its own side says (its command line, or the settings of the `shardrun
run` that started it) or settings signed with the SHARDRUN_SECRET it shares with the
coordinator; anything else is refused with the reason (shardrun/runspec.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from rq.serializers import JSONSerializer
from support.files import write_pytest_suite
from support.runs import RUN_TIMEOUT_SECONDS, clean_env

from shardrun.models import Batch, BatchResult, Mode, RunMeta, RunSpec
from shardrun.queue import JOB_FUNCTION, RunQueue, connect
from shardrun.report.merge import merge
from shardrun.run.ledger import Ledger
from shardrun.runspec import published

SUITE = {
    "tests/test_ok.py": """
        import os
        from pathlib import Path

        def test_ok():
            seen = os.environ.get("SHARDRUN_SECRET", "")
            Path(os.environ["SEEN_SECRET"]).write_text(seen)
    """,
}
EVIL_TEMPLATE = "touch {marker} {{files}} {{junit}}"


def worker(url: str, root: Path, run_id: str, *settings: str, **env: str):
    return subprocess.run(
        [sys.executable, "-m", "shardrun", "worker", "--redis-url", url, "--run-id", run_id,
         "--burst", "--root", str(root), *settings],
        cwd=root, env=clean_env(SEEN_SECRET=str(root / "seen-secret"), **env),
        stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=RUN_TIMEOUT_SECONDS, check=False)


def one_result(url: str, run_id: str, payload: dict, meta: dict | None = None,
               root: Path | None = None, *settings: str, **env: str) -> BatchResult:
    connection = connect(url)
    run_queue = RunQueue(connection, run_id)
    try:
        if meta is not None:  # written raw, as anyone who can write to Redis could
            connection.set(run_queue.key("meta"), json.dumps(meta))
        run_queue.rq_queue.enqueue_call(func=JOB_FUNCTION, kwargs={"payload": payload},
                                        job_id=f"{run_id}-0-1")
        assert root is not None
        done = worker(url, root, run_id, *settings, **env)
        assert done.returncode == 0, done.stdout + done.stderr
        result = run_queue.wait_result(5)
        assert result is not None, done.stdout + done.stderr
        return result
    finally:
        run_queue.delete()
        connection.close()


def hostile_payload(run_id: str, marker: Path) -> dict:
    """A genuine batch plus what used to be obeyed: a command and a --require."""
    payload = Batch(run_id, 0, ("tests/test_ok.py",), 1.0, 60.0).to_dict()
    payload.update({"framework": "command", "command_template": EVIL_TEMPLATE.format(
        marker=marker), "runner_args": ["--require", str(marker.with_suffix(".rb"))],
        "runners": "fresh"})
    return payload


def test_a_payload_cannot_choose_what_a_worker_runs(
    private_redis: str, unique_id: str, tmp_path: Path
) -> None:
    root = write_pytest_suite(tmp_path / "checkout", SUITE)
    marker = tmp_path / "pwned"
    result = one_result(private_redis, unique_id, hostile_payload(unique_id, marker), None,
                        root, "--framework", "pytest")
    assert not marker.exists(), "the worker ran the payload's command"
    assert [(t.id, t.outcome) for t in result.tests] == [("tests/test_ok.py::test_ok", "passed")]


def test_a_worker_without_settings_refuses_an_unsigned_run_and_says_why(
    private_redis: str, unique_id: str, tmp_path: Path
) -> None:
    root = write_pytest_suite(tmp_path / "checkout", SUITE)
    marker = tmp_path / "pwned"
    spec = RunSpec("command", EVIL_TEMPLATE.format(marker=marker))
    result = one_result(private_redis, unique_id, hostile_payload(unique_id, marker),
                        {"spec": published(spec, None)}, root)
    assert result.refused and not marker.exists()
    assert "SHARDRUN_SECRET" in (result.error or "")


def test_signed_settings_run_and_tampered_ones_are_refused(
    private_redis: str, unique_id: str, tmp_path: Path
) -> None:
    root = write_pytest_suite(tmp_path / "checkout", SUITE)
    marker = tmp_path / "pwned"
    payload = hostile_payload(unique_id, marker)
    signed = published(RunSpec("pytest"), "s3cret")
    result = one_result(private_redis, unique_id, payload, meta_with(unique_id, signed), root,
                        SHARDRUN_SECRET="s3cret", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    assert [(t.id, t.outcome) for t in result.tests] == [("tests/test_ok.py::test_ok", "passed")]
    assert (root / "seen-secret").read_text() == ""  # the tests never see the secret
    tampered = json.loads(json.dumps(signed))
    tampered["settings"].update(framework="command",
                                command_template=EVIL_TEMPLATE.format(marker=marker))
    second = f"{unique_id}-2"
    refused = one_result(private_redis, second, hostile_payload(second, marker),
                         meta_with(second, tampered), root, SHARDRUN_SECRET="s3cret")
    assert refused.refused and "not signed" in (refused.error or "")
    assert not marker.exists()


def meta_with(run_id: str, spec: dict) -> dict:
    return RunMeta(run_id, "pytest", Mode.QUEUE, 1, ("tests/test_ok.py",), 0.0,
                   spec=spec).to_dict()


def test_a_meta_not_written_by_shardrun_is_a_refusal_not_a_crash(
    private_redis: str, unique_id: str, tmp_path: Path
) -> None:
    """Bad bytes under the run's meta key: the worker answers with why, and runs nothing."""
    root = write_pytest_suite(tmp_path / "checkout", SUITE)
    marker = tmp_path / "pwned"
    refused = one_result(private_redis, unique_id, hostile_payload(unique_id, marker),
                         {"spec": "\udcff", "units": 7}, root, SHARDRUN_SECRET="s3cret")
    assert refused.refused and "not shardrun's" in (refused.error or "")
    assert not marker.exists()


def test_a_batch_every_worker_refused_is_reported_with_the_refusal() -> None:
    """A worker for another checkout used to make the run end "no result from any worker",
    though it had answered with its reason."""
    ledger = Ledger(max_attempts=2)
    [job] = ledger.add([Batch("run", 0, ("tests/test_ok.py",), 1.0, 60.0)])
    ledger.started(0)
    again = ledger.refused(0, "refused by worker h:1: worker checkout is at 1234")
    assert again is not None
    assert ledger.refused(0, "refused by worker h:1: worker checkout is at 1234") is None
    report = merge(list(job.units), [], lost_reasons=ledger.lost_reasons())
    [case] = report.cases
    assert case.message == ("no result from any worker (refused by worker h:1: worker "
                            "checkout is at 1234)")
    assert report.missing == ("tests/test_ok.py",)


def test_the_job_data_in_redis_names_no_command(
    private_redis: str, unique_id: str
) -> None:
    connection = connect(private_redis)
    run_queue = RunQueue(connection, unique_id)
    try:
        run_queue.enqueue([Batch(unique_id, 0, ("tests/test_ok.py",), 1.0, 60.0)])
        [job_id] = run_queue.rq_queue.get_job_ids()
        job = run_queue.rq_queue.fetch_job(job_id)
        assert job is not None
        payload = JSONSerializer.loads(JSONSerializer.dumps(job.kwargs))["payload"]
        assert set(payload).isdisjoint({"framework", "command_template", "runner_args"})
    finally:
        run_queue.delete()
        connection.close()
