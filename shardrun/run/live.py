"""The coordinator's side of `shardrun run --verbose`: read what workers finished.

Workers append each finished test to the run's live stream (work/live.py, queue.py);
the watch loop calls a `LiveTail` once per tick, which hands the new entries to the CLI
to print. The stream is read without blocking, so the loop's own wait for results and
its lease checks keep their pace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from shardrun.errors import ShardrunError
from shardrun.queue import RunQueue

LiveCallback = Callable[[list[dict[str, Any]]], None]


class LiveTail:
    """Reads the run's live stream from where it left off; one call per watch tick."""

    def __init__(self, run_queue: RunQueue, on_entries: LiveCallback) -> None:
        self.run_queue = run_queue
        self.on_entries = on_entries
        self.cursor = "0"

    def __call__(self) -> None:
        # A live line is a view: a Redis hiccup here must not end the run (the watch
        # loop's own calls decide that).
        with contextlib.suppress(ShardrunError):
            while True:
                self.cursor, entries = self.run_queue.read_live(self.cursor)
                if not entries:
                    return
                self.on_entries(entries)
