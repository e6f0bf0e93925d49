"""The fake Marathon itself answers as the RAML and PROTOCOLS.md §A say (raw HTTP, no client)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.marathon import LOCKED_MESSAGE, FakeMarathon, parse_app_spec
from tests.marathon.conftest import until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def call(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, Any, Any]:
    async with http.request(method, url, **kw) as r:
        body = await r.read()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = body.decode()
        return r.status, data, r.headers


async def test_get_app_is_wrapped_with_counts_tasks_deployments(
    fake: FakeMarathon, http: aiohttp.ClientSession
) -> None:
    fake.add_app("/prod/web", 2, health_checks=True)
    status, body, headers = await call(http, "GET", fake.url + "/v2/apps/prod/web")
    assert status == 200 and headers["X-Marathon-Leader"] == fake.url
    app = body["app"]
    assert (app["id"], app["instances"], app["tasksRunning"], app["tasksHealthy"], app["tasksStaged"]) == (
        "/prod/web",
        2,
        2,
        2,
        0,
    )
    assert app["deployments"] == [] and app["killSelection"] == "YOUNGEST_FIRST"
    task = app["tasks"][0]
    assert task["state"] == "TASK_RUNNING" and task["appId"] == "/prod/web" and task["host"] == "127.0.0.1"
    assert task["healthCheckResults"][0]["alive"] is True
    assert task["id"].startswith("prod_web.instance-")


async def test_group_list_and_app_list(fake: FakeMarathon, http: aiohttp.ClientSession) -> None:
    fake.add_app("/g/a", 1)
    fake.add_app("/g/b", 1)
    fake.add_app("/h", 1)
    _, body, _ = await call(http, "GET", fake.url + "/v2/apps/g/*")
    assert sorted(a["id"] for a in body["*"]) == ["/g/a", "/g/b"]
    _, body, _ = await call(http, "GET", fake.url + "/v2/apps")
    assert len(body["apps"]) == 3 and "tasks" not in body["apps"][0]
    _, body, _ = await call(http, "GET", fake.url + "/v2/apps?embed=apps.tasks")
    assert len(body["apps"][0]["tasks"]) == 1


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        pytest.param("GET", "/v2/apps/nope", None, 404, "App '/nope' does not exist", id="GET missing app"),
        pytest.param(
            "GET", "/v2/apps/nope/tasks", None, 404, "App '/nope' does not exist", id="tasks of missing app"
        ),
        pytest.param(
            "PUT",
            "/v2/apps/nope",
            b'{"instances": 2}',
            422,
            "Object is not valid",
            id="PUT instances to missing app",
        ),
        pytest.param(
            "PATCH",
            "/v2/apps/nope",
            b'{"instances": 2}',
            422,
            "Object is not valid",
            id="PATCH instances to missing app",
        ),
        pytest.param(
            "PATCH",
            "/v2/apps/nope",
            b'{"cmd": "x"}',
            404,
            "App '/nope' does not exist",
            id="PATCH definition to missing app",
        ),
        pytest.param("PUT", "/v2/apps/a", b"{not json", 400, "Invalid JSON", id="bad JSON"),
        pytest.param("PUT", "/v2/apps/a", b"[1]", 400, "Invalid JSON", id="JSON not an object"),
        pytest.param(
            "PUT", "/v2/apps/a", b'{"instances": -1}', 422, "Object is not valid", id="negative instances"
        ),
        pytest.param(
            "PUT", "/v2/apps/a", b'{"instances": "2"}', 422, "Object is not valid", id="string instances"
        ),
        pytest.param(
            "PUT",
            "/v2/apps/a?partialUpdate=false",
            b'{"instances": 2}',
            422,
            "Object is not valid",
            id="full replace without cmd",
        ),
        pytest.param(
            "DELETE",
            "/v2/deployments/zzz",
            None,
            404,
            "DeploymentPlan zzz does not exist",
            id="unknown deployment",
        ),
    ],
)
async def test_errors(
    fake: FakeMarathon,
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    body: bytes | None,
    status: int,
    message: str,
) -> None:
    fake.add_app("/a", 1)
    got, data, _ = await call(
        http, method, fake.url + path, data=body, headers={"Content-Type": "application/json"}
    )
    assert (got, data["message"]) == (status, message)
    assert "/nope" not in fake.apps and fake.scale_requests == []


async def test_put_with_a_definition_creates(fake: FakeMarathon, http: aiohttp.ClientSession) -> None:
    status, body, headers = await call(
        http, "PUT", fake.url + "/v2/apps/new", json={"cmd": "sleep 1", "instances": 1}
    )
    assert status == 201 and headers["Location"].endswith("/v2/apps/new") and body["deploymentId"]


async def test_scale_out_deployment_and_events(fake: FakeMarathon, http: aiohttp.ClientSession) -> None:
    fake.add_app("/a", 1)
    fake.set_deploy_time(None)
    status, body, headers = await call(http, "PUT", fake.url + "/v2/apps/a", json={"instances": 3})
    assert status == 200 and headers["Marathon-Deployment-Id"] == body["deploymentId"] and body["version"]
    dep = body["deploymentId"]
    _, app, _ = await call(http, "GET", fake.url + "/v2/apps/a")
    assert app["app"]["deployments"] == [{"id": dep}] and app["app"]["tasksStaged"] == 2
    _, deps, _ = await call(http, "GET", fake.url + "/v2/deployments")
    assert deps[0]["id"] == dep and deps[0]["affectedApps"] == ["/a"]
    assert deps[0]["currentActions"][0]["action"] == "ScaleApplication"
    status, body, _ = await call(http, "PUT", fake.url + "/v2/apps/a", json={"instances": 4})
    assert (status, body) == (409, {"message": LOCKED_MESSAGE, "deployments": [{"id": dep}]})
    fake.finish_deployments()
    await until(lambda: not fake.deployments)
    kinds = [(e, d.get("taskStatus")) for e, d in fake.events_sent]
    assert kinds == [
        ("api_post_event", None),
        ("deployment_info", None),
        ("status_update_event", "TASK_STAGING"),
        ("status_update_event", "TASK_STAGING"),
        ("status_update_event", "TASK_RUNNING"),
        ("status_update_event", "TASK_RUNNING"),
        ("deployment_success", None),
    ]


async def test_scale_in_kills_youngest_first(fake: FakeMarathon, http: aiohttp.ClientSession) -> None:
    fake.add_app("/a", 1)
    oldest = fake.task_ids("/a")[0]
    fake.scale_now("/a", 3)
    await until(lambda: not fake.deployments)
    youngest = fake.task_ids("/a")[1:]
    await call(http, "PUT", fake.url + "/v2/apps/a", json={"instances": 1})
    await until(lambda: not fake.deployments)
    assert fake.task_ids("/a") == [oldest]
    killed = [d["taskId"] for e, d in fake.events_sent if d.get("taskStatus") == "TASK_KILLED"]
    assert sorted(killed) == sorted(youngest)


async def test_health_checks_turn_healthy_after_running(fake: FakeMarathon) -> None:
    fake.add_app("/hc", 0, health_checks=True)
    fake.scale_now("/hc", 1)
    await until(lambda: not fake.deployments)
    assert fake.apps["/hc"].to_json()["tasksHealthy"] == 1
    assert [e for e, _ in fake.events_sent][-3:] == [
        "health_status_changed_event",
        "instance_health_changed_event",
        "deployment_success",
    ]


async def test_delete_deployment_rollback_and_force(fake: FakeMarathon, http: aiohttp.ClientSession) -> None:
    fake.add_app("/a", 1)
    fake.set_deploy_time(None)
    dep = fake.scale_now("/a", 3)
    status, body, _ = await call(http, "DELETE", f"{fake.url}/v2/deployments/{dep}")
    assert (
        status == 200
        and fake.apps["/a"].instances == 1
        and fake.apps["/a"].deployment == body["deploymentId"]
    )
    status, body, _ = await call(
        http, "DELETE", f"{fake.url}/v2/deployments/{fake.apps['/a'].deployment}?force=true"
    )
    assert status == 202 and fake.apps["/a"].deployment is None


async def test_kill_task_relaunches(fake: FakeMarathon) -> None:
    fake.add_app("/a", 2)
    victim = fake.task_ids("/a")[0]
    fake.kill_task(victim)
    assert victim not in fake.task_ids("/a")
    await until(lambda: len(fake.task_ids("/a")) == 2)
    await until(lambda: all(t.state == "TASK_RUNNING" for t in fake.apps["/a"].tasks.values()))
    assert [d["taskStatus"] for e, d in fake.events_sent] == ["TASK_KILLED", "TASK_STAGING", "TASK_RUNNING"]


async def test_leader_and_info(fake: FakeMarathon, http: aiohttp.ClientSession) -> None:
    _, leader, _ = await call(http, "GET", fake.url + "/v2/leader")
    assert "http://" + leader["leader"] == fake.url
    _, info, _ = await call(http, "GET", fake.url + "/v2/info")
    assert info["elected"] is True and info["leader"] == leader["leader"]


async def test_events_need_the_accept_header(fake: FakeMarathon, http: aiohttp.ClientSession) -> None:
    status, body, _ = await call(http, "GET", fake.url + "/v2/events")
    assert status == 405 and "HTTP method GET is not supported by this URL" in body


async def test_events_frames_filter_and_heartbeats(fake: FakeMarathon, http: aiohttp.ClientSession) -> None:
    fake.add_app("/a", 1)
    fake.heartbeat = 0.02
    headers = {"Accept": "text/event-stream"}
    async with http.get(fake.url + "/v2/events?event_type=deployment_success", headers=headers) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        fake.scale_now("/a", 2)
        raw = b""
        async with asyncio.timeout(2):
            while b"deployment_success" not in raw or not raw.endswith(b"\r\n\r\n"):
                raw += await r.content.readany()
            while b"\r\n\r\n\r\n" not in raw:  # a heartbeat after the frame
                raw += await r.content.readany()
    frame = raw.split(b"\r\n\r\n")[0].lstrip(b"\r\n")
    event, data = frame.split(b"\r\n")
    assert event == b"event: deployment_success"
    assert json.loads(data.removeprefix(b"data: "))["eventType"] == "deployment_success"
    assert b"status_update_event" not in raw  # filtered server-side


async def test_failure_and_delay_knobs(fake: FakeMarathon, http: aiohttp.ClientSession) -> None:
    fake.add_app("/a", 1)
    fake.fail_next(1, 503, "/v2/apps/a")
    fake.fail_next(1, 500, "/v2/deployments")
    assert (await call(http, "GET", fake.url + "/v2/deployments"))[0] == 500
    assert (await call(http, "GET", fake.url + "/v2/leader"))[0] == 200
    assert (await call(http, "GET", fake.url + "/v2/apps/a"))[0] == 503
    assert (await call(http, "GET", fake.url + "/v2/apps/a"))[0] == 200
    fake.delay_next(1, 0.05, "/v2/leader")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await call(http, "GET", fake.url + "/v2/leader")
    assert loop.time() - t0 >= 0.05


@pytest.mark.parametrize(
    "after", [pytest.param(False, id="slow to land"), pytest.param(True, id="slow reply")]
)
async def test_slow_put_lands_even_when_the_client_is_gone(
    fake: FakeMarathon, http: aiohttp.ClientSession, after: bool
) -> None:
    """A slow PUT: the client gives up (as a killed daemon would); the write lands all the same, with
    lastScalingAt, a deployment in GET /v2/deployments and the app's `deployments` (RAML)."""
    fake.add_app("/a", 1)
    fake.set_deploy_time(None)  # hold the deployment so that it can be seen
    fake.set_put_delay(0.3, after=after)
    with pytest.raises(TimeoutError):
        await call(
            http, "PUT", fake.url + "/v2/apps/a", json={"instances": 3},
            headers={"X-Oceand-Decision": "9"}, timeout=aiohttp.ClientTimeout(total=0.05),
        )  # fmt: skip
    assert fake.apps["/a"].instances == (3 if after else 1)
    await until(lambda: fake.apps["/a"].instances == 3, 2)
    _, body, _ = await call(http, "GET", fake.url + "/v2/apps/a")
    _, deps, _ = await call(http, "GET", fake.url + "/v2/deployments")
    assert body["app"]["versionInfo"]["lastScalingAt"] == deps[0]["version"]
    assert body["app"]["deployments"] == [{"id": deps[0]["id"]}] and deps[0]["affectedApps"] == ["/a"]
    _, log, _ = await call(http, "GET", fake.url + "/_fake/requests")
    assert log[0]["oceand"] == {"X-Oceand-Decision": "9"}


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        pytest.param("/a:2", ("/a", 2, False), id="count"),
        pytest.param("/g/b:0:hc", ("/g/b", 0, True), id="health checks"),
        pytest.param("/c", ("/c", 1, False), id="default one"),
    ],
)
def test_parse_app_spec(spec: str, parsed: tuple[str, int, bool]) -> None:
    assert parse_app_spec(spec) == parsed


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param("a:2", id="relative"),
        pytest.param("/a:2:x", id="bad flag"),
        pytest.param("/a:two", id="count"),
    ],
)
def test_parse_app_spec_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_app_spec(spec)


async def test_runs_as_a_process_with_a_control_api(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    ready = tmp_path / "url"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.marathon",
        "--port",
        "0",
        "--apps",
        "/a:2",
        "/b:1:hc",
        "--ready-file",
        str(ready),
        "--deploy-time",
        "0",
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        url = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().strip()
        assert ready.read_text().strip() == url
        _, app, _ = await call(http, "GET", url + "/v2/apps/b")
        assert app["app"]["tasksHealthy"] == 1
        assert (await call(http, "POST", url + "/_fake/fail_next", json={"n": 1, "status": 503}))[0] == 200
        assert (await call(http, "PUT", url + "/v2/apps/a", json={"instances": 3}))[0] == 503
        assert (await call(http, "PUT", url + "/v2/apps/a", json={"instances": 3}))[0] == 200
        _, scales, _ = await call(http, "GET", url + "/_fake/scale_requests")
        assert [(s["app"], s["instances"], s["force"]) for s in scales] == [("/a", 3, False)]
        _, reqs, _ = await call(http, "GET", url + "/_fake/requests")
        assert [r["status"] for r in reqs] == [200, 503, 200]
        assert (await call(http, "POST", url + "/_fake/drop_streams"))[0] == 200
        status, body, _ = await call(http, "POST", url + "/_fake/fail_next", json={"status": 503})
        assert status == 400 and "bad control call fail_next" in body["message"]
        assert (await call(http, "POST", url + "/_fake/nonsense"))[0] == 404
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0


def test_cli_rejects_a_bad_app_spec() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "tests.fakes.marathon", "--apps", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=30,
    )
    assert r.returncode == 2 and "bad app spec 'nope'" in r.stderr
