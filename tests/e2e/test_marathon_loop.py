"""The live loop end to end (issue 4): the real daemon process, the fake Marathon process, on 127.0.0.1.

Jobs have a 1 s period and every running instance reports each bucket as soon as its second begins, so
every bucket closes early (the daemon's clock decides what closes: a bucket stamped ahead waits for its
second) and the tests never wait for a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import DaemonProcess, FakeMarathonProcess, push, sample, until_second, wait_for

pytestmark = pytest.mark.slow

JOB = "job.web_service.web_cluster.lg_pdl.ocean_cop.xiaomi"
APP = "/ocean/web"


def job_doc(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "job": JOB,
        "target": {"cluster": "lg", "app": APP},
        "mode": "active",
        "period": 1,
        "min_instances": 1,
        "max_instances": 5,
        "rules": [
            {
                "name": "cpu",
                "type": "threshold",
                "metric": "cpu.used",
                "scale_out": {"above": 80, "consecutive": 3, "step": 1},
                "scale_in": {"below": 60, "consecutive": 3, "step": 1},
            }
        ],
        "behavior": {"scale_out": {"cooldown": 0}, "scale_in": {"cooldown": 0}},
    }
    d.update(over)
    return d


class Loop:
    def __init__(self, tmp: Path, apps: list[str], deploy_time: float = 0.05) -> None:
        self.tmp = tmp
        self.fake = FakeMarathonProcess(tmp, apps, deploy_time=deploy_time)
        self.daemon = DaemonProcess(self.toml([self.fake.url]), workdir=tmp)
        self.t = int(time.time())  # next bucket to fill (or a later one)

    @staticmethod
    def toml(urls: list[str]) -> str:
        quoted = ", ".join(f'"{u}"' for u in urls)
        return f'[marathon.lg]\nurls = [{quoted}]\ntimeout = "1s"\nconnect_timeout = "0.5s"\napply_timeout = "3s"\n'

    def running(self) -> int:
        st = self.daemon.request("GET", f"/api/v1/jobs/{JOB}/status")
        return int(st["running"] or 0) if st["app_known"] else -1

    def buckets(self, n: int, cpu_idle: float, instances: int) -> None:
        """Fill n buckets from `instances` endpoints, each once its second has begun (all running tasks
        report: each closes at once). After a pause the next bucket is the current one."""
        for _ in range(n):
            self.t = until_second(max(self.t, int(time.time())))
            push(self.daemon, [sample(JOB, f"h{i}", self.t, value=cpu_idle) for i in range(instances)])
            self.t += 1

    def last_bucket(self) -> int | None:
        """The start of the job's last evaluated bucket (its cpu rule's), or None before the first."""
        st = self.daemon.request("GET", f"/api/v1/jobs/{JOB}/status")
        return st["rules"]["cpu"].get("last_bucket")  # type: ignore[no-any-return]

    def decisions(self) -> list[dict[str, Any]]:
        return self.daemon.request("GET", f"/api/v1/jobs/{JOB}/decisions")["decisions"]  # type: ignore[no-any-return]

    def close(self) -> None:
        self.daemon.close()
        self.fake.stop()


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loop]:
    lp = Loop(tmp_path, [f"{APP}:2"])
    lp.daemon.request("POST", "/api/v1/jobs", job_doc())
    wait_for(lambda: lp.running() == 2, 10, "the daemon to see 2 running tasks")
    yield lp
    lp.close()


def test_seed_example_scales_out_once_then_back(loop: Loop) -> None:
    loop.buckets(2, cpu_idle=10, instances=2)  # cpu.used 90, two hot buckets: not yet
    wait_for(lambda: loop.last_bucket() == loop.t - 1, 5, "the second bucket evaluated")
    assert loop.decisions() == [] and loop.fake.scales() == []  # a decision is stored before its PUT
    loop.buckets(1, cpu_idle=10, instances=2)  # the third
    wait_for(lambda: loop.fake.scales() == [3], 5, "exactly one PUT instances=3")
    wait_for(lambda: loop.running() == 3, 5, "3 running tasks")
    d = wait_for(lambda: [x for x in loop.decisions() if x["status"] == "applied"], 5, "applied decision")[0]
    assert (d["current"], d["desired"], d["reasons"][0]) == (2, 3, "ScaleOut")
    assert d["result"]["deployment_id"]
    loop.buckets(3, cpu_idle=70, instances=3)  # cpu.used 30: cooling
    wait_for(lambda: loop.fake.scales() == [3, 2], 5, "the scale back to 2")
    assert loop.daemon.stop() == 0  # whatever it would still send, it has sent
    assert loop.fake.scales() == [3, 2]


def test_bounds_hold_at_max(loop: Loop) -> None:
    loop.daemon.request("PUT", f"/api/v1/jobs/{JOB}", job_doc(max_instances=2))
    loop.buckets(3, cpu_idle=5, instances=2)
    d = wait_for(lambda: loop.decisions(), 5, "a decision")[0]
    assert "MaxInstances" in d["reasons"] and d["desired"] == 2
    assert loop.fake.scales() == []


def test_deployment_in_progress_makes_the_next_scale_wait(tmp_path: Path) -> None:
    lp = Loop(tmp_path, [f"{APP}:2"])
    try:
        lp.daemon.request("POST", "/api/v1/jobs", job_doc())
        wait_for(lambda: lp.running() == 2, 10, "2 running tasks")
        lp.fake.control("POST", "deploy_time", {"seconds": None})  # deployments hang until finished
        lp.buckets(3, cpu_idle=10, instances=2)
        wait_for(lambda: lp.fake.scales() == [3], 5, "first scale")
        lp.buckets(3, cpu_idle=10, instances=2)  # hot again while the deployment runs
        wait_for(
            lambda: any("DeploymentInProgress" in x["reasons"] for x in lp.decisions()), 5, "a held decision"
        )
        assert lp.fake.scales() == [3]
        lp.fake.control("POST", "finish_deployments")
        wait_for(lambda: lp.running() == 3, 5, "3 running")
        lp.buckets(1, cpu_idle=10, instances=3)
        wait_for(lambda: lp.fake.scales() == [3, 4], 5, "the held scale, once")
        assert lp.daemon.stop() == 0  # whatever it would still send, it has sent
        assert lp.fake.scales() == [3, 4]
    finally:
        lp.close()


def test_503_twice_then_success_applies_once(loop: Loop) -> None:
    loop.fake.control("POST", "fail_next", {"n": 2, "status": 503, "path_prefix": "/v2/apps"})
    loop.buckets(3, cpu_idle=10, instances=2)
    wait_for(lambda: loop.fake.scales() == [3], 10, "one applied PUT")
    d = wait_for(lambda: [x for x in loop.decisions() if x["status"] == "applied"], 5, "applied")[0]
    assert d["desired"] == 3
    assert loop.daemon.stop() == 0  # whatever it would still send, it has sent
    assert loop.fake.scales() == [3]


def test_marathon_down_then_back_applies_once(tmp_path: Path) -> None:
    lp = Loop(tmp_path, [f"{APP}:2"])
    try:
        lp.daemon.request("POST", "/api/v1/jobs", job_doc())
        wait_for(lambda: lp.running() == 2, 10, "2 running tasks")
        lp.fake.stop()
        lp.buckets(3, cpu_idle=10, instances=2)
        failed = wait_for(
            lambda: [x for x in lp.decisions() if x["outcome"]["reason"] == "ActuationFailed"],
            15,
            "a failed attempt",
        )
        assert failed[0]["status"] == "pending" and failed[0]["result"]["error"]
        lp.fake.start()  # same port; the app is back at 2 instances
        wait_for(lambda: lp.fake.scales() == [3], 40, "the retried PUT")
        wait_for(lambda: [x for x in lp.decisions() if x["status"] == "applied"], 10, "applied")
        assert lp.daemon.stop() == 0  # whatever it would still send, it has sent
        assert lp.fake.scales() == [3]
    finally:
        lp.close()


def test_event_stream_drop_loses_no_task_change(loop: Loop) -> None:
    loop.fake.control("POST", "drop_streams")
    loop.fake.control("POST", "scale", {"app": APP, "instances": 4})  # a change made while reconnecting
    wait_for(lambda: loop.running() == 4, 15, "the daemon to see the 4 tasks after reconnecting")
    clusters = loop.daemon.request("GET", "/api/v1/clusters")["clusters"]
    assert clusters[0]["name"] == "lg" and clusters[0]["state"] == "connected"
    assert clusters[0]["reconnects"] >= 1


def test_kill_9_between_call_and_commit_does_not_scale_twice(loop: Loop) -> None:
    loop.fake.control("POST", "lose_reply_next", {"n": 1, "path_prefix": "/v2/apps"})
    loop.buckets(3, cpu_idle=10, instances=2)
    wait_for(lambda: loop.fake.scales() == [3], 5, "the PUT whose reply is lost")
    # keep the daemon from confirming the count, then kill it while the decision is pending
    loop.fake.control("POST", "fail_next", {"n": 100000, "status": 503, "path_prefix": "/v2/apps"})
    time.sleep(0.3)
    loop.daemon.kill()
    loop.fake.control("POST", "clear_failures")
    loop.daemon.start()
    d = wait_for(
        lambda: [x for x in loop.decisions() if x["status"] == "applied" and x["desired"] == 3], 10, "settled"
    )[0]
    assert "settled" in d["result"] or d["result"].get("already_applied")
    assert loop.daemon.stop() == 0  # whatever it would still send, it has sent
    assert loop.fake.scales() == [3]
