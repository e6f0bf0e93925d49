"""Webhook secrets in the admin API and the notifier's logs; webhooks never follow redirects (issue 18)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from oceand.config import NotifySettings
from oceand.notify import Notifier
from policies.document import parse_job
from policies.types import ActuationOutcome, Decision
from tests.api.test_admin import JOB, doc
from tests.conftest import DaemonFactory

SECRET = "s3cr3t-Pa55"
HOOK = f"http://hook:{SECRET}@127.0.0.1:9/notify?token={SECRET}&team=sre"
SHOWN = "http://***@127.0.0.1:9/notify?token=***&team=sre"


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.005)


# ---- the admin API -----------------------------------------------------------------------------


async def test_get_job_redacts_the_webhook(start_daemon: DaemonFactory) -> None:
    _, c = await start_daemon()
    status, body = await c.call("POST", "/api/v1/jobs", doc(notify={"webhook": HOOK}))
    assert status == 201, body
    assert body["job"]["notify"]["webhook"] == SHOWN
    status, body = await c.call("GET", f"/api/v1/jobs/{JOB}")
    assert status == 200 and body["job"]["notify"]["webhook"] == SHOWN
    status, text = await c.call("GET", "/api/v1/jobs")
    assert SECRET not in str(text)


async def test_put_back_of_the_redacted_document_keeps_the_stored_secret(start_daemon: DaemonFactory) -> None:
    d, c = await start_daemon()
    await c.call("POST", "/api/v1/jobs", doc(notify={"webhook": HOOK, "group": "sre"}))
    _, got = await c.call("GET", f"/api/v1/jobs/{JOB}")
    changed = {**got["job"], "max_instances": 9}
    status, body = await c.call("PUT", f"/api/v1/jobs/{JOB}", changed)
    assert status == 200, body
    assert body["job"]["notify"]["webhook"] == SHOWN and body["job"]["max_instances"] == 9
    assert d.engine.jobs[JOB].doc.notify.webhook == HOOK
    stored = await d.store.get_job(JOB)
    assert stored is not None and stored.doc["notify"]["webhook"] == HOOK


async def test_a_new_webhook_replaces_the_stored_one(start_daemon: DaemonFactory) -> None:
    d, c = await start_daemon()
    await c.call("POST", "/api/v1/jobs", doc(notify={"webhook": HOOK}))
    new = "http://other:pw2@127.0.0.1:9/n"
    status, body = await c.call("PUT", f"/api/v1/jobs/{JOB}", doc(notify={"webhook": new}))
    assert status == 200 and body["job"]["notify"]["webhook"] == "http://***@127.0.0.1:9/n"
    assert d.engine.jobs[JOB].doc.notify.webhook == new


@pytest.mark.parametrize(
    "webhook",
    [
        pytest.param("http://***@127.0.0.1:9/other?token=***&team=sre", id="redacted userinfo, other path"),
        pytest.param(
            "http://hook:x@127.0.0.1:9/notify?token=***&team=sre", id="redacted token, new password"
        ),
    ],
)
async def test_a_redacted_placeholder_that_is_not_the_stored_url_is_refused(
    start_daemon: DaemonFactory, webhook: str
) -> None:
    d, c = await start_daemon()
    await c.call("POST", "/api/v1/jobs", doc(notify={"webhook": HOOK}))
    status, body = await c.call("PUT", f"/api/v1/jobs/{JOB}", doc(notify={"webhook": webhook}))
    assert status == 422, body
    assert body["error"]["details"][0]["path"] == "notify.webhook"
    assert "***" in body["error"]["details"][0]["message"]
    assert d.engine.jobs[JOB].doc.notify.webhook == HOOK


async def test_a_new_job_with_a_redacted_webhook_is_refused(start_daemon: DaemonFactory) -> None:
    _, c = await start_daemon()
    status, body = await c.call("POST", "/api/v1/jobs", doc(notify={"webhook": SHOWN}))
    assert status == 422 and body["error"]["details"][0]["path"] == "notify.webhook", body


# ---- the notifier ------------------------------------------------------------------------------


class Hooks:
    """Two servers on 127.0.0.1: `/redirect` answers 303 to the other one's `/target` (the daemon's own
    alarm URL in the report), `/fail` answers 500; every hit is recorded."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, str]] = []
        self.runners: list[web.AppRunner] = []
        self.urls: list[str] = []

    async def _any(self, request: web.Request) -> web.Response:
        self.hits.append((request.host, request.path))
        if request.path == "/redirect":
            return web.Response(status=303, headers={"Location": self.urls[1] + f"/target?token={SECRET}"})
        if request.path == "/fail":
            return web.Response(status=500)
        return web.Response(text="ok")

    async def start(self) -> None:
        for _ in range(2):
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._any)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.runners.append(runner)
            self.urls.append(f"http://127.0.0.1:{runner.addresses[0][1]}")

    async def stop(self) -> None:
        for r in self.runners:
            await r.cleanup()


@pytest.fixture
async def hooks() -> AsyncIterator[Hooks]:
    h = Hooks()
    await h.start()
    yield h
    await h.stop()


def _job(webhook: str) -> Any:
    return parse_job({**doc(), "notify": {"webhook": webhook}})


def _decision() -> tuple[Decision, ActuationOutcome]:
    return Decision(job=JOB, at=1.0, trigger="bucket", current=1, desired=2), ActuationOutcome("applied")


async def _send(notifier: Notifier, webhook: str, done: Callable[[], bool]) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(notifier.run(stop))
    try:
        notifier.submit(_job(webhook), *_decision())
        await until(done)
    finally:
        stop.set()
        await task


async def test_webhook_does_not_follow_a_redirect(start_daemon: DaemonFactory, hooks: Hooks) -> None:
    d, _ = await start_daemon(notify={"allow": ["127.0.0.1"]})
    with_creds = hooks.urls[0].replace("http://", f"http://hook:{SECRET}@")
    d.notifier.submit(_job(with_creds + "/redirect"), *_decision())
    failed = 'oceand_notify_errors_total{kind="webhook"} 1.0'
    await until(lambda: failed in d.metrics.render().decode())
    assert hooks.hits == [(hooks.urls[0].removeprefix("http://"), "/redirect")]
    assert d.notifier.sent == 0


async def test_notify_failed_log_is_redacted(hooks: Hooks, caplog: pytest.LogCaptureFixture) -> None:
    errors: list[str] = []
    notifier = Notifier(NotifySettings.model_validate({"allow": ["127.0.0.1"]}), on_error=errors.append)
    base = hooks.urls[0].replace("http://", f"http://hook:{SECRET}@")
    with caplog.at_level(logging.WARNING, logger="oceand.notify"):
        await _send(notifier, f"{base}/fail?token={SECRET}", lambda: bool(errors))
        await _send(notifier, f"{base}/redirect?api_key={SECRET}", lambda: len(errors) == 2)
    records = [r for r in caplog.records if getattr(r, "event", None) == "notify_failed"]
    assert len(records) == 2 and errors == ["webhook", "webhook"]
    for r in records:
        text = r.getMessage() + " " + repr(r.__dict__)
        assert SECRET not in text, text
        assert getattr(r, "job", None) == JOB
    assert "500" in records[0].getMessage() and "http://***@127.0.0.1" in records[0].getMessage()
    assert "303" in records[1].getMessage() and "not followed" in records[1].getMessage()
    assert f"{hooks.urls[1]}/target?token=***" in records[1].getMessage()
