"""`shardrun run`: one session on local workers, on the given Redis or a private one.

The steps of a run are the session's (run/session.py); what is local here is the
private redis-server (embedded.py), the worker processes (pool.py), a run id of its own
and the books kept in this process (session.LocalBooks). `shardrun ci` is the same
session with the books in Redis (ci_node.py).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from shardrun import queue
from shardrun.errors import (
    ShardrunError,
)
from shardrun.phases import mark
from shardrun.plan.discovery import Suite
from shardrun.plan.gather import find_suite, plan_suite
from shardrun.run.embedded import EmbeddedRedis, describe_redis_server
from shardrun.run.live import LiveCallback
from shardrun.run.options import (
    RunOptions,
    RunOutcome,
    checked_interpreter,
    planned_line,
    suite_prewarm,
    suite_spec,
)
from shardrun.run.pool import LocalWorkers
from shardrun.run.session import LocalBooks, Session, lead
from shardrun.run.watch import ProgressCallback
from shardrun.runners.interpreter import Interpreter


def run(
    options: RunOptions, on_progress: ProgressCallback | None = None,
    announce: Callable[[str], None] = lambda line: None,
    on_live: LiveCallback | None = None,
) -> RunOutcome:
    """Run the suite on N local workers, on the given Redis or a private one; `announce`
    hears each step before it is taken, so a person sees the run start at once."""
    started_at = time.time()  # the run's time includes planning and the private Redis
    suite = find_suite(options.request)
    if options.redis_url:
        hearers = _hearers(suite, options, on_progress, announce, on_live)
        announce(f"Redis: {queue.redact(options.redis_url)}")
        return _run_on(options.redis_url, options, suite, hearers, started_at)
    embedded = EmbeddedRedis()
    try:
        embedded.launch()  # it boots while the interpreter is checked: two waits in one
        hearers = _hearers(suite, options, on_progress, announce, on_live)
        embedded.wait_until_ready()
        mark("redis ready")
        announce(describe_redis_server(embedded.binary or "redis-server"))
        outcome = _run_on(embedded.url, options, suite, hearers, started_at)
    finally:
        embedded.stop()
    mark("redis stopped")
    return outcome


def _hearers(
    suite: Suite, options: RunOptions, on_progress: ProgressCallback | None,
    announce: Callable[[str], None], on_live: LiveCallback | None,
) -> Hearers:
    """Before any worker boots a runner with it: exit 2 if the interpreter cannot run
    pytest (one interpreter start, about 50 ms)."""
    return Hearers(on_progress, announce, on_live, checked_interpreter(suite, options))


@dataclass(frozen=True)
class Hearers:
    """Who hears about the run as it goes: the progress line, the opening lines, and
    (`--verbose`) each test as it finishes."""

    on_progress: ProgressCallback | None
    announce: Callable[[str], None]
    on_live: LiveCallback | None
    interpreter: Interpreter | None = None  # pytest's, for the opening line


def _run_on(
    url: str, options: RunOptions, suite: Suite, hearers: Hearers, started_at: float,
) -> RunOutcome:
    connection = queue.connect(url, options.redis_timeout)
    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    run_queue = queue.RunQueue(connection, run_id, redis_timeout=options.redis_timeout)
    root = options.request.root
    log_dir = root / ".shardrun" / "logs" / run_id
    try:
        # The workers' runners boot the suite while the coordinator plans and batches.
        with LocalWorkers(url, run_id, options.worker_processes, root, log_dir,
                          suite_prewarm(suite, options), suite_spec(suite, options)) as workers:
            mark("workers started")
            planned = plan_suite(options.request, suite)
            mark("planned")
            hearers.announce(planned_line(planned, options, hearers.interpreter))
            for note in planned.notes:
                hearers.announce(note)
            session = Session(run_queue, planned, options, LocalBooks(), workers, started_at,
                              hearers.on_live)
            outcome = lead(session, hearers.on_progress)
        mark("workers stopped")
    finally:
        _forget(run_queue, connection)
    assert outcome is not None  # a local run's lead is never lost
    return outcome


def _forget(run_queue: queue.RunQueue, connection: queue.Connection) -> None:
    with contextlib.suppress(ShardrunError):  # Redis gone: every key expires on its own
        run_queue.delete()
    connection.close()
