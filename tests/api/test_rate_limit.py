"""Per-token rate limit for admin writes (PRODUCT §10, issue 13): `[auth] write_rate` / `write_burst`,
429 with `Retry-After` (whole seconds, rounded up), counted in `oceand_auth_rate_limited_total`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from oceand.auth import WriteLimiter
from tests.api.test_admin import JOB, doc
from tests.api.test_auth import Clock, session, with_root
from tests.conftest import DaemonFactory

assert session  # the fixture


@pytest.mark.parametrize(
    ("rate", "burst", "calls", "waits"),
    [
        pytest.param(1.0, 3, [0, 0, 0, 0], [0, 0, 0, 1.0], id="burst then wait"),
        pytest.param(2.0, 1, [0, 0, 0.25, 0.5], [0, 0.5, 0.25, 0], id="refill at the rate"),
        pytest.param(0.5, 2, [0, 0, 0, 100, 100, 100], [0, 0, 2.0, 0, 0, 2.0], id="refills to burst only"),
        pytest.param(1.0, 1, [10, 5, 5, 11], [0, 1.0, 1.0, 0], id="clock back refills nothing"),
        pytest.param(1.0, 2, [0, 0, 0, 0.5], [0, 0, 1.0, 0.5], id="a refused write takes nothing"),
    ],
)
def test_bucket(rate: float, burst: int, calls: list[float], waits: list[float]) -> None:
    limiter = WriteLimiter()
    assert [limiter.take("k", t, rate, burst) for t in calls] == pytest.approx(waits)


def test_keys_are_separate_and_bounded() -> None:
    limiter = WriteLimiter(max_keys=3)
    assert limiter.take("a", 0, 1.0, 1) == 0 and limiter.take("a", 0, 1.0, 1) == 1.0
    assert limiter.take("b", 0, 1.0, 1) == 0  # another key has its own bucket
    for k in "cdef":
        limiter.take(k, 0, 1.0, 1)
    assert len(limiter) == 3  # never more than max_keys; the least recently used went first
    assert limiter.take("a", 0, 1.0, 1) == 0  # forgotten: a fresh bucket (its burst, not more)


async def test_writes_are_limited_per_source_without_auth(start_daemon: DaemonFactory) -> None:
    clock = Clock()
    d, c = await start_daemon(clock=clock, auth={"write_rate": 0.3, "write_burst": 2})
    assert (await c.call("POST", "/api/v1/jobs", doc()))[0] == 201
    assert (await c.call("POST", f"/api/v1/jobs/{JOB}/mode", {"mode": "paused"}))[0] == 200
    async with c.session.post(c.base + f"/api/v1/jobs/{JOB}/mode", json={"mode": "active"}) as r:
        body = await r.json()
        assert r.status == 429 and r.headers["Retry-After"] == "4", body  # 1 / 0.3 = 3.33 s, rounded up
        assert body["error"]["code"] == "rate_limited" and "write_rate" in body["error"]["message"]
    assert (await c.call("GET", f"/api/v1/jobs/{JOB}"))[0] == 200  # reads are not limited
    assert "oceand_auth_rate_limited_total 1.0" in d.metrics.render().decode()
    clock.now += 3.4
    assert (await c.call("POST", f"/api/v1/jobs/{JOB}/mode", {"mode": "active"}))[0] == 200
    assert (await c.call("DELETE", f"/api/v1/jobs/{JOB}"))[0] == 429


async def test_each_token_has_its_own_bucket(
    start_daemon: DaemonFactory, session: aiohttp.ClientSession, tmp_path: Path, capsys: Any
) -> None:
    clock = Clock()
    api, root = await with_root(start_daemon, session, tmp_path, capsys, clock, write_rate=1, write_burst=2)
    status, made = await api("POST", "/api/v1/tokens", root, {"name": "ops", "scopes": ["write"]})
    assert status == 201, made  # a token operation is a write too: root has 1 left
    assert (await api("POST", "/api/v1/jobs", root, doc()))[0] == 201
    status, body = await api("PUT", f"/api/v1/jobs/{JOB}", root, doc())
    assert status == 429 and "token 'root'" in body["error"]["message"], body
    assert (await api("PUT", f"/api/v1/jobs/{JOB}", made["secret"], doc()))[0] == 200
    assert (await api("GET", "/api/v1/tokens", root))[0] == 200
    clock.now += 1
    assert (await api("PUT", f"/api/v1/jobs/{JOB}", root, doc()))[0] == 200


def test_openapi_describes_429_on_every_write() -> None:
    from oceand.api.auth import ROUTE_SCOPES, WRITE_SCOPES
    from oceand.api.openapi import spec

    s = spec()
    for path, ops in s["paths"].items():
        for method, op in ops.items():
            if method == "parameters":
                continue
            write = ROUTE_SCOPES[(method.upper(), path)] in WRITE_SCOPES and method != "get"
            assert ("429" in op["responses"]) == write, (method, path)
    limited = s["components"]["responses"]["RateLimited"]
    assert limited["headers"]["Retry-After"]["schema"]["type"] == "integer"
