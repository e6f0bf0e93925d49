"""The worker's part of a schedule fire (issue 11): `policies.engine.step` finds the fire and marks it
handled; the worker claims it in the store before committing, so a fire claimed before (by an earlier
run whose state was not written yet) is marked and not run, and the next due fire still runs."""

from __future__ import annotations

import asyncio
from typing import Any

from actuators.marathon import RecordingActuator
from tests.conftest import DaemonFactory
from tests.engine.test_live_decisions import Clock

JOB = "job.fires_web_cop.xiaomi"
T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC


def schedule(name: str, cron: str, instances: int) -> dict[str, Any]:
    return {"name": name, "type": "schedule", "cron": cron, "timezone": "UTC", "instances": instances}


DOC: dict[str, Any] = {
    "job": JOB,
    "target": {"cluster": "lg", "app": "/fires/web"},
    "mode": "active",
    "period": 10,
    "min_instances": 1,
    "max_instances": 9,
    "rules": [schedule("nine", "0 9 * * *", 4), schedule("also-nine", "0 9 * * *", 6)],
}


async def test_a_fire_claimed_before_is_marked_and_not_run_the_other_runs(
    start_daemon: DaemonFactory,
) -> None:
    clock = Clock(T0)
    act = RecordingActuator()
    act.instances[JOB] = 1
    d, c = await start_daemon(actuator=act, clock=clock)
    assert (await c.call("POST", "/api/v1/jobs", DOC))[0] == 201
    nine = T0 + 3600
    assert await d.engine.store.claim_fire(JOB, "nine", nine, "fired")  # an earlier run took it
    clock.t = nine + 1
    rt = d.engine.jobs[JOB]
    for _ in range(300):
        rt.wake.set()
        await asyncio.sleep(0.01)
        if rt.state.fires == {"nine": nine, "also-nine": nine} and d.engine._inflight == 0:
            break
    assert rt.state.fires == {"nine": nine, "also-nine": nine}  # both marked handled
    assert act.calls == [(JOB, 6)]  # only the fire not claimed before ran
    _, body = await c.call("GET", f"/api/v1/jobs/{JOB}/decisions")
    assert [(x["trigger"], x["current"], x["desired"]) for x in body["decisions"]] == [("schedule", 1, 6)]
