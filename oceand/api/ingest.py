"""Falcon inputs over HTTP: `POST /v1/push` (agent push API) and `/v1/falcon/alarm` (alarm callbacks).

The push reply has the transfer's `/api/push` shape (PROTOCOLS.md B.2) plus the first rejection reasons:
`{"msg": "success", "data": {"Message": "ok", "Total": n, "Invalid": k, "Latency": ms, "Errors": [...]}}`.
A body that is not a JSON array, is empty or too large gets 400/413; invalid items are dropped one by one
and the rest of the body is kept.
"""

from __future__ import annotations

import logging
import time

import orjson
from aiohttp import web

from collectors.falcon import AlarmError, parse_alarm
from oceand.api.errors import ApiError, json_response
from oceand.ingest import PushResult, decode_items
from oceand.keys import ENGINE, METRICS

log = logging.getLogger("oceand.ingest")


async def push(request: web.Request) -> web.Response:
    started = time.perf_counter()
    metrics = request.app[METRICS]
    body = await request.read()
    fast = decode_items(body)  # the usual body, decoded and type-checked in one pass
    if fast:
        return _reply(request, request.app[ENGINE].push(fast, typed=True), started)
    try:
        items = orjson.loads(body) if body else None
    except orjson.JSONDecodeError as e:
        metrics.pushes.labels("400").inc()
        raise ApiError(400, "bad_json", f"connot decode body: {e}") from None  # [sic]: Falcon agent's text
    if items is None or (isinstance(items, list) and not items):
        metrics.pushes.labels("400").inc()
        raise ApiError(400, "empty_body", "body is blank: expected a non-empty JSON array of metric items")
    if not isinstance(items, list):
        metrics.pushes.labels("400").inc()
        raise ApiError(
            400, "not_an_array", f"body must be a JSON array of metric items, not {type(items).__name__}"
        )
    return _reply(request, request.app[ENGINE].push(items), started)


def _reply(request: web.Request, res: PushResult, started: float) -> web.Response:
    metrics = request.app[METRICS]
    valid = res.total - res.invalid
    metrics.samples.labels("accepted").inc(valid)
    if res.invalid:
        metrics.samples.labels("rejected").inc(res.invalid)
        if res.too_new:
            metrics.ingest_rejected.labels("timestamp_future").inc(res.too_new)
        if res.too_old:
            metrics.ingest_rejected.labels("timestamp_old").inc(res.too_old)
    metrics.pushes.labels("200").inc()
    return json_response(
        {
            "msg": "success",
            "data": {
                "Message": "ok",
                "Total": res.total,
                "Invalid": res.invalid,
                "Latency": round((time.perf_counter() - started) * 1000),
                "Errors": res.reasons,
            },
        }
    )


async def alarm(request: web.Request) -> web.Response:
    params = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        ctype = request.content_type
        if ctype == "application/x-www-form-urlencoded" or ctype == "multipart/form-data":
            form = await request.post()
            params.update({k: str(v) for k, v in form.items()})
        elif ctype == "application/json":
            try:
                data = orjson.loads(await request.read())
            except orjson.JSONDecodeError as e:
                raise ApiError(400, "bad_json", f"body is not valid JSON: {e}") from None
            if not isinstance(data, dict):
                raise ApiError(400, "bad_alarm", "a JSON alarm body is an object of callback parameters")
            params.update({str(k): str(v) for k, v in data.items()})
    engine = request.app[ENGINE]
    metrics = request.app[METRICS]
    try:
        event = parse_alarm(params, engine.clock())
    except AlarmError as e:
        metrics.alarms.labels("rejected").inc()
        log.warning(
            "bad alarm callback: %s", e, extra={"event": "alarm_rejected", "query": request.query_string}
        )
        raise ApiError(400, "bad_alarm", str(e)) from None
    jobs = engine.alarm(event)
    metrics.alarms.labels("accepted").inc()
    return json_response({"msg": "success", "jobs": jobs})
