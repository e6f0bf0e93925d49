"""A daemon with `[redis] url` (issue 14, HA.md §6.9): Redis going away degrades, never fails. /readyz
stays 200 and says `"redis": "degraded"` with the reason; `oceand_redis_up` follows; Redis coming back is
noticed by the probe. Without `[redis]` /readyz has no Redis entry."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oceand.config import load_config
from oceand.daemon import Daemon
from tests.conftest import DaemonFactory

from .conftest import RedisServer


async def test_readyz_reports_redis_degraded_and_stays_ready(
    start_daemon: DaemonFactory, own_redis: RedisServer, wait_for: Callable[..., Any]
) -> None:
    d, c = await start_daemon(redis={"url": own_redis.url, "socket_timeout": "200ms"})
    assert isinstance(d, Daemon) and d.hotstate is not None
    d.hotstate.probe_interval = 0.05
    await wait_for(lambda: d.hotstate is not None and d.hotstate.subscribed, "subscribed")
    status, body = await c.call("GET", "/readyz")
    assert (status, body["status"], body["redis"]) == (200, "ready", "ok")
    assert "redis_reason" not in body

    own_redis.stop()
    await wait_for(lambda: d.hotstate is not None and not d.hotstate.up, "the probe notices")
    status, body = await c.call("GET", "/readyz")
    assert (status, body["status"], body["redis"]) == (200, "ready", "degraded")
    assert body["redis_reason"]
    _, text = await c.call("GET", "/metrics")
    assert "oceand_redis_up 0.0" in text

    own_redis.start()
    await wait_for(lambda: d.hotstate is not None and d.hotstate.status() == {"redis": "ok"}, "back")
    status, body = await c.call("GET", "/readyz")
    assert (status, body["redis"]) == (200, "ok")
    _, text = await c.call("GET", "/metrics")
    assert "oceand_redis_up 1.0" in text


async def test_a_daemon_starts_while_redis_is_down(
    start_daemon: DaemonFactory, own_redis: RedisServer
) -> None:
    own_redis.stop()
    d, c = await start_daemon(redis={"url": own_redis.url, "socket_timeout": "200ms"})
    status, body = await c.call("GET", "/readyz")
    assert (status, body["status"], body["redis"]) == (200, "ready", "degraded")
    await d.stop()  # closes the Redis clients and tasks within the stop budget
    assert d.hotstate is not None and d.hotstate._tasks == []


async def test_without_redis_readyz_has_no_redis_entry(start_daemon: DaemonFactory) -> None:
    d, c = await start_daemon()
    assert d.hotstate is None
    status, body = await c.call("GET", "/readyz")
    assert status == 200 and "redis" not in body


async def test_a_reload_keeps_the_running_redis_and_says_so(
    tmp_path: Path, own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    conf = tmp_path / "oceand.toml"
    base = '[server]\nlisten = "127.0.0.1:0"\n[store]\nurl = "sqlite:///oceand.db"\n[redis]\n'
    conf.write_text(base + f'url = "{own_redis.url}"\n')
    d = Daemon(load_config(conf))
    await d.start()
    try:
        hot = d.hotstate
        conf.write_text(base + 'url = "redis://127.0.0.1:1/0"\n')
        with caplog.at_level(logging.WARNING, logger="oceand"):
            assert await d.reload()
        assert d.hotstate is hot and hot is not None and hot.url == own_redis.url
        assert [r.getMessage() for r in caplog.records if getattr(r, "event", "") == "reload_partial"] == [
            "[redis] changes only on restart"
        ]
    finally:
        await d.stop()
