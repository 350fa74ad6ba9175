"""Shared fixtures: real Redis servers, real Ruby, the shared timing data.

Tests that need Ruby skip on a developer machine without it, but fail in CI (CI=true):
`.ci/run` installs Ruby, so a skip there would hide a missing install.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from support.requirements import missing
from support.runs import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_TIMINGS = REPO_ROOT.parent / "shared" / "data" / "timings"
FIXTURE_TIMINGS = REPO_ROOT / "tests" / "fixtures" / "timings"
SYSTEM_REDIS_URL = os.environ.get("SHARDRUN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def require_ruby() -> None:
    """Skip (fail in CI) unless `ruby`, `rspec` and the JUnit formatter are installed."""
    if not shutil.which("ruby") or not shutil.which("rspec"):
        missing("ruby/rspec not installed (apt-get install ruby ruby-rspec)")
    probe = subprocess.run(
        ["ruby", "-e", "require 'rspec_junit_formatter'"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        missing("rspec_junit_formatter not installed (apt-get install ruby-rspec-junit-formatter)")


@pytest.fixture
def require_minitest() -> None:
    """Skip (fail in CI) unless `ruby` can load minitest (apt-get install ruby-minitest)."""
    probe = subprocess.run(["ruby", "-e", "require 'minitest'"], capture_output=True,
                           check=False) if shutil.which("ruby") else None
    if probe is None or probe.returncode != 0:
        missing("ruby/minitest not installed (apt-get install ruby ruby-minitest)")


@pytest.fixture
def require_cucumber() -> None:
    """Skip (fail in CI) unless `cucumber` and its Ruby library are installed."""
    probe = subprocess.run(["ruby", "-e", "require 'cucumber'"], capture_output=True,
                           check=False) if shutil.which("ruby") else None
    if not shutil.which("cucumber") or probe is None or probe.returncode != 0:
        missing("cucumber not installed (apt-get install cucumber)")


@pytest.fixture
def redis_url() -> str:
    """The machine's Redis on 127.0.0.1:6379, for tests that neither stop nor fill it.

    Such tests must keep their keys under a unique run id (see `unique_id`).
    """
    client = redis.Redis.from_url(SYSTEM_REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        missing(f"no Redis answers at {SYSTEM_REDIS_URL} (start redis-server)")
    finally:
        client.close()
    return SYSTEM_REDIS_URL


@pytest.fixture
def unique_id() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of the test's own on a free port, for tests that stop or break Redis."""
    if not shutil.which("redis-server"):
        missing("redis-server not on PATH (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    _wait_for_port(port)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"redis-server did not listen on port {port} within {timeout}s")


@pytest.fixture
def shared_timings() -> Path:
    """../shared/data/timings: real timing files committed by public projects.

    Skips on a developer machine without it, but fails in CI (CI=true), where a copy of
    shared/ is laid beside the checkout: a skip there would hide the tests silently.
    """
    if not SHARED_TIMINGS.is_dir():
        missing(f"{SHARED_TIMINGS} not present (../shared/data/timings beside the checkout)")
    return SHARED_TIMINGS


@pytest.fixture
def fixture_timings() -> Path:
    """tests/fixtures/timings: copies of the few shared files some tests check exactly."""
    return FIXTURE_TIMINGS
