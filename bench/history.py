"""History write cost and size (issue 16): 10k jobs at period 10 s, one row per job per period.

Writes ROUNDS periods of 10,000 rows (2 rules each) through HistoryRecorder.flush into a SQLite file,
and prints the CPU seconds per period (against the 10 s period: the share of one core it takes), the
store's bytes per row, and so the size per job per day (8,640 rows per day, 1,440 after the roll-up).

    .venv/bin/python bench/history.py [ROUNDS]
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time

from oceand.history import HistoryRecorder
from oceand.store import SQLiteStore

JOBS, PERIOD = 10_000, 10.0


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/h.db"
        store = SQLiteStore(f"sqlite:///{path}")
        await store.open()
        rec = HistoryRecorder(store, batch=5000)
        t0 = 1_700_000_000.0
        record_cpu = flush_cpu = base_cpu = 0.0
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
            c = time.process_time()
            await rec.flush()
            flush_cpu += time.process_time() - c
        await store.close()
        size = os.path.getsize(path)
    rows = rounds * JOBS
    per_round = (record_cpu + flush_cpu) / rounds
    per_row = size / rows
    print(f"rows: {rows:,} ({rounds} periods x {JOBS:,} jobs)")
    net = max(0.0, record_cpu - base_cpu)
    print(
        f"record (hot path): {record_cpu / rows * 1e6:.2f} us/row, {net / rows * 1e6:.2f} us/row over the"
        f" baseline loop ({base_cpu / rows * 1e6:.2f} us/row) = {net / rounds * 1000:.1f} ms per 10k-job round;"
        f" flush: {flush_cpu / rows * 1e6:.2f} us/row"
    )
    print(
        f"CPU per 10 s period for {JOBS:,} jobs: {per_round * 1000:.0f} ms = {per_round / PERIOD:.1%} of a core"
    )
    print(
        f"store size: {per_row:.0f} B/row -> {per_row * 8640 / 1024:.0f} KiB per job per day raw,"
        f" {per_row * 1440 / 1024:.0f} KiB per job per day rolled up"
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 6))
