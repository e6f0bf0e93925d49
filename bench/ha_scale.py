"""Several daemons at scale (issue 14 "Show", HA.md §6.12): N synthetic jobs over 4 daemons on this machine.

Three parts, each bounded in time, loopback only:

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
3. **Redis operations** — the hot-state writers of 4 daemons (`HotStateWriter` → `HotState.write_states`,
   as the engine wires them with `[redis]`: oceand/cluster/hotlink.py), each in a process of its own, on
   a redis-server of the run's own (free port, no persistence). N jobs with a bucket period of 10 s, each
   daemon owning the jobs of a quarter of the shards; every 0.1 s the jobs whose bucket closes in that tick
   are noted, `--changed` of them with a changed state (the engine notes only those). After a 2 s warm-up,
   Redis's `INFO` (commands, CPU) and the 4 processes' CPU are read over `--window` s. The same-run
   baseline is the same note stream with Redis marked degraded (nothing sent): what the writers cost
   without Redis.

    .venv/bin/python bench/ha_scale.py [--jobs 100000] [--rounds 5] [--window 10] [--baseline]
        [--changed 1.0] [--skip-forwarding] [--skip-leases] [--skip-redis]

Needs MariaDB on 127.0.0.1:3306 (root, no password) and `redis-server` on the PATH.
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


# ---- part 3: Redis operations of the hot-state writers -------------------------------------------------


CLIENT_COMMANDS = ("evalsha", "eval", "script", "hgetall", "getdel", "publish")  # what HotState sends


def hot_state_doc(i: int, r: int) -> dict[str, Any]:
    """A job's state as the engine stores it (`JobState.to_json`), about 250 B; changes with `r`."""
    return {
        "count": 2 + i % 5,
        "last_change_at": NOW - 600 + r,
        "last_bucket": NOW + 10 * r,
        "streaks": {"cpu": {"out": r % 3, "in_": 0}},
        "recent": [[NOW - 300, 2 + i % 5]],
        "alarms": {},
        "fires": {},
        "created_at": NOW - 86_400,
    }


def hot_daemon(i: int, url: str, jobs: int, changed: float, degraded: bool, ev: Any, out: Any) -> None:
    """Daemon `i`'s writer in a process of its own: it notes the jobs of its quarter of the shards whose
    bucket closes in each 0.1 s tick (period 10 s) and lets `HotStateWriter.run` send them. It reports
    (CPU s, notes, snapshots stored) at `ev["measure"]` and again at `ev["stop"]`."""
    from oceand.cluster.hotstate import HotState
    from oceand.cluster.hotwriter import HotStateWriter
    from oceand.metrics import Metrics

    async def main() -> None:
        metrics = Metrics()
        hot = HotState(url, "bench", metrics=metrics)
        if degraded:
            hot.up = False  # nothing is sent: the baseline
        else:
            await hot.start()  # as the daemon: the probe marks a Redis that timed out up again

        def owner(job: str) -> tuple[int, int] | None:
            s = shard_of(job, SHARDS)
            return (s, 1) if s % DAEMONS == i else None

        writer = HotStateWriter(hot, owner)
        names = [job_name(k) for k in range(jobs)]
        mine = [owner(n) is not None and (k % 1000) < changed * 1000 for k, n in enumerate(names)]
        stop = asyncio.Event()
        task = asyncio.create_task(writer.run(stop))
        noted, per_tick, tick, t = 0, max(1, jobs // 100), 0, time.monotonic()
        ev["ready"][i].set()
        snap: list[tuple[float, int, float]] = []

        def stored() -> float:
            return metrics.registry.get_sample_value("oceand_hotstate_write_total", {"result": "ok"}) or 0.0

        while not ev["stop"].is_set():
            lo, r = (tick % 100) * per_tick, tick // 100 + 1
            for k in range(lo, min(jobs, lo + per_tick)):
                if mine[k]:
                    writer.note(names[k], NOW + 10 * r, hot_state_doc(k, r))
                    noted += 1
            if not snap and ev["measure"].is_set():
                snap.append((time.process_time(), noted, stored()))
            tick += 1
            t += 0.1
            await asyncio.sleep(max(0.0, t - time.monotonic()))
        snap.append((time.process_time(), noted, stored()))
        stop.set()
        await task
        await hot.close()
        out.put((i, snap[0], snap[-1]))

    asyncio.run(main())


def hot_state_ops(jobs: int, window: float, changed: float, degraded: bool) -> dict[str, float]:
    """One run of part 3 (4 writer processes, one redis-server); returns the figures it prints."""
    import tempfile

    from tests.hotstate.conftest import RedisServer

    server = RedisServer(Path(tempfile.mkdtemp(prefix="oceand-bench-redis-")))
    server.start()
    admin = server.client()
    ctx = mp.get_context("spawn")
    ev = {"ready": [ctx.Event() for _ in range(DAEMONS)], "measure": ctx.Event(), "stop": ctx.Event()}
    out = ctx.Queue()
    procs = [
        ctx.Process(target=hot_daemon, args=(i, server.url, jobs, changed, degraded, ev, out), daemon=True)
        for i in range(DAEMONS)
    ]
    try:
        for pr in procs:
            pr.start()
        for e in ev["ready"]:
            e.wait(120)
        time.sleep(2.0)  # warm-up

        def calls() -> int:  # the writers' operations (one EVALSHA per snapshot), not those the script runs
            stats = admin.info("commandstats")
            return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in CLIENT_COMMANDS)

        info0, calls0 = admin.info(), calls()
        ev["measure"].set()
        time.sleep(window)
        ev["stop"].set()
        info1, calls1 = admin.info(), calls()
        results = [out.get(timeout=60) for _ in procs]
        for pr in procs:
            pr.join(30)
    finally:
        for pr in procs:
            if pr.is_alive():
                pr.terminate()
        admin.close()
        server.stop()
    cpu = sum(b[0] - a[0] for _, a, b in results)
    noted = sum(b[1] - a[1] for _, a, b in results)
    stored = sum(b[2] - a[2] for _, a, b in results)
    redis_cpu = sum(info1[k] - info0[k] for k in ("used_cpu_user", "used_cpu_sys"))
    return {
        "noted/s": noted / window,
        "stored/s": stored / window,
        "redis ops/s": (calls1 - calls0) / window,
        "redis commands/s": (info1["total_commands_processed"] - info0["total_commands_processed"] - 2)
        / window,
        "redis cpu %": redis_cpu / window * 100,
        "client cpu %": cpu / window * 100,
        "client µs/note": cpu / max(1, noted) * 1e6,
        "redis memory MB": info1["used_memory"] / 1e6,
    }


def hot_state(jobs: int, window: float, changed: float) -> None:
    base = hot_state_ops(jobs, window, changed, degraded=True)
    real = hot_state_ops(jobs, window, changed, degraded=False)
    print(
        f"  baseline (Redis degraded, nothing sent): {base['noted/s']:,.0f} notes/s, "
        f"{base['redis ops/s']:,.1f} Redis ops/s, 4 daemons' CPU {base['client cpu %']:.1f}% of a core "
        f"({base['client µs/note']:.1f} µs/note)"
    )
    print(
        f"  hot state on: {real['noted/s']:,.0f} notes/s, {real['stored/s']:,.0f} snapshots stored/s, "
        f"{real['redis ops/s']:,.0f} Redis ops/s ({real['redis ops/s'] / max(1.0, real['noted/s']):.2f} per note; "
        f"{real['redis commands/s']:,.0f} commands/s counting those the Lua script runs), "
        f"Redis CPU {real['redis cpu %']:.1f}% of a core, memory {real['redis memory MB']:.1f} MB; 4 daemons' "
        f"CPU {real['client cpu %']:.1f}% of a core ({real['client µs/note']:.1f} µs/note, "
        f"{real['client µs/note'] / max(0.001, base['client µs/note']):.1f}x the baseline)"
    )


async def amain(args: argparse.Namespace) -> None:
    if not args.skip_redis:
        print(
            f"== Redis hot state: {args.jobs} jobs over {DAEMONS} daemons, period 10 s, "
            f"{args.changed:.0%} of the states changed per bucket, {args.window:g} s window"
        )
        hot_state(args.jobs, args.window, args.changed)
    if not args.skip_leases:
        await leases_part(args)
    if args.skip_forwarding:
        return
    print(f"== forwarding: {args.jobs} jobs, {args.rounds} rounds of one sample per job")
    await forwarding(args.jobs, args.rounds, args.batch)


async def leases_part(args: argparse.Namespace) -> None:
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
    p.add_argument("--skip-leases", action="store_true")
    p.add_argument("--skip-redis", action="store_true")
    p.add_argument("--changed", type=float, default=1.0, help="share of the states changed per bucket")
    asyncio.run(amain(p.parse_args()))


if __name__ == "__main__":
    main()
