"""End-to-end harness: the real daemon process (`oceand run`) and the fake Marathon in another process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.common import ROOT, DaemonProcess, free_port

__all__ = ["DaemonProcess", "FakeMarathonProcess", "push", "sample", "wait_for"]


class FakeMarathonProcess:
    def __init__(
        self,
        workdir: Path,
        apps: list[str],
        port: int | None = None,
        deploy_time: float = 0.05,
        task_host: str = "127.0.0.1",
    ) -> None:
        self.workdir = workdir
        self.apps = apps
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.deploy_time = deploy_time
        self.task_host = task_host
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        ready = self.workdir / f"fake-{self.port}.url"
        ready.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.fakes.marathon",
                "--port",
                str(self.port),
                "--ready-file",
                str(ready),
                "--deploy-time",
                str(self.deploy_time),
                "--heartbeat",
                "1",
                "--task-host",
                self.task_host,
                "--apps",
                *self.apps,
            ],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "fake.log", "ab"),  # noqa: SIM115
        )
        wait_for(ready.exists, 20, "fake Marathon ready file")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def control(self, method: str, name: str, body: Any = None) -> Any:
        data = orjson.dumps(body) if body is not None else None
        req = urllib.request.Request(f"{self.url}/_fake/{name}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=10) as r:
            return orjson.loads(r.read())

    def scales(self, app: str | None = None) -> list[int]:
        return [
            r["instances"] for r in self.control("GET", "scale_requests") if app is None or r["app"] == app
        ]

    def app(self, app_id: str) -> dict[str, Any]:
        return self.control("GET", "apps")[app_id]  # type: ignore[no-any-return]


def until_second(t: int) -> int:
    """Wait until the wall-clock second `t` has begun (and 50 ms more), then return `t`: the daemon takes
    no sample stamped more than a period ahead and closes a complete bucket only once its period began,
    so a test pushing 1 s buckets pushes each once its second is here."""
    time.sleep(max(0.0, t + 0.05 - time.time()))
    return t


def wait_for(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def sample(job: str, endpoint: str, ts: int, metric: str = "cpu.idle", value: float = 10.0) -> dict[str, Any]:
    return {
        "endpoint": endpoint,
        "metric": metric,
        "timestamp": ts,
        "step": 1,
        "value": value,
        "counterType": "GAUGE",
        "tags": f"job={job}",
    }


def push(d: DaemonProcess, items: list[dict[str, Any]]) -> Any:
    return d.request("POST", "/v1/push", items)


def daemon_with_auth(workdir: Path, extra_toml: str = "") -> tuple[DaemonProcess, str]:
    """A started daemon process with `[auth] enabled` and the secret of its admin token `root`, made on the
    host with `oceand token create` before the daemon started, as an operator does (PRODUCT §10)."""
    daemon = DaemonProcess(extra_toml, workdir=workdir, start=False)
    daemon.conf.write_text(daemon.conf.read_text().replace("[auth]\n", "[auth]\nenabled = true\n", 1))
    create = ("token", "create", "--config", str(daemon.conf), "--name", "root", "--scope", "admin")
    made = subprocess.run(
        [sys.executable, "-m", "oceand", *create],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    daemon.start()
    return daemon, made.stdout.strip().splitlines()[-1]
