"""A CI build's books in Redis: one leader at a time, and what any node can take over
or merge from (every batch, every collected result, the completion). Methods of RunQueue.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from shardrun.models import Batch, BatchResult
from shardrun.queue.keys import RunKeys, _retrying

# BLPOP's timeout 0 means "forever": the shortest wait we ask for instead.
MIN_BLOCK_SECONDS = 0.01
# Compare-and-delete: give the leader key up only while it still names this node.
_RELEASE_IF_HELD = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""
# Compare-and-expire: renew the leader key only while it still names this node.
_RENEW_IF_HELD = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""



class LeaderKeys(RunKeys):
    block_slice: float

    @_retrying
    def claim_leadership(self, node: str, seconds: float) -> bool:
        """SET NX: exactly one node of the build wins; the key lapses if that node dies."""
        return bool(self.connection.set(self.key("leader"), node, nx=True, px=int(seconds * 1000)))

    @_retrying
    def renew_leadership(self, node: str, seconds: float) -> bool:
        """Extend the lease only if `node` still holds it (compare and expire, atomically)."""
        held = self.connection.eval(
            _RENEW_IF_HELD, 1, self.key("leader"), node, str(int(seconds * 1000))
        )
        return bool(held)

    @_retrying
    def release_leadership(self, node: str) -> None:
        """Give up the lead at once (a cancelled node), only if `node` still holds it."""
        self.connection.eval(_RELEASE_IF_HELD, 1, self.key("leader"), node)

    @_retrying
    def save_batches(self, jobs: Sequence[Batch]) -> None:
        """The leader's ledger in Redis, so a node taking over knows every batch."""
        if not jobs:
            return
        with self.connection.pipeline() as pipe:
            pipe.hset(self.key("batches"),
                      mapping={str(job.batch_id): json.dumps(job.to_dict()) for job in jobs})
            pipe.expire(self.key("batches"), self.ttl)
            pipe.execute()

    @_retrying
    def load_batches(self) -> list[Batch]:
        raw = self.connection.hvals(self.key("batches"))
        return sorted((Batch.from_dict(json.loads(item)) for item in raw),
                      key=lambda job: job.batch_id)

    @_retrying
    def save_collected(self, result: BatchResult) -> None:
        """Keep an accepted result where every node (and a later leader) can read it."""
        with self.connection.pipeline() as pipe:
            pipe.hsetnx(self.key("collected"), str(result.batch_id),
                        json.dumps(result.to_dict()))
            pipe.expire(self.key("collected"), self.ttl)
            pipe.execute()

    @_retrying
    def collected(self) -> list[BatchResult]:
        raw = self.connection.hvals(self.key("collected"))
        return [BatchResult.from_dict(json.loads(item)) for item in raw]

    @_retrying
    def mark_complete(self, summary: dict[str, Any]) -> None:
        """The run is merged: nodes waiting for it (and retried jobs) read this."""
        with self.connection.pipeline() as pipe:
            pipe.set(self.key("complete"), json.dumps(summary), ex=self.ttl)
            pipe.rpush(self.key("completed"), "1")
            pipe.expire(self.key("completed"), self.ttl)
            pipe.execute()

    @_retrying
    def completion(self) -> dict[str, Any] | None:
        raw = self.connection.get(self.key("complete"))
        return json.loads(raw) if raw is not None else None

    @_retrying
    def wait_completion(self, timeout: float) -> dict[str, Any] | None:
        """Block (not poll) until the run is merged, or `timeout` passes."""
        block = max(min(timeout, self.block_slice), MIN_BLOCK_SECONDS)
        item = self.connection.blpop([self.key("completed")], timeout=block)
        if item is not None:  # leave the wake-up for the other nodes waiting too
            self.connection.rpush(self.key("completed"), item[1])
        return self.completion()

