"""Fixtures for the Marathon tests: the fake on 127.0.0.1 (port 0), a client, a fake clock."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from actuators.marathon import ClusterConfig, MarathonClient
from tests.fakes.marathon import FakeMarathon


def free_port() -> int:
    """A port nothing listens on (bound, then released): connections to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def config(*urls: str, **kw: object) -> ClusterConfig:
    kw.setdefault("timeout", 1.0)
    kw.setdefault("connect_timeout", 0.5)
    return ClusterConfig("test", list(urls), **kw)  # type: ignore[arg-type]


async def until(cond: Callable[[], bool], timeout: float = 3.0) -> None:
    """Yield to the loop until `cond()` holds (the fake and the watcher run on this loop)."""
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.002)


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[int], object] | None = None

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            result = self.on_sleep(len(self.sleeps))
            if asyncio.iscoroutine(result):
                await result
        await asyncio.sleep(0)


@pytest.fixture
async def fake() -> AsyncIterator[FakeMarathon]:
    f = FakeMarathon(heartbeat=0.5, deploy_time=0.01)
    await f.start()
    yield f
    await f.stop()


@pytest.fixture
async def client(fake: FakeMarathon) -> AsyncIterator[MarathonClient]:
    c = MarathonClient(config(fake.url))
    yield c
    await c.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
