"""The error shape of every API reply (PRODUCT §5): {"error": {"code", "message", "details"}}.

`ApiError` carries a status and a stable code; the middleware turns it (and aiohttp's own HTTP errors)
into that JSON. Anything unexpected is logged with its traceback and answered 500 "internal" — a bug, never
a client's fault (every client mistake is raised as an ApiError first).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web

from oceand.store.base import StoreError

log = logging.getLogger("oceand.api")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type="application/json",
    )


def error_response(status: int, code: str, message: str, details: list[Any] | None = None) -> web.Response:
    return json_response({"error": {"code": code, "message": message, "details": details or []}}, status)


_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        resp: web.StreamResponse = await handler(request)
        return resp
    except ApiError as e:
        return error_response(e.status, e.code, e.message, e.details)
    except StoreError as e:  # logged once by the store's WriteHealth, not once per request
        return error_response(503, "store_unavailable", str(e))
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = _HTTP_CODES.get(e.status, "http_error")
        message = e.reason if e.status != 413 else f"request body too large: {e.text}"
        resp = error_response(e.status, code, message)
        if "Allow" in e.headers:  # a 405 names the methods the route has (RFC 9110 §15.5.6)
            resp.headers["Allow"] = e.headers["Allow"]
        return resp
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error (logged)")


ADMIN_MAX_BODY = 1024**2  # PRODUCT §10: an admin API body is at most 1 MiB (ingest: server.max_body)


async def read_json(request: web.Request, limit: int = ADMIN_MAX_BODY) -> Any:
    """The request body as JSON, or a 400 naming the problem; 413 past `limit` (the admin API's 1 MiB) or
    past `server.max_body` when that is smaller (aiohttp's own limit). A declared length over the limit
    is refused before reading; a chunked body is read (within `server.max_body`) and then measured."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(request.content_length, limit)
    body = await request.read()
    if len(body) > limit:
        raise _too_large(len(body), limit)
    if not body.strip():
        raise ApiError(400, "empty_body", "request body is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise ApiError(400, "bad_json", f"body is not valid JSON: {e}") from None


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(
        413, "body_too_large", f"request body too large: {size} bytes, the admin API takes at most {limit}"
    )
