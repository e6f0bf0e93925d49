"""History write cost and size (issue 16): 10k jobs at period 10 s, one row per job per period.

Writes ROUNDS periods of 10,000 rows (2 rules each) through HistoryRecorder.flush into a SQLite file
(or the MySQL / MariaDB database of `--store mysql://...`, which must be empty: its history table is
read for the size), and prints the CPU seconds per period (against the 10 s period: the share of one
core it takes), the wall time of the writes (for MySQL the server's work is in it, not in the CPU
figure), the store's bytes per row, and so the size per job per day (8,640 rows per day, 1,440 after
the roll-up).

    .venv/bin/python bench/history.py [ROUNDS] [--store mysql://root@127.0.0.1:3306/DB]
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from typing import Any

from oceand.config import HistorySettings
from oceand.history import HistoryRecorder
from oceand.store import MySQLStore, SQLiteStore, open_store

JOBS, PERIOD = 10_000, 10.0


async def _mysql_bytes(store: MySQLStore) -> int:
    """The history table's data and index bytes (InnoDB's figures, after ANALYZE TABLE)."""

    async def size(cur: Any) -> int:
        await cur.execute("ANALYZE TABLE history")
        await cur.fetchall()
        await cur.execute(
            "SELECT data_length + index_length FROM information_schema.tables"
            " WHERE table_schema = DATABASE() AND table_name = 'history'"
        )
        (n,) = await cur.fetchone()
        return int(n)

    return await store._run(size)


async def main(rounds: int, url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/h.db"
        store = open_store(url) if url else SQLiteStore(f"sqlite:///{path}")
        await store.open()
        rec = HistoryRecorder(store, batch=HistorySettings().batch)  # the daemon's default
        t0 = 1_700_000_000.0
        record_cpu = flush_cpu = base_cpu = flush_wall = 0.0
        for k in range(rounds):
            t = t0 + k * PERIOD
            inputs = [(f"job.{j}", {"cpu": 50.0 + j % 7, "qps": 120.5}) for j in range(JOBS)]
            sink: list[tuple[object, ...]] = []
            c = time.process_time()  # baseline: the same loop, a bare list append instead of record
            for name, values in inputs:
                sink.append((name, t, values, 3, 3, 3, None))
            base_cpu += time.process_time() - c
            c = time.process_time()
            for name, values in inputs:
                rec.record(name, t, values, 3, 3, 3, None)
            record_cpu += time.process_time() - c
            c, w = time.process_time(), time.perf_counter()
            await rec.flush()
            flush_cpu += time.process_time() - c
            flush_wall += time.perf_counter() - w
        size = await _mysql_bytes(store) if isinstance(store, MySQLStore) else os.path.getsize(path)
        await store.close()
    rows = rounds * JOBS
    per_round = (record_cpu + flush_cpu) / rounds
    per_row = size / rows
    print(f"rows: {rows:,} ({rounds} periods x {JOBS:,} jobs)")
    net = max(0.0, record_cpu - base_cpu)
    print(
        f"record (hot path): {record_cpu / rows * 1e6:.2f} us/row, {net / rows * 1e6:.2f} us/row over the"
        f" baseline loop ({base_cpu / rows * 1e6:.2f} us/row) = {net / rounds * 1000:.1f} ms per 10k-job round;"
        f" flush: {flush_cpu / rows * 1e6:.2f} us/row CPU, {flush_wall / rows * 1e6:.2f} us/row wall"
    )
    print(
        f"wall time of the writes per 10 s period: {flush_wall / rounds * 1000:.0f} ms ({url or 'SQLite file'})"
    )
    print(
        f"CPU per 10 s period for {JOBS:,} jobs: {per_round * 1000:.0f} ms = {per_round / PERIOD:.1%} of a core"
    )
    print(
        f"store size: {per_row:.0f} B/row -> {per_row * 8640 / 1024:.0f} KiB per job per day raw,"
        f" {per_row * 1440 / 1024:.0f} KiB per job per day rolled up"
    )


if __name__ == "__main__":
    args = sys.argv[1:]
    store_url = None
    if "--store" in args:
        i = args.index("--store")
        store_url = args[i + 1]
        del args[i : i + 2]
    asyncio.run(main(int(args[0]) if args else 6, store_url))
