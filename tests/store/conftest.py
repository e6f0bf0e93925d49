"""Fixtures for the store suite: one `backend` per store kind, each with a fresh database.

SQLite: a file under the test's tmp_path. MySQL: a database `oceand_test_<pid>_<n>` on the MariaDB at
127.0.0.1:3306 (root, no password), created for the test and dropped after it; if MariaDB is not
reachable the mysql parameters skip with the reason.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomysql
import aiosqlite
import pymysql  # type: ignore[import-untyped]
import pytest

from oceand.store import MySQLStore, SQLiteStore
from oceand.store.migrations import MIGRATIONS, Migration

MYSQL_HOST, MYSQL_PORT, MYSQL_USER = "127.0.0.1", 3306, "root"
_counter = itertools.count(1)


class Clock:
    """A controlled clock: tests set `now`; the store reads it for updated_at / recorded_at."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    kind: str  # "sqlite" | "mysql"
    url: str
    clock: Clock = field(default_factory=Clock)
    database: str = ""  # mysql only

    def make(self, migrations: list[Migration] = MIGRATIONS) -> SQLiteStore | MySQLStore:
        """A new, unopened store on this backend's database (another daemon, when called twice)."""
        if self.kind == "sqlite":
            return SQLiteStore(self.url, clock=self.clock, migrations=migrations)
        return MySQLStore(self.url, clock=self.clock, migrations=migrations)

    async def sql(self, statement: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement on a connection of its own (autocommit); return the rows."""
        if self.kind == "sqlite":
            path = self.url[len("sqlite:///") :]
            async with aiosqlite.connect(path, isolation_level=None) as db:
                return [tuple(r) for r in await db.execute_fetchall(statement, args)]
        conn = await aiomysql.connect(
            host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER, db=self.database, autocommit=True
        )
        try:
            async with conn.cursor() as cur:
                await cur.execute(statement, args or None)
                return [tuple(r) for r in await cur.fetchall()]
        finally:
            conn.close()

    async def reset(self) -> None:
        """Back to an empty database (no tables), as on a fresh machine."""
        if self.kind == "sqlite":
            path = Path(self.url[len("sqlite:///") :])
            for suffix in ("", "-wal", "-shm"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)
            return
        drop_mysql_database(self.database)
        create_mysql_database(self.database)

    def fail_decision_inserts(self) -> str:
        """DDL for a trigger that makes every decision insert fail (for the atomicity test)."""
        if self.kind == "sqlite":
            return (
                "CREATE TRIGGER fail_decision BEFORE INSERT ON decisions"
                " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
            )
        return (
            "CREATE TRIGGER fail_decision BEFORE INSERT ON decisions FOR EACH ROW"
            " SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'injected failure'"
        )


def _mysql_admin() -> Any:
    return pymysql.connect(
        host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER, autocommit=True, connect_timeout=3
    )


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[str]:
    """Database name prefix for this session; drops every database it created at the end."""
    try:
        _mysql_admin().close()
    except Exception as e:
        pytest.skip(f"MariaDB not reachable at {MYSQL_HOST}:{MYSQL_PORT}: {e}")
    prefix = f"oceand_test_{os.getpid()}_"
    yield prefix
    admin = _mysql_admin()
    try:
        with admin.cursor() as cur:
            cur.execute("SHOW DATABASES LIKE %s", (prefix.replace("_", "\\_") + "%",))
            for (name,) in cur.fetchall():
                cur.execute(f"DROP DATABASE `{name}`")
    finally:
        admin.close()


def create_mysql_database(name: str) -> None:
    admin = _mysql_admin()
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    finally:
        admin.close()


def drop_mysql_database(name: str) -> None:
    admin = _mysql_admin()
    try:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        admin.close()


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield Backend("sqlite", f"sqlite:///{tmp_path}/state/oceand.db")
        return
    prefix = request.getfixturevalue("mysql_server")
    name = f"{prefix}{next(_counter)}"
    create_mysql_database(name)
    try:
        yield Backend(
            "mysql", f"mysql://{MYSQL_USER}@{MYSQL_HOST}:{MYSQL_PORT}/{name}?timeout=10", database=name
        )
    finally:
        drop_mysql_database(name)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[SQLiteStore | MySQLStore]:
    s = backend.make()
    await s.open()
    try:
        yield s
    finally:
        await s.close()
