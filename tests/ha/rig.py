"""The chaos rig of HA.md §5.1: N real `oceand run` processes in cluster mode on one MariaDB database of
their own, each reaching MySQL, the fake Marathon (and the rig's Redis) through a pausable proxy of its own
(tests/ha/proxy.py), the fake Marathon in a process of its own recording every write with its arrival
time and `X-Oceand-*` headers, and a load thread that pushes a constant breach for every job to the
job's owner each second (the owner as its status names it: the tests do not depend on forwarding).

Timings are reduced (bucket 1 s, lease TTL 1.5 s, renewal 0.3 s, stop acting 1 s, grace 0.5 s) so a
scenario takes 10–20 s. `Rig.check()` waits until nothing is pending and asserts I1–I6 and I8 over the
whole run (tests/ha/invariants.py); scenarios add I7 with their measured takeover times.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pymysql
import pytest

from bench.ha_failover import cluster_daemon
from tests.e2e.harness import DaemonProcess, FakeMarathonProcess, sample, wait_for
from tests.ha import invariants as inv
from tests.ha import mariadb
from tests.ha.proxy import ProxyThread
from tests.hotstate.conftest import RedisServer
from tests.store.conftest import (
    MYSQL_HOST,
    MYSQL_PORT,
    MYSQL_USER,
    create_mysql_database,
    drop_mysql_database,
)

COOLDOWN = 2.0  # scale-out cooldown of every job: a constant breach scales each app +1 every ~2-3 s
START = 2  # instances of every app at the start
TIMINGS = {
    "lease_ttl": "1.5s",
    "renew_interval": "0.3s",
    "stop_acting_after": "1s",
    "acquire_poll": "0.1s",
    "intent_margin": "0.5s",
    "actuation_budget": "1s",
    "takeover_grace": "0.5s",
    "member_min_age": "0s",
    "store_timeout": "0.25s",
    "shards": "64",
}
SETTLE = 10.0  # after the faults: every intent resolved within deadline + grace + 1 s, far less than this
QUIET = 2.0  # seconds with nothing pending and nothing new before the final check: > period (1 s) + grace
# The deadline of a wait for the jobs to scale again: a daemon cut from Marathon reconnects its watcher
# with a backoff of up to 30 s (actuators/marathon/watcher.py), and the machine's cores are shared with
# other test runs; a wait that holds returns at once.
PROGRESS = 60.0
_counter = itertools.count(1)


def job_doc(n: int) -> dict[str, Any]:
    return {
        "job": f"job.chaos{n}.xiaomi",
        "target": {"cluster": "lg", "app": f"/ha/a{n}"},
        "mode": "active",
        "period": 1,
        "min_instances": 1,
        "max_instances": 10000,
        "rules": [
            {
                "name": "cpu",
                "type": "threshold",
                "metric": "cpu.used",
                "scale_out": {"above": 80, "consecutive": 1, "step": 1},
            }
        ],
        "behavior": {"scale_out": {"cooldown": COOLDOWN}},
    }


def get(d: DaemonProcess, path: str, timeout: float = 0.5) -> Any:
    """GET with a short timeout (a stopped daemon must not hold the caller); None when it does not answer."""
    try:
        with urllib.request.urlopen(d.url + path, timeout=timeout) as r:
            return orjson.loads(r.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None


@dataclass
class Member:
    """One daemon of the rig with its proxies to MySQL, Marathon and (with_redis) the rig's Redis."""

    daemon: DaemonProcess
    mysql: ProxyThread
    marathon: ProxyThread
    name: str
    redis: ProxyThread | None = None  # with the rig's Redis: this member's proxy to it

    @property
    def pid(self) -> int:
        assert self.daemon.proc is not None
        return self.daemon.proc.pid

    def alive(self) -> bool:
        return self.daemon.proc is not None and self.daemon.proc.poll() is None


@dataclass
class Rig:
    tmp: Path
    jobs: int = 6
    members: list[Member] = field(default_factory=list)
    takeovers: list[float] = field(default_factory=list)
    redis: RedisServer | None = None  # `with_redis`: a redis-server of the rig's own, every member uses it
    own_mysql: mariadb.MariaDBServer | None = None  # `with_mysql`: a MariaDB of the rig's own

    def __post_init__(self) -> None:
        self.db = f"oceand_ha_chaos_{os.getpid()}_{next(_counter)}"
        self.mysql_addr = (MYSQL_HOST, MYSQL_PORT)  # the shared server, unless `with_mysql`
        create_mysql_database(self.db)
        self.jobs_dir = self.tmp / "jobs"
        self.jobs_dir.mkdir()
        for n in range(self.jobs):
            (self.jobs_dir / f"j{n}.json").write_bytes(orjson.dumps(job_doc(n)))
        self.names = [job_doc(n)["job"] for n in range(self.jobs)]
        self.apps = {job_doc(n)["job"]: job_doc(n)["target"]["app"] for n in range(self.jobs)}
        self.fake = FakeMarathonProcess(self.tmp, [f"{a}:{START}" for a in self.apps.values()])
        self._load_stop = threading.Event()
        self._load: threading.Thread | None = None
        self.pushed = 0

    # ---- members -------------------------------------------------------------------------------
    def with_redis(self, aof: bool = False) -> RedisServer:
        """Start a private redis-server (no persistence unless `aof`; the shared one on 6379 is never
        restarted) that the members added from now on use for hot state and wake-ups ([redis] url), each
        through a pausable proxy of its own (`Member.redis`)."""
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        workdir = self.tmp / "redis"
        workdir.mkdir()
        self.redis = RedisServer(workdir, appendonly=aof)
        self.redis.start()
        return self.redis

    def with_mysql(self) -> mariadb.MariaDBServer:
        """Move the rig's database to a MariaDB server of its own (tests/ha/mariadb.py), which a fault may
        shut down and start again (the shared one on 3306 is never stopped). Before any member is added."""
        assert not self.members, "with_mysql() before the members are added"
        why = mariadb.missing()
        if why is not None:
            pytest.skip(f"a private MariaDB cannot be started: {why}")
        server = mariadb.MariaDBServer(self.tmp / "mariadb")
        server.install()
        server.start()
        drop_mysql_database(self.db)
        self.own_mysql = server
        self.mysql_addr = ("127.0.0.1", server.port)
        c = server.connect()
        try:
            with c.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{self.db}` CHARACTER SET utf8mb4")
        finally:
            c.close()
        return server

    def add(self, start: bool = True) -> Member:
        i = len(self.members)
        mysql = ProxyThread(self.mysql_addr)
        marathon = ProxyThread(("127.0.0.1", self.fake.port))
        store = f"mysql://{MYSQL_USER}@127.0.0.1:{mysql.port}/{self.db}?timeout=10"
        redis = None if self.redis is None else ProxyThread(("127.0.0.1", self.redis.port))
        d = cluster_daemon(self.tmp / f"d{i}", store, f"http://127.0.0.1:{marathon.port}", self.jobs_dir)
        d.conf.write_text(
            d.conf.read_text().replace('name = "e2e"', 'name = "chaos"')
            + "".join(f'{k} = "{v}"\n' if k != "shards" else f"{k} = {v}\n" for k, v in TIMINGS.items())
            + (f'[redis]\nurl = "redis://127.0.0.1:{redis.port}/0"\n' if redis is not None else "")
        )
        m = Member(d, mysql, marathon, f"d{i}", redis)
        self.members.append(m)
        if start:
            d.start()
        return m

    def start(self, n: int = 3) -> None:
        """n members started at once; returns when each holds shards and every shard is held."""
        new = [self.add(start=False) for _ in range(n)]
        with ThreadPoolExecutor(n) as ex:
            list(ex.map(lambda m: m.daemon.start(), new))
        self.wait_settled()

    def live(self) -> list[Member]:
        return [m for m in self.members if m.alive()]

    def cluster(self) -> dict[str, Any] | None:
        for m in self.live():
            c = get(m.daemon, "/api/v1/cluster")
            if c is not None:
                return c  # type: ignore[no-any-return]
        return None

    def wait_settled(self, timeout: float = 30.0) -> None:
        def settled() -> bool:
            c = self.cluster()
            live = len(self.live())
            return (
                c is not None
                and c["unowned"] == 0
                and len(c["members"]) == live
                and all(x["shards_held"] > 0 for x in c["members"])
            )

        wait_for(settled, timeout, f"{len(self.live())} members holding every shard")

    def owner(self, job: str, among: list[Member] | None = None) -> Member | None:
        """The member acting on `job` now (its status says so), or None."""
        for m in among if among is not None else self.live():
            s = get(m.daemon, f"/api/v1/jobs/{job}/status", 0.3)
            if s is not None and (s.get("cluster") or {}).get("acting"):
                return m
        return None

    def timed_takeover(self, job: str, survivors: list[Member], since: float, bound: float = 15.0) -> float:
        """Wait until a member of `survivors` acts on `job`; record and return the seconds since `since`."""
        wait_for(lambda: self.owner(job, survivors), bound, f"a survivor acting on {job}")
        t = round(time.monotonic() - since, 2)
        self.takeovers.append(t)
        return t

    # ---- faults --------------------------------------------------------------------------------
    def kill9(self, m: Member) -> None:
        m.daemon.kill()

    def sigstop(self, m: Member, seconds: float) -> None:
        os.kill(m.pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)  # the fault itself: the process is frozen this long
        finally:
            os.kill(m.pid, signal.SIGCONT)

    def sigterm(self, m: Member) -> int:
        return m.daemon.stop()

    # ---- load ----------------------------------------------------------------------------------
    def start_load(self) -> None:
        """Every second, a breach (cpu.used 90 from two hosts) for every job, pushed to its owner."""

        def run() -> None:
            t = int(time.time())
            while not self._load_stop.is_set():
                time.sleep(max(0.0, t + 0.05 - time.time()))
                for job in self.names:
                    own = self.owner(job)
                    if own is None:
                        continue  # no owner this second: the bucket is a gap
                    body = [sample(job, f"h{k}", t) for k in range(2)]
                    with contextlib.suppress(OSError, urllib.error.URLError):
                        req = urllib.request.Request(
                            own.daemon.url + "/v1/push", data=orjson.dumps(body), method="POST"
                        )
                        with urllib.request.urlopen(req, timeout=0.5):
                            self.pushed += 1
                t = max(t + 1, int(time.time()))

        self._load = threading.Thread(target=run, daemon=True, name="ha-load")
        self._load.start()

    def stop_load(self) -> None:
        self._load_stop.set()
        if self._load is not None:
            self._load.join(10)

    def progress(self, n: int = 1, timeout: float = PROGRESS, apps: list[str] | None = None) -> None:
        """Wait until every app (or those of `apps`) has `n` more writes taken by Marathon than now: the
        cluster still acts on every job after a fault."""
        before = self.taken()
        want = apps if apps is not None else list(self.apps.values())
        wait_for(
            lambda: all(self.taken().get(a, 0) >= before.get(a, 0) + n for a in want),
            timeout,
            f"{n} more scale(s) of {want}",
        )

    def taken(self) -> dict[str, int]:
        """Writes Marathon took so far, per app."""
        out: dict[str, int] = {}
        for w in inv.writes_from_fake(self.fake.control("GET", "requests")):
            if w.taken:
                out[w.app] = out.get(w.app, 0) + 1
        return out

    def warm(self) -> None:
        """Load on, until every app was scaled at least once (every owner acts)."""
        self.start_load()
        wait_for(lambda: len(self.taken()) == self.jobs, PROGRESS, "every app scaled once")

    # ---- evidence ------------------------------------------------------------------------------
    def connect(self) -> Any:
        """A connection to the rig's database (on the shared server, or the rig's own)."""
        host, port = self.mysql_addr
        return pymysql.connect(host=host, port=port, user=MYSQL_USER, database=self.db, autocommit=True)

    def _sql(self, q: str) -> list[tuple[Any, ...]]:
        c = self.connect()
        try:
            with c.cursor() as cur:
                cur.execute(q)
                return list(cur.fetchall())
        finally:
            c.close()

    def intents(self) -> list[inv.Intent]:
        rows = self._sql(
            "SELECT decision_id, attempt, job, to_count, sent_at, deadline, status, updated_at, shard, epoch"
            " FROM actuation_attempts"
        )
        return [inv.Intent(*r) for r in rows]

    def decided_at(self) -> dict[int, float]:
        return {int(i): float(at) for i, at in self._sql("SELECT id, at FROM decisions")}

    def outcomes(self) -> list[inv.Outcome]:
        return [inv.Outcome(*r) for r in self._sql("SELECT decision_id, job, status FROM actuation_outcomes")]

    def violations(self) -> list[str]:
        writes = inv.writes_from_fake(self.fake.control("GET", "requests"))
        intents = self.intents()
        return (
            inv.i1_epochs_never_decrease(writes)
            + inv.i2_one_actuation_per_decision(writes, intents)
            + inv.i3_no_unrecorded_writes(writes, intents)
            + inv.i4_writes_within_budget(writes, intents)
            + inv.i5_no_double_scale(
                writes, self.decided_at(), dict.fromkeys(self.apps.values(), START), 1, COOLDOWN
            )
            + inv.i6_no_lost_decisions(intents, self.outcomes())
            + inv.i8_fencing(intents)
        )

    def settled_violations(self) -> list[str]:
        """Wait (up to SETTLE) until nothing has been pending and no intent or outcome has come for QUIET
        seconds, then the violations of I1–I6 and I8. Not just "nothing pending": the buckets of the last
        pushes close up to a period + grace after the load stopped, and a decision taken then was read as
        pending by `violations` right after such a check had passed (CI, gc_pause: two intents)."""
        last = {"rows": -1, "at": time.monotonic()}

        def quiet() -> bool:
            intents, outcomes = self.intents(), self.outcomes()
            pending = any(i.status == "pending" for i in intents) or any(
                o.status == "pending" for o in outcomes
            )
            if pending or len(intents) + len(outcomes) != last["rows"]:
                last.update(rows=len(intents) + len(outcomes), at=time.monotonic())
                return False
            return time.monotonic() - last["at"] >= QUIET

        with contextlib.suppress(AssertionError):  # still pending after SETTLE: I6 names them
            wait_for(quiet, SETTLE, "every intent and outcome resolved, none new for QUIET seconds")
        return self.violations()

    def check(self, takeover_bound: float | None = None) -> dict[str, int]:
        """Load off; wait until nothing is pending; assert I1–I6, I8 (and I7 with `takeover_bound`).
        Returns the writes Marathon took per app."""
        self.stop_load()
        bad = self.settled_violations()
        if takeover_bound is not None:
            bad += inv.i7_failover_time(self.takeovers, takeover_bound)
        assert bad == [], "\n".join(bad) + f"\n(logs in {self.tmp})"
        writes = inv.writes_from_fake(self.fake.control("GET", "requests"))
        epochs = sorted({w.epoch for w in writes if w.epoch is not None})
        print(
            f"\nchaos rig: {len(writes)} writes ({sum(w.taken for w in writes)} taken), epochs {epochs}, "
            f"{len(self.intents())} intents, takeovers {self.takeovers}, pushes {self.pushed}"
        )
        return self.taken()

    def close(self) -> None:
        self.stop_load()
        for m in self.members:
            if m.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(m.pid, signal.SIGCONT)
            m.daemon.close()
            m.mysql.close()
            m.marathon.close()
            if m.redis is not None:
                m.redis.close()
        self.fake.stop()
        if self.redis is not None:
            self.redis.stop()
        if self.own_mysql is not None:
            self.own_mysql.stop()  # its data go with it
        else:
            drop_mysql_database(self.db)
