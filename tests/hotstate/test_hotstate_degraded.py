"""Redis going away and coming back (HA.md §6.9), with a redis-server of the test's own that it kills
(SIGKILL, nothing saved) and starts again on the same port; pub/sub wake-ups and the reconnecting
subscriber; one try per call (no retries) against a Redis that accepts and never answers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import pytest

from oceand.cluster.hotstate import Event, HotState, StateWrite
from oceand.metrics import Metrics

from .conftest import RedisServer

S1: dict[str, Any] = {"count": 3, "streaks": {"up": 1}, "last_bucket": 60}
STALL = ("DEBUG", "SLEEP", "1")


def writes(h: HotState, result: str) -> float:
    assert h.metrics is not None
    return h.metrics.registry.get_sample_value("oceand_hotstate_write_total", {"result": result}) or 0.0


async def started(h: HotState, closing: list[object]) -> HotState:
    closing.append(h)
    await h.start()
    return h


async def test_redis_killed_mid_run_degrades_and_recovers(
    own_redis: RedisServer, closing: list[object], wait_for: Callable[..., Any]
) -> None:
    h = await started(HotState(own_redis.url, "c1", metrics=Metrics(), probe_interval=0.05), closing)
    await wait_for(lambda: h.status() == {"redis": "ok"}, "redis ok")
    assert await h.write_state(1, 1, "web", 60, S1) == "ok"

    own_redis.stop()
    assert await h.write_state(1, 1, "web", 120, {**S1, "count": 4}) == "error"  # the call that finds out
    assert h.status()["redis"] == "degraded"
    assert await h.write_state(1, 1, "web", 180, {**S1, "count": 5}) == "skipped"  # not even tried
    assert await h.read_state(1, "web") is None
    assert await h.load_state(1, "web", {"count": 2, "last_bucket": 0}) == (
        "store",
        {"count": 2, "last_bucket": 0},
    )
    assert await h.write_handoff(1, 1, {}) is False
    assert await h.take_handoff(1, 2) == {}
    assert await h.publish(Event("joined", member="x")) is False
    assert await h.write_states([StateWrite(1, 1, "web", 240, {**S1, "count": 6})]) == ["skipped"]
    assert writes(h, "error") == 1 and writes(h, "skipped") == 2
    assert h.metrics is not None and h.metrics.registry.get_sample_value("oceand_redis_up") == 0

    own_redis.start()  # empty: no persistence
    await wait_for(lambda: h.status() == {"redis": "ok"}, "redis ok again")
    assert h.metrics.registry.get_sample_value("oceand_redis_up") == 1
    # the state written before the restart is gone; the same state is sent again, not skipped as unchanged
    assert await h.write_state(1, 1, "web", 60, S1) == "ok"
    snap = await h.read_state(1, "web")
    assert snap is not None and snap.state == S1


async def test_a_quick_restart_is_noticed_and_the_lost_state_sent_again(
    own_redis: RedisServer, closing: list[object]
) -> None:
    """A restart between two calls: the first call after it fails on the dead pooled connection (no
    retry), the next probe answers with a new run id; either way nothing counts as written any more, so
    the unchanged state, lost by the restart, goes out again."""
    h = HotState(own_redis.url, "c1", metrics=Metrics())
    closing.append(h)
    assert await h.probe()
    assert await h.write_state(1, 1, "web", 60, S1) == "ok"
    own_redis.stop()
    own_redis.start()
    assert not await h.probe()  # the pooled connection died with the server: one try, failed
    assert await h.probe()
    assert await h.write_state(1, 1, "web", 60, S1) == "ok"
    assert own_redis.client().hget("oceand:{c1:s1}:st:web", "epoch") == b"1"


async def test_after_a_restart_one_failed_call_drops_every_idle_pooled_connection(
    own_redis: RedisServer, closing: list[object]
) -> None:
    """A restart leaves every idle pooled connection dead. Reads in flight at once (a takeover reads up to
    16 snapshots together) opened several; the first call that meets a dead one drops them all, so once
    the probe answers again the next reads run on fresh connections instead of each failing once more."""
    h = HotState(own_redis.url, "c1", metrics=Metrics())
    closing.append(h)
    assert await h.probe()
    assert await h.write_state(1, 1, "web", 60, S1) == "ok"
    await asyncio.gather(*(h.read_state(1, "web") for _ in range(8)))  # 8 connections in the pool
    own_redis.stop()
    own_redis.start()
    assert not await h.probe()  # the call that meets a dead connection
    assert await h.probe()  # a fresh one
    assert await h.write_state(1, 1, "web", 60, S1) == "ok"
    snaps = await asyncio.gather(*(h.read_state(1, "web") for _ in range(8)))
    assert all(s is not None and s.state == S1 for s in snaps), snaps
    assert h.up


@pytest.mark.parametrize(
    "stall",
    [
        pytest.param(("DEBUG", "SLEEP", "1.5"), id="DEBUG SLEEP (everything stalls)"),
        pytest.param(("CLIENT", "PAUSE", "1500", "WRITE"), id="CLIENT PAUSE WRITE (writes stall)"),
    ],
)
async def test_a_stalled_redis_times_out_within_the_budget_and_recovers(
    own_redis: RedisServer, closing: list[object], wait_for: Callable[..., Any], stall: tuple[str, ...]
) -> None:
    h = await started(
        HotState(own_redis.url, "c1", socket_timeout=0.2, metrics=Metrics(), probe_interval=0.05), closing
    )
    await wait_for(lambda: h.status() == {"redis": "ok"}, "redis ok")
    staller = asyncio.create_task(asyncio.to_thread(own_redis.client(timeout=10).execute_command, *stall))
    await asyncio.sleep(0.1)  # the stall command reaches Redis first
    assert await h.write_state(1, 1, "web", 60, S1) == "error"
    assert writes(h, "error") == 1
    await staller  # DEBUG SLEEP: slept; CLIENT PAUSE: answered at once, the pause lasts
    own_redis.client().execute_command("CLIENT", "UNPAUSE")
    await wait_for(lambda: h.up, "the probe gets an answer after the stall")
    assert await h.write_state(1, 1, "web", 120, {**S1, "count": 9}) == "ok"
    snap = await h.read_state(1, "web")
    assert snap is not None and snap.state["count"] == 9


async def test_a_timed_out_batch_gives_its_connection_back(
    own_redis: RedisServer, closing: list[object]
) -> None:
    """A pipeline cut off by socket_timeout releases its connection to the pool at once (not at garbage
    collection, with an "Unclosed Pipeline client" warning, holding a connection meanwhile)."""
    h = HotState(own_redis.url, "c1", socket_timeout=0.2, metrics=Metrics())
    closing.append(h)
    assert await h.probe()
    staller = asyncio.create_task(asyncio.to_thread(own_redis.client(timeout=10).execute_command, *STALL))
    await asyncio.sleep(0.1)  # the stall command reaches Redis first
    writes_ = [StateWrite(1, 1, f"j{i}", 60, S1) for i in range(3)]
    assert await h.write_states(writes_) == ["error"] * 3
    pool = h.client.connection_pool
    assert pool._in_use_connections == set()  # type: ignore[attr-defined]
    await staller


async def test_starting_without_redis_is_degraded_not_failed(
    own_redis: RedisServer, closing: list[object], wait_for: Callable[..., Any]
) -> None:
    own_redis.stop()
    h = await started(HotState(own_redis.url, "c1", metrics=Metrics(), probe_interval=0.05), closing)
    assert h.status()["redis"] == "degraded"
    assert "redis_reason" in h.status()
    assert await h.write_state(1, 1, "web", 60, S1) == "skipped"
    own_redis.start()
    await wait_for(lambda: h.status() == {"redis": "ok"}, "redis ok once it is there")
    assert await h.write_state(1, 1, "web", 60, S1) == "ok"


async def test_wake_ups_are_delivered_and_the_subscriber_reconnects(
    own_redis: RedisServer, closing: list[object], wait_for: Callable[..., Any]
) -> None:
    got: list[Event | None] = []
    receiver = HotState(own_redis.url, "c1", metrics=Metrics(), probe_interval=0.05)
    receiver.on_event.append(got.append)
    await started(receiver, closing)
    sender = await started(HotState(own_redis.url, "c1", probe_interval=0.05), closing)
    other_cluster = await started(HotState(own_redis.url, "c2", probe_interval=0.05), closing)
    await wait_for(lambda: receiver.subscribed and got == [None], "subscribed (one resync wake-up)")

    assert await other_cluster.publish(Event("joined", member="elsewhere"))  # another cluster's channel
    assert await sender.publish(Event("released", shard=3, epoch=7))
    await wait_for(lambda: len(got) == 2, "the wake-up")
    assert got[1] == Event("released", shard=3, epoch=7)
    await sender.client.publish("oceand:{c1}:events", b"nonsense")  # not understood: counted, ignored
    assert await sender.publish(Event("acquired", shard=3, epoch=8))
    await wait_for(lambda: len(got) == 3, "the next wake-up")
    assert got[2] == Event("acquired", shard=3, epoch=8)
    m = receiver.metrics
    assert m is not None
    assert m.registry.get_sample_value("oceand_redis_events_total", {"kind": "invalid"}) == 1

    own_redis.stop()
    await wait_for(lambda: not receiver.subscribed, "subscriber saw the connection drop")
    assert receiver.status()["redis"] == "degraded"
    own_redis.start()
    await wait_for(lambda: receiver.subscribed and len(got) == 4, "resubscribed after the restart")
    assert got[3] is None  # a resync wake-up: events sent while away are lost, the receiver re-reads
    await wait_for(lambda: sender.up, "the sender sees Redis again")
    assert await sender.publish(Event("leaving", member="h:1:ab"))
    await wait_for(lambda: len(got) == 5, "a wake-up after the restart")
    assert got[4] == Event("leaving", member="h:1:ab")
    assert m.registry.get_sample_value("oceand_redis_resubscribes_total") == 2


async def test_a_receiver_that_raises_does_not_stop_the_subscriber(
    own_redis: RedisServer, closing: list[object], wait_for: Callable[..., Any]
) -> None:
    got: list[Event | None] = []

    def broken(e: Event | None) -> None:
        if e is not None:
            raise RuntimeError("receiver bug")

    h = HotState(own_redis.url, "c1", probe_interval=0.05)
    h.on_event += [broken, got.append]
    await started(h, closing)
    await wait_for(lambda: h.subscribed, "subscribed")
    for shard in (1, 2):
        assert await h.publish(Event("acquired", shard=shard, epoch=1))
    await wait_for(lambda: len(got) == 3, "both wake-ups after the failing receiver")


class Stalled:
    """A Redis that completes the connection handshake (HELLO, CLIENT SETINFO) and then never answers
    (a stalled Redis, as under DEBUG SLEEP), or with `drop` closes the connection instead (a Redis that
    dies under the call); records every other command it receives."""

    def __init__(self, drop: bool) -> None:
        self.drop = drop
        self.commands: list[str] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while line := await reader.readline():
                assert line.startswith(b"*"), line
                args = []
                for _ in range(int(line[1:])):
                    size = int((await reader.readline())[1:])
                    args.append((await reader.readexactly(size + 2))[:-2])
                name = args[0].decode().upper()
                if name == "HELLO":
                    writer.write(b"%1\r\n$5\r\nproto\r\n:3\r\n")
                elif name == "CLIENT":
                    writer.write(b"+OK\r\n")
                else:
                    self.commands.append(name)
                    if self.drop:
                        break
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        writer.close()


@pytest.mark.parametrize(
    "drop", [pytest.param(False, id="stalled"), pytest.param(True, id="connection dropped")]
)
async def test_one_try_per_call(closing: list[object], drop: bool) -> None:
    """No retries: a write to a Redis that stalls or drops the connection is sent once and answered
    `error` within the timeout. With retries (redis-py 8.1's `Redis(host=...)` default is 10) the
    dropped connection would be reopened and the write sent again."""
    hole = Stalled(drop)
    server = await asyncio.start_server(hole.handle, "127.0.0.1", 0, family=socket.AF_INET)
    port = server.sockets[0].getsockname()[1]
    try:
        h = HotState(f"redis://127.0.0.1:{port}/0", "c1", socket_timeout=0.2, metrics=Metrics())
        closing.append(h)
        h.up = True  # as if the last probe had answered
        assert await h.write_state(1, 1, "web", 60, S1) == "error"
        assert hole.commands == ["EVALSHA"]
        assert hole.connections == 1
        assert h.status()["redis"] == "degraded"
        assert not await h.probe()  # also one try
        assert hole.commands == ["EVALSHA", "INFO"]
        h.up = True
        batch = [StateWrite(1, 1, "a", 60, S1), StateWrite(2, 1, "b", 60, S1)]
        assert await h.write_states(batch) == ["error", "error"]
        assert hole.commands == ["EVALSHA", "INFO", "SCRIPT"]  # SCRIPT EXISTS before the pipeline: once
    finally:
        server.close()
