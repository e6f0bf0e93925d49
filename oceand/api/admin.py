"""The admin API (PRODUCT §5): jobs, status, decisions, manual scale, mode, clusters, health, metrics."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from aiohttp import web

from oceand.api import internal
from oceand.api.auth import principal, record, require_job
from oceand.api.errors import ApiError, json_response, read_json
from oceand.api.templates import keep_webhook, refusals, templates
from oceand.engine import AppUnknown
from oceand.history import (
    HISTORY_STEP_ROWS,
    MAX_PREVIEW_RANGE,
    MAX_PREVIEW_ROWS,
    PreviewError,
    downsample,
    load_rule,
)
from oceand.history import preview as history_preview
from oceand.jobs import Job, JobExists, JobLimit
from oceand.keys import ENGINE, HEALTH, JOBS, LEASES, METRICS, STORE
from oceand.replay import ReplayOptions
from oceand.templates import SELECT_KEYS, Composed, check_selector, matches
from policies.document import JOB_NAME_RE, DocumentError, JobDocument, dump_job, parse_job
from policies.redact import public_job, restore_webhook
from policies.types import ActuationOutcome
from policies.warnings import document_warnings


def _job_name(request: web.Request) -> str:
    name = request.match_info["job"]
    if not JOB_NAME_RE.match(name):
        raise ApiError(
            400,
            "bad_job_name",
            f"job name must be 1-200 characters of [A-Za-z0-9._-] (got {len(name)} characters)",
        )
    return name


def _known_job(request: web.Request) -> Job:
    name = _job_name(request)
    job = request.app[JOBS].get(name)
    if job is None:
        raise ApiError(404, "job_not_found", f"no job named {name!r}")
    return job


def _validate(request: web.Request, data: Any, path_name: str | None = None) -> Any:
    if isinstance(data, dict) and path_name is not None:
        if "job" not in data:
            data = {**data, "job": path_name}
        elif data["job"] != path_name:
            raise ApiError(
                422,
                "invalid_document",
                "the document's job name differs from the URL",
                [{"path": "job", "message": f"must be {path_name!r} (the name in the URL)"}],
            )
    try:
        return parse_job(data)
    except DocumentError as e:
        for bound in e.bounds:
            request.app[METRICS].documents_rejected.labels(bound).inc()
        raise ApiError(
            422, "invalid_document", f"{len(e.errors)} error(s) in the job document", e.errors
        ) from None


async def _resolve(
    request: web.Request, data: Any, path_name: str | None = None
) -> tuple[JobDocument, Composed]:
    """A job document as given: plain, or naming a template (laid over it, PRODUCT §13); validated."""
    if not isinstance(data, dict) or "template" not in data:
        return _validate(request, data, path_name), Composed(data)
    if path_name is not None and "job" not in data:
        data = {**data, "job": path_name}
    name = data.get("job")
    link = await templates(request).link(name) if isinstance(name, str) and JOB_NAME_RE.match(name) else None
    data = keep_webhook(data, link.own if link is not None else None, "document")
    composed = await templates(request).compose(data)
    return _validate(request, composed.data, path_name), composed


async def _with_template(request: web.Request, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """`body` with the template the job names and its own document, when it names one."""
    link = await templates(request).link(name)
    if link is None:
        return {**body, "template": None}
    return {**body, "template": link.template, "own": public_job(link.own)}


def _reply(doc: JobDocument, version: int, composed: Composed) -> dict[str, Any]:
    body: dict[str, Any] = {"job": _shown(doc), "version": version, "template": composed.template}
    body["warnings"] = document_warnings(doc)
    if composed.own is not None:
        body["own"] = public_job(composed.own)
    return body


def _template_detail(composed: Composed) -> dict[str, Any] | None:
    if composed.template is None:
        return None
    return {"template": composed.template, "template_version": composed.based_on[composed.template]}


def _shown(doc: JobDocument) -> dict[str, Any]:
    """A job document as the API returns it: the webhook's credentials and tokens are `***`."""
    return public_job(dump_job(doc))


def _keep_webhook(doc: JobDocument, current: Job | None) -> JobDocument:
    """A webhook sent back exactly as GET showed it (redacted) keeps the stored secret; a `***` placeholder
    anywhere else is refused (docs/policy.md). `current` is the job as it is, or None for a new job."""
    stored = current.doc.notify.webhook if current is not None else None
    try:
        webhook = restore_webhook(doc.notify.webhook, stored)
    except ValueError as e:
        raise ApiError(
            422,
            "invalid_document",
            "1 error(s) in the job document",
            [{"path": "notify.webhook", "message": str(e)}],
        ) from None
    if webhook == doc.notify.webhook:
        return doc
    return doc.model_copy(update={"notify": doc.notify.model_copy(update={"webhook": webhook})})


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ready, body = await request.app[HEALTH].readiness()
    return json_response(body, 200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    request.app[HEALTH].update_gauges()
    return web.Response(body=request.app[METRICS].render(), content_type="text/plain", charset="utf-8")


@refusals
async def list_jobs(request: web.Request) -> web.Response:
    """Every job the token covers; `?cop=&owt=&pdl=&service=&cluster=&job=` keep those whose Ocean tree
    name has those parts, `?name=` those matching a glob (PRODUCT §13, product lines)."""
    who = principal(request)
    given = {k: v for k in SELECT_KEYS if (v := request.query.get(k))}
    select = check_selector(given, "query") if given else {}
    links = {link.job: link.template for link in await templates(request).store.job_links()}
    out = [
        {
            "job": j.name,
            "mode": j.doc.mode,
            "effective_mode": j.effective_mode,
            "version": j.version,
            "template": links.get(j.name),
        }
        for j in request.app[JOBS].list()
        if who.may_touch(j.name) and matches(j.name, select)
    ]
    return json_response({"jobs": out})


@refusals
async def create_job(request: web.Request) -> web.Response:
    doc, composed = await _resolve(request, await read_json(request))
    require_job(request, doc.job)
    doc = _keep_webhook(doc, None)
    try:
        version = await request.app[JOBS].create(doc, composed)
    except JobExists:
        raise ApiError(
            409, "job_exists", f"job {doc.job!r} exists: PUT /api/v1/jobs/{doc.job} replaces it"
        ) from None
    except JobLimit as e:
        raise ApiError(409, "job_limit", f"job {doc.job!r} not created: {e}") from None
    await record(request, "job.create", doc.job, None, version, _template_detail(composed))
    return json_response(_reply(doc, version, composed), 201)


@refusals
async def get_job(request: web.Request) -> web.Response:
    job = _known_job(request)
    return json_response(
        await _with_template(
            request,
            job.name,
            {"job": _shown(job.doc), "version": job.version, "warnings": document_warnings(job.doc)},
        )
    )


@refusals
async def put_job(request: web.Request) -> web.Response:
    name = _job_name(request)
    doc, composed = await _resolve(request, await read_json(request), name)
    current = request.app[JOBS].get(name)
    before = None if current is None else current.version
    doc = _keep_webhook(doc, current)
    try:
        version = await request.app[JOBS].replace(doc, composed)
    except JobLimit as e:
        raise ApiError(409, "job_limit", f"job {name!r} not created: {e}") from None
    if version != before:
        action = "job.replace" if current is not None else "job.create"
        await record(request, action, name, before, version, _template_detail(composed))
    existed = current is not None
    return json_response(_reply(doc, version, composed), 200 if existed else 201)


async def delete_job(request: web.Request) -> web.Response:
    job = _known_job(request)
    await request.app[JOBS].delete(job.name)
    await record(request, "job.delete", job.name, job.version, None)
    return web.Response(status=204)


@refusals
async def job_status(request: web.Request) -> web.Response:
    """The job's status with its effective document, and the template and own fields it names."""
    job = _known_job(request)
    status = request.app[JOBS].status(job.name)
    status["document"] = _shown(job.doc)
    return json_response(await _with_template(request, job.name, status))


def _query_number(
    request: web.Request, key: str, default: float | None, lo: float, hi: float
) -> float | None:
    raw = request.query.get(key)
    if raw is None or raw == "":
        return default
    try:
        v = float(raw)
    except ValueError:
        raise ApiError(400, "bad_query", f"{key}: {raw[:40]!r} is not a number") from None
    if not math.isfinite(v) or not lo <= v <= hi:
        raise ApiError(400, "bad_query", f"{key}: must be between {lo:g} and {hi:g}")
    return v


async def decisions(request: web.Request) -> web.Response:
    name = _known_job(request).name
    limit = _query_number(request, "limit", 50, 1, 1000)
    since = _query_number(request, "since", None, 0, 1e12)
    rows = [
        ActuationOutcome.from_json(d["outcome"]).view(d)
        for d in await request.app[STORE].decisions(name, int(limit or 50), since)
    ]
    fires = await request.app[STORE].fires(name, int(limit or 50))
    return json_response({"job": name, "decisions": rows, "fires": fires})


async def history(request: web.Request) -> web.Response:
    """The job's recorded history (PRODUCT §13), oldest first: since <= t < until, at most `limit` rows;
    with `step`, in bins of that many seconds (oceand.history.downsample)."""
    name = _known_job(request).name
    since = _query_number(request, "since", None, 0, 1e12)
    until = _query_number(request, "until", None, 0, 1e12)
    if since is not None and until is not None and until <= since:
        raise ApiError(400, "bad_query", "until: must be after since")
    limit = int(_query_number(request, "limit", 1000, 1, 100_000) or 1000)
    step = _query_number(request, "step", None, 1, 86400)
    if step is None:
        return json_response(
            {"job": name, "rows": await request.app[STORE].history(name, since, until, limit)}
        )
    # bins of `step` seconds: read up to HISTORY_STEP_ROWS stored rows, then at most `limit` bins
    rows = downsample(await request.app[STORE].history(name, since, until, HISTORY_STEP_ROWS), step)
    return json_response({"job": name, "rows": rows[:limit], "step": step})


def _body_number(data: dict[str, Any], key: str, default: float | None, lo: float, hi: float) -> float:
    v = data.get(key, default)
    if v is None:
        raise ApiError(422, "invalid_body", f"{key}: required", [{"path": key, "message": "required"}])
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not lo <= v <= hi:
        raise ApiError(
            422, "invalid_body", f"{key}: must be a number between {lo:g} and {hi:g}", [{"path": key}]
        )
    return float(v)


@refusals
async def preview(request: web.Request) -> web.Response:
    """The §6 simulator on the job's recorded load with another document (PRODUCT §13); a document that
    names a template is laid over it first, as a PUT of it would be."""
    job = _known_job(request)
    name = job.name
    data = await read_json(request)
    if not isinstance(data, dict):
        raise ApiError(400, "bad_body", "body must be a JSON object")
    doc, _ = await _resolve(request, data.get("job"), name)
    since = _body_number(data, "since", None, 0, 1e12)
    until = _body_number(data, "until", None, 0, 1e12)
    if until <= since:
        raise ApiError(422, "invalid_body", "until: must be after since", [{"path": "until"}])
    if until - since > MAX_PREVIEW_RANGE:
        request.app[METRICS].previews_refused.labels("range_too_long").inc()
        raise ApiError(
            422,
            "range_too_long",
            f"the range spans {until - since:.0f} s; a preview reads at most {MAX_PREVIEW_RANGE:.0f} s"
            " (31 d) of history",
        )
    rule = data.get("rule")
    if rule is not None and not isinstance(rule, str):
        raise ApiError(422, "invalid_body", "rule: must be a rule name", [{"path": "rule"}])
    rows = await request.app[STORE].history(name, since, until, MAX_PREVIEW_ROWS + 1)
    if len(rows) > MAX_PREVIEW_ROWS:
        request.app[METRICS].previews_refused.labels("range_too_large").inc()
        raise ApiError(
            422, "range_too_large", f"more than {MAX_PREVIEW_ROWS:,} history rows in the range; narrow it"
        )
    if not rows:
        raise ApiError(
            422, "no_history", f"job {name!r} has no recorded history between {since:g} and {until:g}"
        )
    options = ReplayOptions(
        capacity=_body_number(data, "capacity", 100.0, 1e-9, 1e12),
        startup=_body_number(data, "startup", 60.0, 0, 86400),
        initial=int(_body_number(data, "initial", rows[0]["ready"], 0, 100_000)),
    )
    try:
        used = load_rule(job.doc, rule)
        result = await asyncio.to_thread(history_preview, doc, name, rows, used, options)
    except PreviewError as e:
        raise ApiError(422, e.code, str(e)) from None
    return json_response(result)


def _int_field(data: Any, key: str, lo: int, hi: int) -> int:
    if not isinstance(data, dict):
        raise ApiError(400, "bad_body", "body must be a JSON object")
    v = data.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ApiError(
            422, "invalid_body", f"{key}: must be an integer", [{"path": key, "message": "integer"}]
        )
    if not lo <= v <= hi:
        raise ApiError(
            422, "invalid_body", f"{key}: must be between {lo} and {hi}", [{"path": key, "message": "range"}]
        )
    return v


async def scale(request: web.Request) -> web.Response:
    op = internal.idempotency_key(request)
    name = _known_job(request).name
    owner = await internal.to_owner(request, name)  # cluster: the job's owner acts, not this daemon
    if owner is not None:
        return owner
    data = await read_json(request)
    instances = _int_field(data, "instances", 0, 100000)
    reason = data.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 500:
        raise ApiError(422, "invalid_body", "reason: a string of at most 500 characters")
    try:
        decided = await request.app[JOBS].scale(name, instances, reason, op)
    except AppUnknown as e:
        raise ApiError(409, "app_state_unknown", str(e)) from None
    version = _known_job(request).version
    detail = {"instances": instances, "reason": reason, "status": decided.outcome.api_status}
    await record(request, "job.scale", name, version, version, detail)
    return json_response({"decision": decided.view()})


@refusals
async def set_mode(request: web.Request) -> web.Response:
    name = _known_job(request).name
    owner = await internal.to_owner(request, name)
    if owner is not None:
        return owner
    data = await read_json(request)
    mode = data.get("mode") if isinstance(data, dict) else None
    if mode not in ("active", "dry-run", "paused"):
        raise ApiError(
            422, "invalid_body", "mode: must be 'active', 'dry-run' or 'paused'", [{"path": "mode"}]
        )
    jobs = request.app[JOBS]
    before = _known_job(request).version
    try:
        version = await jobs.set_mode(name, mode)
    except KeyError:
        raise ApiError(404, "job_not_found", f"no job named {name!r}") from None
    if version != before:
        await record(request, "job.mode", name, before, version, {"mode": mode})
    job = _known_job(request)
    return json_response(
        {
            "job": name,
            "mode": mode,
            "effective_mode": job.effective_mode,
            "dry_run_reason": job.dry_run_reason,
            "version": version,
        }
    )


async def audit_log(request: web.Request) -> web.Response:
    job = request.query.get("job") or None
    if job is not None and not JOB_NAME_RE.match(job):
        raise ApiError(400, "bad_query", "job: 1-200 characters of [A-Za-z0-9._-]")
    since = _query_number(request, "since", None, 0, 1e12)
    limit = _query_number(request, "limit", 100, 1, 1000)
    entries = await request.app[STORE].audit(job, since, int(limit or 100))
    return json_response({"entries": entries})


async def clusters(request: web.Request) -> web.Response:
    return json_response({"clusters": request.app[HEALTH].clusters_info()})


async def cluster(request: web.Request) -> web.Response:
    """Several daemons (docs/cluster.md): members, shards per member and lease epochs as last polled."""
    leases = request.app[LEASES]
    return json_response({"enabled": False} if leases is None else leases.describe())


async def unmatched(request: web.Request) -> web.Response:
    """The latest series no job takes (PRODUCT §9): "my job sees no data" in one call."""
    seen = request.app[ENGINE].ingestor.unmatched
    return json_response({"unmatched_samples": seen.total, "series": seen.listing()})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/metrics", metrics)
    r.add_get("/api/v1/jobs", list_jobs)
    r.add_post("/api/v1/jobs", create_job)
    r.add_get("/api/v1/jobs/{job}", get_job)
    r.add_put("/api/v1/jobs/{job}", put_job)
    r.add_delete("/api/v1/jobs/{job}", delete_job)
    r.add_get("/api/v1/jobs/{job}/status", job_status)
    r.add_get("/api/v1/jobs/{job}/decisions", decisions)
    r.add_get("/api/v1/jobs/{job}/history", history)
    r.add_post("/api/v1/jobs/{job}/preview", preview)
    r.add_post("/api/v1/jobs/{job}/scale", scale)
    r.add_post("/api/v1/jobs/{job}/mode", set_mode)
    r.add_get("/api/v1/clusters", clusters)
    r.add_get("/api/v1/cluster", cluster)
    r.add_get("/api/v1/ingest/unmatched", unmatched)
    r.add_get("/api/v1/audit", audit_log)
