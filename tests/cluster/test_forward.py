"""Forwarding samples to the owner (issue 14, HA.md §4.5 option A): the pure route/grouping tables, the
body checks, and the `Forwarder` against a real aiohttp receiver on loopback that answers as each test
scripts it (204, 409 not_owner, unreachable) — no database: the route table reads rows the test gives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web

from oceand.cluster.forward import (
    SENDS_PER_OWNER,
    TOKEN_HEADER,
    BadSamples,
    ForwardBuckets,
    Forwarder,
    Sample,
    check_token,
    group_by_shard,
    parse_samples,
    split_by_owner,
)
from oceand.cluster.routes import Route, RouteTable, build_routes, changed
from oceand.ingest import Ingestor, JobBuckets
from oceand.metrics import Metrics
from policies.document import JobDocument
from tests.marathon.conftest import until

# ---- pure tables -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "want"),
    [
        pytest.param([], [None, None, None], id="no leases"),
        pytest.param(
            [(0, "a", "h:1", 5), (2, "b", "h:2", 7)],
            [Route("a", "h:1", 5), None, Route("b", "h:2", 7)],
            id="two owners",
        ),
        pytest.param([(1, "a", None, 5)], [None, None, None], id="owner without an address: no route"),
        pytest.param([(9, "a", "h:1", 5)], [None, None, None], id="shard out of range ignored"),
        pytest.param([(1, None, "h:1", 5)], [None, None, None], id="free lease"),
    ],
)
def test_build_routes(rows: list[tuple[Any, ...]], want: list[Route | None]) -> None:
    assert build_routes(rows, 3) == want


A, B = Route("a", "h:1", 5), Route("b", "h:2", 6)


@pytest.mark.parametrize(
    ("old", "new", "want"),
    [
        pytest.param([A, B], [A, B], set(), id="same"),
        pytest.param([A, B], [A, None], {1}, id="lease gone"),
        pytest.param([A, B], [A, Route("b", "h:2", 7)], {1}, id="new epoch"),
        pytest.param([A, B], [B, A], {0, 1}, id="swapped"),
        pytest.param([A], [A, B], {0, 1}, id="other shard count: all"),
    ],
)
def test_changed(old: list[Route | None], new: list[Route | None], want: set[int]) -> None:
    assert changed(old, new) == want


S1: Sample = ("j1", "h1", 0, 100, 1.0)
S2: Sample = ("j2", "h1", 0, 100, 2.0)
S3: Sample = ("j3", "h2", 1, 100, 3.0)
SHARDS = {"j1": 0, "j2": 1, "j3": 0}


@pytest.mark.parametrize(
    ("samples", "held", "keep", "not_owner"),
    [
        pytest.param([S1, S2, S3], {0, 1}, [S1, S3, S2], [], id="all held"),
        pytest.param([S1, S2, S3], {0}, [S1, S3], [1], id="one shard elsewhere"),
        pytest.param([S1, S2, S3], set(), [], [0, 1], id="none held"),
        pytest.param([], {0}, [], [], id="empty"),
    ],
)
def test_group_and_split(
    samples: list[Sample], held: set[int], keep: list[Sample], not_owner: list[int]
) -> None:
    by_shard = group_by_shard(samples, SHARDS.__getitem__)
    assert split_by_owner(by_shard, held.__contains__) == (keep, not_owner)


@pytest.mark.parametrize(
    ("expected", "got", "want"),
    [
        pytest.param("s" * 16, "s" * 16, None, id="right"),
        pytest.param("s" * 16, None, "no_token", id="none"),
        pytest.param("s" * 16, "", "no_token", id="empty"),
        pytest.param("s" * 16, "t" * 16, "bad_token", id="wrong"),
        pytest.param(None, "s" * 16, "not_clustered", id="no cluster"),
    ],
)
def test_check_token(expected: str | None, got: str | None, want: str | None) -> None:
    assert check_token(expected, got) == want


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        pytest.param(b"nope", "not JSON", id="not json"),
        pytest.param(b"[]", "must be an object", id="a list"),
        pytest.param(b'{"samples": []}', "'from'", id="no from"),
        pytest.param(b'{"from": "a", "samples": {}}', "'samples'", id="samples not a list"),
        pytest.param(b'{"from": "a", "samples": [["j", "h", 0, 1]]}', "samples[0]", id="4 fields"),
        pytest.param(b'{"from": "a", "samples": [["j", "h", "0", 1, 2]]}', "samples[0]", id="rule a string"),
        pytest.param(b'{"from": "a", "samples": [["j", "h", 0, 1.5, 2]]}', "samples[0]", id="ts a float"),
        pytest.param(b'{"from": "a", "samples": [["j", "h", 0, 1, true]]}', "samples[0]", id="value a bool"),
    ],
)
def test_bad_bodies(body: bytes, fragment: str) -> None:
    with pytest.raises(BadSamples, match=fragment.replace("[", r"\[")):
        parse_samples(body)


def test_a_good_body() -> None:
    assert parse_samples(b'{"from": "a", "sent_at": 1, "samples": [["j", "h", 0, 10, 2]]}') == (
        "a",
        [("j", "h", 0, 10, 2.0)],
    )


def test_ingest_routes_a_remote_job_into_the_forwarder() -> None:
    """The hot loop, unchanged, hands a job owned elsewhere its samples through ForwardBuckets: already
    routed (rule index, instance, the derived cpu.used = 100 - cpu.idle), nothing in the local buckets."""
    doc = JobDocument.model_validate(
        {
            "job": "j1",
            "target": {"cluster": "lg", "app": "/a"},
            "period": 10,
            "min_instances": 1,
            "max_instances": 5,
            "rules": [{"name": "cpu", "type": "threshold", "metric": "cpu.used", "scale_out": {"above": 80}}],
        }
    )
    local = JobBuckets("j1", 10, 0.0, [("cpu", "avg")])
    local.start(1000)
    sent: list[tuple[int, Sample]] = []
    ing = Ingestor()
    ing.set_job(doc, ForwardBuckets(local, 7, lambda shard, s: sent.append((shard, s))))
    item = {
        "endpoint": "h1",
        "metric": "cpu.idle",
        "tags": "job=j1",
        "timestamp": 1003,
        "value": 30,
        "step": 10,
        "counterType": "GAUGE",
    }
    ing.ingest([item], 1005.0)
    assert sent == [(7, ("j1", "h1", 0, 1003, 70.0))]
    assert local.open == {}
    ing.swap_buckets([("j1", local)])  # the shard came here: the same series now lands locally
    ing.ingest([dict(item, timestamp=1004)], 1005.0)
    assert len(sent) == 1 and local.open[1000].values[0] == {"h1": (1004, 70.0)}


# ---- the forwarder against a scripted receiver ---------------------------------------------------------


class Receiver:
    """A daemon's /internal/v1/samples as a test double: records each body, answers `reply(samples)`."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.tokens: list[str | None] = []
        self.reply: Callable[[list[list[Any]]], web.Response] = lambda s: web.Response(status=204)
        self.runner: web.AppRunner | None = None
        self.addr = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.bodies.append(body)
        self.tokens.append(request.headers.get(TOKEN_HEADER))
        return self.reply(body["samples"])

    @property
    def samples(self) -> list[list[Any]]:
        return [s for b in self.bodies for s in b["samples"]]

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/internal/v1/samples", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        host, p = self.runner.addresses[0][:2]
        self.addr = f"{host}:{p}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class Rig:
    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.held: set[int] = set()
        self.local: list[Sample] = []
        self.metrics = Metrics()

        async def fetch(n: int) -> list[tuple[Any, ...]]:
            return list(self.rows)

        self.routes = RouteTable(fetch, 4)
        self.fwd = Forwarder(
            self.routes,
            me="me",
            token="t" * 16,
            shard_of=lambda job: int(job[-1]),  # job "jN" is in shard N
            held=self.held.__contains__,
            local=self.local.extend,
            metrics=self.metrics,
            flush=0.005,
            batch=3,
            hold=5.0,
            buffer=10,
        )

    def count(self, result: str) -> float:
        v = self.metrics.registry.get_sample_value("oceand_forward_samples_total", {"result": result})
        return v or 0.0


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = Rig()
    yield r
    await r.fwd.close()


@pytest.fixture
async def recv() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


def s(job: str, v: float = 1.0) -> Sample:
    return (job, "h1", 0, 100, v)


async def test_batches_by_destination_at_the_size_or_the_flush_window(rig: Rig, recv: Receiver) -> None:
    rig.rows = [(1, "b", recv.addr, 3)]
    await rig.routes.refresh()
    for i in range(4):  # batch = 3: one body at once, the fourth after the flush window
        rig.fwd.put(1, s("j1", i))
    await until(lambda: len(recv.samples) == 4, 2)
    assert [len(b["samples"]) for b in recv.bodies] == [3, 1]
    assert recv.bodies[0]["from"] == "me" and recv.tokens == ["t" * 16] * 2
    assert rig.count("sent") == 4 and rig.fwd.pending == 0
    assert rig.metrics.registry.get_sample_value("oceand_forward_batch_size_count") == 2


async def test_not_owner_is_rerouted_once_then_dropped(rig: Rig, recv: Receiver) -> None:
    other = Receiver()
    await other.start()
    try:
        rig.rows = [(1, "b", recv.addr, 3), (2, "b", recv.addr, 3)]
        await rig.routes.refresh()
        recv.reply = lambda ss: web.json_response({"not_owner": [1]}, status=409)
        rig.rows = [(1, "c", other.addr, 4), (2, "b", recv.addr, 3)]  # shard 1 moved to c meanwhile
        rig.fwd.put(1, s("j1"))
        rig.fwd.put(2, s("j2"))
        await rig.fwd.flush()
        assert [x[0] for x in other.samples] == ["j1"]  # resent to the new owner after the routes were read
        assert rig.count("sent") == 2 and rig.count("rerouted") == 1
        # the new owner says not_owner too: dropped after that one resend, counted
        other.reply = lambda ss: web.json_response({"not_owner": [1]}, status=409)
        rig.fwd.put(1, s("j1", 2))
        await rig.fwd.flush()
        assert rig.count("dropped_not_owner") == 1 and rig.fwd.pending == 0
    finally:
        await other.stop()


async def test_held_through_an_unreachable_owner_and_resent_on_a_new_epoch(rig: Rig, recv: Receiver) -> None:
    dead = Receiver()
    await dead.start()
    dead_addr = dead.addr
    await dead.stop()  # nothing listens there any more: connection refused
    rig.rows = [(1, "b", dead_addr, 3)]
    await rig.routes.refresh()
    rig.fwd.put(1, s("j1", 1))
    rig.fwd.put(1, s("j1", 2))
    await rig.fwd.flush()
    assert rig.count("held") == 2 and rig.fwd.pending == 2 and recv.samples == []
    rig.fwd.put(1, s("j1", 3))  # while held, new samples of the shard queue behind the held ones
    assert rig.fwd.pending == 3
    rig.rows = [(1, "c", recv.addr, 4)]  # the takeover: another owner, a new epoch
    await rig.routes.refresh()
    await rig.fwd.flush()
    assert [x[4] for x in recv.samples] == [1.0, 2.0, 3.0]
    assert rig.count("sent") == 3 and rig.fwd.pending == 0


async def test_held_samples_expire_and_the_buffer_is_bounded(rig: Rig) -> None:
    now = [0.0]
    rig.fwd.mono = lambda: now[0]
    await rig.routes.refresh()  # no route for any shard: a takeover under way
    for i in range(12):  # buffer = 10
        rig.fwd.put(1, s("j1", i))
    assert rig.fwd.pending == 10 and rig.count("dropped_overflow") == 2
    now[0] = 6.0  # past forward_hold (5 s)
    await rig.routes.refresh()
    assert rig.count("dropped_expired") == 10 and rig.fwd.pending == 0


async def test_a_shard_that_becomes_ours_gets_its_held_samples_locally(rig: Rig) -> None:
    await rig.routes.refresh()
    rig.fwd.put(2, s("j2", 5))
    assert rig.fwd.pending == 1
    rig.held.add(2)
    rig.rows = [(2, "me", "x:1", 9)]
    await rig.routes.refresh()
    assert rig.local == [s("j2", 5)] and rig.fwd.pending == 0


async def test_a_refused_batch_is_dropped_and_counted(rig: Rig, recv: Receiver) -> None:
    rig.rows = [(1, "b", recv.addr, 3)]
    await rig.routes.refresh()
    recv.reply = lambda ss: web.json_response({"error": "bad token"}, status=401)
    rig.fwd.put(1, s("j1"))
    await rig.fwd.flush()
    assert rig.count("dropped_refused") == 1 and rig.fwd.pending == 0


async def test_concurrent_refreshes_share_one_read() -> None:
    calls = 0
    gate = asyncio.Event()

    async def fetch(n: int) -> list[tuple[Any, ...]]:
        nonlocal calls
        calls += 1
        await gate.wait()
        return [(0, "a", "h:1", 1)]

    t = RouteTable(fetch, 2)
    tasks = [asyncio.create_task(t.refresh()) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*tasks)
    assert calls == 1 and t.get(0) == Route("a", "h:1", 1)


async def test_at_most_a_few_sends_per_owner_are_in_flight(rig: Rig) -> None:
    """A burst becomes many batches: they wait for one of SENDS_PER_OWNER slots instead of all being
    posted at once (which made a busy owner time them all out), and count in the buffer meanwhile."""
    gate = asyncio.Event()
    inside = [0, 0]  # now, most

    class Slow(Receiver):
        async def handle(self, request: web.Request) -> web.Response:
            inside[0] += 1
            inside[1] = max(inside)
            await gate.wait()
            inside[0] -= 1
            return web.Response(status=204)

    recv = Slow()
    await recv.start()
    try:
        rig.rows = [(1, "b", recv.addr, 3)]
        await rig.routes.refresh()
        rig.fwd.buffer = 1000
        for i in range(30):  # batch = 3: 10 batches
            rig.fwd.put(1, s("j1", i))
        await until(lambda: inside[0] == SENDS_PER_OWNER, 2)
        assert rig.fwd._slots[recv.addr].locked() and len(rig.fwd._tasks) == 10
        assert inside[1] == SENDS_PER_OWNER and rig.fwd.pending == 30
        gate.set()
        await rig.fwd.flush()
        assert rig.count("sent") == 30 and rig.fwd.pending == 0 and inside[1] == SENDS_PER_OWNER
    finally:
        await recv.stop()
