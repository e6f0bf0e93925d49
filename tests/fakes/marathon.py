"""An in-process fake Marathon built from Marathon's RAML (reference/marathon/*.raml) and PROTOCOLS.md §A.

Endpoints: GET/PUT/PATCH /v2/apps/{id} (wrapped `{"app": …}` with tasks, deployments and counts; `…/*`
lists a group), GET /v2/apps (list, `embed=apps.tasks`), GET /v2/apps/{id}/tasks, GET /v2/deployments,
DELETE /v2/deployments/{id}, GET /v2/leader, GET /v2/info and the SSE stream GET /v2/events.

Behaviour that a scaler meets: slow PUTs (`set_put_delay`: slow to land, or landed with a late reply),
failing, delayed and reply-losing requests (`fail_next`, `delay_next`, `lose_reply_next`); a scale PUT
sets `versionInfo.lastScalingAt` and starts a deployment (listed in the app's `deployments` and in GET
/v2/deployments with its `version`) that takes `deploy_time` seconds (or is held until
`finish_deployments()` when the time is None); new tasks go TASK_STAGING → TASK_RUNNING and, when
the app has health checks, healthy `health_delay` later; scale-in kills the youngest tasks first; a second
PUT while a deployment runs answers 409 with Marathon's exact text unless `force=true` (which cancels the
running one, reported as `deployment_failed`); a PUT of `{"instances": N}` to a missing app answers 422
(never creates it). Basic and DC/OS `token=` auth, `X-Marathon-Leader`, `Marathon-Deployment-Id`.
A standby (`standby=True`) redirects /v2/events to the leader (302) and proxies the rest, or answers 502.

Facts the RAML leaves open, chosen here: a cancelled deployment is reported as `deployment_failed`;
a killed task is relaunched (as Marathon keeps `instances` running) without a deployment.

Run standalone for end-to-end tests:
    python -m tests.fakes.marathon --port 0 --apps /a:2 /b:1:hc --ready-file F
It prints its URL, writes it to F, and serves a control API under /_fake/ (see `_control_routes`).
This module is longer than most: it is one fake of one external API, kept in one place on purpose.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import os
import signal
import ssl
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from aiohttp import web

STAGING, RUNNING, KILLING, KILLED = "TASK_STAGING", "TASK_RUNNING", "TASK_KILLING", "TASK_KILLED"
LOCKED_MESSAGE = (
    "App is locked by one or more deployments. Override with the option '?force=true'. "
    "View details at '/v2/deployments/<DEPLOYMENT_ID>'."
)
_BASIC_401_HTML = (
    '<html>\n<head>\n<meta http-equiv="Content-Type" content="text/html;charset=ISO-8859-1"/>\n'
    "<title>Error 401 Unauthorized</title>\n</head>\n<body><h2>HTTP ERROR 401</h2>\n"
    "<p>Problem accessing {path}. Reason:\n<pre>    Unauthorized</pre></p>\n</body>\n</html>\n"
)
_FAIL_MESSAGES = {
    500: "Internal server error",
    502: "Could not determine the current leader",
    503: "Too many concurrent requests! Allowed: 1.",
    504: "Gateway timeout",
}


def _now_iso() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def _message(status: int, message: str, **extra: Any) -> web.Response:
    return _json({"message": message, **extra}, status=status)


@dataclass
class RequestRecord:
    at: float  # time.monotonic() at arrival
    method: str
    path: str  # decoded
    raw_path: str  # as sent, percent-encoding kept
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int = 0
    wall: float = 0.0  # time.time() at arrival: compared with the wall-clock deadlines daemons record

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "wall": self.wall,
            "method": self.method,
            "path": self.path,
            "raw_path": self.raw_path,
            "query": self.query,
            "body": self.body.decode("utf-8", "replace"),
            "status": self.status,
            "oceand": {str(k): v for k, v in self.headers.items() if k.lower().startswith("x-oceand-")},
        }


@dataclass
class FakeTask:
    id: str
    app_id: str
    host: str
    ports: list[int]
    seq: int
    state: str = STAGING
    staged_at: str = field(default_factory=_now_iso)
    started_at: str | None = None
    version: str = ""
    alive: bool | None = None  # health check result; None = no result yet
    healthy_at: str | None = None  # the first time its health check passed (`firstSuccess`)

    def set_alive(self, alive: bool) -> None:
        self.alive = alive
        if alive and self.healthy_at is None:
            self.healthy_at = _now_iso()

    def to_json(self, health_checks: bool) -> dict[str, Any]:
        d: dict[str, Any] = {
            "appId": self.app_id,
            "host": self.host,
            "id": self.id,
            "ipAddresses": [{"ipAddress": self.host, "protocol": "IPv4"}],
            "ports": self.ports,
            "servicePorts": [],
            "slaveId": "fake-agent-S0",
            "stagedAt": self.staged_at,
            "state": self.state,
            "version": self.version,
            "region": "primary",
            "zone": "a",
            "role": "*",
        }
        if self.started_at is not None:
            d["startedAt"] = self.started_at
        if health_checks and self.alive is not None:
            d["healthCheckResults"] = [
                {
                    "alive": self.alive,
                    "consecutiveFailures": 0 if self.alive else 1,
                    "firstSuccess": self.healthy_at,
                    "lastSuccess": self.healthy_at if self.alive else None,
                    "lastFailure": None if self.alive else _now_iso(),
                    "lastFailureCause": None if self.alive else "fake: set_task_health",
                    "instanceId": instance_id(self.id),
                }
            ]
        return d


def instance_id(task_id: str) -> str:
    """`prod_web.instance-<uuid>.1` → `prod_web.instance-<uuid>` (the example stream's form)."""
    head, _, tail = task_id.rpartition(".")
    return head if head and tail.isdigit() else task_id


@dataclass
class FakeApp:
    id: str
    instances: int
    health_checks: bool
    task_host: str
    port_allocator: Callable[[], list[int]]
    version: str = field(default_factory=_now_iso)
    tasks: dict[str, FakeTask] = field(default_factory=dict)
    deployment: str | None = None
    last_scaling_at: str = ""

    def to_json(self, *, tasks: bool = True) -> dict[str, Any]:
        ts = list(self.tasks.values())
        running = [t for t in ts if t.state == RUNNING]
        d: dict[str, Any] = {
            "id": self.id,
            "cmd": "sleep 1000",
            "args": None,
            "instances": self.instances,
            "cpus": 0.1,
            "mem": 16.0,
            "disk": 0.0,
            "healthChecks": (
                [{"protocol": "HTTP", "path": "/", "portIndex": 0, "intervalSeconds": 20}]
                if self.health_checks
                else []
            ),
            "killSelection": "YOUNGEST_FIRST",
            "upgradeStrategy": {"minimumHealthCapacity": 1, "maximumOverCapacity": 1},
            "labels": {},
            "version": self.version,
            "versionInfo": {
                "lastScalingAt": self.last_scaling_at or self.version,
                "lastConfigChangeAt": self.version,
            },
            "tasksStaged": sum(1 for t in ts if t.state == STAGING),
            "tasksRunning": len(running),
            "tasksHealthy": sum(1 for t in running if self.health_checks and t.alive is True),
            "tasksUnhealthy": sum(1 for t in running if self.health_checks and t.alive is False),
            "deployments": [{"id": self.deployment}] if self.deployment else [],
        }
        if tasks:
            d["tasks"] = [t.to_json(self.health_checks) for t in ts]
        return d


@dataclass
class FakeDeployment:
    id: str
    app_id: str
    target: int
    previous: int
    version: str = field(default_factory=_now_iso)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    runner: asyncio.Task[None] | None = None
    fail: bool = False

    def plan(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "affectedApps": [self.app_id],
            "affectedPods": [],
            "steps": [{"actions": [{"action": "ScaleApplication", "app": self.app_id}]}],
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **self.plan(),
            "currentActions": [
                {"action": "ScaleApplication", "app": self.app_id, "readinessCheckResults": []}
            ],
            "currentStep": 1,
            "totalSteps": 1,
        }


@dataclass
class _Subscriber:
    queue: asyncio.Queue[bytes | None]
    types: frozenset[str]  # empty = every event


@dataclass
class _Rule:
    remaining: int
    path_prefix: str
    status: int = 503
    seconds: float = 0.0


class FakeMarathon:
    """One Marathon instance (leader, or standby with `standby=True` and `leader_url`)."""

    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        standby: bool = False,
        leader_url: str | None = None,
        heartbeat: float = 10.0,
        deploy_time: float | None = 0.05,
        health_delay: float = 0.0,
    ) -> None:
        self.username, self.password, self.token = username, password, token
        self.standby, self.leader_url = standby, leader_url
        self.heartbeat = heartbeat
        self.deploy_time = deploy_time
        self.health_delay = health_delay
        self.apps: dict[str, FakeApp] = {}
        self.deployments: dict[str, FakeDeployment] = {}
        self.requests: list[RequestRecord] = []
        self.scale_requests: list[tuple[float, str, int, bool]] = []
        self.events_sent: list[tuple[str, dict[str, Any]]] = []
        self.url = ""
        self._subscribers: list[_Subscriber] = []
        self._fail_rules: list[_Rule] = []
        self._delay_rules: list[_Rule] = []
        self._lose_rules: list[_Rule] = []
        self._fail_deployments = 0
        self.put_delay = 0.0  # every app PUT/PATCH takes this long (set_put_delay)
        self.put_delay_after = False
        self._seq = itertools.count(1)
        self._ports = itertools.count(31000)
        self._background: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._proxy: aiohttp.ClientSession | None = None

    # ---- lifecycle -------------------------------------------------------------------------------
    async def start(
        self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> str:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        await site.start()
        sockets = self._runner.addresses
        self.url = f"{'https' if ssl_context else 'http'}://{host}:{sockets[0][1]}"
        return self.url

    async def stop(self) -> None:
        self.drop_event_streams()
        for t in list(self._background):
            t.cancel()
        for t in list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._proxy is not None:
            await self._proxy.close()
            self._proxy = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- control API (tests) ------------------------------------------------------------------
    def add_app(
        self,
        app_id: str,
        instances: int = 1,
        health_checks: bool = False,
        task_host: str = "127.0.0.1",
        port_allocator: Callable[[], list[int]] | None = None,
    ) -> FakeApp:
        """Add an app whose `instances` tasks are already running (and healthy, with health checks)."""
        alloc = port_allocator or (lambda: [next(self._ports)])
        app = FakeApp(app_id, instances, health_checks, task_host, alloc)
        self.apps[app_id] = app
        for _ in range(instances):
            t = self._new_task(app)
            t.state, t.started_at = RUNNING, t.staged_at
            if health_checks:
                t.alive, t.healthy_at = True, t.staged_at
        return app

    def set_deploy_time(self, seconds: float | None) -> None:
        """Seconds a deployment takes to bring tasks to TASK_RUNNING; None holds deployments until
        `finish_deployments()`."""
        self.deploy_time = seconds

    def finish_deployments(self) -> None:
        for d in self.deployments.values():
            d.release.set()

    def fail_next_deployments(self, n: int = 1) -> None:
        self._fail_deployments += n

    def fail_next(self, n: int, status: int = 503, path_prefix: str = "/v2/apps") -> None:
        self._fail_rules.append(_Rule(n, path_prefix, status=status))

    def delay_next(self, n: int, seconds: float, path_prefix: str = "/v2") -> None:
        self._delay_rules.append(_Rule(n, path_prefix, seconds=seconds))

    def set_put_delay(self, seconds: float, after: bool = False) -> None:
        """Every PUT/PATCH of an app takes `seconds`. By default Marathon is slow to take it: the write
        lands when the delay ends, whether or not the client still waits (aiohttp does not cancel a
        handler whose client went away). `after=True`: it lands at once and only the reply is late."""
        self.put_delay, self.put_delay_after = seconds, after

    def clear_failures(self) -> None:
        """Drop every pending fail/delay/lose rule: the fake answers normally again."""
        self._fail_rules.clear()
        self._delay_rules.clear()
        self._lose_rules.clear()

    def lose_reply_next(self, n: int, path_prefix: str = "/v2/apps") -> None:
        """Handle the next n matching requests, then close the connection instead of replying (the
        request took effect, the client never learns)."""
        self._lose_rules.append(_Rule(n, path_prefix))

    def drop_event_streams(self) -> None:
        for s in self._subscribers:
            s.queue.put_nowait(None)
        self._subscribers.clear()

    @property
    def stream_count(self) -> int:
        return len(self._subscribers)

    def task_ids(self, app_id: str) -> list[str]:
        return list(self.apps[app_id].tasks)

    def set_task_health(self, task_id: str, alive: bool) -> None:
        task, app = self._find_task(task_id)
        task.set_alive(alive)
        self._emit_health(app, task)

    def kill_task(self, task_id: str, relaunch: bool = True) -> None:
        """The task dies (TASK_KILLED); Marathon relaunches a replacement to keep `instances`."""
        task, app = self._find_task(task_id)
        del app.tasks[task_id]
        self._emit_status(task, KILLED)
        if relaunch:
            self._spawn(self._relaunch(app))

    def scale_now(self, app_id: str, instances: int) -> str:
        """Start a deployment as if some other client had scaled the app; returns its id."""
        return self._start_deployment(self.apps[app_id], instances).id

    # ---- internals: tasks, deployments, events ------------------------------------------------
    def _find_task(self, task_id: str) -> tuple[FakeTask, FakeApp]:
        for app in self.apps.values():
            if task_id in app.tasks:
                return app.tasks[task_id], app
        raise KeyError(f"no task {task_id!r}")

    def _new_task(self, app: FakeApp) -> FakeTask:
        tid = f"{app.id.strip('/').replace('/', '_')}.instance-{uuid.uuid4()}.1"
        seq = next(self._seq)
        host = app.task_host.format(n=seq)  # "{n}" in the host: one host per task
        t = FakeTask(tid, app.id, host, list(app.port_allocator()), seq, version=app.version)
        app.tasks[tid] = t
        return t

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _emit(self, event_type: str, payload: dict[str, Any]) -> None:
        payload = {**payload, "eventType": event_type, "timestamp": _now_iso()}
        self.events_sent.append((event_type, payload))
        frame = b"event: " + event_type.encode() + b"\r\ndata: " + orjson.dumps(payload) + b"\r\n\r\n"
        for s in self._subscribers:
            if not s.types or event_type in s.types:
                s.queue.put_nowait(frame)

    def _emit_status(self, t: FakeTask, status: str) -> None:
        self._emit(
            "status_update_event",
            {
                "slaveId": "fake-agent-S0",
                "taskId": t.id,
                "taskStatus": status,
                "message": "",
                "appId": t.app_id,
                "host": t.host,
                "ipAddresses": [{"ipAddress": t.host, "protocol": "IPv4"}],
                "ports": t.ports,
                "version": t.version,
            },
        )

    def _emit_health(self, app: FakeApp, t: FakeTask) -> None:
        iid = instance_id(t.id)
        self._emit(
            "health_status_changed_event",
            {"appId": app.id, "instanceId": iid, "version": app.version, "alive": t.alive},
        )
        self._emit(
            "instance_health_changed_event",
            {"instanceId": iid, "runSpecId": app.id, "healthy": t.alive, "runSpecVersion": app.version},
        )

    def _start_deployment(self, app: FakeApp, target: int) -> FakeDeployment:
        dep = FakeDeployment(str(uuid.uuid4()), app.id, target, app.instances)
        if self._fail_deployments > 0:
            self._fail_deployments -= 1
            dep.fail = True
        app.instances = target
        app.version = app.last_scaling_at = dep.version
        app.deployment = dep.id
        self.deployments[dep.id] = dep
        dep.runner = self._spawn(self._run_deployment(app, dep))
        return dep

    def _cancel_deployment(self, dep: FakeDeployment) -> None:
        if dep.runner is not None:
            dep.runner.cancel()
        self._end_deployment(dep, "deployment_failed", reason="cancelled")

    def _end_deployment(self, dep: FakeDeployment, event: str, **extra: Any) -> None:
        self.deployments.pop(dep.id, None)
        app = self.apps.get(dep.app_id)
        if app is not None and app.deployment == dep.id:
            app.deployment = None
        self._emit(event, {"id": dep.id, "plan": dep.plan(), **extra})

    async def _wait_deploy(self, dep: FakeDeployment) -> None:
        if self.deploy_time is None:
            await dep.release.wait()
        elif self.deploy_time > 0:
            await asyncio.sleep(self.deploy_time)

    async def _run_deployment(self, app: FakeApp, dep: FakeDeployment) -> None:
        self._emit(
            "deployment_info",
            {
                "plan": dep.plan(),
                "currentStep": {"actions": [{"action": "ScaleApplication", "app": app.id}]},
            },
        )
        live = [t for t in app.tasks.values() if t.state != KILLING]
        for _ in range(dep.target - len(live)):
            self._emit_status(self._new_task(app), STAGING)
        for victim in sorted(live, key=lambda t: t.seq, reverse=True)[: max(0, len(live) - dep.target)]:
            victim.state = KILLING
            self._emit_status(victim, KILLING)
        await self._wait_deploy(dep)
        started = []
        for t in list(app.tasks.values()):
            if t.state == STAGING:
                t.state, t.started_at = RUNNING, _now_iso()
                started.append(t)
                self._emit_status(t, RUNNING)
            elif t.state == KILLING:
                del app.tasks[t.id]
                self._emit_status(t, KILLED)
        if app.health_checks and started:
            if self.health_delay > 0:
                await asyncio.sleep(self.health_delay)
            for t in started:
                if t.id in app.tasks and t.alive is None:
                    t.set_alive(True)
                    self._emit_health(app, t)
        self._end_deployment(dep, "deployment_failed" if dep.fail else "deployment_success")

    async def _relaunch(self, app: FakeApp) -> None:
        t = self._new_task(app)
        self._emit_status(t, STAGING)
        if self.deploy_time:
            await asyncio.sleep(self.deploy_time)
        if t.id in app.tasks:
            t.state, t.started_at = RUNNING, _now_iso()
            self._emit_status(t, RUNNING)
            if app.health_checks:
                t.set_alive(True)
                self._emit_health(app, t)

    # ---- HTTP: one dispatcher, so logging, auth, failures and delays apply to every route -------
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/_fake/"):
            return await self._control(request)
        body = await request.read()
        rec = RequestRecord(
            time.monotonic(),
            request.method,
            request.path,
            request.raw_path.split("?", 1)[0],
            {k: request.query.getall(k) for k in request.query},
            dict(request.headers),
            body,
            wall=time.time(),
        )
        self.requests.append(rec)
        resp = await self._handle(request, rec)
        rec.status = resp.status
        if self._take(self._lose_rules, request.path) is not None and request.transport is not None:
            request.transport.close()
            rec.status = -1
        return resp

    def _take(self, rules: list[_Rule], path: str) -> _Rule | None:
        for r in rules:
            if r.remaining > 0 and path.startswith(r.path_prefix):
                r.remaining -= 1
                return r
        return None

    def _auth_error(self, request: web.Request) -> web.Response | None:
        given = request.headers.get("Authorization", "")
        if self.token is not None:
            if given != f"token={self.token}":
                return _message(401, "Invalid username or password.")
        elif self.username is not None:
            want = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            if given != want:
                return web.Response(
                    status=401,
                    text=_BASIC_401_HTML.format(path=request.path),
                    content_type="text/html",
                    headers={"WWW-Authenticate": 'basic realm="Mesosphere"'},
                )
        return None

    async def _handle(self, request: web.Request, rec: RequestRecord) -> web.StreamResponse:
        delay = self._take(self._delay_rules, request.path)
        if delay is not None:
            await asyncio.sleep(delay.seconds)
        fail = self._take(self._fail_rules, request.path)
        if fail is not None:
            return _message(fail.status, _FAIL_MESSAGES.get(fail.status, "fake failure"))
        denied = self._auth_error(request)
        if denied is not None:
            return denied
        if self.standby:
            return await self._as_standby(request, rec.body)
        slow = (
            self.put_delay
            if request.method in ("PUT", "PATCH") and request.path.startswith("/v2/apps/")
            else 0
        )
        if slow and not self.put_delay_after:
            await asyncio.sleep(slow)
        resp = await self._route(request, rec.body)
        if slow and self.put_delay_after:
            await asyncio.sleep(slow)
        if not resp.prepared:
            resp.headers["X-Marathon-Leader"] = self.url
        return resp

    async def _as_standby(self, request: web.Request, body: bytes) -> web.StreamResponse:
        if self.leader_url is None:
            return web.Response(status=502, text="Could not determine the current leader")
        if request.path == "/v2/events":
            return web.Response(status=302, headers={"Location": self.leader_url + request.path_qs})
        if self._proxy is None:
            self._proxy = aiohttp.ClientSession()
        headers = {
            k: v for k, v in request.headers.items() if k in ("Authorization", "Content-Type", "Accept")
        }
        headers["X-Marathon-Via"] = f"1.1 {self.url}"
        try:
            async with self._proxy.request(
                request.method, self.leader_url + request.path_qs, data=body or None, headers=headers
            ) as r:
                data = await r.read()
                keep = ("Content-Type", "Marathon-Deployment-Id", "X-Marathon-Leader", "WWW-Authenticate")
                out = {k: r.headers[k] for k in keep if k in r.headers}
                return web.Response(body=data, status=r.status, headers=out)
        except aiohttp.ClientError:
            return web.Response(status=502, text="Connection to leader refused.")

    async def _route(self, request: web.Request, body: bytes) -> web.StreamResponse:
        path, method = request.path.rstrip("/"), request.method
        if path == "/v2/events":
            return await self._events(request) if method == "GET" else web.Response(status=405)
        if path == "/v2/leader" and method == "GET":
            return _json({"leader": self.url.split("://", 1)[1]})
        if path == "/v2/info" and method == "GET":
            return _json(self._info())
        if path == "/v2/deployments" and method == "GET":
            return _json([d.to_json() for d in self.deployments.values()])
        if path.startswith("/v2/deployments/") and method == "DELETE":
            return self._delete_deployment(path.removeprefix("/v2/deployments/"), request)
        if path == "/v2/apps" and method == "GET":
            embed = request.query.getall("embed", [])
            apps = [a.to_json(tasks="apps.tasks" in embed) for a in self.apps.values()]
            return _json({"apps": apps})
        if path.startswith("/v2/apps/"):
            tail = path.removeprefix("/v2/apps")
            if tail.endswith("/tasks") and method == "GET":
                return self._tasks(tail.removesuffix("/tasks"))
            if method == "GET":
                return self._get_app(tail)
            if method in ("PUT", "PATCH"):
                return self._update_app(tail, body, request)
        return _message(404, f"Not found: {method} {request.path}")

    def _info(self) -> dict[str, Any]:
        hostport = self.url.split("://", 1)[1]
        return {
            "name": "marathon",
            "version": "1.10.26-fake",
            "buildref": "fake",
            "elected": not self.standby,
            "leader": hostport if not self.standby else (self.leader_url or "").split("://")[-1],
            "frameworkId": "fake-framework-0000",
            "marathon_config": {"leader_proxy_read_timeout_ms": 10000, "hostname": "127.0.0.1"},
            "http_config": {"http_port": int(hostport.rsplit(":", 1)[1]), "https_port": 8443},
        }

    def _get_app(self, app_id: str) -> web.Response:
        if app_id.endswith("/*"):
            group = app_id.removesuffix("*")
            return _json({"*": [a.to_json() for a in self.apps.values() if a.id.startswith(group)]})
        app = self.apps.get(app_id)
        if app is None:
            return _message(404, f"App '{app_id}' does not exist")
        return _json({"app": app.to_json()})

    def _tasks(self, app_id: str) -> web.Response:
        app = self.apps.get(app_id)
        if app is None:
            return _message(404, f"App '{app_id}' does not exist")
        return _json({"tasks": [t.to_json(app.health_checks) for t in app.tasks.values()]})

    def _update_app(self, app_id: str, body: bytes, request: web.Request) -> web.Response:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            return _message(400, "Invalid JSON", details=[{"path": "/", "errors": [str(e)]}])
        if not isinstance(doc, dict):
            return _message(
                400, "Invalid JSON", details=[{"path": "/", "errors": ["error.expected.jsobject"]}]
            )
        defines = any(k in doc for k in ("cmd", "args", "container"))
        app = self.apps.get(app_id)
        if app is None or (request.query.get("partialUpdate") == "false" and not defines):
            if not defines:
                return _message(
                    422,
                    "Object is not valid",
                    details=[
                        {
                            "path": "/",
                            "errors": [
                                "AppDefinition must either contain one of 'cmd' or "
                                "'args', and/or a 'container'."
                            ],
                        }
                    ],
                )
            if request.method == "PATCH":
                return _message(404, f"App '{app_id}' does not exist")
        instances = doc.get("instances", app.instances if app is not None else 1)
        if not isinstance(instances, int) or isinstance(instances, bool) or instances < 0:
            return _message(
                422, "Object is not valid", details=[{"path": "/instances", "errors": ["must be >= 0"]}]
            )
        force = request.query.get("force", "false").lower() == "true"
        created = app is None
        if app is None:
            app = self.add_app(app_id, 0)
        elif app.deployment is not None:
            if not force:
                return _message(409, LOCKED_MESSAGE, deployments=[{"id": app.deployment}])
            self._cancel_deployment(self.deployments[app.deployment])
        self.scale_requests.append((time.monotonic(), app_id, instances, force))
        dep = self._start_deployment(app, instances)
        self._emit(
            "api_post_event",
            {"clientIp": request.remote, "uri": request.path, "appDefinition": app.to_json(tasks=False)},
        )
        headers = {"Marathon-Deployment-Id": dep.id}
        if created:
            headers["Location"] = f"{self.url}/v2/apps{app_id}"
        return _json({"deploymentId": dep.id, "version": dep.version}, 201 if created else 200, headers)

    def _delete_deployment(self, dep_id: str, request: web.Request) -> web.Response:
        dep = self.deployments.get(dep_id)
        if dep is None:
            return _message(404, f"DeploymentPlan {dep_id} does not exist")
        self._cancel_deployment(dep)
        if request.query.get("force", "false").lower() == "true":
            return web.Response(status=202)
        rollback = self._start_deployment(self.apps[dep.app_id], dep.previous)
        return _json({"deploymentId": rollback.id, "version": rollback.version})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if "text/event-stream" not in request.headers.get("Accept", ""):
            return web.Response(
                status=405,
                text="<html><body><h2>HTTP ERROR: 405</h2><p>Problem accessing /v2/events. Reason:\n"
                "<pre>    HTTP method GET is not supported by this URL</pre></p></body></html>",
                content_type="text/html",
            )
        sub = _Subscriber(asyncio.Queue(), frozenset(request.query.getall("event_type", [])))
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream;charset=utf-8", "X-Marathon-Leader": self.url}
        )
        await resp.prepare(request)
        self._subscribers.append(sub)
        self._emit("event_stream_attached", {"remoteAddress": request.remote or ""})
        try:
            while True:
                try:
                    frame = await asyncio.wait_for(sub.queue.get(), self.heartbeat)
                except TimeoutError:
                    frame = b"\r\n"
                if frame is None:
                    break
                await resp.write(frame)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            if sub in self._subscribers:
                self._subscribers.remove(sub)
        return resp

    # ---- control HTTP API for tests in another process ------------------------------------------
    async def _control(self, request: web.Request) -> web.Response:
        name = request.path.removeprefix("/_fake/")
        args: dict[str, Any] = {}
        if request.method == "POST" and request.can_read_body:
            try:
                args = orjson.loads(await request.read()) or {}
            except orjson.JSONDecodeError:
                return _message(400, "control body must be a JSON object")
        if not isinstance(args, dict):
            return _message(400, "control body must be a JSON object")
        try:
            result = self._control_routes(request.method, name, args)
        except (KeyError, TypeError, ValueError) as e:
            return _message(400, f"bad control call {name}: {e}")
        if result is None:
            return _message(404, f"no control call {request.method} /_fake/{name}")
        return _json(result)

    def _control_routes(self, method: str, name: str, a: dict[str, Any]) -> Any:
        if method == "GET":
            if name == "scale_requests":
                return [
                    {"at": t, "app": app, "instances": n, "force": f} for t, app, n, f in self.scale_requests
                ]
            if name == "requests":
                return [r.as_dict() for r in self.requests]
            if name == "apps":
                return {k: v.to_json() for k, v in self.apps.items()}
            if name == "streams":
                return {"count": self.stream_count}
            return None
        calls: dict[str, Callable[[], Any]] = {
            "fail_next": lambda: self.fail_next(
                int(a["n"]), int(a.get("status", 503)), a.get("path_prefix", "/v2/apps")
            ),
            "delay_next": lambda: self.delay_next(
                int(a["n"]), float(a["seconds"]), a.get("path_prefix", "/v2")
            ),
            "drop_streams": self.drop_event_streams,
            "lose_reply_next": lambda: self.lose_reply_next(int(a["n"]), a.get("path_prefix", "/v2/apps")),
            "deploy_time": lambda: self.set_deploy_time(
                None if a.get("seconds") is None else float(a["seconds"])
            ),
            "put_delay": lambda: self.set_put_delay(float(a["seconds"]), bool(a.get("after", False))),
            "finish_deployments": self.finish_deployments,
            "clear_failures": self.clear_failures,
            "add_app": lambda: (
                self.add_app(str(a["id"]), int(a.get("instances", 1)), bool(a.get("health_checks"))).id
            ),
            "task_health": lambda: self.set_task_health(str(a["task_id"]), bool(a["alive"])),
            "kill_task": lambda: self.kill_task(str(a["task_id"]), bool(a.get("relaunch", True))),
            "scale": lambda: self.scale_now(str(a["app"]), int(a["instances"])),
        }
        if method != "POST" or name not in calls:
            return None
        return {"ok": True, "result": calls[name]()}


def parse_app_spec(spec: str) -> tuple[str, int, bool]:
    """`/a:2` or `/a:2:hc` (with health checks) → (id, instances, health_checks)."""
    parts = spec.split(":")
    if not parts[0].startswith("/") or len(parts) > 3:
        raise ValueError(f"bad app spec {spec!r}: want /id[:instances[:hc]]")
    n = int(parts[1]) if len(parts) > 1 and parts[1] else 1
    if len(parts) == 3 and parts[2] != "hc":
        raise ValueError(f"bad app spec {spec!r}: the third part can only be 'hc'")
    return parts[0], n, len(parts) == 3


async def _serve(ns: argparse.Namespace) -> None:
    fake = FakeMarathon(
        username=ns.username,
        password=ns.password,
        token=ns.token,
        standby=ns.leader is not None,
        leader_url=ns.leader,
        heartbeat=ns.heartbeat,
        deploy_time=ns.deploy_time,
        health_delay=ns.health_delay,
    )
    for spec in ns.apps:
        app_id, n, hc = parse_app_spec(spec)
        fake.add_app(app_id, n, health_checks=hc, task_host=ns.task_host)
    url = await fake.start(ns.host, ns.port)
    if ns.ready_file:
        tmp = ns.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(url + "\n")
        os.replace(tmp, ns.ready_file)
    print(url, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await fake.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fakes.marathon", description="fake Marathon")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--apps", nargs="*", default=[], help="/id[:instances[:hc]] ...")
    p.add_argument("--task-host", default="127.0.0.1", help="the tasks' host; \"{n}\": the task's number")
    p.add_argument("--ready-file")
    p.add_argument("--username")
    p.add_argument("--password")
    p.add_argument("--token")
    p.add_argument("--leader", help="run as a standby of this leader URL")
    p.add_argument("--heartbeat", type=float, default=10.0)
    p.add_argument("--deploy-time", type=float, default=0.05)
    p.add_argument("--health-delay", type=float, default=0.0)
    ns = p.parse_args(argv)
    try:
        for spec in ns.apps:
            parse_app_spec(spec)
    except ValueError as e:
        p.error(str(e))
    asyncio.run(_serve(ns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
