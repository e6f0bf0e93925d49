"""Notifications for applied and failed actions (PRODUCT §4.3): a job's webhook and its notify group.

Sending never delays scaling: `submit` only puts the message on a bounded queue (the oldest is dropped
when it is full, and counted); one background task posts them with a short timeout. The notify group goes
to Falcon's sender API when `[notify] falcon_sender` is configured (Ocean sent through Falcon's UIC
groups); without it the group is only logged.

A webhook never follows a redirect: a 3xx is a failed notification (logged as `notify_failed`, counted
in `oceand_notify_errors_total`). Logged URLs and errors are redacted (`policies.redact`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

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
        falcon_sender: str | None = None,
        *,
        maxlen: int = 1000,
        timeout: float = 3.0,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.falcon_sender = falcon_sender
        self.timeout = timeout
        self.on_error = on_error
        self._queue: deque[tuple[str, str, dict[str, Any]]] = deque(maxlen=maxlen)
        self._wake = asyncio.Event()
        self.dropped = 0
        self.sent = 0

    def submit(self, doc: JobDocument, d: Decision) -> None:
        if d.status not in NOTIFY_STATUSES:
            return
        msg = message(doc, d)
        targets: list[tuple[str, str]] = []
        if doc.notify.webhook:
            targets.append(("webhook", doc.notify.webhook))
        if doc.notify.group:
            if self.falcon_sender:
                targets.append(("group", self.falcon_sender))
            else:
                log.info("notify group %s: %s", doc.notify.group, msg, extra={"event": "notify_group"})
        for kind, url in targets:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
            body = msg if kind == "webhook" else {"group": doc.notify.group, "content": _text(msg), **msg}
            self._queue.append((kind, url, body))
        if targets:
            self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
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
                    self.sent += 1
                    continue
                log.warning(
                    "notification (%s) of job %s to %s failed: %s",
                    kind,
                    body.get("job"),
                    redact_url(url),
                    redact_text(error),
                    extra={"event": "notify_failed", "job": body.get("job"), "kind": kind},
                )
                if self.on_error is not None:
                    with contextlib.suppress(Exception):
                        self.on_error(kind)

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


def _text(msg: dict[str, Any]) -> str:
    return f"[oceand] {msg['job']}: {msg['from']} -> {msg['to']} ({msg['reason']}, {msg['status']})"
