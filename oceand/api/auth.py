"""Access control on the HTTP routes (PRODUCT §10): which scope each route needs, the middleware that
checks the bearer token, and the token and audit routes.

`ROUTE_SCOPES` names the scope of every (method, route) the app serves: `None` is public (health, the
OpenAPI description), `"ingest"` is guarded by the ingest guard (`[ingest] allow` / `token`, or a token
with the `ingest` scope; Falcon cannot send headers), anything else needs a bearer token with that scope
when `[auth] enabled` (with auth off every request acts as `local`, with every scope). A route that is
not in the table is refused (fail closed); tests/api/test_auth_table.py fails until it is added.

401: no token, or one that does not authenticate (unknown, revoked, expired, rotated past its grace);
403: the token lacks the route's scope, or the job named in the URL is outside its job globs. Both
bodies say which.
"""

from __future__ import annotations

import hmac
import logging
import math
from typing import Any

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import MatchInfoError

from oceand.api.errors import ApiError, error_response, json_response, read_json
from oceand.auth import (
    LOCAL,
    MAX_EXPIRES,
    MAX_GRACE,
    Authority,
    Principal,
    TokenError,
    Unauthorized,
    WriteLimiter,
    audit,
    check_duration,
    check_globs,
    check_name,
    check_scopes,
)
from oceand.cluster.forward import TOKEN_HEADER, check_token
from oceand.config import IngestSettings
from oceand.keys import DAEMON, METRICS, STORE
from oceand.metrics import Metrics
from oceand.store.base import StoreError

log = logging.getLogger("oceand.api")

AUTHORITY: web.AppKey[Authority] = web.AppKey("authority")
LIMITER: web.AppKey[WriteLimiter] = web.AppKey("write_limiter")
WRITE_SCOPES = frozenset({"write", "operate", "admin"})
_PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)

PUBLIC = None
CLUSTER = "cluster"  # /internal/: the [cluster] token in X-Oceand-Cluster-Token (oceand/cluster/forward.py)
ROUTE_SCOPES: dict[tuple[str, str], str | None] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/api/v1/openapi.json"): PUBLIC,
    # the web console's static files (no data in them: the login page must load without a token; what
    # it shows comes from the API with the token the user gives)
    ("GET", "/ui"): PUBLIC,
    ("GET", "/ui/"): PUBLIC,
    ("GET", "/ui/{name}"): PUBLIC,
    ("GET", "/metrics"): "read",
    ("POST", "/v1/push"): "ingest",
    ("GET", "/v1/falcon/alarm"): "ingest",
    ("POST", "/v1/falcon/alarm"): "ingest",
    ("GET", "/api/v1/jobs"): "read",
    ("POST", "/api/v1/jobs"): "write",
    ("GET", "/api/v1/jobs/{job}"): "read",
    ("PUT", "/api/v1/jobs/{job}"): "write",
    ("DELETE", "/api/v1/jobs/{job}"): "write",
    ("GET", "/api/v1/jobs/{job}/status"): "read",
    ("GET", "/api/v1/jobs/{job}/decisions"): "read",
    ("GET", "/api/v1/jobs/{job}/history"): "read",
    ("POST", "/api/v1/jobs/{job}/preview"): "read",
    ("POST", "/api/v1/jobs/{job}/scale"): "operate",
    ("POST", "/api/v1/jobs/{job}/mode"): "operate",
    ("GET", "/api/v1/templates"): "read",
    ("GET", "/api/v1/templates/{name}"): "read",
    ("PUT", "/api/v1/templates/{name}"): "write",
    ("DELETE", "/api/v1/templates/{name}"): "write",
    ("POST", "/api/v1/templates/{name}/rename"): "write",
    ("POST", "/api/v1/modes"): "operate",
    ("GET", "/api/v1/clusters"): "read",
    ("GET", "/api/v1/cluster"): "read",
    ("GET", "/api/v1/ingest/unmatched"): "read",
    ("GET", "/api/v1/tokens"): "admin",
    ("POST", "/api/v1/tokens"): "admin",
    ("DELETE", "/api/v1/tokens/{name}"): "admin",
    ("POST", "/api/v1/tokens/{name}/rotate"): "admin",
    ("GET", "/api/v1/audit"): "admin",
    # between the daemons of a cluster (oceand/api/internal.py): the cluster token, never a bearer token
    ("POST", "/internal/v1/samples"): CLUSTER,
    ("POST", "/internal/v1/alarm"): CLUSTER,
}


def route_scope(request: web.Request) -> tuple[bool, str | None]:
    """(known, scope) of the request's route; known is False for a route missing from ROUTE_SCOPES."""
    resource = request.match_info.route.resource
    if resource is None:
        return True, PUBLIC
    method = hdrs.METH_GET if request.method == hdrs.METH_HEAD else request.method
    key = (method, resource.canonical)
    return key in ROUTE_SCOPES, ROUTE_SCOPES.get(key)


def principal(request: web.Request) -> Principal:
    """Who the request acts as (LOCAL when auth is off)."""
    p: Principal = request.get(_PRINCIPAL, LOCAL)
    return p


def require_job(request: web.Request, job: str) -> None:
    """403 unless the request's token covers `job`."""
    p = principal(request)
    if not p.may_touch(job):
        request.app[METRICS].auth_denied.labels("job_outside_token").inc()
        raise ApiError(
            403,
            "job_outside_token",
            f"job {job[:200]!r} is outside token {p.name!r}'s jobs ({', '.join(p.jobs)})",
        )


def source(request: web.Request) -> str:
    return (request.remote or "unknown")[:200]


async def record(
    request: web.Request,
    action: str,
    job: str | None = None,
    before: int | None = None,
    after: int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """One audit entry for a change made by this request."""
    daemon = request.app[DAEMON]
    await audit(
        request.app[STORE],
        daemon.clock(),
        principal(request).name,
        source(request),
        action,
        job,
        before,
        after,
        detail,
    )


def _bearer(request: web.Request) -> str | None:
    return parse_bearer(request.headers.get(hdrs.AUTHORIZATION))


def parse_bearer(header: str | None) -> str | None:
    """The token of an Authorization header: None without one, "" when it is not `Bearer <token>`."""
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return ""
    return value.strip()


def _unauthorized(request: web.Request, code: str, message: str) -> web.Response:
    request.app[METRICS].auth_denied.labels(code).inc()
    resp = error_response(401, code, message)
    resp.headers[hdrs.WWW_AUTHENTICATE] = 'Bearer realm="oceand"'
    return resp


@web.middleware
async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    if isinstance(request.match_info, MatchInfoError):  # 404 / 405: nothing to protect
        resp: web.StreamResponse = await handler(request)
        return resp
    known, scope = route_scope(request)
    if not known:
        log.error("route %s %s has no scope in ROUTE_SCOPES: refused", request.method, request.path)
        return error_response(500, "internal", "this route has no access rule (a bug, logged)")
    if scope == CLUSTER:
        return await _cluster_guard(request, handler)
    if scope == "ingest":
        denied = await _ingest_guard(request)
        if denied is not None:
            return denied
    if scope is PUBLIC or scope == "ingest":
        resp = await handler(request)
        return resp
    if request.app[DAEMON].config.auth.enabled:
        secret = _bearer(request)
        if secret is None:
            return _unauthorized(
                request, "missing_token", f"this route needs a bearer token with scope {scope!r}"
            )
        if not secret:
            return _unauthorized(request, "bad_token", "Authorization must be 'Bearer <token>'")
        try:
            p = await request.app[AUTHORITY].authenticate(secret)
        except Unauthorized as e:
            return _unauthorized(request, "bad_token", str(e))
        except StoreError:
            log.warning("cannot check a token: the store is unavailable", extra={"event": "auth_unavailable"})
            raise ApiError(
                503, "store_unavailable", "cannot check the token: the store is unavailable"
            ) from None
        if not p.has(scope):
            request.app[METRICS].auth_denied.labels("missing_scope").inc()
            raise ApiError(
                403,
                "missing_scope",
                f"token {p.name!r} lacks scope {scope!r} (it has {', '.join(sorted(p.scopes))})",
            )
        request[_PRINCIPAL] = p
        job = request.match_info.get("job")
        if job is not None:
            require_job(request, job)
    if scope in WRITE_SCOPES and request.method not in (hdrs.METH_GET, hdrs.METH_HEAD):
        limited = _rate_limited(request)
        if limited is not None:
            return limited
    resp = await handler(request)
    return resp


async def _cluster_guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """The /internal/ routes: 404 without [cluster], 401 without the cluster token or with another one
    (bearer tokens, even admin ones, do not open them)."""
    c = request.app[DAEMON].config.cluster
    reason = check_token(c.token if c.enabled else None, request.headers.get(TOKEN_HEADER))
    if reason is not None:
        request.app[METRICS].internal_rejected.labels(reason).inc()
        if reason == "not_clustered":
            return error_response(404, reason, "this daemon is not part of a cluster ([cluster] enabled)")
        return error_response(401, reason, f"this route needs the [cluster] token in {TOKEN_HEADER}")
    resp: web.StreamResponse = await handler(request)
    return resp


def _rate_limited(request: web.Request) -> web.Response | None:
    """None when this write may go; else 429 with Retry-After (whole seconds, rounded up). Keyed by the
    token, or by the source address when auth is off (every request is then `local`)."""
    daemon = request.app[DAEMON]
    settings = daemon.config.auth
    p = principal(request)
    key = f"token:{p.name}" if settings.enabled else f"source:{source(request)}"
    wait = request.app[LIMITER].take(key, daemon.clock(), settings.write_rate, settings.write_burst)
    if wait <= 0:
        return None
    request.app[METRICS].auth_rate_limited.inc()
    who = f"token {p.name!r}" if settings.enabled else f"source {source(request)}"
    retry = max(1, math.ceil(wait))
    resp = error_response(
        429,
        "rate_limited",
        f"{who} made more than {settings.write_burst} writes at a rate above {settings.write_rate:g}/s "
        f"([auth] write_rate, write_burst): retry in {retry}s",
    )
    resp.headers[hdrs.RETRY_AFTER] = str(retry)
    return resp


async def _ingest_guard(request: web.Request) -> web.Response | None:
    """None when the sender may push / call back; otherwise the refusal (see `ingest_access`)."""
    settings = request.app[DAEMON].config.ingest
    bearer = _bearer(request)
    query_token = request.query.get("token")
    allowed = ingest_access(settings, request.remote, query_token, bearer)
    if allowed is None:
        allowed = await store_allows_ingest(request.app[AUTHORITY], bearer or "")
    if allowed:
        return None
    status, code, message = ingest_refusal(
        request.app[METRICS], settings, request.remote, query_token, bearer
    )
    resp = error_response(status, code, message)
    if status == 401:
        resp.headers[hdrs.WWW_AUTHENTICATE] = 'Bearer realm="oceand"'
    return resp


def ingest_access(
    settings: IngestSettings, remote: str | None, query_token: str | None, bearer: str | None
) -> bool | None:
    """Whether a sender may push / call back: True, False, or None when only the store can tell (a bearer
    token that is not the ingest token: `store_allows_ingest`). Shared by the aiohttp listeners and
    `[ingest] http_listen` (oceand.api.pushserver).

    Open when neither `[ingest] allow` nor `[ingest] token` is set (the config allows that only on a
    loopback listener). Otherwise any one of: the sender's address is in `allow`; `?token=` or a bearer
    token equals `[ingest] token` (constant-time); a bearer token of the store with the `ingest` scope.
    The token is never logged: the alarm handler logs its query through policies.redact.
    """
    if not settings.allow and settings.token is None:
        return True
    if settings.allow and settings.allows(remote):
        return True
    if settings.token is not None:
        expected = settings.token.encode()
        if any(hmac.compare_digest(t.encode(), expected) for t in (query_token, bearer) if t):
            return True
    return None if bearer else False


async def store_allows_ingest(authority: Authority, bearer: str) -> bool:
    """A bearer token of the store with the `ingest` scope (the store down: False, the other ways in
    still work)."""
    try:
        return (await authority.authenticate(bearer)).has("ingest")
    except (Unauthorized, StoreError):
        return False


def ingest_refusal(
    metrics: Metrics,
    settings: IngestSettings,
    remote: str | None,
    query_token: str | None,
    bearer: str | None,
) -> tuple[int, str, str]:
    """(status, code, message) of a refused sender, counted; a 401 carries WWW-Authenticate."""
    if not query_token and not bearer and settings.token is None:
        metrics.auth_denied.labels("ingest_not_allowed").inc()
        return 403, "ingest_not_allowed", f"sender {remote} is not in [ingest] allow"
    metrics.auth_denied.labels("ingest_denied").inc()
    return (
        401,
        "ingest_denied",
        "ingest needs a sender in [ingest] allow, the ingest token (?token= or a bearer token), "
        "or a token with the ingest scope",
    )


# ---- token and audit routes ----------------------------------------------------------------------


def _token_error(e: TokenError) -> ApiError:
    details = [{"path": e.path, "message": e.message}] if e.path else []
    return ApiError(e.status, e.code, e.message, details)


def _with_secret(body: dict[str, Any], secret: str, status: int) -> web.Response:
    """A reply that shows a secret once: no cache may keep it."""
    resp = json_response({**body, "secret": secret}, status)
    resp.headers[hdrs.CACHE_CONTROL] = "no-store"
    return resp


def _token_name(request: web.Request) -> str:
    try:
        return check_name(request.match_info["name"])
    except TokenError as e:
        raise ApiError(400, "bad_token_name", e.message) from None


async def list_tokens(request: web.Request) -> web.Response:
    now = request.app[DAEMON].clock()
    tokens = await request.app[AUTHORITY].tokens()
    return json_response({"tokens": [t.public(now) for t in tokens]})


async def create_token(request: web.Request) -> web.Response:
    data = await read_json(request)
    if not isinstance(data, dict):
        raise ApiError(400, "bad_body", "body must be a JSON object")
    unknown = sorted(set(data) - {"name", "scopes", "jobs", "expires"})
    if unknown:
        raise ApiError(422, "invalid_body", f"unknown field {unknown[0][:40]!r}", [{"path": unknown[0][:40]}])
    try:
        name = check_name(data.get("name"))
        scopes = check_scopes(data.get("scopes"))
        jobs = check_globs(data.get("jobs"), scopes)
        expires = data.get("expires")
        seconds = None if expires is None else check_duration(expires, "expires", MAX_EXPIRES)
        if seconds is not None and seconds <= 0:
            raise TokenError(422, "invalid_body", "expires: must be more than 0 seconds", "expires")
        token, secret = await request.app[AUTHORITY].create(name, scopes, jobs, seconds)
    except TokenError as e:
        if e.code == "too_many_tokens":
            request.app[METRICS].auth_tokens_refused.inc()
        raise _token_error(e) from None
    await record(request, "token.create", detail={"token": name, "scopes": list(scopes), "jobs": list(jobs)})
    return _with_secret(token.public(request.app[DAEMON].clock()), secret, 201)


async def delete_token(request: web.Request) -> web.Response:
    name = _token_name(request)
    try:
        await request.app[AUTHORITY].delete(name)
    except TokenError as e:
        raise _token_error(e) from None
    await record(request, "token.delete", detail={"token": name})
    return web.Response(status=204)


async def rotate_token(request: web.Request) -> web.Response:
    name = _token_name(request)
    grace: float | None = None
    if request.body_exists:
        data = await read_json(request)
        if not isinstance(data, dict) or set(data) - {"grace"}:
            raise ApiError(422, "invalid_body", 'body: {"grace": duration} or nothing', [{"path": "grace"}])
        if data.get("grace") is not None:
            try:
                grace = check_duration(data["grace"], "grace", MAX_GRACE)
            except TokenError as e:
                raise _token_error(e) from None
    try:
        token, secret = await request.app[AUTHORITY].rotate(name, grace)
    except TokenError as e:
        raise _token_error(e) from None
    await record(request, "token.rotate", detail={"token": name, "old_secret_valid_until": token.old_until})
    return _with_secret(token.public(request.app[DAEMON].clock()), secret, 200)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/tokens", list_tokens)
    r.add_post("/api/v1/tokens", create_token)
    r.add_delete("/api/v1/tokens/{name}", delete_token)
    r.add_post("/api/v1/tokens/{name}/rotate", rotate_token)
