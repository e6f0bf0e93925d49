"""Job changes reaching the other daemon (issue 14, oceand/cluster/jobsync.py, docs/cluster.md "Job changes").

1. **Latency** — two daemons in this process (the test pair of tests/cluster/test_job_sync_daemons.py:
   real MariaDB database of the run's own, the in-process fake Marathon), `--changes` replaces of one job
   through the daemon that does not own it, each timed from the API call until the owner runs the new
   version (checked every ms). Same run, two configurations, `jobs_poll` = 1 s in both:
   - baseline: no Redis, the poll alone;
   - with `[redis]` on a redis-server of the run's own: the `jobs` wake-up.
   Printed: p50 / p100 of each and the ratio wake-up / poll.
2. **Poll cost at scale** — one store with `--jobs` jobs and as many change rows: the idle poll's read
   (`job_changes` above the newest seq: nothing new) and a read of a 1,000-row page (documents joined),
   against a one-row read by primary key (`get_job`) on the same pool in the same run (the baseline).

    .venv/bin/python bench/job_sync.py [--changes 20] [--jobs 100000] [--reads 200]

Needs MariaDB on 127.0.0.1:3306 (root, no password) and `redis-server` on the PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from oceand.store import MySQLStore
from oceand.store.base import JobWrite, MySQLURL
from tests.cluster.test_job_sync_daemons import Pair
from tests.fakes.marathon import FakeMarathon
from tests.hotstate.conftest import RedisServer
from tests.marathon.test_actuation import APP, JOB, job_doc
from tests.store.conftest import create_mysql_database, drop_mysql_database

_n = 0


def database() -> MySQLURL:
    global _n
    _n += 1
    name = f"oceand_bench_jobsync_{os.getpid()}_{_n}"
    create_mysql_database(name)
    return MySQLURL(host="127.0.0.1", port=3306, user="root", password="", database=name)


async def latencies(changes: int, redis: RedisServer | None) -> list[float]:
    db = database()
    store = MySQLStore(db)
    await store.open()
    await store.close()
    fake = FakeMarathon(heartbeat=0.5, deploy_time=0.05)
    fake.add_app(APP, 2)
    await fake.start()
    tmp = Path(tempfile.mkdtemp(prefix="oceand-bench-jobsync-"))
    pair = Pair(tmp, db, fake, redis)
    out: list[float] = []
    try:
        owner, _other, _o, n = await pair.start_both("1s")
        status, body = await pair.clients[n].call("POST", "/api/v1/jobs", job_doc())
        assert status == 201, body
        for i in range(changes):
            await asyncio.sleep(0.05 + (i % 7) * 0.1)  # spread the calls over the poll's phase
            doc = job_doc()
            doc["rules"][0]["scale_out"]["above"] = 50 + i
            t0 = time.perf_counter()
            status, body = await pair.clients[n].call("PUT", f"/api/v1/jobs/{JOB}", doc)
            assert status == 200, body
            while (rt := owner.engine.jobs.get(JOB)) is None or rt.version != i + 2:
                if time.perf_counter() - t0 > 10:
                    raise TimeoutError(f"change {i} not applied within 10 s")
                await asyncio.sleep(0.001)
            out.append(time.perf_counter() - t0)
    finally:
        await pair.close()
        await fake.stop()
        drop_mysql_database(db.database)
    return out


def show(name: str, xs: list[float]) -> str:
    return f"{name}: p50 {statistics.median(xs) * 1000:.1f} ms, p100 {max(xs) * 1000:.1f} ms (n={len(xs)})"


async def poll_cost(jobs: int, reads: int) -> None:
    db = database()
    store = MySQLStore(db)
    await store.open()
    try:
        doc = job_doc()
        batch = 5000
        for start in range(0, jobs, batch):
            await store.write_jobs(
                [
                    JobWrite(f"bench-{i:06d}", dict(doc, job=f"bench-{i:06d}"))
                    for i in range(start, min(jobs, start + batch))
                ]
            )
        _oldest, newest = await store.job_change_bounds()

        async def timed(fn: Any) -> float:
            best = []
            for _ in range(reads):
                t0 = time.perf_counter()
                await fn()
                best.append(time.perf_counter() - t0)
            return statistics.median(best)

        async def ping() -> None:
            assert await store.get_job("bench-000000") is not None

        async def idle() -> None:
            assert await store.job_changes([(newest, None)], 1000) == []

        async def page() -> None:
            assert len(await store.job_changes([(newest - 5000, None)], 1000)) == 1000

        base = await timed(ping)
        t_idle = await timed(idle)
        t_page = await timed(page)
        print(f"poll cost with {jobs} jobs and {newest} change rows (median of {reads} reads):")
        print(f"  get_job by primary key (baseline): {base * 1e3:.3f} ms")
        print(f"  idle poll (nothing new): {t_idle * 1e3:.3f} ms = {t_idle / base:.2f} x baseline")
        print(f"  page of 1000 changed jobs: {t_page * 1e3:.3f} ms = {t_page / base:.1f} x baseline")
    finally:
        await store.close()
        drop_mysql_database(db.database)


async def amain(args: argparse.Namespace) -> None:
    poll = await latencies(args.changes, None)
    redis = RedisServer(Path(tempfile.mkdtemp(prefix="oceand-bench-redis-")))
    redis.start()
    try:
        woken = await latencies(args.changes, redis)
    finally:
        redis.stop()
    print(show("poll only, jobs_poll 1 s (baseline)", poll))
    print(show("Redis jobs wake-up", woken))
    print(
        f"ratio wake-up / poll: p50 {statistics.median(woken) / statistics.median(poll):.3f},"
        f" p100 {max(woken) / max(poll):.3f}"
    )
    await poll_cost(args.jobs, args.reads)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--changes", type=int, default=20)
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--reads", type=int, default=200)
    asyncio.run(amain(p.parse_args()))


if __name__ == "__main__":
    main()
