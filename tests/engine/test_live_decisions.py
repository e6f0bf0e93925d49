"""Decisions through the live daemon (issue 3): dry-run vs active, reason codes, restart between hot buckets,
manual scale, alarms and mode changes — the daemon in this process with a controlled clock."""

from __future__ import annotations

import asyncio
from typing import Any

from actuators.marathon import RecordingActuator
from oceand.daemon import Daemon
from tests.conftest import Client, DaemonFactory, stepped

JOB = "job.seed_web_cop.xiaomi"
T0 = 1_800_000_000  # a multiple of 10


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def seed(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "job": JOB,
        "target": {"cluster": "lg", "app": "/seed/web"},
        "period": 10,
        "min_instances": 1,
        "max_instances": 5,
        "rules": [
            {
                "name": "cpu",
                "type": "threshold",
                "metric": "cpu.used",
                "scale_out": {"above": 80, "consecutive": 3, "step": 1},
                "scale_in": {"below": 60, "consecutive": 3, "step": 1},
            },
            {"name": "falcon", "type": "alarm", "match": {"stra_id": 1042}, "step": 2},
        ],
        "behavior": {"scale_out": {"cooldown": "30s"}, "scale_in": {"cooldown": "5m"}},
    }
    d.update(over)
    return d


def cpu_item(host: str, ts: int, cpu_used: float) -> dict[str, Any]:
    """One Falcon item of the job: `host`'s cpu.idle at `ts` (cpu.used = 100 - idle)."""
    return {
        "endpoint": host,
        "metric": "cpu.idle",
        "timestamp": ts,
        "step": 10,
        "value": 100 - cpu_used,
        "counterType": "GAUGE",
        "tags": f"job={JOB}",
    }


async def bucket(d: Daemon, c: Client, clock: Clock, k: int, cpu_used: float, hosts: int = 2) -> None:
    """Fill bucket T0 + 10k from `hosts` instances, then let its deadline pass."""
    ts = T0 + 10 * k
    clock.t = ts + 1
    items = [cpu_item(f"h{i}", ts, cpu_used) for i in range(hosts)]
    assert (await c.call("POST", "/v1/push", items))[0] == 200
    clock.t = ts + 16  # past end + grace
    rt = d.engine.jobs[JOB]
    for _ in range(100):
        rt.wake.set()
        await asyncio.sleep(0.005)
        if rt.buckets.closed_upto > ts:
            break
    for _ in range(200):  # the step that closed it (commit, apply, record) has ended; bounded wait
        await asyncio.sleep(0.01)
        if d.engine._inflight == 0:
            break


async def decisions(c: Client) -> list[dict[str, Any]]:
    _, body = await c.call("GET", f"/api/v1/jobs/{JOB}/decisions")
    return body["decisions"]  # type: ignore[no-any-return]


async def test_dry_run_shows_the_decision_and_active_applies_it(start_daemon: DaemonFactory) -> None:
    clock = Clock(T0)
    d, c = await start_daemon(clock=clock)  # no Marathon configured: the job runs dry
    assert (await c.call("POST", "/api/v1/jobs", seed()))[0] == 201
    for k in range(3):
        await bucket(d, c, clock, k, cpu_used=90)
    got = await decisions(c)
    assert len(got) == 1
    assert (got[0]["current"], got[0]["desired"], got[0]["status"]) == (1, 2, "dry-run")
    assert got[0]["reasons"] == ["ScaleOut", "DryRun"]
    assert got[0]["proposals"][0]["inputs"]["streak_out"] == 3
    assert "no Marathon cluster" in got[0]["result"]["note"]
    await d.stop()

    act = RecordingActuator()
    d2, c2 = await start_daemon(actuator=act, clock=clock)
    assert (await c2.call("POST", f"/api/v1/jobs/{JOB}/mode", {"mode": "active"}))[0] == 200
    for k in range(10, 13):
        await bucket(d2, c2, clock, k, cpu_used=90)
    applied = [x for x in await decisions(c2) if x["status"] == "applied"]
    assert [(x["current"], x["desired"], x["reasons"]) for x in applied] == [(1, 2, ["ScaleOut"])]
    assert act.calls == [(JOB, 2)]


async def test_restart_between_the_second_and_third_hot_bucket_still_scales_on_the_third(
    start_daemon: DaemonFactory,
) -> None:
    clock = Clock(T0)
    act = RecordingActuator()
    d, c = await start_daemon(actuator=act, clock=clock)
    assert (await c.call("POST", "/api/v1/jobs", seed(mode="active")))[0] == 201
    await bucket(d, c, clock, 0, cpu_used=90)
    await bucket(d, c, clock, 1, cpu_used=90)
    await d.stop()
    assert act.calls == []
    d2, c2 = await start_daemon(actuator=act, clock=clock)
    await bucket(d2, c2, clock, 2, cpu_used=90)
    assert act.calls == [(JOB, 2)]


async def test_streak_reset_by_a_cool_bucket_and_bounds(start_daemon: DaemonFactory) -> None:
    clock = Clock(T0)
    act = RecordingActuator()
    d, c = await start_daemon(actuator=act, clock=clock)
    assert (await c.call("POST", "/api/v1/jobs", seed(mode="active", min_instances=5)))[0] == 201
    act.instances[JOB] = 5
    for k, v in enumerate((90, 90, 79, 90, 90)):
        await bucket(d, c, clock, k, cpu_used=v)
    assert await decisions(c) == []  # 79 in between reset the streak: never three in a row
    await bucket(d, c, clock, 5, cpu_used=90)
    got = await decisions(c)
    assert got[0]["reasons"] == ["ScaleOut", "MaxInstances"] and got[0]["desired"] == 5
    assert act.calls == []
    _, st = await c.call("GET", f"/api/v1/jobs/{JOB}/status")
    assert st["rules"]["cpu"]["value"] == 90 and st["rules"]["cpu"]["reporters"] == 2


async def test_manual_scale_alarm_and_pause(start_daemon: DaemonFactory) -> None:
    clock = Clock(T0)
    act = RecordingActuator()
    d, c = await start_daemon(actuator=act, clock=clock)
    assert (await c.call("POST", "/api/v1/jobs", seed(mode="active")))[0] == 201
    status, body = await c.call("POST", f"/api/v1/jobs/{JOB}/scale", {"instances": 9, "reason": "launch"})
    assert status == 200
    assert body["decision"]["desired"] == 5 and body["decision"]["reasons"] == ["Manual", "MaxInstances"]
    assert act.instances[JOB] == 5
    status, body = await c.call("POST", f"/api/v1/jobs/{JOB}/scale", {"instances": "3"})
    assert status == 422
    act.instances[JOB] = 2
    clock.t = T0 + 31  # past the scale-out cooldown that the manual change started
    q = "endpoint=h1&metric=cpu.idle&status=PROBLEM&step=1&priority=0&time=2026-11-28+10:00:00&tpl_id=1&exp_id=0&stra_id=1042&left_value=3&tags=job:x"
    status, body = await c.call("GET", f"/v1/falcon/alarm?{q}")
    assert (status, body["jobs"]) == (200, [JOB])
    for _ in range(50):
        await asyncio.sleep(0.01)
        if act.instances[JOB] == 4:
            break
    assert act.instances[JOB] == 4  # current 2 + step 2
    assert (await c.call("POST", f"/api/v1/jobs/{JOB}/mode", {"mode": "paused"}))[0] == 200
    for k in range(10, 13):
        await bucket(d, c, clock, k, cpu_used=99)
    assert act.instances[JOB] == 4


async def test_webhook_gets_applied_actions_and_a_dead_one_never_delays_scaling(
    start_daemon: DaemonFactory, unused_tcp_port: int
) -> None:
    from aiohttp import web

    got: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        clock = Clock(T0)
        act = RecordingActuator()
        d, c = await start_daemon(actuator=act, clock=clock, notify={"allow": ["127.0.0.1"]})
        live = seed(mode="active", notify={"webhook": f"http://127.0.0.1:{port}/hook", "group": "sre_ocean"})
        assert (await c.call("POST", "/api/v1/jobs", live))[0] == 201
        for k in range(3):
            await bucket(d, c, clock, k, cpu_used=90)
        assert act.calls == [(JOB, 2)]
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.01)
        assert got and (got[0]["job"], got[0]["from"], got[0]["to"], got[0]["reason"]) == (
            JOB,
            1,
            2,
            "ScaleOut",
        )
        assert got[0]["decision_id"] is not None

        # a webhook nobody listens on: the next scale is not delayed by it
        dead = seed(mode="active", notify={"webhook": f"http://127.0.0.1:{unused_tcp_port}/hook"})
        assert (await c.call("PUT", f"/api/v1/jobs/{JOB}", dead))[0] == 200
        clock.t = T0 + 100
        started = asyncio.get_running_loop().time()
        for k in range(20, 23):
            await bucket(d, c, clock, k, cpu_used=90)
        assert act.calls == [(JOB, 2), (JOB, 3)]
        assert asyncio.get_running_loop().time() - started < 2.0
    finally:
        await runner.cleanup()


async def test_a_bucket_closed_before_a_restart_is_not_evaluated_again(start_daemon: DaemonFactory) -> None:
    clock = Clock(T0)
    act = RecordingActuator()
    d, c = await start_daemon(actuator=act, clock=clock)
    assert (await c.call("POST", "/api/v1/jobs", seed(mode="active")))[0] == 201
    await bucket(d, c, clock, 0, cpu_used=90)  # closes at its deadline: 2 reporters known from now on
    ts = T0 + 10
    clock.t = ts + 1
    items = [
        {
            "endpoint": f"h{i}",
            "metric": "cpu.idle",
            "timestamp": ts,
            "step": 10,
            "value": 10,
            "counterType": "GAUGE",
            "tags": f"job={JOB}",
        }
        for i in range(2)
    ]
    assert (await c.call("POST", "/v1/push", items))[0] == 200  # both reported: closes early
    rt = d.engine.jobs[JOB]
    for _ in range(100):
        await asyncio.sleep(0.005)
        if rt.state.last_bucket == ts:
            break
    assert rt.state.streaks["cpu"].out == 2
    await d.stop()  # restart inside the same period
    d2, c2 = await start_daemon(actuator=act, clock=clock)
    assert d2.engine.jobs[JOB].buckets.closed_upto == ts + 10  # not reopened (it would close empty)
    await bucket(d2, c2, clock, 2, cpu_used=90)
    await applied(act)
    assert act.calls == [(JOB, 2)]


class FlakyActuator(RecordingActuator):
    """Fails its first apply as Marathon being down would (transient), then works."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    async def apply(self, doc: Any, decision: Any, attempts: Any = None) -> Any:
        from actuators.marathon import Outcome

        if self.failures:
            self.failures -= 1
            return Outcome("failed", {"error": "Marathon answered 503"})
        return await super().apply(doc, decision, attempts)


async def test_a_retrying_decision_superseded_by_a_newer_one_is_never_applied(
    start_daemon: DaemonFactory,
) -> None:
    clock = Clock(T0)
    act = FlakyActuator()
    d, c = await start_daemon(actuator=act, clock=clock)
    assert (await c.call("POST", "/api/v1/jobs", seed(mode="active")))[0] == 201
    status, body = await c.call("POST", f"/api/v1/jobs/{JOB}/scale", {"instances": 4})
    assert (status, body["decision"]["status"]) == (200, "pending")
    # the failure is the outcome's (ActuationFailed); the decision's reasons stay as the policy gave them
    assert body["decision"]["outcome"]["reason"] == "ActuationFailed"
    assert body["decision"]["reasons"] == ["Manual"]
    status, body = await c.call("POST", f"/api/v1/jobs/{JOB}/scale", {"instances": 2})
    assert body["decision"]["status"] == "applied"
    rows = await decisions(c)
    first = next(x for x in rows if x["desired"] == 4)
    assert first["status"] == "failed" and first["result"]["superseded_by"] == body["decision"]["id"]
    assert (first["outcome"]["status"], first["outcome"]["superseded_by"]) == (
        "superseded",
        body["decision"]["id"],
    )
    assert first["reasons"] == ["Manual"] and first["outcome"]["reason"] == "ActuationFailed"
    rt = d.engine.jobs[JOB]
    assert rt.retry is None and rt.retry_at is None
    await d.stop()
    d2, _ = await start_daemon(actuator=act, clock=clock)
    await stepped(d2, JOB)  # the restarted job's worker has run: whatever it would send, it has sent
    assert act.instances[JOB] == 2 and act.calls == [(JOB, 2)]


async def test_a_stored_future_bucket_does_not_freeze_the_job_after_a_restart(
    start_daemon: DaemonFactory,
) -> None:
    """A state written by an earlier version after a future-stamped push (last bucket ~11.6 days ahead) is
    clamped on load: the job's buckets start at the daemon's clock again."""
    clock = Clock(T0 + 1)
    act = RecordingActuator()
    d, c = await start_daemon(actuator=act, clock=clock)
    assert (await c.call("POST", "/api/v1/jobs", seed(mode="active")))[0] == 201
    d.engine.jobs[JOB].state.last_bucket = T0 + 1_000_000
    d.engine._dirty.add(JOB)
    await d.stop()  # writes the state
    d2, c2 = await start_daemon(actuator=act, clock=clock)
    rt = d2.engine.jobs[JOB]
    assert rt.buckets.closed_upto == T0  # the current bucket is open
    for k in range(3):
        await bucket(d2, c2, clock, k, cpu_used=90)
    await applied(act)
    assert rt.buckets.late == 0 and act.calls == [(JOB, 2)]


async def applied(act: RecordingActuator) -> None:
    """Until a decision reached the actuator (it is committed first: on a loaded host that takes a while)."""
    for _ in range(500):
        if act.calls:
            return
        await asyncio.sleep(0.01)
