"""Errors that reach the user as one line and a distinct exit code.

Domain code raises these with a message that names the file or option and says what to
do; only `cli.py` turns them into output and an exit status (DESIGN.md rule 5).
"""

from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_TESTS_FAILED = 1
EXIT_USAGE = 2
EXIT_INFRASTRUCTURE = 3


class ShardrunError(Exception):
    """Base class: a problem the user can fix; `exit_code` says which kind."""

    exit_code = EXIT_USAGE


class InputError(ShardrunError):
    """Bad input: a file that cannot be parsed, an option out of range, an empty suite."""

    exit_code = EXIT_USAGE


class InfrastructureError(ShardrunError):
    """Redis unreachable, workers lost, no redis-server to start: not the tests' fault."""

    exit_code = EXIT_INFRASTRUCTURE


# errno values that blame the machine rather than the path the user gave: a full disk or
# quota, a failing device. Anything else (no such directory, permission, read-only file
# system, a file where a directory should be) is a path the user can change: exit 2.
_MACHINE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})


def file_error(path: object, error: OSError, doing: str) -> ShardrunError:
    """The one-line error for an OSError while `doing` something with `path`.

    A full disk is an infrastructure error (exit 3), like an unreachable Redis; a bad or
    unwritable path is the user's to fix (exit 2). Neither is "tests failed" (exit 1).
    """
    reason = error.strerror or str(error)
    if error.errno in _MACHINE_ERRNOS:
        return InfrastructureError(f"{path}: cannot {doing} ({reason}); free space on that disk "
                                   "or point the option at another one")
    return InputError(f"{path}: cannot {doing} ({reason}); choose another path or fix its "
                      "permissions")
