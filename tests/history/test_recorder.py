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
