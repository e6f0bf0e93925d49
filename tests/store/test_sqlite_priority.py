"""The SQLite store's lock serves urgent work first: the write of a decision about to be applied and the
attempt recorded before its write goes out do not wait behind the reads, state flushes and history batches
queued before them (oceand/store/sqlite.py `_PriorityLock`; BENCHMARKS.md *Reaction: the store's queue and
the collector*)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from oceand.store import SQLiteStore
from oceand.store.base import StoreError
from oceand.store.sqlite import NOT_TAKEN, _PriorityLock, _settle
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


@pytest.mark.parametrize("held", [True, False], ids=["lock-held", "lock-free"])
async def test_an_urgent_write_out_of_turn_holds_the_others_back_too(held: bool) -> None:
    """A decision's commit that rode on another transaction (`anticipate`): its attempt finds the store
    free as after an urgent holder — the hold starts at the current holder's release, or at once."""
    lock = _PriorityLock(anticipate=0.05)
    if held:
        await lock.acquire()  # a state flush in flight, the commit rode on it
    lock.anticipate()
    flush = asyncio.ensure_future(lock.acquire())
    await asyncio.sleep(0)
    if held:
        lock.release()
        await asyncio.sleep(0)
    assert not flush.done() and not lock.locked()  # kept from the others, though free
    await asyncio.wait_for(lock.acquire(urgent=True), 0.01)  # the attempt: at once
    lock.release()
    await asyncio.wait_for(flush, 5)
    lock.release()
    assert not lock.locked()


async def test_the_store_writes_a_decision_to_apply_and_its_attempt_before_earlier_work(
    tmp_path: Path,
) -> None:
    """While the store is busy, a read, a state flush and a dry-run decision queue; then an attempt and a
    decision about to be applied come. Once free, the store serves the attempt, then the pending decision in
    a transaction of its own, and then the others in the order they came: the read, then the group with the
    flush and the dry-run decision."""
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
        # the pending decision (alone: a pending decision's transaction carries no other work), then the read
        # and the group with the flush and the dry-run one, first come, first served
        assert done[0] == "attempt"
        assert done[1] == "pending"
        assert done[2] == "read"
        assert set(done[3:5]) == {"flush", "dry-run"}
        assert len(await store.decisions("job.active")) == 1
    finally:
        await store.close()


async def _slow_transaction(store: SQLiteStore, seconds: float) -> asyncio.Future[Any]:
    """A transaction that runs whole in the database's thread for `seconds` (a group commit on a busy
    disk); returns once it runs there."""
    started = threading.Event()

    def work(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO job_state (job, state, updated_at) VALUES ('job.slow', '{}', 0)")
        started.set()
        time.sleep(seconds)

    fut = asyncio.ensure_future(store._in_thread(work))
    while not started.is_set():
        await asyncio.sleep(0.001)
    return fut


def _rows(path: Path, sql: str) -> list[Any]:
    """Read with a connection of its own: what is on disk, whatever the event loop is doing."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("what", ["attempt", "pending decision"])
async def test_an_urgent_write_rides_on_the_transaction_in_the_thread(tmp_path: Path, what: str) -> None:
    """An attempt (or a decision about to be applied) that comes while a transaction runs in the database's
    thread is written by that thread right after it: it is on disk while the event loop has not run since
    (so nobody has handed the lock on). Without the ride it would wait for the loop to take the first
    transaction's result and release the lock."""
    path = tmp_path / "oceand.db"
    store = SQLiteStore(f"sqlite:///{path}", clock=lambda: 1_700_000_000.0)
    await store.open()
    try:
        slow = await _slow_transaction(store, 0.2)
        if what == "attempt":
            write = asyncio.ensure_future(store.record_attempt(1, "job.active", attempt(1)))
            query = "SELECT decision_id FROM actuation_attempts"
        else:
            write = asyncio.ensure_future(
                store.commit("job.active", {}, decision("job.active"), outcome("pending"))
            )
            query = "SELECT job FROM decisions"
        for _ in range(3):
            await asyncio.sleep(0)  # handed to the thread
        assert len(store._riders) == 1
        time.sleep(0.6)  # the loop stands still; the thread ends the slow transaction and writes the rider
        assert _rows(path, query), f"the {what} waited for the event loop"
        assert _rows(path, "SELECT job FROM job_state WHERE job = 'job.slow'")
        await asyncio.wait_for(asyncio.gather(slow, write), 5)
        assert not store._riders and not store._busy
        if what == "pending decision":
            assert write.result() is not None and len(await store.decisions("job.active")) == 1
        assert store.health.writable
    finally:
        await store.close()


async def test_a_rider_that_fails_fails_alone(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'oceand.db'}", clock=lambda: 1_700_000_000.0)
    await store.open()
    try:
        slow = await _slow_transaction(store, 0.1)

        def broken(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO job_state (job, state, updated_at) VALUES ('job.rider', '{}', 0)")
            conn.execute("SELECT * FROM no_such_table")

        rider = asyncio.ensure_future(store._in_thread(broken, urgent=True))
        await asyncio.sleep(0)
        assert len(store._riders) == 1
        with pytest.raises(StoreError, match="no_such_table"):
            await asyncio.wait_for(rider, 5)
        assert store.health.failures == 1  # said, as any failed write
        await asyncio.wait_for(slow, 5)  # the transaction it rode on is written all the same
        assert await store.load_state("job.slow") == {}
        assert await store.load_state("job.rider") is None  # its own transaction rolled back
    finally:
        await store.close()


async def test_a_rider_the_thread_did_not_take_goes_the_usual_way(tmp_path: Path) -> None:
    """The transaction it came for ended before the thread looked: the loop hands it back (NOT_TAKEN) and
    it takes the lock as any urgent write."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'oceand.db'}", clock=lambda: 1_700_000_000.0)
    await store.open()
    try:
        store._busy = True  # as if a transaction ran in the thread
        write = asyncio.ensure_future(store.record_attempt(1, "job.active", attempt(1)))
        await asyncio.sleep(0)
        assert len(store._riders) == 1
        store._busy = False
        _settle(store._riders.popleft().done, NOT_TAKEN, None)  # what `_in_thread` does at its end
        await asyncio.wait_for(write, 5)
        assert await store.attempts(1) == [attempt(1)]
    finally:
        await store.close()


async def test_a_ridden_commit_whose_caller_is_cancelled_is_written_all_the_same(tmp_path: Path) -> None:
    """As a queued commit: the caller's cancellation does not take the write back, also when the thread did
    not take it and it goes the usual way."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'oceand.db'}", clock=lambda: 1_700_000_000.0)
    await store.open()
    try:
        store._busy = True  # as if a transaction ran in the thread
        write = asyncio.ensure_future(
            store.commit("job.active", {}, decision("job.active"), outcome("pending"))
        )
        await asyncio.sleep(0)
        assert len(store._riders) == 1
        write.cancel()
        await asyncio.sleep(0)
        store._busy = False
        _settle(store._riders.popleft().done, NOT_TAKEN, None)
        async with asyncio.timeout(5):
            while not await store.decisions("job.active"):
                await asyncio.sleep(0.01)
        assert write.cancelled()
    finally:
        await store.close()
