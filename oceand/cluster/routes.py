"""The route table (HA.md §4.5, §6.1): shard → (owner, addr, epoch) of every valid lease.

Read from `shard_lease ⋈ daemon` (one autocommit statement on the coordination pool, so a takeover is seen
at the next read) every `interval` (0.5 s) and whenever kicked (a pub/sub wake-up, a `not_owner` reply).
It only says where to *send* samples and calls: whether this daemon may *act* on a shard is the lease
manager's local decision (`LeaseManager.held`), never this table's. `build_routes` and `changed` are pure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from oceand.store.base import StoreError

log = logging.getLogger("oceand.cluster")

ROUTES_SQL = (
    "SELECT l.shard, l.owner, d.addr, l.epoch FROM shard_lease l JOIN daemon d ON d.instance_id = l.owner"
    " WHERE l.shard < %s AND l.owner IS NOT NULL AND l.expires_at > NOW(6)"
)


@dataclass(frozen=True, slots=True)
class Route:
    owner: str  # instance id
    addr: str  # host:port the owner is reached at ([cluster] advertise)
    epoch: int


Routes = list[Route | None]  # by shard; None: no valid lease (a takeover under way)


def build_routes(rows: Iterable[Sequence[Any]], shards: int) -> Routes:
    """The table from (shard, owner, addr, epoch) rows; shards without a row (or out of range) have None."""
    out: Routes = [None] * shards
    for shard, owner, addr, epoch in rows:
        s = int(shard)
        if 0 <= s < shards and owner is not None and addr:
            out[s] = Route(str(owner), str(addr), int(epoch))
    return out


def changed(old: Routes, new: Routes) -> set[int]:
    """Shards whose owner, address or epoch differ between two tables."""
    if len(old) != len(new):
        return set(range(max(len(old), len(new))))
    return {s for s, (a, b) in enumerate(zip(old, new, strict=True)) if a != b}


Fetch = Callable[[int], Awaitable[list[tuple[Any, ...]]]]


class RouteTable:
    def __init__(self, fetch: Fetch, shards: int, *, interval: float = 0.5) -> None:
        self.fetch = fetch
        self.shards = shards
        self.interval = interval
        self.routes: Routes = [None] * shards
        self.refreshes = 0
        self.on_change: list[Callable[[set[int]], None]] = []
        self._kick = asyncio.Event()
        self._refreshing: asyncio.Future[None] | None = None

    def get(self, shard: int) -> Route | None:
        return self.routes[shard]

    def kick(self) -> None:
        self._kick.set()

    async def refresh(self) -> None:
        """Read the table now; callers arriving while a read is under way share it."""
        if self._refreshing is not None:
            return await asyncio.shield(self._refreshing)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._refreshing = fut
        try:
            new = build_routes(await self.fetch(self.shards), self.shards)
            diff = changed(self.routes, new)
            self.routes = new
            self.refreshes += 1
            for cb in self.on_change:
                cb(diff)
            fut.set_result(None)
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: a failure is the caller's to see, not the loop's to report
            raise
        finally:
            self._refreshing = None

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._kick.wait()
            self._kick.clear()
            try:
                await self.refresh()
            except StoreError as e:  # the last routes stay in use (HA.md §6.9: keeps forwarding)
                log.warning("route table not refreshed: %s", e, extra={"event": "routes_failed"})
