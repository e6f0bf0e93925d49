"""L7 balancer request rates for the metric `alb.qps` (PRODUCT §2.3), read through the balancer adapter's
own channels (the HAProxy runtime API client of actuators.lb.haproxy; nginx's stub_status).

- `HaproxyStats`: `show stat <backend> 2 -1` over the runtime socket (CSV); the BACKEND row's
  `req_tot` (HTTP mode; `stot`, sessions, in TCP mode).
- `NginxStubStatus`: GET a `stub_status` location; its third line holds the total `requests`.

Both turn a total into a rate between two samples: `sample(now)` returns requests per second since the
previous sample, or None on the first sample, on an error (see `last_error`), when `now` did not
advance, or when the counter went backwards (a balancer restart: the next sample starts again).
"""

from __future__ import annotations

import csv
from pathlib import Path

import aiohttp

from actuators.lb import LBError
from actuators.lb.haproxy import haproxy_command


class _Rate:
    def __init__(self) -> None:
        self._prev: tuple[float, float] | None = None
        self.last_error: str | None = None

    def update(self, now: float, total: float) -> float | None:
        prev, self._prev = self._prev, (now, total)
        self.last_error = None
        if prev is None or now <= prev[0] or total < prev[1]:
            return None
        return (total - prev[1]) / (now - prev[0])

    def fail(self, message: str) -> None:
        self.last_error = message


def parse_show_stat(text: str, backend: str) -> float:
    """The BACKEND row's req_tot (or stot) from `show stat` CSV. ValueError if it is not there."""
    lines = text.strip().splitlines()
    if not lines or not lines[0].startswith("# "):
        raise ValueError(f"show stat: {text.strip()[:200] or 'empty reply'}")
    rows = csv.DictReader([lines[0][2:], *lines[1:]])
    for row in rows:
        if row.get("pxname") == backend and row.get("svname") == "BACKEND":
            value = row.get("req_tot") or row.get("stot")
            if not value:
                raise ValueError(f"show stat: backend {backend} has neither req_tot nor stot")
            return float(value)
    raise ValueError(f"show stat: no BACKEND row for {backend!r}")


class HaproxyStats:
    def __init__(self, socket_path: Path | str, backend: str, *, timeout: float = 2.0):
        self.socket_path = Path(socket_path)
        self.backend = backend
        self.timeout = timeout
        self._rate = _Rate()

    @property
    def last_error(self) -> str | None:
        return self._rate.last_error

    async def sample(self, now: float) -> float | None:
        try:
            text = await haproxy_command(self.socket_path, f"show stat {self.backend} 2 -1", self.timeout)
            total = parse_show_stat(text, self.backend)
        except (LBError, ValueError) as e:
            self._rate.fail(str(e))
            return None
        return self._rate.update(now, total)


def parse_stub_status(text: str) -> float:
    """nginx stub_status → total requests. ValueError if the text is not a stub_status page."""
    lines = text.strip().splitlines()
    if len(lines) < 3 or not lines[0].startswith("Active connections:"):
        raise ValueError(f"not an nginx stub_status page: {text.strip()[:200]!r}")
    fields = lines[2].split()
    if len(fields) != 3 or not all(f.isdigit() for f in fields):
        raise ValueError(f"stub_status: cannot read 'accepts handled requests' from {lines[2]!r}")
    return float(fields[2])


class NginxStubStatus:
    def __init__(self, url: str, *, session: aiohttp.ClientSession | None = None, timeout: float = 2.0):
        self.url = url
        self.timeout = timeout
        self._session = session
        self._own_session = session is None
        self._rate = _Rate()

    @property
    def last_error(self) -> str | None:
        return self._rate.last_error

    async def sample(self, now: float) -> float | None:
        try:
            if self._session is None:
                self._session = aiohttp.ClientSession()
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with self._session.get(self.url, timeout=timeout) as resp:
                body = await resp.text()
                if resp.status != 200:
                    raise ValueError(f"GET {self.url}: HTTP {resp.status}")
            total = parse_stub_status(body)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            self._rate.fail(f"{self.url}: {e or type(e).__name__}")
            return None
        return self._rate.update(now, total)

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None
