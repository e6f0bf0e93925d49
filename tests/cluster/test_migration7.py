"""Migration 7 (several daemons) on the real MariaDB: its columns and indexes are added only when
information_schema lacks them — portable SQL (MySQL 8 has no `ADD COLUMN IF NOT EXISTS` / `CREATE INDEX
IF NOT EXISTS`), and repeatable after a crash mid-migration (DDL commits statement by statement)."""

from __future__ import annotations

import aiomysql
import pytest

from oceand.store import MySQLStore
from oceand.store.base import MySQLURL
from oceand.store.migrations import MIGRATIONS
from tests.cluster.test_lease import sql

pytestmark = pytest.mark.mysql

MYSQL_ONLY = ("IF NOT EXISTS", "IF EXISTS")
COLUMNS = [
    ("decision_key", "varchar(96)"),
    ("epoch", "bigint(20) unsigned"),
    ("owner", "varchar(64)"),
    ("shard", "int(11)"),
]
INDEXES = [
    ("actuation_attempts_key", 0, "job,decision_key,attempt"),
    ("actuation_attempts_pending", 1, "shard,status,epoch"),
]


async def schema(db: MySQLURL) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    cols = await sql(
        db,
        "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()"
        " AND TABLE_NAME = 'actuation_attempts' AND COLUMN_NAME IN ('shard', 'epoch', 'owner', 'decision_key')"
        " ORDER BY COLUMN_NAME",
    )
    idx = await sql(
        db,
        "SELECT INDEX_NAME, NON_UNIQUE, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) FROM"
        " information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'actuation_attempts'"
        " AND INDEX_NAME LIKE 'actuation_attempts\\_%%' AND INDEX_NAME <> 'actuation_attempts_status'"
        " GROUP BY INDEX_NAME, NON_UNIQUE ORDER BY INDEX_NAME",
    )
    return cols, idx


async def run_migration_7(db: MySQLURL) -> None:
    """Its MySQL statements again, in order, on one session (as the migration runner does)."""
    conn = await aiomysql.connect(host=db.host, port=db.port, user=db.user, db=db.database, autocommit=True)
    try:
        async with conn.cursor() as cur:
            await cur.execute("SET SESSION sql_notes = 0")  # "table already exists", as the runner does
            for statement in MIGRATIONS[6][2]["mysql"]:
                await cur.execute(statement)
    finally:
        conn.close()


def test_migration_7_uses_no_mariadb_only_ddl() -> None:
    version, _, statements = MIGRATIONS[6]
    assert version == 7
    for s in statements["mysql"]:
        if s.startswith("CREATE TABLE IF NOT EXISTS"):  # MySQL syntax too
            continue
        assert not any(word in s for word in MYSQL_ONLY), s


async def test_migration_7_applies_and_reapplies_idempotently(migrated: MySQLURL) -> None:
    cols, idx = await schema(migrated)
    assert [(c, str(t)) for c, t in cols] == COLUMNS
    assert [(n, int(u), str(c)) for n, u, c in idx] == INDEXES
    await run_migration_7(migrated)  # all present: changes nothing, raises nothing
    assert await schema(migrated) == (cols, idx)
    # a crash mid-migration: one column and one index made, the others not
    await sql(migrated, "DROP INDEX actuation_attempts_pending ON actuation_attempts")
    await sql(migrated, "ALTER TABLE actuation_attempts DROP INDEX actuation_attempts_key")
    await sql(migrated, "ALTER TABLE actuation_attempts DROP COLUMN decision_key, DROP COLUMN owner")
    await run_migration_7(migrated)
    assert await schema(migrated) == (cols, idx)
    # and the store opens on it (the schema version says 7: nothing runs again)
    store = MySQLStore(migrated)
    await store.open()
    await store.close()
    assert await sql(migrated, "SELECT MAX(version) FROM schema_version") == [(len(MIGRATIONS),)]
