"""How the daemon is doing: `/readyz`, the gauges `/metrics` shows, the Marathon clusters' states, and
the store probe that keeps the store's writability known while the daemon is idle.

Handlers reach it through the typed application key `oceand.keys.HEALTH`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from actuators.marathon import ClusterRuntime
from oceand.engine import Engine
from oceand.metrics import Metrics
from oceand.store.base import Store

if TYPE_CHECKING:
    from oceand.cluster.hotstate import HotState


class Health:
    def __init__(
        self,
        store: Store,
        engine: Engine,
        metrics: Metrics,
        clusters: Mapping[str, ClusterRuntime],
        config_loaded: Callable[[], bool],
    ) -> None:
        self.store = store
        self.engine = engine
        self.metrics = metrics
        self.clusters = clusters  # the daemon's own mapping: a reload of [marathon.*] replaces its values
        self.config_loaded = config_loaded
        self.hotstate: HotState | None = None  # [redis] url: reported, never a reason for 503

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """/readyz: the store answers a query and its writes succeed (see `probe`). With `[redis]`, also
        `"redis": "ok"` or `"degraded"` with `redis_reason`; Redis down does not make the daemon unready
        (it is never the authority: leases, intents and decisions are in the store; docs/redis.md)."""
        answers = await self.store.ping()
        health = self.store.health
        self.metrics.store_writable.set(1 if health.writable else 0)
        ready = answers and health.writable
        body: dict[str, Any] = {
            "status": "ready" if ready else "not ready",
            "store": answers,
            "store_writable": health.writable,
            "config": self.config_loaded(),
            "jobs": len(self.engine.jobs),
        }
        if self.hotstate is not None:
            body.update(self.hotstate.status())
        if not answers:
            body["reason"] = f"store {self.store.url} does not answer"
        elif not health.writable:
            body["reason"] = health.reason()
        return ready, body

    def update_gauges(self) -> None:
        m = self.metrics
        modes: dict[str, int] = {"active": 0, "dry-run": 0, "paused": 0}
        for rt in self.engine.jobs.values():
            modes[self.engine.mode(rt)] += 1
        for mode, n in modes.items():
            m.jobs.labels(mode).set(n)
        m.series.set(self.engine.ingestor.series)
        m.bucket_overflow.set(sum(rt.buckets.overflow for rt in self.engine.jobs.values()))
        for c in self.clusters.values():
            m.event_stream.labels(c.name).set(1 if c.connected() else 0)
        m.store_writable.set(1 if self.store.health.writable else 0)

    def clusters_info(self) -> list[dict[str, Any]]:
        return [c.info() for c in self.clusters.values()]

    async def probe(self, stop: asyncio.Event, interval: Callable[[], float]) -> None:
        """A test write every `interval()` seconds (`store.probe_interval`): an idle daemon notices a
        store it cannot write, and an unwritable one is marked writable again without waiting for real
        work."""
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), interval())
            if not stop.is_set():
                await self.store.probe_write()  # never raises; the outcome goes to store.health
