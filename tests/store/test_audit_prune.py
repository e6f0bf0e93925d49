"""Audit retention (PRODUCT §10, issue 13): the oldest entries are deleted in batches, on both backends."""

from __future__ import annotations

from oceand import auth
from tests.store.test_store_auth import Store, entry


async def test_prune_audit_in_batches(store: Store) -> None:
    for t in (10.0, 14.0, 11.0, 12.0, 13.0):
        await store.add_audit(entry(time=t))
    assert await store.prune_audit(13.0, 2) == 2  # the two oldest
    assert sorted(e["time"] for e in await store.audit()) == [12.0, 13.0, 14.0]
    assert await store.prune_audit(13.0, 2) == 1
    assert await store.prune_audit(13.0, 2) == 0
    assert sorted(e["time"] for e in await store.audit()) == [13.0, 14.0]  # time == before is kept


async def test_prune_audit_loops_until_done(store: Store) -> None:
    for t in range(7):
        await store.add_audit(entry(time=float(t)))
    assert await auth.prune_audit(store, 5.0, batch=2) == 5  # batches of 2, 2, 1
    assert sorted(e["time"] for e in await store.audit()) == [5.0, 6.0]
    assert await auth.prune_audit(store, 5.0, batch=2) == 0
