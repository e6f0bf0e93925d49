"""The fenced snapshot write, reads, TTLs, the unchanged skip and the handoff against the real Redis on
127.0.0.1:6379, each test under a cluster name (key prefix) of its own, deleted afterwards."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from oceand.cluster.hotstate import HotState, JobHandoff, Snapshot, StateWrite, handoff_key, state_key
from oceand.metrics import Metrics

from .conftest import SHARED_URL

pytestmark = pytest.mark.redis


class Mono:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def hot(cluster_name: str, shared_redis: redis.Redis, closing: list[object]) -> HotState:
    h = HotState(SHARED_URL, cluster_name, metrics=Metrics(), mono=Mono())
    closing.append(h)
    assert await h.probe()
    return h


def count(h: HotState, metric: str, **labels: str) -> float:
    assert h.metrics is not None
    value = h.metrics.registry.get_sample_value(metric, labels)
    return 0.0 if value is None else value


def writes(h: HotState, result: str) -> float:
    return count(h, "oceand_hotstate_write_total", result=result)


S1: dict[str, Any] = {"count": 3, "streaks": {"up": 1}, "last_bucket": 60}
S2: dict[str, Any] = {"count": 3, "streaks": {"up": 2}, "last_bucket": 120}


@pytest.mark.parametrize(
    ("first", "second", "result", "stored_epoch"),
    [
        pytest.param(5, 6, "ok", 6, id="newer epoch accepted"),
        pytest.param(5, 5, "ok", 5, id="equal epoch accepted"),
        pytest.param(6, 5, "fenced", 6, id="older epoch rejected"),
    ],
)
async def test_fenced_write(
    cluster_name: str,
    shared_redis: redis.Redis,
    closing: list[object],
    first: int,
    second: int,
    result: str,
    stored_epoch: int,
) -> None:
    a = HotState(SHARED_URL, cluster_name, metrics=Metrics())
    b = HotState(SHARED_URL, cluster_name, metrics=Metrics())  # the other daemon
    closing += [a, b]
    assert await a.probe() and await b.probe()
    assert await a.write_state(7, first, "web", 60, S1) == "ok"
    assert await b.write_state(7, second, "web", 120, S2) == result
    snap = await a.read_state(7, "web")
    assert snap is not None
    assert snap.epoch == stored_epoch
    assert snap == (Snapshot(second, 120, S2) if result == "ok" else Snapshot(first, 60, S1))
    assert writes(b, result) == 1


async def test_state_key_has_the_ttl(hot: HotState, cluster_name: str, shared_redis: redis.Redis) -> None:
    assert await hot.write_state(3, 1, "web", 60, S1) == "ok"
    ttl = shared_redis.pttl(state_key(cluster_name, 3, "web"))
    assert 3_590_000 < ttl <= 3_600_000
    assert shared_redis.hgetall(state_key(cluster_name, 3, "web"))[b"bucket_ts"] == b"60"


async def test_unchanged_state_is_not_sent(
    hot: HotState, cluster_name: str, shared_redis: redis.Redis
) -> None:
    """Same epoch and same state but for last_bucket: not sent (counted unchanged), so the stored snapshot
    keeps its bucket; a change, a new epoch, or half the TTL passing sends it again."""
    key = state_key(cluster_name, 3, "web")
    assert await hot.write_state(3, 1, "web", 60, S1) == "ok"
    assert await hot.write_state(3, 1, "web", 120, {**S1, "last_bucket": 120}) == "unchanged"
    assert shared_redis.hget(key, "bucket_ts") == b"60"
    assert writes(hot, "unchanged") == 1
    assert await hot.write_state(3, 1, "web", 180, {**S1, "count": 4, "last_bucket": 180}) == "ok"
    assert await hot.write_state(3, 2, "web", 240, {**S1, "count": 4, "last_bucket": 240}) == "ok"
    assert shared_redis.hget(key, "epoch") == b"2"
    assert isinstance(hot.mono, Mono)
    hot.mono.now += 1800  # half the TTL: refreshed, so an idle job's snapshot does not expire
    assert await hot.write_state(3, 2, "web", 300, {**S1, "count": 4, "last_bucket": 300}) == "ok"
    assert shared_redis.hget(key, "bucket_ts") == b"300"


async def test_fenced_write_is_not_remembered_as_written(hot: HotState, cluster_name: str) -> None:
    other = HotState(SHARED_URL, cluster_name)
    try:
        assert await other.probe()
        assert await other.write_state(3, 9, "web", 60, S1) == "ok"
        assert await hot.write_state(3, 8, "web", 60, S1) == "fenced"
        assert await hot.write_state(3, 8, "web", 60, S1) == "fenced"  # not "unchanged"
    finally:
        await other.close()


async def test_a_missing_snapshot_is_a_miss(hot: HotState) -> None:
    assert await hot.read_state(4, "nothing") is None
    assert count(hot, "oceand_hotstate_read_total", result="miss") == 1


async def test_an_unreadable_snapshot_is_ignored(
    hot: HotState, cluster_name: str, shared_redis: redis.Redis
) -> None:
    shared_redis.hset(
        state_key(cluster_name, 4, "web"), mapping={"epoch": "1", "bucket_ts": "", "state": "{"}
    )
    assert await hot.read_state(4, "web") is None
    assert count(hot, "oceand_hotstate_read_total", result="error") == 1


@pytest.mark.parametrize(
    ("redis_bucket", "store", "source"),
    [
        pytest.param(120, {"count": 2, "last_bucket": 60}, "redis", id="redis newer"),
        pytest.param(60, {"count": 2, "last_bucket": 60}, "store", id="tie to the store"),
        pytest.param(None, {"count": 2, "last_bucket": 60}, "store", id="no snapshot"),
    ],
)
async def test_load_state_takes_the_newer(
    hot: HotState, redis_bucket: int | None, store: dict[str, Any], source: str
) -> None:
    if redis_bucket is not None:
        await hot.write_state(2, 1, "web", redis_bucket, {"count": 5, "last_bucket": redis_bucket})
    got, state = await hot.load_state(2, "web", store)
    assert got == source
    assert state == (store if source == "store" else {"count": 5, "last_bucket": redis_bucket})
    assert count(hot, "oceand_hotstate_source_total", source=source) == 1


SAMPLES = {
    "web": JobHandoff(
        1700000000, [("cpu", "10.0.0.1", 1700000001, 81.5), ("cpu", "10.0.0.2", 1700000009, 79.0)]
    ),
    "idle": JobHandoff(1699999990, []),  # no sample in its open bucket: where its closed ones end still goes
}


async def test_handoff_is_taken_once_by_a_newer_owner(
    hot: HotState, cluster_name: str, shared_redis: redis.Redis
) -> None:
    assert await hot.write_handoff(9, 4, SAMPLES)
    ttl = shared_redis.pttl(handoff_key(cluster_name, 9))
    assert 29_000 < ttl <= 30_000
    assert await hot.take_handoff(9, 5) == SAMPLES
    assert await hot.take_handoff(9, 5) == {}  # taken: deleted
    assert count(hot, "oceand_hotstate_handoff_total", op="take", result="empty") == 1


@pytest.mark.parametrize(
    ("left_by", "taker", "previous"),
    [
        pytest.param(5, 5, None, id="same epoch"),
        pytest.param(6, 5, None, id="newer epoch"),
        pytest.param(3, 5, 4, id="older than the shard's last owner: a late write of an earlier one"),
    ],
)
async def test_handoff_from_another_than_the_last_owner_is_refused(
    hot: HotState, left_by: int, taker: int, previous: int | None
) -> None:
    assert await hot.write_handoff(9, left_by, SAMPLES)
    assert await hot.take_handoff(9, taker, previous) == {}
    assert count(hot, "oceand_hotstate_handoff_total", op="take", result="stale") == 1


async def test_handoff_from_the_last_owner_is_taken(hot: HotState) -> None:
    assert await hot.write_handoff(9, 4, SAMPLES)
    assert await hot.take_handoff(9, 5, 4) == SAMPLES


async def test_handoff_expires(
    hot: HotState, cluster_name: str, shared_redis: redis.Redis, wait_for: Callable[..., Any]
) -> None:
    short = HotState(SHARED_URL, cluster_name, handoff_ttl=0.1)
    try:
        assert await short.probe()
        assert await short.write_handoff(9, 1, SAMPLES)
        key = handoff_key(cluster_name, 9)
        assert shared_redis.exists(key)
        await wait_for(lambda: not shared_redis.exists(key), "the handoff key expired", 5.0)
        assert await hot.take_handoff(9, 2) == {}
    finally:
        await short.close()


async def test_batched_writes_are_fenced_one_by_one(hot: HotState, cluster_name: str) -> None:
    """One pipeline, each write fenced on its own: results in order, the stored snapshots as if written
    one at a time."""
    other = HotState(SHARED_URL, cluster_name)
    try:
        assert await other.probe()
        assert await other.write_state(2, 9, "taken", 60, S1) == "ok"  # a newer owner's
        assert await hot.write_state(1, 5, "same", 60, S1) == "ok"
        got = await hot.write_states(
            [
                StateWrite(1, 5, "new", 120, S2),
                StateWrite(2, 5, "taken", 120, S2),
                StateWrite(1, 5, "same", 120, {**S1, "last_bucket": 120}),
                StateWrite(1, 6, "new2", None, S1),
            ]
        )
        assert got == ["ok", "fenced", "unchanged", "ok"]
        assert await hot.read_state(1, "new") == Snapshot(5, 120, S2)
        assert await hot.read_state(2, "taken") == Snapshot(9, 60, S1)
        assert await hot.read_state(1, "new2") == Snapshot(6, None, S1)
        assert (writes(hot, "ok"), writes(hot, "fenced"), writes(hot, "unchanged")) == (3, 1, 1)
        assert await hot.write_states([StateWrite(1, 5, "new", 120, S2)]) == ["unchanged"]
        assert await hot.write_states([]) == []
    finally:
        await other.close()
