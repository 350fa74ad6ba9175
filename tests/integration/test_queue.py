"""queue.py against real redis-servers: keys, TTLs, JSON-only job data, blocking waits,
and every kind of --redis-url (password and ACL user, unix socket, TLS, bad ones).

Tests on the machine's Redis keep their keys under a unique run id; tests that need a
server configured their own way (a password, a socket, TLS) start a private one.
"""

from __future__ import annotations

import json
import shutil
import socket
import socketserver
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.requirements import missing
from support.runs import free_port

from shardrun.errors import InfrastructureError, InputError
from shardrun.models import Batch, BatchResult, Mode, ProcessOutcome, RunMeta
from shardrun.queue import (
    JOB_FUNCTION,
    MalformedMeta,
    RunQueue,
    active_runs,
    connect,
    redact,
    register_run,
    rq_keys,
)

# A private redis-server listens about 10 ms after exec; this only bounds a broken start.
SERVER_START_SECONDS = 10.0
# connect() must give up within its own timeout; this is the slack for a slow CI machine.
TIMEOUT_SLACK_SECONDS = 1.0
PICKLE_PROTOCOL_OPCODE = b"\x80"  # every pickle of protocol >= 2 starts with PROTO (0x80)
ADMIN_PASSWORD = "admin-s3cret"
ALICE_PASSWORD = "alice-s3cret"


def shard_job(run_id: str, index: int = 0) -> Batch:
    return Batch(run_id, index, (f"tests/test_{index}.py",), 1.5, 60.0)


def shard_result(run_id: str, index: int = 0) -> BatchResult:
    outcome = ProcessOutcome(0, None, False, 1.25, 0.5, 1024)
    return BatchResult(
        run_id, index, 1, "host:1", 1, (f"tests/test_{index}.py",), outcome, 10.0, 11.25
    )


# --- private servers --------------------------------------------------------------------


class RedisServer:
    """One redis-server process of a test's own, stopped by the fixture that started it."""

    def __init__(self, directory: Path, *args: str):
        if not shutil.which("redis-server"):
            missing("redis-server not on PATH (apt-get install redis-server)")
        self.directory = directory
        self.log_path = directory / "redis.log"
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(directory), "--logfile", str(self.log_path), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def wait_until_listening(self, address: tuple[str, int] | str) -> None:
        """Poll until a connect succeeds: redis-server announces readiness no other way."""
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        deadline = time.monotonic() + SERVER_START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log()}")
            with socket.socket(family) as sock:
                if sock.connect_ex(address) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not listen on {address}: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def servers() -> Iterator[list[RedisServer]]:
    """Collects the servers a test starts and stops them all afterwards."""
    started: list[RedisServer] = []
    yield started
    for server in started:
        server.stop()


@pytest.fixture
def acl_redis(tmp_path: Path, servers: list[RedisServer]) -> int:
    """A server where the default user needs a password and user alice has her own."""
    port = free_port()
    server = RedisServer(
        tmp_path, "--port", str(port), "--requirepass", ADMIN_PASSWORD,
        "--user", "alice", "on", f">{ALICE_PASSWORD}", "~*", "&*", "+@all",
    )
    servers.append(server)
    server.wait_until_listening(("127.0.0.1", port))
    return port


@pytest.fixture
def tls_redis(tmp_path: Path, servers: list[RedisServer]) -> tuple[int, Path]:
    """A TLS-only server with a fresh self-signed certificate for localhost."""
    if not shutil.which("openssl"):
        missing("openssl not on PATH (apt-get install openssl)")
    cert, key = tmp_path / "redis.crt", tmp_path / "redis.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    port = free_port()
    server = RedisServer(
        tmp_path, "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
        "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
        "--tls-auth-clients", "no",
    )
    servers.append(server)
    try:
        server.wait_until_listening(("127.0.0.1", port))
    except RuntimeError as error:
        if "tls" in str(error).lower():
            missing(f"this redis-server was built without TLS (Debian's has it): {error}")
        raise
    return port, cert


# --- keys, TTLs and what is stored ------------------------------------------------------


def run_meta(run_id: str) -> RunMeta:
    return RunMeta(run_id, "pytest", Mode.QUEUE, 2, ("tests/test_a.py",), 0.0)


def test_the_meta_round_trips_and_a_foreign_one_is_refused_in_one_line(
    redis_url: str, unique_id: str
) -> None:
    connection = connect(redis_url)
    run_queue = RunQueue(connection, unique_id)
    try:
        run_queue.publish_meta(run_meta(unique_id))
        assert run_queue.meta() == run_meta(unique_id)
        connection.set(run_queue.key("meta"), b'{"run_id": "x", "units": "not a list"}')
        with pytest.raises(MalformedMeta, match="not shardrun's"):
            run_queue.meta()
        connection.set(run_queue.key("meta"), b"\xff\xfe not json")
        with pytest.raises(MalformedMeta):
            run_queue.meta()
    finally:
        run_queue.delete()
        connection.close()


def test_every_key_of_a_run_is_namespaced_by_run_id_and_expires(
    redis_url: str, unique_id: str
) -> None:
    connection = connect(redis_url)
    run_queue = RunQueue(connection, unique_id)
    jobs = [shard_job(unique_id, 0), shard_job(unique_id, 1)]
    try:
        run_queue.enqueue(jobs)
        run_queue.push_result(shard_result(unique_id))
        run_queue.publish_meta(run_meta(unique_id))

        own_keys = sorted(key.decode() for key in connection.scan_iter(f"shardrun:{unique_id}:*"))
        assert own_keys == [f"shardrun:{unique_id}:meta", f"shardrun:{unique_id}:results"]
        rq_job_keys = [f"rq:job:{unique_id}-{job.batch_id}-1" for job in jobs]
        rq_queue_key = f"rq:queue:shardrun:{unique_id}"
        for key in [*own_keys, *rq_job_keys, rq_queue_key]:
            assert connection.ttl(key) > 0, f"{key} has no TTL"
    finally:
        run_queue.delete()
        connection.close()


def test_delete_leaves_none_of_the_runs_keys_behind(redis_url: str, unique_id: str) -> None:
    connection = connect(redis_url)
    run_queue = RunQueue(connection, unique_id)
    run_queue.enqueue([shard_job(unique_id)])
    run_queue.push_result(shard_result(unique_id))
    run_queue.publish_meta(run_meta(unique_id))
    register_run(connection, unique_id)

    run_queue.delete()

    assert list(connection.scan_iter(f"shardrun:{unique_id}:*")) == []
    assert connection.exists(*rq_keys(run_queue.rq_queue)) == 0
    assert unique_id not in active_runs(connection)
    connection.close()


def test_job_data_in_redis_is_json_never_pickle(redis_url: str, unique_id: str) -> None:
    connection = connect(redis_url)
    run_queue = RunQueue(connection, unique_id)
    job = shard_job(unique_id)
    try:
        run_queue.enqueue([job])
        raw = connection.hget(f"rq:job:{unique_id}-0-1", "data")
        assert raw is not None
        try:
            data = zlib.decompress(raw)  # rq compresses job data
        except zlib.error:
            data = raw
        assert not data.startswith(PICKLE_PROTOCOL_OPCODE)
        func_name, _instance, args, kwargs = json.loads(data)
        assert func_name == JOB_FUNCTION
        assert args == []
        assert kwargs == {"payload": job.to_dict()}
    finally:
        run_queue.delete()
        connection.close()


# --- results ----------------------------------------------------------------------------


def test_wait_result_returns_none_once_the_timeout_has_passed(
    redis_url: str, unique_id: str
) -> None:
    run_queue = RunQueue(connect(redis_url), unique_id)
    started = time.monotonic()
    assert run_queue.wait_result(0.3) is None
    assert 0.3 <= time.monotonic() - started < 0.3 + TIMEOUT_SLACK_SECONDS


def test_wait_result_may_block_longer_than_the_socket_timeout(
    redis_url: str, unique_id: str
) -> None:
    """A 1 s socket timeout must not cut a 2.5 s wait short with a TimeoutError."""
    run_queue = RunQueue(connect(redis_url, timeout=1.0), unique_id)
    started = time.monotonic()
    assert run_queue.wait_result(2.5) is None
    assert 2.5 <= time.monotonic() - started < 2.5 + TIMEOUT_SLACK_SECONDS


def test_wait_result_returns_a_pushed_result_at_once(redis_url: str, unique_id: str) -> None:
    run_queue = RunQueue(connect(redis_url), unique_id)
    expected = shard_result(unique_id)
    run_queue.push_result(expected)
    started = time.monotonic()
    assert run_queue.wait_result(30) == expected
    assert time.monotonic() - started < TIMEOUT_SLACK_SECONDS


def test_wait_result_wakes_up_when_a_result_arrives(redis_url: str, unique_id: str) -> None:
    run_queue = RunQueue(connect(redis_url), unique_id)
    pusher = RunQueue(connect(redis_url), unique_id)
    expected = shard_result(unique_id, 3)
    timer = threading.Timer(0.2, pusher.push_result, args=(expected,))
    started = time.monotonic()
    timer.start()
    try:
        assert run_queue.wait_result(30) == expected
    finally:
        timer.join()
    assert time.monotonic() - started < 0.2 + TIMEOUT_SLACK_SECONDS


def test_runs_do_not_see_each_others_results(redis_url: str, unique_id: str) -> None:
    connection = connect(redis_url)
    first = RunQueue(connection, f"{unique_id}-a")
    second = RunQueue(connection, f"{unique_id}-b")
    result = shard_result(first.run_id)
    first.push_result(result)
    assert second.wait_result(0.2) is None
    assert first.wait_result(1) == result
    assert first.wait_result(0.05) is None


def test_register_run_announces_the_run_until_it_is_deleted(
    redis_url: str, unique_id: str
) -> None:
    connection = connect(redis_url)
    run_queue = RunQueue(connection, unique_id)
    register_run(connection, unique_id)
    assert unique_id in active_runs(connection)
    run_queue.delete()
    assert unique_id not in active_runs(connection)


# --- connect(): every kind of URL -------------------------------------------------------


def test_connect_with_acl_user_and_password(acl_redis: int) -> None:
    client = connect(f"redis://alice:{ALICE_PASSWORD}@127.0.0.1:{acl_redis}/0")
    assert client.acl_whoami() == "alice"
    client.close()


def test_connect_with_the_default_users_password(acl_redis: int) -> None:
    client = connect(f"redis://:{ADMIN_PASSWORD}@127.0.0.1:{acl_redis}/0")
    assert client.acl_whoami() == "default"
    client.close()


@pytest.mark.parametrize(
    "credentials", ["alice:wrong-password@", ":wrong-password@", "nobody:x@", ""],
    ids=["wrong-user-password", "wrong-default-password", "unknown-user", "no-password"],
)
def test_connect_with_bad_credentials_is_one_line_without_the_password(
    acl_redis: int, credentials: str
) -> None:
    url = f"redis://{credentials}127.0.0.1:{acl_redis}/0"
    with pytest.raises(InfrastructureError) as caught:
        connect(url)
    message = str(caught.value)
    assert "\n" not in message
    assert "refused the login" in message
    assert "wrong-password" not in message
    assert f"127.0.0.1:{acl_redis}" in message


def test_connect_over_a_unix_socket(tmp_path: Path, servers: list[RedisServer]) -> None:
    socket_path = tmp_path / "redis.sock"
    server = RedisServer(
        tmp_path, "--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700"
    )
    servers.append(server)
    server.wait_until_listening(str(socket_path))
    client = connect(f"unix://{socket_path}")
    client.set("probe", "over the socket")
    assert client.get("probe") == b"over the socket"
    client.close()


@pytest.mark.parametrize("query", ["ssl_cert_reqs=none", "ssl_ca_certs={cert}"])
def test_connect_over_tls(tls_redis: tuple[int, Path], query: str) -> None:
    port, cert = tls_redis
    client = connect(f"rediss://localhost:{port}/0?{query.format(cert=cert)}")
    client.set("probe", "over TLS")
    assert client.get("probe") == b"over TLS"
    client.close()


def test_connect_over_tls_refuses_an_unknown_certificate(tls_redis: tuple[int, Path]) -> None:
    port, _cert = tls_redis
    with pytest.raises(InfrastructureError) as caught:
        connect(f"rediss://localhost:{port}/0", timeout=2)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:6379", "127.0.0.1:6379", "REDIS://127.0.0.1/0", "",
     "redis://127.0.0.1:notaport/0", "redis://127.0.0.1:99999/0",
     "redis://127.0.0.1:6379/0?ssl_cert_reqs=bogus"],
)
def test_connect_rejects_a_malformed_url_as_input_error(url: str) -> None:
    with pytest.raises(InputError) as caught:
        connect(url, timeout=1)
    assert "--redis-url" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_connect_to_nothing_listening_fails_within_the_timeout() -> None:
    port = free_port()  # free now, so nothing listens there
    started = time.monotonic()
    with pytest.raises(InfrastructureError) as caught:
        connect(f"redis://127.0.0.1:{port}/0")
    assert time.monotonic() - started < 5.0
    assert "unreachable" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_connect_gives_up_on_a_connect_that_never_completes() -> None:
    """A full accept backlog drops SYNs, as a firewall that swallows packets would."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        try:
            started = time.monotonic()
            with pytest.raises(InfrastructureError):
                connect(f"redis://127.0.0.1:{port}/0", timeout=1.0)
            assert time.monotonic() - started < 1.0 + TIMEOUT_SLACK_SECONDS
        finally:
            for filler in fillers:
                filler.close()


def test_connect_gives_up_on_a_server_that_never_answers() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        port = listener.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(InfrastructureError):
            connect(f"redis://127.0.0.1:{port}/0", timeout=1.0)
        assert time.monotonic() - started < 1.0 + TIMEOUT_SLACK_SECONDS


class _HttpLikeHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(1024)
        self.request.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


def test_connect_to_a_server_that_is_not_redis_is_an_infrastructure_error() -> None:
    with socketserver.TCPServer(("127.0.0.1", 0), _HttpLikeHandler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            port = server.server_address[1]
            with pytest.raises(InfrastructureError) as caught:
                connect(f"redis://127.0.0.1:{port}/0", timeout=2.0)
        finally:
            server.shutdown()
            thread.join()
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://alice:s3cret@host:6379/0", "redis://alice:***@host:6379/0"),
        ("redis://:s3cret@host:6379/0", "redis://***@host:6379/0"),
        ("rediss://alice:p@ss@word@host:6380/1", "rediss://alice:***@host:6380/1"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
        ("alice:s3cret@host:6379", "alice:***@host:6379"),
    ],
)
def test_redact_hides_the_password(url: str, shown: str) -> None:
    assert redact(url) == shown


@pytest.mark.parametrize("url", ["http://alice:s3cret@host", "alice:s3cret@host:6379"])
def test_a_url_with_a_bad_scheme_is_refused_without_showing_its_password(url: str) -> None:
    with pytest.raises(InputError) as caught:
        connect(url)
    assert "s3cret" not in str(caught.value)


def test_wait_results_takes_what_is_waiting_in_one_read(redis_url: str, unique_id: str) -> None:
    """A coordinator that fell behind reads the backlog in a few round trips, in order."""
    run_queue = RunQueue(connect(redis_url), unique_id)
    expected = [shard_result(unique_id, index) for index in range(5)]
    for result in expected:
        run_queue.push_result(result)
    assert run_queue.wait_results(1, limit=3) == expected[:3]
    assert run_queue.wait_results(1, limit=3) == expected[3:]
    assert run_queue.wait_results(0.05) == []


def test_started_batches_reports_only_the_batches_asked_for(
    redis_url: str, unique_id: str
) -> None:
    run_queue = RunQueue(connect(redis_url), unique_id)
    try:
        run_queue.hold_lease(3, 2, "host:1", 5)
        run_queue.hold_lease(4, 1, "host:2", 5)
        assert run_queue.started_batches([3, 5]) == {3: (2, "host:1")}
        assert run_queue.started_batches([]) == {}
        assert run_queue.leased([3, 4, 5]) == {3, 4}
    finally:
        run_queue.delete()
