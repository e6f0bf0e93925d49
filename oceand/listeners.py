"""TCP listeners for falcon-plus transfer's backends (PRODUCT §9; docs/falcon.md).

`[ingest] rpc_listen`: Go net/rpc JSON codec (`Transfer.Update`, `Transfer.Ping`; collectors.falcon_rpc).
`[ingest] tsdb_listen`: OpenTSDB telnet `put` lines (collectors.opentsdb).

Both hand their items to `Ingestor.push`, the entry point of `POST /v1/push`: the same item rules, routing
and sample counters (`oceand_samples_total`, and per listener `oceand_listener_samples_total`).

Bounds: at most `listen_max_connections` open connections per listener (one more is refused with a reason
line and closed); a connection that completes no request/line for `listen_idle_timeout` is closed (one
that holds no partial request only while the listener is more than half full: see `Listener.sweep`); at
most `rpc_max_frame` / `tsdb_max_line` bytes are buffered per connection (an RPC stream that goes past it
is closed; an overlong put line is skipped up to its newline); a client that does not read its replies
stops being read (transport flow control), so nothing grows without bound. Every refusal and close is
counted in `oceand_listener_events_total{listener, event}`. These are asyncio Protocols: data is handled in
the event loop's read callback, with no task per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from collectors.falcon_rpc import (
    PING,
    PING_RESULT,
    FrameBuffer,
    RpcError,
    decode_request,
    decode_update,
    encode_reply,
    method_error,
    transfer_response,
    update_items,
    update_typed,
)
from collectors.opentsdb import LineError, parse_put
from oceand.config import IngestSettings, parse_listen
from oceand.ingest import PushResult
from oceand.metrics import Metrics

log = logging.getLogger("oceand.listeners")

MAX_REPLY_BACKLOG = (
    64 * 1024
)  # put-line error replies are skipped while this much is unsent (transfer never reads)
MAX_LINE_REPLIES = 5  # error reply lines per read, at most


class Pusher(Protocol):
    def push(self, items: list[Any], typed: bool = False) -> PushResult: ...


class Listener:
    """One TCP listener: its connections, their bound, the idle sweep and the counters."""

    def __init__(
        self,
        name: str,
        listen: str,
        pusher: Pusher,
        metrics: Metrics,
        settings: IngestSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.host, self.port = parse_listen(listen)
        self.pusher = pusher  # the ingestor
        self.metrics = metrics
        self.settings = settings
        self.clock = clock
        self.conns: set[Connection] = set()
        self.server: asyncio.Server | None = None
        self.max_buffered = 0  # the most bytes one connection held unparsed (tests: memory stays bounded)
        self.events = metrics.listener_events
        self._gauge = metrics.listener_connections.labels(name)

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (port 0 in the config becomes a real port)."""
        if self.server is not None and self.server.sockets:
            host, port = self.server.sockets[0].getsockname()[:2]
            return host, port
        return self.host, self.port

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self.connection, self.host, self.port, reuse_address=True)
        log.info("%s listener on %s:%d", self.name, *self.address, extra={"event": "listening"})

    def connection(self) -> Connection:
        """A new connection's protocol."""
        return RpcConnection(self) if self.name == "rpc" else TsdbConnection(self)

    def admits(self, remote: str | None) -> bool:
        """`[ingest] allow`, when set, names the senders: another address is closed at once with the
        reason, counted (`refused_not_allowed` and `oceand_auth_denied_total{reason="ingest_not_allowed"}`)
        and logged. Go net/rpc and put lines carry no token, so `[ingest] token` does not apply here."""
        if not self.settings.allow:
            return True
        if self.settings.allows(remote):
            return True
        self.event("refused_not_allowed")
        self.metrics.auth_denied.labels("ingest_not_allowed").inc()
        log.warning(
            "%s connection from %s refused: not in [ingest] allow",
            self.name,
            remote,
            extra={"event": "listener_not_allowed"},
        )
        return False

    def event(self, event: str, n: int = 1) -> None:
        self.events.labels(self.name, event).inc(n)

    def sweep(self, now: float | None = None) -> int:
        """Close the connections that completed no request for `listen_idle_timeout`; how many.

        A connection holding part of a request is closed then; one holding nothing only while the listener
        holds more than half its `listen_max_connections`: transfer keeps a pool of idle connections, and
        its tsdb backend never reads, so a batch it writes on a connection we closed is lost unseen."""
        now = self.clock() if now is None else now
        limit = self.settings.listen_idle_timeout
        crowded = len(self.conns) > self.settings.listen_max_connections // 2
        idle = [c for c in self.conns if now - c.last > limit and (crowded or c.pending())]
        for c in idle:
            c.close("idle", f"no complete request for {limit:g} s")
        return len(idle)

    def pushed(self, res: PushResult) -> None:
        valid = res.total - res.invalid - res.unmatched
        self.metrics.samples.labels("accepted").inc(valid)
        self.metrics.listener_samples.labels(self.name, "accepted").inc(valid)
        if res.unmatched:
            self.metrics.samples.labels("unmatched").inc(res.unmatched)
            self.metrics.listener_samples.labels(self.name, "unmatched").inc(res.unmatched)
        if res.invalid:
            self.metrics.samples.labels("rejected").inc(res.invalid)
            self.metrics.listener_samples.labels(self.name, "rejected").inc(res.invalid)

    def added(self, c: Connection) -> bool:
        if len(self.conns) >= self.settings.listen_max_connections:
            return False
        self.conns.add(c)
        self._gauge.set(len(self.conns))
        return True

    def removed(self, c: Connection) -> None:
        self.conns.discard(c)
        self._gauge.set(len(self.conns))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for c in list(self.conns):
            c.close("shutdown", "the daemon is stopping")
        if self.server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.server.wait_closed(), 5)
            self.server = None


class Connection(asyncio.Protocol):
    """A connection's common part: the cap, the idle clock, flow control, close with a reason."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.last = listener.clock()
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        ln = self.listener
        peer = transport.get_extra_info("peername")
        remote = peer[0] if isinstance(peer, tuple) and peer else None
        if not ln.admits(remote):
            self.closing = True
            transport.write(self.goodbye(f"sender {remote} is not in [ingest] allow"))
            transport.close()
            return
        if not ln.added(self):
            ln.event("refused_max_connections")
            self.closing = True
            transport.write(
                self.goodbye(f"too many connections (at most {ln.settings.listen_max_connections})")
            )
            transport.close()
            return
        ln.event("accepted")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.listener.event("closed_by_peer")
        self.closing = True
        self.listener.removed(self)

    def pause_writing(self) -> None:  # the peer does not read its replies: stop reading its requests
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self.handle(data)
        except Exception:  # a bug must not take the listener down: log it, drop this connection
            log.exception("%s connection failed", self.listener.name)
            self.close("internal_error", "internal error")

    def handle(self, data: bytes) -> None:
        raise NotImplementedError

    def pending(self) -> bool:
        """Part of a request is buffered."""
        raise NotImplementedError

    def goodbye(self, reason: str) -> bytes:
        raise NotImplementedError

    def close(self, event: str, reason: str) -> None:
        if self.closing or self.transport is None:
            return
        self.closing = True
        self.listener.event(f"closed_{event}")
        log.info(
            "%s connection from %s closed: %s",
            self.listener.name,
            self.transport.get_extra_info("peername"),
            reason,
            extra={"event": "listener_closed"},
        )
        if self.transport.get_write_buffer_size() > MAX_REPLY_BACKLOG:
            self.transport.abort()  # the peer reads nothing: do not wait for our replies to drain
            return
        self.transport.write(self.goodbye(reason))
        self.transport.close()


class RpcConnection(Connection):
    """Go net/rpc JSON codec: one reply per request frame, in order."""

    def __init__(self, listener: Listener) -> None:
        super().__init__(listener)
        self.frames = FrameBuffer(listener.settings.rpc_max_frame)

    def goodbye(self, reason: str) -> bytes:
        return encode_reply(b"null", error=reason)

    def pending(self) -> bool:
        return len(self.frames) > 0

    def handle(self, data: bytes) -> None:
        frames = self.frames.feed(data)
        ln = self.listener
        if len(self.frames) > ln.max_buffered:
            ln.max_buffered = len(self.frames)
        if frames:
            self.last = ln.clock()
        assert self.transport is not None
        out = [self.serve(f) for f in frames]
        if out:
            self.transport.write(b"".join(out))
        if self.frames.too_large:
            self.close("frame_too_large", f"request longer than {ln.settings.rpc_max_frame} bytes")

    def serve(self, frame: bytes) -> bytes:
        ln = self.listener
        started = time.perf_counter()
        call = decode_update(frame)
        if call is None:
            return self.serve_any(frame, started)
        return self.updated(bytes(call.id), ln.pusher.push(call.params[0], typed=True), started)

    def serve_any(self, frame: bytes, started: float) -> bytes:
        ln = self.listener
        try:
            req = decode_request(frame)
        except RpcError as e:
            ln.event(e.code)
            return encode_reply(e.request_id, error=str(e))
        rid = bytes(req.id)
        err = method_error(req.method)
        if err is not None:
            ln.event("unknown_method")
            return encode_reply(rid, error=err)
        if req.method == PING:
            ln.event("ping")
            return encode_reply(rid, PING_RESULT)
        params = bytes(req.params)
        typed = update_typed(params)
        if typed:
            res = ln.pusher.push(typed, typed=True)
        else:
            try:
                items = update_items(params)
            except RpcError as e:
                ln.event(e.code)
                return encode_reply(rid, error=str(e))
            res = ln.pusher.push(items)
        return self.updated(rid, res, started)

    def updated(self, rid: bytes, res: PushResult, started: float) -> bytes:
        ln = self.listener
        ln.event("update")
        ln.pushed(res)
        latency = round((time.perf_counter() - started) * 1000)
        return encode_reply(rid, transfer_response(res.total, res.invalid, latency))


class TsdbConnection(Connection):
    """OpenTSDB telnet: `put` lines; errors answered with a line (OpenTSDB's way; transfer never reads)."""

    def __init__(self, listener: Listener) -> None:
        super().__init__(listener)
        self.buf = b""
        self.skipping = False  # inside an overlong line: drop bytes up to its newline
        self.counters = frozenset(listener.settings.tsdb_counters)

    def goodbye(self, reason: str) -> bytes:
        return f"error: {reason}\n".encode()

    def pending(self) -> bool:
        return bool(self.buf) or self.skipping

    def handle(self, data: bytes) -> None:
        ln = self.listener
        max_line = ln.settings.tsdb_max_line
        if self.skipping:
            nl = data.find(b"\n")
            if nl < 0:
                return
            data = data[nl + 1 :]
            self.skipping = False
        buf = self.buf + data if self.buf else data
        lines = buf.split(b"\n")
        rest = lines.pop()
        errors: list[str] = []
        if len(rest) > max_line:
            rest = b""
            self.skipping = True
            ln.event("line_too_long")
            errors.append(f"line longer than {max_line} bytes: skipped")
        self.buf = rest
        if len(rest) > ln.max_buffered:
            ln.max_buffered = len(rest)
        if not lines:
            self._reply(errors)
            return
        self.last = ln.clock()
        items: list[dict[str, Any]] = []
        for line in lines:
            if len(line) > max_line:
                ln.event("line_too_long")
                errors.append(f"line longer than {max_line} bytes: skipped")
                continue
            try:
                item = parse_put(line, self.counters)
            except LineError as e:
                ln.event(e.code)
                errors.append(str(e))
                continue
            if item is not None:
                items.append(item)
        if items:
            ln.event("put", len(items))
            res = ln.pusher.push(items)
            ln.pushed(res)
            errors.extend(_named(r, items) for r in res.reasons)
        self._reply(errors)

    def _reply(self, errors: list[str]) -> None:
        t = self.transport
        if not errors or t is None or t.get_write_buffer_size() > MAX_REPLY_BACKLOG:
            return
        t.write("".join(f"error: {e}\n" for e in errors[:MAX_LINE_REPLIES]).encode())


def _named(reason: str, items: list[dict[str, Any]]) -> str:
    """A push result's "[i] reason" for a put line: the line's metric and endpoint instead of the index."""
    index, sep, text = reason[1:].partition("] ")
    if reason[:1] == "[" and sep and index.isdigit() and int(index) < len(items):
        it = items[int(index)]
        return f"put {it['metric'][:100]} endpoint={it['endpoint'][:100]}: {text}"
    return f"put: {reason}"


class Listeners:
    """The configured listeners of a daemon (none when neither address is set)."""

    def __init__(
        self,
        settings: IngestSettings,
        pusher: Pusher,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.by_name: dict[str, Listener] = {}
        for name, listen in (("rpc", settings.rpc_listen), ("tsdb", settings.tsdb_listen)):
            if listen is not None:
                self.by_name[name] = Listener(name, listen, pusher, metrics, settings, clock)
        self.idle_timeout = settings.listen_idle_timeout

    def __getitem__(self, name: str) -> Listener:
        return self.by_name[name]

    async def start(self) -> None:
        for ln in self.by_name.values():
            await ln.start()

    def addresses(self) -> list[tuple[str, int]]:
        """Every bound (host, port) of every listener (a host name may bind several sockets)."""
        out: list[tuple[str, int]] = []
        for ln in self.by_name.values():
            for sock in ln.server.sockets if ln.server is not None else ():
                host, port = sock.getsockname()[:2]
                out.append((host, port))
        return out

    async def run(self, stop: asyncio.Event) -> None:
        """The idle sweep, every quarter of the idle timeout (at most 10 s apart)."""
        every = max(0.05, min(self.idle_timeout / 4, 10.0))
        while not stop.is_set() and self.by_name:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            for ln in self.by_name.values():
                ln.sweep()

    async def close(self) -> None:
        for ln in self.by_name.values():
            await ln.close()
