"""SSEParser: the event-stream format as Marathon's Jetty writes it, and as other servers may."""

from __future__ import annotations

import pytest

from actuators.marathon.sse import SSEParser, parse_sse

STATUS = b'{"eventType":"status_update_event","taskId":"t1"}'


@pytest.mark.parametrize(
    ("chunks", "frames"),
    [
        pytest.param(
            [b"event: status_update_event\r\ndata: " + STATUS + b"\r\n\r\n"],
            [("status_update_event", STATUS.decode())],
            id="CRLF frame (Jetty)",
        ),
        pytest.param(
            [b"event: deployment_success\ndata: {}\n\n"],
            [("deployment_success", "{}")],
            id="LF frame",
        ),
        pytest.param([b"event: a\rdata: 1\r\r"], [("a", "1")], id="bare CR line ends"),
        pytest.param([b"\r\n", b"\r\n\r\n", b"\n"], [], id="heartbeats alone yield nothing"),
        pytest.param(
            [b"\r\nevent: a\r\ndata: 1\r\n\r\n\r\n\r\nevent: b\r\ndata: 2\r\n\r\n"],
            [("a", "1"), ("b", "2")],
            id="heartbeats between frames",
        ),
        pytest.param(
            [b"eve", b"nt: a\r", b'\ndata: {"x"', b": 1}\r\n", b"\r", b"\n"],
            [("a", '{"x": 1}')],
            id="split anywhere, CR LF across chunks",
        ),
        pytest.param(
            [b"event: a\r", b"\r\n"],
            [],
            id="CR then CRLF across chunks is one line end then a blank line without data",
        ),
        pytest.param(
            [b"data: line1\ndata: line2\ndata:\n\n"],
            [("message", "line1\nline2\n")],
            id="multi-line data joined by LF; default event name 'message'",
        ),
        pytest.param([b"data:no-space\n\n"], [("message", "no-space")], id="no space after colon"),
        pytest.param([b"data:  two\n\n"], [("message", " two")], id="only one leading space stripped"),
        pytest.param([b": a comment\nevent: a\n: another\ndata: 1\n\n"], [("a", "1")], id="comments ignored"),
        pytest.param(
            [b"id: 7\nretry: 100\nbogus field\nevent: a\ndata: 1\n\n"],
            [("a", "1")],
            id="id, retry and unknown fields ignored",
        ),
        pytest.param([b"event: a\n\n"], [], id="frame without data dropped"),
        pytest.param([b"event: a\ndata: 1"], [], id="unterminated last frame dropped"),
        pytest.param([b"event: a\ndata: \xff\xfe\n\n"], [("a", "\ufffd\ufffd")], id="invalid UTF-8 replaced"),
        pytest.param(
            [b"\x00\x01garbage\n\nevent: a\ndata: 1\n\n"], [("a", "1")], id="garbage line then a frame"
        ),
        pytest.param(
            [b"event: a\ndata: 1\n\nevent: b\n", b"data: 2\n\n"],
            [("a", "1"), ("b", "2")],
            id="event name does not leak into the next frame",
        ),
    ],
)
def test_parse_sse(chunks: list[bytes], frames: list[tuple[str, str]]) -> None:
    assert parse_sse(chunks) == frames


def test_byte_by_byte_equals_whole() -> None:
    stream = (
        b"event: event_stream_attached\r\ndata: {}\r\n\r\n\r\n"
        b"event: status_update_event\r\ndata: " + STATUS + b"\r\n\r\n"
    )
    whole = parse_sse([stream])
    assert parse_sse([stream[i : i + 1] for i in range(len(stream))]) == whole
    assert [e for e, _ in whole] == ["event_stream_attached", "status_update_event"]


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([b"data: " + b"x" * 100 + b"\n\nevent: ok\ndata: 1\n\n"], id="long data line"),
        pytest.param(
            [b"data: " + b"x" * 60, b"x" * 60, b"\n\nevent: ok\ndata: 1\n\n"], id="long pending line"
        ),
        pytest.param([b"data: " + b"x" * 40 + b"\n"] * 3 + [b"\nevent: ok\ndata: 1\n\n"], id="long frame"),
    ],
)
def test_oversized_frames_are_dropped_and_counted(chunks: list[bytes]) -> None:
    parser = SSEParser(max_frame=64)
    out = [f for c in chunks for f in parser.feed(c)]
    assert out == [("ok", "1")]
    assert parser.dropped == 1
