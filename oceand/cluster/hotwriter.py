"""The engine's seam to the Redis hot state (issue 14): jobs' states written behind, in batches.

The engine calls `note(job, bucket_ts, state)` whenever a job's state changes, for example after a
closed bucket, an alarm or a fire. It never waits for Redis. A flush every `interval` (0.1 s):

- coalesces the notes, so only a job's latest state is written;
- looks up each job's shard and lease epoch at send time through `owner(job)`, which returns
  `(shard, epoch)` when this daemon may act on the job and None when it may not (such a state is
  dropped, because another daemon owns the job now);
- sends the writes through `HotState.write_states`, `batch` writes per pipeline.

Failures are handled per write:

- `fenced`: a newer owner wrote the job. `on_fenced(job)` is called so the caller can stop acting on the
  job's shard.
- Redis degraded (`skipped`) or a failed call (`error`): the job's latest state stays pending and goes out
  at the first flush after Redis answers again. Nothing is retried while Redis is degraded, and the
  pending set never holds more than one state per job.

For a takeover, `HotState.load_state(shard, job, stored)` picks the newer of the snapshot and the store's
state (HA.md §6.7 step 3).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from oceand.cluster.hotstate import HotState, StateWrite

log = logging.getLogger("oceand.redis")

FLUSH_INTERVAL = 0.1  # seconds between flushes: how far a snapshot may lag its job's state
BATCH = 500  # writes per pipeline round trip

Owner = Callable[[str], "tuple[int, int] | None"]


class HotStateWriter:
    def __init__(
        self,
        hot: HotState,
        owner: Owner,
        *,
        on_fenced: Callable[[str, int], None] | None = None,
        interval: float = FLUSH_INTERVAL,
        batch: int = BATCH,
    ) -> None:
        self.hot = hot
        self.owner = owner
        self.on_fenced = on_fenced
        self.interval = interval
        self.batch = batch
        self.pending: dict[str, tuple[int | None, dict[str, Any]]] = {}  # job -> (bucket_ts, state)

    def note(self, job: str, bucket_ts: int | None, state: dict[str, Any]) -> None:
        """The job's state changed: write it at the next flush (a later note replaces this one)."""
        self.pending[job] = (bucket_ts, state)

    def forget(self, job: str) -> None:
        """The job was removed or its shard released: nothing more is written for it."""
        self.pending.pop(job, None)
        self.hot.forget([job])

    async def flush(self) -> int:
        """Send what is pending (nothing while Redis is degraded); returns how many writes were stored."""
        if not self.pending or not self.hot.up:
            return 0
        taken, self.pending = self.pending, {}
        writes: list[StateWrite] = []
        for job, (bucket_ts, state) in taken.items():
            owned = self.owner(job)
            if owned is not None:
                writes.append(StateWrite(owned[0], owned[1], job, bucket_ts, state))
        stored = 0
        for i in range(0, len(writes), self.batch):
            chunk = writes[i : i + self.batch]
            results = await self.hot.write_states(chunk)
            for w, result in zip(chunk, results, strict=True):
                if result in ("ok", "unchanged"):
                    stored += result == "ok"
                elif result == "fenced":
                    if self.on_fenced is not None:
                        self.on_fenced(w.job, w.epoch)
                elif w.job not in self.pending:  # skipped or error: again once Redis answers
                    self.pending[w.job] = (w.bucket_ts, w.state)
        return stored

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every `interval` until `stop`, then once more (the last states, if Redis answers)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
            try:
                await self.flush()
            except Exception:  # never let the writer die: the next flush tries again
                log.exception("hot-state flush failed")
            if stop.is_set():
                return
