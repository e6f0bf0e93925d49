"""The store's token and audit tables on both backends (SQLite file, MariaDB): the contract oceand.auth uses."""

from __future__ import annotations

from typing import Any

import pytest

from oceand.store import MySQLStore, SQLiteStore

Store = SQLiteStore | MySQLStore
JOB = "job.web_pdl.ocean_owt.inf_cop.xiaomi"


def entry(**over: Any) -> dict[str, Any]:
    e: dict[str, Any] = {
        "time": 100.0,
        "actor": "root",
        "source": "10.0.0.1",
        "action": "job.create",
        "job": JOB,
        "before_version": None,
        "after_version": 1,
        "detail": {"k": "v"},
    }
    e.update(over)
    return e


async def test_token_rows(store: Store) -> None:
    assert await store.list_tokens() == []
    assert await store.create_token("b", {"secret_hash": "h1"}) is True
    assert await store.create_token("b", {"secret_hash": "other"}) is False  # names are unique
    assert await store.create_token("a", {"secret_hash": "h0"}) is True
    assert await store.update_token("b", {"secret_hash": "h2"}) is True
    assert await store.update_token("zz", {"secret_hash": "h"}) is False
    assert await store.list_tokens() == [
        {"name": "a", "record": {"secret_hash": "h0"}},
        {"name": "b", "record": {"secret_hash": "h2"}},
    ]
    assert await store.delete_token("a") is True
    assert await store.delete_token("a") is False
    assert [t["name"] for t in await store.list_tokens()] == ["b"]


async def test_audit_rows_newest_first_with_filters(store: Store) -> None:
    ids = [
        await store.add_audit(entry(time=100.0)),
        await store.add_audit(entry(time=200.0, action="job.replace", before_version=1, after_version=2)),
        await store.add_audit(entry(time=200.0, action="token.create", job=None, after_version=None)),
        await store.add_audit(entry(time=300.0, job="job.other", action="job.delete")),
    ]
    assert ids == sorted(ids) and len(set(ids)) == 4
    rows = await store.audit()
    assert [r["id"] for r in rows] == list(reversed(ids))
    assert rows[-1] == {**entry(time=100.0), "id": ids[0]}
    assert [r["action"] for r in await store.audit(job=JOB)] == ["job.replace", "job.create"]
    assert [r["time"] for r in await store.audit(since=200.0)] == [300.0, 200.0, 200.0]
    assert [r["id"] for r in await store.audit(limit=1)] == [ids[3]]


async def test_audit_rows_added_together_keep_their_order_and_ids(store: Store) -> None:
    assert await store.add_audits([]) == []
    first = await store.add_audit(entry(time=50.0))
    many = [entry(time=100.0, job=f"job.n{i}") for i in range(5)]
    ids = await store.add_audits(many)
    assert len(ids) == 5 and ids == sorted(ids) and min(ids) > first
    rows = await store.audit(since=100.0)
    assert [r["id"] for r in rows] == list(reversed(ids))
    assert [{k: v for k, v in r.items() if k != "id"} for r in reversed(rows)] == many


async def test_audit_rows_added_together_are_written_all_or_none(store: Store) -> None:
    with pytest.raises(ValueError, match="job name"):
        await store.add_audits([entry(), entry(job="a/b")])
    assert await store.audit() == []


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        pytest.param({"actor": ""}, "actor", id="empty actor"),
        pytest.param({"action": "x" * 65}, "action", id="long action"),
        pytest.param({"job": "a/b"}, "job name", id="bad job"),
        pytest.param({"time": float("nan")}, "audit time", id="nan time"),
        pytest.param({"after_version": "2"}, "after_version", id="version not int"),
    ],
)
async def test_bad_audit_entries_write_nothing(store: Store, bad: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await store.add_audit(entry(**bad))
    assert await store.audit() == []


async def test_bad_token_names_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="token name"):
        await store.create_token("a b", {})
