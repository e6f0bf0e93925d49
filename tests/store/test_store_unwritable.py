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

import asyncio
import contextlib
import logging
import os
import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomysql
import orjson
import pytest

from actuators.marathon import RecordingActuator
from bench.common import DaemonProcess
from oceand.daemon import Daemon
from oceand.store import MySQLStore, SQLiteStore, StoreError
from oceand.store.base import WriteHealth
from tests.conftest import Client, DaemonFactory
from tests.e2e.harness import wait_for
from tests.engine import test_live_schedules as sched
from tests.engine.test_live_decisions import JOB, T0, Clock, bucket, decisions, seed
from tests.store.conftest import MYSQL_HOST, MYSQL_PORT, MYSQL_USER, Backend
from tests.store.test_store_contract import EXAMPLE_DOC, decision


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


# ---------------------------------------------------------------- the store's own view, both backends


@contextlib.asynccontextmanager
async def _writes_fail(backend: Backend, frozen: list[Path]) -> AsyncIterator[None]:
    """While the block runs, every write of the backend's store fails (see the module doc)."""
    if backend.kind == "sqlite":
        paths = _freeze(frozen, Path(backend.url[len("sqlite:///") :]))
        try:
            yield
        finally:
            _thaw(paths)
        return
    locker = await aiomysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER, db=backend.database)
    try:
        async with locker.cursor() as cur:
            await cur.execute(
                "LOCK TABLES jobs READ, job_state READ, decisions READ, fires READ, schema_version READ"
            )
        yield
        async with locker.cursor() as cur:
            await cur.execute("UNLOCK TABLES")
    finally:
        locker.close()


def _store_events(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [str(getattr(r, "event", "")) for r in caplog.records if r.name == "oceand.store"]


async def test_store_whose_writes_fail_reports_it_once_and_recovers(
    backend: Backend, immutable: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    url = backend.url.replace("timeout=10", "timeout=0.5")  # MySQL: a blocked write gives up soon
    store = (
        SQLiteStore(url, clock=backend.clock)
        if backend.kind == "sqlite"
        else MySQLStore(url, clock=backend.clock)
    )
    counted: list[int] = []
    store.health.on_failure = lambda: counted.append(1)
    await store.open()
    try:
        assert await store.put_job("j", {"v": 1}) == 1
        assert store.health.writable and await store.probe_write() is True
        async with _writes_fail(backend, immutable):
            writes = [
                store.put_job("j", {"v": 2}),
                store.commit("j", {"count": 3}, decision("j")),
                store.claim_fire("j", "r", 1.0, "fired"),
                store.delete_job("j"),
            ]
            for write in writes:
                with pytest.raises(StoreError):
                    await write
            assert await store.probe_write() is False
            assert await store.ping() is True  # the store answers: only its writes tell
            assert store.health.writable is False
            assert len(counted) == store.health.failures == 5
            reason = store.health.reason()
            assert reason is not None and reason.startswith("store writes fail (5 in a row): store ")
        assert await store.probe_write() is True  # the probe alone brings it back
        assert store.health.writable and store.health.reason() is None
        assert await store.put_job("j", {"v": 4}) == 2  # nothing of the failed writes was kept
        assert await store.load_state("j") is None and await store.decisions("j") == []
        assert await backend.sql("SELECT COUNT(*) FROM job_state WHERE job = ''") == [(0,)]  # probe row
    finally:
        await store.close()
    assert _store_events(caplog) == ["store_unwritable", "store_writable"]


async def test_a_refused_row_is_not_a_store_failure(tmp_path: Path) -> None:
    """SQLite: a constraint (here a trigger's RAISE) refuses a row; the store itself works. (MySQL treats
    IntegrityError and DataError the same way; its triggers' SIGNAL is not one of them.)"""
    backend = Backend("sqlite", f"sqlite:///{tmp_path}/oceand.db")
    store = backend.make()
    await store.open()
    try:
        await backend.sql(backend.fail_decision_inserts())
        with pytest.raises(StoreError, match="injected failure"):
            await store.commit("j", {"count": 1}, decision("j"))
        assert store.health.writable and store.health.failures == 0
    finally:
        await store.close()


@pytest.mark.parametrize("journal", ["delete", "wal"])
async def test_sqlite_store_that_cannot_be_written_at_open_refuses_to_open(
    tmp_path: Path, immutable: list[Path], journal: str
) -> None:
    """SQLite would open the file read-only, and that connection would never write again."""
    url = f"sqlite:///{tmp_path}/oceand.db?journal={journal}"
    store = SQLiteStore(url)
    await store.open()
    await store.close()
    paths = _freeze(immutable, tmp_path / "oceand.db")
    again = SQLiteStore(url)
    with pytest.raises(
        StoreError, match="the database cannot be written: attempt to write a readonly database"
    ):
        await again.open()
    assert await again.ping() is False
    _thaw(paths)
    await again.open()
    try:
        assert await again.put_job("j", {}) == 1
    finally:
        await again.close()


# ---------------------------------------------------------------- WriteHealth: logging and counting


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("steps", "events", "writable"),
    [
        pytest.param("ok ok ok", [], True, id="writes succeed: nothing logged"),
        pytest.param("fail", ["store_unwritable"], False, id="first failure: one error"),
        pytest.param(
            "fail fail fail fail", ["store_unwritable"], False, id="repeats within a minute: silent"
        ),
        pytest.param(
            "fail +59 fail +1 fail fail",
            ["store_unwritable", "store_still_unwritable"],
            False,
            id="a reminder a minute after the first line, no more",
        ),
        pytest.param("fail fail ok", ["store_unwritable", "store_writable"], True, id="recovery: one line"),
        pytest.param(
            "fail ok ok fail", ["store_unwritable", "store_writable", "store_unwritable"], False, id="again"
        ),
    ],
)
def test_write_health_logs_transitions_not_writes(
    steps: str, events: list[str], writable: bool, caplog: pytest.LogCaptureFixture
) -> None:
    clock = _Clock()
    health = WriteHealth("sqlite:///x.db", clock=clock)
    for step in steps.split():
        if step.startswith("+"):
            clock.now += float(step)
        elif step == "ok":
            health.ok()
        else:
            health.failed("disk I/O error")
    assert _store_events(caplog) == events
    assert health.writable is writable
    assert health.failures == steps.split().count("fail")


async def test_readyz_follows_store_writes_on_both_backends(
    backend: Backend, immutable: list[Path], start_daemon: DaemonFactory
) -> None:
    url = backend.url.replace("timeout=10", "timeout=0.5")
    daemon, client = await start_daemon(store={"url": url, "probe_interval": 0.1})
    assert (await client.call("GET", "/readyz"))[0] == 200
    async with _writes_fail(backend, immutable):
        status, body = await client.call("PUT", "/api/v1/jobs/web", _doc("web"))
        assert status == 503 and body["error"]["code"] == "store_unavailable", body
        status, body = await client.call("GET", "/readyz")
        assert status == 503, body
        assert body["store"] is True and body["store_writable"] is False  # it answers, it cannot write
        assert body["reason"].startswith("store writes fail"), body
        _, metrics = await client.call("GET", "/metrics")
        assert "oceand_store_writable 0.0" in metrics
    for _ in range(200):  # the probe (every 0.1 s) clears it; bounded wait
        status, body = await client.call("GET", "/readyz")
        if status == 200:
            break
        await asyncio.sleep(0.02)
    assert status == 200 and body["store_writable"] is True and "reason" not in body, body
    assert daemon.store.health.failures >= 1  # the PUT (probes too, when one ran while it failed)


# ---------------------------------------------------------------- a decision the store cannot record


async def _close_bucket(d: Daemon, c: Client, clock: Clock, k: int, cpu_used: float) -> None:
    """`bucket` of the engine tests, with a longer bound: a worker backs off 1 s after a store error."""
    await bucket(d, c, clock, k, cpu_used)
    rt = d.engine.jobs[JOB]
    for _ in range(300):
        if rt.buckets.closed_upto > T0 + 10 * k and d.engine._inflight == 0:
            return
        rt.wake.set()
        await asyncio.sleep(0.01)
    raise AssertionError(f"bucket {k} did not close within 3 s")


async def test_a_decision_the_store_cannot_record_is_not_applied_and_is_taken_again(
    start_daemon: DaemonFactory, immutable: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(T0)
    act = RecordingActuator()
    d, c = await start_daemon(actuator=act, clock=clock)
    assert (await c.call("POST", "/api/v1/jobs", seed(mode="active")))[0] == 201
    await _close_bucket(d, c, clock, 0, cpu_used=90)
    await _close_bucket(d, c, clock, 1, cpu_used=90)
    db = Path(d.config.store.sqlite_path or "")
    paths = _freeze(immutable, db)
    await _close_bucket(d, c, clock, 2, cpu_used=90)  # the third hot bucket: ScaleOut, but no commit
    assert act.calls == []  # never applied without its record
    assert not d.store.health.writable
    lost = [r.getMessage() for r in caplog.records if getattr(r, "event", "") == "decision_not_recorded"]
    assert len(lost) == 1 and f"job {JOB}: decision 1 -> 2 (ScaleOut) not recorded, so not applied" in lost[0]
    warned = [getattr(r, "event", "") for r in caplog.records if r.levelno >= logging.WARNING]
    assert warned.count("store_unwritable") == 1 and "store_error" not in warned  # once, not per write
    _thaw(paths)
    await _close_bucket(d, c, clock, 3, cpu_used=90)  # the job kept its streaks: it decides again at once
    assert act.calls == [(JOB, 2)]
    got = await decisions(c)
    assert [(x["current"], x["desired"], x["status"], x["bucket"]) for x in got] == [
        (1, 2, "applied", T0 + 30)
    ]


async def test_a_schedule_fire_the_store_cannot_claim_runs_once_writes_succeed(
    start_daemon: DaemonFactory, immutable: list[Path]
) -> None:
    doc = {**sched.DOC, "rules": [r for r in sched.DOC["rules"] if r["name"] in ("cpu", "morning")]}
    clock = sched.Clock(sched.at("2026-11-27T06:59:00"))
    act = RecordingActuator()
    d, c = await start_daemon(actuator=act, clock=clock)
    assert (await c.call("POST", "/api/v1/jobs", doc))[0] == 201
    act.instances[sched.JOB] = 2
    paths = _freeze(immutable, Path(d.config.store.sqlite_path or ""))
    await sched.settle(d, clock, sched.at("2026-11-27T07:00:01"), lambda: not d.store.health.writable)
    assert act.instances[sched.JOB] == 2  # not run without its claim
    _thaw(paths)
    # within the misfire grace, the fire is still due: it runs once the claim can be written
    await sched.settle(d, clock, sched.at("2026-11-27T07:00:03"), lambda: act.instances[sched.JOB] == 4)
    _, body = await c.call("GET", f"/api/v1/jobs/{sched.JOB}/decisions")
    assert [(f["rule"], f["status"]) for f in body["fires"]] == [("morning", "fired")]
    assert act.calls == [(sched.JOB, 4)]
