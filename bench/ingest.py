"""Ingest benchmark (PRODUCT §8): Falcon push over HTTP, end to end into the buckets.

A real daemon process (`oceand run`) watches JOBS jobs; a client in another process (this one) posts
BODIES bodies of 1,000 points each over keep-alive HTTP. The figure is the daemon's CPU-seconds (from
/proc) against the CPU-seconds `orjson.loads` alone takes on the same bodies, measured in this run:

    ratio = points per daemon CPU-second / points per orjson.loads CPU-second   (target >= 0.5)

Run: .venv/bin/python bench/ingest.py [--bodies 400] [--jobs 200]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import DaemonProcess, job_doc

POINTS = 1000


def make_bodies(n: int, jobs: int, start: int) -> list[bytes]:
    rng = random.Random(7)
    bodies = []
    metrics = ("cpu.idle", "proc.qps", "mem.memfree.percent", "proc.delay")
    for b in range(n):
        ts = start + (b * 20) // n  # the bodies cover 20 s of agent time from `start` (now)
        items = []
        for i in range(POINTS):
            j = rng.randrange(jobs)
            items.append(
                {
                    "endpoint": f"host-{j:04d}-{i % 5}",
                    "metric": metrics[i % len(metrics)],
                    "timestamp": ts,
                    "step": 10,
                    "value": round(rng.uniform(0, 100), 3),
                    "counterType": "GAUGE",
                    "tags": f"job=job.bench{j:05d}.svc,container=c{i % 5}",
                }
            )
        bodies.append(orjson.dumps(items))
    return bodies


async def post_all(url: str, bodies: list[bytes], concurrency: int) -> int:
    invalid = 0
    queue = list(reversed(bodies))
    async with aiohttp.ClientSession() as s:

        async def worker() -> None:
            nonlocal invalid
            while queue:
                body = queue.pop()
                async with s.post(
                    url + "/v1/push", data=body, headers={"Content-Type": "application/json"}
                ) as r:
                    data = await r.json()
                    assert r.status == 200, data
                    invalid += data["data"]["Invalid"]

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return invalid


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bodies", type=int, default=400)
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()

    bodies = make_bodies(args.bodies, args.jobs, int(time.time()))
    # baseline: orjson.loads alone on the same bodies, in this process
    t = time.process_time()
    for _ in range(3):
        for b in bodies:
            orjson.loads(b)
    base = (time.process_time() - t) / 3

    d = DaemonProcess()
    try:
        for j in range(args.jobs):
            d.request("POST", "/api/v1/jobs", job_doc(f"job.bench{j:05d}.svc", f"/bench/a{j}"))
        asyncio.run(post_all(d.url, bodies[:20], 2))  # warm the route cache and the connection path
        c0 = d.cpu()
        w0 = time.perf_counter()
        invalid = asyncio.run(post_all(d.url, bodies, args.concurrency))
        wall = time.perf_counter() - w0
        used = d.cpu() - c0
    finally:
        d.close()
    points = len(bodies) * POINTS
    ratio = base / used
    print(f"bodies={len(bodies)} points={points} invalid={invalid} jobs={args.jobs}")
    print(f"orjson.loads alone: {base:.3f} CPU-s  ({points / base:,.0f} points/CPU-s)")
    print(f"daemon:             {used:.3f} CPU-s  ({points / used:,.0f} points/CPU-s), wall {wall:.2f} s")
    print(f"ingest ratio: {ratio:.2f}  (target >= 0.5, issue floor 0.3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
