"""The admin API and the push endpoint against a daemon on 127.0.0.1 (PRODUCT §2.1, §5)."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from actuators.marathon import RecordingActuator
from oceand.api.openapi import spec as openapi_spec
from policies.types import ActuationOutcome, ActuationState, Decision
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
        pytest.param(
            "GET", "/api/v1/jobs/web%0A", None, 400, "bad_job_name", None, id="trailing newline in URL name"
        ),
        pytest.param("DELETE", "/api/v1/jobs/web%00", None, 400, "bad_job_name", None, id="NUL in URL name"),
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


def _padded(data: Any, size: int) -> bytes:
    """`data` as JSON followed by spaces up to `size` bytes: valid JSON of exactly that size."""
    body = orjson.dumps(data)
    return body + b" " * (size - len(body))


MIB = 1024**2


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        pytest.param("POST", "/api/v1/jobs", doc(), id="job create"),
        pytest.param("PUT", f"/api/v1/jobs/{JOB}", doc(), id="job replace"),
        pytest.param("PUT", "/api/v1/templates/web", {"max_instances": 4}, id="template"),
        pytest.param("POST", "/api/v1/tokens", {"name": "t", "scopes": ["read"]}, id="token"),
    ],
)
async def test_admin_bodies_are_at_most_one_mib(
    start_daemon: DaemonFactory, method: str, path: str, data: Any
) -> None:
    """PRODUCT §10: body size per route, the admin API's 1 MiB (the listener's server.max_body, 8 MiB,
    is the ingest routes' limit). Declared or chunked, one byte over is 413 naming the limit; at the
    limit the body is read (and here accepted)."""
    _, c = await start_daemon()
    status, body = await c.call(method, path, data=_padded(data, MIB + 1))
    assert (status, body["error"]["code"]) == (413, "body_too_large"), body
    assert f"{MIB + 1} bytes, the admin API takes at most {MIB}" in body["error"]["message"]

    async def chunks() -> Any:  # no Content-Length: aiohttp sends it chunked
        whole = _padded(data, MIB + 1)
        for i in range(0, len(whole), 64 * 1024):
            yield whole[i : i + 64 * 1024]

    async with c.session.request(method, c.base + path, data=chunks()) as r:
        assert r.status == 413 and (await r.json())["error"]["code"] == "body_too_large"
    status, body = await c.call(method, path, data=_padded(data, MIB))
    assert status in (200, 201), body


def test_openapi_says_413_wherever_a_body_is_read() -> None:
    ops = [op for ops in openapi_spec()["paths"].values() for op in ops.values() if "requestBody" in op]
    assert len(ops) >= 10 and all("413" in op["responses"] for op in ops)


async def test_a_push_may_be_larger_than_an_admin_body(start_daemon: DaemonFactory) -> None:
    _, c = await start_daemon()
    item = {"endpoint": "h", "metric": "m", "timestamp": 1, "step": 10, "value": 1, "counterType": "GAUGE"}
    status, body = await c.call("POST", "/v1/push", data=_padded([item], 2 * MIB))
    assert (status, body["data"]["Total"]) == (200, 1), body


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
        if r.method != "HEAD"
        and r.resource is not None
        and not r.resource.canonical.startswith("/ui")  # the web console's files (docs/console.md), no API
        and not r.resource.canonical.startswith("/internal/")  # between daemons (docs/cluster.md)
    }
    assert described == routed
    assert not any(p.startswith("/internal/") for p in spec["paths"]), "internal routes are not public"
    assert "JobDocument" in spec["components"]["schemas"]


def test_openapi_decision_schemas_name_every_field_of_the_model() -> None:
    """The Decision and ActuationOutcome schemas list exactly what the API view holds (issue 11)."""
    schemas = openapi_spec()["components"]["schemas"]
    outcome = ActuationOutcome("applied")
    view = outcome.view(Decision("j", 1.0, "manual", 1, 2).to_json())
    assert set(schemas["Decision"]["properties"]) == set(view)
    assert set(schemas["ActuationOutcome"]["properties"]) == set(view["outcome"])


# --- issue 18 (document bounds) and issue 11 (what a new user tripped over) ------------------------------


def _schedule(every: Any) -> dict[str, Any]:
    return {"name": "s", "type": "schedule", "start": "2024-01-01T00:00:00", "every": every, "instances": 2}


@pytest.mark.parametrize(
    ("payload", "path", "bound"),
    [
        pytest.param(doc(rules=[_schedule(0.01)]), "rules[0].every", "schedule_every", id="every 0.01 s"),
        pytest.param(doc(name="."), "job", "job_name", id="job ."),
        pytest.param(doc(name=".."), "job", "job_name", id="job .."),
        pytest.param(doc(name="-x"), "job", "job_name", id="job -x"),
        pytest.param(
            doc(rules=[{"name": "a", "type": "alarm", "match": {"metric": "m" * 300}}]),
            "rules[0].match.metric",
            "string_length",
            id="long alarm match metric",
        ),
        pytest.param(
            doc(rules=[{"name": "a", "type": "alarm", "match": {"metric": "m", "tags": {"k": "v" * 300}}}]),
            "rules[0].match.tags",
            "string_length",
            id="long alarm match tag",
        ),
        pytest.param(
            doc(rules=[{**doc()["rules"][0], "selector": {"tags": {f"k{i}": "v" for i in range(100)}}}]),
            "rules[0].selector.tags",
            "tag_count",
            id="100 selector tags",
        ),
        pytest.param(
            doc(behavior={"DEFAULT_IN_COOLDOWN": -5}),
            "behavior.DEFAULT_IN_COOLDOWN",
            None,
            id="behavior constant",
        ),
    ],
)
async def test_document_bounds_are_422_naming_the_field_and_counted(
    start_daemon: DaemonFactory, payload: dict[str, Any], path: str, bound: str | None
) -> None:
    _, c = await start_daemon()
    status, body = await c.call("POST", "/api/v1/jobs", payload)
    assert status == 422, body
    assert [d["path"] for d in body["error"]["details"]] == [path]
    status, body = await c.call("GET", "/api/v1/jobs")
    assert body["jobs"] == []
    _, text = await c.call("GET", "/metrics")
    if bound is not None:
        assert f'oceand_job_documents_rejected_total{{bound="{bound}"}} 1.0' in text
    else:
        assert "oceand_job_documents_rejected_total{" not in text


async def test_job_responses_show_no_behavior_constants(start_daemon: DaemonFactory) -> None:
    _, c = await start_daemon()
    for status, body in (
        await c.call("POST", "/api/v1/jobs", doc()),
        await c.call("GET", f"/api/v1/jobs/{JOB}"),
        await c.call("PUT", f"/api/v1/jobs/{JOB}", doc(max_instances=6)),
    ):
        assert status in (200, 201)
        assert set(body["job"]["behavior"]) == {"scale_out", "scale_in"}, body["job"]["behavior"]


async def test_unknown_job_field_suggests_the_closest(start_daemon: DaemonFactory) -> None:
    _, c = await start_daemon()
    status, body = await c.call("POST", "/api/v1/jobs", doc(max_instance=3))
    assert status == 422
    assert body["error"]["details"] == [
        {"path": "max_instance", "message": "unknown field (did you mean 'max_instances'?)"}
    ]


async def test_mode_reply_says_the_effective_mode_and_why(start_daemon: DaemonFactory) -> None:
    _, c = await start_daemon()  # no [marathon.lg]: the job cannot be active
    assert (await c.call("POST", "/api/v1/jobs", doc()))[0] == 201
    status, body = await c.call("POST", f"/api/v1/jobs/{JOB}/mode", {"mode": "active"})
    assert status == 200, body
    assert (body["mode"], body["effective_mode"]) == ("active", "dry-run")
    assert "no Marathon cluster 'lg'" in body["dry_run_reason"]
    _, st = await c.call("GET", f"/api/v1/jobs/{JOB}/status")
    assert {k: st[k] for k in ("mode", "effective_mode", "dry_run_reason")} == {
        k: body[k] for k in ("mode", "effective_mode", "dry_run_reason")
    }
    status, body = await c.call("POST", f"/api/v1/jobs/{JOB}/mode", {"mode": "paused"})
    assert (status, body["mode"], body["effective_mode"]) == (200, "paused", "paused")


async def test_mode_reply_names_the_daemon_wide_dry_run(start_daemon: DaemonFactory) -> None:
    _, c = await start_daemon(actuator=RecordingActuator(), dry_run=True)
    assert (await c.call("POST", "/api/v1/jobs", doc()))[0] == 201
    status, body = await c.call("POST", f"/api/v1/jobs/{JOB}/mode", {"mode": "active"})
    assert (status, body["mode"], body["effective_mode"]) == (200, "active", "dry-run")
    assert "dry_run" in body["dry_run_reason"]
    _, st = await c.call("GET", f"/api/v1/jobs/{JOB}/status")
    assert st["dry_run_reason"] == body["dry_run_reason"]


async def test_mode_reply_when_nothing_forces_dry_run(start_daemon: DaemonFactory) -> None:
    _, c = await start_daemon(actuator=RecordingActuator())
    assert (await c.call("POST", "/api/v1/jobs", doc()))[0] == 201
    status, body = await c.call("POST", f"/api/v1/jobs/{JOB}/mode", {"mode": "active"})
    assert status == 200, body
    assert (body["mode"], body["effective_mode"], body["dry_run_reason"]) == ("active", "active", None)


async def test_identical_put_keeps_the_version_and_the_state(start_daemon: DaemonFactory) -> None:
    d, c = await start_daemon()
    assert (await c.call("POST", "/api/v1/jobs", doc()))[0] == 201
    rt = d.engine.jobs[JOB]
    buckets, state = rt.buckets, rt.state
    # a permanent failure: only a changed document clears it
    rt.actuation = ActuationState(blocked="HTTP 403: forbidden", blocked_version=1)
    same = doc(mode="dry-run", period="10s", behavior={"scale_in": {}})  # defaults written out
    status, body = await c.call("PUT", f"/api/v1/jobs/{JOB}", same)
    assert (status, body["version"]) == (200, 1)
    status, body = await c.call("POST", f"/api/v1/jobs/{JOB}/mode", {"mode": "dry-run"})
    assert (status, body["version"]) == (200, 1)
    assert d.engine.jobs[JOB] is rt and rt.buckets is buckets and rt.state is state
    assert rt.blocked == "HTTP 403: forbidden"
    assert (await d.store.get_job(JOB)).version == 1
    status, body = await c.call("PUT", f"/api/v1/jobs/{JOB}", doc(max_instances=6))
    assert (status, body["version"]) == (200, 2)
    assert rt.blocked is None


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        pytest.param("PATCH", "/api/v1/jobs", {"GET", "HEAD", "POST"}, id="jobs"),
        pytest.param("POST", f"/api/v1/jobs/{JOB}", {"GET", "HEAD", "PUT", "DELETE"}, id="one job"),
        pytest.param("PUT", f"/api/v1/jobs/{JOB}/status", {"GET", "HEAD"}, id="status"),
        pytest.param("DELETE", f"/api/v1/jobs/{JOB}/decisions", {"GET", "HEAD"}, id="decisions"),
        pytest.param("GET", f"/api/v1/jobs/{JOB}/scale", {"POST"}, id="scale"),
        pytest.param("GET", f"/api/v1/jobs/{JOB}/mode", {"POST"}, id="mode"),
        pytest.param("GET", "/v1/push", {"POST"}, id="push"),
        pytest.param("PUT", "/v1/falcon/alarm", {"GET", "HEAD", "POST"}, id="alarm"),
        pytest.param("POST", "/healthz", {"GET", "HEAD"}, id="healthz"),
        pytest.param("POST", "/api/v1/openapi.json", {"GET", "HEAD"}, id="openapi"),
    ],
)
async def test_405_names_the_allowed_methods(
    start_daemon: DaemonFactory, method: str, path: str, allow: set[str]
) -> None:
    _, c = await start_daemon()
    async with c.session.request(method, c.base + path) as r:
        assert r.status == 405
        assert {m.strip() for m in r.headers["Allow"].split(",")} == allow
        body = orjson.loads(await r.read())
    assert body["error"]["code"] == "method_not_allowed"


async def test_openapi_states_the_document_bounds(start_daemon: DaemonFactory) -> None:
    _, c = await start_daemon()
    _, spec = await c.call("GET", "/api/v1/openapi.json")
    schemas = spec["components"]["schemas"]
    assert schemas["ScheduleRule"]["properties"]["every"]["minimum"] == 1
    assert set(schemas["Behavior"]["properties"]) == {"scale_out", "scale_in"}
    assert schemas["AlarmMatch"]["properties"]["tags"]["maxProperties"] == 32
    assert schemas["JobDocument"]["properties"]["job"]["pattern"] == "^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$"
    job_param = spec["paths"]["/api/v1/jobs/{job}"]["parameters"][0]["schema"]
    assert job_param["pattern"] == "^[A-Za-z0-9._-]{1,200}$"  # also reaches jobs stored by earlier versions
    mode_reply = spec["paths"]["/api/v1/jobs/{job}/mode"]["post"]["responses"]["200"]
    props = mode_reply["content"]["application/json"]["schema"]["properties"]
    assert {"mode", "effective_mode", "dry_run_reason", "version"} <= set(props)


async def test_a_job_stored_by_an_earlier_version_still_loads(start_daemon: DaemonFactory) -> None:
    d, _ = await start_daemon()
    old = doc()
    old["behavior"] = {
        "scale_out": {"stabilization": 0.0},
        "scale_in": {"stabilization": 0.0},
        "DEFAULT_OUT_COOLDOWN": 30.0,
        "DEFAULT_IN_COOLDOWN": 300.0,
    }  # what every earlier version stored
    await d.store.put_job(JOB, old)
    await d.store.put_job("..", doc(name=".."))
    await d.stop()
    _, c = await start_daemon()
    status, body = await c.call("GET", f"/api/v1/jobs/{JOB}")
    assert status == 200 and set(body["job"]["behavior"]) == {"scale_out", "scale_in"}
    _, body = await c.call("GET", "/api/v1/jobs")
    assert [j["job"] for j in body["jobs"]] == ["..", JOB]


async def test_a_document_that_cannot_work_as_written_is_stored_with_warnings(
    start_daemon: DaemonFactory,
) -> None:
    """Issue 17: a target of 95 on cpu.used (capped at 100) never leaves the 10 % tolerance band, so the
    rule never scales out: the 201/200 say so in `warnings`, and so do GET and the job status."""
    _, c = await start_daemon()
    status, body = await c.call("POST", "/api/v1/jobs", doc())
    assert (status, body["warnings"]) == (201, [])
    never = [{"name": "cpu", "type": "target", "metric": "cpu.used", "target": 95}]
    status, body = await c.call("PUT", f"/api/v1/jobs/{JOB}", doc(rules=never))
    assert status == 200 and body["version"] == 2
    assert [(w["path"], w["code"]) for w in body["warnings"]] == [("rules[0].target", "never_scales_out")]
    assert "never scales out" in body["warnings"][0]["message"]
    _, got = await c.call("GET", f"/api/v1/jobs/{JOB}")
    assert got["warnings"] == body["warnings"]
    _, st = await c.call("GET", f"/api/v1/jobs/{JOB}/status")
    assert st["warnings"] == body["warnings"] and st["startup"] is None
    fixed = [{"name": "cpu", "type": "target", "metric": "cpu.used", "target": 70}]
    status, body = await c.call("PUT", f"/api/v1/jobs/{JOB}", doc(rules=fixed))
    assert (status, body["warnings"]) == (200, [])
