"""Hostile ingest benchmark (issue 18 item 4): `/healthz` latency while 8 MiB push bodies are processed.

A real daemon process (`oceand run`, SQLite, JOBS jobs) gets, from a second client process, one 8 MiB push
after another; this process meanwhile sends `GET /healthz` one after the other and records each round trip.
Baseline in the same run: the same `/healthz` loop with the daemon idle. Two bodies, as the issue names
them: `[{},{},…]` (2.8 million empty objects: the tolerant path) and ~67,000 valid agent items (the fast
decoder). The figure is `/healthz` p50 / p99 / max per body against the idle baseline (goal: p99 < 100 ms),
and how long each push took.

Run: .venv/bin/python bench/hostile_ingest.py [--pushes 4] [--jobs 200]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
import urllib.request
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import DaemonProcess, job_doc

SIZE = 8 * 1024 * 1024


def empty_objects() -> bytes:
    n = (SIZE - 2) // 3
    return b"[" + b",".join([b"{}"] * n) + b"]"


def agent_items(jobs: int) -> bytes:
    items = []
    now = int(time.time())
    i = 0
    while True:
        j = i % jobs
        items.append(
            {
                "endpoint": f"host-{j:04d}-{i % 50}",
                "metric": ("cpu.idle", "proc.qps")[i % 2],
                "timestamp": now,
                "step": 10,
                "value": float(i % 100),
                "counterType": "GAUGE",
                "tags": f"job=job.bench{j:05d}.svc,container=c{i % 50}",
            }
        )
        i += 1
        if i % 1000 == 0 and len(orjson.dumps(items)) > SIZE - 200_000:
            break
    return orjson.dumps(items)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def healthz_loop(url: str, seconds: float | None, done: object = None) -> list[float]:
    """Round trips of GET /healthz (ms), one after the other, for `seconds` or until `done` is set."""
    out: list[float] = []
    end = time.monotonic() + (seconds or 1e9)
    while time.monotonic() < end and not (done is not None and done.is_set()):  # type: ignore[attr-defined]
        t = time.perf_counter()
        with urllib.request.urlopen(url + "/healthz", timeout=30) as r:
            r.read()
        out.append((time.perf_counter() - t) * 1000)
        time.sleep(0.002)
    return out


def pusher(url: str, body: bytes, pushes: int, done: object, took: object) -> None:
    for _ in range(pushes):
        req = urllib.request.Request(url + "/v1/push", data=body, method="POST")
        req.add_header("Content-Type", "application/json")
        t = time.perf_counter()
        with urllib.request.urlopen(req, timeout=120) as r:
            reply = orjson.loads(r.read())
        took.append((time.perf_counter() - t) * 1000)  # type: ignore[attr-defined]
        assert r.status == 200, reply
    done.set()  # type: ignore[attr-defined]


def line(name: str, ms: list[float]) -> str:
    return (
        f"{name}: /healthz p50 {statistics.median(ms):.1f} ms, p99 {pct(ms, 0.99):.1f} ms, "
        f"max {max(ms):.1f} ms ({len(ms)} requests)"
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pushes", type=int, default=4, help="8 MiB pushes per body kind")
    ap.add_argument("--jobs", type=int, default=200)
    args = ap.parse_args()
    bodies = {"[{},{},…] 8 MiB": empty_objects(), "agent items 8 MiB": agent_items(args.jobs)}
    d = DaemonProcess()
    try:
        for j in range(args.jobs):
            d.request("POST", "/api/v1/jobs", job_doc(f"job.bench{j:05d}.svc", f"/bench/a{j}"))
        idle = healthz_loop(d.url, 3.0)
        print(line("idle", idle))
        ctx = multiprocessing.get_context("spawn")
        worst = 0.0
        for name, body in bodies.items():
            n = body.count(b"{")
            with ctx.Manager() as m:
                done, took = m.Event(), m.list()
                p = ctx.Process(target=pusher, args=(d.url, body, args.pushes, done, took))
                p.start()
                busy = healthz_loop(d.url, None, done)
                p.join()
                took = list(took)
            assert p.exitcode == 0, f"pusher failed ({name})"
            print(
                line(
                    f"{name} ({n:,} items, {args.pushes} pushes, each {statistics.median(took):,.0f} ms)",
                    busy,
                )
                + f"; p99 {pct(busy, 0.99) / pct(idle, 0.99):.1f}x idle"
            )
            worst = max(worst, pct(busy, 0.99))
    finally:
        d.close()
    print(f"hostile ingest: /healthz p99 {worst:.1f} ms during 8 MiB pushes (idle {pct(idle, 0.99):.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
