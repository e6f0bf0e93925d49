"""Idle benchmark (issue 18 item 4): what a daemon with many jobs costs while nothing is pushed.

A real daemon process (`oceand run`, SQLite, default config, no Marathon cluster: every job runs dry) with
JOBS job files (a threshold rule on `cpu.used` and a target rule on `proc.qps`, period 10 s). Nothing is
pushed: every job's buckets close empty at their deadlines. After SETTLE seconds (the first closes and
the store writes of the start are over), for SECONDS seconds this client reads the daemon's CPU time from
`/proc/<pid>/stat` (user + system) and sends `GET /healthz` every 20 ms on a keep-alive connection, plus a
Prometheus scrape (`GET /metrics`) every 15 s as a real scraper would.
Baseline in the same run: the same daemon and the same client with no jobs.

Run: .venv/bin/python bench/idle.py [--jobs 10000] [--seconds 30]
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

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import DaemonProcess, job_doc


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def probe(url: str, seconds: float, scrape_every: float) -> dict[str, list[float]]:
    """GET /healthz every 20 ms (latency in ms) and GET /metrics every `scrape_every` s for `seconds`."""
    health: list[float] = []
    scrapes: list[float] = []
    async with aiohttp.ClientSession() as s:
        end = time.monotonic() + seconds
        next_scrape = time.monotonic() + scrape_every / 2
        while (now := time.monotonic()) < end:
            if now >= next_scrape:
                next_scrape += scrape_every
                t = time.monotonic()
                async with s.get(url + "/metrics") as r:
                    await r.read()
                scrapes.append((time.monotonic() - t) * 1000)
            t = time.monotonic()
            async with s.get(url + "/healthz") as r:
                await r.read()
            health.append((time.monotonic() - t) * 1000)
            await asyncio.sleep(max(0.0, 0.02 - (time.monotonic() - t)))
    return {"health": health, "scrapes": scrapes}


def phase(jobs: int, seconds: float, settle: float, scrape_every: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="oceand-idle-") as tmp:
        work = Path(tmp)
        (work / "jobs").mkdir()
        for j in range(jobs):
            doc = job_doc(f"job.idle{j:05d}", f"/idle/a{j}")
            (work / "jobs" / f"idle{j:05d}.json").write_bytes(orjson.dumps(doc))
        d = DaemonProcess('[jobs]\ndir = "jobs"\n', workdir=work, start=False)
        t = time.monotonic()
        d.start(timeout=900)
        up = time.monotonic() - t
        try:
            time.sleep(settle)
            cpu0, w0 = d.cpu(), time.monotonic()
            res = asyncio.run(probe(d.url, seconds, scrape_every))
            cpu1, w1 = d.cpu(), time.monotonic()
            assert d.proc is not None and d.proc.poll() is None, "the daemon died during the run"
        finally:
            d.close()
    return {"jobs": jobs, "up": up, "cpu": (cpu1 - cpu0) / (w1 - w0), **res}


def show(r: dict[str, Any]) -> None:
    h, m = r["health"], r["scrapes"]
    print(
        f"{r['jobs']:>6} jobs (up in {r['up']:.1f} s): CPU {100 * r['cpu']:.2f} % of one core; "
        f"GET /healthz ms p50 {statistics.median(h):.1f} p99 {pct(h, 0.99):.1f} max {max(h):.1f} "
        f"({len(h)} requests); GET /metrics ms max {max(m) if m else float('nan'):.1f} ({len(m)} scrapes)"
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=10000)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--settle", type=float, default=20.0, help="idle seconds after start before measuring")
    ap.add_argument("--scrape", type=float, default=15.0, help="seconds between GET /metrics")
    args = ap.parse_args()
    base = phase(0, args.seconds, args.settle, args.scrape)
    show(base)
    load = phase(args.jobs, args.seconds, args.settle, args.scrape)
    show(load)
    hb, hl = base["health"], load["health"]
    print(
        f"idle: {args.jobs} jobs CPU {100 * load['cpu']:.2f} % of one core "
        f"(no jobs {100 * base['cpu']:.2f} %, +{100 * (load['cpu'] - base['cpu']):.2f} points); "
        f"/healthz p99 {pct(hl, 0.99):.1f} ms vs {pct(hb, 0.99):.1f} ms "
        f"(ratio {pct(hl, 0.99) / max(pct(hb, 0.99), 1e-9):.1f}), max {max(hl):.1f} ms vs {max(hb):.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
