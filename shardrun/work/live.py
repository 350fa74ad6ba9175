"""A worker's side of `shardrun run --verbose`: finished tests, sent as they finish.

Why: a run's test output only reached `.shardrun/logs/` and the merged report, so nobody
could watch a test finish. The runner already reports each test as it finishes (warm.py);
this module passes those `finish` events on to the run's live stream in Redis (queue.py),
which the coordinator's watch loop prints. Nothing is written unless the run asked for it
(its meta's `live` level): without --verbose a batch costs no extra Redis write.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from shardrun import queue
from shardrun.errors import ShardrunError
from shardrun.models import RunMeta

log = logging.getLogger(__name__)
# Finished tests are sent in bundles at most this far apart: a person sees them within
# a fraction of a second, and a fast suite does not pay one round trip per test.
FLUSH_SECONDS = 0.2
# A live write must never hold up a batch: it gives up after this long (the lines are
# only a view; the result still carries every test).
LIVE_REDIS_TIMEOUT_SECONDS = 1.0
# Captured output per test, per stream, in a live entry (-vv): the start and end of a
# long output are what a person reads; the report keeps the whole of it.
OUTPUT_CHARS = 4000
# `live` levels in the run's meta: 1 each test's result line (--verbose), 2 also its
# captured output (-vv).
RESULTS, OUTPUT = 1, 2


def live_level(meta: RunMeta | None) -> int:
    """The run's live level, 0 when it asked for none (or published no meta)."""
    return meta.live if meta is not None else 0


def live_entry(event: Mapping[str, Any], worker_index: int, level: int) -> dict[str, Any] | None:
    """What the coordinator prints of a runner's `finish` event; None for other events."""
    if event.get("e") != "finish" or not isinstance(event.get("id"), str):
        return None
    seconds = event.get("seconds")
    entry: dict[str, Any] = {
        "w": worker_index, "id": event["id"], "outcome": str(event.get("outcome", "")),
        "seconds": seconds if isinstance(seconds, (int, float)) else None,
    }
    if level >= OUTPUT:
        for field in ("stdout", "stderr", "message"):
            text = event.get(field)
            if isinstance(text, str) and text:
                entry[field] = _clipped(text)
    return entry


def _clipped(text: str) -> str:
    if len(text) <= OUTPUT_CHARS:
        return text
    half = OUTPUT_CHARS // 2
    left_out = len(text) - OUTPUT_CHARS
    return f"{text[:half]}\n... ({left_out} characters left out) ...\n{text[-half:]}"


class LiveFeed:
    """One batch's finished tests on their way to the run's live stream."""

    def __init__(self, connection: queue.Connection, run_id: str, worker_index: int,
                 level: int) -> None:
        self.run_queue = queue.RunQueue(connection, run_id,
                                        redis_timeout=LIVE_REDIS_TIMEOUT_SECONDS)
        self.worker_index = worker_index
        self.level = level
        self.pending: list[dict[str, Any]] = []
        self.flushed_at = time.monotonic()

    def on_event(self, event: dict[str, Any]) -> None:
        """The runner's event callback (warm.RunnerProcess.run's `on_event`)."""
        entry = live_entry(event, self.worker_index, self.level)
        if entry is None:
            return
        self.pending.append(entry)
        if time.monotonic() - self.flushed_at >= FLUSH_SECONDS:
            self.flush()

    def tick(self) -> None:
        """Between events (the batch's poll): send what waited long enough, so a test
        that finished before a long one shows now, not when the long one ends."""
        if self.pending and time.monotonic() - self.flushed_at >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Send what is pending; called at the end of the batch too, before its result."""
        entries, self.pending = self.pending, []
        self.flushed_at = time.monotonic()
        try:
            self.run_queue.append_live(entries)
        except ShardrunError as error:
            log.warning("could not send %d live result(s): %s", len(entries), error)
