"""One Marathon write per decision through the daemon (issue 18 items 2 and 5): a timeout and its retry,
a reload of `[marathon.*]` during a slow PUT, a decision applied long after it was taken (a stalled store).

The daemon runs in this process with the real Marathon actuator against the in-process fake Marathon;
every PUT the fake took is counted by the decision and attempt headers the daemon sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from oceand.config import load_config
from oceand.daemon import Daemon
from tests.conftest import Client, DaemonFactory
from tests.fakes.marathon import FakeMarathon
from tests.marathon.conftest import until

JOB = "job.settle_web.xiaomi"
APP = "/settle/web"


def job_doc(job: str = JOB, app: str = APP) -> dict[str, Any]:
    """A job that acts (active) on `app` of cluster lg; the actuation tests and the chaos test share it."""
    return {
        "job": job,
        "target": {"cluster": "lg", "app": app},
        "mode": "active",
        "period": 10,
        "min_instances": 1,
        "max_instances": 10,
        "rules": [{"name": "cpu", "type": "threshold", "metric": "cpu.used", "scale_out": {"above": 80}}],
    }


def marathon(url: str, **over: str) -> dict[str, Any]:
    m = {
        "urls": [url],
        "timeout": "0.5s",
        "connect_timeout": "0.5s",
        "apply_timeout": "1s",
        "settle_grace": "3s",  # the slow PUTs here land 1.5 s after they are sent
        "clock_skew": "0.5s",
    }
    m.update(over)
    return {"lg": m}


def puts(fake: FakeMarathon) -> list[tuple[str, str, int]]:
    """(decision, attempt, instances) of every PUT that reached the fake."""
    return [
        (r.headers.get("X-Oceand-Decision", ""), r.headers.get("X-Oceand-Attempt", ""), int(r.body[13:-1]))
        for r in fake.requests
        if r.method == "PUT"
    ]


@pytest.fixture
async def fake() -> AsyncIterator[FakeMarathon]:
    f = FakeMarathon(heartbeat=0.5, deploy_time=0.05)
    f.add_app(APP, 2)
    await f.start()
    yield f
    await f.stop()


async def decision(c: Client, did: int) -> dict[str, Any]:
    _, body = await c.call("GET", f"/api/v1/jobs/{JOB}/decisions")
    return next(d for d in body["decisions"] if d["id"] == did)


async def settled(c: Client, did: int, timeout: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while (d := await decision(c, did))["status"] == "pending":
            await asyncio.sleep(0.05)
    return d


async def ready(d: Daemon, c: Client) -> None:
    assert (await c.call("POST", "/api/v1/jobs", job_doc()))[0] == 201
    await until(lambda: d.engine.status(JOB)["app_known"], 5)


async def test_a_timed_out_put_that_lands_late_is_not_sent_again_by_the_retry(
    start_daemon: DaemonFactory, fake: FakeMarathon
) -> None:
    """The PUT takes 1.5 s to land, the client gives up after 0.5 s and the apply after 1 s: the
    decision stays pending, and its retry finds the write landed instead of sending it again."""
    fake.set_put_delay(1.5)
    d, c = await start_daemon(marathon=marathon(fake.url))
    await ready(d, c)
    status, body = await c.call("POST", f"/api/v1/jobs/{JOB}/scale", {"instances": 3})
    assert status == 200 and body["decision"]["status"] == "pending", body["decision"]["result"]
    assert body["decision"]["result"]["unknown"] is True
    did = body["decision"]["id"]
    done = await settled(c, did)
    assert done["status"] == "applied" and done["result"]["landed"] == "lastScalingAt"
    assert done["result"]["attempts"] == 1
    assert puts(fake) == [(str(did), "1", 3)]
    assert fake.apps[APP].instances == 3
    rows = await d.store.attempts(did)
    assert [(a["attempt"], a["status"], a["detail"]["evidence"]) for a in rows] == [
        (1, "applied", "lastScalingAt")
    ]


async def test_a_reload_of_the_marathon_table_during_a_slow_put_sends_it_once(
    tmp_path: Path, fake: FakeMarathon
) -> None:
    """SIGHUP with a changed `[marathon.lg]` closes the cluster the PUT is in flight on; the write is
    settled, not sent again on the new cluster. (The apply on the closed cluster cannot settle its write
    there and gives up at apply_timeout: 4 s here instead of the default 30 s, the test's wait.)"""
    fake.set_put_delay(1.0)
    conf = tmp_path / "oceand.toml"
    base = (
        '[server]\nlisten = "127.0.0.1:0"\n[store]\nurl = "sqlite:///oceand.db"\n'
        f'[marathon.lg]\nurls = ["{fake.url}"]\nconnect_timeout = "0.5s"\nsettle_grace = "1s"\n'
        'apply_timeout = "4s"\n'
    )
    conf.write_text(base + 'timeout = "3s"\n')
    d = Daemon(load_config(conf))
    await d.start()
    try:
        import aiohttp

        async with aiohttp.ClientSession() as s:
            assert d.url is not None
            c = Client(s, d.url)
            await ready(d, c)
            call = asyncio.ensure_future(c.call("POST", f"/api/v1/jobs/{JOB}/scale", {"instances": 4}))
            await until(lambda: any(r.method == "PUT" for r in fake.requests), 5)
            conf.write_text(base + 'timeout = "2s"\n')
            assert await d.reload()
            _, body = await call
            did = body["decision"]["id"]
            done = await settled(c, did)
            assert done["status"] == "applied"
            await d.stop()  # whatever the daemon would still send, it has sent (or never will)
            assert puts(fake) == [(str(did), "1", 4)]
    finally:
        await d.stop()


class StallingCommits:
    """Holds the store's commits while `stalled` is clear (a store that stops answering)."""

    def __init__(self, d: Daemon) -> None:
        self.stalled = asyncio.Event()
        self.stalled.set()
        self.held = asyncio.Event()
        commit = d.store.commit

        async def held_commit(*args: Any) -> Any:
            if not self.stalled.is_set():
                self.held.set()
                await self.stalled.wait()
            return await commit(*args)

        d.store.commit = held_commit  # type: ignore[method-assign]


class Clock:
    def __init__(self) -> None:
        import time

        self.t = time.time()

    def __call__(self) -> float:
        return self.t


Meanwhile = Callable[[FakeMarathon], Awaitable[None] | None]


@pytest.mark.parametrize(
    ("meanwhile", "status", "sent", "note"),
    [
        pytest.param(None, "applied", [3], None, id="app unchanged: re-read, then sent"),
        pytest.param(
            lambda f: f.scale_now(APP, 5), "failed", [], "stale", id="app scaled meanwhile: stale, not sent"
        ),
        pytest.param(
            lambda f: f.scale_now(APP, 3),
            "applied",
            [],
            "already_applied",
            id="count already there: not sent",
        ),
    ],
)
async def test_a_decision_applied_19s_after_it_was_taken_reads_the_app_first(
    start_daemon: DaemonFactory,
    fake: FakeMarathon,
    meanwhile: Meanwhile | None,
    status: str,
    sent: list[int],
    note: str | None,
) -> None:
    clock = Clock()
    d, c = await start_daemon(marathon=marathon(fake.url, apply_timeout="5s"), clock=clock)
    await ready(d, c)
    stall = StallingCommits(d)
    stall.stalled.clear()
    call = asyncio.ensure_future(c.call("POST", f"/api/v1/jobs/{JOB}/scale", {"instances": 3}))
    await asyncio.wait_for(stall.held.wait(), 5)
    clock.t += 19  # the store answers 19 s later
    if meanwhile is not None:
        meanwhile(fake)
    stall.stalled.set()
    _, body = await call
    assert body["decision"]["status"] == status, body["decision"]
    assert [n for _, _, n in puts(fake)] == sent
    if note is not None:
        assert note in body["decision"]["result"]
    samples = d.metrics.render().decode()
    assert 'oceand_stale_decisions_total{result="reread"} 1.0' in samples


async def test_a_newer_decision_waits_for_the_unknown_write_it_supersedes(
    start_daemon: DaemonFactory, fake: FakeMarathon
) -> None:
    """Decision A's PUT times out (it lands 1.5 s later); decision B, taken on the old count before A's
    retry, supersedes A. B is not sent before A's write is settled: it landed, so A is applied, and B,
    decided on a count the app no longer has, is not sent."""
    fake.set_put_delay(1.5)
    d, c = await start_daemon(marathon=marathon(fake.url))
    await ready(d, c)
    _, a = await c.call("POST", f"/api/v1/jobs/{JOB}/scale", {"instances": 3})
    assert a["decision"]["status"] == "pending" and a["decision"]["result"]["unknown"]
    _, b = await c.call("POST", f"/api/v1/jobs/{JOB}/scale", {"instances": 5})
    assert b["decision"]["current"] == 2
    # pending when settling A took longer than B's apply_timeout (a loaded machine): B's retry ends it
    second = await settled(c, b["decision"]["id"])
    assert second["status"] == "failed" and "stale" in second["result"], second
    first = await decision(c, a["decision"]["id"])
    assert first["status"] == "applied" and first["result"]["landed"] == "lastScalingAt"
    assert first["result"]["superseded_by"] == b["decision"]["id"]
    assert [n for _, _, n in puts(fake)] == [3]
    assert fake.apps[APP].instances == 3
    samples = d.metrics.render().decode()
    assert 'oceand_actuation_settles_total{outcome="landed"} 1.0' in samples


async def test_a_restart_settles_a_pending_write_of_a_superseded_decision(
    start_daemon: DaemonFactory, fake: FakeMarathon
) -> None:
    """A superseded decision's write of unknown outcome was kept only in the worker's memory when the
    daemon stopped: the store has the decision `superseded` and its write `pending` (it had landed).
    The restarted daemon reads every pending write, not only pending decisions: the write is adopted
    (the decision applied), and nothing is sent again."""
    d, c = await start_daemon(marathon=marathon(fake.url))
    await ready(d, c)
    _, body = await c.call("POST", f"/api/v1/jobs/{JOB}/scale", {"instances": 3})
    assert body["decision"]["status"] == "applied", body
    did = body["decision"]["id"]
    (write,) = await d.store.attempts(did)
    await d.store.record_attempt(did, JOB, dict(write, status="pending"))
    gone = dict(body["decision"]["result"], status="superseded", superseded_by=did + 1)
    await d.store.record_outcome(did, JOB, gone)
    await d.stop()
    d, c = await start_daemon(marathon=marathon(fake.url))
    async with asyncio.timeout(10):
        while (await d.store.attempts(did))[0]["status"] == "pending":
            await asyncio.sleep(0.05)
    assert (await d.store.attempts(did))[0]["status"] == "applied"
    assert (await decision(c, did))["status"] == "applied"
    assert [n for _, _, n in puts(fake)] == [3]
