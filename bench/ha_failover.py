"""Takeover time with several daemons (issue 14, HA.md §5.2 "kill -9 an owner" and "clean stop").

Three real daemon processes (`oceand run`, `[cluster]` with the default timings: lease TTL 3 s, renewal
1 s, poll 0.5 s) on one MariaDB database of their own, the fake Marathon in a process of its own, one
active job (a job file all three load). Each run finds the job's owner, stops it — SIGKILL (`--kills`
runs) or SIGTERM (`--stops` runs) — and times, on the monotonic clock, until a survivor's job status
says it acts on the job; then it restarts the daemon and waits until the three hold shards again and
no shard has changed owner for 1.5 s (the hand-back is over).

    .venv/bin/python bench/ha_failover.py [--kills 20] [--stops 5]

Prints p50 / p100 per kind. Needs MariaDB on 127.0.0.1:3306 (root, no password).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import urllib.error
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import DaemonProcess
from tests.e2e.harness import FakeMarathonProcess, wait_for
from tests.marathon.test_actuation import job_doc
from tests.store.conftest import create_mysql_database, drop_mysql_database

JOB = "job.ha_web.xiaomi"
APP = "/ha/web"


def cluster_daemon(workdir: Path, store: str, marathon_url: str, jobs: Path) -> DaemonProcess:
    """A daemon process (not started) in `workdir`: MySQL store `store`, `[cluster]` on with its own
    advertise address, the job files of `jobs`, Marathon cluster `lg` at `marathon_url`."""
    workdir.mkdir()
    d = DaemonProcess(
        f'[marathon.lg]\nurls = ["{marathon_url}"]\ntimeout = "1s"\nconnect_timeout = "0.5s"\n'
        'settle_grace = "1s"\nclock_skew = "0.5s"\n'
        f'[jobs]\ndir = "{jobs}"\n',
        workdir=workdir,
        start=False,
    )
    text = d.conf.read_text().replace('"sqlite:///oceand.db"', f'"{store}"')
    d.conf.write_text(
        text + f'[cluster]\nenabled = true\nname = "e2e"\nadvertise = "127.0.0.1:{d.port}"\n'
        'token = "e2e-cluster-token-0123"\n'
    )
    return d


def status_of(d: DaemonProcess, job: str = JOB) -> dict[str, Any] | None:
    try:
        return d.request("GET", f"/api/v1/jobs/{job}/status")  # type: ignore[no-any-return]
    except (OSError, urllib.error.URLError):
        return None


def owner(ds: list[DaemonProcess], job: str = JOB) -> DaemonProcess | None:
    """The daemon that acts on `job` now (its status says so), or None."""
    for d in ds:
        s = status_of(d, job)
        if s is not None and s["cluster"]["this_daemon"]:
            return d
    return None


def settled(ds: list[DaemonProcess]) -> bool:
    """Every daemon a member, every shard held, each daemon holding some."""
    try:
        s = ds[0].request("GET", "/api/v1/cluster")
    except (OSError, urllib.error.URLError):
        return False
    members = s["members"]
    return s["unowned"] == 0 and len(members) == len(ds) and all(m["shards_held"] > 0 for m in members)


def stable(ds: list[DaemonProcess], quiet: float = 1.5) -> bool:
    """`settled`, and no shard changed owner for `quiet` seconds (the hand-back to a restarted daemon,
    at release_rate shards a second, is over): a run then starts from the rendezvous assignment."""
    if not settled(ds):
        return False
    before = [r["owner"] for r in ds[0].request("GET", "/api/v1/cluster")["leases"]]
    time.sleep(quiet)
    return settled(ds) and before == [r["owner"] for r in ds[0].request("GET", "/api/v1/cluster")["leases"]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--stops", type=int, default=5)
    args = ap.parse_args()
    name = f"oceand_ha_core_bench_{os.getpid()}_{random.randrange(1 << 20)}"
    create_mysql_database(name)
    store = f"mysql://root@127.0.0.1:3306/{name}?timeout=10"
    with tempfile.TemporaryDirectory(prefix="oceand-ha-") as tmp:
        root = Path(tmp)
        jobs = root / "jobs"
        jobs.mkdir()
        (jobs / "ha.json").write_bytes(orjson.dumps(job_doc(JOB, APP)))
        fake = FakeMarathonProcess(root, [f"{APP}:2"])
        ds = [cluster_daemon(root / f"d{i}", store, fake.url, jobs) for i in range(3)]
        times: dict[str, list[float]] = {"kill -9": [], "SIGTERM": []}
        try:
            for d in ds:
                d.start()
            wait_for(lambda: stable(ds), 60, "three daemons holding every shard")
            plan = ["kill -9"] * args.kills + ["SIGTERM"] * args.stops
            for n, kind in enumerate(plan):
                own = wait_for(lambda: owner(ds), 20, "an owner")
                survivors = [d for d in ds if d is not own]
                if kind == "kill -9":
                    own.kill()
                    t0 = time.monotonic()
                else:
                    assert own.proc is not None
                    own.proc.terminate()
                    t0 = time.monotonic()
                wait_for(lambda s=survivors: owner(s), 20, f"run {n}: a survivor acting")
                times[kind].append(time.monotonic() - t0)
                if own.proc is not None and own.proc.poll() is None:
                    own.proc.wait(30)
                own.start()
                wait_for(lambda: stable(ds), 60, f"run {n}: back to three, shards handed back")
                print(f"run {n:2d} {kind:8s} {times[kind][-1]:.2f}s", flush=True)
        finally:
            for d in ds:
                d.close()
            fake.stop()
            drop_mysql_database(name)
    for kind, ts in times.items():
        if ts:
            print(
                f"{kind}: {len(ts)} runs, takeover p50 {statistics.median(ts):.2f}s, p100 {max(ts):.2f}s, "
                f"min {min(ts):.2f}s"
            )


if __name__ == "__main__":
    main()
