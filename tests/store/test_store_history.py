"""The history table's contract (issue 16), on every backend: append, read by range, roll up, prune."""

from __future__ import annotations

from typing import Any

import pytest

from oceand.store import MySQLStore, SQLiteStore

AnyStore = SQLiteStore | MySQLStore
T0 = 1_700_000_040.0  # a minute boundary


def row(
    t: float, cpu: float, ready: int = 2, job: str = "web", decision: int | None = None
) -> dict[str, Any]:
    return {
        "job": job,
        "t": t,
        "values": {"cpu": cpu},
        "ready": ready,
        "running": ready,
        "desired": ready,
        "decision": decision,
    }


async def test_rows_round_trip_in_time_order_within_the_range(store: AnyStore) -> None:
    await store.add_history([row(T0 + 20, 30.0), row(T0, 10.0, decision=7), row(T0 + 10, 20.0)])
    await store.add_history([row(T0, 99.0, job="other")])
    got = await store.history("web")
    assert [(r["t"], r["values"], r["decision"], r["step"]) for r in got] == [
        (T0, {"cpu": 10.0}, 7, 0),
        (T0 + 10, {"cpu": 20.0}, None, 0),
        (T0 + 20, {"cpu": 30.0}, None, 0),
    ]
    assert [r["t"] for r in await store.history("web", since=T0 + 10, until=T0 + 20)] == [T0 + 10]
    assert [r["t"] for r in await store.history("web", limit=2)] == [T0, T0 + 10]


async def test_rewriting_a_period_replaces_its_row(store: AnyStore) -> None:
    await store.add_history([row(T0, 10.0)])
    await store.add_history([row(T0, 11.0, ready=3)])
    got = await store.history("web")
    assert [(r["values"]["cpu"], r["ready"]) for r in got] == [(11.0, 3)]


async def test_rollup_averages_each_minute_and_keeps_its_last_counts(store: AnyStore) -> None:
    rows = [row(T0 + 10 * i, float(i), ready=1 + i // 6, decision=(5 if i == 2 else None)) for i in range(18)]
    await store.add_history(rows)
    # the first two minutes are older than the cut-off; the third is not
    assert await store.rollup_history(T0 + 120, limit=1000) == 12
    got = await store.history("web")
    rolled = [(r["t"], r["step"], r["values"]["cpu"], r["ready"], r["decision"]) for r in got[:2]]
    assert rolled == [(T0, 60, 2.5, 1, 5), (T0 + 60, 60, 8.5, 2, None)]
    assert [r["step"] for r in got[2:]] == [0] * 6
    assert await store.rollup_history(T0 + 120, limit=1000) == 0  # rolled rows are not rolled again


async def test_rollup_in_small_batches_never_splits_a_minute(store: AnyStore) -> None:
    await store.add_history([row(T0 + 10 * i, float(i)) for i in range(12)])
    total = 0
    for _ in range(10):
        n = await store.rollup_history(T0 + 120, limit=8)
        total += n
        if n == 0:
            break
    assert total == 12
    got = await store.history("web")
    assert [(r["t"], r["values"]["cpu"]) for r in got] == [(T0, 2.5), (T0 + 60, 8.5)]


async def test_prune_deletes_old_rows_in_batches(store: AnyStore) -> None:
    await store.add_history([row(T0 + 10 * i, float(i)) for i in range(10)])
    assert await store.prune_history(T0 + 50, limit=3) == 3
    assert await store.prune_history(T0 + 50, limit=3) == 2
    assert await store.prune_history(T0 + 50, limit=3) == 0
    assert [r["t"] for r in await store.history("web")] == [T0 + 10 * i for i in range(5, 10)]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(
            {"job": "bad name", "t": T0, "values": {}, "ready": 1, "running": 1, "desired": 1}, id="job"
        ),
        pytest.param(
            {"job": "web", "t": float("nan"), "values": {}, "ready": 1, "running": 1, "desired": 1}, id="t"
        ),
        pytest.param(
            {"job": "web", "t": T0, "values": {"cpu": "x"}, "ready": 1, "running": 1, "desired": 1},
            id="value",
        ),
        pytest.param(
            {"job": "web", "t": T0, "values": {}, "ready": -1, "running": 1, "desired": 1}, id="ready"
        ),
    ],
)
async def test_a_bad_row_writes_nothing(store: AnyStore, bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        await store.add_history([row(T0, 1.0), bad])
    assert await store.history("web") == []
