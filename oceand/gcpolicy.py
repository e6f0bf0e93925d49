"""The serving daemon's garbage-collector policy (docs/operations.md §12, *The garbage collector*).

CPython collects its oldest generation when a quarter more objects have survived into it than it held after
the last full collection, and walks all of them each time. A daemon with 10,000 jobs keeps about 400,000
container objects alive in that generation (job routes, compiled documents, states, buckets), and replaces
its states and buckets every period: a quarter of them survive into the oldest generation every ~2 s, each
full collection walked all 400,000 for 200–250 ms, and found almost nothing (0–45 objects). Every reaction
that met one waited for it: `bench/reaction.py` p99 350–400 ms against §8's 50 ms (BENCHMARKS.md,
*Reaction: the store's queue and the collector*).

So, once serving:
- the garbage of the start is collected and what is alive frozen (`gc.freeze()`), as before;
- **CPython starts no full collection itself** (the oldest generation's threshold is set out of reach,
  `FULL_NEVER`); the young and middle generations are collected as CPython does. A full collection that
  freezes what survives it still walked everything promoted since the last one: 40–60 ms every ~2 s at
  10,000 jobs, the largest pause left in `bench/reaction.py` (BENCHMARKS.md, *Reaction: the step's cost,
  the thread switch and the full collections*). Objects in the oldest generation are still freed by
  reference counting; what waits is a cycle that became garbage after it got there;
- so those are not kept for ever, a **rebase** — `gc.unfreeze()`, a full collection of everything, freeze
  again — runs from the event loop every `max_age` (10 minutes): one pause of a full walk (0.6–1.0 s at
  10,000 jobs on the reference machine) every 10 minutes instead of a 40–300 ms one every 2 s. The rebase
  is on time, not on the frozen set's size: CPython counts that set by walking it (`gc.get_freeze_count()`
  took ~110 ms at 10,000 jobs). What can wait for a rebase is small: the full collections it replaces
  found 0–45 objects each, and resident memory stays flat between rebases (`bench/gc_soak.py`);
- a full collection someone else asks for (`gc.collect()` in a library) freezes what survives it (a
  `gc.callbacks` hook), so it costs the next one nothing;
- young and middle collections also run on a clock (`young`, every 5–50 ms from the event loop): a step
  replaces its job's state, so CPython's count of live young objects hardly moves under load while they
  pile up, and the collection that finally came walked tens of thousands at once (20–40 ms).

The pauses are counted per generation (`oceand_gc_collections_total`, `oceand_gc_pause_seconds_total`, the
longest in `oceand_gc_pause_max_seconds`) with the rebases (`oceand_gc_rebases_total`, the frozen set's size
after the last one in `oceand_gc_frozen_objects`), for operators to see what the collector costs them.

Process-wide (the collector is): `oceand run` installs it; tests that build daemons in-process do not.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from typing import Any

log = logging.getLogger("oceand.gc")

MAX_AGE = 600.0  # seconds between two rebases, so that frozen cyclic garbage is freed
# Paced young collections (GcPolicy.young): one every YOUNG_MIN..YOUNG_MAX seconds, the interval halved
# when one took longer than YOUNG_PAUSE and doubled when one took less than a quarter of it; every
# MIDDLE_EVERY-th of them collects the middle generation too.
YOUNG_MIN = 0.005
YOUNG_MAX = 0.05
YOUNG_PAUSE = 0.0005
MIDDLE_EVERY = 2
# the oldest generation's threshold while the policy runs: middle collections before CPython starts a full one
# itself (one every ~0.2 s under load: ~6 years)
FULL_NEVER = 1_000_000_000


class GcPolicy:
    """Freeze-after-full-collection with rebases; its counts are read by `Metrics.watch_gc`."""

    def __init__(self, *, max_age: float = MAX_AGE) -> None:
        self.max_age = max_age  # 0: no freeze after full collections (CPython's collector as it is)
        self.collections = [0, 0, 0]
        self.pause_seconds = [0.0, 0.0, 0.0]
        self.pause_max = [0.0, 0.0, 0.0]
        self.rebases = 0
        self.frozen = 0  # objects frozen by the last rebase
        self._started = 0.0
        self._installed = False
        self._thresholds: tuple[int, int, int] | None = None  # CPython's, while ours are set

    # ---- the hook ----------------------------------------------------------------------------------
    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        """Runs inside CPython's collector: no allocation-heavy work, no logging, no locks."""
        if phase == "start":
            self._started = time.perf_counter()
            return
        gen = info["generation"]
        took = time.perf_counter() - self._started
        self.collections[gen] += 1
        self.pause_seconds[gen] += took
        if took > self.pause_max[gen]:
            self.pause_max[gen] = took
        if gen == 2 and self.max_age > 0:
            gc.freeze()  # what survived a full collection: out of the next one's walk

    def start(self) -> None:
        """Collect the start's garbage, freeze the rest, install the hook (once)."""
        if self._installed:
            return
        self.rebase()
        gc.callbacks.append(self._on_gc)  # counts and times collections; freezes only when max_age > 0
        if self.max_age > 0:  # full collections are the rebases' (and whoever calls gc.collect())
            self._thresholds = gc.get_threshold()
            young, middle, _ = self._thresholds
            gc.set_threshold(young, middle, FULL_NEVER)
        self._installed = True

    def stop(self, unfreeze: bool = True) -> None:
        """Remove the hook; `unfreeze`: give the collector back everything (tests). The daemon's end does
        not: a process about to exit would only walk it all once more (~0.8 s at 10,000 jobs)."""
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)
        self._installed = False
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None
        if unfreeze:
            gc.unfreeze()

    # ---- rebases -----------------------------------------------------------------------------------
    def rebase(self) -> int:
        """Unfreeze, collect everything, freeze again; the objects it freed."""
        t0 = time.perf_counter()
        gc.unfreeze()
        collected = gc.collect()  # our hook counts and times it (and freezes after it)
        gc.freeze()
        self.frozen = gc.get_freeze_count()  # a walk of the whole set: here only, within the rebase's pause
        self.rebases += 1
        log.debug(
            "gc rebase: %d objects freed, %d frozen, %.1f ms",
            collected,
            self.frozen,
            (time.perf_counter() - t0) * 1000,
            extra={"event": "gc_rebase"},
        )
        return collected

    async def young(self, stop: asyncio.Event) -> None:
        """Young (and middle) collections on a clock, from the event loop between two callbacks, until
        `stop` is set. CPython starts a young collection when 700 more container objects are alive than
        at the last one; a job's step replaces its state (a new one alive, the old one freed), so under
        load that count hardly moves while the new objects pile up in the young generation, and the
        collection that finally comes walks them all: 20-40 ms young and middle pauses at 4,000-10,000
        jobs (BENCHMARKS.md, *Reaction: the store's waits, the young collections and the paced dry-run
        steps*). Collected every few milliseconds while the daemon works (the interval follows the
        pauses), each walks what a few milliseconds left: pauses of at most ~1-3 ms, and no more collector
        time in all. An idle daemon is looked at every YOUNG_MAX seconds. None when `max_age` is 0
        (CPython's collector as it is)."""
        interval, n = YOUNG_MAX, 0
        while self.max_age > 0 and not stop.is_set():
            await asyncio.sleep(interval)
            if not self._installed:
                continue
            n += 1
            t0 = time.perf_counter()
            gc.collect(1 if n % MIDDLE_EVERY == 0 else 0)
            took = time.perf_counter() - t0
            if took > YOUNG_PAUSE:
                interval = max(YOUNG_MIN, interval / 2)
            elif took < YOUNG_PAUSE / 4:
                interval = min(YOUNG_MAX, interval * 2)

    async def run(self, stop: asyncio.Event) -> None:
        """A rebase every `max_age` seconds until `stop` is set (none when 0)."""
        while self.max_age > 0 and not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.max_age)
            if not stop.is_set() and self._installed:
                self.rebase()
