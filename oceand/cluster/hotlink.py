"""The joins of the Redis hot state to the lease loop and the engine (issue 14, docs/redis.md "What this
version does with it"). Built by the daemon only with both `[cluster]` and `[redis] url` set, and imported
there lazily (this module imports redis-py through hotstate).

- `note(job, bucket_ts, state)` is the engine's `on_state`: the writer (`HotStateWriter`) sends each
  changed state, fenced by the lease epoch, within FLUSH_INTERVAL.
- `owner(job)`: the job's (shard, epoch) while its shard is held here and renewed within
  stop_acting_after by the local clock (draining included), else None: a state of a job owned elsewhere
  now is never written.
- `fenced(job)`: a newer epoch wrote the job's snapshot, so another daemon took the shard: it is dropped
  at once (`LeaseManager.lose`, reason `hotstate_fenced`), as a fenced intent insert would.
- `load(job, stored)` is the engine's `load_hot`: a takeover starts from the newer of the snapshot and the
  store's state (`HotState.load_state`, HA.md §6.7 step 3).
- Handoff (HA.md §4.4): a shard being released, after its in-flight writes and before its lease is freed,
  leaves its jobs' open buckets in Redis under its epoch (`hand_over`, the lease loop's `hand_over`); the
  new owner starts taking them (`take_handoff`, refused when left by an epoch not older than its own) as
  soon as it acquires the shard, and each job's takeover merges its part (`handed(job)`, the engine's
  `take_handoff`), so its first buckets are whole instead of `takeover_gap`. `open_buckets` is the
  engine's `handoff_of`.
- Wake-ups: the lease loop's acquisitions and releases, and this daemon's joining and leaving, are
  published on the cluster's channel (`joined` at start; the releases and `leaving` at stop: `farewell`).
  Any wake-up received, and each resubscription (some may have been missed), kicks the lease poll. They
  are sent in order by one task (`run`); those that cannot be sent (Redis down) are dropped, since the
  receivers poll anyway.
- `jobs_changed()`: a job was written or deleted here; `jobs` goes out (once while one waits to be sent)
  and the others read the job change log at once (`on_jobs`, oceand/cluster/jobsync.py) instead of at
  their next `jobs_poll`. A `jobs` wake-up does not kick the lease poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from oceand.cluster.hotstate import Event, HotState, JobHandoff
from oceand.cluster.hotwriter import HotStateWriter
from oceand.cluster.intent import may_act
from oceand.cluster.lease import Held, LeaseManager
from oceand.cluster.ownership import Ownership

log = logging.getLogger("oceand.redis")
MAX_QUEUED = 4096  # wake-ups waiting to be published; beyond it the oldest are dropped (they only hurry)
# A `jobs` wake-up that could not be published is tried again this often (while it waits, Redis is
# degraded or slow; the probe finds it back within a second or so).
JOBS_RETRY = 0.5
# Snapshot reads in flight at once: a start or a large takeover reloads thousands of jobs together, and
# redis-py would open a connection for each concurrent call
LOAD_CONCURRENCY = 16


class HotLink:
    def __init__(
        self,
        hot: HotState,
        ownership: Ownership,
        open_buckets: Callable[
            [set[int]], dict[int, dict[str, tuple[int, list[tuple[str, str, int, float]]]]]
        ]
        | None = None,
    ) -> None:
        self.hot = hot
        self.open_buckets = open_buckets
        self._handoffs: dict[int, asyncio.Task[dict[str, JobHandoff]]] = {}  # shard -> its take
        self.ownership = ownership
        self.leases: LeaseManager = ownership.leases
        self.writer = HotStateWriter(hot, self.owner, on_fenced=self.fenced)
        self._epochs: dict[int, int] = {}  # shard -> the epoch acquired here (a release names it)
        self._queue: list[Event] = []
        self._wake = asyncio.Event()
        self._loads = asyncio.Semaphore(LOAD_CONCURRENCY)
        self.on_jobs: list[Callable[[], None]] = []  # another daemon changed jobs (and at resubscription)
        self.leases.on_acquired.append(self._acquired)
        self.leases.on_lost.append(self._lost)
        if open_buckets is not None:
            self.leases.hand_over = self.hand_over
        hot.on_event.append(self._received)

    # ---- the engine's side -------------------------------------------------------------------------

    def note(self, job: str, bucket_ts: int | None, state: dict[str, Any]) -> None:
        self.writer.note(job, bucket_ts, state)

    def owner(self, job: str) -> tuple[int, int] | None:
        """(shard, epoch) while the shard's lease is held here and renewed within stop_acting_after by the
        local clock. A draining shard counts: its last states go out under its epoch before the release."""
        shard = self.ownership.shard(job)
        held = self.leases.held.get(shard)
        if held is None or not may_act(held.valid_until, self.leases.mono()):
            return None
        return shard, held.epoch

    def fenced(self, job: str, epoch: int) -> None:
        """A newer epoch wrote the job's snapshot than `epoch`, the one this daemon wrote under: the shard
        is dropped, unless it was held again since under a newer epoch (the refusal is of the old one)."""
        shard = self.ownership.shard(job)
        held = self.leases.held.get(shard)
        if held is not None and held.epoch == epoch:
            self.leases.lose(shard, "hotstate_fenced")

    async def load(self, job: str, stored: dict[str, Any] | None) -> dict[str, Any] | None:
        async with self._loads:
            source, state = await self.hot.load_state(self.ownership.shard(job), job, stored)
        if source == "redis":
            log.info(
                "job %s: taken over from its Redis snapshot (newer than the store's state)",
                job,
                extra={"event": "hotstate_loaded", "job": job},
            )
        return state

    # ---- handoff of the open buckets -------------------------------------------------------------

    async def hand_over(self, pairs: list[tuple[int, int]]) -> None:
        """Shards being released, still held under these epochs: their jobs' open buckets go to Redis."""
        if self.open_buckets is None or not pairs:
            return
        per_shard = self.open_buckets({s for s, _ in pairs})

        async def one(shard: int, epoch: int) -> None:
            jobs = {j: JobHandoff(*h) for j, h in per_shard[shard].items()}
            async with self._loads:
                await self.hot.write_handoff(shard, epoch, jobs)

        await asyncio.gather(*(one(s, e) for s, e in pairs if s in per_shard))

    async def _take(self, shard: int, held: Held) -> dict[str, JobHandoff]:
        if held.previous == 0:  # never held before: nothing can have been handed over
            return {}
        async with self._loads:
            return await self.hot.take_handoff(shard, held.epoch, held.previous)

    async def handed(self, job: str) -> tuple[int, list[tuple[str, str, int, float]]] | None:
        """The job's open buckets its former owner handed over, once (None: none, or not taken)."""
        task = self._handoffs.get(self.ownership.shard(job))
        if task is None:
            return None
        jobs = await asyncio.shield(task)
        h = jobs.pop(job, None)
        return None if h is None else (h.closed_upto, h.samples)

    # ---- wake-ups ----------------------------------------------------------------------------------

    def _publish(self, event: Event) -> None:
        self._queue.append(event)
        if len(self._queue) > MAX_QUEUED:
            del self._queue[: len(self._queue) - MAX_QUEUED]
        self._wake.set()

    def _acquired(self, shard: int, held: Held) -> None:
        self._epochs[shard] = held.epoch
        if self.open_buckets is not None:
            self._handoffs[shard] = asyncio.get_running_loop().create_task(
                self._take(shard, held), name=f"redis:handoff-{shard}"
            )
        self._publish(Event("acquired", shard=shard, epoch=held.epoch))

    def _lost(self, shard: int, reason: str) -> None:
        epoch = self._epochs.pop(shard, None)
        self._handoffs.pop(shard, None)  # a take under way ends by itself (socket_timeout)
        if reason == "released" and epoch is not None:
            self._publish(Event("released", shard=shard, epoch=epoch))

    def joined(self) -> None:
        self._publish(Event("joined", member=self.leases.me))

    async def farewell(self) -> None:
        """At stop, after the leases were released (`run` has ended by then): the releases and `leaving`
        go out now, so the successors poll at once instead of at their next acquire_poll."""
        self._publish(Event("leaving", member=self.leases.me))
        await self.send()

    def jobs_changed(self) -> None:
        if not any(e.kind == "jobs" for e in self._queue):
            self._publish(Event("jobs", member=self.leases.me))

    def _received(self, event: Event | None) -> None:
        # never trusted: the polls read MySQL
        if event is None or event.kind == "jobs":
            if event is None or event.member != self.leases.me:
                for cb in self.on_jobs:
                    cb()
            if event is not None:
                return
        self.leases.kick()

    async def send(self) -> int:
        """Publish the queued wake-ups, in order; returns how many went out. A `jobs` wake-up that could
        not go out (Redis degraded, a call timed out) is kept and tried again every JOBS_RETRY seconds
        (`run`): the others would otherwise see the change only at their next `jobs_poll`. The lease
        wake-ups are not kept: the lease polls are frequent."""
        queued, self._queue = self._queue, []
        sent = 0
        for event in queued:
            ok = await self.hot.publish(event)
            sent += ok
            if not ok and event.kind == "jobs" and not any(e.kind == "jobs" for e in self._queue):
                self._queue.append(event)
        return sent

    async def run(self, stop: asyncio.Event) -> None:
        """The writer's flushes and the wake-ups' sends until `stop` (then the last states once more)."""
        loop = asyncio.get_running_loop()
        writer = loop.create_task(self.writer.run(stop), name="redis:hot-writer")
        stopped = loop.create_task(stop.wait())
        try:
            while not stop.is_set():
                woken = loop.create_task(self._wake.wait())
                await asyncio.wait(
                    (woken, stopped),
                    timeout=JOBS_RETRY if self._queue else None,  # a `jobs` wake-up waiting for Redis
                    return_when=asyncio.FIRST_COMPLETED,
                )
                woken.cancel()
                self._wake.clear()
                try:
                    await self.send()
                except Exception:  # never let the sender die: the receivers poll anyway
                    log.exception("wake-up publish failed")
        finally:
            stopped.cancel()
            if stop.is_set():
                await writer
            else:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
