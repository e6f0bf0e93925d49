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
from oceand.store.sqlite import _Commit, _PriorityLock
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
    decision about to be applied come. Once free, the store serves the attempt, then the pending decision in
    a transaction of its own (the queued commits are not written with it), and only then the others, first
    come, first served: the read, then the group of the flush and the dry-run decision."""
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
        # the attempt first (queued urgent before the decision came), then the pending decision alone, then
        # the read (queued before the group writer came back for the others), then the flush and dry-run one
        assert done[0] == "attempt"
        assert done[1] == "pending"
        assert done[2] == "read"
        assert set(done[3:5]) == {"flush", "dry-run"}
        assert len(await store.decisions("job.active")) == 1
    finally:
        await store.close()


async def test_a_decision_to_apply_is_written_in_a_transaction_of_its_own(tmp_path: Path) -> None:
    """Twenty dry-run decisions and state flushes queue while the store is busy, then a decision about to be
    applied comes: its transaction holds it alone (each statement in the database's thread waits for the
    GIL from a busy loop, so the queued commits made it 25-55 ms long), and the others follow in one group."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'oceand.db'}", clock=lambda: 1_700_000_000.0)
    await store.open()
    groups: list[list[str]] = []
    real = store._commit_many

    async def commit_many(batch: list[Any], held: bool = False, yields: bool = False) -> list[Any]:
        groups.append([item.job for item in batch])
        return await real(batch, held=held, yields=yields)

    store._commit_many = commit_many  # type: ignore[method-assign]
    try:
        await store._lock.acquire()  # busy
        tasks = [
            asyncio.ensure_future(
                store.commit(f"job.dry{i}", {}, decision(f"job.dry{i}"), outcome("dry-run"))
            )
            for i in range(10)
        ]
        tasks += [asyncio.ensure_future(store.commit(f"job.flush{i}", {"count": i})) for i in range(10)]
        await asyncio.sleep(0)
        tasks.append(
            asyncio.ensure_future(store.commit("job.active", {}, decision("job.active"), outcome("pending")))
        )
        await asyncio.sleep(0)
        store._lock.release()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        assert groups[0] == ["job.active"]
        assert sorted(groups[1]) == sorted(
            [f"job.dry{i}" for i in range(10)] + [f"job.flush{i}" for i in range(10)]
        )
        assert len(groups) == 2
    finally:
        await store.close()


async def test_a_group_transaction_ends_early_when_an_urgent_write_waits(tmp_path: Path) -> None:
    """While an urgent write waits (here: always), a group transaction ends after each commit and the rest is
    queued again at the head: twenty queued commits take twenty transactions, each one shorter, and all of
    them land in order, with their ids and states."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'oceand.db'}", clock=lambda: 1_700_000_000.0)
    await store.open()
    sizes: list[int] = []
    real = store._commit_many

    async def commit_many(batch: list[Any], held: bool = False, yields: bool = False) -> list[Any]:
        sizes.append(len(batch))
        out = await real(batch, held=held, yields=yields)
        assert len(out) == 1
        return out

    store._commit_many = commit_many  # type: ignore[method-assign]
    store._lock.urgent_waiting = lambda: True  # type: ignore[method-assign]
    try:
        await store._lock.acquire()
        tasks = [
            asyncio.ensure_future(
                store.commit(f"job.d{i:02d}", {"n": i}, decision(f"job.d{i:02d}"), outcome("dry-run"))
            )
            for i in range(20)
        ]
        await asyncio.sleep(0)
        store._lock.release()
        ids = await asyncio.wait_for(asyncio.gather(*tasks), 10)
        assert sizes == list(range(20, 0, -1))
        assert ids == sorted(ids) and len(set(ids)) == 20  # in the order they came
        for i in range(20):
            assert await store.load_state(f"job.d{i:02d}") == {"n": i}
            assert len(await store.decisions(f"job.d{i:02d}")) == 1
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("newer_queued", "writes_state"),
    [
        pytest.param(False, True, id="no-newer-commit-it-writes-its-state"),
        pytest.param(True, False, id="a-newer-commit-came-it-writes-none"),
    ],
)
async def test_a_commit_queued_again_writes_its_state_only_when_no_newer_one_came(
    tmp_path: Path, newer_queued: bool, writes_state: bool
) -> None:
    """`_requeue`: a commit a group transaction left goes back to the head of the queue; when a commit of the
    same job came meanwhile (queued, so written after it), the older one's state is not written."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'oceand.db'}")
    await store.open()
    try:
        older = _Commit("job.a", '{"n": 1}', None)
        if newer_queued:
            newer = _Commit("job.a", '{"n": 2}', None)
            store._waiting["job.a"] = newer
            store._queued.append(newer)
        store._requeue([older])
        assert store._queued[0] is older
        assert (older.state is not None) is writes_state
        assert (store._waiting["job.a"] is older) is writes_state
        for item in store._queued:
            item.done.cancel()
    finally:
        await store.close()
