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
    """`oceand run` in a subprocess with a config of its own in a folder (a temp one unless given).

    `start()` again after `stop()` or `kill()` restarts it on the same folder, store and port.
    """

    def __init__(
        self,
        extra_toml: str = "",
        env: dict[str, str] | None = None,
        workdir: Path | None = None,
        start: bool = True,
    ) -> None:
        self._tmp = None if workdir is not None else tempfile.TemporaryDirectory(prefix="oceand-bench-")
        self.dir = Path(workdir) if workdir is not None else Path(self._tmp.name)  # type: ignore[union-attr]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or {}
        self.conf = self.dir / "oceand.toml"
        self.log = self.dir / "daemon.log"
        self.conf.write_text(
            f'[server]\nlisten = "127.0.0.1:{self.port}"\nmax_body = "64MiB"\n'
            # benches create thousands of jobs at once: no admin write rate limit ([auth] write_burst)
            f"[auth]\nwrite_burst = 1000000\n"
            f'[store]\nurl = "sqlite:///oceand.db"\n[log]\nlevel = "info"\n{extra_toml}'
        )
        self.proc: subprocess.Popen[bytes] | None = None
        if start:
            self.start()

    def start(self, timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oceand", "run", "--config", str(self.conf)],
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "ab"),  # noqa: SIM115
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}: " + self.log.read_text()[-3000:])
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("daemon did not become ready: " + self.log.read_text()[-3000:])

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Any:
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=30) as r:
            out = r.read()
            return orjson.loads(out) if out else None

    def cpu(self) -> float:
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)

    def kill(self) -> None:
        """SIGKILL: no drain, no last flush."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit status."""
        rc = 0
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                rc = self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
        elif self.proc is not None:
            rc = self.proc.returncode
        return rc

    def close(self) -> int:
        rc = self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
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
