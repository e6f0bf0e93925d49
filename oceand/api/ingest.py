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
from aiohttp import ClientPayloadError, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from collectors.falcon import AlarmError, alarm_params, parse_alarm, parse_alarm_body
from oceand.api.errors import ApiError, json_response
from oceand.ingest import PushResult, decode_items
from oceand.keys import ENGINE, METRICS
from policies.redact import redact_query

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
    """A Falcon alarm callback: GET with a query (what Falcon sends), or POST with a form or JSON body on top.

    Total: a callback that cannot be read or used gets a 4xx naming the problem, one warning line
    (`alarm_rejected`) and a count; never a 5xx."""
    engine = request.app[ENGINE]
    metrics = request.app[METRICS]
    try:
        params = alarm_params(request.query.items(), "query")
        if request.method == "POST" and request.body_exists:
            body = await _read_alarm_body(request)
            pairs = parse_alarm_body(request.headers.get(hdrs.CONTENT_TYPE, ""), body)
            params.update(alarm_params(pairs, "body"))
        event = parse_alarm(params, engine.clock())
    except AlarmError as e:
        metrics.alarms.labels("rejected").inc()
        log.warning(
            "bad alarm callback: %s",
            e,
            extra={"event": "alarm_rejected", "query": redact_query(request.query_string)},
        )
        raise ApiError(e.status, e.code, str(e)) from None
    jobs = engine.alarm(event)
    metrics.alarms.labels("accepted").inc()
    return json_response({"msg": "success", "jobs": jobs})


async def _read_alarm_body(request: web.Request) -> bytes:
    encoding = request.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower()
    if encoding != "identity":  # the server does not decompress (oceand.api.server)
        raise AlarmError(
            f"body: Content-Encoding {encoding[:40]!r} is not accepted, send it uncompressed",
            415,
            "unsupported_encoding",
        )
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise AlarmError(
            f"body: larger than {request.client_max_size} bytes (server.max_body)", 413, "body_too_large"
        ) from None
    except (web.RequestPayloadError, HttpProcessingError, ClientPayloadError, ConnectionError) as e:
        raise AlarmError(f"body: cannot be read: {e}") from None
