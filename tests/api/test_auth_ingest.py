"""Two listeners and the ingest guard (PRODUCT §10, issue 13 item 4): `[ingest] listen`, `allow`, `token`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from oceand.config import Config, ConfigError, validate_config
from tests.api.test_auth import Api, Clock, host_token
from tests.conftest import DaemonFactory

INGEST_TOKEN = "ingest-secret-0123456789abcdef"
PUSH = [
    {"endpoint": "h1", "metric": "cpu.idle", "timestamp": 1, "step": 60, "value": 1, "counterType": "GAUGE"}
]
BAD_ALARM = "endpoint=h1&metric=cpu.idle"  # rejected: logged with its query


def config(tmp_path: Path, **data: Any) -> Config:
    return validate_config(data, file="oceand.toml", base_dir=tmp_path, path=None)


@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        pytest.param(
            {"ingest": {"listen": "0.0.0.0:8081"}},
            "ingest.allow",
            "ingest.listen '0.0.0.0:8081'",
            id="open ingest",
        ),
        pytest.param(
            {"server": {"listen": "0.0.0.0:8080"}, "auth": {"enabled": True}},
            "ingest.allow",
            "server.listen (which carries ingest)",
            id="shared listener beyond loopback",
        ),
        pytest.param(
            {"ingest": {"allow": ["10.0.0.300/8"]}}, "ingest.allow", "not an IP address", id="bad cidr"
        ),
        pytest.param({"ingest": {"token": "short"}}, "ingest.token", "at least 16", id="short token"),
        pytest.param(
            {"ingest": {"token": "a" * 10 + " " + "b" * 10}}, "ingest.token", "white space", id="space"
        ),
        pytest.param(
            {"ingest": {"listen": "127.0.0.1:8080"}}, "ingest.listen", "is server.listen", id="same as server"
        ),
        pytest.param({"ingest": {"listen": "8081"}}, "ingest.listen", "not host:port", id="bad listen"),
    ],
)
def test_ingest_config_refusals(tmp_path: Path, data: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as e:
        config(tmp_path, **data)
    assert e.value.key == key and fragment in e.value.message, str(e.value)
    assert "short" not in e.value.message and INGEST_TOKEN not in str(e.value)


@pytest.mark.parametrize(
    "ingest",
    [
        pytest.param({"listen": "0.0.0.0:8081", "allow": ["10.0.0.0/8", "fd00::/8"]}, id="allow"),
        pytest.param({"listen": "0.0.0.0:8081", "token": INGEST_TOKEN}, id="token"),
        pytest.param({"listen": "127.0.0.1:8081"}, id="loopback, open"),
    ],
)
def test_ingest_config_accepted(tmp_path: Path, ingest: dict[str, Any]) -> None:
    got = config(tmp_path, ingest=ingest).ingest
    assert (got.listen, got.allow, got.token) == (
        ingest["listen"],
        ingest.get("allow", []),
        ingest.get("token"),
    )


async def call(
    session: aiohttp.ClientSession, method: str, url: str, json: Any = None, token: str | None = None
) -> int:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with session.request(method, url, json=json, headers=headers) as r:
        await r.read()
        return r.status


async def test_two_listeners(start_daemon: DaemonFactory) -> None:
    d, _ = await start_daemon(ingest={"listen": "127.0.0.1:0"})
    assert d.ingest_url is not None and d.ingest_url != d.url
    async with aiohttp.ClientSession() as s:
        assert await call(s, "POST", f"{d.ingest_url}/v1/push", PUSH) == 200
        assert (
            await call(s, "GET", f"{d.ingest_url}/v1/falcon/alarm?{BAD_ALARM}") == 400
        )  # routed, then refused
        assert await call(s, "GET", f"{d.ingest_url}/healthz") == 200
        assert await call(s, "POST", f"{d.url}/v1/push", PUSH) == 404  # no longer on the admin listener
        assert await call(s, "GET", f"{d.url}/v1/falcon/alarm?{BAD_ALARM}") == 404
        for path in ("/api/v1/jobs", "/metrics", "/readyz", "/api/v1/openapi.json"):
            assert await call(s, "GET", f"{d.ingest_url}{path}") == 404, path
            assert await call(s, "GET", f"{d.url}{path}") == 200, path
    await d.stop()
    assert d.metrics.http_connections._value.get() == 0


GUARD_CASES = [
    pytest.param({"token": INGEST_TOKEN}, "", None, 401, id="token set, none given"),
    pytest.param({"token": INGEST_TOKEN}, f"?token={INGEST_TOKEN}", None, 200, id="token in the query"),
    pytest.param({"token": INGEST_TOKEN}, "", INGEST_TOKEN, 200, id="token as bearer"),
    pytest.param({"token": INGEST_TOKEN}, "?token=wrong-token-000000000", None, 401, id="wrong token"),
    pytest.param({"token": INGEST_TOKEN}, "", "store:ingest", 200, id="store token with ingest scope"),
    pytest.param({"token": INGEST_TOKEN}, "", "store:read", 401, id="store token without ingest scope"),
    pytest.param({"allow": ["127.0.0.0/8"]}, "", None, 200, id="sender allowed"),
    pytest.param({"allow": ["10.0.0.0/8", "::1/128"]}, "", None, 403, id="sender not allowed"),
    pytest.param(
        {"allow": ["10.0.0.0/8"], "token": INGEST_TOKEN}, f"?token={INGEST_TOKEN}", None, 200, id="either"
    ),
    pytest.param({}, "", None, 200, id="loopback without a guard"),
]


async def case_bearer(bearer: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str | None:
    """A GUARD_CASES bearer: "store:<scope>" becomes the secret of a store token with that scope."""
    if bearer is None or not bearer.startswith("store:"):
        return bearer
    return await host_token(tmp_path, "--name", "t", "--scope", bearer.removeprefix("store:"), capsys=capsys)


@pytest.mark.parametrize(("ingest", "query", "bearer", "expected"), GUARD_CASES)
async def test_ingest_guard(
    start_daemon: DaemonFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    ingest: dict[str, Any],
    query: str,
    bearer: str | None,
    expected: int,
) -> None:
    bearer = await case_bearer(bearer, tmp_path, capsys)
    d, _ = await start_daemon(ingest={"listen": "127.0.0.1:0", **ingest}, clock=Clock())
    async with aiohttp.ClientSession() as s:
        assert await call(s, "POST", f"{d.ingest_url}/v1/push{query}", PUSH, bearer) == expected
        alarm = f"{d.ingest_url}/v1/falcon/alarm{query or '?'}&{BAD_ALARM}"
        assert await call(s, "GET", alarm, None, bearer) == (400 if expected == 200 else expected)


async def test_the_ingest_token_is_never_logged(
    start_daemon: DaemonFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    d, _ = await start_daemon(ingest={"token": INGEST_TOKEN}, auth={"enabled": True})
    async with aiohttp.ClientSession() as s:
        api = Api(s, str(d.url))
        for q in (f"?token={INGEST_TOKEN}&{BAD_ALARM}", f"?{BAD_ALARM}&token={INGEST_TOKEN}x"):
            status, body = await api("GET", f"/v1/falcon/alarm{q}")
            assert status in (400, 401) and INGEST_TOKEN not in str(body)
        status, body = await api("GET", "/api/v1/clusters", INGEST_TOKEN)  # not an admin token
        assert status == 401 and INGEST_TOKEN not in str(body)
    logged = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    assert "alarm_rejected" in logged  # the rejected callback was logged, its query redacted
    assert INGEST_TOKEN not in logged
