"""Helpers for the hardening tests: the CLI as a process, and places that refuse writes.

Tests run as root in CI, where file permissions do not bind: a directory without write
permission is still writable. A read-only or a full file system is made for real with a
tmpfs mount where the kernel allows it (root), and with permissions otherwise.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.runs import run_command


def shardrun(*args: str, cwd: Path, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    """`python -m shardrun ARGS` in `cwd`, to the end, output captured."""
    return run_command([sys.executable, "-m", "shardrun", *args], cwd, env)


def one_line_error(completed: subprocess.CompletedProcess[str], exit_code: int) -> str:
    """The CLI's error contract: this exit code, one line on stderr, no traceback."""
    output = completed.stdout + completed.stderr
    assert completed.returncode == exit_code, output
    assert "Traceback" not in output, output
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("shardrun: error: "), lines[0]
    return lines[0]


@contextlib.contextmanager
def mounted_tmpfs(path: Path, *options: str) -> Iterator[Path]:
    """A tmpfs at `path` with mount `options` (e.g. "ro", "size=64k"), unmounted after.

    Skips when the kernel refuses (not root, or no CAP_SYS_ADMIN in a container).
    """
    path.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options or ("rw",)),
                            "tmpfs", str(path)], capture_output=True, text=True, check=False)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mount.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def read_only_directory(path: Path) -> Iterator[Path]:
    """`path` as a directory nobody (root included) can create files in."""
    if os.geteuid() != 0:
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    with mounted_tmpfs(path, "ro", "size=64k") as mounted:
        yield mounted


@contextlib.contextmanager
def full_directory(path: Path) -> Iterator[Path]:
    """`path` as a directory on a file system with no space left (ENOSPC on write)."""
    with mounted_tmpfs(path, "size=64k") as mounted:
        filler = mounted / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as stream:
            while True:
                stream.write(b"\0" * 4096)
                stream.flush()
        yield mounted
