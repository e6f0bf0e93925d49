"""A store that is unreachable, broken, locked or loses its connections: StoreError, never a hang."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomysql
import aiosqlite
import pytest

from oceand.store import MySQLStore, SQLiteStore, StoreError, open_store
from tests.store.conftest import MYSQL_HOST, MYSQL_PORT, MYSQL_USER, Backend

# ---------------------------------------------------------------- SQLite


async def test_sqlite_creates_parent_folders_and_uses_a_rollback_journal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "oceand.db"
    store = open_store(f"sqlite:///{path}")
    await store.open()
    try:
        assert await store.put_job("j", {"x": 1}) == 1
        # no shared-memory file to map: an unwritable disk is an I/O error, not SIGBUS
        assert sorted(p.name for p in path.parent.iterdir()) == ["oceand.db"]
    finally:
        await store.close()
    async with aiosqlite.connect(path) as db:
        assert list(await db.execute_fetchall("PRAGMA journal_mode")) == [("delete",)]


async def test_sqlite_wal_journal_when_the_url_asks_for_it(tmp_path: Path) -> None:
    path = tmp_path / "oceand.db"
    store = open_store(f"sqlite:///{path}?journal=wal")
    await store.open()
    try:
        assert await store.put_job("j", {}) == 1
        assert path.with_name("oceand.db-shm").exists()
    finally:
        await store.close()
    async with aiosqlite.connect(path) as db:
        assert list(await db.execute_fetchall("PRAGMA journal_mode")) == [("wal",)]


async def test_sqlite_store_left_in_wal_mode_by_an_older_oceand_is_converted(tmp_path: Path) -> None:
    path = tmp_path / "oceand.db"
    async with aiosqlite.connect(path) as db:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("CREATE TABLE t (x)")
    store = open_store(f"sqlite:///{path}")
    await store.open()
    try:
        assert await store.put_job("j", {}) == 1
        assert not path.with_name("oceand.db-shm").exists()
    finally:
        await store.close()
    async with aiosqlite.connect(path) as db:
        assert list(await db.execute_fetchall("PRAGMA journal_mode")) == [("delete",)]


async def test_sqlite_in_memory_store_works_and_ends_with_close() -> None:
    store = open_store("sqlite://:memory:")
    await store.open()
    assert await store.put_job("j", {}) == 1
    assert await store.claim_fire("j", "r", 5.0, "fired") is True
    await store.close()
    await store.open()  # a new, empty memory database
    try:
        assert await store.list_jobs() == []
    finally:
        await store.close()


def _parent_is_a_file(tmp: Path) -> Path:
    (tmp / "state").write_text("x")
    return tmp / "state" / "oceand.db"


def _not_a_database(tmp: Path) -> Path:
    (tmp / "oceand.db").write_bytes(b"not a database" * 100)
    return tmp / "oceand.db"


def _a_folder(tmp: Path) -> Path:
    (tmp / "oceand.db").mkdir()
    return tmp / "oceand.db"


def test_sqlite_process_that_never_closes_its_store_still_exits(tmp_path: Path) -> None:
    script = (
        "import asyncio\n"
        "from oceand.store import open_store\n"
        "async def main():\n"
        f"    store = open_store('sqlite:///{tmp_path}/o.db')\n"
        "    await store.open()\n"
        "    await store.put_job('j', {})\n"
        "    raise SystemExit(3)  # a crash: no close()\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], timeout=10, capture_output=True)
    assert done.returncode == 3, done.stderr


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        pytest.param(_parent_is_a_file, "cannot open the database", id="parent is a file"),
        pytest.param(_not_a_database, "file is not a database", id="not a database"),
        pytest.param(_a_folder, "cannot open the database", id="path is a folder"),
    ],
)
async def test_sqlite_broken_file_gives_store_error(
    tmp_path: Path, prepare: Callable[[Path], Path], message: str
) -> None:
    path = prepare(tmp_path)
    store = open_store(f"sqlite:///{path}")
    with pytest.raises(StoreError, match=message) as info:
        await store.open()
    assert str(path) in str(info.value)
    assert await store.ping() is False


async def test_sqlite_write_locked_by_another_process_gives_store_error_after_timeout(tmp_path: Path) -> None:
    path = tmp_path / "oceand.db"
    store = open_store(f"sqlite:///{path}?timeout=0.2")
    await store.open()
    try:
        async with aiosqlite.connect(path, isolation_level=None) as other:
            await other.execute("BEGIN IMMEDIATE")
            started = time.monotonic()
            with pytest.raises(StoreError, match="database is locked"):
                await store.put_job("j", {})
            assert 0.2 <= time.monotonic() - started < 3
            assert await store.get_job("j") is None  # reads go on while another process writes
            await other.execute("ROLLBACK")
        assert await store.put_job("j", {}) == 1
    finally:
        await store.close()


# ---------------------------------------------------------------- MySQL without a server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_mysql_refused_connection_gives_store_error_without_password() -> None:
    port = _free_port()
    store = open_store(f"mysql://oceand:s3cr%40t@127.0.0.1:{port}/oceand?connect_timeout=2")
    with pytest.raises(StoreError) as info:
        await store.open()
    message = str(info.value)
    assert message.startswith(f"store mysql://oceand:***@127.0.0.1:{port}/oceand: cannot connect")
    assert "s3cr" not in message
    assert await store.ping() is False


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never says a word (a hung MySQL)."""
    writers: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    for w in writers:
        w.close()
    server.close()
    await server.wait_closed()


async def test_mysql_server_that_never_answers_gives_store_error_not_a_hang(silent_server: int) -> None:
    store = open_store(f"mysql://oceand:pw@127.0.0.1:{silent_server}/oceand?connect_timeout=0.3&timeout=0.3")
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"mysql://oceand:\*\*\*@127\.0\.0\.1"):
        await store.open()
    assert time.monotonic() - started < 3


# ---------------------------------------------------------------- MySQL with the real server


mysql_only = pytest.mark.parametrize(
    "backend", [pytest.param("mysql", marks=pytest.mark.mysql)], indirect=True
)


@mysql_only
@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param(
            f"mysql://{MYSQL_USER}:wr0ng-pw@{MYSQL_HOST}:{MYSQL_PORT}/test",
            "Access denied",
            id="wrong password",
        ),
        pytest.param(
            f"mysql://{MYSQL_USER}@{MYSQL_HOST}:{MYSQL_PORT}/no_such_db_here",
            "Unknown database",
            id="no database",
        ),
    ],
)
async def test_mysql_refused_login_gives_store_error(backend: Backend, url: str, message: str) -> None:
    store = open_store(url)
    with pytest.raises(StoreError, match=message) as info:
        await store.open()
    assert "wr0ng" not in str(info.value)


async def _connect(database: str, autocommit: bool = True) -> Any:
    return await aiomysql.connect(
        host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER, db=database, autocommit=autocommit
    )


async def _store_connections(admin: Any, database: str, running: str | None = None) -> list[int]:
    """Ids of the store's server connections (optionally only those running a statement like `running`)."""
    async with admin.cursor() as cur:
        await cur.execute(
            "SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()"
            + (" AND info LIKE %s" if running else ""),
            (database, running) if running else (database,),
        )
        return [int(r[0]) for r in await cur.fetchall()]


async def _wait_for_statement(admin: Any, database: str, like: str, not_in: set[int]) -> int:
    """The id of a connection that runs `like` (the store blocked on our lock); bounded wait."""
    for _ in range(500):
        ids = set(await _store_connections(admin, database, like)) - not_in
        if ids:
            return ids.pop()
        await asyncio.sleep(0.01)
    raise AssertionError(f"no connection ran {like!r} within 5 s")


async def _lock_job_row(database: str, name: str) -> Any:
    """A connection holding the job's row lock until it commits."""
    locker = await _connect(database, autocommit=False)
    async with locker.cursor() as cur:
        await cur.execute("SELECT version FROM jobs WHERE name = %s FOR UPDATE", (name,))
    return locker


@mysql_only
async def test_mysql_idle_connections_killed_then_next_call_succeeds(backend: Backend) -> None:
    store = backend.make()
    await store.open()
    admin = await _connect(backend.database)
    try:
        await asyncio.gather(*(store.put_job(f"j{i}", {}) for i in range(4)))  # several pooled connections
        killed = await _store_connections(admin, backend.database)
        assert killed
        async with admin.cursor() as cur:
            for conn_id in killed:
                await cur.execute(f"KILL {conn_id}")
        async with asyncio.timeout(5):
            assert [j.name for j in await store.list_jobs()] == ["j0", "j1", "j2", "j3"]
            assert await store.commit("j0", {"count": 1}, None) is None
        assert not set(await _store_connections(admin, backend.database)) & set(killed)
    finally:
        admin.close()
        await store.close()


@mysql_only
async def test_mysql_connection_killed_mid_statement_is_retried_once_without_double_write(
    backend: Backend,
) -> None:
    store = backend.make()
    await store.open()
    admin = await _connect(backend.database)
    assert await store.put_job("j", {"v": 1}) == 1
    locker = await _lock_job_row(backend.database, "j")
    put = asyncio.create_task(store.put_job("j", {"v": 2}))
    try:
        first = await _wait_for_statement(admin, backend.database, "INSERT INTO jobs%", set())
        async with admin.cursor() as cur:
            await cur.execute(f"KILL {first}")
        second = await _wait_for_statement(admin, backend.database, "INSERT INTO jobs%", {first})
        assert second != first  # the retry runs on a fresh connection and waits for the lock again
        await locker.commit()  # release the row
        locker.close()
        async with asyncio.timeout(5):
            assert await put == 2  # written once: the killed attempt committed nothing
        got = await store.get_job("j")
        assert got is not None and (got.version, got.doc) == (2, {"v": 2})
    finally:
        locker.close()  # if the test failed half-way: free the row, then stop the call
        put.cancel()
        await asyncio.gather(put, return_exceptions=True)
        admin.close()
        await store.close()


@mysql_only
async def test_mysql_call_blocked_past_its_timeout_gives_store_error_and_the_store_recovers(
    backend: Backend,
) -> None:
    store = MySQLStore(backend.url.replace("timeout=10", "timeout=0.5"), clock=backend.clock)
    await store.open()
    await store.put_job("j", {})
    locker = await _lock_job_row(backend.database, "j")
    try:
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"no answer within 0\.5s"):
            await store.put_job("j", {"v": 2})
        assert time.monotonic() - started < 3
        assert await store.ping() is True  # reads are not blocked by the row lock
        await locker.commit()
        locker.close()
        assert await store.put_job("j", {"v": 3}) == 2  # the timed-out attempt committed nothing
    finally:
        locker.close()
        await store.close()


def test_store_classes_satisfy_the_protocol() -> None:
    from oceand.store import Store

    stores: list[Store] = [SQLiteStore("sqlite://:memory:"), MySQLStore("mysql://u@h/db")]
    assert [s.url for s in stores] == ["sqlite://:memory:", "mysql://u@h:3306/db"]
