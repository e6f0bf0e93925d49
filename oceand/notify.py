"""Notifications for applied and failed actions (PRODUCT §4.3): a job's webhook and its notify group.

Sending never delays scaling: `submit` only puts the message on a bounded queue (the oldest is dropped
when it is full, and counted); background tasks post them with a short timeout. The notify group is a
falcon-plus team delivered through Falcon's sender endpoints when `[notify] falcon_api` is configured
(`oceand.falcon_notify`: team members from the falcon-plus API, SMS / mail / IM as falcon-plus's alarm
posts them, each channel with its own queue and task); without it the group is only logged.

A webhook never follows a redirect: a 3xx is a failed notification (logged as `notify_failed`, counted
in `oceand_notify_errors_total`). Logged URLs and errors are redacted (`policies.redact`).

Webhook destinations are checked when sent (`Destinations`, `[notify] allow`): the addresses a host name
resolves to are filtered by the session's resolver, so the address connected to is the one checked (a
name that resolves to a public address at one lookup and to 127.0.0.1 at the next gains nothing). A
refused destination is a failed notification (`oceand_notify_refused_total` too).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from oceand.config import NotifySettings
from oceand.falcon_notify import Env, FalconGroups, OnEvent
from policies.document import JobDocument
from policies.redact import redact_text, redact_url
from policies.types import ActuationOutcome, Decision

log = logging.getLogger("oceand.notify")

NOTIFY_STATUSES = ("applied", "failed")
REFUSED = "refused by [notify] allow"
MAX_REFUSALS = 10_000  # jobs whose last refused webhook is kept for their status


def message(doc: JobDocument, d: Decision, outcome: ActuationOutcome) -> dict[str, Any]:
    reason = next((r for r in d.reasons if r not in ("DryRun",)), d.reasons[0] if d.reasons else "")
    return {
        "job": d.job,
        "from": d.current,
        "to": d.desired,
        "reason": reason,
        "reasons": [*d.reasons, *filter(None, [outcome.reason])],  # the decision's, then ActuationFailed
        "status": outcome.api_status,
        "decision_id": d.id,
        "at": d.at,
        "trigger": d.trigger,
        "target": {"cluster": doc.target.cluster, "app": doc.target.app},
        "error": outcome.error,
    }


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(OSError):
    """A webhook destination `[notify] allow` does not admit."""


class Destinations:
    """Where webhooks may go (PRODUCT §10, `[notify] allow`, docs/security.md "Webhook destinations").

    An address is refused when it is loopback, link-local, unspecified or multicast, or one of the
    daemon's own listeners (`listener`), unless a listed CIDR holds it. Otherwise, with an empty allow
    list every address is admitted; with one, the address must be in a listed CIDR or the URL's host
    name must be listed."""

    def __init__(self, allow: list[str] | tuple[str, ...] = ()) -> None:
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.names: set[str] = set()
        for entry in allow:
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.names.add(entry.lower().rstrip("."))
        self.listeners: set[tuple[IPAddress, int]] = set()
        self.any_listener_ports: set[int] = set()  # listeners on 0.0.0.0 / ::: every local address
        self.local: set[IPAddress] = set()

    def listener(self, host: str, port: int) -> None:
        """One of the daemon's own bound addresses (from the runner, after it started)."""
        addr = _ip(host)
        if addr is None:
            return
        if addr.is_unspecified:
            self.any_listener_ports.add(port)
            self.local |= _local_addresses()
        else:
            self.listeners.add((addr, port))

    def check(self, host: str, addr: str, port: int) -> str | None:
        """None when a webhook to `host` may connect to `addr`:`port`, else why not."""
        ip = _ip(addr)
        if ip is None:
            return f"{addr!r} is not an IP address"
        listed = any(ip in net for net in self.networks)
        special = _special(ip)
        if special is None and ((ip, port) in self.listeners or self._own_wildcard(ip, port)):
            special = "the daemon's own listener"
        if special is not None:
            return None if listed else f"{ip} is {special}; list it in [notify] allow to send there"
        if not self.networks and not self.names:
            return None
        if listed or host.lower().rstrip(".") in self.names:
            return None
        return f"{host} ({ip}) is not in [notify] allow"

    def _own_wildcard(self, ip: IPAddress, port: int) -> bool:
        return port in self.any_listener_ports and (ip in self.local or ip.is_loopback)


def _ip(text: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _special(ip: IPAddress) -> str | None:
    for attr, what in (
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_unspecified", "unspecified"),
        ("is_multicast", "multicast"),
    ):
        if getattr(ip, attr):
            return what
    return None


def _local_addresses() -> set[IPAddress]:
    """This host's addresses as far as its name resolves (for listeners on every interface)."""
    out: set[IPAddress] = set()
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None):
            ip = _ip(str(info[4][0]))
            if ip is not None:
                out.add(ip)
    return out


class _CheckedResolver(AbstractResolver):
    """aiohttp's resolver, keeping only the addresses `Destinations` admits (aiohttp connects to exactly
    what the resolver returns: the check is on the address connected to)."""

    def __init__(self, destinations: Destinations) -> None:
        self.destinations = destinations
        self.inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        kept, why = [], ""
        for r in found:
            reason = self.destinations.check(host, r["host"], r["port"])
            if reason is None:
                kept.append(r)
            else:
                why = reason
        if not kept:
            raise Refused(f"{REFUSED}: {why}")
        return kept

    async def close(self) -> None:
        await self.inner.close()


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
        self.destinations = Destinations(settings.allow if settings is not None else ())
        self.refused = 0
        # job -> its last refused webhook (at, redacted url, reason), until one of its webhooks is delivered
        self.refusals: dict[str, dict[str, Any]] = {}
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

    def submit(self, doc: JobDocument, d: Decision, outcome: ActuationOutcome) -> None:
        if outcome.api_status not in NOTIFY_STATUSES:
            return
        msg = message(doc, d, outcome)
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
        connector = aiohttp.TCPConnector(resolver=_CheckedResolver(self.destinations), use_dns_cache=False)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
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
                error = self._literal_refused(url)
                if error is None:
                    error = await self._post(session, url, body)
                job = str(body.get("job"))
                if error is not None and error.startswith(REFUSED):
                    self.refused += 1
                    self._refused(job, url, error)
                    self._event("refused", kind)
                if error is None:
                    self.refusals.pop(job, None)
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

    def _refused(self, job: str, url: str, error: str) -> None:
        self.refusals.pop(job, None)
        if len(self.refusals) >= MAX_REFUSALS:  # the oldest entry goes (jobs deleted since, mostly)
            del self.refusals[next(iter(self.refusals))]
        self.refusals[job] = {"at": time.time(), "url": redact_url(url), "reason": redact_text(error)}

    def status(self, job: str) -> dict[str, Any]:
        """The job's notification status: its last refused webhook (`[notify] allow`), if any since."""
        return {"webhook_refused": self.refusals.get(job)}

    def _literal_refused(self, url: str) -> str | None:
        """An IP-literal URL host skips the resolver: check it here."""
        try:
            parts = urlsplit(url)
            host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return None  # aiohttp reports the bad URL
        if _ip(host) is None:
            return None
        why = self.destinations.check(host, host, port)
        return None if why is None else f"{REFUSED}: {why}"

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
        except aiohttp.ClientConnectorError as e:
            if isinstance(e.os_error, Refused):
                return str(e.os_error)
            return str(e) or type(e).__name__
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            return str(e) or type(e).__name__
