"""Notifications for applied and failed actions (PRODUCT §4.3): a job's webhook and its notify group.

Sending never delays scaling: `submit` only puts the message on a bounded queue (the oldest is dropped
when it is full, and counted); background tasks post them with a short timeout. The notify group is a
falcon-plus team delivered through Falcon's sender endpoints when `[notify] falcon_api` is configured
(`oceand.falcon_notify`: team members from the falcon-plus API, SMS / mail / IM as falcon-plus's alarm
posts them, each channel with its own queue and task); without it the group is only logged.

A webhook never follows a redirect: a 3xx is a failed notification (logged as `notify_failed`, counted
in `oceand_notify_errors_total`). Logged URLs and errors are redacted (`policies.redact`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from oceand.config import NotifySettings
from oceand.falcon_notify import Env, FalconGroups, OnEvent
from policies.document import JobDocument
from policies.redact import redact_text, redact_url
from policies.types import Decision

log = logging.getLogger("oceand.notify")

NOTIFY_STATUSES = ("applied", "failed")


def message(doc: JobDocument, d: Decision) -> dict[str, Any]:
    reason = next((r for r in d.reasons if r not in ("DryRun",)), d.reasons[0] if d.reasons else "")
    return {
        "job": d.job,
        "from": d.current,
        "to": d.desired,
        "reason": reason,
        "reasons": d.reasons,
        "status": d.status,
        "decision_id": d.id,
        "at": d.at,
        "trigger": d.trigger,
        "target": {"cluster": doc.target.cluster, "app": doc.target.app},
        "error": d.result.get("error"),
    }


class Notifier:
    def __init__(
        self,
        settings: NotifySettings | None = None,
        *,
        maxlen: int = 1000,
        timeout: float = 3.0,
        on_error: Callable[[str], None] | None = None,
        on_event: OnEvent | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        """`on_error(kind)` after a failed notification (kind: webhook, falcon_api, sms, mail, im);
        `on_event(event, kind)` for the rest (sent, retry, dropped, team_cached/fetched/stale/failed)."""
        self.timeout = timeout
        self.on_error = on_error
        self.on_event = on_event
        self._queue: deque[tuple[str, str, dict[str, Any]]] = deque(maxlen=maxlen)
        self._wake = asyncio.Event()
        self.dropped = 0
        self.sent = 0
        self.falcon: FalconGroups | None = None
        if settings is not None and settings.falcon:
            self.falcon = FalconGroups(Env(settings, self._event, monotonic, sleep))

    def _event(self, event: str, kind: str) -> None:
        if event == "dropped":
            self.dropped += 1
        elif event == "sent":
            self.sent += 1
        callback = self.on_error if event == "error" else None
        with contextlib.suppress(Exception):
            if callback is not None:
                callback(kind)
            elif self.on_event is not None:
                self.on_event(event, kind)

    def submit(self, doc: JobDocument, d: Decision) -> None:
        if d.status not in NOTIFY_STATUSES:
            return
        msg = message(doc, d)
        if doc.notify.group:
            if self.falcon is not None:
                self.falcon.submit(doc.notify.group, msg)
            else:
                log.info("notify group %s: %s", doc.notify.group, msg, extra={"event": "notify_group"})
        if doc.notify.webhook:
            if len(self._queue) == self._queue.maxlen:
                self._event("dropped", "webhook")
            self._queue.append(("webhook", doc.notify.webhook, msg))
            self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Post until `stop`: the webhooks here, the Falcon groups in their own tasks (a hanging sender
        delays neither the webhooks nor the other channels)."""
        if self.falcon is None:
            await self._run_webhooks(stop)
            return
        await asyncio.gather(self._run_webhooks(stop), self.falcon.run(stop))

    async def _run_webhooks(self, stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not stop.is_set():
                if not self._queue:
                    self._wake.clear()
                    waiter = asyncio.ensure_future(self._wake.wait())
                    stopper = asyncio.ensure_future(stop.wait())
                    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    for f in (waiter, stopper):
                        f.cancel()
                    continue
                kind, url, body = self._queue.popleft()
                error = await self._post(session, url, body)
                if error is None:
                    self._event("sent", kind)
                    continue
                log.warning(
                    "notification (%s) of job %s to %s failed: %s",
                    kind,
                    body.get("job"),
                    redact_url(url),
                    redact_text(error),
                    extra={"event": "notify_failed", "job": body.get("job"), "kind": kind},
                )
                self._event("error", kind)

    @staticmethod
    async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> str | None:
        """POST once; None when it was taken (2xx), else why not. A redirect is never followed: it could
        carry the URL's credentials, or the message itself, to another service (the daemon's own API)."""
        try:
            async with session.post(
                url,
                data=orjson.dumps(body),
                headers={"Content-Type": "application/json"},
                allow_redirects=False,
            ) as resp:
                if 300 <= resp.status < 400:
                    where = resp.headers.get("Location", "(none)")
                    return f"answered {resp.status} {resp.reason or ''}; redirect to {where} not followed"
                if resp.status >= 400 or resp.status < 200:
                    return f"answered {resp.status} {resp.reason or ''}".rstrip()
            return None
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            return str(e) or type(e).__name__
