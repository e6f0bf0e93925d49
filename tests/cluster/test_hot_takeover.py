"""The Redis hot state joined to the lease loop and the engine (issue 14, docs/redis.md): two daemons in
this process on the real MariaDB, a redis-server of the test's own and the in-process fake Marathon, one
clock for both (buckets close when the test says):

- a streak built on daemon A whose last bucket never reached the store (A "crashes" between two
  write-behind flushes) continues on daemon B after the takeover, from A's Redis snapshot;
- with Redis down, B starts from the store's state (the streak restarts from what A wrote behind), /readyz
  says redis degraded and B still scales;
- a clean stop publishes the releases and `leaving`, and the wake-up kicks the other daemon's poll, so
  it takes the shards long before its next acquire_poll;
- a snapshot written under a newer epoch fences the old owner's write, which drops the shard;
- a clean stop hands the open bucket's samples to the new owner, whose first bucket is then whole (not a
  takeover gap); a handoff left by an owner older than the last is refused."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from oceand.cluster.hotstate import handoff_key, state_key
from oceand.daemon import Daemon
from oceand.engine import JobRuntime
from oceand.store.base import MySQLURL
from tests.cluster import test_forward_daemons as forward
from tests.cluster.test_engine_gate import fake as fake
from tests.cluster.test_engine_gate import owns, puts
from tests.cluster.test_forward_daemons import count
from tests.conftest import Client
from tests.engine.test_live_decisions import JOB, T0, Clock, bucket, cpu_item, seed
from tests.fakes.marathon import FakeMarathon
from tests.hotstate.conftest import RedisServer
from tests.hotstate.conftest import own_redis as own_redis
from tests.marathon.conftest import until
from tests.marathon.test_actuation import APP

pytestmark = [pytest.mark.mysql, pytest.mark.redis]
NAME = "hot"  # [cluster] name: the Redis keys' prefix


class Pair(forward.Pair):
    """Two daemons (see tests/cluster/test_forward_daemons.py) with one clock and `[redis]` on the test's
    redis-server; the job needs three hot buckets in a row to scale out by one."""

    def __init__(self, tmp: Path, db: MySQLURL, fake: FakeMarathon, redis: RedisServer) -> None:
        super().__init__(tmp, db, fake)
        self.redis = redis
        self.clock = Clock(T0 + 1)
        doc = seed(target={"cluster": "lg", "app": APP}, mode="active")
        (self.jobs / "job.json").write_bytes(orjson.dumps(doc))

    async def start(  # type: ignore[override]
        self, redis: bool = True, redis_timeout: str = "3s", **over: Any
    ) -> tuple[Daemon, Client]:
        """`redis_timeout` 3 s: on a loaded machine (CI's two workers on two cores) a call took over 300 ms
        (the value here before), Redis was marked degraded and a wake-up, a snapshot or a handoff was
        skipped, as designed, which these tests read as a failure. A stopped (killed) Redis refuses
        connections at once, so the Redis-down test does not need a short timeout."""
        extra: dict[str, Any] = {"cluster": {"name": NAME, **over}}
        if redis:
            extra["redis"] = {"url": self.redis.url, "socket_timeout": redis_timeout}
        d, c = await super().start(self.clock, **extra)
        if d.hotstate is not None:
            d.hotstate.probe_interval = 0.05  # a stopped or returned Redis is noticed at once
        return d, c


@pytest.fixture
async def pair(
    tmp_path: Path, migrated: MySQLURL, fake: FakeMarathon, own_redis: RedisServer
) -> AsyncIterator[Pair]:
    p = Pair(tmp_path, migrated, fake, own_redis)
    yield p
    await p.close()


def snapshot_bucket(p: Pair, d: Daemon) -> int | None:
    assert d.leases is not None
    raw = p.redis.client().hget(state_key(NAME, d.leases.shard_of(JOB), JOB), "bucket_ts")
    return None if not raw else int(raw)


def no_write_behind(d: Daemon) -> None:
    """From now on the states written behind never reach the store (as with a kill -9 before the next
    flush)."""

    async def nothing() -> None:
        return None

    d.engine.flush = nothing  # type: ignore[method-assign]


def crash(d: Daemon) -> None:
    """As kill -9: from now on nothing more reaches the leases or Redis either (its engine keeps running,
    and stops acting once its leases are not renewed)."""
    no_write_behind(d)
    assert d.leases is not None
    for t in d.leases._tasks + [t for t in d.runtime.tasks if t.get_name() == "redis-hot-state"]:
        t.cancel()


async def streak_on_a_then_crash(pair: Pair) -> Daemon:
    """A owns the job and sees two hot buckets: the first is written behind to the store (streak 1), the
    second reaches only Redis (streak 2); then A crashes."""
    a, ca = await pair.start()
    await until(lambda: owns(a) and a.engine.status(JOB)["app_known"], 10)
    await bucket(a, ca, pair.clock, 0, 90.0)
    await a.engine.flush()
    assert a.engine.jobs[JOB].state.streaks["cpu"].out == 1
    await until(lambda: snapshot_bucket(pair, a) == T0, 5)
    no_write_behind(a)
    await bucket(a, ca, pair.clock, 1, 90.0)
    assert a.engine.jobs[JOB].state.streaks["cpu"].out == 2
    await until(lambda: snapshot_bucket(pair, a) == T0 + 10, 5)
    crash(a)
    return a


async def taken_over(b: Daemon) -> None:
    await until(lambda: owns(b) and b.engine.status(JOB)["app_known"] and not b.engine.jobs[JOB].reload, 15)


def scaled_by(pair: Pair, b: Daemon) -> list[tuple[str, str]]:
    assert b.leases is not None
    epoch = b.leases.held[b.leases.shard_of(JOB)].epoch
    assert all(p["X-Oceand-Epoch"] == str(epoch) for p in puts(pair.fake))
    return [(p["X-Oceand-Epoch"], p["instances"]) for p in puts(pair.fake)]


async def test_a_streak_survives_a_takeover_through_redis(pair: Pair) -> None:
    await streak_on_a_then_crash(pair)
    b, cb = await pair.start()
    await taken_over(b)
    assert b.engine.jobs[JOB].state.streaks["cpu"].out == 2  # A's last bucket, from its snapshot
    assert count(b, "oceand_hotstate_source_total", source="redis") == 1
    await bucket(b, cb, pair.clock, 2, 90.0)  # the third hot bucket in a row: out by one
    await until(lambda: puts(pair.fake) != [], 5)
    assert [n for _, n in scaled_by(pair, b)] == ["3"]
    await until(lambda: snapshot_bucket(pair, b) == T0 + 20, 5)  # B's epoch writes the key now


async def test_with_redis_down_the_takeover_starts_from_the_store_and_scaling_goes_on(pair: Pair) -> None:
    await streak_on_a_then_crash(pair)
    pair.redis.stop()  # A's snapshot is gone with it (no persistence)
    b, cb = await pair.start()
    await taken_over(b)
    status, body = await cb.call("GET", "/readyz")
    assert (status, body["status"], body["redis"]) == (200, "ready", "degraded"), body
    assert b.engine.jobs[JOB].state.streaks["cpu"].out == 1  # what A wrote behind: one bucket lost
    assert count(b, "oceand_hotstate_source_total", source="store") == 1
    await bucket(b, cb, pair.clock, 2, 90.0)
    assert b.engine.jobs[JOB].state.streaks["cpu"].out == 2 and puts(pair.fake) == []
    await bucket(b, cb, pair.clock, 3, 90.0)  # three in a row as far as B knows: out by one
    await until(lambda: puts(pair.fake) != [], 5)
    assert [n for _, n in scaled_by(pair, b)] == ["3"]


async def test_wake_ups_move_shards_long_before_the_next_poll(pair: Pair) -> None:
    """acquire_poll 9 s: without wake-ups B would wait about that long for its share after joining, and A
    for B's shards after B's clean stop. `joined` kicks A's poll (it releases B's share), the releases
    kick B's, and at B's stop the releases and `leaving` kick A's (Redis calls get 3 s: see Pair.start)."""
    a, _ = await pair.start(lease_ttl="10s", acquire_poll="9s")
    assert a.leases is not None
    await until(lambda: a.leases is not None and len(a.leases.held) == a.leases.s.shards, 5)
    b, _ = await pair.start(lease_ttl="10s", acquire_poll="9s")
    assert b.leases is not None
    await until(lambda: b.leases is not None and len(b.leases.held) > 0, 5)  # not 9 s
    assert count(a, "oceand_redis_events_total", kind="joined") >= 1
    assert count(b, "oceand_redis_events_total", kind="released") >= 1
    await b.stop()
    await until(lambda: a.leases is not None and len(a.leases.held) == a.leases.s.shards, 5)
    assert count(a, "oceand_redis_events_total", kind="leaving") == 1
    assert count(a, "oceand_redis_events_total", kind="released") >= 1


async def test_a_snapshot_of_a_newer_epoch_fences_the_write_and_drops_the_shard(pair: Pair) -> None:
    a, ca = await pair.start()
    await until(lambda: owns(a) and a.engine.status(JOB)["app_known"], 10)
    assert a.leases is not None
    shard = a.leases.shard_of(JOB)
    newer = a.leases.held[shard].epoch + 1  # another daemon took the shard and wrote the job's state
    pair.redis.client().hset(
        state_key(NAME, shard, JOB), mapping={"epoch": newer, "bucket_ts": T0, "state": b"{}"}
    )
    await bucket(a, ca, pair.clock, 0, 90.0)  # a changed state: noted, its write refused
    await until(lambda: count(a, "oceand_lease_lost_total", reason="hotstate_fenced") == 1, 5)
    assert count(a, "oceand_hotstate_write_total", result="fenced") == 1
    assert pair.redis.client().hget(state_key(NAME, shard, JOB), "epoch") == str(newer).encode()


# ---- the handoff of a released shard's open buckets --------------------------------------------------


async def push_one(d: Daemon, c: Client, clock: Clock, ts: int, host: str, cpu_used: float) -> None:
    """One instance's sample of the bucket containing `ts` (the bucket stays open: two instances run)."""
    clock.t = ts + 1
    assert (await c.call("POST", "/v1/push", [cpu_item(host, ts, cpu_used)]))[0] == 200


async def close_first_bucket(d: Daemon, clock: Clock, ts: int) -> None:
    clock.t = ts + 16  # past its end + grace
    rt = d.engine.jobs[JOB]
    await until(lambda: (rt.wake.set(), rt.buckets.closed_upto > ts)[1] and d.engine._inflight == 0, 5)


async def a_stops_with_half_a_bucket(pair: Pair) -> tuple[Daemon, int, int]:
    """The clock ten minutes behind the database's, so that every bucket of this test began before the
    acquisition (database clock) and would be a `takeover_gap` without the handoff. A owns the job, gets
    h0's sample of bucket `ts` and stops cleanly (SIGTERM): its open bucket goes to Redis."""
    ts = (int(time.time()) - 600) // 10 * 10
    pair.clock.t = ts + 1
    a, ca = await pair.start()
    await until(lambda: owns(a) and a.engine.status(JOB)["app_known"], 10)
    assert a.leases is not None
    shard = a.leases.shard_of(JOB)
    epoch = a.leases.held[shard].epoch
    await push_one(a, ca, pair.clock, ts, "h0", 95.0)
    assert a.engine.jobs[JOB].buckets.open[ts].values[0] == {"h0": (ts, 95.0)}
    await a.stop()
    assert count(a, "oceand_hotstate_handoff_total", op="write", result="ok") >= 1
    return a, ts, epoch


async def b_takes_over(b: Daemon) -> JobRuntime:
    """B acquired the shard as it started, before it loaded the job: the job's takeover runs at its
    first step (woken here; else by its first push or bucket timer)."""
    await until(lambda: JOB in b.engine.jobs and owns(b) and b.engine.status(JOB)["app_known"], 10)
    rt = b.engine.jobs[JOB]
    await until(lambda: (rt.wake.set(), not rt.reload and b.engine._inflight == 0)[1], 10)
    return rt


async def test_a_clean_handoff_makes_the_new_owners_first_bucket_whole(pair: Pair) -> None:
    _, ts, _ = await a_stops_with_half_a_bucket(pair)
    b, cb = await pair.start()
    rt = await b_takes_over(b)
    assert count(b, "oceand_hotstate_handoff_total", op="take", result="ok") == 1
    assert rt.handed_from == ts and rt.buckets.open[ts].values[0] == {"h0": (ts, 95.0)}  # A's sample
    await push_one(b, cb, pair.clock, ts, "h1", 85.0)  # the other instance's, to the new owner
    await close_first_bucket(b, pair.clock, ts)
    last = rt.buckets.last
    assert last is not None and (last.start, last.reporters, last.values["cpu"]) == (ts, 2, 90.0)
    assert rt.state.streaks["cpu"].out == 1  # evaluated: not a takeover gap


async def test_a_handoff_of_an_older_epoch_than_the_last_owners_is_refused(pair: Pair) -> None:
    a, ts, epoch = await a_stops_with_half_a_bucket(pair)
    assert a.leases is not None
    key = handoff_key(NAME, a.leases.shard_of(JOB))
    r = pair.redis.client()
    left = orjson.loads(r.get(key))
    assert left["epoch"] == epoch and left["jobs"][JOB][1] == [["cpu", "h0", ts, 95.0]]
    r.set(key, orjson.dumps(left | {"epoch": epoch - 1}))  # a late write of an owner before A
    b, cb = await pair.start()
    rt = await b_takes_over(b)
    assert count(b, "oceand_hotstate_handoff_total", op="take", result="stale") == 1
    assert rt.handed_from is None and ts not in rt.buckets.open
    await push_one(b, cb, pair.clock, ts, "h1", 85.0)
    await close_first_bucket(b, pair.clock, ts)
    assert rt.state.last_bucket == ts and "cpu" not in rt.state.streaks  # a takeover gap: not evaluated
