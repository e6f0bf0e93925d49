"""End to end (PRODUCT §9): the real daemon process with `rpc_listen` and `tsdb_listen`, the fake Marathon
process; what a falcon-agent / transfer sends makes the job scale.

The samples are agent-shaped: falcon-agent's own `cpu.idle`, endpoint = the task's host, no tags; the job's
rule selects them by endpoint (`"selector": {"endpoint": "web-*"}`), or by the job's Marathon tasks
(`"selector": {"tasks": true}`: the fake gives each task its own host). Timestamps are a few seconds ahead so
every bucket closes as soon as both running tasks reported (as in tests/e2e/test_marathon_loop.py).
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.common import free_port
from tests.e2e.harness import DaemonProcess, FakeMarathonProcess, until_second, wait_for
from tests.e2e.test_marathon_loop import APP, JOB, Loop, job_doc
from tests.fakes.transfer import RpcClient, TsdbClient, agent_item

pytestmark = pytest.mark.slow


class Falcon:
    def __init__(
        self, tmp: Path, selector: dict[str, Any] | None = None, task_host: str = "127.0.0.1"
    ) -> None:
        self.rpc_port, self.tsdb_port = free_port(), free_port()
        ingest = f'[ingest]\nrpc_listen = "127.0.0.1:{self.rpc_port}"\ntsdb_listen = "127.0.0.1:{self.tsdb_port}"\n'
        self.fake = FakeMarathonProcess(tmp, [f"{APP}:2"], task_host=task_host)
        self.daemon = DaemonProcess(Loop.toml([self.fake.url]) + ingest, workdir=tmp)
        doc = job_doc()
        doc["rules"][0]["selector"] = selector or {"endpoint": "web-*"}
        self.daemon.request("POST", "/api/v1/jobs", doc)
        wait_for(lambda: self.running() == 2, 10, "the daemon to see 2 running tasks")
        self.t = int(time.time())  # next bucket to fill

    def next_bucket(self) -> int:
        """The next 1 s bucket, once its second has begun: the daemon takes no sample ahead of its clock
        by more than a period, and closes a complete bucket only once its period has begun."""
        self.t = until_second(max(self.t + 1, int(time.time())))
        return self.t

    def running(self) -> int:
        st = self.daemon.request("GET", f"/api/v1/jobs/{JOB}/status")
        return int(st["running"] or 0) if st["app_known"] else -1

    def close(self) -> None:
        self.daemon.close()
        self.fake.stop()


@pytest.fixture
def falcon(tmp_path: Path) -> Iterator[Falcon]:
    f = Falcon(tmp_path)
    yield f
    f.close()


async def test_agents_over_transfer_rpc_scale_the_job(falcon: Falcon) -> None:
    cl = await RpcClient.connect("127.0.0.1", falcon.rpc_port)
    for _ in range(3):  # cpu.used 90 from both tasks, three buckets
        t = falcon.next_bucket()
        items = [agent_item(f"web-{i}", "cpu.idle", t, 10.0) for i in range(2)]
        items.append(agent_item("db-1", "cpu.idle", t, 10.0))  # another host's: no job takes it
        reply = await cl.update(items)
        assert (reply["Total"], reply["Invalid"]) == (3, 0)
    wait_for(lambda: falcon.fake.scales() == [3], 10, "one PUT instances=3")
    await cl.close()


async def test_transfer_put_lines_scale_the_job(falcon: Falcon) -> None:
    cl = await TsdbClient.connect("127.0.0.1", falcon.tsdb_port)
    for _ in range(3):
        t = falcon.next_bucket()
        await cl.put([(f"web-{i}", "cpu.idle", t, 10.0, {}) for i in range(2)])
    wait_for(lambda: falcon.fake.scales() == [3], 10, "one PUT instances=3")
    with urllib.request.urlopen(falcon.daemon.url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    assert 'oceand_listener_samples_total{listener="tsdb",result="accepted"} 6.0' in text
    await cl.close()


async def test_agent_metrics_of_the_jobs_tasks_scale_it_without_tags(tmp_path: Path) -> None:
    """`"selector": {"tasks": true}`: falcon-agent's own cpu.idle, endpoint = the task's host, no tags."""
    falcon = Falcon(tmp_path, {"tasks": True}, task_host="10.1.0.{n}")
    try:
        hosts = sorted(t["host"] for t in falcon.fake.app(APP)["tasks"])
        assert len(set(hosts)) == 2
        cl = await RpcClient.connect("127.0.0.1", falcon.rpc_port)
        for _ in range(3):  # cpu.used 90 from both tasks' hosts, three buckets
            t = falcon.next_bucket()
            items = [agent_item(h, "cpu.idle", t, 10.0) for h in hosts]
            items.append(agent_item("10.9.9.9", "cpu.idle", t, 10.0))  # a host with no task of the job
            reply = await cl.update(items)
            assert (reply["Total"], reply["Invalid"]) == (3, 0)
        wait_for(lambda: falcon.fake.scales() == [3], 10, "one PUT instances=3")
        await cl.close()
        listed = falcon.daemon.request("GET", "/api/v1/ingest/unmatched")
        assert {s["endpoint"] for s in listed["series"]} == {"10.9.9.9"}
        with urllib.request.urlopen(falcon.daemon.url + "/metrics", timeout=10) as r:
            text = r.read().decode()
        assert 'oceand_listener_samples_total{listener="rpc",result="accepted"} 6.0' in text
        assert 'oceand_listener_samples_total{listener="rpc",result="unmatched"} 3.0' in text
    finally:
        falcon.close()
