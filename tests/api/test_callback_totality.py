"""Every callback and ingest parser is total (issue 18 item 3): any request to `/v1/falcon/alarm` or
`/v1/push`, whatever its body, content type or encoding, gets an answer below 500, and a bad one is one
warning line with its reason, never an ERROR with a traceback. Requests go through the real aiohttp app
(Daemon.build_app: the routes and the error middleware) with aiohttp's test client."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.falcon import ALARM_PARAMS
from oceand.api.server import runner_options
from oceand.daemon import Daemon
from tests.conftest import make_config

ALARM = "/v1/falcon/alarm"
MP = "multipart/form-data; boundary=xx"
FORM = "application/x-www-form-urlencoded"
GOOD = "endpoint=h1&metric=m&status=PROBLEM&stra_id=3&tags=a%3Ab"


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[logging.LogRecord]:
        out, self.records = self.records, []
        return out


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[object, object]]:
    d = Daemon(make_config(tmp_path, server={"listen": "127.0.0.1:0", "max_body": "64KiB"}))
    server = TestServer(d.build_app())
    await server.start_server(**runner_options(d.config.server))  # the daemon's server settings
    async with TestClient(server) as c:
        yield c


@pytest.fixture
def logs() -> AsyncIterator[Records] | Records:
    h = Records()
    root = logging.getLogger()
    root.addHandler(h)
    yield h  # type: ignore[misc]
    root.removeHandler(h)


def no_errors(records: list[logging.LogRecord]) -> None:
    bad = [r for r in records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


def part(name: str, value: bytes, extra: bytes = b"") -> bytes:
    return (
        b'--xx\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n' + extra + b"\r\n" + value
    )


@pytest.mark.parametrize(
    ("method", "ctype", "body", "extra", "status", "reason"),
    [
        # each of these answered 500 with a traceback on main before this change
        pytest.param(
            "POST",
            MP,
            part("endpoint", b"h1"),
            {},
            400,
            "closing boundary is missing",
            id="truncated multipart",
        ),
        pytest.param(
            "POST",
            "multipart/form-data",
            b"garbage",
            {},
            400,
            "no valid boundary",
            id="multipart without boundary",
        ),
        pytest.param(
            "POST", MP, b"garbage", {}, 400, "boundary does not occur", id="multipart, boundary absent"
        ),
        pytest.param(
            "POST", FORM, b"endpoint=\xff\xfe", {}, 400, "form body: not UTF-8", id="non-UTF-8 form"
        ),
        pytest.param(
            "POST",
            FORM + "; charset=bogus",
            b"endpoint=a",
            {},
            415,
            "charset 'bogus'",
            id="unknown form charset",
        ),
        pytest.param(
            "POST",
            MP,
            part("endpoint", b"\xff") + b"\r\n--xx--\r\n",
            {},
            400,
            "not UTF-8",
            id="non-UTF-8 multipart field",
        ),
        pytest.param(
            "POST",
            FORM,
            b"x" * 100,
            {"Content-Encoding": "gzip"},
            415,
            "Content-Encoding 'gzip' is not accepted",
            id="gzip that is not gzip",
        ),
        # 4xx before too, kept
        pytest.param(
            "POST",
            "application/json",
            b'{"endpoint": "\xff"}',
            {},
            400,
            "not valid JSON",
            id="non-UTF-8 JSON",
        ),
        pytest.param(
            "POST", FORM, b"a=" + b"x" * 70_000, {}, 413, "larger than 65536 bytes", id="body over max_body"
        ),
        pytest.param(
            "POST",
            "text/plain",
            b"endpoint=h1",
            {},
            415,
            "'text/plain' is not accepted",
            id="unsupported type",
        ),
        pytest.param("GET", "", b"", {}, 400, "endpoint: missing", id="no parameters"),
        pytest.param(
            "GET",
            "",
            b"",
            {"q": GOOD + "&status=OK"},
            400,
            "status: given more than once",
            id="repeated field",
        ),
        pytest.param(
            "GET",
            "",
            b"",
            {"q": GOOD.replace("h1", "h" * 2000)},
            400,
            "endpoint: longer than 1024",
            id="huge field",
        ),
    ],
)
async def test_bad_callbacks_get_a_4xx_with_a_reason_and_one_log_line(
    client: TestClient[object, object],
    logs: Records,
    method: str,
    ctype: str,
    body: bytes,
    extra: dict[str, str],
    status: int,
    reason: str,
) -> None:
    headers = {k: v for k, v in extra.items() if k != "q"}
    if ctype:
        headers["Content-Type"] = ctype
    query = extra.get("q", "")
    r = await client.request(method, f"{ALARM}?{query}", data=body, headers=headers)
    got = await r.json()
    assert (r.status, reason in got["error"]["message"]) == (status, True), got
    records = logs.take()
    no_errors(records)
    rejected = [r for r in records if getattr(r, "event", None) == "alarm_rejected"]
    assert len(rejected) == 1 and reason in rejected[0].getMessage()


async def test_a_good_callback_as_a_form_or_multipart_is_accepted(client: TestClient[object, object]) -> None:
    for ctype, body in [
        (FORM, GOOD.encode()),
        (
            MP,
            b"".join(part(k, v.encode()) + b"\r\n" for k, v in (p.split("=") for p in GOOD.split("&")))
            + b"--xx--",
        ),
        ("application/json", b'{"endpoint": "h1", "metric": "m", "status": "OK", "exp_id": 4}'),
    ]:
        r = await client.post(ALARM, data=body, headers={"Content-Type": ctype})
        assert r.status == 200, await r.text()


_header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
_ctypes = st.one_of(
    st.sampled_from(
        [MP, "multipart/form-data", FORM, FORM + "; charset=bogus", "application/json", "text/plain"]
    ),
    _header_text,
)
_encodings = st.one_of(
    st.none(), st.sampled_from(["gzip", "deflate", "br", "identity", "zstd"]), _header_text
)


def _mutated(base: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.integers(0, len(base)).map(lambda i: base[:i]),
        st.tuples(st.integers(0, len(base) - 1), st.binary(min_size=1, max_size=8)).map(
            lambda t: base[: t[0]] + t[1] + base[t[0] + 1 :]
        ),
    )


_multipart = st.lists(
    st.tuples(st.sampled_from([*sorted(ALARM_PARAMS), "x"]), st.binary(max_size=20)), max_size=6
).map(lambda fields: b"".join(part(k, v) + b"\r\n" for k, v in fields) + b"--xx--\r\n")
_bodies = st.one_of(
    st.binary(max_size=400),
    _multipart.flatmap(_mutated),
    _mutated(GOOD.encode()),
    _mutated(b'{"endpoint": "h1", "metric": "m", "status": "OK", "stra_id": 3}'),
)
_queries = st.lists(
    st.tuples(st.sampled_from([*sorted(ALARM_PARAMS), "token"]), st.text(max_size=30)), max_size=8
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["GET", "POST"]), _queries, _ctypes, _encodings, _bodies)
async def test_any_alarm_request_gets_an_answer_below_500(
    client: TestClient[object, object],
    logs: Records,
    method: str,
    query: list[tuple[str, str]],
    ctype: str,
    encoding: str | None,
    body: bytes,
) -> None:
    headers = {"Content-Type": ctype}
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    r = await client.request(method, ALARM, params=query, data=body, headers=headers)
    await r.read()
    assert r.status < 500
    no_errors(logs.take())


_ints = st.integers(-(2**63), 2**63 - 1)
_items = st.fixed_dictionaries(
    {},
    optional={
        "endpoint": st.one_of(st.text(max_size=10), _ints),
        "metric": st.sampled_from(["cpu.idle", "", "kernel.hostname"]),
        "value": st.one_of(st.floats(), _ints, st.text(max_size=5)),
        "step": st.one_of(_ints, st.text(max_size=3)),
        "counterType": st.sampled_from(["GAUGE", "COUNTER", "x"]),
        "tags": st.text(max_size=20),
        "timestamp": st.one_of(_ints, st.floats()),
    },
)
_push_bodies = st.one_of(
    st.binary(max_size=400),
    st.lists(_items, max_size=5).map(orjson.dumps).flatmap(_mutated),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_ctypes, _encodings, _push_bodies)
async def test_any_push_gets_an_answer_below_500(
    client: TestClient[object, object], logs: Records, ctype: str, encoding: str | None, body: bytes
) -> None:
    headers = {"Content-Type": ctype}
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    r = await client.post("/v1/push", data=body, headers=headers)
    await r.read()
    assert r.status < 500
    no_errors(logs.take())


async def test_a_rejected_callback_logs_its_query_without_the_token(
    client: TestClient[object, object], logs: Records
) -> None:
    """A Falcon callback URL is free text and may carry the ingest token (PRODUCT §10): never logged."""
    r = await client.get(f"{ALARM}?token=s3cr3t-value&status=OK&status=OK")
    assert r.status == 400
    rejected = [r for r in logs.take() if getattr(r, "event", None) == "alarm_rejected"]
    assert len(rejected) == 1
    query = rejected[0].query  # type: ignore[attr-defined]
    assert "s3cr3t-value" not in query and "token=***" in query
