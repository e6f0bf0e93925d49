"""`GET /api/v1/jobs/{job}/history` (issue 16): each evaluated bucket is recorded off the hot path."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

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
        if any(r[0] == JOB and r[1] == now for r in d.history._rows):
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
