"""The app's start-up time learned from Marathon (PRODUCT §14, issue 17): launch → healthy of its recent
tasks, p90; read from the tasks (`stagedAt`, `startedAt`, `healthCheckResults[].firstSuccess`) and from the
event stream; the predictive rule's lead when its document gives no `startup`; shown in status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from actuators.marathon.client import MarathonClient
from actuators.marathon.model import AppState, Task
from actuators.marathon.startup import RECENT_TASKS, StartupTimes, task_startup
from actuators.marathon.watcher import ClusterWatcher
from tests.conftest import DaemonFactory
from tests.fakes.marathon import FakeMarathon
from tests.marathon.conftest import config, until
from tests.marathon.test_actuation import marathon

T = "2026-12-02T09:00:00.000Z"


def task(d: dict[str, Any]) -> Task:
    return Task.from_marathon({"id": "a.1", "appId": "/a", "host": "h", **d})


def hc(*first: str | None, alive: bool = True) -> list[dict[str, Any]]:
    return [{"alive": alive, "consecutiveFailures": 0, "firstSuccess": f, "instanceId": "a"} for f in first]


@pytest.mark.parametrize(
    ("fields", "health_checks", "seconds"),
    [
        pytest.param({"stagedAt": T, "startedAt": "2026-12-02T09:00:07.500Z"}, False, 7.5,
                     id="no health checks: staged to running"),
        pytest.param({"stagedAt": T, "startedAt": "2026-12-02T09:00:05.000Z",
                      "healthCheckResults": hc("2026-12-02T09:00:42.000Z")}, True, 42.0,
                     id="health checks: staged to first success"),
        pytest.param({"stagedAt": T, "startedAt": "2026-12-02T09:00:05.000Z",
                      "healthCheckResults": hc("2026-12-02T09:00:20.000Z", "2026-12-02T09:01:00.000Z")},
                     True, 60.0, id="two health checks: the later first success"),
        pytest.param({"stagedAt": T, "startedAt": "2026-12-02T09:00:05.000Z",
                      "healthCheckResults": hc("2026-12-02T09:00:20.000Z", None)}, True, None,
                     id="one check has not succeeded yet: not known"),
        pytest.param({"stagedAt": T, "startedAt": "2026-12-02T09:00:05.000Z"}, True, None,
                     id="health checks, no result yet: not known"),
        pytest.param({"startedAt": "2026-12-02T09:00:05.000Z"}, False, None, id="no stagedAt: not known"),
        pytest.param({"stagedAt": T}, False, None, id="still staging: not known"),
        pytest.param({"stagedAt": T, "startedAt": "2026-12-02T08:59:00.000Z"}, False, None,
                     id="running before staged: a clock error, ignored"),
        pytest.param({"stagedAt": "yesterday", "startedAt": T}, False, None, id="unreadable time: ignored"),
    ],
)  # fmt: skip
def test_task_startup(fields: dict[str, Any], health_checks: bool, seconds: float | None) -> None:
    assert task_startup(task(fields), health_checks) == seconds


def timed(i: int, staged: float, seconds: float) -> Task:
    return Task(id=f"a.{i}", app_id="/a", host="h", staged_at=staged, healthy_at=staged + seconds)


def test_p90_of_the_most_recent_tasks() -> None:
    times = StartupTimes()
    assert times.p90("/a") is None
    # 20 tasks launched one a minute taking 10..29 s; p90 interpolates like numpy (27.1)
    for i in range(RECENT_TASKS):
        assert times.observe("/a", timed(i, 1000.0 + 60 * i, 10.0 + i), True)
    assert times.p90("/a") == pytest.approx(27.1)
    assert not times.observe("/a", timed(3, 1180.0, 13.0), True)  # a task is learned once
    assert not times.observe("/a", timed(99, 10.0, 500.0), True)  # launched before all kept: not recent
    # newer tasks push the oldest out: ten new 100-second start-ups
    for i in range(RECENT_TASKS, RECENT_TASKS + 10):
        times.observe("/a", timed(i, 1000.0 + 60 * i, 100.0), True)
    assert times.samples("/a") == RECENT_TASKS
    assert times.p90("/a") == pytest.approx(100.0)
    times.forget("/a")
    assert times.p90("/a") is None


@pytest.fixture
async def slow_fake() -> AsyncIterator[FakeMarathon]:
    """Tasks take 0.2 s to run and 0.3 s more to pass their health check."""
    f = FakeMarathon(heartbeat=0.5, deploy_time=0.2, health_delay=0.3)
    await f.start()
    yield f
    await f.stop()


async def test_the_watcher_learns_launch_to_healthy_from_events_and_from_a_read(
    slow_fake: FakeMarathon,
) -> None:
    fake = slow_fake
    fake.add_app("/hc", 1, health_checks=True)  # running since it was added: a start-up time of 0
    client = MarathonClient(config(fake.url))
    w = ClusterWatcher(client, on_change=lambda _: None, backoff_initial=0.005, backoff_max=0.02)
    stop = asyncio.Event()
    run = asyncio.create_task(w.run(stop))
    try:
        w.watch("/hc")
        await until(lambda: w.state == "connected" and w.app("/hc") is not None)
        assert w.startup.p90("/hc") == 0.0
        await client.scale("/hc", 3)
        await until(lambda: (w.app("/hc") or AppState("/hc", 0)).ready == 3, 5)
        learned = w.startup.p90("/hc")
        assert learned is not None and 0.5 <= learned < 5.0  # staged → running 0.2 s → healthy 0.3 s later
        assert w.startup.samples("/hc") == 3
        # a watcher started now reads the same from the tasks' stagedAt and firstSuccess
        other = ClusterWatcher(client, on_change=lambda _: None)
        other.watch("/hc")
        await other.refresh("/hc")
        assert other.startup.p90("/hc") == pytest.approx(learned, abs=0.002)
    finally:
        stop.set()
        await asyncio.wait_for(run, 2)
        await client.close()


JOB = "job.startup_web.xiaomi"


async def test_the_daemon_passes_the_learned_startup_to_a_predictive_rule_and_shows_it(
    start_daemon: DaemonFactory, slow_fake: FakeMarathon
) -> None:
    fake = slow_fake
    fake.add_app("/web", 1, health_checks=True)
    doc = {
        "job": JOB, "target": {"cluster": "lg", "app": "/web"}, "mode": "active", "period": 10,
        "min_instances": 1, "max_instances": 10, "instance_tag": "i",
        "rules": [{"name": "q", "type": "predictive", "metric": "proc.qps", "target": 100}],
    }  # fmt: skip
    d, c = await start_daemon(marathon=marathon(fake.url))
    assert (await c.call("POST", "/api/v1/jobs", doc))[0] == 201
    await until(lambda: d.engine.status(JOB)["app_known"], 5)
    fake.scale_now("/web", 3)
    await until(lambda: d.engine.status(JOB)["ready"] == 3, 5)
    _, st = await c.call("GET", f"/api/v1/jobs/{JOB}/status")
    learned = st["startup"]
    assert learned is not None and learned >= 0.5
    assert (st["rules"]["q"]["lead"], st["rules"]["q"]["lead_from"]) == (learned, "marathon")
    # a bucket with 3 × 300 qps (it closes when the 3 running tasks reported): the rule (no history yet: a target rule) scales out with that lead
    now = d.engine.clock()
    ts = int(now // 10 * 10)
    items = [
        {"endpoint": fake.apps["/web"].task_host, "metric": "proc.qps", "timestamp": ts, "step": 10,
         "value": 300.0, "counterType": "GAUGE", "tags": f"job={JOB},i={i}"}
        for i in range(3)
    ]  # fmt: skip
    assert (await c.call("POST", "/v1/push", items))[0] == 200

    async def decided() -> list[dict[str, Any]]:
        return (await c.call("GET", f"/api/v1/jobs/{JOB}/decisions"))[1]["decisions"]  # type: ignore[no-any-return]

    async with asyncio.timeout(20):
        while not (got := await decided()):
            await asyncio.sleep(0.1)
    inputs = got[0]["proposals"][0]["inputs"]
    assert got[0]["reasons"][0] == "ScaleOut"
    assert inputs["lead"] == learned
    # the document's startup overrides
    doc["rules"][0]["startup"] = "45s"
    assert (await c.call("PUT", f"/api/v1/jobs/{JOB}", doc))[0] in (200, 201)
    _, st = await c.call("GET", f"/api/v1/jobs/{JOB}/status")
    assert (st["rules"]["q"]["lead"], st["rules"]["q"]["lead_from"]) == (45.0, "document")
