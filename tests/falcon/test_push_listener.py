"""`[ingest] http_listen` (oceand.api.pushserver): Falcon push over HTTP on a lean listener, answering what
`POST /v1/push` on the admin listener answers, with the same access control and limits; hostile clients
(oversize, garbage, a body never finished) are answered and closed while the other connections are served."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from oceand.daemon import Daemon
from tests.api.test_auth import Clock
from tests.api.test_auth_ingest import GUARD_CASES, PUSH, case_bearer
from tests.conftest import Client, DaemonFactory
from tests.e2e.test_marathon_loop import JOB, job_doc
from tests.fakes.transfer import agent_item

NOW = 1_700_000_030.0
T = 1_700_000_000


def items(n: int, start: int = 0, value: float = 10.0) -> list[dict[str, Any]]:
    return [agent_item(f"h{i}", "cpu.idle", T, value, f"job={JOB}") for i in range(start, start + n)]


async def push_daemon(start_daemon: DaemonFactory, **kw: Any) -> tuple[Daemon, Client, str, int]:
    ingest = {"http_listen": "127.0.0.1:0", **kw.pop("ingest", {})}
    d, c = await start_daemon(clock=kw.pop("clock", lambda: NOW), ingest=ingest, **kw)
    host, port = d.listeners["http"].address
    return d, c, f"http://{host}:{port}", port


def bucket(d: Daemon) -> set[str]:
    out: set[str] = set()
    for b in d.engine.jobs[JOB].buckets.open.values():
        out.update(b.values[0])
    return out


class Raw:
    """One raw TCP connection to the listener."""

    def __init__(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.r, self.w = r, w

    @classmethod
    async def connect(cls, port: int) -> Raw:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def send(self, data: bytes) -> None:
        self.w.write(data)

    async def reply(self) -> tuple[int, dict[str, str], Any]:
        head = await asyncio.wait_for(self.r.readuntil(b"\r\n\r\n"), 5)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        if status == 100:
            return status, headers, None
        body = await asyncio.wait_for(self.r.readexactly(int(headers["content-length"])), 5)
        return status, headers, orjson.loads(body)

    async def closed(self) -> bool:
        return await asyncio.wait_for(self.r.read(), 5) == b""

    def close(self) -> None:
        self.w.close()


def post(body: bytes, path: str = "/v1/push", extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def chunked(body: bytes, size: int, path: str = "/v1/push") -> bytes:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    out = f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    return out + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


async def test_push_answers_as_the_admin_listener_and_feeds_the_job(start_daemon: DaemonFactory) -> None:
    d, c, url, _ = await push_daemon(start_daemon)
    assert (await c.call("POST", "/api/v1/jobs", job_doc(period="60s")))[0] == 201
    bad = [*items(2), {"endpoint": "h9", "metric": "cpu.idle"}]  # one item refused: the tolerant path
    async with aiohttp.ClientSession() as s:  # one keep-alive connection, both paths
        replies = []
        for path, body in (("/v1/push", items(2)), ("/api/push", items(2, start=2)), ("/v1/push", bad)):
            async with s.post(url + path, data=orjson.dumps(body)) as r:
                assert r.status == 200 and r.headers["Content-Type"] == "application/json"
                replies.append(await r.json())
        async with s.post(f"{d.url}/v1/push", data=orjson.dumps(bad)) as r:
            admin = await r.json()
    for rep in replies:
        rep["data"].pop("Latency")
    admin["data"].pop("Latency")
    assert replies[0] == {
        "msg": "success",
        "data": {"Message": "ok", "Total": 2, "Invalid": 0, "Unmatched": 0, "Errors": []},
    }
    assert replies[2] == admin and admin["data"]["Invalid"] == 1
    assert bucket(d) == {"h0", "h1", "h2", "h3"}
    assert d.metrics.listener_samples.labels("http", "accepted")._value.get() == 6
    assert d.metrics.listener_samples.labels("http", "rejected")._value.get() == 1
    assert d.metrics.listener_events.labels("http", "push")._value.get() == 3


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param(b"", 400, "empty_body", id="empty"),
        pytest.param(b"[]", 400, "empty_body", id="empty array"),
        pytest.param(b'{"a": 1}', 400, "not_an_array", id="object"),
        pytest.param(b"[1,", 400, "bad_json", id="not json"),
    ],
)
async def test_bad_bodies_get_the_admin_listeners_4xx_and_keep_the_connection(
    start_daemon: DaemonFactory, body: bytes, status: int, code: str
) -> None:
    _, _, _, port = await push_daemon(start_daemon)
    raw = await Raw.connect(port)
    raw.send(post(body) + post(orjson.dumps(items(1))))  # pipelined: the second is served after the first
    got, headers, data = await raw.reply()
    assert (got, data["error"]["code"]) == (status, code) and "connection" not in headers
    got, _, data = await raw.reply()
    assert got == 200 and data["data"]["Total"] == 1
    raw.close()


async def test_chunked_pipelined_and_expect_continue(start_daemon: DaemonFactory) -> None:
    d, c, _, port = await push_daemon(start_daemon)
    assert (await c.call("POST", "/api/v1/jobs", job_doc(period="60s")))[0] == 201
    raw = await Raw.connect(port)
    raw.send(chunked(orjson.dumps(items(3)), 7) + chunked(orjson.dumps(items(2, start=3)), 1000, "/api/push"))
    assert [(await raw.reply())[2]["data"]["Total"] for _ in range(2)] == [3, 2]
    last = orjson.dumps(items(1, start=5))
    head = post(last, extra="Expect: 100-continue\r\n")[: -len(last)]
    raw.send(head)  # curl's way: the head, then the body once the server says so
    assert (await raw.reply())[0] == 100
    raw.send(last)
    assert (await raw.reply())[2]["data"]["Total"] == 1
    assert bucket(d) == {f"h{i}" for i in range(6)}
    raw.close()


async def test_a_large_body_is_served_off_the_read_callback_with_the_same_reply(
    start_daemon: DaemonFactory,
) -> None:
    d, c, _, port = await push_daemon(start_daemon)
    assert (await c.call("POST", "/api/v1/jobs", job_doc(period="60s")))[0] == 201
    big = orjson.dumps(items(4000))  # > SLICE_BYTES: decoded and routed in slices by a task
    assert len(big) > 256 * 1024
    raw = await Raw.connect(port)
    raw.send(post(big) + post(orjson.dumps(items(1, start=4000))))
    status, _, data = await raw.reply()
    assert status == 200 and data["data"]["Total"] == 4000 and data["data"]["Invalid"] == 0
    assert (await raw.reply())[2]["data"]["Total"] == 1
    assert len(bucket(d)) == 4001
    raw.close()


async def test_oversize_bodies_are_413_and_closed(start_daemon: DaemonFactory) -> None:
    _, _, _, port = await push_daemon(start_daemon, server={"max_body": "64KiB"})
    body = orjson.dumps(items(1000))
    assert len(body) > 64 * 1024
    declared = await Raw.connect(port)
    declared.send(post(body)[:200])  # the declared length is refused before the body is read
    status, headers, data = await declared.reply()
    assert (status, data["error"]["code"], headers["connection"]) == (413, "body_too_large", "close")
    assert await declared.closed()
    sneaky = await Raw.connect(port)  # chunked: refused once it passes the bound
    sneaky.send(chunked(body, 4096))
    status, _, data = await sneaky.reply()
    assert (status, data["error"]["code"]) == (413, "body_too_large")
    assert await sneaky.closed()


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        pytest.param(b"GARBAGE\r\n\r\n", 400, "bad_request", id="not HTTP"),
        pytest.param(b"GET /v1/push HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed", id="GET"),
        pytest.param(b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not_found", id="other path"),
        pytest.param(
            b"POST /v1/push HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
            "bad_request",
            id="bad chunk",
        ),
        pytest.param(
            b"POST /v1/push HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\n[]",
            415,
            "unsupported_encoding",
            id="compressed",
        ),
        pytest.param(
            b"POST /v1/push HTTP/1.1\r\nHost: x\r\nOrigin: http://evil.example\r\nContent-Length: 2\r\n\r\n[]",
            403,
            "cross_origin",
            id="cross-site browser",
        ),
    ],
)
async def test_requests_that_are_not_a_push_are_answered_and_closed(
    start_daemon: DaemonFactory, request_bytes: bytes, status: int, code: str
) -> None:
    _, _, _, port = await push_daemon(start_daemon)
    raw = await Raw.connect(port)
    raw.send(request_bytes)
    got, headers, data = await raw.reply()
    assert (got, data["error"]["code"], headers["connection"]) == (status, code, "close")
    if status == 405:
        assert headers["allow"] == "POST"
    assert await raw.closed()
    other = await Raw.connect(port)  # the listener serves the next client
    other.send(post(orjson.dumps(items(1))))
    assert (await other.reply())[0] == 200
    other.close()


async def test_a_body_never_finished_is_closed_when_idle(start_daemon: DaemonFactory) -> None:
    d, _, _, port = await push_daemon(start_daemon)
    ln = d.listeners["http"]
    now = [0.0]
    ln.clock = lambda: now[0]
    slow = await Raw.connect(port)
    slow.send(post(orjson.dumps(items(2)))[:-10])  # the head and most of the body, then nothing
    idle = await Raw.connect(port)  # answered, then silent: kept while the listener has room
    idle.send(post(orjson.dumps(items(1))))
    assert (await idle.reply())[0] == 200
    for _ in range(500):  # until the listener holds the slow client's part of a request
        if sorted(c.pending() for c in ln.conns) == [False, True]:
            break
        await asyncio.sleep(0.01)
    now[0] = 301.0
    assert ln.sweep() == 1
    status, _, data = await slow.reply()
    assert status == 408 and "no complete request for 300 s" in data["error"]["message"]
    assert await slow.closed()
    idle.send(post(orjson.dumps(items(1))))
    assert (await idle.reply())[0] == 200
    assert d.metrics.listener_events.labels("http", "closed_idle")._value.get() == 1
    idle.close()


async def test_connections_past_the_cap_are_refused_503(start_daemon: DaemonFactory) -> None:
    d, _, _, port = await push_daemon(start_daemon, ingest={"listen_max_connections": 1})
    first = await Raw.connect(port)
    first.send(post(orjson.dumps(items(1))))
    assert (await first.reply())[0] == 200
    second = await Raw.connect(port)
    status, _, data = await second.reply()
    assert status == 503 and "too many connections (at most 1)" in data["error"]["message"]
    assert await second.closed()
    first.send(post(orjson.dumps(items(1))))
    assert (await first.reply())[0] == 200
    assert d.metrics.listener_events.labels("http", "refused_max_connections")._value.get() == 1
    first.close()


@pytest.mark.parametrize(("ingest", "query", "bearer", "expected"), GUARD_CASES)
async def test_the_ingest_guard_applies(
    start_daemon: DaemonFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    ingest: dict[str, Any],
    query: str,
    bearer: str | None,
    expected: int,
) -> None:
    bearer = await case_bearer(bearer, tmp_path, capsys)
    _, _, url, _ = await push_daemon(start_daemon, ingest=ingest, clock=Clock())
    headers = {} if bearer is None else {"Authorization": f"Bearer {bearer}"}
    async with aiohttp.ClientSession() as s:
        for path in ("/v1/push", "/api/push"):
            async with s.post(f"{url}{path}{query}", json=PUSH, headers=headers) as r:
                assert r.status == expected, await r.text()
                if expected == 401:
                    assert r.headers["WWW-Authenticate"] == 'Bearer realm="oceand"'


async def test_http_listen_beyond_loopback_needs_allow_or_token(tmp_path: Path) -> None:
    from oceand.config import ConfigError, validate_config

    with pytest.raises(ConfigError) as e:
        validate_config({"ingest": {"http_listen": "0.0.0.0:6060"}}, file="f", base_dir=tmp_path, path=None)
    assert e.value.key == "ingest.allow" and "ingest.http_listen '0.0.0.0:6060'" in e.value.message
    ok = {"ingest": {"http_listen": "0.0.0.0:6060", "allow": ["10.0.0.0/8"]}}
    assert validate_config(ok, file="f", base_dir=tmp_path, path=None).ingest.http_listen == "0.0.0.0:6060"


async def test_no_push_listener_unless_configured(start_daemon: DaemonFactory) -> None:
    d, _ = await start_daemon()
    assert "http" not in d.listeners.by_name
