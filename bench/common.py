"""Shared by the benchmarks: start a real daemon process on 127.0.0.1 and read its CPU time."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class DaemonProcess:
    """`oceand run` in a subprocess with a config of its own in a temp folder."""

    def __init__(self, extra_toml: str = "", env: dict[str, str] | None = None) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="oceand-bench-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        conf = Path(self.dir.name) / "oceand.toml"
        conf.write_text(
            f'[server]\nlisten = "127.0.0.1:{self.port}"\nmax_body = "64MiB"\n'
            f'[store]\nurl = "sqlite:///oceand.db"\n[log]\nlevel = "warning"\n{extra_toml}'
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oceand", "run", "--config", str(conf)],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=open(Path(self.dir.name) / "daemon.log", "wb"),  # noqa: SIM115
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("daemon did not become ready: " + (Path(self.dir.name) / "daemon.log").read_text())

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = orjson.dumps(body) if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return orjson.loads(raw) if raw else None

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> int:
        self.proc.terminate()
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.dir.cleanup()
        return rc


def job_doc(name: str, app: str, **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "job": name,
        "target": {"cluster": "lg", "app": app},
        "min_instances": 1,
        "max_instances": 50,
        "rules": [
            {
                "name": "cpu",
                "type": "threshold",
                "metric": "cpu.used",
                "scale_out": {"above": 80, "consecutive": 3, "step": 1},
                "scale_in": {"below": 60, "consecutive": 3, "step": 1},
            },
            {"name": "qps", "type": "target", "metric": "proc.qps", "target": 500},
        ],
    }
    doc.update(over)
    return doc
