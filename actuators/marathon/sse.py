"""Marathon's event stream format (PROTOCOLS A.6): a pure Server-Sent Events parser.

`SSEParser`: bytes in, (event, data) frames out; `\\r\\n`, `\\n` and `\\r` line ends, comments,
heartbeats (blank lines), multi-line data, frames split anywhere across chunks. The Marathon client
(actuators.marathon) uses it for `/v2/events`.
"""

from __future__ import annotations

from collections.abc import Iterable


class SSEParser:
    """Incremental Server-Sent Events parser (the WHATWG event-stream format, as Marathon's Jetty
    writes it). A frame without data (a heartbeat) yields nothing; unknown fields are ignored; a line
    or frame over `max_frame` bytes is dropped and counted in `dropped`."""

    def __init__(self, max_frame: int = 4 * 1024 * 1024) -> None:
        self.max_frame = max_frame
        self.dropped = 0
        self._buf = b""
        self._skip_lf = False  # the last chunk ended in '\r': a '\n' starting the next one belongs to it
        self._overflow = False  # inside an over-long line or frame: skip to the next blank line
        self._event = ""
        self._data: list[str] = []
        self._size = 0

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        if self._skip_lf and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._skip_lf = False
        data = self._buf + chunk if self._buf else chunk
        lines = data.splitlines(keepends=True)
        self._buf = b""
        if lines and not lines[-1].endswith((b"\n", b"\r")):
            self._buf = lines.pop()
            if len(self._buf) > self.max_frame:
                self._buf = b""
                self._start_overflow()
        if data.endswith(b"\r"):
            self._skip_lf = True
        out: list[tuple[str, str]] = []
        for raw in lines:
            self._line(raw.rstrip(b"\r\n").decode("utf-8", "replace"), out)
        return out

    def _start_overflow(self) -> None:
        if not self._overflow:
            self.dropped += 1
        self._overflow = True
        self._event, self._data, self._size = "", [], 0

    def _line(self, line: str, out: list[tuple[str, str]]) -> None:
        if not line:
            if self._data and not self._overflow:
                out.append((self._event or "message", "\n".join(self._data)))
            self._overflow = False
            self._event, self._data, self._size = "", [], 0
            return
        if self._overflow or line.startswith(":"):
            return
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._size += len(value) + 1
            if self._size > self.max_frame:
                self._start_overflow()
                return
            self._data.append(value)
        # "id", "retry" and anything else: not used by Marathon's stream, ignored


def parse_sse(chunks: Iterable[bytes]) -> list[tuple[str, str]]:
    """Every complete frame in `chunks` (an unterminated last frame is dropped, as SSE says)."""
    parser = SSEParser()
    return [frame for chunk in chunks for frame in parser.feed(chunk)]
