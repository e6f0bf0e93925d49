"""Falcon inputs over HTTP: `POST /v1/push` (agent push API) and `/v1/falcon/alarm` (alarm callbacks).

The push reply has the transfer's `/api/push` shape (PROTOCOLS.md B.2) plus the first rejection reasons:
`{"msg": "success", "data": {"Message": "ok", "Total": n, "Invalid": k, "Latency": ms, "Errors": [...]}}`.
A body that is not a JSON array, is empty or too large gets 400/413; invalid items are dropped one by one
and the rest of the body is kept. A body over SLICE_BYTES is decoded and routed in slices, the event loop
running between them (`/healthz` answers during an 8 MiB push).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec
import orjson
from aiohttp import ClientPayloadError, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from collectors.falcon import AlarmError, alarm_params, parse_alarm, parse_alarm_body
from collectors.falcon_items import SLICE_BYTES, FalconItem, decode_items, split_body
from oceand.api import internal
from oceand.api.errors import ApiError, json_response
from oceand.ingest import SLICE_ITEMS, Ingestor, PushResult
from oceand.keys import DAEMON, ENGINE, INGESTOR, METRICS
from oceand.metrics import Metrics
from policies.redact import redact_query

log = logging.getLogger("oceand.ingest")

ROUTE_SLICE = 256  # items of a body under SLICE_BYTES routed between two turns of the event loop (push_body)


async def push(request: web.Request) -> web.Response:
    started = time.perf_counter()
    body = await request.read()
    res = await push_body(request.app[INGESTOR], request.app[METRICS], body)
    return json_response(push_reply(request.app[METRICS], res, started))


async def push_body(ing: Ingestor, metrics: Metrics, body: bytes) -> PushResult:
    """A push body decoded, checked and routed; the 400 that says what is wrong with it as an ApiError.
    Shared by `POST /v1/push` here and `[ingest] http_listen` (oceand.api.pushserver)."""
    if len(body) > SLICE_BYTES:
        return await _push_large(ing, metrics, body)
    fast = decode_items(body)  # the usual body, decoded and type-checked in one pass
    if fast and len(fast) > ROUTE_SLICE:
        # Routed ROUTE_SLICE items at a time, the loop running in between: a 1,000-point agent body
        # completes ~250 jobs' buckets, and routed in one go it held the loop 7-12 ms at 10,000 jobs,
        # while a pending decision's commit, back from the store's thread, waited for it
        # (bench/reaction.py). The reply is the one the body gets in one go (as `_push_large`'s).
        res = PushResult()
        await _route_typed(ing, fast, ROUTE_SLICE, res, 0)
        return res
    return _push_decoded(ing, metrics, body, fast)


def push_small(ing: Ingestor, metrics: Metrics, body: bytes) -> PushResult:
    """`push_body` for a body of at most SLICE_BYTES: no await (routed in one go)."""
    return _push_decoded(ing, metrics, body, decode_items(body))


def _push_decoded(ing: Ingestor, metrics: Metrics, body: bytes, fast: list[FalconItem] | None) -> PushResult:
    """A body of at most SLICE_BYTES routed in one go: `fast` its items as the fast decoder read them
    (empty when it could not), else the tolerant path."""
    if fast:
        return ing.push(fast, typed=True)
    try:
        items = orjson.loads(body) if body else None
    except orjson.JSONDecodeError as e:
        raise _bad_json(metrics, e) from None
    return ing.push(_check_items(metrics, items))


def _bad_json(metrics: Metrics, e: Exception) -> ApiError:
    metrics.pushes.labels("400").inc()
    return ApiError(400, "bad_json", f"connot decode body: {e}")  # [sic]: Falcon agent's text


def _check_items(metrics: Metrics, items: Any) -> list[Any]:
    """A decoded body that is a non-empty list, or the 400 that says what it is instead."""
    if items is None or (isinstance(items, list) and not items):
        metrics.pushes.labels("400").inc()
        raise ApiError(400, "empty_body", "body is blank: expected a non-empty JSON array of metric items")
    if not isinstance(items, list):
        metrics.pushes.labels("400").inc()
        raise ApiError(
            400, "not_an_array", f"body must be a JSON array of metric items, not {type(items).__name__}"
        )
    return items


async def _push_large(ing: Ingestor, metrics: Metrics, body: bytes) -> PushResult:
    """A body over SLICE_BYTES, decoded, checked and routed in slices with the event loop running in
    between; the reply is the one the body would get in one go. The body is cut at item boundaries
    (`split_body`): when every piece is a typed agent body, the fast decoder's items are routed. Otherwise
    the tolerant path decodes the pieces with orjson and checks each piece's items as it goes (only the
    valid ones are kept, as FalconItems the garbage collector does not track), then routes them; nothing
    is routed before the whole body has decoded. The body is decoded whole (one blocking call) only when
    a cut fell inside a value."""
    pieces = split_body(body)
    typed: list[list[FalconItem]] = []
    for piece in pieces:
        fast = decode_items(piece)
        if not fast:
            break
        typed.append(fast)
        await asyncio.sleep(0)
    else:
        metrics.push_large.labels("fast").inc()
        res = PushResult()
        offset = 0
        for items in typed:
            await _route_typed(ing, items, SLICE_ITEMS, res, offset)
            offset += len(items)
        return res
    del typed
    _check_json(metrics, body)
    res = PushResult()
    checked: list[tuple[list[FalconItem], list[int]]] = []
    offset = 0
    if len(pieces) > 1:
        for piece in pieces:
            try:
                part = orjson.loads(piece)
            except orjson.JSONDecodeError:
                break  # a cut inside a value: decode the body whole
            offset = await _check_slices(ing, part, res, offset, checked)
        else:
            metrics.push_large.labels("tolerant").inc()
            return await _route_checked(ing, res, checked)
        res, checked, offset = PushResult(), [], 0
    metrics.push_large.labels("whole").inc()
    try:
        everything = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise _bad_json(metrics, e) from None
    await _check_slices(ing, _check_items(metrics, everything), res, 0, checked)
    return await _route_checked(ing, res, checked)


async def _route_typed(
    ing: Ingestor, items: list[FalconItem], size: int, res: PushResult, offset: int
) -> None:
    """Route the fast decoder's `items` (`offset`: the first one's position in the body) `size` at a time,
    the event loop turning after each slice; `res` takes what the body would get in one go."""
    for i in range(0, len(items), size):
        ing.push(items[i : i + size], typed=True, res=res, offset=offset + i)
        await asyncio.sleep(0)


def _check_json(metrics: Metrics, body: bytes) -> None:
    """The 400 a large body gets when it is not JSON (one quick pass that builds nothing), so that an
    invalid body fails before most of it was built. orjson also refuses invalid UTF-8, which msgspec's
    check lets through in strings."""
    try:
        msgspec.json.decode(body, type=msgspec.Raw)
        body.decode("utf-8")
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        raise _bad_json(metrics, e) from None
    head = body.lstrip()[:1]
    if head == b"{":
        _check_items(metrics, {})
    if head != b"[":
        try:
            scalar = orjson.loads(body)  # a string, a number, null: nothing large to build
        except orjson.JSONDecodeError as e:  # a number out of range
            raise _bad_json(metrics, e) from None
        _check_items(metrics, scalar)


async def _check_slices(
    ing: Ingestor,
    items: list[Any],
    res: PushResult,
    offset: int,
    out: list[tuple[list[FalconItem], list[int]]],
) -> int:
    now = ing.clock()
    for i in range(0, len(items), SLICE_ITEMS):
        out.append(ing.check(items[i : i + SLICE_ITEMS], now, res, offset + i))
        await asyncio.sleep(0)
    return offset + len(items)


async def _route_checked(
    ing: Ingestor, res: PushResult, checked: list[tuple[list[FalconItem], list[int]]]
) -> PushResult:
    for typed, index in checked:
        if typed:
            ing.push(typed, res=res, index=index)
            await asyncio.sleep(0)
    return res


def push_reply(metrics: Metrics, res: PushResult, started: float) -> dict[str, Any]:
    """The push's counters, and its 200 reply (transfer's `/api/push` shape plus our fields)."""
    metrics.samples.labels("accepted").inc(res.total - res.invalid - res.unmatched)
    if res.unmatched:
        metrics.samples.labels("unmatched").inc(res.unmatched)
    if res.invalid:
        metrics.samples.labels("rejected").inc(res.invalid)
        if res.too_new:
            metrics.ingest_rejected.labels("timestamp_future").inc(res.too_new)
        if res.too_old:
            metrics.ingest_rejected.labels("timestamp_old").inc(res.too_old)
        for bound, n in res.limited.items():
            metrics.ingest_rejected.labels(bound).inc(n)
    if res.purged:
        metrics.route_cache_purges.inc()
    metrics.pushes.labels("200").inc()
    return {
        "msg": "success",
        "data": {
            "Message": "ok",
            "Total": res.total,
            "Invalid": res.invalid,
            "Unmatched": res.unmatched,
            "Latency": round((time.perf_counter() - started) * 1000),
            "Errors": res.reasons,
        },
    }


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
    fwd = request.app[DAEMON].forwarder
    if fwd is None:
        jobs = engine.alarm(event)
    else:  # cluster: queued here for the jobs held here, sent to the owners of the others
        elsewhere: list[str] = []
        jobs = engine.alarm(event, only=lambda job: fwd.held(fwd.shard(job)), elsewhere=elsewhere)
        if elsewhere:
            missed = set(await internal.forward_alarm(request, event, elsewhere))
            jobs += [j for j in elsewhere if j not in missed]
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
