"""Job changes made through another daemon reach this one (issue 14): the job change log (`job_changes`,
oceand/store/jobchanges.py) is read every `[cluster] jobs_poll` (1 s), and at once on a Redis `jobs`
wake-up, and each changed job is applied as a local change is (JobsService.follow): a new or replaced
document rebuilds the job's runtime, a deleted job is dropped. A daemon's own changes come back too and
change nothing (same version and document).

The log's `seq` is an AUTO_INCREMENT: a transaction that took a lower seq may commit after a higher one
was read. `ChangeCursor` therefore keeps reading the gaps below the highest seq it saw, and moves its low
mark past a seq only LATE_COMMIT after first seeing it (by then every lower seq has committed or rolled
back: a store call is bounded by the store's timeout, well below it). The rows kept meanwhile are the
changes of the last LATE_COMMIT seconds; each read is bounded (PAGE rows, MAX_RANGES gaps).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from oceand.store.base import JobChange, Store
from oceand.store.jobchanges import MAX_RANGES

log = logging.getLogger("oceand.cluster")
LATE_COMMIT = 30.0  # seconds a seq is waited on below a higher one (above any store call's timeout)
PAGE = 1000  # change rows per read; a poll reads pages until one comes back short
MAX_PAGES = 100  # pages per poll (100k changed jobs, e.g. one template's re-render); the rest next poll
RETENTION = 3600.0  # change rows older than this are pruned; a daemon further behind reloads every job
CHECK_BEHIND = 60.0  # seconds between checks that no pruned change was missed


class ChangeCursor:
    """Which change rows were read (pure: `now` is passed in)."""

    def __init__(self, low: int, late_commit: float = LATE_COMMIT) -> None:
        self.low = low  # every seq <= low was read (or never commits)
        self.late_commit = late_commit
        self.seen: dict[int, float] = {}  # seq above low -> when first read

    def ranges(self) -> tuple[list[tuple[int, int | None]], int | None]:
        """The ranges to read (the open one above the highest seq read first, then the lowest gaps below
        it) and the seq below which the read is complete (None: everywhere)."""
        if not self.seen:
            return [(self.low, None)], None
        gaps: list[tuple[int, int | None]] = []
        prev = self.low
        for s in sorted(self.seen):
            if s > prev + 1:
                gaps.append((prev, s))
            prev = s
        kept = gaps[: MAX_RANGES - 1]
        complete = None if len(kept) == len(gaps) else gaps[len(kept)][0] + 1
        return [(prev, None), *kept], complete

    def take(self, rows: list[JobChange], now: float) -> list[JobChange]:
        """The rows not read before (recording them)."""
        new = [r for r in rows if r.seq > self.low and r.seq not in self.seen]
        for r in new:
            self.seen[r.seq] = now
        return new

    def advance(self, read_at: float, complete_below: int | None) -> None:
        """Move the low mark past every seq first read LATE_COMMIT before `read_at` (when the read that
        just ended began), and below `complete_below` (a read cut short: what it did not cover)."""
        ripe = [
            s
            for s, t in self.seen.items()
            if read_at - t >= self.late_commit and (complete_below is None or s < complete_below)
        ]
        if not ripe:
            return
        self.low = max(ripe)
        self.seen = {s: t for s, t in self.seen.items() if s > self.low}


class Follower(Protocol):
    """What applies the changes: oceand.jobs.JobsService (a layer above this package)."""

    async def follow(
        self, read: Callable[[], Awaitable[list[JobChange]]], counts: dict[str, int]
    ) -> list[JobChange]: ...

    async def resync(self, counts: dict[str, int]) -> None: ...


class JobSync:
    def __init__(
        self,
        store: Store,
        jobs: Follower,
        *,
        interval: float,
        on_applied: Callable[[str, int], None] = lambda op, n: None,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.interval = interval
        self.on_applied = on_applied  # (op, count): created / replaced / deleted / resync
        self.mono = mono
        self.cursor = ChangeCursor(0)
        self._kick = asyncio.Event()
        self._last_check = 0.0

    def kick(self) -> None:
        """Read the log now (a Redis `jobs` wake-up)."""
        self._kick.set()

    async def start(self) -> None:
        """Before the engine loads the stored jobs: every change after the log's present end is read."""
        _oldest, newest = await self.store.job_change_bounds()
        self.cursor = ChangeCursor(newest)
        self._last_check = self.mono()

    async def poll(self) -> int:
        """One read of the log (up to MAX_PAGES pages), applied; how many jobs changed here."""
        changed = 0
        for _ in range(MAX_PAGES):
            read_at = self.mono()
            ranges, complete = self.cursor.ranges()
            counts: dict[str, int] = {}
            raw: list[JobChange] = []

            async def read(
                ranges: list[tuple[int, int | None]] = ranges, raw: list[JobChange] = raw
            ) -> list[JobChange]:
                raw.extend(await self.store.job_changes(ranges, PAGE))
                return self.cursor.take(raw, self.mono())

            await self.jobs.follow(read, counts)
            full = len(raw) >= PAGE
            if full:
                last = raw[-1].seq
                complete = last + 1 if complete is None else min(complete, last + 1)
            self.cursor.advance(read_at, complete)
            for op, n in counts.items():
                self.on_applied(op, n)
                changed += n
            if not full:
                break
        if self.mono() - self._last_check >= CHECK_BEHIND:
            changed += await self.check_behind()
        return changed

    async def check_behind(self, force: bool = False) -> int:
        """Changes this daemon has not read were pruned (it could not read the store for longer than
        RETENTION), or (`force`) a poll failed, maybe halfway through applying a page whose rows the
        cursor had already taken: compare every stored job instead."""
        self._last_check = self.mono()
        oldest, newest = await self.store.job_change_bounds()
        if not force and oldest <= self.cursor.low + 1:
            return 0
        log.warning(
            "job changes %s: comparing every job",
            "not all read or applied after a failed poll"
            if force
            else f"up to {oldest - 1} were pruned before this daemon read them",
            extra={"event": "job_sync_resync"},
        )
        counts: dict[str, int] = {}
        await self.jobs.resync(counts)
        self.cursor = ChangeCursor(newest)
        self.on_applied("resync", 1)
        return sum(counts.values())

    async def run(self, stop: asyncio.Event) -> None:
        failing = False
        loop = asyncio.get_running_loop()
        stopped = loop.create_task(stop.wait())
        try:
            while not stop.is_set():
                kicked = loop.create_task(self._kick.wait())
                await asyncio.wait(
                    (kicked, stopped), timeout=self.interval, return_when=asyncio.FIRST_COMPLETED
                )
                kicked.cancel()
                self._kick.clear()
                if stop.is_set():
                    return
                failing = await self._poll_once(failing)
        finally:
            stopped.cancel()

    async def _poll_once(self, failing: bool) -> bool:
        """A poll from the loop; whether it failed."""
        try:
            if failing:  # what the failed poll took but did not apply is not read again: compare all
                await self.check_behind(force=True)
            await self.poll()
            return False
        except Exception as e:  # the store is down: read again at the next poll
            if not failing:
                log.warning("job changes not read: %s", e, extra={"event": "job_sync_failed"})
            self.on_applied("read_failed", 1)
            return True
