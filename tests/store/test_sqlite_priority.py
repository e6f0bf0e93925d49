"""The SQLite store's lock serves urgent work first: the write of a decision about to be applied and the
attempt recorded before its write goes out do not wait behind the reads, state flushes and history batches
queued before them (oceand/store/sqlite.py `_PriorityLock`; BENCHMARKS.md *Reaction: the store's queue and
the collector*)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from oceand.store import SQLiteStore
from oceand.store.sqlite import _PriorityLock
from tests.store.test_attempts import attempt
from tests.store.test_store_contract import decision, outcome


async def _order(lock: _PriorityLock, arrivals: list[tuple[str, bool]]) -> list[str]:
    """Hold the lock, queue `arrivals` (name, urgent) in order, release: the order they got it in."""
    got: list[str] = []
    await lock.acquire()

    async def one(name: str, urgent: bool) -> None:
        await lock.acquire(urgent)
        got.append(name)
        await asyncio.sleep(0)  # hold it across a loop turn, as a transaction does
        lock.release()

    tasks = []
    for name, urgent in arrivals:
        tasks.append(asyncio.ensure_future(one(name, urgent)))
        await asyncio.sleep(0)  # queued in this order
    lock.release()
    await asyncio.gather(*tasks)
    assert not lock.locked()
    return got


@pytest.mark.parametrize(
    ("arrivals", "served"),
    [
        pytest.param([("a", False), ("b", False)], ["a", "b"], id="others-first-come-first-served"),
        pytest.param([("a", True), ("b", True)], ["a", "b"], id="urgent-first-come-first-served"),
        pytest.param([("read", False), ("flush", False), ("decision", True)], ["decision", "read", "flush"],
                     id="urgent-before-those-queued-earlier"),
        pytest.param([("x", False), ("u1", True), ("y", False), ("u2", True)], ["u1", "u2", "x", "y"],
                     id="all-urgent-first-then-the-others-in-order"),
    ],
)  # fmt: skip
async def test_priority_lock_order(arrivals: list[tuple[str, bool]], served: list[str]) -> None:
    assert await _order(_PriorityLock(), arrivals) == served


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    lock = _PriorityLock()
    await lock.acquire()
    gone = asyncio.ensure_future(lock.acquire(urgent=True))
    later = asyncio.ensure_future(lock.acquire())
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    lock.release()
    await asyncio.wait_for(later, 1)  # the cancelled waiter did not keep the lock
    lock.release()
    assert not lock.locked()


async def test_a_waiter_cancelled_once_handed_the_lock_hands_it_on() -> None:
    lock = _PriorityLock()
    await lock.acquire()
    first = asyncio.ensure_future(lock.acquire())
    second = asyncio.ensure_future(lock.acquire())
    await asyncio.sleep(0)
    lock.release()  # handed to `first`, which has not run yet
    first.cancel()
    await asyncio.wait_for(second, 1)
    assert lock.locked()
    lock.release()
    assert not lock.locked()


async def test_promote_moves_a_waiter_to_the_urgent_queue() -> None:
    lock = _PriorityLock()
    await lock.acquire()
    order: list[str] = []
    early = lock.queue()
    late = lock.queue()
    lock.promote(late)

    async def take(name: str, waiter: asyncio.Future[None]) -> None:
        await lock.wait(waiter)
        order.append(name)
        lock.release()

    tasks = [asyncio.ensure_future(take("early", early)), asyncio.ensure_future(take("late", late))]
    lock.release()
    await asyncio.gather(*tasks)
    assert order == ["late", "early"]


async def test_after_an_urgent_holder_the_others_wait_for_the_next_urgent_write() -> None:
    """Anticipation: the attempt that follows a decision's commit finds the store free, not behind a
    state flush that slipped in between; the others get the lock once `anticipate` has passed."""
    loop = asyncio.get_running_loop()
    lock = _PriorityLock(anticipate=0.05)
    await lock.acquire(urgent=True)  # the decision's commit
    flush = asyncio.ensure_future(lock.acquire())
    await asyncio.sleep(0)
    released = loop.time()
    lock.release()
    await asyncio.sleep(0)
    assert not flush.done() and not lock.locked()  # kept from the others, though free
    await asyncio.wait_for(lock.acquire(urgent=True), 0.01)  # the attempt: at once
    assert not flush.done()
    lock.release()  # a second hold, from here
    await asyncio.wait_for(flush, 5)
    assert loop.time() - released >= 0.05
    lock.release()
    assert not lock.locked()


async def test_without_anticipation_the_others_follow_at_once() -> None:
    lock = _PriorityLock(anticipate=0)
    await lock.acquire(urgent=True)
    flush = asyncio.ensure_future(lock.acquire())
    await asyncio.sleep(0)
    lock.release()
    await asyncio.sleep(0)
    assert flush.done() and lock.locked()
    lock.release()


async def test_a_new_caller_waits_out_the_hold_too() -> None:
    lock = _PriorityLock(anticipate=0.05)
    await lock.acquire(urgent=True)
    lock.release()  # nobody waits: still held back from the others that come now
    late = asyncio.ensure_future(lock.acquire())
    await asyncio.sleep(0)
    assert not late.done()
    await asyncio.wait_for(late, 5)
    lock.release()
    assert not lock.locked()


async def test_a_waiter_promoted_while_the_others_are_held_back_gets_the_lock() -> None:
    """The group writer waits, held back after an urgent holder, while the lock is free; a decision about
    to be applied comes and promotes its wait: it gets the lock at once. Left in the urgent queue with the
    lock free, nobody handed it on, and every later write queued behind it (a stall of every write seen in
    bench/reaction.py: no decision recorded, the store's close cut off)."""
    lock = _PriorityLock(anticipate=0.05)
    await lock.acquire(urgent=True)  # an attempt
    lock.release()  # the others are held back now
    writer = lock.queue()  # the group writer's place: held back
    await asyncio.sleep(0)
    assert not writer.done() and not lock.locked()
    lock.promote(writer)  # a pending decision came
    assert writer.done() and lock.locked()
    later = asyncio.ensure_future(lock.acquire())
    lock.release()
    await asyncio.wait_for(later, 5)  # after the next hold: the lock goes round again
    lock.release()
    assert not lock.locked()


async def test_the_store_writes_a_decision_to_apply_and_its_attempt_before_earlier_work(
    tmp_path: Path,
) -> None:
    """While the store is busy, a read, a state flush and a dry-run decision queue; then an attempt and a
    decision about to be applied come. Once free, the store serves the attempt, then the group with the
    pending decision, and only then the read that came first."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'oceand.db'}", clock=lambda: 1_700_000_000.0)
    await store.open()
    try:
        await store.put_job("job.read", {"job": "job.read"})
        done: list[str] = []

        async def named(name: str, aw: Awaitable[Any]) -> None:
            await aw
            done.append(name)

        await store._lock.acquire()  # busy: a transaction in flight (a history batch, say)
        tasks = []
        for name, aw in (
            ("read", store.get_job("job.read")),
            ("flush", store.commit("job.flush", {"count": 1})),
            ("dry-run", store.commit("job.dry", {}, decision("job.dry"), outcome("dry-run"))),
            ("attempt", store.record_attempt(1, "job.active", attempt(1))),
            ("pending", store.commit("job.active", {}, decision("job.active"), outcome("pending"))),
        ):
            tasks.append(asyncio.ensure_future(named(name, aw)))
            for _ in range(3):
                await asyncio.sleep(0)  # each queued before the next comes
        assert done == []
        store._lock.release()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        # the attempt first (queued urgent before the decision came), then the group transaction that took
        # the pending decision (and, behind it, the flush and the dry-run one), the read last
        assert done[0] == "attempt"
        assert done[1] == "pending"
        assert set(done[2:4]) == {"flush", "dry-run"}
        assert done[4] == "read"
        assert len(await store.decisions("job.active")) == 1
    finally:
        await store.close()
