"""Between the daemons of one cluster (docs/cluster.md "Forwarding"): not in the public OpenAPI.

- `POST /internal/v1/samples`: samples routed by another daemon for jobs whose shard is held here
  (oceand/cluster/forward.py). 204, or 409 `{"not_owner": [shards]}` naming the shards not held here (the
  samples of the other shards are kept);
- `POST /internal/v1/alarm`: an alarm callback another daemon received, `{"from", "event", "jobs"}`, queued
  here for those of `jobs` held here (the rest are in the 409's `not_owner_jobs`).

Both need the cluster token (`X-Oceand-Cluster-Token`, `[cluster] token`), checked by the auth middleware
for the routes of scope `cluster` (oceand/api/auth.py); a bad body is a 400, counted.

Acting admin calls (manual scale, mode) for a job owned by another daemon are proxied to that owner by
`to_owner` (the caller's bearer token goes along: the owner checks it against the same store), marked with
`X-Oceand-Forwarded` so a call is forwarded at most once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from typing import Any

import aiohttp
import orjson
from aiohttp import hdrs, web

from oceand.api.errors import ApiError, json_response
from oceand.cluster.forward import (
    FORWARDED_HEADER,
    SAMPLES_PATH,
    TOKEN_HEADER,
    BadSamples,
    Forwarder,
    group_by_shard,
    parse_samples,
    split_by_owner,
)
from oceand.keys import DAEMON, ENGINE, METRICS
from policies.types import AlarmEvent

log = logging.getLogger("oceand.cluster")

ALARM_PATH = "/internal/v1/alarm"
_ALARM_FIELDS = {f.name for f in dataclasses.fields(AlarmEvent)}


def _forwarder(request: web.Request) -> Forwarder:
    fwd: Forwarder | None = request.app[DAEMON].forwarder
    if fwd is None:  # the middleware answers 404 first (no cluster token without [cluster])
        raise ApiError(404, "not_clustered", "this daemon is not part of a cluster")
    return fwd


def _bad(request: web.Request, message: str) -> ApiError:
    request.app[METRICS].internal_rejected.labels("malformed").inc()
    return ApiError(400, "malformed", message)


async def samples(request: web.Request) -> web.Response:
    fwd = _forwarder(request)
    metrics = request.app[METRICS]
    try:
        _, got = parse_samples(await request.read())
    except BadSamples as e:
        raise _bad(request, str(e)) from None
    keep, not_owner = split_by_owner(group_by_shard(got, fwd.shard), fwd.held)
    skipped = request.app[ENGINE].feed_forwarded(keep)
    metrics.forward_samples.labels("received").inc(len(keep) - skipped)
    if skipped:
        metrics.forward_samples.labels("dropped_unknown_job").inc(skipped)
    if not_owner:
        metrics.forward_samples.labels("refused").inc(len(got) - len(keep))
        return json_response({"not_owner": not_owner}, 409)
    return web.Response(status=204)


def event_json(event: AlarmEvent) -> dict[str, Any]:
    return dataclasses.asdict(event)


def parse_event(doc: Any) -> AlarmEvent:
    """An AlarmEvent from its JSON form, or ValueError naming what is wrong."""
    if not isinstance(doc, dict) or set(doc) != _ALARM_FIELDS:
        raise ValueError(f"event must be an object with exactly {sorted(_ALARM_FIELDS)}")
    tags = doc["tags"]
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise ValueError("event.tags must be an object of strings")
    for k in ("endpoint", "metric", "time"):
        if not isinstance(doc[k], str):
            raise ValueError(f"event.{k} must be a string")
    if doc["status"] not in ("PROBLEM", "OK"):
        raise ValueError("event.status must be PROBLEM or OK")
    for k in ("step", "priority", "tpl_id", "exp_id", "stra_id"):
        if type(doc[k]) is not int:
            raise ValueError(f"event.{k} must be an integer")
    if type(doc["now"]) not in (int, float) or type(doc["left_value"]) not in (int, float, type(None)):
        raise ValueError("event.now and event.left_value must be numbers")
    return AlarmEvent(**doc)


async def alarm(request: web.Request) -> web.Response:
    fwd = _forwarder(request)
    try:
        doc = orjson.loads(await request.read())
        jobs = doc["jobs"]
        if not isinstance(jobs, list) or not all(isinstance(j, str) for j in jobs):
            raise ValueError("jobs must be a list of job names")
        event = parse_event(doc["event"])
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError) as e:
        raise _bad(request, f"alarm body: {e}") from None
    mine = {j for j in jobs if fwd.held(fwd.shard(j))}
    queued = request.app[ENGINE].alarm(event, only=mine.__contains__)
    others = sorted(set(jobs) - mine)
    request.app[METRICS].forward_calls.labels("alarm", "received").inc()
    if others:
        return json_response({"jobs": queued, "not_owner_jobs": others}, 409)
    return json_response({"jobs": queued})


async def forward_alarm(request: web.Request, event: AlarmEvent, jobs: list[str]) -> list[str]:
    """Send an alarm callback to the owners of `jobs` (matched here, owned elsewhere), once per owner; a
    not_owner reply is retried once after reading the routes again. Returns the jobs it did not reach."""
    fwd = _forwarder(request)
    metrics = request.app[METRICS]
    left = list(jobs)
    for attempt in range(2):
        by_addr: dict[str, list[str]] = {}
        for j in left:
            r = fwd.routes.get(fwd.shard(j))
            if r is not None and r.owner != fwd.me:
                by_addr.setdefault(r.addr, []).append(j)
        body = {"from": fwd.me, "event": event_json(event)}
        replies = await asyncio.gather(
            *(_post_alarm(fwd, addr, {**body, "jobs": js}) for addr, js in by_addr.items())
        )
        left = [j for j in left if not any(j in js for js in by_addr.values())]
        for (addr, js), missed in zip(by_addr.items(), replies, strict=True):
            left += missed
            metrics.forward_calls.labels("alarm", "sent" if not missed else "not_owner").inc()
            if missed and len(missed) == len(js):
                log.warning("alarm for %s not taken by %s", js, addr, extra={"event": "alarm_forward_failed"})
        if not left or attempt:
            break
        try:
            await fwd.routes.refresh()
        except Exception:  # the store is away: the last routes are all there is
            break
    if left:
        metrics.forward_calls.labels("alarm", "dropped").inc(len(left))
    return left


async def _post_alarm(fwd: Forwarder, addr: str, body: dict[str, Any]) -> list[str]:
    jobs: list[str] = body["jobs"]
    try:
        async with fwd.client().post(
            f"http://{addr}{ALARM_PATH}", data=orjson.dumps(body), headers={TOKEN_HEADER: fwd.token}
        ) as resp:
            if resp.status == 200:
                return []
            if resp.status == 409:
                missed: list[str] = orjson.loads(await resp.read()).get("not_owner_jobs", jobs)
                return missed
            return jobs
    except (OSError, aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
        return jobs


IDEMPOTENCY_HEADER = "Idempotency-Key"  # POST /api/v1/jobs/{job}/scale: the same on a retry of the call
IDEMPOTENCY_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def idempotency_key(request: web.Request) -> str | None:
    """The call's Idempotency-Key (None without one); 400 when it is not 1-64 of [A-Za-z0-9._:-]."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and IDEMPOTENCY_RE.fullmatch(key) is None:
        raise ApiError(
            400,
            "bad_idempotency_key",
            f"{IDEMPOTENCY_HEADER}: 1 to 64 characters of A-Z a-z 0-9 . _ : - (got {key[:80]!r})",
        )
    return key


async def to_owner(request: web.Request, job: str) -> web.Response | None:
    """None when this daemon acts on `job` itself (no cluster, its shard is held here, or the call was
    forwarded here already); else the owner's reply to the same call, or 503 naming the owner when there
    is none right now (a takeover: retry) or it cannot be reached."""
    fwd: Forwarder | None = request.app[DAEMON].forwarder
    if fwd is None or request.headers.get(FORWARDED_HEADER):
        return None
    shard = fwd.shard(job)
    if fwd.held(shard):
        return None
    metrics = request.app[METRICS]
    r = fwd.routes.get(shard)
    if r is None or r.owner == fwd.me:
        metrics.forward_calls.labels("admin", "no_owner").inc()
        raise ApiError(
            503,
            "no_owner",
            f"job {job!r}: shard {shard} has no owner right now (a takeover): retry in a second",
        )
    headers = {FORWARDED_HEADER: fwd.me, TOKEN_HEADER: fwd.token}
    for h in (hdrs.AUTHORIZATION, hdrs.CONTENT_TYPE, IDEMPOTENCY_HEADER):
        if h in request.headers:
            headers[h] = request.headers[h]
    try:
        async with fwd.client().request(
            request.method, f"http://{r.addr}{request.path_qs}", data=await request.read(), headers=headers
        ) as resp:
            body = await resp.read()
            metrics.forward_calls.labels("admin", str(resp.status)).inc()
            return web.Response(
                status=resp.status,
                body=body,
                content_type=resp.content_type,
                headers={"X-Oceand-Owner": f"{r.owner} {r.addr} epoch {r.epoch}"},
            )
    except (OSError, aiohttp.ClientError, TimeoutError) as e:
        metrics.forward_calls.labels("admin", "unreachable").inc()
        raise ApiError(
            503,
            "owner_unreachable",
            f"job {job!r} is owned by {r.owner} at {r.addr}, which does not answer: {e}",
        ) from None


def add_routes(app: web.Application) -> None:
    app.router.add_post(SAMPLES_PATH, samples)
    app.router.add_post(ALARM_PATH, alarm)
