"""Errors that reach the user as one line and a distinct exit code.

Domain code raises these with a message that names the file or option and says what to
do; only `cli.py` turns them into output and an exit status (DESIGN.md rule 5).
"""

from __future__ import annotations

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
