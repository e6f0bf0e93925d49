"""SQLite group commit: many jobs committing at once share transactions (one fsync each), decisions about
to be applied go first, one bad row fails only its own commit, and close() writes what was accepted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from oceand.store import SQLiteStore, StoreError
from oceand.store.sqlite import GROUP_MAX
from tests.store.test_store_contract import decision, outcome


def _store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(f"sqlite:///{tmp_path / 'oceand.db'}", clock=lambda: 1_700_000_000.0)


def _record_batches(store: SQLiteStore) -> list[list[str]]:
    """Wrap the store's transaction writer: the job names of each group transaction, in order."""
    batches: list[list[str]] = []
    inner = store._commit_many

    async def spy(batch: list[Any], held: bool = False, yields: bool = False) -> list[int | None]:
        batches.append([item.job for item in batch])
        return await inner(batch, held, yields)

    store._commit_many = spy  # type: ignore[method-assign]
    return batches


async def test_concurrent_commits_share_transactions_and_all_land(tmp_path: Path) -> None:
    store = _store(tmp_path)
    await store.open()
    batches = _record_batches(store)
    n = GROUP_MAX + 100
    ids = await asyncio.gather(
        *(
            store.commit(f"j{k}", {"count": k}, *((decision(f"j{k}"), outcome("dry-run")) if k % 3 else ()))
            for k in range(n)
        )
    )
    assert len(batches) <= 3 and sum(len(b) for b in batches) == n  # not one transaction per commit
    assert all(len(b) <= GROUP_MAX for b in batches)
    stored = [i for i in ids if i is not None]
    assert len(stored) == len(set(stored)) == sum(1 for k in range(n) if k % 3)
    for k in (0, 1, n - 1):
        assert await store.load_state(f"j{k}") == {"count": k}
        assert [d["id"] for d in await store.decisions(f"j{k}")] == ([ids[k]] if k % 3 else [])
    await store.close()


async def test_decisions_to_apply_go_in_the_first_transaction(tmp_path: Path) -> None:
    store = _store(tmp_path)
    await store.open()
    batches = _record_batches(store)
    crowd = [
        store.commit(f"dry{k}", {}, decision(f"dry{k}"), outcome("dry-run")) for k in range(2 * GROUP_MAX)
    ]
    await asyncio.gather(*crowd, store.commit("active", {}, decision("active"), outcome("pending")))
    assert "active" in batches[0]
    await store.close()


async def test_one_bad_row_fails_only_its_own_commit(tmp_path: Path) -> None:
    store = _store(tmp_path)
    await store.open()
    async with aiosqlite.connect(tmp_path / "oceand.db", isolation_level=None) as db:
        await db.execute(
            "CREATE TRIGGER fail_bad BEFORE INSERT ON decisions WHEN NEW.job = 'bad'"
            " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
    results = await asyncio.gather(
        store.commit("good1", {"v": 1}, decision("good1")),
        store.commit("bad", {"v": 2}, decision("bad")),
        store.commit("good2", {"v": 3}, decision("good2")),
        return_exceptions=True,
    )
    assert isinstance(results[1], StoreError) and "injected failure" in str(results[1])
    assert isinstance(results[0], int) and isinstance(results[2], int)
    assert await store.load_state("bad") is None  # its state went with its failed transaction
    assert await store.load_state("good2") == {"v": 3}
    await store.close()


async def test_a_locked_database_fails_the_whole_group_in_one_timeout(tmp_path: Path) -> None:
    path = tmp_path / "oceand.db"
    store = SQLiteStore(f"sqlite:///{path}?timeout=0.3", clock=lambda: 1_700_000_000.0)
    await store.open()
    async with aiosqlite.connect(path, isolation_level=None) as other:
        await other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        results = await asyncio.gather(
            *(store.commit(f"j{k}", {}, decision(f"j{k}")) for k in range(10)), return_exceptions=True
        )
        took = time.monotonic() - started
        await other.execute("ROLLBACK")
    assert all(isinstance(r, StoreError) and "locked" in str(r) for r in results)
    assert took < 10 * 0.3  # not one timeout per commit
    assert await store.commit("j0", {"v": 1}, None) is None  # and the store goes on once the lock is gone
    await store.close()


async def test_close_writes_the_commits_it_accepted(tmp_path: Path) -> None:
    store = _store(tmp_path)
    await store.open()
    tasks = [asyncio.ensure_future(store.commit(f"j{k}", {"k": k}, decision(f"j{k}"))) for k in range(50)]
    await asyncio.sleep(0)  # every commit queued, none written yet
    await store.close()
    assert all(isinstance(t.result(), int) for t in tasks)
    again = _store(tmp_path)
    await again.open()
    assert await again.load_state("j49") == {"k": 49}
    await again.close()


async def test_a_cancelled_caller_does_not_take_its_write_back(tmp_path: Path) -> None:
    store = _store(tmp_path)
    await store.open()
    task = asyncio.ensure_future(store.commit("j", {"v": 1}, decision("j")))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.close()
    again = _store(tmp_path)
    await again.open()
    assert await again.load_state("j") == {"v": 1}  # written: the caller may retry, never half of it
    await again.close()


async def test_a_caller_cancelled_while_its_group_is_written_does_not_stop_the_writer(tmp_path: Path) -> None:
    """Its commit is in the transaction in flight when the caller is cancelled: the commit is written, the
    others of the group get their ids, and the writer goes on with the next commits."""
    store = _store(tmp_path)
    await store.open()
    await store._lock.acquire()
    gone = asyncio.ensure_future(store.commit("j1", {"v": 1}, decision("j1")))
    kept = asyncio.ensure_future(store.commit("j2", {"v": 2}, decision("j2")))
    await asyncio.sleep(0)
    store._lock.release()
    await asyncio.sleep(0)  # the writer has the lock and the batch: the transaction is on its way
    gone.cancel()
    assert isinstance(await asyncio.wait_for(kept, 5), int)
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert isinstance(await asyncio.wait_for(store.commit("j3", {"v": 3}, decision("j3")), 5), int)
    assert await store.load_state("j1") == {"v": 1}
    assert len(await store.decisions("j1")) == 1
    await store.close()


async def test_a_pending_decision_jumping_the_queue_does_not_let_an_older_state_win(tmp_path: Path) -> None:
    """The flusher's state-only commit of a job is queued, then the job's pending decision with a newer
    state: the decision is written first (it jumps the queue), and the older state is not written after."""
    store = _store(tmp_path)
    await store.open()
    crowd = [
        store.commit(f"dry{k}", {}, decision(f"dry{k}"), outcome("dry-run")) for k in range(2 * GROUP_MAX)
    ]
    older = store.commit("j", {"streak": 1}, None)
    newer = store.commit("j", {"streak": 2}, decision("j"), outcome("pending"))
    await asyncio.gather(*crowd, older, newer)
    assert await store.load_state("j") == {"streak": 2}
    await store.close()
