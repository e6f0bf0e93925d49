"""Recorded history per job (PRODUCT.md §13): each evaluated bucket's rule values, the ready / running /
desired counts and the decision id, kept in the store's `history` table.

The engine calls `record` on its hot path: an append to a bounded in-memory buffer, nothing else. The
`run` task writes the buffer in batches of `batch` rows per transaction every `flush_interval` (so the
store's cost is one transaction per batch, not one per job and period), and every `prune_interval` rolls
rows older than `rollup_after` up to 1-minute rows and deletes rows older than `retention`, `batch` rows
per transaction with the event loop running in between. When the store is slow or down and the buffer
holds `max_buffer` rows, new rows are dropped and counted (`on_dropped`); scaling never waits for history.

The buffer is one flat list of plain items, not a tuple per row: each row is (job, t, ready, running,
desired, decision, n) followed by its n rule names and their n values. A row tuple kept until the next
flush is a container the garbage collector tracks, and so is the bucket's `values` dict (tracked or not,
each one kept counts toward the next young collection): 10,000 of each per period set off young and
middle collections that walked every job state (a quarter of an evaluation round's CPU at 10,000 jobs;
BENCHMARKS.md, *Issue 16: the evaluation with history recorded*). Items appended to one list allocate
nothing the collector counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from oceand.ingest import ALB_QPS
from oceand.replay import ReplayOptions, simulate
from oceand.store import Store, StoreError
from oceand.trace import Trace
from policies.document import JobDocument

log = logging.getLogger("oceand.history")

Clock = Callable[[], float]
HEAD = (
    7  # a buffered row's fixed items: job, t, ready, running, desired, decision, n (then n names, n values)
)


class HistoryRecorder:
    def __init__(
        self,
        store: Store,
        *,
        retention: float = 8 * 86400.0,
        rollup_after: float = 86400.0,
        flush_interval: float = 5.0,
        max_buffer: int = 200_000,
        batch: int = 100,
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
        self._rows: list[Any] = []  # flat (see the module notes); `_count` rows
        self._count = 0
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
        """Buffer one evaluated period (its values are copied: the caller may reuse the dict)."""
        if self._count >= self.max_buffer:
            self.dropped += 1
            if self.on_dropped is not None:
                self.on_dropped(1)
            return
        rows = self._rows  # the row's items onto the flat buffer (see the module notes)
        rows += (job, t, ready, running, desired, decision, len(values))
        rows += values  # the names
        rows += values.values()
        self._count += 1

    @property
    def buffered(self) -> int:
        return self._count

    def rows(self, limit: int | None = None) -> list[tuple[Any, ...]]:
        """The first `limit` (default: all) buffered rows as (job, t, values, ready, running, desired,
        decision) tuples, `values` a new dict; the buffer is unchanged."""
        flat, i = self._rows, 0
        out: list[tuple[Any, ...]] = []
        end = self._count if limit is None else min(limit, self._count)
        while len(out) < end:
            job, t, ready, running, desired, decision, n = flat[i : i + HEAD]
            i += HEAD
            values = dict(zip(flat[i : i + n], flat[i + n : i + 2 * n], strict=True))
            i += 2 * n
            out.append((job, t, values, ready, running, desired, decision))
        return out

    def _drop_first(self, rows: int) -> None:
        """Remove the first `rows` buffered rows."""
        flat, i = self._rows, 0
        for _ in range(rows):
            i += HEAD + 2 * flat[i + HEAD - 1]
        del flat[:i]
        self._count -= rows

    def clear(self) -> None:
        """Drop every buffered row, uncounted (what a flush takes away; benchmarks)."""
        self._rows.clear()
        self._count = 0

    async def flush(self) -> int:
        """Write the buffered rows, `batch` per transaction; rows not written stay buffered."""
        written = 0
        while self._count:
            chunk = self.rows(self.batch)
            n = len(chunk)
            try:
                await self.store.add_history([_row(*r) for r in chunk])
            except ValueError as e:  # a row the store refuses (a bug): drop the batch, never block history
                log.error(
                    "history: %d rows refused and dropped: %s",
                    n,
                    e,
                    extra={"event": "history_dropped"},
                )
                self._drop_first(n)
                self.dropped += n
                if self.on_dropped is not None:
                    self.on_dropped(n)
                continue
            self._drop_first(n)
            written += n
            if self.on_written is not None:
                self.on_written(n)
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


def _row(
    job: str,
    t: float,
    values: Mapping[str, float | None],
    ready: int,
    running: int | None,
    desired: int,
    decision: int | None,
) -> dict[str, Any]:
    """A buffered period as the store takes it: rules without a value that period are left out."""
    return {
        "job": job,
        "t": float(t),
        "values": {k: float(v) for k, v in values.items() if v is not None and math.isfinite(v)},
        "ready": ready,
        "running": ready if running is None else running,
        "desired": desired,
        "decision": decision,
    }


# ---------------------------------------------------------------- preview (PRODUCT §13)

LOAD_METRICS = ("cpu.used", "proc.qps", ALB_QPS)  # recorded per instance: load = value × ready
MAX_PREVIEW_RANGE = 31 * 86400.0  # seconds of history one preview may read
MAX_PREVIEW_ROWS = 500_000  # history rows one preview may read (31 d at period ~5 s)
HISTORY_STEP_ROWS = 100_000  # stored rows a GET history with `step` reads before binning them


class PreviewError(ValueError):
    """A preview that cannot run: `code` for the API, the message names the problem."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def load_rule(recorded: JobDocument, rule: str | None) -> str:
    """The rule of the recorded document whose values give the load: `rule`, or the first threshold
    rule on cpu.used / proc.qps / alb.qps."""
    names = {r.name: r for r in recorded.rules}
    if rule is not None:
        r = names.get(rule)
        if r is None or getattr(r, "metric", None) not in LOAD_METRICS:
            raise PreviewError(
                "bad_rule", f"rule: {rule!r} is not a rule of the job on one of {', '.join(LOAD_METRICS)}"
            )
        return rule
    for r in recorded.rules:
        if getattr(r, "metric", None) in LOAD_METRICS:
            return r.name
    raise PreviewError("bad_rule", f"the job has no rule on {', '.join(LOAD_METRICS)} to take the load from")


def downsample(rows: list[dict[str, Any]], step: float) -> list[dict[str, Any]]:
    """History rows (oldest first) in bins of `step` seconds aligned to multiples of it, as the store's
    1-minute roll-up makes them: each rule's value averaged over the bin's rows that have it, the counts and
    the decision of the bin's last row, `t` the bin's start and `step` the bin's width. A step at or below
    the rows' own spacing leaves them as they are."""
    out: list[dict[str, Any]] = []
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    last: dict[str, Any] | None = None
    start = math.nan

    def close() -> None:
        assert last is not None
        values = {k: sums[k] / counts[k] for k in sums}
        out.append({**last, "t": start, "step": step, "values": values})

    for row in rows:
        b = math.floor(float(row["t"]) / step) * step
        if last is not None and b != start:
            close()
            sums, counts = {}, {}
        start, last = b, row
        for k, v in row["values"].items():
            if v is not None:
                sums[k] = sums.get(k, 0.0) + float(v)
                counts[k] = counts.get(k, 0) + 1
    if last is not None:
        close()
    return out


def history_trace(job: str, rows: list[dict[str, Any]], rule: str) -> Trace:
    """The recorded load as a replay trace: at each row, the rule's per-instance value × ready."""
    kept = [r for r in rows if rule in r["values"]]
    if not kept:
        raise PreviewError("no_history", f"job {job!r} has no recorded value of rule {rule!r} in that range")
    times = np.asarray([r["t"] for r in kept], dtype=np.float64)
    values = np.asarray([r["values"][rule] * max(1, r["ready"]) for r in kept], dtype=np.float64)
    interval = float(np.median(np.diff(times))) if len(times) > 1 else float(kept[0].get("step") or 0) or 10.0
    return Trace(f"history:{job}", times, values, interval, "t", rule)


def _direction(before: int, after: int) -> str:
    return "out" if after > before else "in" if after < before else "none"


def preview(
    doc: JobDocument, job: str, rows: list[dict[str, Any]], rule: str, options: ReplayOptions
) -> dict[str, Any]:
    """The §6 simulator on the recorded load; the periods where `doc` would have acted differently
    from what happened (the recorded desired count moved one way, the preview another, or not)."""
    trace = history_trace(job, rows, rule)
    result = simulate(doc, trace, options)
    tl = result.timeline
    recorded: dict[float, tuple[int, int]] = {}  # t -> (desired before, desired after)
    previous: int | None = None
    for r in rows:
        before = r["ready"] if previous is None else previous
        recorded[float(r["t"])] = (before, r["desired"])
        previous = r["desired"]
    timeline: list[dict[str, Any]] = []
    differences: list[dict[str, Any]] = []
    for k in range(len(tl.t)):
        t = float(tl.t[k])
        current = int(tl.ready[k] + tl.starting[k])
        row = {
            "t": t,
            "load": float(tl.load[k]),
            "ready": int(tl.ready[k]),
            "starting": int(tl.starting[k]),
            "desired": int(tl.desired[k]),
            "cpu_used": float(tl.cpu_used[k]),
            "unserved": float(tl.unserved[k]),
        }
        timeline.append(row)
        if t in recorded:
            before, after = recorded[t]
            happened, would = _direction(before, after), _direction(current, int(tl.desired[k]))
            if happened != would:
                differences.append(
                    {
                        "t": t,
                        "happened": happened,
                        "recorded_desired": after,
                        "preview": would,
                        "preview_desired": int(tl.desired[k]),
                    }
                )
    return {
        "job": job,
        "rule": rule,
        "summary": result.summary(),
        "timeline": timeline,
        "differences": differences,
    }
