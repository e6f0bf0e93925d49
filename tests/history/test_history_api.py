"""`GET /api/v1/jobs/{job}/history` (issue 16): each evaluated bucket is recorded off the hot path."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from oceand.history import downsample
from tests.api.test_admin import JOB, doc
from tests.conftest import DaemonFactory


async def test_an_evaluated_bucket_is_recorded_and_served(start_daemon: DaemonFactory) -> None:
    d, c = await start_daemon(ingest={"grace": "0.05s"})
    assert (await c.call("POST", "/api/v1/jobs", doc(period="1s")))[0] == 201
    now = int(time.time())
    items = [
        {
            "endpoint": h,
            "metric": "cpu.idle",
            "timestamp": now,
            "step": 1,
            "value": idle,
            "counterType": "GAUGE",
            "tags": f"job={JOB}",
        }
        for h, idle in (("h1", 10), ("h2", 30))
    ]
    assert (await c.call("POST", "/v1/push", data=orjson.dumps(items)))[0] == 200
    for _ in range(100):
        if any(r[0] == JOB and r[1] == now for r in d.history.rows()):
            break
        await asyncio.sleep(0.05)
    await d.history.flush()
    status, body = await c.call("GET", f"/api/v1/jobs/{JOB}/history?since={now}&until={now + 1}")
    assert status == 200, body
    [row] = body["rows"]
    assert row["t"] == now and row["values"] == {"cpu": pytest.approx(80.0)} and row["step"] == 0
    assert set(row) == {"t", "step", "values", "ready", "running", "desired", "decision"}


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        pytest.param("?since=abc", 400, "bad_query", id="since-not-a-number"),
        pytest.param("?since=20&until=10", 400, "bad_query", id="until-before-since"),
        pytest.param("?limit=0", 400, "bad_query", id="limit-zero"),
        pytest.param("?limit=1000000", 400, "bad_query", id="limit-too-large"),
    ],
)
async def test_bad_queries_are_400(start_daemon: DaemonFactory, query: str, status: int, code: str) -> None:
    _, c = await start_daemon()
    assert (await c.call("POST", "/api/v1/jobs", doc()))[0] == 201
    got, body = await c.call("GET", f"/api/v1/jobs/{JOB}/history{query}")
    assert (got, body["error"]["code"]) == (status, code)


async def test_unknown_job_is_404(start_daemon: DaemonFactory) -> None:
    _, c = await start_daemon()
    got, body = await c.call("GET", "/api/v1/jobs/job.nope/history")
    assert (got, body["error"]["code"]) == (404, "job_not_found")


def _row(
    t: float, values: dict[str, float], ready: int = 2, decision: int | None = None
) -> dict[str, object]:
    return {
        "t": t,
        "step": 0,
        "values": values,
        "ready": ready,
        "running": ready,
        "desired": ready,
        "decision": decision,
    }


@pytest.mark.parametrize(
    ("rows", "step", "want"),
    [
        pytest.param([], 60, [], id="no-rows"),
        pytest.param(
            [_row(0, {"cpu": 10}), _row(10, {"cpu": 30}), _row(60, {"cpu": 50}, ready=3, decision=7)],
            60,
            [(0, {"cpu": 20.0}, 2, None), (60, {"cpu": 50.0}, 3, 7)],
            id="values-averaged-counts-and-decision-of-the-last-row",
        ),
        pytest.param(
            [_row(5, {"cpu": 10}), _row(15, {"cpu": 20, "qps": 4}), _row(25, {"qps": 8}, decision=3)],
            30,
            [(0, {"cpu": 15.0, "qps": 6.0}, 2, 3)],
            id="each-rule-over-the-rows-that-have-it",
        ),
        pytest.param(
            [_row(10, {"cpu": 1}), _row(20, {"cpu": 2})],
            1,
            [(10, {"cpu": 1.0}, 2, None), (20, {"cpu": 2.0}, 2, None)],
            id="a-step-below-the-spacing-keeps-each-row",
        ),
        pytest.param(
            [_row(119, {"cpu": 1}), _row(121, {"cpu": 3})],
            120,
            [(0, {"cpu": 1.0}, 2, None), (120, {"cpu": 3.0}, 2, None)],
            id="bins-aligned-to-multiples-of-the-step",
        ),
    ],
)
def test_downsample(rows: list[dict[str, object]], step: float, want: list[tuple[object, ...]]) -> None:
    got = downsample(rows, step)  # type: ignore[arg-type]
    assert [(r["t"], r["values"], r["ready"], r["decision"]) for r in got] == want
    assert all(r["step"] == step for r in got)


async def test_history_in_steps(start_daemon: DaemonFactory) -> None:
    d, c = await start_daemon()
    assert (await c.call("POST", "/api/v1/jobs", doc(period="10s")))[0] == 201
    rows = [
        {"job": JOB, "t": t, "values": {"cpu": float(t % 60)}, "ready": 2, "running": 2, "desired": 2}
        for t in range(600, 1200, 10)
    ]
    assert await d.store.add_history(rows) == len(rows)
    status, body = await c.call("GET", f"/api/v1/jobs/{JOB}/history?since=600&until=1200&step=120&limit=3")
    assert status == 200, body
    assert body["step"] == 120
    assert [(r["t"], r["values"]["cpu"]) for r in body["rows"]] == [(600, 25.0), (720, 25.0), (840, 25.0)]
    status, body = await c.call("GET", f"/api/v1/jobs/{JOB}/history?step=0.5")
    assert (status, body["error"]["code"]) == (400, "bad_query")
