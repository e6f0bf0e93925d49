"""Credentials never follow a redirect to another origin (issue 18 item 6).

Two servers on 127.0.0.1 with different ports are two origins. The event stream follows a standby's
redirect with credentials only to the origin of a configured URL; the REST calls rely on aiohttp 3.14,
which drops `Authorization` when a redirect changes the origin (pinned here).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from actuators.marathon import STREAM_OPENED, MarathonClient, MarathonError, Permanent, Transient
from actuators.marathon.watcher import ClusterWatcher
from tests.fakes.marathon import FakeMarathon
from tests.marathon.conftest import config, until

SECRET = "s3cr3t-Pa55"


class Redirector:
    """A server that answers every request with `status` and `Location: <to><path?query>`."""

    def __init__(self, to: str, status: int = 302) -> None:
        self.to, self.status = to, status
        self.seen: list[dict[str, str]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _any(self, request: web.Request) -> web.Response:
        self.seen.append(dict(request.headers))
        return web.Response(status=self.status, headers={"Location": self.to + request.path_qs})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def other() -> AsyncIterator[FakeMarathon]:
    """The second origin: a Marathon that wants the same credentials (and records what it got)."""
    f = FakeMarathon(username="u", password=SECRET)
    await f.start()
    yield f
    await f.stop()


@pytest.fixture
async def standby(other: FakeMarathon) -> AsyncIterator[FakeMarathon]:
    f = FakeMarathon(username="u", password=SECRET, standby=True, leader_url=other.url)
    await f.start()
    yield f
    await f.stop()


async def test_event_stream_redirect_to_another_origin_carries_no_credentials(
    standby: FakeMarathon, other: FakeMarathon
) -> None:
    client = MarathonClient(config(standby.url, username="u", password=SECRET))
    try:
        with pytest.raises(Permanent) as e:
            await anext(client.events([]))
    finally:
        await client.close()
    assert "Authorization" in standby.requests[0].headers
    assert [r.path for r in other.requests] == ["/v2/events"]
    assert "Authorization" not in other.requests[0].headers
    assert e.value.status == 401
    assert other.url in str(e.value) and "not one of the configured urls" in str(e.value)


async def test_event_stream_redirect_to_a_configured_url_keeps_credentials(
    standby: FakeMarathon, other: FakeMarathon
) -> None:
    client = MarathonClient(config(standby.url, other.url, username="u", password=SECRET))
    try:
        stream = client.events([])
        event, data = await anext(stream)
        assert event == STREAM_OPENED and data["url"].startswith(other.url + "/v2/events")
        await stream.aclose()
    finally:
        await client.close()
    assert [r.status for r in standby.requests] == [302]
    assert other.requests[0].headers["Authorization"].startswith("Basic ")
    assert client.leader == other.url


async def test_credentials_are_not_restored_after_a_detour_through_another_origin(
    other: FakeMarathon,
) -> None:
    """configured A -> unknown B -> configured A again: B decided the path, so no credentials."""
    a = FakeMarathon(username="u", password=SECRET)
    await a.start()
    detour = Redirector(a.url)
    await detour.start()
    first = Redirector(detour.url)
    await first.start()
    client = MarathonClient(config(first.url, a.url, username="u", password=SECRET))
    try:
        with pytest.raises(Permanent) as e:
            await anext(client.events([]))
        assert e.value.status == 401
        assert "Authorization" in first.seen[0] and "Authorization" not in detour.seen[0]
        assert "Authorization" not in a.requests[0].headers
    finally:
        await client.close()
        for s in (first, detour):
            await s.stop()
        await a.stop()


async def test_watcher_reports_why_the_redirected_stream_fails(
    standby: FakeMarathon, other: FakeMarathon
) -> None:
    client = MarathonClient(config(standby.url, username="u", password=SECRET))
    w = ClusterWatcher(client, on_change=lambda _: None, backoff_initial=10)
    stop = asyncio.Event()
    task = asyncio.create_task(w.run(stop))
    try:
        await until(lambda: w.last_error is not None)
        assert "not one of the configured urls" in (w.last_error or "")
        assert all("Authorization" not in r.headers for r in other.requests)
    finally:
        stop.set()
        await task
        await client.close()


async def test_rest_redirect_to_another_origin_carries_no_credentials(other: FakeMarathon) -> None:
    """aiohttp 3.14 drops Authorization when a followed redirect changes the origin."""
    other.add_app("/a", 2)
    front = Redirector(other.url, status=307)
    await front.start()
    client = MarathonClient(config(front.url, username="u", password=SECRET))
    try:
        with pytest.raises(Permanent) as e:
            await client.get_app("/a")
        assert e.value.status == 401
    finally:
        await client.close()
        await front.stop()
    assert "Authorization" in front.seen[0]
    assert [r.path for r in other.requests] == ["/v2/apps/a"]
    assert "Authorization" not in other.requests[0].headers


@pytest.mark.parametrize("call", ["events", "get_app"])
async def test_client_errors_do_not_echo_secrets_from_a_location(call: str) -> None:
    """A redirect loop whose Location carries a token and user:pass@: the errors show neither."""
    loop = Redirector("", status=302)
    await loop.start()
    loop.to = loop.url.replace("http://", f"http://x:{SECRET}@") + f"/v2/loop?token={SECRET}&q="
    client = MarathonClient(config(loop.url))
    try:
        with pytest.raises(MarathonError) as e:
            if call == "events":
                await anext(client.events([]))
            else:
                await client.get_app("/a")
    finally:
        await client.close()
        await loop.stop()
    assert isinstance(e.value, Transient | Permanent)
    text = str(e.value) + " " + repr(client.url_state())
    assert SECRET not in text, text
