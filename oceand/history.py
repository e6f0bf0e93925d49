"""Recorded history per job (PRODUCT.md §13): each evaluated bucket's rule values, the ready / running /
desired counts and the decision id, kept in the store's `history` table.

The engine calls `record` on its hot path: an append to a bounded in-memory buffer, nothing else. The
`run` task writes the buffer in batches of `batch` rows per transaction every `flush_interval` (so the
store's cost is one transaction per batch, not one per job and period), and every `prune_interval` rolls
rows older than `rollup_after` up to 1-minute rows and deletes rows older than `retention`, `batch` rows
per transaction with the event loop running in between. When the store is slow or down and the buffer
holds `max_buffer` rows, new rows are dropped and counted (`on_dropped`); scaling never waits for history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from oceand.store import Store, StoreError

log = logging.getLogger("oceand.history")

Clock = Callable[[], float]


class HistoryRecorder:
    def __init__(
        self,
        store: Store,
        *,
        retention: float = 8 * 86400.0,
        rollup_after: float = 86400.0,
        flush_interval: float = 5.0,
        max_buffer: int = 200_000,
        batch: int = 5000,
        prune_interval: float = 60.0,
        clock: Clock = time.time,
        on_dropped: Callable[[int], None] | None = None,
        on_written: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.retention = retention
        self.rollup_after = rollup_after
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self.batch = batch
        self.prune_interval = prune_interval
        self.clock = clock
        self.on_dropped = on_dropped
        self.on_written = on_written
        self._rows: list[dict[str, Any]] = []
        self.dropped = 0

    def record(
        self,
        job: str,
        t: float,
        values: Mapping[str, float | None],
        ready: int,
        running: int | None,
        desired: int,
        decision: int | None,
    ) -> None:
        """Buffer one evaluated period (rules without a value that period are left out)."""
        if len(self._rows) >= self.max_buffer:
            self.dropped += 1
            if self.on_dropped is not None:
                self.on_dropped(1)
            return
        self._rows.append(
            {
                "job": job,
                "t": float(t),
                "values": {k: float(v) for k, v in values.items() if v is not None},
                "ready": ready,
                "running": ready if running is None else running,
                "desired": desired,
                "decision": decision,
            }
        )

    @property
    def buffered(self) -> int:
        return len(self._rows)

    async def flush(self) -> int:
        """Write the buffered rows, `batch` per transaction; rows not written stay buffered."""
        written = 0
        while self._rows:
            chunk = self._rows[: self.batch]
            await self.store.add_history(chunk)
            del self._rows[: len(chunk)]
            written += len(chunk)
            if self.on_written is not None:
                self.on_written(len(chunk))
        return written

    async def prune(self) -> tuple[int, int]:
        """Roll up, then delete, old rows in batches; returns (rows rolled up, rows deleted)."""
        now = self.clock()
        rolled = pruned = 0
        while (n := await self.store.rollup_history(now - self.rollup_after, self.batch)) > 0:
            rolled += n
            await asyncio.sleep(0)
        while (n := await self.store.prune_history(now - self.retention, self.batch)) > 0:
            pruned += n
            await asyncio.sleep(0)
        return rolled, pruned

    async def run(self, stop: asyncio.Event) -> None:
        prune_at = time.monotonic()
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.flush_interval)
            try:
                await self.flush()
                if time.monotonic() >= prune_at:
                    prune_at = time.monotonic() + self.prune_interval
                    await self.prune()
            except StoreError as e:
                log.warning("history write failed: %s", e, extra={"event": "store_error"})
