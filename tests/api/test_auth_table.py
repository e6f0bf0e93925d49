"""Every route × every kind of credential → the expected status (PRODUCT §10, issue 13 "one table").

`ROUTES` is written here by hand, independently of oceand.api.auth.ROUTE_SCOPES: a route the app serves
that is not in it fails `test_every_route_is_in_the_table`, and a scope that differs from what the
daemon enforces fails `test_route_by_credential`. Credentials (`CREDENTIALS`):

- none, a wrong secret, an expired token, a revoked token, the old secret of a rotated token within its
  grace and after it (each of the last four an admin token, so the condition alone decides);
- one token per scope, every job;
- a read/write/operate token limited to one product line, on a job inside (`glob-in`) and outside it.

Each route has a request that succeeds (its status in the table) when the credential is accepted; after a
call that changed something, the fixture state (two jobs, a token `victim`) is put back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.api.test_admin import doc
from tests.api.test_auth import PDL, Api, Clock, host_token, secured
from tests.conftest import DaemonFactory

MINE = f"job.web{PDL}"  # inside the glob token's product line
OTHER = "job.web_pdl.other_owt.inf_cop.xiaomi"
ALARM = "endpoint=h1&metric=cpu.idle&status=PROBLEM&step=1&priority=0&time=2026-11-28+10:00:00&stra_id=1&left_value=3"
PUSH = [
    {"endpoint": "h1", "metric": "cpu.idle", "timestamp": 1, "step": 60, "value": 1, "counterType": "GAUGE"}
]

TEMPLATE, TEMPLATE_DOC = "shared", {"max_instances": 6}  # no job names it
OPEN, INGEST = "open", "ingest"  # not a bearer scope: public, and the ingest guard's (open by default)
CLUSTER = "cluster"  # not a bearer scope: the cluster token's (X-Oceand-Cluster-Token), whatever the bearer


@dataclass(frozen=True)
class Route:
    scope: str  # read | write | operate | admin | open | ingest | cluster
    ok: int  # the status of the request below when access is granted
    path: Callable[[str], str]  # job name (inside or outside the glob token's jobs) -> URL path
    body: Callable[[str], Any] = lambda job: None
    changes: bool = False  # a granted call changes state: restore after it


def _job(suffix: str = "") -> Callable[[str], str]:
    return lambda job: f"/api/v1/jobs/{job}{suffix}"


def _fixed(path: str) -> Callable[[str], str]:
    return lambda job: path


def _new_job(job: str) -> dict[str, Any]:
    return doc(job.replace("job.web", "job.new", 1))


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/healthz"): Route(OPEN, 200, _fixed("/healthz")),
    ("GET", "/readyz"): Route(OPEN, 200, _fixed("/readyz")),
    ("GET", "/api/v1/openapi.json"): Route(OPEN, 200, _fixed("/api/v1/openapi.json")),
    ("GET", "/ui"): Route(OPEN, 200, _fixed("/ui")),
    ("GET", "/ui/"): Route(OPEN, 200, _fixed("/ui/")),
    ("GET", "/ui/{name}"): Route(OPEN, 200, _fixed("/ui/app.js")),
    ("GET", "/metrics"): Route("read", 200, _fixed("/metrics")),
    ("POST", "/v1/push"): Route(INGEST, 200, _fixed("/v1/push"), lambda job: PUSH),
    ("GET", "/v1/falcon/alarm"): Route(INGEST, 200, _fixed(f"/v1/falcon/alarm?{ALARM}")),
    ("POST", "/v1/falcon/alarm"): Route(INGEST, 200, _fixed(f"/v1/falcon/alarm?{ALARM}")),
    ("GET", "/api/v1/jobs"): Route("read", 200, _fixed("/api/v1/jobs")),
    ("POST", "/api/v1/jobs"): Route("write", 201, _fixed("/api/v1/jobs"), _new_job, changes=True),
    ("GET", "/api/v1/jobs/{job}"): Route("read", 200, _job()),
    ("PUT", "/api/v1/jobs/{job}"): Route("write", 200, _job(), lambda job: doc(job, max_instances=7), True),
    ("DELETE", "/api/v1/jobs/{job}"): Route("write", 204, _job(), changes=True),
    ("GET", "/api/v1/jobs/{job}/status"): Route("read", 200, _job("/status")),
    ("GET", "/api/v1/jobs/{job}/decisions"): Route("read", 200, _job("/decisions")),
    ("GET", "/api/v1/jobs/{job}/history"): Route("read", 200, _job("/history")),
    # granted, the fixture job has no history yet: 422 no_history (a refusal would be 401/403)
    ("POST", "/api/v1/jobs/{job}/preview"): Route(
        "read", 422, _job("/preview"), lambda job: {"job": doc(job), "since": 0, "until": 10}
    ),
    ("POST", "/api/v1/jobs/{job}/scale"): Route("operate", 200, _job("/scale"), lambda job: {"instances": 2}),
    ("POST", "/api/v1/jobs/{job}/mode"): Route(
        "operate", 200, _job("/mode"), lambda job: {"mode": "paused"}, changes=True
    ),
    ("GET", "/api/v1/templates"): Route("read", 200, _fixed("/api/v1/templates")),
    ("GET", "/api/v1/templates/{name}"): Route("read", 200, _fixed(f"/api/v1/templates/{TEMPLATE}")),
    # the fixture's template as restore() writes it: granted, nothing changes (same version)
    ("PUT", "/api/v1/templates/{name}"): Route(
        "write", 200, _fixed(f"/api/v1/templates/{TEMPLATE}"), lambda job: TEMPLATE_DOC
    ),
    ("DELETE", "/api/v1/templates/{name}"): Route(
        "write", 204, _fixed(f"/api/v1/templates/{TEMPLATE}"), changes=True
    ),
    ("POST", "/api/v1/templates/{name}/rename"): Route(
        "write", 200, _fixed(f"/api/v1/templates/{TEMPLATE}/rename"), lambda job: {"to": "renamed"}, True
    ),
    # the selector names the job: a token must cover every job it matches (glob-out: 403)
    ("POST", "/api/v1/modes"): Route(
        "operate", 200, _fixed("/api/v1/modes"), lambda job: {"select": {"name": job}, "mode": "paused"}, True
    ),
    ("GET", "/api/v1/clusters"): Route("read", 200, _fixed("/api/v1/clusters")),
    ("GET", "/api/v1/cluster"): Route("read", 200, _fixed("/api/v1/cluster")),
    ("GET", "/api/v1/ingest/unmatched"): Route("read", 200, _fixed("/api/v1/ingest/unmatched")),
    ("GET", "/api/v1/tokens"): Route("admin", 200, _fixed("/api/v1/tokens")),
    ("POST", "/api/v1/tokens"): Route(
        "admin", 201, _fixed("/api/v1/tokens"), lambda job: {"name": "tmp", "scopes": ["read"]}, True
    ),
    ("DELETE", "/api/v1/tokens/{name}"): Route("admin", 204, _fixed("/api/v1/tokens/victim"), changes=True),
    ("POST", "/api/v1/tokens/{name}/rotate"): Route("admin", 200, _fixed("/api/v1/tokens/victim/rotate")),
    ("GET", "/api/v1/audit"): Route("admin", 200, _fixed("/api/v1/audit")),
    # between daemons: only the [cluster] token opens them, never a bearer token; this daemon has no
    # [cluster], so every credential gets 404 (the token checks: tests/cluster/test_forward_daemons.py)
    ("POST", "/internal/v1/samples"): Route(CLUSTER, 404, _fixed("/internal/v1/samples"), lambda job: {}),
    ("POST", "/internal/v1/alarm"): Route(CLUSTER, 404, _fixed("/internal/v1/alarm"), lambda job: {}),
}

SCOPES = ("read", "write", "operate", "admin", "ingest")
BAD = ("none", "wrong", "expired", "revoked", "rotated-old-after-grace")
CREDENTIALS = (*BAD, "rotated-old-in-grace", *(f"scope-{s}" for s in SCOPES), "glob-in", "glob-out")
GLOB_SCOPES = ("read", "write", "operate")


def method_creates(route: Route) -> bool:
    return route.ok == 201


def expected(route: Route, path: str, credential: str) -> int:
    """The status the table promises (see the module doc)."""
    if route.scope in (OPEN, INGEST, CLUSTER):
        return route.ok
    if credential in BAD:
        return 401
    if credential == "rotated-old-in-grace":
        return route.ok
    if credential.startswith("scope-"):
        scope = credential.removeprefix("scope-")
        return route.ok if scope in (route.scope, "admin") else 403
    if route.scope not in GLOB_SCOPES:
        return 403
    if "{job}" in path or (path == "/api/v1/jobs" and method_creates(route)) or path == "/api/v1/modes":
        return route.ok if credential == "glob-in" else 403
    return route.ok


def test_every_route_is_in_the_table(tmp_path: Path) -> None:
    from oceand.daemon import Daemon
    from tests.conftest import make_config

    app = Daemon(make_config(tmp_path)).build_app()
    routed = {
        (r.method, r.resource.canonical) for r in app.router.routes() if r.method != "HEAD" and r.resource
    }
    assert routed - set(ROUTES) == set(), "routes without a row in the access table"
    assert set(ROUTES) - routed == set(), "rows for routes the app does not serve"


class Fixture:
    """The daemon, an admin `root`, and one secret per credential."""

    def __init__(self, api: Api, root: str, clock: Clock) -> None:
        self.api, self.root, self.clock = api, root, clock
        self.secrets: dict[str, str | None] = {"none": None, "wrong": "ocd_" + "x" * 43}

    async def token(self, name: str, scopes: list[str], jobs: list[str] | None = None, **more: Any) -> str:
        status, body = await self.api(
            "POST",
            "/api/v1/tokens",
            self.root,
            {"name": name, "scopes": scopes, "jobs": jobs or ["*"], **more},
        )
        assert status == 201, body
        return str(body["secret"])

    async def rotate(self, name: str, grace: str) -> None:
        status, body = await self.api("POST", f"/api/v1/tokens/{name}/rotate", self.root, {"grace": grace})
        assert status == 200, body

    async def setup(self) -> None:
        for scope in SCOPES:
            self.secrets[f"scope-{scope}"] = await self.token(f"scope-{scope}", [scope])
        for which in ("glob-in", "glob-out"):
            self.secrets[which] = await self.token(which, list(GLOB_SCOPES), [f"*{PDL}"])
        self.secrets["expired"] = await self.token("expired", ["admin"], expires="10s")
        self.secrets["revoked"] = await self.token("revoked", ["admin"])
        assert (await self.api("DELETE", "/api/v1/tokens/revoked", self.root))[0] == 204
        self.secrets["rotated-old-in-grace"] = await self.token("rot-in", ["admin"])
        await self.rotate("rot-in", "1h")
        self.secrets["rotated-old-after-grace"] = await self.token("rot-out", ["admin"])
        await self.rotate("rot-out", "10s")
        self.clock.now += 20  # past "expired"'s lifetime and "rot-out"'s grace, within "rot-in"'s
        await self.restore()

    async def restore(self) -> None:
        """Back to: jobs MINE and OTHER as first created, no job.new*, a token `victim`, no token `tmp`,
        a template TEMPLATE, none `renamed`."""
        for job in (MINE, OTHER):
            status, body = await self.api("PUT", f"/api/v1/jobs/{job}", self.root, doc(job))
            assert status in (200, 201), body
            assert (await self.api("POST", f"/api/v1/jobs/{job}/mode", self.root, {"mode": "dry-run"}))[
                0
            ] == 200
        for job in (MINE, OTHER):
            new = _new_job(job)["job"]
            assert (await self.api("DELETE", f"/api/v1/jobs/{new}", self.root))[0] in (204, 404)
        assert (await self.api("DELETE", "/api/v1/tokens/tmp", self.root))[0] in (204, 404)
        assert (await self.api("DELETE", "/api/v1/templates/renamed", self.root))[0] in (204, 404)
        status, body = await self.api("PUT", f"/api/v1/templates/{TEMPLATE}", self.root, TEMPLATE_DOC)
        assert status in (200, 201), body
        status, _ = await self.api(
            "POST", "/api/v1/tokens", self.root, {"name": "victim", "scopes": ["read"], "jobs": ["*"]}
        )
        assert status in (201, 409)


async def test_route_by_credential(
    start_daemon: DaemonFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = await host_token(tmp_path, "--name", "root", "--scope", "admin", capsys=capsys)
    clock = Clock()
    async with aiohttp.ClientSession() as session:
        # the clock stands still through hundreds of writes: the rate limit is test_rate_limit.py's
        _, api = await secured(start_daemon, session, clock, write_burst=1_000_000)
        f = Fixture(api, root, clock)
        await f.setup()
        wrong: list[str] = []
        rows = 0
        for (method, path), route in ROUTES.items():
            for credential in CREDENTIALS:
                job = OTHER if credential == "glob-out" else MINE
                want = expected(route, path, credential)
                got, body = await api(method, route.path(job), f.secrets[credential], route.body(job))
                rows += 1
                if got != want:
                    wrong.append(
                        f"{method} {path} with {credential}: {got} (expected {want}) {str(body)[:120]}"
                    )
                if route.changes and 200 <= got < 300:
                    await f.restore()
        assert wrong == []
        assert rows == len(ROUTES) * len(CREDENTIALS)


async def test_openapi_states_each_operations_scope(start_daemon: DaemonFactory) -> None:
    _, c = await start_daemon()
    status, spec = await c.call("GET", "/api/v1/openapi.json")
    assert status == 200
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["ingestToken"] | {"in": "query", "name": "token"} == schemes["ingestToken"]
    described = {}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method == "parameters":
                continue
            described[(method.upper(), path)] = (op["x-oceand-scope"], op["security"], set(op["responses"]))
    # the console is no API; the cluster's internal routes are not public
    assert set(described) == {k for k in ROUTES if not k[1].startswith("/ui") and ROUTES[k].scope != CLUSTER}
    for key, (scope, security, responses) in described.items():
        want = ROUTES[key].scope
        if want == OPEN:
            assert (scope, security) == (None, []), key
        elif want == INGEST:
            assert scope == "ingest" and {"ingestToken": []} in security and {} in security, key
        else:
            assert (scope, security) == (want, [{"bearer": [want]}]), key
            assert {"401", "403"} <= responses, key
