"""A real daemon process on 127.0.0.1 (with the fake Marathon process as its cluster `lg`) for oceanctl's
tests, and `Ctl`: oceanctl's command group run in this process against it (its exit codes included)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from bench.common import job_doc as bench_job_doc
from oceand.ctl.main import cli
from tests.e2e.harness import DaemonProcess, FakeMarathonProcess

APPS = ["/ocean/web:1", "/ocean/api:2", "/ocean/docs:1"]


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
        daemon = DaemonProcess(f'[marathon.lg]\nurls = ["{fake.url}"]\ntimeout = "2s"\n', workdir=d)
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


def write_yaml(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
