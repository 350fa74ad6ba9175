"""The live stream of finished tests (`run --verbose`): methods of RunQueue."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from shardrun.queue.keys import RunKeys, _retrying

# The live stream of finished tests (`run --verbose`) keeps about this many entries: the
# coordinator reads it every second, so only a stalled reader ever needs more.
LIVE_STREAM_MAX_ENTRIES = 10_000
# Live entries read per round trip: a second's worth of a fast suite's tests.
LIVE_PER_READ = 1000



class LiveStream(RunKeys):
    @_retrying
    def append_live(self, entries: Sequence[dict[str, Any]]) -> None:
        """Add finished tests to the run's stream (capped, with the run's TTL)."""
        if not entries:
            return
        key = self.key("live")
        with self.connection.pipeline() as pipe:
            for entry in entries:
                pipe.xadd(key, {"d": json.dumps(entry)}, maxlen=LIVE_STREAM_MAX_ENTRIES,
                          approximate=True)
            pipe.expire(key, self.ttl)
            pipe.execute()

    @_retrying
    def read_live(self, after: str) -> tuple[str, list[dict[str, Any]]]:
        """Entries added after the stream id `after` ("0" for all), without blocking;
        returns the id to read after next time and the entries."""
        answer: Any = self.connection.xread({self.key("live"): after}, count=LIVE_PER_READ)
        entries: list[dict[str, Any]] = []
        for _, items in answer or ():
            for entry_id, fields in items:
                after = _text(entry_id)
                entry = json.loads(fields.get(b"d", b"{}"))
                if isinstance(entry, dict):
                    entries.append(entry)
        return after, entries

    # --- leases: a running batch is held by a key its worker keeps renewing



def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
