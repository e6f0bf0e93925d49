"""Several daemons at scale (issue 14 "Show", HA.md §6.12): N synthetic jobs over 4 daemons on this machine.

Two parts, each bounded in time, loopback only:

1. **Leases** — 4 `LeaseManager`s (the daemons' lease loops, default timings: renewal 1 s, poll 0.5 s,
   1024 shards) and their route tables (refresh every 0.5 s) in this process, on a MariaDB database of
   their own. After they settle, every coordination statement is counted for `--window` seconds: shards
   held per daemon, lease statements per second (renew + poll + acquire/release) and route-table reads
   per second, per daemon and in total.
2. **Forwarding CPU** — the ingest routing of one daemon with N jobs, one sample per job per round:
   - baseline: every job local (the single-daemon ingest: `Ingestor.ingest_items` into the buckets);
   - HA: 3/4 of the jobs owned elsewhere (as with 4 daemons and round-robin LVS): those samples go through
     `ForwardBuckets` → `Forwarder` (batches of `forward_batch`) → `POST /internal/v1/samples` to a
     receiver **process** that parses each body and puts the samples into its buckets
     (`parse_samples` + `split_by_owner` + `JobBuckets.add`, the owner's path).
   CPU is `time.process_time()` of the sender (this process) and of the receiver process, per sample.

    .venv/bin/python bench/ha_scale.py [--jobs 100000] [--rounds 5] [--window 10] [--baseline]

Redis operations are not measured: the hot-state writer (HotStateWriter, on main) is not wired into the
engine on this branch, so a daemon here sends 0 Redis operations per second. Needs MariaDB on
127.0.0.1:3306 (root, no password).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from aiohttp import web

from collectors.falcon_items import FalconItem
from oceand.cluster.forward import ForwardBuckets, Forwarder, group_by_shard, parse_samples, split_by_owner
from oceand.cluster.ids import shard_of
from oceand.cluster.lease import Coordinator, LeaseManager, LeaseSettings
from oceand.cluster.routes import ROUTES_SQL, RouteTable
from oceand.ingest import Ingestor, JobBuckets
from oceand.store import MySQLStore
from oceand.store.base import MySQLURL
from policies.document import JobDocument
from tests.store.conftest import create_mysql_database, drop_mysql_database

SHARDS = 1024
DAEMONS = 4
NOW = 1_000_000_000


# ---- part 1: leases ------------------------------------------------------------------------------


class Counting(Coordinator):
    """Counts coordination calls (each one round trip: one statement, except an acquisition's SET @t +
    UPDATE + SELECT) and, apart, the route table's reads."""

    def __init__(self, url: MySQLURL, timeout: float) -> None:
        super().__init__(url, timeout)
        self.calls = 0
        self.route_reads = 0

    async def run(self, fn: Any, timeout: float | None = None) -> Any:
        self.calls += 1
        return await super().run(fn, timeout)

    async def fetch(self, sql: str, args: Any = None, timeout: float | None = None) -> list[tuple[Any, ...]]:
        if sql == ROUTES_SQL:
            self.route_reads += 1
            self.calls -= 1  # counted apart
        return await super().fetch(sql, args, timeout)


async def leases(db: MySQLURL, window: float, with_routes: bool = True) -> None:
    s = LeaseSettings(name="bench", shards=SHARDS, member_min_age=0.0)
    coords = [Counting(db, s.store_timeout) for _ in range(DAEMONS)]
    managers: list[LeaseManager] = []
    routes: list[RouteTable] = []
    tasks: list[asyncio.Task[None]] = []
    for i, c in enumerate(coords):
        await c.open()
        m = LeaseManager(c, s, instance_id=f"bench-{i}", stable_id=f"127.0.0.1:{9100 + i}")
        await m.start()
        managers.append(m)

        def fetch(n: int, c: Counting = c) -> Any:
            return c.fetch(ROUTES_SQL, (n,))

        r = RouteTable(fetch, SHARDS, interval=s.acquire_poll)
        routes.append(r)
        if with_routes:
            tasks.append(asyncio.create_task(r.run()))
    t0 = time.monotonic()
    last: tuple[int, ...] = ()
    t_same = t0
    while time.monotonic() - t0 < 60:  # settle: every shard held, nothing moved for 3 s
        await asyncio.sleep(0.5)
        held = tuple(len(m.held) for m in managers)
        if held != last:
            last, t_same = held, time.monotonic()
        elif sum(held) == SHARDS and time.monotonic() - t_same >= 3:
            break
    print(f"settled in {time.monotonic() - t0:.1f} s; shards held per daemon: {list(last)}")
    before = [(c.calls, c.route_reads) for c in coords]
    cpu0 = time.process_time()
    await asyncio.sleep(window)
    cpu = time.process_time() - cpu0
    per = [
        ((c.calls - b[0]) / window, (c.route_reads - b[1]) / window)
        for c, b in zip(coords, before, strict=True)
    ]
    for i, (st, rr) in enumerate(per):
        print(f"  daemon {i}: {len(managers[i].held)} shards, {st:.1f} lease calls/s, {rr:.1f} route reads/s")
    print(
        f"  total: {sum(p[0] for p in per):.1f} lease calls/s, {sum(p[1] for p in per):.1f} route reads/s;"
        f" CPU of the 4 lease loops + route tables in this process: {cpu / window * 100:.1f}% of a core"
    )
    for t in tasks:
        t.cancel()
    for m in managers:
        await m.stop()
    for c in coords:
        await c.close()


# ---- part 2: forwarding CPU ----------------------------------------------------------------------


def job_name(i: int) -> str:
    return f"job.j{i}.bench"


def doc(i: int) -> JobDocument:
    return JobDocument.model_validate(
        {
            "job": job_name(i),
            "target": {"cluster": "lg", "app": f"/b/{i}"},
            "period": 10,
            "min_instances": 1,
            "max_instances": 5,
            "rules": [{"name": "cpu", "type": "threshold", "metric": "cpu.used", "scale_out": {"above": 80}}],
        }
    )


def buckets(i: int) -> JobBuckets:
    jb = JobBuckets(job_name(i), 10, 0.0, [("cpu", "avg")], max_ahead=1e9, max_age=1e12)
    jb.start(NOW - 600)
    return jb


def items(jobs: int, r: int) -> list[FalconItem]:
    return [
        FalconItem(f"h{i}", "cpu.idle", NOW - 500 + r, 10, 30.0, "GAUGE", f"job={job_name(i)}")
        for i in range(jobs)
    ]


def receiver(port: int, jobs: int, ready: Any, out: Any) -> None:
    """The owners' side in a process of its own: every forwarded sample parsed and put into buckets."""
    jbs = {job_name(i): buckets(i) for i in range(jobs)}
    got = [0]

    async def handle(request: web.Request) -> web.Response:
        _, ss = parse_samples(await request.read())
        keep, _ = split_by_owner(group_by_shard(ss, lambda j: shard_of(j, SHARDS)), lambda s: True)
        for job, inst, rule, ts, v in keep:
            jbs[job].add(rule, inst, ts, v)
        got[0] += len(keep)
        return web.Response(status=204)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"cpu": time.process_time(), "samples": got[0]})

    async def main() -> None:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/internal/v1/samples", handle)
        app.router.add_get("/stats", stats)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


async def forwarding(jobs: int, rounds: int, batch: int) -> None:
    import aiohttp

    docs = [doc(i) for i in range(jobs)]
    base = Ingestor()
    for i, d in enumerate(docs):
        base.set_job(d, buckets(i))
    base.ingest_items(items(jobs, 0), NOW)  # warm: routes resolved once
    t = time.process_time()
    for r in range(1, rounds + 1):
        base.ingest_items(items(jobs, r), NOW)
    local_us = (time.process_time() - t) / (jobs * rounds) * 1e6
    print(f"single-daemon ingest (all {jobs} jobs local): {local_us:.2f} µs CPU per sample")

    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=receiver, args=(port, jobs, ready, out), daemon=True)
    proc.start()
    ready.wait(60)

    async def fetch(n: int) -> list[tuple[Any, ...]]:
        return [(s, "other", f"127.0.0.1:{port}", 1) for s in range(SHARDS) if s % DAEMONS != 0]

    table = RouteTable(fetch, SHARDS)
    await table.refresh()
    fwd = Forwarder(
        table,
        me="me",
        token="t" * 16,
        shard_of=lambda j: shard_of(j, SHARDS),
        held=lambda s: s % DAEMONS == 0,
        local=lambda ss: None,
        flush=0.01,
        batch=batch,
        buffer=10 * jobs,
    )
    ha = Ingestor()
    remote = 0
    for i, d in enumerate(docs):
        jb = fwd.buckets_for(d.job, buckets(i))
        remote += isinstance(jb, ForwardBuckets)
        ha.set_job(d, jb)
    ha.ingest_items(items(jobs, 0), NOW)
    await fwd.flush()
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{port}/stats") as resp:
            r0 = await resp.json()
        t = time.process_time()
        w0 = time.monotonic()
        for r in range(1, rounds + 1):
            batch_items = items(jobs, r)
            for k in range(0, jobs, 1024):  # as the push handler does: 1,024 items per turn of the loop
                ha.ingest_items(batch_items[k : k + 1024], NOW)
                await asyncio.sleep(0)
        await fwd.flush()
        wall = time.monotonic() - w0
        sender = time.process_time() - t
        async with s.get(f"http://127.0.0.1:{port}/stats") as resp:
            r1 = await resp.json()
    await fwd.close()
    proc.terminate()
    n = remote * rounds
    assert r1["samples"] - r0["samples"] == n, (r1, r0, n)
    total = jobs * rounds
    print(
        f"HA ingest, {remote} of {jobs} jobs owned elsewhere, forward_batch {batch}: sender {sender / total * 1e6:.2f} µs"
        f" CPU per pushed sample ({sender / total * 1e6 / local_us:.2f}x the single-daemon figure); receiver"
        f" {(r1['cpu'] - r0['cpu']) / n * 1e6:.2f} µs CPU per forwarded sample; {n / wall:,.0f} forwarded"
        f" samples/s ({n} in {wall:.2f} s wall)"
    )


async def amain(args: argparse.Namespace) -> None:
    name = f"oceand_ha_forward_bench_{os.getpid()}"
    create_mysql_database(name)
    db = MySQLURL(host="127.0.0.1", user="root", database=name, port=3306, timeout=10.0)
    try:
        store = MySQLStore(db)
        await store.open()
        await store.close()
        print(f"== leases: {DAEMONS} daemons, {SHARDS} shards, default timings, {args.window:g} s window")
        await leases(db, args.window)
        if args.baseline:
            print("== the same without the route tables (ha-core's lease loops alone)")
            await leases(db, args.window, with_routes=False)
    finally:
        drop_mysql_database(name)
    if args.skip_forwarding:
        return
    print(f"== forwarding: {args.jobs} jobs, {args.rounds} rounds of one sample per job")
    await forwarding(args.jobs, args.rounds, args.batch)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--window", type=float, default=10.0)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument(
        "--baseline", action="store_true", help="also measure the lease loops without route tables"
    )
    p.add_argument("--skip-forwarding", action="store_true")
    asyncio.run(amain(p.parse_args()))


if __name__ == "__main__":
    main()
