"""The daemon process's runtime contract (issue 2): systemd notify, SIGHUP reload (a bad config is
rejected and the old one keeps running), SIGTERM drains and exits 0, bad configs exit non-zero."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.e2e.harness import ROOT, DaemonProcess, wait_for

pytestmark = pytest.mark.slow


def test_notify_reload_and_term(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(10)
    d = DaemonProcess(workdir=tmp_path, env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "2000000"})
    try:
        while not (first := sock.recv(4096)).startswith(b"READY=1"):
            assert first.startswith(b"EXTEND_TIMEOUT_USEC="), first  # the start's progress
        assert b"WATCHDOG=1" in sock.recv(4096)  # pinged at half the 2 s interval
        good = d.conf.read_text()
        assert d.request("GET", "/api/v1/jobs") == {"jobs": []}

        d.conf.write_text(good + "\ndry_run = tru\n")  # a TOML error
        assert d.proc is not None
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload rejected" in d.log.read_text(), 10, "the bad reload to be rejected")
        assert d.request("GET", "/readyz")["status"] == "ready"  # the old config keeps running

        d.conf.write_text("dry_run = true\n" + good)
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config reloaded" in d.log.read_text(), 10, "the good reload")
        assert "dry_run" in d.log.read_text()

        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(30) == 0
        seen = b""
        while b"STOPPING=1" not in seen:
            seen += sock.recv(4096)
    finally:
        d.close()
        sock.close()


def test_a_long_start_asks_systemd_for_more_time_as_it_goes(tmp_path: Path) -> None:
    """1,200 job files: before READY=1 the daemon tells systemd what it is doing, each message with
    EXTEND_TIMEOUT_USEC (30 s from then): reading the files, each batch of 500 stored, each 1,000 jobs
    loaded. A start of 100,000 jobs outlasts TimeoutStartSec=60 that way, as long as it goes on."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    for i in range(1200):
        doc = {"job": f"job.j{i:04d}", "target": {"cluster": "none", "app": f"/a{i}"}, "rules": []}
        (jobs / f"j{i:04d}.json").write_bytes(orjson.dumps(doc))
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(30)
    d = DaemonProcess('[jobs]\ndir = "jobs"\n', workdir=tmp_path, env={"NOTIFY_SOCKET": str(sock_path)})
    try:
        messages = []
        while not (m := sock.recv(4096).decode().split("\n"))[0].startswith("READY=1"):
            messages.append(m)
        assert all(m[0] == "EXTEND_TIMEOUT_USEC=30000000" for m in messages), messages
        assert [m[1] for m in messages] == [
            "STATUS=storing job files",
            "STATUS=read 1200 job files",
            "STATUS=stored 500 of 1200 changed job files",
            "STATUS=stored 1000 of 1200 changed job files",
            "STATUS=stored 1200 of 1200 changed job files",
            "STATUS=loading jobs",
            "STATUS=loaded 1000 of 1200 jobs",
        ]
        assert m[1].endswith("1200 jobs")  # READY=1's own status
    finally:
        d.close()
        sock.close()


# `run` and `check-config` load the config through the same function (oceand/cli.py _check): `run` is
# tried on one config error of each layer (the TOML parser, the store URL's own parser), check-config on
# every case. (Each is a process start: 1-1.5 s under load.)
BOTH = ("check-config", "run")


@pytest.mark.parametrize(
    ("toml", "needle", "commands"),
    [
        pytest.param(
            '[server]\nlisen = "127.0.0.1:1"\n',
            "server.lisen: unknown key (did you mean 'listen'?)",
            ("check-config",),
            id="typo",
        ),
        pytest.param('[store]\nurl = "postgres://x"\n', "store.url", BOTH, id="unsupported store"),
        pytest.param("timezone = 'Mars/Base'\n", "timezone", ("check-config",), id="bad time zone"),
        pytest.param("dry_run = 1x\n[server]\n", "line 1", BOTH, id="TOML syntax"),
    ],
)
def test_bad_config_exits_non_zero_naming_file_and_key(
    tmp_path: Path, toml: str, needle: str, commands: tuple[str, ...]
) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text(toml)
    for cmd in commands:
        p = subprocess.run(
            [sys.executable, "-m", "oceand", cmd, "--config", str(conf)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ),
        )
        assert p.returncode == 2, p.stderr
        assert str(conf) in p.stderr and needle in p.stderr, p.stderr


def test_check_config_accepts_the_example(tmp_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "oceand", "check-config", "--config", "conf/oceand.toml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0 and "OK" in p.stdout, p.stderr
