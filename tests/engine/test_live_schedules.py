"""Schedules in the live daemon with a controlled clock (issue 5): fires through the normal decision path,
windows lifting the minimum, at-most-once fires across a restart."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from actuators.marathon import RecordingActuator
from oceand.daemon import Daemon
from tests.conftest import Client, DaemonFactory, stepped

JOB = "job.sched_web_cop.xiaomi"
SH = ZoneInfo("Asia/Shanghai")


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=SH).timestamp()


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


DOC: dict[str, Any] = {
    "job": JOB,
    "target": {"cluster": "lg", "app": "/sched/web"},
    "mode": "active",
    "period": 10,
    "min_instances": 2,
    "max_instances": 6,
    "rules": [
        {
            "name": "cpu",
            "type": "threshold",
            "metric": "cpu.used",
            "scale_out": {"above": 80, "consecutive": 1, "step": 1},
            "scale_in": {"below": 20, "consecutive": 1, "step": 1},
        },
        {
            "name": "morning",
            "type": "schedule",
            "start": "2026-11-01T07:00",
            "every": "1d",
            "timezone": "Asia/Shanghai",
            "instances": 4,
        },
        {
            "name": "night",
            "type": "schedule",
            "cron": "0 2 * * *",
            "timezone": "Asia/Shanghai",
            "instances": 2,
        },
        {
            "name": "peak",
            "type": "schedule",
            "cron": "0 9 * * *",
            "timezone": "Asia/Shanghai",
            "duration": "2h",
            "min_instances": 3,
        },
    ],
    "behavior": {"scale_out": {"cooldown": 0}, "scale_in": {"cooldown": 0}},
}


async def settle(d: Daemon, clock: Clock, t: float, cond: Any) -> None:
    clock.t = t
    for _ in range(200):
        for rt in d.engine.jobs.values():
            rt.wake.set()
        await asyncio.sleep(0.01)
        if cond():
            return
    raise AssertionError(f"condition not reached at {datetime.fromtimestamp(t, SH)}")


async def push_cpu(c: Client, t: float, idle: float) -> None:
    item = {
        "endpoint": "h1",
        "metric": "cpu.idle",
        "timestamp": int(t),
        "step": 10,
        "value": idle,
        "counterType": "GAUGE",
        "tags": f"job={JOB}",
    }
    status, _ = await c.call("POST", "/v1/push", [item])
    assert status == 200


async def test_fires_windows_and_metric_rules_together(start_daemon: DaemonFactory) -> None:
    clock = Clock(at("2026-11-27T06:59:00"))
    act = RecordingActuator()
    d, c = await start_daemon(actuator=act, clock=clock)
    assert (await c.call("POST", "/api/v1/jobs", DOC))[0] == 201
    act.instances[JOB] = 2

    _, st = await c.call("GET", f"/api/v1/jobs/{JOB}/status")
    assert st["rules"]["morning"]["next_fire_local"] == "2026-11-27T07:00:00+08:00"
    assert st["rules"]["night"]["next_fire_local"] == "2026-11-28T02:00:00+08:00"

    await settle(d, clock, at("2026-11-27T07:00:01"), lambda: act.instances[JOB] == 4)
    await settle(d, clock, at("2026-11-28T02:00:01"), lambda: act.instances[JOB] == 2)
    _, body = await c.call("GET", f"/api/v1/jobs/{JOB}/decisions")
    fired = [x for x in body["decisions"] if x["trigger"] == "schedule"]
    assert [(x["desired"], x["reasons"][0], x["status"]) for x in fired] == [
        (2, "Schedule", "applied"),
        (4, "Schedule", "applied"),
    ]
    assert {f["rule"] for f in body["fires"]} == {"morning", "night"}

    # 09:00: the window's min 3 lifts the job from 2 at the next bucket
    await settle(d, clock, at("2026-11-28T09:00:30"), lambda: act.instances[JOB] == 3)
    _, st = await c.call("GET", f"/api/v1/jobs/{JOB}/status")
    assert st["bounds"] == {"min": 3, "max": 6}
    # ... and the threshold rule still scales above it
    t = at("2026-11-28T09:01:00")
    clock.t = t
    await push_cpu(c, t, idle=5)
    await settle(d, clock, t + 16, lambda: act.instances[JOB] == 4)
    # after the window the job's own bounds are back: a cold bucket may scale in below 3
    await settle(d, clock, at("2026-11-28T11:00:30"), lambda: True)
    _, st = await c.call("GET", f"/api/v1/jobs/{JOB}/status")
    assert st["bounds"] == {"min": 2, "max": 6}
    for k, idle in enumerate((95, 95)):
        t = at("2026-11-28T11:01:00") + 20 * k  # the clock never runs backwards
        clock.t = t
        await push_cpu(c, t, idle=idle)
        await settle(d, clock, t + 16, lambda k=k: act.instances[JOB] == 3 - k)
    assert act.instances[JOB] == 2


async def test_each_fire_runs_at_most_once_across_a_restart(start_daemon: DaemonFactory) -> None:
    clock = Clock(at("2026-11-27T06:59:00"))
    act = RecordingActuator()
    d, c = await start_daemon(actuator=act, clock=clock)
    assert (await c.call("POST", "/api/v1/jobs", DOC))[0] == 201
    act.instances[JOB] = 2
    await settle(d, clock, at("2026-11-27T07:00:01"), lambda: act.instances[JOB] == 4)
    calls = len(act.calls)
    await d.stop()
    act.instances[JOB] = 2  # someone scaled it back while we were down
    d2, _ = await start_daemon(actuator=act, clock=clock)
    clock.t = at("2026-11-27T07:00:05")
    await stepped(d2, JOB)  # the worker has run at 07:00:05, where it would fire 07:00 again
    assert len(act.calls) == calls  # 07:00 was fired already: not again


async def test_a_missed_fire_within_grace_runs_at_start_and_beyond_is_recorded(
    start_daemon: DaemonFactory,
) -> None:
    clock = Clock(at("2026-11-27T06:59:00"))
    act = RecordingActuator()
    d, c = await start_daemon(actuator=act, clock=clock)
    assert (await c.call("POST", "/api/v1/jobs", DOC))[0] == 201
    act.instances[JOB] = 2
    await d.stop()
    clock.t = at("2026-11-27T07:03:00")  # down over 07:00; grace is 5 minutes
    d2, _ = await start_daemon(actuator=act, clock=clock)
    await settle(d2, clock, clock.t, lambda: act.instances[JOB] == 4)
    await d2.stop()
    clock.t = at("2026-11-28T02:30:00")  # down over 02:00 by 30 minutes: beyond the grace
    d3, c3 = await start_daemon(actuator=act, clock=clock)
    await stepped(d3, JOB)  # the worker has run at 02:30, where a fire within grace would run
    assert act.instances[JOB] == 4
    _, body = await c3.call("GET", f"/api/v1/jobs/{JOB}/decisions")
    assert ("night", "missed") in {(f["rule"], f["status"]) for f in body["fires"]}
