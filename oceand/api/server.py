"""The HTTP server's connection handling: idle connections are closed, malformed requests are one log line.

aiohttp (3.14) brings a keep-alive timeout (`keepalive_timeout`: an idle connection is closed that long
after its last response, or after it opened, when no complete request head came) but no timeout for
reading a request head. `GuardedSite` adds it: a connection must deliver a complete request head within
`header_timeout` of opening, and of the first byte of each later request; otherwise it is closed. It also
caps the open connections (`max_connections`): one more is answered 503 and closed at once.

`ServerLog` replaces aiohttp's server logger: a request aiohttp cannot parse (bad request line, header,
chunking, body) is the client's fault and becomes one warning line with the reason instead of an ERROR
with a traceback; anything else keeps its traceback. Bodies are not decompressed (`auto_decompress`
off): no client of oceand compresses, and a broken compressed body could only fail later.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from oceand.config import ServerSettings
from oceand.metrics import Metrics

log = logging.getLogger("oceand.http")

_REFUSED_BODY = (
    b'{"error": {"code": "too_many_connections", "message": "too many open connections", "details": []}}'
)
_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_REFUSED_BODY), _REFUSED_BODY)
)


def _one_line(exc: BaseException) -> str:
    return " ".join(part.strip() for part in str(exc).splitlines() if part.strip())[:300]


class ServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's `logger`: malformed requests are one warning line (event `bad_request`), no traceback."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if level >= logging.WARNING and isinstance(exc, HttpProcessingError | web.RequestPayloadError):
            text = str(msg) % args if args else str(msg)
            log.warning("bad HTTP request (%s): %s", text, _one_line(exc), extra={"event": "bad_request"})
            return
        super().log(level, msg, *args, **kwargs)


def runner_options(settings: ServerSettings) -> dict[str, Any]:
    """Keyword arguments for `web.AppRunner` (and aiohttp's TestServer)."""
    return {
        "access_log": None,
        "handle_signals": False,
        "keepalive_timeout": settings.keepalive_timeout,
        "auto_decompress": False,
        "logger": ServerLog(),
    }


class ConnectionGuard:
    """Header timeout and connection cap for every connection of one server (see the module doc)."""

    def __init__(self, settings: ServerSettings, metrics: Metrics) -> None:
        self.header_timeout = settings.header_timeout
        self.max_connections = settings.max_connections
        self.metrics = metrics
        self.open: dict[RequestHandler, _Guarded] = {}

    def factory(self, make: Callable[[], RequestHandler]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Guarded(self, make())

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """A complete request head arrived: its connection's header timer stops until the next request."""
        g = self.open.get(request.protocol)
        if g is None:
            resp: web.StreamResponse = await handler(request)
            return resp
        g.busy = True
        g.disarm()
        try:
            resp = await handler(request)
            return resp
        finally:
            g.busy = False


class _Guarded(asyncio.Protocol):
    """Wraps aiohttp's protocol for one connection (every call is passed on) and times request heads."""

    def __init__(self, guard: ConnectionGuard, inner: RequestHandler) -> None:
        self.guard = guard
        self.inner: RequestHandler | None = inner
        self.timer: asyncio.TimerHandle | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        g, inner = self.guard, self.inner
        assert inner is not None
        if len(g.open) >= g.max_connections:
            self.inner = None
            g.metrics.http_refused.inc()
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(_REFUSED)
            transport.close()
            return
        g.open[inner] = self
        g.metrics.http_connections.set(len(g.open))
        inner.connection_made(transport)
        self.arm()

    def arm(self) -> None:
        self.timer = asyncio.get_running_loop().call_later(self.guard.header_timeout, self._expired)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expired(self) -> None:
        self.timer = None
        # aiohttp waits on `_waiter` for the next message exactly while no complete request head is there
        # (its own keep-alive check reads it too); otherwise a response is still being handled or written
        # (pipelined bytes armed the timer) and aiohttp's keep-alive timer takes over after it.
        waiting = getattr(self.inner, "_waiter", None)
        if self.inner is not None and not self.busy and waiting is not None and not waiting.done():
            self.guard.metrics.http_header_timeouts.inc()
            log.info(
                "closing a connection that sent no complete request head within %gs",
                self.guard.header_timeout,
                extra={"event": "header_timeout"},
            )
            self.inner.force_close()

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return
        if self.timer is None and not self.busy and data:  # the first byte of the next request head
            self.arm()
        self.inner.data_received(data)

    def eof_received(self) -> None:
        if self.inner is not None:
            self.inner.eof_received()

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        inner, self.inner = self.inner, None
        if inner is None:
            return
        self.guard.open.pop(inner, None)
        self.guard.metrics.http_connections.set(len(self.guard.open))
        inner.connection_lost(exc)


class GuardedSite(web.TCPSite):
    """A TCP site whose connections go through a ConnectionGuard; HTTPS with `ssl_context`. The TLS
    handshake must end within the header timeout; a failed one (plain HTTP on the TLS port) closes the
    connection without a log line above debug (asyncio's)."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        guard: ConnectionGuard,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, host, port, reuse_address=True, ssl_context=ssl_context)
        self.guard = guard

    async def start(self) -> None:
        self._runner._reg_site(self)  # BaseSite.start
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self.guard.factory(server),
            self._host,
            self._port,
            reuse_address=True,
            ssl=self._ssl_context,
            ssl_handshake_timeout=self.guard.header_timeout if self._ssl_context is not None else None,
        )
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port
