"""Balancers follow the job's instances end to end (issue 6): the daemon, a fake Marathon and a real
HAProxy on 127.0.0.1; the ALB request rate from that HAProxy drives a target rule on `alb.qps`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import DaemonFactory
from tests.fakes.marathon import FakeMarathon
from tests.lb.conftest import Haproxy, HttpBackend, haproxy  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow
JOB = "job.alb_web_cop.xiaomi"


@pytest.fixture
async def pool() -> AsyncIterator[list[HttpBackend]]:
    started = [HttpBackend() for _ in range(6)]
    for b in started:
        await b.start()
    yield started
    for b in started:
        await b.stop()


async def until(cond: Any, what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = await cond()
        if v:
            return v
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def test_haproxy_follows_marathon_and_alb_qps_scales_the_job(
    start_daemon: DaemonFactory,
    haproxy: Haproxy,  # noqa: F811
    pool: list[HttpBackend],
) -> None:
    ports = iter(b.port for b in pool)
    fake = FakeMarathon(deploy_time=0.05)
    fake.add_app("/alb/web", 2, port_allocator=lambda: [next(ports)])
    url = await fake.start()
    try:
        _, c = await start_daemon(
            marathon={"lg": {"urls": [url]}},
            lb={
                "haproxy_socket": str(haproxy.socket),
                "haproxy_servers_dir": str(haproxy.servers_file.parent),
                "reconcile_interval": "1s",
            },
        )
        doc = {
            "job": JOB,
            "target": {"cluster": "lg", "app": "/alb/web"},
            "mode": "active",
            "period": 1,
            "min_instances": 2,  # no traffic yet: the target rule would scale in to the minimum
            "max_instances": 4,
            "rules": [{"name": "alb", "type": "target", "metric": "alb.qps", "target": 15}],
            "behavior": {"scale_out": {"cooldown": 0}, "scale_in": {"cooldown": "1h"}},
            "lb": [{"type": "haproxy", "backend": "be_app", "drain": "0.5s"}],
        }
        assert (await c.call("POST", "/api/v1/jobs", doc))[0] == 201

        async def active_backends() -> list[str]:
            _, st = await c.call("GET", f"/api/v1/jobs/{JOB}/status")
            lbs = st["lb"]
            return [b["address"] for b in lbs[0]["backends"] if b["state"] == "active"] if lbs else []

        got = await until(lambda: _count(active_backends, 2), "HAProxy to serve the 2 tasks")
        assert sorted(got) == sorted(f"127.0.0.1:{b.port}" for b in pool[:2])

        # a bounded load through HAProxy: ~100 requests/s for ~3 s -> ~50/s per instance, target 15
        async with aiohttp.ClientSession() as s:
            for _ in range(300):
                async with s.get(haproxy.url + "/") as r:
                    assert r.status == 200
                    await r.read()
                await asyncio.sleep(0.008)
            assert sum(b.hits for b in pool) >= 300  # every request reached a task (some the new ones)
            scaled = await until(
                lambda: _async(lambda: [n for _, app, n, _ in fake.scale_requests if app == "/alb/web"]),
                "alb.qps to scale the job",
            )
            assert scaled[0] > 2
            want = fake.apps["/alb/web"].instances
            await until(lambda: _count(active_backends, want), f"HAProxy to serve {want} tasks")
            hits_before = pool[2].hits
            for _ in range(40):
                async with s.get(haproxy.url + "/") as r:
                    await r.read()
            assert pool[2].hits > hits_before  # the new instance gets traffic through the balancer

        _, decisions = await c.call("GET", f"/api/v1/jobs/{JOB}/decisions")
        d = next(x for x in decisions["decisions"] if x["status"] == "applied")
        assert d["proposals"][0]["rule"] == "alb" and d["reasons"][0] == "ScaleOut"
    finally:
        await fake.stop()


async def _count(fn: Any, n: int) -> Any:
    got = await fn()
    return got if len(got) == n else None


async def _async(fn: Any) -> Any:
    return fn()
