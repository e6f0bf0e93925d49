"""The push endpoint against a daemon on 127.0.0.1 with a controlled clock: hostile inputs (issue 18)."""

from __future__ import annotations

import asyncio
from typing import Any

from oceand.actuation import RecordingActuator
from tests.conftest import DaemonFactory
from tests.engine.test_live_decisions import JOB, T0, Clock, bucket, decisions, seed


def items(ts: int, cpu_idle: float, hosts: int = 1) -> list[dict[str, Any]]:
    return [
        {
            "endpoint": f"h{i}",
            "metric": "cpu.idle",
            "timestamp": ts,
            "step": 10,
            "value": cpu_idle,
            "counterType": "GAUGE",
            "tags": f"job={JOB}",
        }
        for i in range(hosts)
    ]


async def test_future_stamped_items_neither_scale_nor_freeze_the_job(start_daemon: DaemonFactory) -> None:
    """Three items stamped ahead with cpu.idle 0 used to close three hot buckets at once (a scale-out), and
    one stamped 11.6 days ahead froze the job's metric scaling: every later sample was "late"."""
    clock = Clock(T0)
    act = RecordingActuator()
    d, c = await start_daemon(actuator=act, clock=clock)
    assert (await c.call("POST", "/api/v1/jobs", seed(mode="active")))[0] == 201
    await bucket(d, c, clock, 0, cpu_used=50, hosts=1)  # one reporter known from now on
    clock.t = T0 + 11
    hostile = [*items(T0 + 30, 0), *items(T0 + 40, 0), *items(T0 + 50, 0), *items(T0 + 1_000_000, 0)]
    status, body = await c.call("POST", "/v1/push", hostile)
    assert status == 200
    assert (body["data"]["Total"], body["data"]["Invalid"]) == (4, 4)
    assert all("timestamp:" in e and "ahead of the daemon's clock" in e for e in body["data"]["Errors"])
    for k in (1, 2, 3):
        await bucket(d, c, clock, k, cpu_used=50, hosts=1)
    rt = d.engine.jobs[JOB]
    for _ in range(500):  # the third bucket's evaluation
        if rt.state.last_bucket == T0 + 30:
            break
        await asyncio.sleep(0.01)
    assert rt.state.last_bucket == T0 + 30 and rt.buckets.late == 0  # still evaluating, not frozen
    assert act.calls == [] and not [x for x in await decisions(c) if "ScaleOut" in x["reasons"]]
    _, text = await c.call("GET", "/metrics")
    assert 'oceand_ingest_rejected_total{bound="timestamp_future"} 4.0' in text


async def test_an_old_item_is_rejected_with_its_reason(start_daemon: DaemonFactory) -> None:
    clock = Clock(T0 + 1)
    _, c = await start_daemon(clock=clock)
    assert (await c.call("POST", "/api/v1/jobs", seed()))[0] == 201
    status, body = await c.call("POST", "/v1/push", [*items(T0, 50), *items(T0 - 700, 50)])
    assert (status, body["data"]["Invalid"]) == (200, 1)
    assert body["data"]["Errors"] == [
        "[1] timestamp: 1799999300 is 701 s old (at most 600 s: the job's window)"
    ]
    _, text = await c.call("GET", "/metrics")
    assert 'oceand_ingest_rejected_total{bound="timestamp_old"} 1.0' in text
