"""The live daemon and `oceand replay` decide the same from one scripted load (issue 11).

One load script, two runs of the same job document:
- replay: the script as a trace (one row per period), start-up 0 s so that every instance is ready at
  once, the decisions collected from `engine_step`;
- live: the daemon in this process with a recording actuator and a controlled clock; bucket k gets the
  samples the replay's simulated instances report for period k (cpu.used = 100 × load / (ready ×
  capacity) from each of the `ready` instances) and closes at its deadline, at the instant the replay
  decides period k (the trace starts there), so cooldowns, schedule fires and windows meet the same
  clock in both.
Compared decision by decision: trigger, time, current, desired, reasons (the live daemon stores the
decisions worth storing: a change, a limit, or a proposal other than the current count), and the count
after every period."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actuators.marathon import RecordingActuator
from oceand.daemon import Daemon
from oceand.replay import ReplayOptions, engine_step, metric_plan, observe, simulate
from oceand.trace import load_trace
from policies.document import parse_job
from policies.types import Decision
from tests.conftest import Client, DaemonFactory
from tests.engine.test_live_decisions import Clock

JOB = "job.live_replay_web.xiaomi"
T0 = 1_800_000_000  # bucket k is [T0 + 10k, T0 + 10k + 10)
PERIOD, GRACE = 10, 5
LAG = PERIOD + GRACE + 1  # bucket k closes (and replay decides period k) at T0 + 10k + LAG
CAPACITY = 100.0


def decided_at(k: int) -> int:
    return T0 + PERIOD * k + LAG


def local(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S")


# the load per period: a climb (scale-outs held by the cooldown), a schedule fire at period 12, a fall
# (scale-ins), a window lifting the minimum from period 22 to 25, then quiet
LOADS = [50.0, 90.0, 95.0, 130.0, 170.0, 170.0, 250.0, 250.0, 250.0, 250.0, 200.0, 200.0,
         200.0, 200.0, 120.0, 60.0, 60.0, 60.0, 60.0, 60.0, 60.0, 60.0, 60.0, 60.0, 60.0, 60.0,
         60.0, 30.0, 30.0, 30.0]  # fmt: skip


def document() -> dict[str, Any]:
    return {
        "job": JOB,
        "target": {"cluster": "lg", "app": "/live/replay"},
        "mode": "active",
        "period": PERIOD,
        "grace": GRACE,
        "min_instances": 1,
        "max_instances": 6,
        "rules": [
            {
                "name": "cpu",
                "type": "threshold",
                "metric": "cpu.used",
                "scale_out": {"above": 80, "consecutive": 2, "step": 1},
                "scale_in": {"below": 40, "consecutive": 2, "step": 1},
            },
            {"name": "lunch", "type": "schedule", "start": local(decided_at(12) - 3), "every": "1d",
             "timezone": "UTC", "instances": 5},
            {"name": "peak", "type": "schedule", "start": local(decided_at(22) - 2), "every": "1d",
             "timezone": "UTC", "duration": "40s", "min_instances": 3},
        ],
        "behavior": {"scale_out": {"cooldown": "20s"}, "scale_in": {"cooldown": "30s"}},
    }  # fmt: skip


def replay(tmp_path: Path) -> tuple[list[Decision], list[int], list[int]]:
    """(every decision, ready instances per period, count decided per period)."""
    trace = tmp_path / "load.csv"
    trace.write_text("t,load\n" + "".join(f"{decided_at(k)},{v}\n" for k, v in enumerate(LOADS)))
    doc = parse_job(document())
    got: list[Decision] = []
    options = ReplayOptions(capacity=CAPACITY, startup=0.0, initial=doc.min_instances)
    result = simulate(doc, load_trace(trace), options, step=engine_step(doc, decisions=got))
    return got, result.timeline.ready.tolist(), result.timeline.desired.tolist()


async def live_bucket(d: Daemon, c: Client, clock: Clock, k: int, cpu_used: float | None, hosts: int) -> None:
    """Bucket k's samples from `hosts` instances, pushed once its deadline has come; until it closed and
    the step that closed it (commit, apply, fires) has ended."""
    ts = T0 + PERIOD * k + 1
    clock.t = decided_at(k)
    if cpu_used is not None:
        items = [
            {"endpoint": f"h{i}", "metric": "cpu.idle", "timestamp": ts, "step": PERIOD,
             "value": 100.0 - cpu_used, "counterType": "GAUGE", "tags": f"job={JOB}"}
            for i in range(hosts)
        ]  # fmt: skip
        assert (await c.call("POST", "/v1/push", items))[0] == 200
    rt = d.engine.jobs[JOB]
    for _ in range(500):
        rt.wake.set()
        await asyncio.sleep(0.005)
        if rt.buckets.closed_upto > ts and d.engine._inflight == 0:
            return
    raise AssertionError(f"bucket {k} did not close")


def stored(d: Decision) -> bool:
    """What the live daemon keeps of a decision that changes nothing (Engine._worth_storing)."""
    return (
        d.changes
        or bool(d.limits)
        or any(p.desired is not None and p.desired != d.current for p in d.proposals)
    )


def row(x: Decision | dict[str, Any]) -> tuple[Any, ...]:
    if isinstance(x, Decision):
        return (x.trigger, x.at, x.current, x.desired, x.reasons)
    return (x["trigger"], x["at"], x["current"], x["desired"], x["reasons"])


async def test_live_daemon_and_replay_decide_the_same(start_daemon: DaemonFactory, tmp_path: Path) -> None:
    decisions, ready, desired = replay(tmp_path)
    triggers = {d.trigger for d in decisions}
    reasons = {r for d in decisions for r in d.reasons}
    # the script exercises what it is meant to: both triggers, both directions, the limits
    assert triggers == {"bucket", "schedule"}
    assert {"ScaleOut", "ScaleIn", "Cooldown", "Schedule", "MinInstances"} <= reasons

    clock = Clock(T0 - 5)
    act = RecordingActuator()
    act.instances[JOB] = ready[0]  # the replay's initial count: the document's min_instances
    d, c = await start_daemon(actuator=act, clock=clock)
    assert (await c.call("POST", "/api/v1/jobs", document()))[0] == 201
    plan = metric_plan(parse_job(document()))
    counts = []
    for k, load in enumerate(LOADS):
        n = act.instances[JOB]
        assert n == ready[k], f"period {k}: live has {n} instances, replay {ready[k]} ready"
        cpu = observe(plan, load, n, CAPACITY)["cpu"]
        await live_bucket(d, c, clock, k, cpu, hosts=n)
        counts.append(act.instances[JOB])
    _, body = await c.call("GET", f"/api/v1/jobs/{JOB}/decisions?limit=1000")
    live = sorted(body["decisions"], key=lambda x: x["id"])
    assert [row(x) for x in live] == [row(x) for x in decisions if stored(x)]
    assert counts == desired
