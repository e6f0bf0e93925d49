"""The shipped examples: conf/oceand.toml, conf/jobs/*, conf/oceand.service."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from oceand.config import load_config
from oceand.jobfiles import load_job_files

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"


def test_example_config_runs_without_external_services() -> None:
    cfg = load_config(CONF / "oceand.toml")
    assert cfg.dry_run is False
    assert (cfg.server.host, cfg.server.port) == ("127.0.0.1", 8080)
    assert cfg.store.kind == "sqlite"
    assert cfg.store.sqlite_path == str(REPO / "var" / "oceand.db")
    assert cfg.marathon == {}  # so every job is dry-run
    assert cfg.jobs_dir == CONF / "jobs"


def test_example_job_files_load() -> None:
    loaded = load_job_files(CONF / "jobs")
    names = [p.name for p, _ in loaded]
    assert "example.json" in names
    assert len({d.job for _, d in loaded}) == len(loaded)


def test_example_job_is_the_product_example_in_dry_run() -> None:
    (doc,) = [d for p, d in load_job_files(CONF / "jobs") if p.name == "example.json"]
    assert doc.mode == "dry-run"
    assert [r.type for r in doc.rules] == ["threshold", "target", "alarm", "schedule", "schedule"]
    assert [lb.type for lb in doc.lb] == ["lvs", "nginx"]
    assert doc.notify.group == "sre_ocean" and doc.notify.webhook is None
    raw = orjson.loads((CONF / "jobs" / "example.json").read_bytes())
    assert "webhook" not in raw["notify"]


UNIT = CONF / "oceand.service"


def unit_settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param("Type", "notify", id="Type=notify"),
        pytest.param("NotifyAccess", "main", id="NotifyAccess"),
        pytest.param(
            "ExecStart", "/opt/oceand/bin/oceand run --config /etc/oceand/oceand.toml", id="ExecStart"
        ),
        pytest.param("ExecReload", "/bin/kill -HUP $MAINPID", id="ExecReload"),
        pytest.param("WatchdogSec", "30", id="WatchdogSec"),
        pytest.param("Restart", "on-failure", id="Restart"),
        pytest.param("KillSignal", "SIGTERM", id="KillSignal"),
        pytest.param("TimeoutStopSec", "60", id="TimeoutStopSec"),
        pytest.param("User", "oceand", id="dedicated user"),
        pytest.param("NoNewPrivileges", "yes", id="NoNewPrivileges"),
        pytest.param("ProtectSystem", "strict", id="ProtectSystem"),
        pytest.param("StateDirectory", "oceand", id="StateDirectory"),
    ],
)
def test_unit_settings(key: str, value: str) -> None:
    assert unit_settings().get(key) == [value]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists; point it at one that does, change nothing else.
    text = UNIT.read_text()
    assert text.count("/opt/oceand/bin/oceand") == 1
    copy = tmp_path / "oceand.service"
    copy.write_text(text.replace("/opt/oceand/bin/oceand", sys.executable))
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60
    )
    complaints = [line for line in (proc.stdout + proc.stderr).splitlines() if "oceand.service" in line]
    assert proc.returncode == 0 and complaints == [], proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_verify_catches_a_bad_unit(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key is reported."""
    copy = tmp_path / "oceand.service"
    text = UNIT.read_text().replace("/opt/oceand/bin/oceand", sys.executable)
    copy.write_text(re.sub(r"^WatchdogSec=", "WatchdogSek=", text, flags=re.M))
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert "WatchdogSek" in proc.stdout + proc.stderr
