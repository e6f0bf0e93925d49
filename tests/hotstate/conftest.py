"""Fixtures for the Redis hot-state suite (issue 14).

- `shared_redis`: the shared Redis on 127.0.0.1:6379 under a cluster name of this test's own
  (`ha-redis-<pid>-<n>`); its keys are deleted after the test. Skips when that Redis does not answer.
- `own_redis`: a redis-server of the test's own on a free port (`--save '' --appendonly no`, DEBUG allowed
  from localhost), which the test may stop and start again on the same port (RedisServer: AOF on when
  asked, for the chaos rig's redis_restart_aof).
- `wait_for`: poll a condition until it holds (fails after a deadline); waits for something to happen,
  never for nothing to happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

SHARED_URL = "redis://127.0.0.1:6379/0"
_counter = itertools.count(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server process on 127.0.0.1:`port` that the test can stop and start again."""

    def __init__(self, workdir: Path, appendonly: bool = False) -> None:
        self.port = _free_port()
        self.workdir = workdir
        self.appendonly = appendonly  # AOF in workdir: what a clean `shutdown()` leaves is loaded at start
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.proc is None
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--dir",
                str(self.workdir),
                "--enable-debug-command",
                "local",  # DEBUG SLEEP: a stalled Redis
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis(port=self.port, socket_timeout=0.5).ping():
                    return
            except redis.ConnectionError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start within 10 s"
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill it (SIGKILL: nothing is saved, every client connection drops)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def shutdown(self) -> None:
        """SHUTDOWN (with AOF on, the file is fsynced first), and wait for the process to exit."""
        assert self.proc is not None
        with contextlib.suppress(redis.ConnectionError):  # the server closes the connection, no reply
            self.client().shutdown()
        self.proc.wait(30)
        self.proc = None

    def client(self, timeout: float = 1.0) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=timeout)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def cluster_name() -> str:
    return f"ha-redis-{os.getpid()}-{next(_counter)}"


@pytest.fixture
def shared_redis(cluster_name: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(SHARED_URL, socket_timeout=1)
    try:
        client.ping()
    except redis.ConnectionError as e:
        pytest.skip(f"Redis on 127.0.0.1:6379 does not answer: {e}")
    yield client
    keys = list(client.scan_iter(match=f"oceand:{{{cluster_name}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    async def wait(cond: Callable[[], bool], what: str, within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while not cond():
            assert time.monotonic() < deadline, f"not within {within} s: {what}"
            await asyncio.sleep(0.02)

    return wait


@pytest.fixture
async def closing() -> AsyncIterator[list[object]]:
    """HotState objects to close after the test."""
    opened: list[object] = []
    yield opened
    for h in opened:
        await h.close()  # type: ignore[attr-defined]
