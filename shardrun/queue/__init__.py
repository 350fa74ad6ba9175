"""Everything shardrun keeps in Redis. With rq_worker.py, the only code importing redis/rq.

The package: `keys` (namespacing, TTLs, retries), `leader` (a CI build's books), `live`
(`run --verbose`'s stream); RunQueue, here, has them all as methods.

One RQ queue per run (``shardrun:<run_id>``) carries shard jobs; results come back on a
list the coordinator blocks on, so nobody polls. Every key is built by `RunQueue.key`,
namespaced by run id and given a TTL so an abandoned run cleans itself up. RQ's JSON
serializer is used throughout: with its default (pickle), whoever can write to Redis runs
code on every worker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import redis
from rq import Queue, get_current_job
from rq.intermediate_queue import IntermediateQueue
from rq.serializers import JSONSerializer
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from shardrun.config import KEY_TTL_SECONDS, REDIS_TIMEOUT_SECONDS
from shardrun.errors import InfrastructureError, InputError
from shardrun.models import Batch, BatchResult, RunMeta
from shardrun.queue.keys import (
    KEY_PREFIX as KEY_PREFIX,
)
from shardrun.queue.keys import (
    MalformedMeta as MalformedMeta,
)
from shardrun.queue.keys import (
    RedisUnavailable as RedisUnavailable,
)
from shardrun.queue.keys import (
    _retrying,
)
from shardrun.queue.leader import MIN_BLOCK_SECONDS, LeaderKeys
from shardrun.queue.live import LiveStream
from shardrun.redaction import redact as redact

# The one callable a shardrun worker will execute (see rq_worker.ShardrunWorker).
JOB_FUNCTION = "shardrun.work.worker.run_shard"
URL_SCHEMES = ("redis://", "rediss://", "unix://")
# RQ's own kill timer must never fire before shardrun's process timeout has killed the
# test tree and reported it; this margin covers the kill grace period and the report.
RQ_TIMEOUT_MARGIN_SECONDS = 120
# A blocking read longer than the socket timeout (redis-py's default: 5 s) fails with
# TimeoutError, so a long BLPOP is cut into slices of at most this (and half that timeout).
BLOCK_SLICE_SECONDS = 1.0
# Results taken per round trip once one has arrived: a coordinator that fell behind
# catches up without one BLPOP per result.
RESULTS_PER_READ = 256
# Other modules name the connection type through this alias instead of importing redis.
Connection = redis.Redis


def connect(url: str, timeout: float = REDIS_TIMEOUT_SECONDS) -> redis.Redis:
    """Connect and PING, or raise InfrastructureError within about `timeout` seconds.

    Accepts redis://[user:password@]host:port/db, rediss:// (TLS) and unix:///path.sock.
    """
    if not url.startswith(URL_SCHEMES):
        raise InputError(
            f"--redis-url {redact(url)!r}: use redis://host:6379/0, rediss://... (TLS) "
            "or unix:///path/to/redis.sock"
        )
    try:
        # socket_timeout bounds the PING on a server that accepts but never answers.
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout, health_check_interval=30
        )
        client.ping()
    except (ValueError, TypeError) as error:  # a bad port or query option in the URL
        raise InputError(f"--redis-url {redact(url)}: {error}") from None
    # AuthenticationError is a ConnectionError: it must be caught first.
    except redis.exceptions.AuthenticationError as error:
        raise InfrastructureError(f"Redis at {redact(url)} refused the login: {error}") from None
    except (redis.exceptions.RedisError, OSError) as error:  # also a non-Redis server
        raise InfrastructureError(
            f"Redis unreachable at {redact(url)} ({error}); start Redis or pass a working "
            "--redis-url / SHARDRUN_REDIS_URL"
        ) from None
    return client


class RunQueue(LeaderKeys, LiveStream):
    """One run's keys, queue and result list on one Redis connection."""

    def __init__(
        self,
        connection: redis.Redis,
        run_id: str,
        ttl: int = KEY_TTL_SECONDS,
        redis_timeout: float = REDIS_TIMEOUT_SECONDS,
    ):
        self.connection = connection
        self.run_id = run_id
        self.ttl = ttl
        self.redis_timeout = redis_timeout
        self.rq_queue = Queue(
            queue_name(run_id), connection=connection, serializer=JSONSerializer
        )
        socket_timeout = connection.connection_pool.connection_kwargs.get("socket_timeout")
        # Each BLPOP must return well before the socket timeout would cut its read short.
        self.block_slice = (
            min(BLOCK_SLICE_SECONDS, socket_timeout / 2) if socket_timeout else BLOCK_SLICE_SECONDS
        )

    @_retrying
    def publish_meta(self, meta: RunMeta) -> None:
        self.connection.set(self.key("meta"), json.dumps(meta.to_dict()), ex=self.ttl)

    @_retrying
    def meta_present(self) -> bool:
        """False once Redis lost the run (restarted without persistence, or flushed)."""
        return bool(self.connection.exists(self.key("meta")))

    @_retrying
    def enqueue(self, jobs: Sequence[Batch], id_suffix: str = "") -> None:
        """Enqueue in the given order (the coordinator passes longest first).

        RQ job ids are batch and attempt; `id_suffix` tells apart a batch a worker passed
        on (a retry that should run elsewhere) from the job that worker is finishing.
        """
        with self.connection.pipeline() as pipe:
            for job in jobs:
                self.rq_queue.enqueue_call(
                    func=JOB_FUNCTION,
                    kwargs={"payload": job.to_dict()},
                    timeout=int(job.timeout_seconds) + RQ_TIMEOUT_MARGIN_SECONDS,
                    result_ttl=self.ttl,
                    ttl=self.ttl,
                    failure_ttl=self.ttl,
                    job_id=f"{self.run_id}-{job.batch_id}-{job.attempt}{id_suffix}",
                    pipeline=pipe,
                )
            pipe.expire(self.rq_queue.key, self.ttl)
            pipe.execute()

    @_retrying
    def push_result(self, result: BatchResult) -> None:
        with self.connection.pipeline() as pipe:
            pipe.rpush(self.key("results"), json.dumps(result.to_dict()))
            pipe.expire(self.key("results"), self.ttl)
            pipe.execute()

    @_retrying
    def wait_result(self, timeout: float) -> BatchResult | None:
        """Block up to `timeout` seconds for the next result; None if none arrived."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            block = max(min(remaining, self.block_slice), MIN_BLOCK_SECONDS)
            item = self.connection.blpop([self.key("results")], timeout=block)
            if item is not None:
                return BatchResult.from_dict(json.loads(item[1]))
            if remaining <= self.block_slice:
                return None

    def wait_results(self, timeout: float, limit: int = RESULTS_PER_READ) -> list[BatchResult]:
        """Block up to `timeout` seconds for a result, then take up to `limit` - 1 more
        that are already waiting; [] if none arrived."""
        first = self.wait_result(timeout)
        return [] if first is None else [first, *self._take_results(limit - 1)]

    @_retrying
    def _take_results(self, count: int) -> list[BatchResult]:
        if count < 1:
            return []
        key = self.key("results")
        with self.connection.pipeline(transaction=True) as pipe:  # LPOP count needs 6.2
            pipe.lrange(key, 0, count - 1)
            pipe.ltrim(key, count, -1)
            items, _ = pipe.execute()
        return [BatchResult.from_dict(json.loads(item)) for item in items]

    @_retrying
    def queued_batches(self) -> set[tuple[int, int]]:
        """(batch id, attempt) of the jobs still waiting in the queue, from their RQ ids."""
        prefix = f"{self.run_id}-"
        queued = set()
        for job_id in self.rq_queue.get_job_ids():
            parts = job_id.removeprefix(prefix).split("-")
            if job_id.startswith(prefix) and len(parts) >= 2 and parts[0].isdigit():
                queued.add((int(parts[0]), int(parts[1]) if parts[1].isdigit() else 0))
        return queued

    @_retrying
    def results_pending(self) -> bool:
        return bool(self.connection.llen(self.key("results")))

    def _lease_key(self, batch_id: int) -> str:
        return self.key("lease", str(batch_id))

    @_retrying
    def hold_lease(self, batch_id: int, attempt: int, worker: str, seconds: float) -> None:
        """Take or renew the lease, and record that this attempt started (and where)."""
        with self.connection.pipeline() as pipe:
            pipe.set(self._lease_key(batch_id), f"{attempt}|{worker}", px=int(seconds * 1000))
            pipe.hset(self.key("started"), str(batch_id), json.dumps([attempt, worker]))
            pipe.expire(self.key("started"), self.ttl)
            pipe.execute()

    @_retrying
    def release_lease(self, batch_id: int) -> None:
        self.connection.delete(self._lease_key(batch_id))

    @_retrying
    def started_batches(self, batch_ids: Sequence[int]) -> dict[int, tuple[int, str]]:
        """batch id -> (attempt, worker) of the latest start, for those of these batches
        that started. Asked for by id: the whole hash grows with the run."""
        if not batch_ids:
            return {}
        values = self.connection.hmget(self.key("started"), [str(b) for b in batch_ids])
        started = {}
        for batch, value in zip(batch_ids, values, strict=True):
            if value is not None:
                attempt, worker = json.loads(value)
                started[batch] = (int(attempt), str(worker))
        return started

    @_retrying
    def leased(self, batch_ids: Sequence[int]) -> set[int]:
        """Which of these batches a worker holds right now."""
        with self.connection.pipeline() as pipe:
            for batch_id in batch_ids:
                pipe.exists(self._lease_key(batch_id))
            answers = pipe.execute()
        return {batch for batch, held in zip(batch_ids, answers, strict=True) if held}

    # --- fail-fast: the coordinator tells every worker to stop taking batches

    @_retrying
    def request_stop(self, reason: str) -> None:
        self.connection.set(self.key("stop"), reason, ex=self.ttl)

    @_retrying
    def stop_reason(self) -> str | None:
        reason = self.connection.get(self.key("stop"))
        return _text(reason) if reason is not None else None

    @_retrying
    def workers_listening(self) -> int:
        """Live RQ workers serving this run's queue."""
        return int(self.connection.scard(WORKERS_BY_QUEUE_KEY % self.rq_queue.name))

    @_retrying
    def meta(self) -> RunMeta | None:
        """The run's published meta; InfrastructureError when what Redis holds is not one
        (anyone who can write to Redis can write there)."""
        raw = self.connection.get(self.key("meta"))
        if raw is None:
            return None
        try:
            return RunMeta.from_dict(json.loads(raw))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise MalformedMeta(
                f"the meta of run {self.run_id} in Redis is not shardrun's ({error}); "
                "another program wrote it: delete the key or use another build id"
            ) from None

    @_retrying
    def delete(self) -> None:
        """Drop the run's queue and keys once its report is written."""
        self.rq_queue.delete(delete_jobs=True)
        leases = list(self.connection.scan_iter(match=self.key("lease", "*"), count=1000))
        self.connection.delete(
            self.key("meta"), self.key("results"), self.key("started"), self.key("stop"),
            self.key("live"), *leases, *rq_keys(self.rq_queue),
        )
        unregister_run(self.connection, self.run_id)


def global_key(*parts: str) -> str:
    """Keys shared by all runs (the registry of active runs) live under shardrun:_:..."""
    return ":".join((KEY_PREFIX, "_", *parts))


def register_run(connection: redis.Redis, run_id: str, ttl: int = KEY_TTL_SECONDS) -> None:
    """Announce a run so that `shardrun worker` without --run-id finds its queue."""
    now = time.time()
    with connection.pipeline() as pipe:
        pipe.zadd(global_key("runs"), {run_id: now + ttl})
        pipe.zremrangebyscore(global_key("runs"), "-inf", now)
        pipe.expire(global_key("runs"), ttl)
        pipe.execute()


def unregister_run(connection: redis.Redis, run_id: str) -> None:
    connection.zrem(global_key("runs"), run_id)


def active_runs(connection: redis.Redis) -> list[str]:
    """Runs announced and not yet expired, oldest first."""
    members = connection.zrangebyscore(global_key("runs"), time.time(), "+inf")
    return [_text(member) for member in members]


def next_worker_number(connection: redis.Redis, group: str, ttl: int = KEY_TTL_SECONDS) -> int:
    """1, 2, 3, ... to the workers of one group (a compose project, a CI build) in the
    order they ask: each scaled container gets its own TEST_ENV_NUMBER without anyone
    keeping a count by hand. The counter expires with the group's other keys."""
    key = global_key("worker-numbers", group)
    with connection.pipeline() as pipe:
        pipe.incr(key)
        pipe.expire(key, ttl)
        number, _ = pipe.execute()
    return int(number)


def worker_numbers_given(connection: redis.Redis, group: str) -> int:
    """How many numbers `next_worker_number` gave in this group: its workers that started."""
    value = connection.get(global_key("worker-numbers", group))
    return int(value) if value is not None else 0


def _text(value: Any) -> str:
    """A Redis reply as text (the connection returns bytes; decode_responses would not)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def queue_name(run_id: str) -> str:
    return f"{KEY_PREFIX}:{run_id}"


def rq_keys(rq_queue: Queue) -> list[str]:
    """RQ's own keys for one run's queue: its job list, its job registries, the list a job
    passes through while dequeued, and the set of workers listening (a worker killed
    before its teardown never leaves that set)."""
    registries = (
        rq_queue.started_job_registry, rq_queue.finished_job_registry,
        rq_queue.failed_job_registry, rq_queue.canceled_job_registry,
        rq_queue.deferred_job_registry, rq_queue.scheduled_job_registry,
        rq_queue.ready_job_registry,
    )
    return [
        rq_queue.key, *(registry.key for registry in registries),
        IntermediateQueue.get_intermediate_queue_key(rq_queue.key),
        WORKERS_BY_QUEUE_KEY % rq_queue.name,
    ]


def expire_rq_keys(rq_queue: Queue, ttl: int = KEY_TTL_SECONDS) -> None:
    """RQ creates its registries without a TTL; give them the one every run key has."""
    with rq_queue.connection.pipeline() as pipe:
        for key in rq_keys(rq_queue):
            pipe.expire(key, ttl)
        pipe.execute()


# How long a worker keeps trying to deliver a result through a Redis outage: a finished
# batch is worth waiting for, the coordinator gives up on its own clock anyway.
WORKER_REDIS_TIMEOUT_SECONDS = 60.0


def current_run_queue(run_id: str) -> RunQueue:
    """Inside the job function: the run's queue on the connection the job came from."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("current_run_queue() called outside an RQ job")
    return RunQueue(job.connection, run_id, redis_timeout=WORKER_REDIS_TIMEOUT_SECONDS)
