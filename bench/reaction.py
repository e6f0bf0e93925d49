"""Reaction benchmark (PRODUCT §8): from the push that closes a triggering bucket to the Marathon request.

Processes: the daemon (`oceand run`), the fake Marathon (`python -m tests.fakes.marathon`) and this client.
BACKGROUND jobs (dry-run, no Marathon cluster: they are evaluated but not applied) receive samples all
along from a loader; TRIGGERS jobs (active, cluster "lg", 2 instances each) are driven one after the other
through three hot buckets (the first two for every trigger at once, the third one trigger after the other, all
in the daemon's real time). The reaction time of one trigger is the time from sending its third push to the
fake Marathon receiving the PUT, both read on CLOCK_MONOTONIC (shared by processes on Linux).
Baseline in the same run: the round trip of `GET /healthz` on the same daemon under the same load.
The loader runs in a process of its own (`loader_process`): in this client's event loop, building and
sending its 1,000-point bodies delayed a trigger's push by a few milliseconds now and then, which the
reaction time counted as the daemon's.

Run: .venv/bin/python bench/reaction.py [--background 10000] [--triggers 100] [--no-history] [--timeline FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import shutil
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
from tests.e2e.harness import FakeMarathonProcess, wait_for


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def loader(url: str, jobs: int, stop: asyncio.Event, sent: list[int]) -> None:
    """Every job: 2 instances × (cpu.idle, proc.qps) every 10 s, in 1,000-point bodies, spread evenly."""
    per_round = jobs * 4
    bodies_per_round = max(1, per_round // 1000)
    async with aiohttp.ClientSession() as s:
        while not stop.is_set():
            start = time.monotonic()
            ts = int(time.time())
            items: list[dict[str, Any]] = []
            k = 0
            for j in range(jobs):
                for inst in range(2):
                    for metric, value in (("cpu.idle", 50.0), ("proc.qps", 100.0)):
                        items.append(
                            {
                                "endpoint": f"bg{j}-{inst}",
                                "metric": metric,
                                "timestamp": ts,
                                "step": 10,
                                "value": value,
                                "counterType": "GAUGE",
                                "tags": f"job=job.bg{j:05d}",
                            }
                        )
                if len(items) >= 1000 or j == jobs - 1:
                    async with s.post(url + "/v1/push", data=orjson.dumps(items)) as r:
                        await r.read()
                    sent[0] += len(items)
                    items = []
                    k += 1
                    # spread the bodies over the 10 s round
                    target = start + 10.0 * k / bodies_per_round
                    delay = target - time.monotonic()
                    if delay > 0:
                        try:
                            await asyncio.wait_for(stop.wait(), delay)
                            return
                        except TimeoutError:
                            pass
            rest = start + 10.0 - time.monotonic()
            if rest > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), rest)


def loader_process(url: str, jobs: int, stop: Any, sent: Any) -> None:
    """`loader` in a process of its own until `stop` (a multiprocessing.Event) is set; its count in `sent`."""

    async def go() -> None:
        done = asyncio.Event()
        count = [0]

        async def watch() -> None:
            while not stop.is_set():
                await asyncio.sleep(0.05)
            done.set()

        watcher = asyncio.create_task(watch())
        await loader(url, jobs, done, count)
        await watcher
        sent.value = count[0]

    asyncio.run(go())


async def run(d: DaemonProcess, fake: FakeMarathonProcess, background: int, triggers: int) -> dict[str, Any]:
    mp = multiprocessing.get_context("spawn")
    stop, sent = mp.Event(), mp.Value("q", 0)
    load = mp.Process(target=loader_process, args=(d.url, background, stop, sent), daemon=True)
    load.start()
    try:
        return await measure(d, fake, triggers, sent)
    finally:
        stop.set()
        await asyncio.to_thread(load.join, 30)


async def measure(d: DaemonProcess, fake: FakeMarathonProcess, triggers: int, sent: Any) -> dict[str, Any]:
    reactions: list[float] = []
    timeline: list[dict[str, Any]] = []  # per trigger: its push sent, its PUT received (CLOCK_MONOTONIC)
    rtts: list[float] = []
    async with aiohttp.ClientSession() as s:
        # Warm-up: one ordinary bucket per trigger job, closed at its deadline, so the daemon knows which of
        # the job's metrics its instances report (until a first bucket closed, every rule holds it open).
        now = int(time.time())
        warm = [
            {
                "endpoint": f"t{i}-{inst}",
                "metric": "cpu.idle",
                "timestamp": now,
                "step": 10,
                "value": 50.0,
                "counterType": "GAUGE",
                "tags": f"job=job.trig{i:04d}",
            }
            for i in range(triggers)
            for inst in range(2)
        ]
        async with s.post(d.url + "/v1/push", data=orjson.dumps(warm)) as r:
            await r.read()
        await asyncio.sleep(now - now % 10 + 10 + 5 + 0.5 - time.time())
        # Three hot buckets per trigger job, in the daemon's real time (a bucket closes early once its
        # period has begun and every instance reported; the daemon takes no sample stamped further ahead
        # than a period): the first two for every trigger at once, the third one trigger after the other,
        # each timed from its push to the PUT. The third bucket must close before its deadline (15 s).
        b1 = int(time.time()) // 10 * 10 + 10

        def hot(i: int, ts: int) -> list[dict[str, Any]]:
            return [
                {
                    "endpoint": f"t{i}-{inst}",
                    "metric": "cpu.idle",
                    "timestamp": ts,
                    "step": 10,
                    "value": 5.0,
                    "counterType": "GAUGE",
                    "tags": f"job=job.trig{i:04d}",
                }
                for inst in range(2)
            ]

        for ts in (b1, b1 + 10):
            await asyncio.sleep(max(0.0, ts + 0.2 - time.time()))
            body = orjson.dumps([x for i in range(triggers) for x in hot(i, ts)])
            async with s.post(d.url + "/v1/push", data=body) as r:
                await r.read()
        await asyncio.sleep(max(0.0, b1 + 20 + 0.2 - time.time()))
        for i in range(triggers):
            job = f"job.trig{i:04d}"
            if time.time() > b1 + 20 + 14:
                raise RuntimeError(f"the third bucket's deadline passed before trigger {job}")
            body = orjson.dumps(hot(i, b1 + 20))
            sent_at = time.monotonic()
            async with s.post(d.url + "/v1/push", data=body) as r:
                await r.read()
            app = f"/r/t{i}"
            for _ in range(500):
                got = [x for x in fake.control("GET", "scale_requests") if x["app"] == app]
                if got:
                    reactions.append((got[0]["at"] - sent_at) * 1000)
                    timeline.append({"job": job, "sent": sent_at, "put": got[0]["at"]})
                    break
                await asyncio.sleep(0.01)
            else:
                raise RuntimeError(f"trigger {job} never reached Marathon")
            h0 = time.monotonic()
            async with s.get(d.url + "/healthz") as r:
                await r.read()
            rtts.append((time.monotonic() - h0) * 1000)
            await asyncio.sleep(0.05)
    return {"reactions": reactions, "rtts": rtts, "sent": sent, "timeline": timeline}


def background_jobs(jobs: Path, n: int) -> Path:
    """`n` dry-run job files (`job.bg00000`…, the jobs `loader` feeds) in a new folder `jobs`."""
    jobs.mkdir()
    for j in range(n):
        doc = job_doc(f"job.bg{j:05d}", f"/bg/a{j}", target={"cluster": "bg", "app": f"/bg/a{j}"})
        (jobs / f"bg{j:05d}.json").write_bytes(orjson.dumps(doc))
    return jobs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--background", type=int, default=10000)
    ap.add_argument("--triggers", type=int, default=100)
    ap.add_argument("--timeline", type=Path, help="write each trigger's push and PUT times (JSON) there")
    ap.add_argument(
        "--no-history", action="store_true", help="[history] enabled = false (default: on, as the daemon)"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="oceand-reaction-") as tmp:
        work = Path(tmp)
        jobs = background_jobs(work / "jobs", args.background)
        apps = []
        for i in range(args.triggers):
            doc = job_doc(
                f"job.trig{i:04d}",
                f"/r/t{i}",
                mode="active",
                target={"cluster": "lg", "app": f"/r/t{i}"},
                behavior={"scale_out": {"cooldown": 0}},
            )
            (jobs / f"trig{i:04d}.json").write_bytes(orjson.dumps(doc))
            apps.append(f"/r/t{i}:2")
        fake = FakeMarathonProcess(work, apps)
        t = time.monotonic()
        d = DaemonProcess(
            f'[jobs]\ndir = "jobs"\n[marathon.lg]\nurls = ["{fake.url}"]\n'
            + ("[history]\nenabled = false\n" if args.no_history else ""),
            workdir=work,
            start=False,
        )
        d.start(timeout=600)
        print(f"daemon up with {args.background + args.triggers} jobs in {time.monotonic() - t:.1f} s")
        # The job files written above (~44 MB of dirty pages with the daemon's first writes) reach the disk
        # ~30 s later (vm.dirty_expire_centisecs): since the daemon starts in ~10 s, not ~55 s, that
        # writeback fell into the measurement, and the store's commits waited on it (p50 15-43 ms in 4
        # runs of 8; none with the measurement 45 s later). Flushed here: the bench's own setup is not
        # the daemon's reaction.
        os.sync()
        try:
            wait_for(
                lambda: d.request("GET", "/api/v1/clusters")["clusters"][0]["state"] == "connected", 30, "SSE"
            )
            res = asyncio.run(run(d, fake, args.background, args.triggers))
        except Exception:
            d.stop()
            kept = Path(tempfile.gettempdir()) / f"oceand-reaction-failure-{os.getpid()}.log"
            shutil.copyfile(d.log, kept)
            print(f"benchmark failed: the daemon's log is kept in {kept}", file=sys.stderr)
            raise
        finally:
            d.close()
            fake.stop()
    r, h = res["reactions"], res["rtts"]
    if args.timeline is not None:
        args.timeline.write_bytes(orjson.dumps(res["timeline"]))
    print(f"background jobs={args.background} triggers={len(r)} background points sent={res['sent'].value}")
    print(
        f"reaction ms: p50 {statistics.median(r):.1f}  p90 {pct(r, 0.9):.1f}  p99 {pct(r, 0.99):.1f}  max {max(r):.1f}"
    )
    print(f"baseline GET /healthz round trip ms: p50 {statistics.median(h):.1f}  p99 {pct(h, 0.99):.1f}")
    print(f"reaction p99 / healthz p99: {pct(r, 0.99) / max(pct(h, 0.99), 1e-6):.1f}")
    print(f"reaction p99 {pct(r, 0.99):.1f} ms  (target <= 50 ms, issue floor 200 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
