"""HistoryRecorder: bounded buffer, batched writes, roll-up and pruning with a controlled clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from oceand.history import HistoryRecorder
from oceand.store import SQLiteStore, StoreError

T0 = 1_700_000_040.0


async def test_buffer_is_bounded_written_in_batches_then_rolled_up_and_pruned(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path}/h.db")
    await store.open()
    now = [T0]
    dropped: list[int] = []
    written: list[int] = []
    rec = HistoryRecorder(
        store,
        retention=3 * 86400,
        rollup_after=86400,
        max_buffer=1000,
        batch=400,
        clock=lambda: now[0],
        on_dropped=dropped.append,
        on_written=written.append,
    )
    for i in range(1001):
        rec.record("web", T0 + 10 * i, {"cpu": float(i), "qps": None}, 2, None, 2, None)
    assert (rec.buffered, len(dropped)) == (1000, 1)  # the 1001st is dropped and counted
    assert await rec.flush() == 1000 and written == [400, 400, 200] and rec.buffered == 0
    rows = await store.history("web", limit=2000)
    assert len(rows) == 1000 and rows[0]["values"] == {"cpu": 0.0} and rows[0]["running"] == 2
    now[0] = T0 + 86400 + 10 * 600  # the first 600 rows (100 minutes) are past rollup_after
    assert await rec.prune() == (600, 0)
    rows = await store.history("web", limit=2000)
    assert [r["step"] for r in rows] == [60] * 100 + [0] * 400
    now[0] = T0 + 3 * 86400 + 10 * 120  # the first 20 minutes are past retention
    _, pruned = await rec.prune()
    assert pruned == 20
    await store.close()


class _Failing:
    """A store whose history writes fail with `error` while `failing`."""

    def __init__(self, error: Exception) -> None:
        self.error, self.failing, self.rows = error, True, []  # type: ignore[var-annotated]

    async def add_history(self, rows: list[dict[str, object]]) -> int:
        if self.failing:
            raise self.error
        self.rows += rows
        return len(rows)


async def test_rows_wait_while_the_store_is_down_and_a_refused_batch_is_dropped_and_counted() -> None:
    store = _Failing(StoreError("down"))
    dropped: list[int] = []
    rec = HistoryRecorder(store, batch=2, on_dropped=dropped.append)  # type: ignore[arg-type]
    for i in range(3):
        rec.record("web", T0 + 10 * i, {"cpu": 1.0, "nan": float("nan")}, 1, 1, 1, None)
    with pytest.raises(StoreError):
        await rec.flush()
    assert rec.buffered == 3  # kept for the next flush
    store.failing = False
    assert await rec.flush() == 3 and [r["values"] for r in store.rows] == [{"cpu": 1.0}] * 3
    store.error, store.failing = ValueError("bad row"), True
    rec.record("web", T0, {"cpu": 1.0}, 1, 1, 1, None)
    assert await rec.flush() == 0 and rec.buffered == 0 and dropped == [1]


async def test_rows_with_any_number_of_values_come_out_as_recorded_in_order() -> None:
    """The buffer is flat (a variable number of items per row): rows of 0, 1 and 3 values, batches that
    split them, and a values dict the caller changes after recording it."""
    store = _Failing(StoreError("down"))
    store.failing = False
    rec = HistoryRecorder(store, batch=2, max_buffer=4)  # type: ignore[arg-type]
    reused: dict[str, float | None] = {"cpu": 1.0}
    recorded = [
        ("a", T0, {}, 1, None, 1, None),
        ("b", T0 + 10, reused, 2, 3, 4, 17),
        ("c", T0 + 20, {"cpu": 2.0, "qps": None, "mem": float("inf")}, 0, 0, 1, 18),
        ("d", T0 + 30, {"x": 5.0}, 3, 3, 3, None),
    ]
    for row in recorded:
        rec.record(*row)  # type: ignore[arg-type]
    reused["cpu"] = 99.0  # copied when recorded
    rec.record("e", T0 + 40, {}, 1, 1, 1, None)  # the fifth: over max_buffer, dropped
    assert rec.buffered == 4 and rec.dropped == 1
    expected = [(*r[:2], {"cpu": 1.0}, *r[3:]) if r[0] == "b" else r for r in recorded]
    assert rec.rows() == expected and rec.rows(1) == expected[:1]
    assert await rec.flush() == 4 and rec.buffered == 0 and rec.rows() == []
    assert [(r["job"], r["values"], r["running"], r["decision"]) for r in store.rows] == [
        ("a", {}, 1, None),
        ("b", {"cpu": 1.0}, 3, 17),
        ("c", {"cpu": 2.0}, 0, 18),
        ("d", {"x": 5.0}, 3, None),
    ]
