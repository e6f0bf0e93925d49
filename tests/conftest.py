"""Fixtures shared by the suites: a daemon in this process on 127.0.0.1 with a temp SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from actuators.marathon import Actuator
from oceand.config import Config, validate_config
from oceand.daemon import Daemon


def make_config(tmp: Path, **over: Any) -> Config:
    data: dict[str, Any] = {"server": {"listen": "127.0.0.1:0"}, "store": {"url": "sqlite:///oceand.db"}}
    data.update(over)
    return validate_config(data, file=str(tmp / "oceand.toml"), base_dir=tmp, path=None)


class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def call(
        self,
        method: str,
        path: str,
        json: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {"headers": dict(headers or {})}
        if json is not None:
            kwargs["json"] = json
        if data is not None:
            kwargs["data"] = data
            kwargs["headers"]["Content-Type"] = "application/json"
        async with self.session.request(method, self.base + path, **kwargs) as r:
            body = await r.read()
            if r.content_type == "application/json" and body:
                import orjson

                return r.status, orjson.loads(body)
            return r.status, body.decode("utf-8", "replace")


DaemonFactory = Callable[..., Any]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Captured output and logs with a lone surrogate (tests/config/test_logs.py logs one on purpose) shown
    escaped: a pytest-xdist worker sends its reports as UTF-8, which a lone surrogate is not, and the run
    would stop with an INTERNALERROR. Only the report's copy changes; what the test saw is its own."""
    sections = []
    for title, content in report.sections:
        try:
            content.encode("utf-8")
        except UnicodeEncodeError:
            content = content.encode("utf-8", "backslashreplace").decode("utf-8")
        sections.append((title, content))
    report.sections = sections


async def stepped(d: Daemon, job: str, timeout: float = 5.0) -> None:
    """Wake the job's worker until it has run a whole step that began after this call (two steps: one
    may have been running already). What a test checks "nothing happened" against, instead of a sleep."""
    rt = d.engine.jobs[job]
    target = rt.steps + 2
    async with asyncio.timeout(timeout):
        while rt.steps < target:
            rt.wake.set()
            await asyncio.sleep(0.002)  # polls the condition; the step itself is the event waited for


@pytest.fixture
async def start_daemon(tmp_path: Path) -> AsyncIterator[DaemonFactory]:
    started: list[Daemon] = []
    sessions: list[aiohttp.ClientSession] = []

    async def factory(
        actuator: Actuator | None = None, clock: Callable[[], float] | None = None, **config: Any
    ) -> tuple[Daemon, Client]:
        kwargs: dict[str, Any] = {"actuator": actuator}
        if clock is not None:
            kwargs["clock"] = clock
        d = Daemon(make_config(tmp_path, **config), **kwargs)
        await d.start()
        started.append(d)
        s = aiohttp.ClientSession()
        sessions.append(s)
        assert d.url is not None
        return d, Client(s, d.url)

    yield factory
    for s in sessions:
        await s.close()
    for d in reversed(started):
        if not d.stop_event.is_set():
            await d.stop()
