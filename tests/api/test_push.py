"""The push endpoint against a daemon on 127.0.0.1 with a controlled clock: hostile inputs (issue 18)."""

from __future__ import annotations

import asyncio
from itertools import pairwise
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from actuators.marathon import RecordingActuator
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
    assert body["data"]["Errors"] == ["[1] timestamp: 1799999300 is 701 s old (at most 600 s)"]
    _, text = await c.call("GET", "/metrics")
    assert 'oceand_ingest_rejected_total{bound="timestamp_old"} 1.0' in text


# ---- large bodies: decoded and routed in slices (issue 18 item 4) ------------------------------------------


class Ticker:
    """A coroutine that counts its turns on the event loop."""

    def __init__(self) -> None:
        self.turns = 0
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.turns += 1
            await asyncio.sleep(0)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(orjson.dumps(items(T0, 50, hosts=6000)), id="agent items (fast decoder)"),
        pytest.param(b"[" + b",".join([b"{}"] * 100_000) + b"]", id="empty objects (tolerant path)"),
    ],
)
async def test_other_coroutines_run_while_a_large_body_is_processed(
    start_daemon: DaemonFactory, monkeypatch: pytest.MonkeyPatch, body: bytes
) -> None:
    import oceand.api.ingest as api

    clock = Clock(T0 + 1)
    d, c = await start_daemon(clock=clock)
    assert (await c.call("POST", "/api/v1/jobs", seed()))[0] == 201
    ticker = Ticker()
    seen: dict[str, list[int]] = {"decode": [], "route": []}
    decode, loads, route = api.decode_items, orjson.loads, d.engine.ingestor.push

    def spy_decode(piece: bytes) -> Any:
        out = decode(piece)
        if out is not None:  # a piece decoded (the tolerant path tries the first piece, then decodes again)
            seen["decode"].append(ticker.turns)
        return out

    def spy_loads(piece: bytes) -> Any:
        seen["decode"].append(ticker.turns)
        return loads(piece)

    def spy_route(*args: Any, **kwargs: Any) -> Any:
        seen["route"].append(ticker.turns)
        return route(*args, **kwargs)

    monkeypatch.setattr(api, "decode_items", spy_decode)
    monkeypatch.setattr(
        api, "orjson", SimpleNamespace(loads=spy_loads, JSONDecodeError=orjson.JSONDecodeError)
    )
    check = d.engine.ingestor.check

    def spy_check(*args: Any, **kwargs: Any) -> Any:
        seen["route"].append(ticker.turns)
        return check(*args, **kwargs)

    monkeypatch.setattr(d.engine.ingestor, "push", spy_route)
    monkeypatch.setattr(d.engine.ingestor, "check", spy_check)
    status, reply = await c.call("POST", "/v1/push", data=body)
    ticker.task.cancel()
    assert status == 200 and reply["data"]["Total"] == body.count(b"{")
    for step, turns in seen.items():  # the ticker ran between any two pieces decoded, any two slices handled
        assert len(turns) > 1, step
        assert all(a < b for a, b in pairwise(turns)), (step, turns)


@pytest.mark.parametrize(
    "how",
    [
        pytest.param("whole", id="in one go"),
        pytest.param("slices", id="decoded and routed in slices"),
        pytest.param("routed", id="decoded whole, routed in slices"),
    ],
)
@pytest.mark.parametrize("tolerant", [pytest.param(True, id="tolerant"), pytest.param(False, id="fast")])
async def test_a_large_body_gets_the_reply_it_would_get_in_one_go(
    start_daemon: DaemonFactory, monkeypatch: pytest.MonkeyPatch, how: str, tolerant: bool
) -> None:
    import oceand.api.ingest as api

    if how != "slices":  # decoded whole: a body under SLICE_BYTES
        monkeypatch.setattr(api, "SLICE_BYTES", 1 << 30)
    if how == "whole":  # and routed whole
        monkeypatch.setattr(api, "ROUTE_SLICE", 1 << 30)
    clock = Clock(T0 + 1)
    d, c = await start_daemon(clock=clock)
    assert (await c.call("POST", "/api/v1/jobs", seed()))[0] == 201
    body = items(T0, 50, hosts=6000)
    body[2500]["timestamp"] = T0 + 100
    body[5999]["timestamp"] = T0 - 1000
    if tolerant:
        body[4100]["value"] = "abc"
    status, reply = await c.call("POST", "/v1/push", body)
    assert status == 200
    assert (reply["data"]["Total"], reply["data"]["Invalid"]) == (6000, 3 if tolerant else 2)
    assert [e.split(":")[0] for e in reply["data"]["Errors"]] == (
        ["[2500] timestamp", "[4100] value", "[5999] timestamp"]
        if tolerant
        else ["[2500] timestamp", "[5999] timestamp"]
    )
    open_bucket = d.engine.jobs[JOB].buckets.open[T0]
    assert len(open_bucket.values[0]) == 6000 - (3 if tolerant else 2)


async def test_an_agent_body_under_the_slice_size_is_routed_in_slices(
    start_daemon: DaemonFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 1,000-point agent body (~140 KB, under SLICE_BYTES) is decoded in one go and routed ROUTE_SLICE
    items at a time with the loop turning in between: routed in one go, it completed ~250 jobs' buckets in
    one callback (7-12 ms at 10,000 jobs) while a pending decision's commit waited (bench/reaction.py)."""
    import oceand.api.ingest as api

    clock = Clock(T0 + 1)
    d, c = await start_daemon(clock=clock)
    assert (await c.call("POST", "/api/v1/jobs", seed()))[0] == 201
    ticker = Ticker()
    turns: list[int] = []
    route = d.engine.ingestor.push

    def spy_route(*args: Any, **kwargs: Any) -> Any:
        turns.append(ticker.turns)
        return route(*args, **kwargs)

    monkeypatch.setattr(d.engine.ingestor, "push", spy_route)
    body = orjson.dumps(items(T0, 50, hosts=1000))
    assert len(body) < api.SLICE_BYTES
    status, reply = await c.call("POST", "/v1/push", data=body)
    ticker.task.cancel()
    assert status == 200 and reply["data"]["Total"] == 1000
    assert len(turns) == -(-1000 // api.ROUTE_SLICE) > 1
    assert all(a < b for a, b in pairwise(turns)), turns  # the loop turned between any two slices
    assert len(d.engine.jobs[JOB].buckets.open[T0].values[0]) == 1000


@pytest.mark.parametrize(
    ("body", "code", "error"),
    [
        pytest.param(b"[" + b",".join([b"{}"] * 100_000), 400, "bad_json", id="truncated array"),
        pytest.param(b"[" + b",".join([b"{}"] * 100_000) + b"]x", 400, "bad_json", id="trailing garbage"),
        pytest.param(b'{"a": [' + b",".join([b"{}"] * 100_000) + b"]}", 400, "not_an_array", id="an object"),
        pytest.param(b'"' + b"a," * 200_000 + b'"', 400, "not_an_array", id="a string"),
        pytest.param(b"1" * 300_000 + b"e400", 400, "bad_json", id="a number out of range"),
        pytest.param(b'["\xff"' + b",1" * 200_000 + b"]", 400, "bad_json", id="invalid UTF-8"),
        pytest.param(b"[[" + b",".join([b"{}"] * 100_000) + b"]]", 200, None, id="one nested array"),
        pytest.param(b"[" + b",".join([b"1"] * 200_000) + b"]", 200, None, id="numbers"),
    ],
)
async def test_large_bodies_that_are_not_agent_items(
    start_daemon: DaemonFactory, body: bytes, code: int, error: str | None
) -> None:
    _, c = await start_daemon()
    status, reply = await c.call("POST", "/v1/push", data=body)
    assert status == code, reply
    if error is not None:
        assert reply["error"]["code"] == error
    else:
        assert (
            reply["data"]["Invalid"] == reply["data"]["Total"] == (1 if body.startswith(b"[[") else 200_000)
        )


# ---- series bounds (issue 18 item 4) -----------------------------------------------------------------------


async def test_series_caps_and_expiry_through_the_daemon(start_daemon: DaemonFactory) -> None:
    clock = Clock(T0 + 1)
    d, c = await start_daemon(clock=clock, ingest={"max_series_per_job": 2, "series_expiry": "10m"})
    assert (await c.call("POST", "/api/v1/jobs", seed()))[0] == 201
    status, body = await c.call("POST", "/v1/push", items(T0, 50, hosts=3))
    assert (status, body["data"]["Invalid"]) == (200, 1)
    assert body["data"]["Errors"] == [
        f"[2] series: job {JOB} is at its limit of 2 series ([ingest] max_series_per_job)"
    ]
    _, st = await c.call("GET", f"/api/v1/jobs/{JOB}/status")
    assert (st["buckets"]["series"], st["buckets"]["series_limit"]) == (2, 2)  # the status says so
    assert st["buckets"]["series_refused"] == 1  # and how many new series it refused
    clock.t = T0 + 1 + 600 + 10
    assert await d.engine.expire_series() == 2
    _, text = await c.call("GET", "/metrics")
    assert 'oceand_ingest_rejected_total{bound="series_per_job"} 1.0' in text
    assert "oceand_series_expired_total 2.0" in text and "oceand_series 0.0" in text
    status, body = await c.call("POST", "/v1/push", items(int(clock.t), 50, hosts=3)[2:])
    assert (status, body["data"]["Invalid"]) == (200, 0)  # room again


async def test_open_buckets_beyond_the_bound_are_counted(start_daemon: DaemonFactory) -> None:
    clock = Clock(T0 + 1)
    d, c = await start_daemon(clock=clock, ingest={"max_ahead": "1d"})
    assert (await c.call("POST", "/api/v1/jobs", seed()))[0] == 201
    body = [x for k in range(300) for x in items(T0 + 10 * k, 50)]
    status, reply = await c.call("POST", "/v1/push", body)
    assert (status, reply["data"]["Invalid"]) == (200, 0)
    assert len(d.engine.jobs[JOB].buckets.open) == 256
    _, text = await c.call("GET", "/metrics")
    assert "oceand_bucket_overflow_samples 44.0" in text


async def test_items_no_job_takes_are_counted_unmatched_and_listed(start_daemon: DaemonFactory) -> None:
    """A push for a job that does not exist used to answer ok and be counted as accepted (issue 12)."""
    clock = Clock(T0)
    _d, c = await start_daemon(clock=clock)
    assert (await c.call("POST", "/api/v1/jobs", seed(mode="active")))[0] == 201
    other = [{**x, "tags": "job=job.nosuch"} for x in items(T0, 50, hosts=2)]  # a watched metric, no job
    unwatched = [{**items(T0, 50)[0], "metric": "disk.io.util", "endpoint": "h9"}]
    status, body = await c.call("POST", "/v1/push", [*items(T0, 50), *other, *unwatched])
    assert status == 200
    data = body["data"]
    assert (data["Message"], data["Total"], data["Invalid"], data["Unmatched"]) == ("ok", 4, 0, 3)
    _, text = await c.call("GET", "/metrics")
    assert 'oceand_samples_total{result="accepted"} 1.0' in text
    assert 'oceand_samples_total{result="unmatched"} 3.0' in text
    status, listed = await c.call("GET", "/api/v1/ingest/unmatched")
    assert status == 200 and listed["unmatched_samples"] == 3
    got = {(s["endpoint"], s["metric"], s["tags"], s["count"], s["last_seen"]) for s in listed["series"]}
    assert got == {
        ("h0", "cpu.idle", "job=job.nosuch", 1, T0),
        ("h1", "cpu.idle", "job=job.nosuch", 1, T0),
        ("h9", "disk.io.util", f"job={JOB}", 1, T0),
    }
    clock.t = T0 + 10
    await c.call("POST", "/v1/push", [{**other[1], "timestamp": T0 + 10}])
    _, listed = await c.call("GET", "/api/v1/ingest/unmatched")
    newest = listed["series"][0]
    assert (newest["endpoint"], newest["count"], newest["last_seen"], len(listed["series"])) == (
        "h1",
        2,
        T0 + 10,
        3,
    )


async def test_a_rule_without_samples_for_3_periods_says_so_in_the_status(
    start_daemon: DaemonFactory,
) -> None:
    clock = Clock(T0)
    d, c = await start_daemon(clock=clock)
    assert (await c.call("POST", "/api/v1/jobs", seed(mode="active")))[0] == 201
    clock.t = T0 + 29
    _, st = await c.call("GET", f"/api/v1/jobs/{JOB}/status")
    assert st["rules"]["cpu"]["no_data_since"] is None and st["rules"]["cpu"]["no_data_reason"] is None
    clock.t = T0 + 30  # never a sample: the selector matches nothing
    _, st = await c.call("GET", f"/api/v1/jobs/{JOB}/status")
    cpu = st["rules"]["cpu"]
    assert cpu["no_data_since"] == T0 and "no series has matched" in cpu["no_data_reason"]
    await bucket(d, c, clock, 3, cpu_used=50, hosts=1)  # data in bucket T0 + 30
    _, st = await c.call("GET", f"/api/v1/jobs/{JOB}/status")
    assert st["rules"]["cpu"]["no_data_since"] is None
    clock.t = T0 + 70  # the series stopped 3 periods ago
    _, st = await c.call("GET", f"/api/v1/jobs/{JOB}/status")
    cpu = st["rules"]["cpu"]
    assert cpu["no_data_since"] == T0 + 40 and "have sent no sample since" in cpu["no_data_reason"]


async def test_limits_jobs_and_series_per_job(start_daemon: DaemonFactory) -> None:
    """PRODUCT §10: at most `[limits] jobs` jobs (409 job_limit, by POST and by PUT of a new name; a PUT of
    an existing job goes on) and `[limits] series_per_job` series per job (its name for the ingest bound)."""
    clock = Clock(T0 + 1)
    _, c = await start_daemon(clock=clock, limits={"jobs": 1, "series_per_job": 1})
    assert (await c.call("POST", "/api/v1/jobs", seed()))[0] == 201
    other = {**seed(), "job": JOB.replace("job.", "job.other", 1)}
    status, body = await c.call("POST", "/api/v1/jobs", other)
    assert (status, body["error"]["code"]) == (409, "job_limit"), body
    assert "[limits] jobs" in body["error"]["message"]
    status, body = await c.call("PUT", f"/api/v1/jobs/{other['job']}", other)
    assert (status, body["error"]["code"]) == (409, "job_limit"), body
    assert (await c.call("PUT", f"/api/v1/jobs/{JOB}", {**seed(), "max_instances": 7}))[0] == 200
    status, body = await c.call("POST", "/v1/push", items(T0, 50, hosts=2))
    assert (status, body["data"]["Invalid"]) == (200, 1)
    _, st = await c.call("GET", f"/api/v1/jobs/{JOB}/status")
    assert st["buckets"]["series_limit"] == 1 and st["buckets"]["series_refused"] == 1
