"""Benchmark: what the fenced hot-state write costs (issue 14, HA.md §6.4), against a plain write, both
measured in the same run on the same Redis.

A round writes one state snapshot for each of `--jobs` jobs, as a daemon does when their buckets close,
`--concurrency` writes in flight at a time (the job workers run concurrently). Four kinds of round:

- plain: `HSET` + `PEXPIRE` in one MULTI/EXEC pipeline, not fenced (the baseline);
- fenced: `HotState.write_state`, the Lua script by EVALSHA, every state changed;
- batched: `HotState.write_states`, `--batch` fenced writes in one pipeline, every state changed;
- unchanged: `HotState.write_state` again with the same states (only `last_bucket` moved), so nothing
  is sent;
- degraded: `HotState.write_state` while Redis is marked degraded, so nothing is sent.

For each kind the script prints writes per wall second and client CPU µs per write (this process, where
the daemon's cost lands), as the median of `--rounds` rounds, with the ratio to plain. Redis's own CPU is
not included. The keys go under a prefix of the run's own, deleted afterwards.

    .venv/bin/python bench/hotstate.py [--jobs 10000] [--rounds 5] [--concurrency 100] [--batch 100]
        [--url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from redis.asyncio import Redis

from oceand.cluster.hotstate import HotState, StateWrite, state_key


def _state(i: int, bucket: int, round_: int) -> dict[str, Any]:
    """About the size HA.md §6.4 estimates (~370 B): streaks, stabilization history, counts. Changes
    with `round_`; `bucket` only moves `last_bucket` (an unchanged state, one bucket later)."""
    return {
        "count": 4 + i % 7,
        "last_bucket": bucket,
        "streaks": {"cpu_high": (i + round_) % 5, "cpu_low": 0, "qps_high": round_ % 3},
        "history": [[1_733_000_000 + 60 * (round_ - k), 4 + (i + k) % 3] for k in range(8)],
        "cooldown_until": 1_733_000_300 + 60 * round_,
        "fires": {"morning": 1_733_000_000.0},
        "created_at": 1_732_000_000.0,
    }


async def _round(n: int, concurrency: int, one: Callable[[int], Awaitable[Any]]) -> tuple[float, float]:
    """(wall s, CPU s of this process) for n calls, `concurrency` at a time."""
    sem = asyncio.Semaphore(concurrency)

    async def go(i: int) -> None:
        async with sem:
            await one(i)

    w0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(go(i) for i in range(n)))
    return time.perf_counter() - w0, time.process_time() - c0


async def main(jobs: int, rounds: int, concurrency: int, batch: int, url: str) -> None:
    cluster = f"bench-hotstate-{os.getpid()}"
    hot = HotState(url, cluster, socket_timeout=5.0)
    plain = Redis.from_url(url)
    assert await hot.probe(), f"Redis at {url} does not answer"
    bucket, round_ = [1_733_000_000], [0]
    kinds = ("plain", "fenced", "batched", "unchanged", "degraded")
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}

    async def plain_write(i: int) -> None:
        s = _state(i, bucket[0], round_[0])
        async with plain.pipeline(transaction=True) as p:
            key = state_key(cluster + "-plain", i % 1024, f"job{i}")
            p.hset(key, mapping={"epoch": 1, "bucket_ts": bucket[0], "state": orjson.dumps(s)})
            p.pexpire(key, 3_600_000)
            await p.execute()

    async def fenced_write(i: int) -> None:
        result = await hot.write_state(i % 1024, 1, f"job{i}", bucket[0], _state(i, bucket[0], round_[0]))
        assert result in ("ok", "unchanged", "skipped"), result

    async def batched_write(b: int) -> None:
        lo, hi = b * batch, min(jobs, (b + 1) * batch)
        ws = [
            StateWrite(i % 1024, 1, f"job{i}", bucket[0], _state(i, bucket[0], round_[0]))
            for i in range(lo, hi)
        ]
        assert set(await hot.write_states(ws)) == {"ok"}

    batches = (jobs + batch - 1) // batch
    try:
        for r in range(rounds):
            round_[0] = r
            bucket[0] += 60
            results["plain"].append(await _round(jobs, concurrency, plain_write))
            hot._written.clear()  # every state counts as changed
            results["fenced"].append(await _round(jobs, concurrency, fenced_write))
            hot._written.clear()
            w, c = await _round(batches, max(1, concurrency // batch), batched_write)
            results["batched"].append((w, c))
            bucket[0] += 60  # the same states, one bucket later
            results["unchanged"].append(await _round(jobs, concurrency, fenced_write))
            hot._written.clear()
            hot.up = False
            results["degraded"].append(await _round(jobs, concurrency, fenced_write))
            hot.up = True
    finally:
        async for key in plain.scan_iter(match=f"oceand:{{{cluster}*", count=1000):
            await plain.delete(key)
        await plain.aclose()
        await hot.close()

    base_wall = statistics.median(w for w, _ in results["plain"])
    base_cpu = statistics.median(c for _, c in results["plain"])
    print(f"{jobs} jobs, {rounds} rounds, {concurrency} in flight, Redis {url}; medians of rounds")
    print(f"{'kind':<10} {'writes/s':>10} {'CPU µs/write':>13} {'wall ratio':>11} {'CPU ratio':>10}")
    for kind, rows in results.items():
        wall = statistics.median(w for w, _ in rows)
        cpu = statistics.median(c for _, c in rows)
        print(
            f"{kind:<10} {jobs / wall:>10,.0f} {cpu / jobs * 1e6:>13.1f} "
            f"{wall / base_wall:>11.2f} {cpu / base_cpu:>10.2f}"
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--url", default="redis://127.0.0.1:6379/0")
    a = ap.parse_args()
    asyncio.run(main(a.jobs, a.rounds, a.concurrency, a.batch, a.url))
