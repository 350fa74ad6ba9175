"""What every part of a run's Redis state shares: its keys, its TTL, retries.

Split from the queue module so the CI leader's books (leader.py) and the live stream
(live.py) can live in modules of their own and still be methods of one RunQueue.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from shardrun.errors import InfrastructureError

KEY_PREFIX = "shardrun"
# Backoff between retries of a Redis call that lost its connection: short first (a
# dropped connection usually reconnects at once), then up to once a second.
FIRST_RETRY_SECONDS = 0.05
MAX_RETRY_SECONDS = 1.0
_RETRYABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

log = logging.getLogger("shardrun.queue")
_Result = TypeVar("_Result")


class RedisUnavailable(InfrastructureError):
    """Redis did not answer for longer than the run's --redis-timeout."""


class MalformedMeta(InfrastructureError):
    """The run's meta key holds something shardrun did not write."""


def _retrying(method: Callable[..., _Result]) -> Callable[..., _Result]:
    """Retry a RunQueue call through dropped connections with backoff, for at most the
    queue's `redis_timeout` seconds; then raise RedisUnavailable (exit 3)."""

    @functools.wraps(method)
    def wrapper(self: RunKeys, *args: Any, **kwargs: Any) -> _Result:
        deadline, delay = None, FIRST_RETRY_SECONDS
        while True:
            try:
                return method(self, *args, **kwargs)
            except _RETRYABLE as error:
                now = time.monotonic()
                deadline = deadline if deadline is not None else now + self.redis_timeout
                if now >= deadline:
                    raise RedisUnavailable(
                        f"Redis did not answer for {self.redis_timeout:.0f} s ({error}); "
                        "check the server or raise --redis-timeout"
                    ) from None
                log.warning("Redis call failed (%s); retrying", error)
                time.sleep(min(delay, deadline - now))
                delay = min(delay * 2, MAX_RETRY_SECONDS)

    return wrapper



class RunKeys:
    """One run's place in Redis: the connection, the run id every key is namespaced by,
    the TTL every key gets, and how long a call may retry through a dropped connection."""

    connection: redis.Redis
    run_id: str
    ttl: int
    redis_timeout: float

    def key(self, *parts: str) -> str:
        """The one place a Redis key is spelled: shardrun:<run_id>:<parts...>."""
        return ":".join((KEY_PREFIX, self.run_id, *parts))
