"""Writing the files shardrun produces without clobbering what the user pointed it at.

Why a module of its own: the merged JUnit (`--junit-out`), the dashboard (`--out`) and
the timing history are written by different modules, and each used to rename a temp file
over its path. That turns a symlink, a FIFO or a character device (`/dev/null`,
`/dev/stdout`) into a regular file. The rule here, once for all three:

- a symlink is followed: the file it points to is written, the link stays;
- a path that is not a regular file (FIFO, character device) is written in place, as
  `>` in a shell would;
- a regular file (or a new one) gets a temp file in the same directory and a rename, so a
  CI uploader or a concurrent reader sees the old or the new content, never half of it.

Every OSError becomes a one-line ShardrunError (errors.file_error): exit 3 for a full
disk, exit 2 for a path the user can change. The lock serialises the read-merge-write of
the timing history between shardrun processes in one checkout (history.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from shardrun.errors import InputError, file_error

# Mode of a new file: reports and histories are shared artifacts, read by CI uploaders
# running as other users (mkstemp alone would make them 0600).
NEW_FILE_MODE = 0o644
LOCK_SUFFIX = ".lock"


def write_text(path: Path, text: str, what: str) -> None:
    """Write `text` to `path` (through symlinks, in place for non-regular files).

    `what` names the file in errors ("merged JUnit", "timing history").
    """
    try:
        if _is_special(path):  # stat follows symlinks, /dev/stdout's /proc link included
            _write_in_place(path, text)
        else:
            target = Path(os.path.realpath(path))  # a regular file, or none yet
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(target, text)
    except OSError as error:
        raise file_error(path, error, f"write the {what}") from None


def _is_special(path: Path) -> bool:
    """An existing path that is not a regular file: a FIFO, a device, a socket."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return False
    return not stat.S_ISREG(mode)


def _write_in_place(path: Path, text: str) -> None:
    """Open and write, no temp file: a FIFO's reader or a terminal gets the bytes."""
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(text)


def _write_atomically(path: Path, text: str) -> None:
    """Temp file beside `path`, fsync, rename: readers see the old or the new file."""
    mode = path.stat().st_mode & 0o777 if path.exists() else NEW_FILE_MODE
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                         dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def locked(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive flock on `<path>.lock` (made if needed, never deleted).

    A separate lock file because the data file itself is replaced by rename: a lock on
    the old inode would not exclude a process that opened the new one. The lock file is
    never removed, since removing it would let two processes lock two different inodes.
    The kernel drops the lock when the process dies, SIGKILL included.
    """
    lock_path = path.with_name(path.name + LOCK_SUFFIX)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, NEW_FILE_MODE)
    except OSError as error:
        raise file_error(path, error, f"write the {what} (its lock file)") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the flock


def read_regular_bytes(path: Path, what: str) -> bytes | None:
    """The bytes of a regular file (symlinks followed), None if there is none at `path`.

    Refuses FIFOs and devices: reading /dev/zero or a FIFO without a writer never ends.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    except OSError as error:
        raise file_error(path, error, f"read the {what}") from None
    if not stat.S_ISREG(mode):
        raise InputError(f"{path}: cannot read the {what}: not a regular file (a directory, "
                         "FIFO or device); point the option at a file")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise file_error(path, error, f"read the {what}") from None
