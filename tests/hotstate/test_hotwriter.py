"""The engine's seam to the hot state (oceand/cluster/hotwriter.py): states noted without waiting, written
behind in batches under the epoch owned at send time; fenced writes reported; Redis down keeps the
latest state per job pending until Redis answers, then sends it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import redis

from oceand.cluster.hotstate import HotState, Snapshot
from oceand.cluster.hotwriter import HotStateWriter
from oceand.metrics import Metrics

from .conftest import SHARED_URL, RedisServer


def st(n: int, bucket: int) -> dict[str, Any]:
    return {"count": n, "last_bucket": bucket}


class Owned:
    """job -> (shard, epoch) for the jobs this daemon may act on."""

    def __init__(self, **jobs: tuple[int, int]) -> None:
        self.jobs = jobs

    def __call__(self, job: str) -> tuple[int, int] | None:
        return self.jobs.get(job)


@pytest.mark.redis
async def test_notes_coalesce_and_go_out_in_batches(
    cluster_name: str, shared_redis: redis.Redis, closing: list[object]
) -> None:
    hot = HotState(SHARED_URL, cluster_name, metrics=Metrics())
    closing.append(hot)
    assert await hot.probe()
    owned = Owned(**{f"j{i}": (i % 4, 3) for i in range(7)})
    w = HotStateWriter(hot, owned, batch=3)
    for i in range(7):
        w.note(f"j{i}", 60, st(1, 60))
    w.note("j0", 120, st(2, 120))  # replaces the first note of j0
    w.note("elsewhere", 60, st(1, 60))  # not owned here: dropped
    assert await w.flush() == 7
    assert w.pending == {}
    assert await hot.read_state(0, "j0") == Snapshot(3, 120, st(2, 120))
    assert await hot.read_state(1, "j5") == Snapshot(3, 60, st(1, 60))
    assert await hot.read_state(0, "elsewhere") is None
    assert hot.metrics is not None
    assert hot.metrics.registry.get_sample_value("oceand_hotstate_write_total", {"result": "ok"}) == 7
    w.note("j1", 180, st(1, 180))  # only the bucket moved: not sent
    assert await w.flush() == 0
    assert hot.metrics.registry.get_sample_value("oceand_hotstate_write_total", {"result": "unchanged"}) == 1


@pytest.mark.redis
async def test_a_fenced_write_is_reported(
    cluster_name: str, shared_redis: redis.Redis, closing: list[object]
) -> None:
    new_owner = HotState(SHARED_URL, cluster_name)
    hot = HotState(SHARED_URL, cluster_name)
    closing += [new_owner, hot]
    assert await new_owner.probe() and await hot.probe()
    assert await new_owner.write_state(2, 8, "web", 120, st(5, 120)) == "ok"
    fenced: list[tuple[str, int]] = []
    w = HotStateWriter(hot, Owned(web=(2, 7), api=(2, 7)), on_fenced=lambda j, e: fenced.append((j, e)))
    w.note("web", 120, st(4, 120))
    w.note("api", 120, st(4, 120))
    assert await w.flush() == 1
    assert fenced == [("web", 7)]  # with the epoch it was written under
    assert w.pending == {}  # not retried
    assert await hot.read_state(2, "web") == Snapshot(8, 120, st(5, 120))


async def test_redis_down_keeps_the_latest_state_pending_until_it_answers(
    own_redis: RedisServer, closing: list[object], wait_for: Callable[..., Any]
) -> None:
    hot = HotState(own_redis.url, "c1", metrics=Metrics(), probe_interval=0.05)
    closing.append(hot)
    await hot.start()
    await wait_for(lambda: hot.up, "redis up")
    w = HotStateWriter(hot, Owned(web=(1, 2), api=(1, 2)))
    w.note("web", 60, st(1, 60))
    assert await w.flush() == 1

    own_redis.stop()
    w.note("web", 120, st(2, 120))
    w.note("api", 120, st(2, 120))
    assert await w.flush() == 0  # the call that finds Redis gone: both kept
    assert set(w.pending) == {"web", "api"}
    assert not hot.up
    w.note("web", 180, st(3, 180))  # a newer state replaces the pending one
    assert await w.flush() == 0  # degraded: not even tried
    assert w.pending["web"] == (180, st(3, 180))

    own_redis.start()  # empty
    await wait_for(lambda: hot.up, "redis up again")
    assert await w.flush() == 2
    assert w.pending == {}
    assert await hot.read_state(1, "web") == Snapshot(2, 180, st(3, 180))
    assert await hot.read_state(1, "api") == Snapshot(2, 120, st(2, 120))


async def test_run_flushes_every_interval_and_once_more_at_stop(
    own_redis: RedisServer, closing: list[object], wait_for: Callable[..., Any]
) -> None:
    hot = HotState(own_redis.url, "c1")
    closing.append(hot)
    assert await hot.probe()
    check = own_redis.client()
    key = "oceand:{c1:s1}:st:web"

    w = HotStateWriter(hot, Owned(web=(1, 2)), interval=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(w.run(stop))
    w.note("web", 60, st(1, 60))
    await wait_for(lambda: check.hget(key, "bucket_ts") == b"60", "written behind")
    stop.set()
    await asyncio.wait_for(task, 5)

    slow = HotStateWriter(hot, Owned(web=(1, 2)), interval=3600)  # only the flush at stop can write
    stop = asyncio.Event()
    task = asyncio.create_task(slow.run(stop))
    slow.note("web", 120, st(2, 120))
    stop.set()
    await asyncio.wait_for(task, 5)
    assert check.hget(key, "bucket_ts") == b"120"


def test_forget_drops_the_pending_state() -> None:
    hot = HotState("redis://127.0.0.1:1/0", "c1")
    w = HotStateWriter(hot, Owned(web=(1, 2)))
    w.note("web", 60, st(1, 60))
    w.forget("web")
    assert w.pending == {}
