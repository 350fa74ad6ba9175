"""A pool of worker containers that numbers and counts itself (`docker compose --scale`).

Why: with `--scale worker=8` every container ran with the same TEST_ENV_NUMBER (so they
shared one test database), and the coordinator sized its batches from a WORKERS variable
that had to be kept equal to the scale by hand. Now each worker of a group (one compose
project, one build) takes the next number from a Redis counter of that group as it
starts, and a coordinator that runs no workers of its own (`ci --workers 0`) sizes its
batches for as many workers as took a number.
"""

from __future__ import annotations

from shardrun import queue
from shardrun.config import REDIS_TIMEOUT_SECONDS
from shardrun.errors import InfrastructureError


def take_worker_number(url: str, group: str, timeout: float = REDIS_TIMEOUT_SECONDS) -> int:
    """This worker's 1-based index in `group` (TEST_ENV_NUMBER "" for 1, then "2", ...)."""
    connection = queue.connect(url, timeout)
    try:
        return queue.next_worker_number(connection, group)
    finally:
        connection.close()


def started_workers(url: str, group: str, timeout: float = REDIS_TIMEOUT_SECONDS) -> int | None:
    """How many workers of `group` have started; None when none did or Redis cannot be
    reached (the CI node then falls back as it would anyway)."""
    try:
        connection = queue.connect(url, timeout)
    except InfrastructureError:
        return None
    try:
        return queue.worker_numbers_given(connection, group) or None
    finally:
        connection.close()
