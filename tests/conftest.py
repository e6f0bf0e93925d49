"""Fixtures shared by the suites: a daemon in this process on 127.0.0.1 with a temp SQLite store."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _pytest.nodeid import NodeId

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


# Under pytest-xdist (scripts/test: `-n 2 --dist loadfile`) these files make one work unit, run one after
# another on one worker as without xdist, never beside each other: they create, migrate and drop databases
# on the shared MariaDB at 127.0.0.1:3306, or run daemons whose lease and store timeouts (0.25 s in
# tests/ha) are a fraction of a second against it. Beside one another, a survivor of tests/ha's gc_pause
# once failed to take a lease within 8 s.
SHARED_MARIADB = (
    "tests/store/",
    "tests/cluster/",
    "tests/ha/",
    "tests/e2e/test_actuation_chaos.py",
    "tests/e2e/test_cluster_failover.py",
    "tests/cli/test_oceanctl_cluster.py",
    "tests/engine/test_actuation_state.py",
)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadfile`, with the SHARED_MARIADB files as one file."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class Scheduling(LoadFileScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "the shared MariaDB" if path.startswith(SHARED_MARIADB) else path

    return Scheduling(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test gets a node id of its own. schemathesis names its tests per API operation
    (`test_api[GET /healthz]`) but gives them all the function's node id (`...::test_api`, 32 times);
    pytest-xdist schedules by node id and ran only the first of them. A node id still shared after this
    is an error, not a test silently left out."""
    shared = Counter(item.nodeid for item in items)
    for item in items:
        if shared[item.nodeid] > 1 and item.name != item.nodeid.rpartition("::")[2]:
            item._id = NodeId.parse(f"{item.nodeid.rpartition('::')[0]}::{item.name}")  # pytest 9.2's id
    twice = sorted(n for n, k in Counter(item.nodeid for item in items).items() if k > 1)
    if twice:
        raise pytest.UsageError(f"tests sharing a node id (pytest-xdist would run one of each): {twice}")


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
