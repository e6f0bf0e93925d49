"""A real daemon process on 127.0.0.1 (with the fake Marathon process as its cluster `lg`) for oceanctl's
tests, and `Ctl`: oceanctl's command group run in this process against it (its exit codes included)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from bench.common import job_doc as bench_job_doc
from oceand.ctl.main import cli
from tests.e2e.harness import (
    DaemonProcess,
    FakeMarathonProcess,
    daemon_with_auth,
    push,
    sample,
    until_second,
    wait_for,
)

APPS = ["/ocean/web:1", "/ocean/api:2", "/ocean/docs:1", "/ocean/preview:2"]  # preview: docs/cli.md
HISTORY_TOML = '[history]\nflush_interval = "0.2s"\n'  # recorded periods readable at once


@dataclass
class Live:
    daemon: DaemonProcess
    fake: FakeMarathonProcess
    dir: Path


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with tempfile.TemporaryDirectory(prefix="oceanctl-") as tmp:
        d = Path(tmp)
        fake = FakeMarathonProcess(d, APPS)
        daemon = DaemonProcess(
            f'[marathon.lg]\nurls = ["{fake.url}"]\ntimeout = "2s"\n{HISTORY_TOML}', workdir=d
        )
        try:
            yield Live(daemon, fake, d)
        finally:
            daemon.close()
            fake.stop()


class Ctl:
    """`oceanctl ARGS` with OCEAND_URL pointing at the daemon and no config file of the user's."""

    def __init__(self, daemon: DaemonProcess, home: Path) -> None:
        self.daemon = daemon
        self.env = {
            "OCEAND_URL": daemon.url,
            "OCEAND_TOKEN": None,
            "OCEANCTL_CONFIG": None,
            "XDG_CONFIG_HOME": str(home),
            "NO_COLOR": "1",
            "COLUMNS": None,
        }

    def __call__(
        self, *args: str, input: str | None = None, env: dict[str, str | None] | None = None
    ) -> Result:
        runner = CliRunner()
        return runner.invoke(
            cli,
            list(args),
            input=input,
            env={**self.env, **(env or {})},
            prog_name="oceanctl",
            catch_exceptions=False,
        )


@pytest.fixture
def ctl(live: Live, tmp_path: Path) -> Ctl:
    return Ctl(live.daemon, tmp_path)


def job_doc(name: str, app: str = "/ocean/web", **over: Any) -> dict[str, Any]:
    """bench's job document (a cpu threshold rule and a qps target rule), active, at most 5 instances."""
    return bench_job_doc(name, app, **{"mode": "active", "max_instances": 5, **over})


def read_yaml(text: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc


def write_yaml(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@dataclass
class Secured:
    """A daemon with `[auth] enabled` and the secret of its admin token `root`, made on the host with
    `oceand token create` before the daemon started (PRODUCT §10)."""

    daemon: DaemonProcess
    root: str


@pytest.fixture(scope="module")
def secured() -> Iterator[Secured]:
    with tempfile.TemporaryDirectory(prefix="oceanctl-auth-") as tmp:
        daemon, root = daemon_with_auth(Path(tmp))
        try:
            yield Secured(daemon, root)
        finally:
            daemon.close()


def record_history(daemon: DaemonProcess, job: str, cpu_used: list[float], hosts: int = 2) -> int:
    """Push one 1 s bucket of cpu.idle per value (each once its second has begun, as an agent would) to
    `job` (a job with `period: 1s`), and wait until the daemon has recorded every one in its history;
    returns the first bucket's time."""
    start = int(time.time()) + 1
    for k, used in enumerate(cpu_used):
        ts = until_second(start + k)
        push(daemon, [sample(job, f"h{i}", ts, value=100 - used) for i in range(hosts)])
    last = start + len(cpu_used) - 1

    def recorded() -> bool:
        rows = daemon.request("GET", f"/api/v1/jobs/{job}/history?since={start}&until={last + 1}")["rows"]
        return len([r for r in rows if r["values"]]) == len(cpu_used)

    wait_for(recorded, 10, f"{len(cpu_used)} recorded periods of {job}")
    return start
