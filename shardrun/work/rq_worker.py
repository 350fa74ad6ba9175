"""The RQ worker class: runs shardrun's own job function and refuses anything else.

Apart from queue.py (keys, jobs, results) because it is the security boundary: with RQ,
whoever can write to the queue chooses what a worker imports and calls. Together with
queue.py it is the only code that imports redis or rq.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import uuid
from collections.abc import Sequence

import redis
from rq import Queue, SimpleWorker
from rq.exceptions import DeserializationError
from rq.job import Job
from rq.serializers import JSONSerializer

from shardrun.queue import JOB_FUNCTION, expire_rq_keys, queue_name

log = logging.getLogger(__name__)


class ShardrunWorker(SimpleWorker):
    """An RQ worker that runs shardrun's job function and nothing else.

    SimpleWorker (no fork per job) keeps dispatch overhead in milliseconds; the test
    process tree is isolated by shardrun.work.process instead.
    """

    def subscribe(self) -> None:
        """No command channel. RQ subscribes every worker to a pub/sub channel for `rq`'s
        shutdown/kill-horse commands, which shardrun never sends; its listener thread
        could hold up every exit by a second (RQ joins it with a 1 s timeout), and it
        costs each worker one more Redis connection."""

    def unsubscribe(self) -> None:
        """Nothing was subscribed."""

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
    # RQ installs its own SIGINT/SIGTERM handlers for the loop; put ours back afterwards,
    # or a SIGTERM while idle between runs (docker stop) raises RQ's StopRequested.
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return worker.work(burst=burst, logging_level="WARNING")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
