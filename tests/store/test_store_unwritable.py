"""A store whose writes start to fail: never a crash, /readyz 503 with the reason, one log line per
transition, a metric, and automatic recovery.

How writes are made to fail, with real I/O: SQLite: `chattr +i` on the database and its side files
(the immutable flag makes every write, truncate and page fault for write fail with EPERM, for root
too; it is what an operator or a filesystem remounted read-only does to the daemon). The test skips
where chattr does not work (not root, or a filesystem without the flag). MySQL: another session holds
`LOCK TABLES ... READ` on the store's tables (a backup tool's lock): reads go on, every write waits and
times out; `UNLOCK TABLES` ends it. It is per database, so other tests on the server are not touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.common import DaemonProcess
from tests.e2e.harness import wait_for
from tests.store.test_store_contract import EXAMPLE_DOC


def _chattr(flag: str, paths: list[Path]) -> bool:
    if not paths:
        return True
    done = subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[list[Path]]:
    """Paths made immutable by the test (list.extend them via `_freeze`); all released at the end."""
    probe = tmp_path / "chattr-probe"
    probe.write_text("x")
    if not _chattr("+i", [probe]):
        pytest.skip("chattr +i does not work here (needs root and a filesystem with the immutable flag)")
    _chattr("-i", [probe])
    frozen: list[Path] = []
    yield frozen
    _chattr("-i", [p for p in frozen if p.exists()])


def _freeze(frozen: list[Path], db: Path) -> list[Path]:
    os.sync()  # the kernel's writeback, which comes within 30 s anyway: shared pages become clean
    # the database and (in WAL mode) its shared-memory index; a WAL file could still grow
    paths = [p for p in (db, db.with_name(db.name + "-shm")) if p.is_file()]
    assert _chattr("+i", paths)
    frozen.extend(paths)
    return paths


def _thaw(paths: list[Path]) -> None:
    assert _chattr("-i", paths)


def _call(d: DaemonProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = orjson.dumps(body) if body is not None else None
    req = urllib.request.Request(d.url + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            out = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        out, status = e.read(), e.code
    except OSError as e:  # no answer at all (the daemon died)
        return 0, repr(e)
    try:
        return status, orjson.loads(out) if out else None
    except orjson.JSONDecodeError:
        return status, out.decode()


def _doc(name: str, max_instances: int = 5) -> dict[str, Any]:
    return {**EXAMPLE_DOC, "job": name, "max_instances": max_instances}


def _events(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text().splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):
            out.append(orjson.loads(line))
    return out


def test_sqlite_daemon_whose_files_become_immutable_stays_up_not_ready_and_recovers(
    tmp_path: Path, immutable: list[Path]
) -> None:
    d = DaemonProcess(workdir=tmp_path, start=False)
    d.conf.write_text(d.conf.read_text().replace("[store]\n", "[store]\nprobe_interval = 0.2\n"))
    d.start()
    try:
        assert _call(d, "PUT", "/api/v1/jobs/web", _doc("web"))[0] in (200, 201)
        frozen = _freeze(immutable, tmp_path / "oceand.db")
        statuses = [_call(d, "PUT", "/api/v1/jobs/web", _doc("web", 5 + i))[0] for i in range(1, 30)]
        assert d.proc is not None and d.proc.poll() is None, f"daemon died: {d.proc.returncode}"
        assert set(statuses) == {503}, statuses
        status, body = _call(d, "GET", "/readyz")
        assert status == 503 and body["status"] == "not ready", body
        assert body["store_writable"] is False and "store writes fail" in body["reason"], body
        _, metrics = _call(d, "GET", "/metrics")
        assert "oceand_store_writable 0.0" in metrics
        failures = re.search(r"^oceand_store_write_failures_total (\S+)$", metrics, re.M)
        assert failures is not None and float(failures.group(1)) >= len(statuses), metrics
        _thaw(frozen)
        wait_for(lambda: _call(d, "GET", "/readyz")[0] == 200, 10, "/readyz 200 after the files are writable")
        status, body = _call(d, "PUT", "/api/v1/jobs/web", _doc("web", 9))
        assert status == 200 and body["job"]["max_instances"] == 9, body
    finally:
        rc = d.stop()
    assert rc == 0, d.log.read_text()[-3000:]
    events = [e.get("event") for e in _events(d.log)]
    assert events.count("store_unwritable") == 1, d.log.read_text()[-3000:]
    assert events.count("store_writable") == 1
