"""Forwarding between daemons (issue 14, HA.md §4.5/§6.8): two daemons in this process on the real MariaDB,
the in-process fake Marathon, the same job file on both, each listening on the address it advertises.

- a push to the daemon that does not own the job lands in the owner's buckets (and not the sender's);
- a manual scale sent to the non-owner is applied by the owner (its lease epoch on the PUT);
- an alarm callback sent to the non-owner is queued at the owner;
- bad internal requests (no token, wrong token, malformed, a shard not held) get 4xx and are counted."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from collectors.falcon_items import FalconItem
from oceand.cluster import assign
from oceand.cluster.forward import TOKEN_HEADER
from oceand.config import validate_config
from oceand.daemon import Daemon
from oceand.store.base import MySQLURL
from tests.cluster.test_engine_gate import CLUSTER, puts
from tests.cluster.test_engine_gate import fake as fake
from tests.cluster.test_lease import sql
from tests.conftest import Client
from tests.fakes.marathon import FakeMarathon
from tests.marathon.conftest import until
from tests.marathon.test_actuation import APP, JOB, job_doc, marathon

pytestmark = pytest.mark.mysql
TOKEN = CLUSTER["token"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Pair:
    def __init__(self, tmp: Path, db: MySQLURL, marathon: FakeMarathon) -> None:
        self.tmp, self.db, self.fake = tmp, db, marathon
        self.daemons: list[Daemon] = []
        self.clients: list[Client] = []
        self.session: aiohttp.ClientSession | None = None
        jobs = tmp / "jobs"
        jobs.mkdir()
        doc = job_doc()
        doc["rules"].append({"name": "falcon", "type": "alarm", "match": {"stra_id": 1}, "step": 1})
        (jobs / "job.json").write_bytes(orjson.dumps(doc))
        self.jobs = jobs

    async def start(self, clock: Callable[[], float] = time.time, **extra: Any) -> tuple[Daemon, Client]:
        """A daemon on the pair's database and job files; `extra` config sections are added (`cluster`
        keys are merged into the pair's)."""
        port = free_port()
        data: dict[str, Any] = {
            "server": {"listen": f"127.0.0.1:{port}"},
            "store": {"url": f"mysql://root@127.0.0.1:3306/{self.db.database}?timeout=10"},
            "marathon": marathon(self.fake.url),
            "jobs": {"dir": str(self.jobs)},
            "cluster": dict(CLUSTER, advertise=f"127.0.0.1:{port}") | extra.pop("cluster", {}),
        }
        data.update(extra)
        work = self.tmp / f"d{len(self.daemons)}"
        work.mkdir()
        conf = validate_config(data, file=str(work / "oceand.toml"), base_dir=work, path=None)
        d = Daemon(conf, clock=clock)
        await d.start()
        if self.session is None:
            self.session = aiohttp.ClientSession()
        assert d.url is not None
        c = Client(self.session, d.url)
        self.daemons.append(d)
        self.clients.append(c)
        return d, c

    async def settled(self) -> tuple[int, int]:
        """Wait until the job's shard is held by its rendezvous owner and the other daemon routes it there;
        (owner index, other index)."""
        a, b = self.daemons
        assert a.leases is not None and b.leases is not None
        shard = a.leases.shard_of(JOB)
        want = assign.desired_owners({a.leases.stable_id, b.leases.stable_id}, a.leases.s.shards)[shard]
        o, n = (0, 1) if want == a.leases.stable_id else (1, 0)
        owner, other = self.daemons[o], self.daemons[n]
        assert owner.leases is not None and other.forwarder is not None

        def ready() -> bool:
            r = other.forwarder.routes.get(shard) if other.forwarder else None
            return (
                owner.leases is not None
                and shard in owner.leases.held
                and r is not None
                and r.owner == owner.leases.me
            )

        await until(ready, 15)
        return o, n

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
        for d in reversed(self.daemons):
            if not d.stop_event.is_set():
                await d.stop()


@pytest.fixture
async def pair(tmp_path: Path, migrated: MySQLURL, fake: FakeMarathon) -> AsyncIterator[Pair]:
    p = Pair(tmp_path, migrated, fake)
    yield p
    await p.close()


def count(d: Daemon, name: str, **labels: str) -> float:
    return d.metrics.registry.get_sample_value(name, labels) or 0.0


def push_item(value: float, ts: int) -> dict[str, Any]:
    return {
        "endpoint": "h1",
        "metric": "cpu.idle",
        "tags": f"job={JOB}",
        "timestamp": ts,
        "value": value,
        "step": 10,
        "counterType": "GAUGE",
    }


async def test_a_push_to_the_non_owner_lands_in_the_owners_buckets(pair: Pair) -> None:
    await pair.start()
    await pair.start()
    o, n = await pair.settled()
    owner, other = pair.daemons[o], pair.daemons[n]
    # stamped in the next period: its bucket stays open ≥ 10 s, so a loaded machine's slow forward still
    # finds it open (a sample of the current period could land in a bucket that closes at the period's end
    # before the check sees it)
    ts = int(time.time()) // 10 * 10 + 10
    status, body = await pair.clients[n].call("POST", "/v1/push", [push_item(25, ts)])
    assert status == 200 and body["data"]["Total"] == 1, body

    def landed() -> bool:
        return any(b.values[0].get("h1") == (ts, 75.0) for b in owner.engine.jobs[JOB].buckets.open.values())

    await until(landed, 9)
    # the sender counts the batch once the owner's 204 is back, a moment after the sample landed there
    await until(lambda: count(other, "oceand_forward_samples_total", result="sent") > 0, 9)
    assert all(not b.values[0] for b in other.engine.jobs[JOB].buckets.open.values())
    assert count(other, "oceand_forward_samples_total", result="sent") == 1
    assert count(owner, "oceand_forward_samples_total", result="received") == 1


async def test_a_scale_sent_to_the_non_owner_is_applied_by_the_owner(pair: Pair) -> None:
    await pair.start()
    await pair.start()
    o, n = await pair.settled()
    owner = pair.daemons[o]
    assert owner.leases is not None
    await until(lambda: owner.engine.status(JOB)["app_known"], 5)
    status, body = await pair.clients[n].call("POST", f"/api/v1/jobs/{JOB}/scale", {"instances": 3})
    assert status == 200 and body["decision"]["status"] == "applied", body
    epoch = owner.leases.held[owner.leases.shard_of(JOB)].epoch
    assert [(p["X-Oceand-Epoch"], p["instances"]) for p in puts(pair.fake)] == [(str(epoch), "3")]
    assert pair.fake.apps[APP].instances == 3


async def test_an_alarm_sent_to_the_non_owner_is_queued_at_the_owner(pair: Pair) -> None:
    await pair.start()
    await pair.start()
    o, n = await pair.settled()
    owner, other = pair.daemons[o], pair.daemons[n]
    owner_rt = owner.engine.jobs[JOB]
    owner_rt.wake.clear()
    query = (
        "endpoint=h1&metric=cpu.idle&status=PROBLEM&step=1&priority=0&time=2026-11-28+10:00:00"
        f"&stra_id=1&left_value=3&tags=job%3D{JOB}"
    )
    status, body = await pair.clients[n].call("GET", f"/v1/falcon/alarm?{query}")
    assert status == 200 and body["jobs"] == [JOB], body
    assert other.engine.jobs[JOB].alarms == {}  # not queued at the daemon that does not own the job
    assert count(other, "oceand_forward_calls_total", kind="alarm", result="sent") == 1
    assert count(owner, "oceand_forward_calls_total", kind="alarm", result="received") == 1


async def test_bad_internal_requests_are_refused_and_counted(pair: Pair) -> None:
    d, _ = await pair.start()
    assert d.leases is not None and d.url is not None
    await until(lambda: len(d.leases.held) == d.leases.s.shards if d.leases else False, 10)
    good = {"from": "x", "sent_at": 1, "samples": [[JOB, "h1", 0, int(time.time()), 1]]}
    url = f"{d.url}/internal/v1/samples"
    assert pair.session is not None
    cases = [
        ({}, orjson.dumps(good), 401, "no_token"),
        ({TOKEN_HEADER: "w" * 20}, orjson.dumps(good), 401, "bad_token"),
        ({TOKEN_HEADER: TOKEN}, b"{not json", 400, "malformed"),
        ({TOKEN_HEADER: TOKEN}, orjson.dumps({"from": "x", "samples": [[1, 2]]}), 400, "malformed"),
        ({"Authorization": "Bearer whatever"}, orjson.dumps(good), 401, "no_token"),
    ]
    for headers, body, want, reason in cases:
        before = count(d, "oceand_internal_rejected_total", reason=reason)
        async with pair.session.post(url, data=body, headers=headers) as r:
            assert r.status == want, (headers, body, await r.text())
        assert count(d, "oceand_internal_rejected_total", reason=reason) == before + 1, reason
    async with pair.session.post(url, data=orjson.dumps(good), headers={TOKEN_HEADER: TOKEN}) as r:
        assert r.status == 204
    # a shard not held here: 409 naming it; the samples of the held shards are kept
    shard = d.leases.shard_of(JOB)
    await d.leases.release([shard])
    async with pair.session.post(url, data=orjson.dumps(good), headers={TOKEN_HEADER: TOKEN}) as r:
        assert r.status == 409 and (await r.json()) == {"not_owner": [shard]}
    assert count(d, "oceand_forward_samples_total", result="refused") == 1


async def test_samples_for_an_unreachable_owner_are_held_and_reach_the_next_owner(pair: Pair) -> None:
    """The owner stops answering (its API closed, its leases still renewed): samples pushed to the other
    daemon are held; when the owner's leases go, the other daemon takes the shard and gets them locally."""
    await pair.start()
    await pair.start()
    o, n = await pair.settled()
    owner, other = pair.daemons[o], pair.daemons[n]
    assert owner.leases is not None and other.leases is not None
    for r in owner._runners:
        await r.cleanup()
    ts = int(time.time())
    status, _ = await pair.clients[n].call("POST", "/v1/push", [push_item(25, ts)])
    assert status == 200
    await until(lambda: count(other, "oceand_forward_samples_total", result="held") == 1, 5)
    await owner.leases.stop()  # the takeover: its shards released, the other daemon acquires them

    def landed() -> bool:
        return any(b.values[0].get("h1") == (ts, 75.0) for b in other.engine.jobs[JOB].buckets.open.values())

    await until(landed, 10)
    assert count(other, "oceand_forward_samples_total", result="dropped_expired") == 0


async def test_a_not_owner_reply_after_a_move_rereads_the_routes(pair: Pair) -> None:
    """The sender's routes still name the old owner, which gave the shard up: it answers 409 not_owner;
    the sender reads the routes again and, the shard having no owner yet, holds the sample until it takes
    the shard itself (the old owner's lease loop stopped), then puts it into its own buckets."""
    await pair.start()
    await pair.start()
    o, n = await pair.settled()
    owner, other = pair.daemons[o], pair.daemons[n]
    assert owner.leases is not None and other.forwarder is not None and other.leases is not None
    shard = owner.leases.shard_of(JOB)
    stale = other.forwarder.routes.get(shard)
    for t in owner.leases._tasks:  # the old owner stops polling (it would take the shard back) ...
        t.cancel()
    await owner.leases.release([shard])  # ... and gives the shard up
    other.forwarder.routes.routes[shard] = stale  # the sender has not read the routes since
    ts = int(time.time())
    other.engine.ingestor.push(
        [FalconItem("h1", "cpu.idle", ts, 10, 25.0, "GAUGE", f"job={JOB}")], typed=True
    )
    await other.forwarder.flush()
    assert count(owner, "oceand_forward_samples_total", result="refused") == 1  # the 409

    def landed() -> bool:
        return any(b.values[0].get("h1") == (ts, 75.0) for b in other.engine.jobs[JOB].buckets.open.values())

    await until(landed, 10)  # the old owner's membership expires: the other daemon takes the shard
    assert shard in other.leases.held
    assert count(other, "oceand_forward_samples_total", result="dropped_not_owner") == 0


async def test_a_push_to_the_non_owner_scales_the_job_through_the_owner(pair: Pair) -> None:
    """Both instances report cpu.used 95 (> 80) to the daemon that does not own the job, stamped in the
    next period (a bucket begun after the owner took the shard, not a takeover gap); the owner's bucket
    completes and closes, and the owner scales the app out under its lease epoch. The push is repeated
    each second for the then-next period: on a loaded machine a lease renewal can time out and the owner
    take the shard again, which makes the bucket open at that moment a gap. Up to 10 s per period."""
    await pair.start()
    await pair.start()
    o, n = await pair.settled()
    owner = pair.daemons[o]
    assert owner.leases is not None
    await until(lambda: owner.engine.status(JOB)["app_known"], 5)
    await push_until_scaled(pair, n)
    epoch = owner.leases.held[owner.leases.shard_of(JOB)].epoch
    assert [(p["X-Oceand-Epoch"], p["instances"]) for p in puts(pair.fake)] == [(str(epoch), "3")]


async def push_until_scaled(pair: Pair, n: int) -> None:
    """Push cpu.idle 5 (cpu.used 95) for h1 and h2 to daemon `n`, stamped in the next period, each second
    until a PUT reached the fake Marathon (up to 35 s)."""
    end = time.monotonic() + 35
    while not puts(pair.fake) and time.monotonic() < end:
        ts = int(time.time()) // 10 * 10 + 10  # the next bucket, at most one period ahead (max_ahead)
        body = [dict(push_item(5, ts), endpoint=h) for h in ("h1", "h2")]
        status, reply = await pair.clients[n].call("POST", "/v1/push", body)
        assert status == 200 and reply["data"]["Invalid"] == 0, reply
        with contextlib.suppress(TimeoutError):
            await until(lambda: puts(pair.fake) != [], 1)


async def test_an_admin_scale_retried_with_its_idempotency_key_is_refused_not_applied_twice(
    pair: Pair,
) -> None:
    """HA.md §6.6 decision keys: a scale whose reply was lost is retried by its client with the same
    Idempotency-Key, through the other daemon (forwarded to the owner with the key). Meanwhile someone
    scaled the app to 5, so the retry decides 5 -> 3 again; its write has the key of the first call
    (m:<key>) and the intent's uniqueness refuses it: one PUT, the app stays at 5."""
    await pair.start()
    await pair.start()
    o, n = await pair.settled()
    owner = pair.daemons[o]
    await until(lambda: owner.engine.status(JOB)["app_known"], 5)
    key = {"Idempotency-Key": "ctl-7f3a:1"}
    status, body = await pair.clients[o].call(
        "POST", f"/api/v1/jobs/{JOB}/scale", {"instances": 3}, headers=key
    )
    assert status == 200 and body["decision"]["status"] == "applied", body
    pair.fake.scale_now(APP, 5)  # with the event Marathon sends for another client's write:
    pair.fake._emit("api_post_event", {"appDefinition": {"id": APP, "instances": 5}})
    await until(lambda: owner.engine._view(owner.engine.jobs[JOB]).instances == 5, 5)
    status, body = await pair.clients[n].call(
        "POST", f"/api/v1/jobs/{JOB}/scale", {"instances": 3}, headers=key
    )
    assert status == 200, body
    assert (body["decision"]["current"], body["decision"]["desired"]) == (5, 3)
    assert body["decision"]["status"] == "failed" and "already has this attempt" in str(body), body
    assert [p["instances"] for p in puts(pair.fake)] == ["3"]
    assert await sql(pair.db, "SELECT decision_key, status FROM actuation_attempts") == [
        ("m:ctl-7f3a:1", "applied")
    ]
    # another call (another key) is another operation: applied
    key2 = {"Idempotency-Key": "ctl-7f3a:2"}
    status, body = await pair.clients[n].call(
        "POST", f"/api/v1/jobs/{JOB}/scale", {"instances": 3}, headers=key2
    )
    assert status == 200 and body["decision"]["status"] == "applied", body
    assert pair.fake.apps[APP].instances == 3
