"""Everything shardrun keeps in Redis, and the only module that imports redis or rq.

One RQ queue per run (``shardrun:<run_id>``) carries shard jobs; results come back on a
list the coordinator blocks on, so nobody polls. Every key is built by `RunQueue.key`,
namespaced by run id and given a TTL so an abandoned run cleans itself up. RQ's JSON
serializer is used throughout: with its default (pickle), whoever can write to Redis runs
code on every worker.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis
from rq import Queue, SimpleWorker, get_current_job
from rq.exceptions import DeserializationError
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from shardrun.config import KEY_TTL_SECONDS, REDIS_TIMEOUT_SECONDS
from shardrun.errors import InfrastructureError, InputError
from shardrun.models import ShardJob, ShardResult

# The one callable a shardrun worker will execute (see ShardrunWorker.execute_job).
JOB_FUNCTION = "shardrun.worker.run_shard"
KEY_PREFIX = "shardrun"
URL_SCHEMES = ("redis://", "rediss://", "unix://")
# RQ's own kill timer must never fire before shardrun's process timeout has killed the
# test tree and reported it; this margin covers the kill grace period and the report.
RQ_TIMEOUT_MARGIN_SECONDS = 120
# A blocking read longer than the socket timeout (redis-py's default: 5 s) fails with
# TimeoutError, so a long BLPOP is cut into slices of at most this (and half that timeout).
BLOCK_SLICE_SECONDS = 1.0
# BLPOP's timeout 0 means "forever": the shortest wait we ask for instead.
MIN_BLOCK_SECONDS = 0.01

log = logging.getLogger(__name__)
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


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, separator, rest = url.partition("://")
    if not separator:  # no scheme at all: "user:password@host:6379"
        scheme, rest = "", url
    if "@" not in rest:
        return url
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    hidden = f"{user}:***" if user else "***"
    return f"{scheme}{separator}{hidden}@{host}"


class RunQueue:
    """One run's keys, queue and result list on one Redis connection."""

    def __init__(self, connection: redis.Redis, run_id: str, ttl: int = KEY_TTL_SECONDS):
        self.connection = connection
        self.run_id = run_id
        self.ttl = ttl
        self.rq_queue = Queue(
            queue_name(run_id), connection=connection, serializer=JSONSerializer
        )
        socket_timeout = connection.connection_pool.connection_kwargs.get("socket_timeout")
        # Each BLPOP must return well before the socket timeout would cut its read short.
        self.block_slice = (
            min(BLOCK_SLICE_SECONDS, socket_timeout / 2) if socket_timeout else BLOCK_SLICE_SECONDS
        )

    def key(self, *parts: str) -> str:
        """The one place a Redis key is spelled: shardrun:<run_id>:<parts...>."""
        return ":".join((KEY_PREFIX, self.run_id, *parts))

    def publish_meta(self, meta: dict[str, Any]) -> None:
        self.connection.set(self.key("meta"), json.dumps(meta), ex=self.ttl)

    def enqueue(self, jobs: Sequence[ShardJob]) -> None:
        """Enqueue in the given order (the coordinator passes longest first)."""
        with self.connection.pipeline() as pipe:
            for job in jobs:
                self.rq_queue.enqueue_call(
                    func=JOB_FUNCTION,
                    kwargs={"payload": job.to_dict()},
                    timeout=int(job.timeout_seconds) + RQ_TIMEOUT_MARGIN_SECONDS,
                    result_ttl=self.ttl,
                    ttl=self.ttl,
                    failure_ttl=self.ttl,
                    job_id=f"{self.run_id}-{job.shard_index}-{job.attempt}",
                    pipeline=pipe,
                )
            pipe.expire(self.rq_queue.key, self.ttl)
            pipe.execute()

    def push_result(self, result: ShardResult) -> None:
        with self.connection.pipeline() as pipe:
            pipe.rpush(self.key("results"), json.dumps(result.to_dict()))
            pipe.expire(self.key("results"), self.ttl)
            pipe.execute()

    def wait_result(self, timeout: float) -> ShardResult | None:
        """Block up to `timeout` seconds for the next result; None if none arrived."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            block = max(min(remaining, self.block_slice), MIN_BLOCK_SECONDS)
            item = self.connection.blpop([self.key("results")], timeout=block)
            if item is not None:
                return ShardResult.from_dict(json.loads(item[1]))
            if remaining <= self.block_slice:
                return None

    def failed_job_ids(self) -> list[str]:
        """Jobs RQ marked failed (refused, or the job function itself crashed)."""
        return list(self.rq_queue.failed_job_registry.get_job_ids())

    def job_payload(self, job_id: str) -> dict[str, Any] | None:
        job = Job.fetch(job_id, connection=self.connection, serializer=JSONSerializer)
        payload = job.kwargs.get("payload")
        return payload if isinstance(payload, dict) else None

    def delete(self) -> None:
        """Drop the run's queue and keys once its report is written."""
        self.rq_queue.delete(delete_jobs=True)
        self.connection.delete(self.key("meta"), self.key("results"), *rq_keys(self.rq_queue))
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
    return [member.decode() for member in members]


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


def report_result(result: ShardResult) -> None:
    """Called inside the job function: push the result to the run that enqueued it."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("report_result() called outside an RQ job")
    RunQueue(job.connection, result.run_id).push_result(result)


class ShardrunWorker(SimpleWorker):
    """An RQ worker that runs shardrun's job function and nothing else.

    SimpleWorker (no fork per job) keeps dispatch overhead in milliseconds; the test
    process tree is isolated by shardrun.process instead.
    """

    def execute_job(self, job: Job, queue: Queue) -> None:
        reason = refusal(job)
        if reason is None:
            super().execute_job(job, queue)
        else:
            log.error("refused job %s: %s", job.id, reason)
            job.webhooks = []  # recording the failure would send them
            self.handle_job_failure(job=job, queue=queue, exc_string=f"refused: {reason}")
        expire_rq_keys(queue)  # the registries this job just created or joined


def refusal(job: Job) -> str | None:
    """Why a worker must not run `job`, or None for a job shardrun itself enqueued.

    A callback is another callable RQ would import and call, a webhook an HTTP request to
    any URL: shardrun's jobs have neither. The callback names are read from the private
    attributes because the public properties import the callable.
    """
    try:
        func_name = job.func_name
    except DeserializationError:  # e.g. a pickle, which the JSON serializer never loads
        return "its data is not JSON; shardrun jobs are"
    if func_name != JOB_FUNCTION:
        return f"it names {func_name!r}; shardrun workers only run {JOB_FUNCTION}"
    callbacks = [
        name
        for name in (
            job._success_callback_name, job._failure_callback_name, job._stopped_callback_name
        )
        if name
    ]
    if callbacks:
        return f"it carries callback(s) {', '.join(callbacks)}; shardrun jobs have none"
    if job.webhooks:
        return "it carries webhooks; shardrun jobs have none"
    return None


def work(connection: redis.Redis, run_ids: Sequence[str], *, burst: bool) -> bool:
    """Work the given runs' queues; returns whether any job was processed."""
    worker = ShardrunWorker(
        [queue_name(run_id) for run_id in run_ids],
        connection=connection,
        serializer=JSONSerializer,
        name=f"shardrun-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
    )
    return worker.work(burst=burst, logging_level="WARNING")
