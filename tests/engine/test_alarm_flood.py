"""Alarm floods (issue 18 item 4): "30k alarms for an app Marathon does not know each cost a Marathon GET and
queue for hours (a manual scale of that job hangs > 10 s)". The daemon in this process, a controlled clock,
the in-process fake Marathon counting its GETs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from actuators.marathon import RecordingActuator
from oceand.daemon import Daemon
from oceand.engine import UNKNOWN_APP_TTL, JobRuntime
from policies.types import AlarmEvent
from tests.conftest import DaemonFactory
from tests.fakes.marathon import FakeMarathon

JOB = "job.ghost_cop.xiaomi"
T0 = 1_800_000_000.0
FLOOD = 30_000


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def doc(app: str, **over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "job": JOB,
        "target": {"cluster": "lg", "app": app},
        "mode": "active",
        "min_instances": 1,
        "max_instances": 10,
        "rules": [
            {"name": "falcon", "type": "alarm", "match": {"stra_id": 1042}, "step": 1},
            {"name": "other", "type": "alarm", "match": {"stra_id": 7}, "step": 1},
        ],
        "behavior": {"scale_out": {"cooldown": 0}, "scale_in": {"cooldown": 0}},
    }
    d.update(over)
    return d


def event(now: float, stra_id: int = 1042, endpoint: str = "h1", status: str = "PROBLEM") -> AlarmEvent:
    return AlarmEvent(now, endpoint, "cpu.idle", status, 1, 0, "", 1, 0, stra_id, 3.0, {})  # type: ignore[arg-type]


def metric(d: Daemon, name: str, **labels: str) -> float:
    return d.metrics.registry.get_sample_value(name, labels) or 0.0


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.005)


def idle(rt: JobRuntime) -> bool:
    return not rt.alarms and not rt.events and not rt.wake.is_set()


@pytest.fixture
async def fake() -> AsyncIterator[FakeMarathon]:
    f = FakeMarathon(heartbeat=0.5, deploy_time=0.01)
    await f.start()
    f.add_app("/web", 2)
    yield f
    await f.stop()


def gets(fake: FakeMarathon, app: str) -> int:
    return sum(1 for r in fake.requests if r.method == "GET" and r.path == f"/v2/apps{app}")


async def start(start_daemon: DaemonFactory, fake: FakeMarathon, clock: Clock, app: str) -> Daemon:
    marathon = {"lg": {"urls": [fake.url], "timeout": "1s", "connect_timeout": "0.5s"}}
    d, c = await start_daemon(clock=clock, marathon=marathon)
    assert (await c.call("POST", "/api/v1/jobs", doc(app)))[0] == 201
    return d  # type: ignore[no-any-return]


async def test_an_alarm_flood_for_an_unknown_app_costs_one_get_per_ttl(
    start_daemon: DaemonFactory, fake: FakeMarathon
) -> None:
    clock = Clock(T0)
    d = await start(start_daemon, fake, clock, "/ghost")
    rt = d.engine.jobs[JOB]
    await until(lambda: gets(fake, "/ghost") >= 1 and idle(rt))  # the watcher's first read: 404
    before = gets(fake, "/ghost")
    for i in range(FLOOD):
        assert d.engine.alarm(event(T0, endpoint=f"h{i % 50}")) == [JOB]
        assert len(rt.alarms) == 1  # bounded: one queued alarm per rule
        if i % 1000 == 0:
            await asyncio.sleep(0)  # let the worker run now and then, as requests would
    await until(lambda: idle(rt))
    assert gets(fake, "/ghost") - before <= 1
    dropped = metric(d, "oceand_alarm_events_dropped_total", reason="coalesced") + metric(
        d, "oceand_alarm_events_dropped_total", reason="app_unknown"
    )
    assert dropped == FLOOD  # each alarm either replaced by a newer one or skipped: none evaluated
    assert metric(d, "oceand_alarm_events_dropped_total", reason="coalesced") >= FLOOD - 100

    clock.t = T0 + UNKNOWN_APP_TTL / 2  # still cached: no GET
    d.engine.alarm(event(clock.t))
    await until(lambda: idle(rt))
    assert gets(fake, "/ghost") - before <= 1
    clock.t = T0 + UNKNOWN_APP_TTL + 1  # expired: asked once more
    d.engine.alarm(event(clock.t))
    await until(lambda: idle(rt))
    assert gets(fake, "/ghost") - before <= 2


async def test_a_manual_scale_of_that_job_does_not_wait_behind_the_flood(
    start_daemon: DaemonFactory, fake: FakeMarathon
) -> None:
    clock = Clock(T0)
    d = await start(start_daemon, fake, clock, "/ghost")
    assert d.url is not None
    for i in range(FLOOD):
        d.engine.alarm(event(T0, endpoint=f"h{i % 50}"))
    # it reads the app itself (the alarms' negative cache does not apply) and says it cannot be read
    with pytest.raises(Exception, match="cannot be read now"):
        await asyncio.wait_for(d.engine.manual(JOB, 3, "launch"), 5)


async def recording(start_daemon: DaemonFactory) -> tuple[Daemon, RecordingActuator]:
    """A daemon whose job's app runs 2 instances (a recording actuator), the job's worker idle."""
    act = RecordingActuator()
    d, c = await start_daemon(actuator=act, clock=Clock(T0))
    assert (await c.call("POST", "/api/v1/jobs", doc("/web")))[0] == 201
    await until(lambda: idle(d.engine.jobs[JOB]))
    act.instances[JOB] = 2
    return d, act


async def test_a_newer_alarm_for_the_same_rule_replaces_the_queued_one(start_daemon: DaemonFactory) -> None:
    d, act = await recording(start_daemon)
    rt = d.engine.jobs[JOB]
    # queued in one go (the worker does not run in between): PROBLEM then OK for rule falcon, one for other
    assert d.engine.alarm(event(T0, status="PROBLEM")) == [JOB]
    assert d.engine.alarm(event(T0, stra_id=7)) == [JOB]
    assert d.engine.alarm(event(T0, status="OK")) == [JOB]
    assert d.engine.alarm(event(T0, stra_id=99)) == []  # no rule matches: not queued at all
    assert [e.status for e in rt.alarms.values()] == ["PROBLEM", "OK"]  # other's PROBLEM, falcon's OK
    await until(lambda: idle(rt))
    assert act.calls == [(JOB, 3)]  # only rule "other" scaled out; falcon's PROBLEM was replaced by its OK
    assert metric(d, "oceand_alarm_events_dropped_total", reason="coalesced") == 1


async def test_a_manual_scale_waits_for_the_alarm_in_flight_only(start_daemon: DaemonFactory) -> None:
    d, act = await recording(start_daemon)
    rt = d.engine.jobs[JOB]
    d.engine.alarm(event(T0))  # wakes the worker, which takes this alarm first
    d.engine.alarm(event(T0, stra_id=7))
    manual = asyncio.ensure_future(d.engine.manual(JOB, 5, "launch"))  # queued while that alarm runs
    decision, _ = await asyncio.wait_for(manual, 5)
    await until(lambda: idle(rt))
    assert decision.current == 3  # after the alarm in flight (2 -> 3), before the queued one
    assert act.calls == [(JOB, 3), (JOB, 5), (JOB, 6)]
