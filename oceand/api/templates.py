"""Templates and product lines on the admin API (PRODUCT §13): thin handlers over oceand/templates.py.

- `GET /api/v1/templates`, `GET|PUT|DELETE /api/v1/templates/{name}` (`PUT ?dry_run=true` lists each
  dependent job's change and writes nothing), `POST /api/v1/templates/{name}/rename`;
- `POST /api/v1/modes {"select": {...}, "mode": ...}`: the mode of every job the selector matches, in one
  transaction, audited once per job changed.

A template write re-composes jobs, so the token must cover every job that names the template.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from oceand.api.auth import record, require_job
from oceand.api.errors import ApiError, json_response, read_json
from oceand.keys import JOBS
from oceand.templates import Refused, Templates, check_selector, matches
from policies.redact import public_job, restore_webhook

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MODES = ("active", "dry-run", "paused")


def refusals(handler: Handler) -> Handler:
    """A `Refused` of the rules becomes the API's error reply."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Refused as e:
            raise ApiError(e.status, e.code, e.message, e.details) from None

    return wrapped


def templates(request: web.Request) -> Templates:
    t: Templates = request.app[JOBS].templates
    return t


def keep_webhook(data: Any, stored: dict[str, Any] | None, where: str) -> Any:
    """A template or own document sent back as GET showed it keeps the stored webhook secret."""
    if not isinstance(data, dict) or not isinstance(data.get("notify"), dict):
        return data
    new = data["notify"].get("webhook")
    if not isinstance(new, str):
        return data
    old = (stored or {}).get("notify", {}).get("webhook")
    try:
        kept = restore_webhook(new, old if isinstance(old, str) else None)
    except ValueError as e:
        raise ApiError(
            422,
            f"invalid_{where}",
            f"1 error(s) in the {where}",
            [{"path": "notify.webhook", "message": str(e)}],
        ) from None
    return {**data, "notify": {**data["notify"], "webhook": kept}}


def _dry_run(request: web.Request) -> bool:
    raw = request.query.get("dry_run", "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise ApiError(400, "bad_query", "dry_run: true or false")
    return raw in ("true", "1")


def _require_jobs(request: web.Request, jobs: list[str] | frozenset[str]) -> None:
    for job in sorted(jobs):
        require_job(request, job)


@refusals
async def list_templates(request: web.Request) -> web.Response:
    store = templates(request).store
    users: dict[str, list[str]] = {}
    for link in await store.job_links():
        users.setdefault(link.template, []).append(link.job)
    out = [
        {"name": t.name, "version": t.version, "updated_at": t.updated_at, "jobs": users.get(t.name, [])}
        for t in await store.list_templates()
    ]
    return json_response({"templates": out})


@refusals
async def get_template(request: web.Request) -> web.Response:
    stored, jobs = await templates(request).get(request.match_info["name"])
    return json_response(
        {"name": stored.name, "template": public_job(stored.doc), "version": stored.version, "jobs": jobs}
    )


@refusals
async def put_template(request: web.Request) -> web.Response:
    t = templates(request)
    name = t.name(request.match_info["name"])
    dry_run = _dry_run(request)
    data = await read_json(request)
    before = await t.store.get_template(name)
    data = keep_webhook(data, before.doc if before is not None else None, "template")
    plan, version, versions = await t.put(name, data, dry_run, lambda jobs: _require_jobs(request, jobs))
    changed = not dry_run and not plan.noop
    if changed:
        action = "template.replace" if plan.before is not None else "template.create"
        await record(request, action, None, None, None, {"template": name, "version": version})
        for c in plan.jobs:
            detail = {"template": name, "template_version": version, "changes": c.public()["changes"]}
            await record(request, "job.template", c.job, c.version, versions[c.job], detail)
    jobs = [{**c.public(), "new_version": versions.get(c.job)} for c in plan.jobs]
    body = {
        "name": name,
        "template": public_job(plan.doc),
        "version": version,
        "dry_run": dry_run,
        "dependents": sorted(plan.dependents),
        "jobs": jobs,
    }
    return json_response(body, 201 if changed and plan.before is None else 200)


@refusals
async def delete_template(request: web.Request) -> web.Response:
    t = templates(request)
    name = t.name(request.match_info["name"])
    version = await t.delete(name)
    await record(request, "template.delete", None, None, None, {"template": name, "version": version})
    return web.Response(status=204)


@refusals
async def rename_template(request: web.Request) -> web.Response:
    t = templates(request)
    name = t.name(request.match_info["name"])
    data = await read_json(request)
    to = data.get("to") if isinstance(data, dict) else None
    version = await t.rename(name, to)
    await record(
        request, "template.rename", None, None, None, {"template": name, "to": to, "version": version}
    )
    return json_response({"name": to, "version": version})


@refusals
async def set_modes(request: web.Request) -> web.Response:
    """The incident switch: every job a selector matches to one mode, one transaction."""
    data = await read_json(request)
    if not isinstance(data, dict):
        raise ApiError(400, "bad_body", "body must be a JSON object")
    select = check_selector(data.get("select"))
    mode = data.get("mode")
    if mode not in MODES:
        raise ApiError(
            422, "invalid_body", "mode: must be 'active', 'dry-run' or 'paused'", [{"path": "mode"}]
        )

    def pick(names: list[str]) -> list[str]:
        chosen = [n for n in names if matches(n, select)]
        if not chosen:
            shown = ", ".join(f"{k}={v}" for k, v in select.items())
            raise ApiError(422, "no_match", f"selector {shown} matches no job", [{"path": "select"}])
        for name in chosen:  # all or nothing: a job outside the token refuses the whole call
            require_job(request, name)
        return chosen

    result = await templates(request).set_modes(request.app[JOBS].view, pick, mode)
    jobs = []
    for name, (before, after) in result.items():
        if after != before:
            await record(request, "job.mode", name, before, after, {"mode": mode, "select": select})
        jobs.append({"job": name, "version": after, "changed": after != before})
    return json_response({"select": select, "mode": mode, "jobs": jobs})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/templates", list_templates)
    r.add_get("/api/v1/templates/{name}", get_template)
    r.add_put("/api/v1/templates/{name}", put_template)
    r.add_delete("/api/v1/templates/{name}", delete_template)
    r.add_post("/api/v1/templates/{name}/rename", rename_template)
    r.add_post("/api/v1/modes", set_modes)
