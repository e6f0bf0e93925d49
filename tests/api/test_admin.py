"""The admin API and the push endpoint against a daemon on 127.0.0.1 (PRODUCT §2.1, §5)."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from tests.conftest import DaemonFactory

JOB = "job.ocean-monitor-job_service.ocean-monitor-job_cluster.production-lg_pdl.ocean_owt.inf_cop.xiaomi"


def doc(name: str = JOB, **over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "job": name,
        "target": {"cluster": "lg", "app": "/ocean/monitor-job"},
        "min_instances": 1,
        "max_instances": 5,
        "rules": [
            {
                "name": "cpu",
                "type": "threshold",
                "metric": "cpu.used",
                "aggregate": "avg",
                "scale_out": {"above": 80, "consecutive": 3, "step": 1},
                "scale_in": {"below": 60, "consecutive": 3, "step": 1},
            }
        ],
    }
    d.update(over)
    return d


async def test_job_crud_roundtrip(start_daemon: DaemonFactory) -> None:
    _, c = await start_daemon()
    status, body = await c.call("POST", "/api/v1/jobs", doc())
    assert status == 201, body
    assert body["version"] == 1 and body["job"]["mode"] == "dry-run"  # new jobs start in dry-run
    status, body = await c.call("POST", "/api/v1/jobs", doc())
    assert status == 409 and body["error"]["code"] == "job_exists"
    status, body = await c.call("GET", f"/api/v1/jobs/{JOB}")
    assert status == 200 and body["job"]["rules"][0]["scale_out"]["above"] == 80
    status, body = await c.call("PUT", f"/api/v1/jobs/{JOB}", doc(max_instances=8))
    assert (status, body["version"]) == (200, 2)
    status, body = await c.call("GET", "/api/v1/jobs")
    assert [j["job"] for j in body["jobs"]] == [JOB]
    status, body = await c.call("POST", f"/api/v1/jobs/{JOB}/mode", {"mode": "paused"})
    assert (status, body["mode"]) == (200, "paused")
    status, _ = await c.call("DELETE", f"/api/v1/jobs/{JOB}")
    assert status == 204
    status, body = await c.call("GET", f"/api/v1/jobs/{JOB}")
    assert status == 404 and body["error"]["code"] == "job_not_found"


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "code", "detail"),
    [
        pytest.param("POST", "/api/v1/jobs", b"{not json", 400, "bad_json", None, id="malformed JSON"),
        pytest.param("POST", "/api/v1/jobs", b"", 400, "empty_body", None, id="empty body"),
        pytest.param(
            "POST", "/api/v1/jobs", b"[1,2]", 422, "invalid_document", "(document)", id="array, not object"
        ),
        pytest.param("POST", "/api/v1/jobs", b'{"job": NaN}', 400, "bad_json", None, id="NaN literal"),
        pytest.param(
            "POST",
            "/api/v1/jobs",
            doc(min_instances="one"),
            422,
            "invalid_document",
            "min_instances",
            id="wrong type",
        ),
        pytest.param(
            "POST",
            "/api/v1/jobs",
            doc(max_instances=-1),
            422,
            "invalid_document",
            "max_instances",
            id="out of range",
        ),
        pytest.param(
            "POST",
            "/api/v1/jobs",
            doc(min_instances=6),
            422,
            "invalid_document",
            "(document)",
            id="min > max",
        ),
        pytest.param(
            "POST", "/api/v1/jobs", doc(colour="red"), 422, "invalid_document", "colour", id="unknown field"
        ),
        pytest.param(
            "POST", "/api/v1/jobs", doc(name="a/b"), 422, "invalid_document", "job", id="slash in job name"
        ),
        pytest.param(
            "POST",
            "/api/v1/jobs",
            doc(name="x" * 300),
            422,
            "invalid_document",
            "job",
            id="300-char job name",
        ),
        pytest.param(
            "POST", "/api/v1/jobs", doc(name="任务"), 422, "invalid_document", "job", id="unicode job name"
        ),
        pytest.param(
            "POST",
            "/api/v1/jobs",
            doc(rules=[{"name": "q", "type": "target", "metric": "m", "target": 0}]),
            422,
            "invalid_document",
            "rules[0].target",
            id="rule field path",
        ),
        pytest.param(
            "POST",
            "/api/v1/jobs",
            doc(rules=[{"name": "s", "type": "schedule", "cron": "61 2 * * *", "instances": 2}]),
            422,
            "invalid_document",
            "rules[0].cron",
            id="bad cron",
        ),
        pytest.param(
            "POST",
            "/api/v1/jobs",
            doc(
                rules=[
                    {
                        "name": "s",
                        "type": "schedule",
                        "cron": "0 2 * * *",
                        "timezone": "Mars/Base",
                        "instances": 2,
                    }
                ]
            ),
            422,
            "invalid_document",
            "rules[0].timezone",
            id="bad time zone",
        ),
        pytest.param(
            "PUT", f"/api/v1/jobs/{'x' * 300}", doc(), 400, "bad_job_name", None, id="300-char name in URL"
        ),
        pytest.param(
            "PUT", "/api/v1/jobs/other", doc(), 422, "invalid_document", "job", id="URL and document disagree"
        ),
        pytest.param(
            "GET", "/api/v1/jobs/nope/status", None, 404, "job_not_found", None, id="status of unknown job"
        ),
        pytest.param("GET", "/api/v1/jobs/a/b", None, 404, "not_found", None, id="slash in URL name"),
        pytest.param("POST", "/v1/push", b"", 400, "empty_body", None, id="push: empty"),
        pytest.param("POST", "/v1/push", b"[]", 400, "empty_body", None, id="push: empty array"),
        pytest.param("POST", "/v1/push", b'{"metric": 1}', 400, "not_an_array", None, id="push: an object"),
        pytest.param("POST", "/v1/push", b"[{]", 400, "bad_json", None, id="push: malformed"),
        pytest.param("POST", "/v1/push", b"[Infinity]", 400, "bad_json", None, id="push: Infinity literal"),
        pytest.param(
            "POST", "/v1/push", b'[{"endpoint": "\xff"}]', 400, "bad_json", None, id="push: bad UTF-8"
        ),
        pytest.param(
            "GET", "/v1/falcon/alarm?endpoint=h", None, 400, "bad_alarm", None, id="alarm: missing params"
        ),
    ],
)
async def test_bad_input_gets_a_4xx_naming_the_problem(
    start_daemon: DaemonFactory,
    method: str,
    path: str,
    payload: Any,
    status: int,
    code: str,
    detail: str | None,
) -> None:
    _, c = await start_daemon()
    data = payload if isinstance(payload, bytes) else None
    js = payload if not isinstance(payload, bytes) else None
    got, body = await c.call(method, path, json=js, data=data)
    assert got == status, body
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    if detail is not None:
        assert detail in [d["path"] for d in body["error"]["details"]], body


async def test_every_error_of_a_document_is_listed(start_daemon: DaemonFactory) -> None:
    _, c = await start_daemon()
    bad = doc(
        min_instances=-1, period="soon", rules=[{"name": "q", "type": "target", "metric": "", "target": -5}]
    )
    status, body = await c.call("POST", "/api/v1/jobs", bad)
    assert status == 422
    paths = {d["path"] for d in body["error"]["details"]}
    assert {"min_instances", "period", "rules[0].metric", "rules[0].target"} <= paths


async def test_huge_body_is_413(start_daemon: DaemonFactory) -> None:
    _, c = await start_daemon(server={"listen": "127.0.0.1:0", "max_body": "1KiB"})
    status, body = await c.call("POST", "/v1/push", data=b"[" + b"1," * 2000 + b"1]")
    assert status == 413 and body["error"]["code"] == "body_too_large"


async def test_push_reply_has_transfer_shape_and_status_shows_the_bucket(start_daemon: DaemonFactory) -> None:
    _, c = await start_daemon(ingest={"grace": "0.05s"})
    assert (await c.call("POST", "/api/v1/jobs", doc(period="1s")))[0] == 201
    now = int(time.time())
    items = [
        {
            "endpoint": "h1",
            "metric": "cpu.idle",
            "timestamp": now,
            "step": 1,
            "value": 10,
            "counterType": "GAUGE",
            "tags": f"job={JOB}",
        },
        {
            "endpoint": "h2",
            "metric": "cpu.idle",
            "timestamp": now,
            "step": 1,
            "value": 30,
            "counterType": "GAUGE",
            "tags": f"job={JOB}",
        },
        {
            "endpoint": "h3",
            "metric": "cpu.idle",
            "timestamp": now,
            "step": 0,
            "value": 30,
            "counterType": "GAUGE",
            "tags": f"job={JOB}",
        },
    ]
    status, body = await c.call("POST", "/v1/push", data=orjson.dumps(items))
    assert status == 200
    assert body["msg"] == "success"
    assert (body["data"]["Total"], body["data"]["Invalid"]) == (3, 1)
    assert "step" in body["data"]["Errors"][0]
    for _ in range(100):
        status, st = await c.call("GET", f"/api/v1/jobs/{JOB}/status")
        if st["rules"]["cpu"].get("last_bucket") == now:
            break
        await _sleep(0.05)
    assert st["rules"]["cpu"]["value"] == pytest.approx(80.0)
    assert st["rules"]["cpu"]["reporters"] == 2
    assert st["effective_mode"] == "dry-run"
    assert "no Marathon cluster" in st["dry_run_reason"]


async def _sleep(s: float) -> None:
    import asyncio

    await asyncio.sleep(s)


async def test_health_ready_metrics(start_daemon: DaemonFactory) -> None:
    _, c = await start_daemon()
    assert (await c.call("GET", "/healthz"))[0] == 200
    status, body = await c.call("GET", "/readyz")
    assert status == 200 and body["store"] is True
    await c.call(
        "POST",
        "/v1/push",
        data=b'[{"endpoint":"h","metric":"m","timestamp":1,"step":10,"value":"x","counterType":"GAUGE","tags":""}]',
    )
    status, text = await c.call("GET", "/metrics")
    assert status == 200
    assert 'oceand_samples_total{result="rejected"} 1.0' in text
    assert "oceand_decisions_total" in text and "oceand_event_stream_connected" in text


async def test_openapi_matches_the_routes(start_daemon: DaemonFactory) -> None:
    d, c = await start_daemon()
    status, spec = await c.call("GET", "/api/v1/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.")
    described = {(p, m.upper()) for p, ops in spec["paths"].items() for m in ops if m != "parameters"}
    app = d.build_app()
    routed = {
        (r.resource.canonical, r.method)
        for r in app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    assert described == routed
    assert "JobDocument" in spec["components"]["schemas"]
