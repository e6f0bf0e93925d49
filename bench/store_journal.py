"""Benchmark: what the SQLite store's rollback journal costs against WAL, measured in the same run.

The store uses a rollback journal so that an unwritable disk is an I/O error and not SIGBUS (see
oceand/store/sqlite.py). The baseline is the same store switched back to WAL after open; the rollback
journal's three ways to end a transaction (DELETE, TRUNCATE, PERSIST) are measured beside it. Wall
time (fsyncs are the cost, not CPU):

- one decision: a single `pending` commit on an idle store (a decision's time from commit to PUT);
- a crowd: 2,000 jobs committing at once (group commit), then one `pending` decision behind them.

Each is the median of `--rounds` rounds; the ratio is against WAL.

    .venv/bin/python bench/store_journal.py [--rounds 7] [--crowd 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from oceand.store import SQLiteStore


def _decision(job: str, status: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A decision and its first outcome (committed together)."""
    return {"job": job, "at": 1_700_000_000.0, "trigger": "bucket", "current": 1, "desired": 2}, {
        "status": status
    }


MODES = ("WAL", "DELETE", "TRUNCATE", "PERSIST")


async def _round(folder: Path, mode: str, crowd: int) -> tuple[float, float, float]:
    store = SQLiteStore(f"sqlite:///{folder / 'oceand.db'}")
    await store.open()
    try:
        cursor = await store._db.execute(f"PRAGMA journal_mode={mode}")  # type: ignore[union-attr]
        await cursor.close()  # its row unread would keep the statement in progress (no COMMIT then)
        singles = []
        for i in range(20):
            started = time.perf_counter()
            await store.commit("one", {"count": i}, *_decision("one", "pending"))
            singles.append(time.perf_counter() - started)
        started = time.perf_counter()
        others = [store.commit(f"j{k}", {"count": k}, *_decision(f"j{k}", "dry-run")) for k in range(crowd)]
        tasks = [asyncio.ensure_future(c) for c in others]
        await asyncio.sleep(0)
        urgent_started = time.perf_counter()
        await store.commit("urgent", {"count": 1}, *_decision("urgent", "pending"))
        urgent = time.perf_counter() - urgent_started
        await asyncio.gather(*tasks)
        return statistics.median(singles), urgent, time.perf_counter() - started
    finally:
        await store.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--crowd", type=int, default=2000)
    args = ap.parse_args()
    results: dict[str, list[tuple[float, float, float]]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory(prefix="oceand-bench-") as tmp:
        for r in range(args.rounds):
            for mode in MODES:  # interleaved: other load on the machine hits every mode alike
                folder = Path(tmp) / f"{r}-{mode}"
                folder.mkdir()
                results[mode].append(await _round(folder, mode, args.crowd))
    names = ("one pending commit", f"pending behind {args.crowd}", f"{args.crowd} + 1 commits")
    print(f"{'median ms (ratio to WAL)':28s}" + "".join(f"{m:>20s}" for m in MODES))
    for i, name in enumerate(names):
        ms = {m: statistics.median(x[i] for x in results[m]) * 1000 for m in MODES}
        cells = "".join(f"{ms[m]:>11.2f} ({ms[m] / ms['WAL']:4.2f}x)" for m in MODES)
        print(f"{name:28s}{cells}")


if __name__ == "__main__":
    asyncio.run(main())
