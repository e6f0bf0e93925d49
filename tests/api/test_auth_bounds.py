"""Bounds of the access layer (PRODUCT §10, issue 13): `[auth] max_tokens`, `[auth] audit_retention`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from oceand.config import ConfigError, validate_config
from tests.api.test_admin import doc
from tests.api.test_auth import Clock, session, with_root
from tests.conftest import DaemonFactory

assert session  # the fixture

DAY = 86400.0


async def test_max_tokens(
    start_daemon: DaemonFactory, session: aiohttp.ClientSession, tmp_path: Path, capsys: Any
) -> None:
    api, root = await with_root(start_daemon, session, tmp_path, capsys, max_tokens=3)
    for name in ("a", "b"):
        assert (await api("POST", "/api/v1/tokens", root, {"name": name, "scopes": ["read"]}))[0] == 201
    status, body = await api("POST", "/api/v1/tokens", root, {"name": "c", "scopes": ["read"]})
    assert status == 409 and body["error"]["code"] == "too_many_tokens", body
    assert "max_tokens" in body["error"]["message"]
    assert (await api("GET", "/metrics", root))[1].count("oceand_auth_tokens_refused_total 1.0") == 1
    status, _ = await api("POST", "/api/v1/tokens/a/rotate", root)
    assert status == 200  # rotating is not creating
    assert (await api("DELETE", "/api/v1/tokens/a", root))[0] == 204
    assert (await api("POST", "/api/v1/tokens", root, {"name": "c", "scopes": ["read"]}))[0] == 201


async def test_audit_retention(start_daemon: DaemonFactory) -> None:
    clock = Clock()
    d, c = await start_daemon(clock=clock, auth={"audit_retention": "30d"})
    assert (await c.call("POST", "/api/v1/jobs", doc()))[0] == 201  # one audit entry, now
    clock.now += 20 * DAY
    assert (await c.call("POST", f"/api/v1/jobs/{doc()['job']}/mode", {"mode": "paused"}))[0] == 200
    clock.now += 15 * DAY  # the first entry is 35 days old, the second 15
    assert await d.prune_audit() == 1
    assert [e["action"] for e in (await c.call("GET", "/api/v1/audit"))[1]["entries"]] == ["job.mode"]
    assert "oceand_audit_pruned_total 1.0" in d.metrics.render().decode()
    assert await d.prune_audit() == 0


@pytest.mark.parametrize(
    ("auth", "key"),
    [
        pytest.param({"audit_retention": "1h"}, "auth.audit_retention", id="retention under a day"),
        pytest.param({"max_tokens": 0}, "auth.max_tokens", id="no tokens"),
        pytest.param({"write_rate": 0}, "auth.write_rate", id="zero rate"),
        pytest.param({"write_burst": 0}, "auth.write_burst", id="zero burst"),
    ],
)
def test_bounds_config(tmp_path: Path, auth: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as e:
        validate_config({"auth": auth}, file="oceand.toml", base_dir=tmp_path, path=None)
    assert e.value.key == key, str(e.value)
