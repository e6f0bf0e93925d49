"""`[ingest] http_listen`: Falcon push over HTTP on a lean listener of its own (docs/falcon.md).

It serves `POST /v1/push` and `POST /api/push` (falcon-plus transfer's HTTP push path, PROTOCOLS.md B.2)
and nothing else, with what `POST /v1/push` on the aiohttp listeners does: the same decoding, item rules,
routing, reply and counters (`push_body`, `push_reply` of oceand.api.ingest) and the same access control
(`[ingest] allow` / `token` / a token with the `ingest` scope: `ingest_access`). It exists for speed
(PRODUCT §8; BENCHMARKS.md "Issue 11: the push listener"): with a handler that does nothing, a 1,000-point
push costs the daemon ~140 µs through aiohttp (a task, a Request, the middleware chain, a Response) and
~55 µs through this listener (the transfer RPC listener: ~33 µs).

An asyncio Protocol (oceand.listeners' Connection: the connection cap `listen_max_connections`, the idle
sweep `listen_idle_timeout`, the `oceand_listener_events_total{listener="http"}` counters) around aiohttp's
C HTTP parser (llhttp; the same parser the aiohttp listeners use): keep-alive, pipelining, chunked bodies,
`Expect: 100-continue`. The usual request (a body of at most SLICE_BYTES, a sender let in without the store)
is served inside the read callback; a large body or a bearer token the store must check is served by a task
while the connection is not read. Limits: a body over `[server] max_body` is answered 413 and the connection
closed (a declared length at once, a chunked body as soon as it passes it); a request that cannot be parsed
is answered 400 and closed; a client that never finishes its request is closed by the idle sweep.
Cross-site browser writes are refused as on the admin listener (oceand.console).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

import orjson
from aiohttp import hdrs
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_parser import HttpRequestParser

from collectors.falcon_items import SLICE_BYTES
from oceand.api.auth import ingest_access, ingest_refusal, parse_bearer, store_allows_ingest
from oceand.api.errors import ApiError
from oceand.api.ingest import push_body, push_reply, push_small
from oceand.auth import Authority
from oceand.config import IngestSettings
from oceand.ingest import Ingestor, PushResult
from oceand.listeners import Connection, Listener
from oceand.metrics import Metrics

log = logging.getLogger("oceand.listeners")

PATHS = frozenset({"/v1/push", "/api/push"})
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LINGER = 2.0  # seconds a refused client's remaining bytes are read and dropped before the close
_PARSER_LIMIT = 256 * 1024  # the body buffer drains into one bytearray past 2x this (or 16k chunks)


def response(status: int, body: bytes, close: bool = False, extra: str = "") -> bytes:
    """A whole HTTP/1.1 response with a JSON body; `extra`: more header lines, each ending in CRLF."""
    connection = "Connection: close\r\n" if close else ""
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}{connection}\r\n"
    )
    return head.encode() + body


def error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message, "details": []}})


class PushListener(Listener):
    """`[ingest] http_listen` (see the module doc)."""

    def __init__(
        self,
        listen: str,
        ingestor: Ingestor,
        metrics: Metrics,
        settings: IngestSettings,
        authority: Authority,
        max_body: int,
    ) -> None:
        super().__init__("http", listen, ingestor, metrics, settings)
        self.ingestor = ingestor
        self.authority = authority
        self.max_body = max_body
        self.open = not settings.allow and settings.token is None  # ingest_access's first rule
        self._samples = {
            k: metrics.listener_samples.labels("http", k) for k in ("accepted", "unmatched", "rejected")
        }

    def counted(self, res: PushResult) -> None:
        """oceand_listener_samples_total{listener="http"} (push_reply counts oceand_samples_total)."""
        self._samples["accepted"].inc(res.total - res.invalid - res.unmatched)
        if res.unmatched:
            self._samples["unmatched"].inc(res.unmatched)
        if res.invalid:
            self._samples["rejected"].inc(res.invalid)

    def connection(self) -> Connection:
        return PushConnection(self)

    def admits(self, remote: str | None) -> bool:
        """Every connection: each request passes the ingest guard (`allow`, or a token), as on /v1/push."""
        return True


class PushConnection(Connection):
    """One HTTP/1.1 connection of the push listener: requests served in order, one at a time."""

    listener: PushListener

    def __init__(self, listener: PushListener) -> None:
        super().__init__(listener)
        self.parser = HttpRequestParser(
            self,  # type: ignore[arg-type]  # it only hands it to StreamReader (pause/resume_reading)
            asyncio.get_running_loop(),
            _PARSER_LIMIT,
            max_line_size=8190,
            max_field_size=8190,
            auto_decompress=False,
        )
        # parsed requests not yet answered: head, body stream, the body drained from the stream past its limit
        self.queue: list[tuple[Any, Any, bytearray]] = []
        self.head_checked = False  # the first queued request's head passed (access, path, length)
        self.drain = False
        self.fresh = False  # bytes arrived since the last answer (part of a request may be held)
        self.task: asyncio.Task[None] | None = None  # a request served off the read callback
        self.bye_status = 503
        self.linger_timer: asyncio.TimerHandle | None = None
        self.peer_done = False

    # --- aiohttp's StreamReader calls these on its protocol ------------------------------------------
    def pause_reading(self) -> None:
        self.drain = True  # the body stream holds much: move it into `spill` after this read

    def resume_reading(self, resume_parser: bool = True) -> None:
        pass

    # --- Connection --------------------------------------------------------------------------------
    def goodbye(self, reason: str) -> bytes:
        code = "request_timeout" if self.bye_status == 408 else "unavailable"
        return response(self.bye_status, error_body(code, reason), close=True)

    def pending(self) -> bool:
        return bool(self.queue) or self.fresh

    def resume_writing(self) -> None:
        if self.task is None:
            super().resume_writing()

    def close(self, event: str, reason: str) -> None:
        if event == "idle":
            self.bye_status = 408
        super().close(event, reason)

    def eof_received(self) -> bool | None:
        """The peer is done sending: close now, or once the request a task serves is answered."""
        if self.task is None:
            return None
        self.peer_done = True
        return True

    def finished_task(self) -> None:
        """A task answered its request: go on with the queue, or close if the peer is done sending."""
        if self.closing or self.transport is None:
            return
        if self.peer_done:
            self.closing = True
            self.transport.close()
            return
        self.transport_resume()
        self.serve()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.linger_timer is not None:
            self.linger_timer.cancel()
        if self.task is not None:
            self.task.cancel()
        for _, payload, _ in self.queue:
            if not payload.is_eof():
                payload.feed_eof()
        self.queue.clear()
        super().connection_lost(exc)

    def handle(self, data: bytes) -> None:
        self.fresh = True
        try:
            messages, upgraded, _ = self.parser.feed_data(data)
        except HttpProcessingError as e:
            self.refuse(400, "bad_request", f"bad HTTP request: {str(e.message)[:200]}", "bad_request")
            return
        if upgraded:
            self.refuse(400, "bad_request", "protocol upgrades are not served here", "bad_request")
            return
        for msg, payload in messages:
            self.queue.append((msg, payload, bytearray()))
        if self.drain:  # the body being received holds much: into its bytearray (bounded by max_body)
            self.drain = False
            if self.queue:
                _, payload, spill = self.queue[-1]
                spill += payload.read_nowait(-1)
        if self.task is None:
            self.serve()

    def refuse(self, status: int, code: str, message: str, event: str, extra: str = "") -> None:
        """Answer `status` and close: what follows on this connection cannot be trusted or read."""
        if self.closing or self.transport is None:
            return
        self.listener.metrics.pushes.labels(str(status)).inc()
        self.transport.write(response(status, error_body(code, message), close=True, extra=extra))
        self.closing = True
        self.listener.event(f"closed_{event}")
        self.linger()

    def linger(self) -> None:
        """Close after the reply, reading (and dropping) what the client still sends for up to LINGER
        seconds: closing with unread bytes would reset the connection and lose the reply (RFC 9112 §9.6)."""
        assert self.transport is not None
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self.transport.resume_reading()
        self.linger_timer = asyncio.get_running_loop().call_later(LINGER, self.transport.close)

    def serve(self) -> None:
        """Answer the queued requests whose bodies are complete, in order, until one must wait."""
        ln = self.listener
        while self.queue and not self.closing and self.task is None:
            msg, payload, spill = self.queue[0]
            if not self.head_checked:
                if not self.check_head(msg):
                    return
                if self.task is not None:  # the store checks the token first
                    return
            size = payload.total_bytes
            if size > ln.max_body:
                self.refuse(
                    413,
                    "body_too_large",
                    f"request body too large: more than {ln.max_body} bytes ([server] max_body)",
                    "body_too_large",
                )
                return
            if not payload.is_eof():
                return
            try:
                body = payload.read_nowait(-1)
            except Exception as e:  # the parser put an error in the body stream (a bad chunk)
                self.refuse(400, "bad_request", f"bad HTTP request body: {str(e)[:200]}", "bad_request")
                return
            if spill:
                spill += body
                body = bytes(spill)
            self.queue.pop(0)
            self.head_checked = False
            self.fresh = False
            self.last = ln.clock()
            if len(body) > SLICE_BYTES:
                self.spawn(self.serve_large(body, msg.should_close))
                return
            started = time.perf_counter()
            try:
                res = push_small(ln.ingestor, ln.metrics, body)
            except ApiError as e:
                self.answer(e.status, error_body(e.code, e.message), msg.should_close)
                continue
            self.answered(res, started, msg.should_close)

    def check_head(self, msg: Any) -> bool:
        """The first queued request's head: method, path, declared length, access. False: answered and
        closed. With a bearer token only the store can check, a task checks it (self.task)."""
        ln = self.listener
        if msg.path.partition("?")[0] not in PATHS:
            self.refuse(
                404, "not_found", f"no route {msg.path[:100]!r} here: POST /v1/push or /api/push", "not_found"
            )
            return False
        if msg.method != hdrs.METH_POST:
            self.refuse(
                405,
                "method_not_allowed",
                f"{msg.method[:20]} is not allowed: POST",
                "bad_method",
                "Allow: POST\r\n",
            )
            return False
        length = msg.headers.get(hdrs.CONTENT_LENGTH)
        if length is not None and int(length) > ln.max_body:
            self.refuse(
                413,
                "body_too_large",
                f"request body too large: {int(length)} bytes, at most {ln.max_body} ([server] max_body)",
                "body_too_large",
            )
            return False
        if _cross_site(msg.headers):
            ln.metrics.http_cross_site_refused.inc()
            self.refuse(403, "cross_origin", "a write from a page of another site is refused", "cross_origin")
            return False
        if msg.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower() != "identity":
            self.refuse(
                415,
                "unsupported_encoding",
                "Content-Encoding is not accepted, send it uncompressed",
                "bad_request",
            )
            return False
        if ln.open:  # no guard configured (loopback only): nothing to parse
            self.admitted(msg)
            return True
        bearer = parse_bearer(msg.headers.get(hdrs.AUTHORIZATION))
        query_token = msg.url.query.get("token")
        allowed = ingest_access(ln.settings, self.remote(), query_token, bearer)
        if allowed is None:
            self.spawn(self.check_store(msg, bearer or "", query_token))
            return True
        if not allowed:
            self.deny(bearer, query_token)
            return False
        self.admitted(msg)
        return True

    def admitted(self, msg: Any) -> None:
        self.head_checked = True
        if msg.headers.get(hdrs.EXPECT, "").lower() == "100-continue" and self.transport is not None:
            self.transport.write(_CONTINUE)

    def deny(self, bearer: str | None, query_token: str | None) -> None:
        ln = self.listener
        status, code, message = ingest_refusal(ln.metrics, ln.settings, self.remote(), query_token, bearer)
        extra = 'WWW-Authenticate: Bearer realm="oceand"\r\n' if status == 401 else ""
        self.refuse(status, code, message, "denied", extra)

    def remote(self) -> str | None:
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        return str(peer[0]) if peer else None

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Serve the first request off the read callback; the connection is not read meanwhile."""
        self.task = asyncio.ensure_future(work)
        self.task.add_done_callback(self._task_done)
        self.transport_pause()

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:  # a bug: logged, this connection closed
            log.error("http push connection failed", exc_info=task.exception())
            self.task = None
            self.close("internal_error", "internal error")

    async def check_store(self, msg: Any, bearer: str, query_token: str | None) -> None:
        try:
            allowed = await store_allows_ingest(self.listener.authority, bearer)
        finally:
            self.task = None
        if self.closing:
            return
        if not allowed:
            self.deny(bearer, query_token)
            return
        self.admitted(msg)
        self.finished_task()

    async def serve_large(self, body: bytes, close: bool) -> None:
        ln = self.listener
        started = time.perf_counter()
        try:
            res = await push_body(ln.ingestor, ln.metrics, body)
        except ApiError as e:
            self.task = None
            self.answer(e.status, error_body(e.code, e.message), close)
        else:
            self.task = None
            self.answered(res, started, close)
        self.finished_task()

    def answered(self, res: PushResult, started: float, close: bool) -> None:
        ln = self.listener
        ln.event("push")
        ln.counted(res)
        self.answer(200, orjson.dumps(push_reply(ln.metrics, res, started)), close)

    def answer(self, status: int, body: bytes, close: bool) -> None:
        if self.closing or self.transport is None:
            return
        if status != 200:
            self.listener.metrics.pushes.labels(str(status)).inc()
        self.transport.write(response(status, body, close))
        if close:
            self.closing = True
            self.listener.event("closed_done")
            self.transport.close()

    def transport_pause(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def transport_resume(self) -> None:
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()


def _cross_site(headers: Any) -> bool:
    """oceand.console's rule: a browser that says the write comes from another site."""
    fetch_site = headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return bool(fetch_site not in ("same-origin", "none"))
    origin = headers.get("Origin")
    if origin is None:
        return False
    return bool(origin.partition("://")[2] != headers.get(hdrs.HOST, ""))
