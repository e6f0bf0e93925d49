"""Idle and slow connections are closed, open connections are capped (issue 18 item 4: "10k idle connections
are held forever"). Raw sockets against the daemon's real server, with short timeouts."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from oceand.daemon import Daemon
from tests.conftest import DaemonFactory

GET = b"GET /healthz HTTP/1.1\r\nHost: oceand\r\n\r\n"


def server(**over: Any) -> dict[str, Any]:
    return {"listen": "127.0.0.1:0", "header_timeout": 0.3, "keepalive_timeout": 60, **over}


async def connect(d: Daemon) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert d.url is not None
    host, port = d.url.removeprefix("http://").rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def closed_after(reader: asyncio.StreamReader, limit: float = 5.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    got = await asyncio.wait_for(reader.read(), limit)  # read() returns at EOF only
    return got, loop.time() - start


def metric(d: Daemon, name: str) -> float:
    value = d.metrics.registry.get_sample_value(name)
    return 0.0 if value is None else value


@pytest.mark.parametrize(
    "send",
    [
        pytest.param(b"", id="nothing"),
        pytest.param(b"GET /healthz HTTP/1.1\r\nHost: oceand\r\n", id="a partial header"),
        pytest.param(b"G", id="one byte"),
    ],
)
async def test_a_connection_without_a_complete_request_head_is_closed(
    start_daemon: DaemonFactory, send: bytes
) -> None:
    d, _ = await start_daemon(server=server())
    reader, writer = await connect(d)
    writer.write(send)
    got, took = await closed_after(reader)
    assert got == b"" and 0.25 <= took < 3  # closed after header_timeout (0.3 s), keep-alive is 60 s
    assert metric(d, "oceand_http_header_timeouts_total") == 1
    writer.close()


async def test_trickling_a_header_does_not_reset_the_timer(start_daemon: DaemonFactory) -> None:
    d, _ = await start_daemon(server=server(header_timeout=0.5))
    reader, writer = await connect(d)
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def trickle() -> None:
        for b in GET[:-2]:  # never the final CRLF
            writer.write(bytes([b]))
            await asyncio.sleep(0.05)

    t = asyncio.create_task(trickle())
    got = await asyncio.wait_for(reader.read(), 5)
    took = loop.time() - start
    t.cancel()
    assert got == b"" and 0.45 <= took < 3


async def test_a_request_in_time_is_served_and_the_idle_connection_closed_after_keepalive(
    start_daemon: DaemonFactory,
) -> None:
    d, _ = await start_daemon(server=server(header_timeout=0.2, keepalive_timeout=0.6))
    reader, writer = await connect(d)
    writer.write(GET)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200")
    length = int(
        next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")).split(b":")[
            1
        ]
    )
    await reader.readexactly(length)
    got, took = await closed_after(
        reader
    )  # idle after the response: keep-alive (0.6 s), not the header timer
    assert got == b"" and 0.5 <= took < 3
    assert metric(d, "oceand_http_header_timeouts_total") == 0
    writer.close()


async def test_the_next_request_head_on_a_kept_alive_connection_is_timed_too(
    start_daemon: DaemonFactory,
) -> None:
    d, _ = await start_daemon(server=server())
    reader, writer = await connect(d)
    writer.write(GET)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = int(
        next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")).split(b":")[
            1
        ]
    )
    await reader.readexactly(length)
    writer.write(GET[:10])
    got, took = await closed_after(reader)
    assert got == b"" and 0.25 <= took < 3
    assert metric(d, "oceand_http_header_timeouts_total") == 1
    writer.close()


async def test_connections_over_the_cap_get_503_and_are_closed(start_daemon: DaemonFactory) -> None:
    d, c = await start_daemon(server=server(header_timeout=30, max_connections=2))
    held = [await connect(d) for _ in range(2)]
    for _ in range(100):  # the server has accepted both
        if metric(d, "oceand_http_connections") == 2:
            break
        await asyncio.sleep(0.01)
    reader, writer = await connect(d)
    got, _ = await closed_after(reader)
    assert got.startswith(b"HTTP/1.1 503 ") and b"too_many_connections" in got
    assert metric(d, "oceand_http_connections_refused_total") == 1
    writer.close()
    for _, w in held:
        w.close()
    for _ in range(100):
        if metric(d, "oceand_http_connections") == 0:
            break
        await asyncio.sleep(0.01)
    assert (await c.call("GET", "/healthz"))[0] == 200  # room again


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        pytest.param(
            b"POST /v1/push HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
            "Invalid header token",
            id="bad header",
        ),
        pytest.param(
            b"GET /v1/falcon/alarm?endpoint=\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
            "Invalid char in url query",
            id="raw non-UTF-8 query",
        ),
        pytest.param(
            b"POST /v1/falcon/alarm HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "Invalid character in chunk size",
            id="bad chunk size",
        ),
    ],
)
async def test_a_malformed_request_is_400_and_one_warning_line(
    start_daemon: DaemonFactory, caplog: pytest.LogCaptureFixture, request_bytes: bytes, reason: str
) -> None:
    d, _ = await start_daemon(server=server(header_timeout=5))
    reader, writer = await connect(d)
    with caplog.at_level(logging.DEBUG):
        writer.write(request_bytes)
        got, _ = await closed_after(reader)
    assert got.startswith(b"HTTP/1.0 400 ") or got.startswith(b"HTTP/1.1 400 ")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    bad = [r for r in caplog.records if getattr(r, "event", None) == "bad_request"]
    assert len(bad) == 1 and reason in bad[0].getMessage()
    writer.close()
