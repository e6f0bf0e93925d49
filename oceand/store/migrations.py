"""The versioned schema: one list of migrations, each with its SQL per dialect.

A store applies, in order, every migration whose version is above the highest one recorded in its
`schema_version` table, and records each as it goes. Both backends serialise this between daemons that
start at once (SQLite: `BEGIN IMMEDIATE`; MySQL: `GET_LOCK`), so re-running is a no-op. A store whose
recorded version is higher than the last one listed here belongs to a newer oceand: opening it fails
rather than writing rows an older schema does not describe.

Append new migrations at the end with the next version; never edit one that has shipped. MySQL DDL
commits implicitly, so its statements must be safe to repeat (`IF NOT EXISTS`) in case a daemon dies
half-way through a migration.

Tables (both dialects):
- `jobs(name PK, doc JSON text, version, updated_at)`
- `job_state(job PK, state JSON text, updated_at)`
- `decisions(id auto PK, job, at, status, body JSON text, result JSON text)`, indexed (job, at) and
  (status, at); `at` is a double so that it round-trips exactly. Since migration 5 a row is never
  updated: `status` is the outcome when the decision was made and `result` is `{}`; rows from before
  hold the status and result they were last updated with (read as their outcome when no
  `actuation_outcomes` row exists).
- `actuation_outcomes(decision_id PK, job, status, outcome JSON text, updated_at)`, indexed (status):
  what became of each decision (`ActuationOutcome`: applied / failed / superseded / pending..., Marathon's
  deployment id and version, latency, error, attempts), inserted with the decision in one transaction
  and replaced as its apply goes on.
- `fires(job, rule, at, status, recorded_at)`, primary key (job, rule, at): at most one row per fire.
- `actuation_attempts(decision_id, attempt, job, to_count, sent_at, deadline, baseline, status, detail
  JSON text, updated_at)`, primary key (decision_id, attempt), indexed by status: one row per write (PUT) of a
  decision, inserted `pending` before the write is sent (docs/operations.md "Commit order"). It is the
  single-daemon form of HA.md's `actuation_intent`: `sent_at` is its `created_at`, the statuses are
  the same (pending, applied, failed, abandoned), `detail` holds deployment id, version and error.
- `tokens(name PK, record JSON text, updated_at)`: access tokens (oceand.auth; hashes, never secrets).
- `audit(id auto PK, at, actor, source, action, job NULL, before_version NULL, after_version NULL,
  detail JSON text)`, indexed (job, at) and (at).
- `history(job, t, step, vals JSON text, ready, running, desired, decision NULL)`, primary key (job, t),
  indexed (step, t): one row per evaluated bucket (`step` 0) or per 1-minute roll-up (`step` 60) of a
  job (oceand/history.py).
- `templates(name PK, doc JSON text, version, updated_at)`: shared job-document fields (oceand/templates.py).
- `job_templates(job PK, template, own JSON text, updated_at)`, indexed by template: the template a job
  names and the job's own fields; `jobs.doc` holds the job's effective document (what the engine runs).
- `cluster_meta(name PK, shards, created_at)`, `daemon(instance_id PK, stable_id, addr, started_at,
  expires_at)`, `shard_lease(shard PK, owner NULL, epoch, expires_at)`: several daemons (issue 14,
  oceand/cluster/lease.py; rows written on the database clock, `NOW(6)`). `actuation_attempts` gains
  `shard, epoch, owner, decision_key` (NULL for a single daemon) and a unique (job, decision_key,
  attempt): in cluster mode the attempt is HA.md's fenced intent. Its MySQL columns and indexes are
  added only when information_schema lacks them (a prepared statement; repeatable after a crash
  mid-migration, and MySQL 8 syntax as well as MariaDB's). SQLite gets the same
  tables, unused: the cluster layer is refused with a SQLite store at config time.
- `job_changes(seq auto PK, job, at)`, indexed (at): one row per job write or delete, in its
  transaction (oceand/store/jobchanges.py); the other daemons of a cluster poll it.
"""

from __future__ import annotations

from typing import Literal

Dialect = Literal["sqlite", "mysql"]
DIALECTS: tuple[Dialect, ...] = ("sqlite", "mysql")
Migration = tuple[int, str, dict[Dialect, list[str]]]


def _mysql_if(absent: str, ddl: str) -> list[str]:
    """Run `ddl` only when the query `absent` (a COUNT over information_schema) is 0, as plain statements
    on the migration's one session (a prepared statement): repeatable after a crash mid-migration, on
    MySQL 8 as on MariaDB (MariaDB's `ADD COLUMN IF NOT EXISTS` / `CREATE INDEX IF NOT EXISTS` are not
    MySQL syntax). `ddl` holds no quote."""
    assert "'" not in ddl
    return [
        f"SET @oceand_ddl = (SELECT IF(({absent}) = 0, '{ddl}', 'DO 0'))",
        "PREPARE oceand_ddl FROM @oceand_ddl",
        "EXECUTE oceand_ddl",
        "DEALLOCATE PREPARE oceand_ddl",
    ]


def _mysql_add_column(table: str, column: str, definition: str) -> list[str]:
    return _mysql_if(
        "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()"
        f" AND TABLE_NAME = '{table}' AND COLUMN_NAME = '{column}'",
        f"ALTER TABLE {table} ADD COLUMN {column} {definition}",
    )


def _mysql_add_index(table: str, name: str, columns: str, *, unique: bool = False) -> list[str]:
    return _mysql_if(
        "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE()"
        f" AND TABLE_NAME = '{table}' AND INDEX_NAME = '{name}'",
        f"CREATE {'UNIQUE ' if unique else ''}INDEX {name} ON {table} {columns}",
    )


SCHEMA_VERSION_DDL: dict[Dialect, str] = {
    "sqlite": (
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    ),
    "mysql": (
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INT NOT NULL PRIMARY KEY, name VARCHAR(200) NOT NULL, applied_at DOUBLE NOT NULL"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    ),
}

_MYSQL_TABLE = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"

MIGRATIONS: list[Migration] = [
    (
        1,
        "initial: jobs, job_state, decisions, fires",
        {
            "sqlite": [
                "CREATE TABLE IF NOT EXISTS jobs ("
                " name TEXT NOT NULL PRIMARY KEY, doc TEXT NOT NULL,"
                " version INTEGER NOT NULL, updated_at REAL NOT NULL)",
                "CREATE TABLE IF NOT EXISTS job_state ("
                " job TEXT NOT NULL PRIMARY KEY, state TEXT NOT NULL, updated_at REAL NOT NULL)",
                "CREATE TABLE IF NOT EXISTS decisions ("
                " id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, at REAL NOT NULL,"
                " status TEXT NOT NULL, body TEXT NOT NULL, result TEXT NOT NULL)",
                "CREATE INDEX IF NOT EXISTS decisions_job_at ON decisions (job, at)",
                "CREATE INDEX IF NOT EXISTS decisions_status_at ON decisions (status, at)",
                "CREATE TABLE IF NOT EXISTS fires ("
                " job TEXT NOT NULL, rule TEXT NOT NULL, at REAL NOT NULL, status TEXT NOT NULL,"
                " recorded_at REAL NOT NULL, PRIMARY KEY (job, rule, at))",
            ],
            "mysql": [
                "CREATE TABLE IF NOT EXISTS jobs ("
                " name VARCHAR(200) NOT NULL PRIMARY KEY, doc LONGTEXT NOT NULL,"
                f" version BIGINT NOT NULL, updated_at DOUBLE NOT NULL) {_MYSQL_TABLE}",
                "CREATE TABLE IF NOT EXISTS job_state ("
                " job VARCHAR(200) NOT NULL PRIMARY KEY, state LONGTEXT NOT NULL,"
                f" updated_at DOUBLE NOT NULL) {_MYSQL_TABLE}",
                "CREATE TABLE IF NOT EXISTS decisions ("
                " id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, job VARCHAR(200) NOT NULL,"
                " at DOUBLE NOT NULL, status VARCHAR(16) NOT NULL, body LONGTEXT NOT NULL,"
                " result LONGTEXT NOT NULL,"
                " INDEX decisions_job_at (job, at), INDEX decisions_status_at (status, at)"
                f") {_MYSQL_TABLE}",
                "CREATE TABLE IF NOT EXISTS fires ("
                " job VARCHAR(200) NOT NULL, rule VARCHAR(200) NOT NULL, at DOUBLE NOT NULL,"
                " status VARCHAR(16) NOT NULL, recorded_at DOUBLE NOT NULL,"
                f" PRIMARY KEY (job, rule, at)) {_MYSQL_TABLE}",
            ],
        },
    ),
    (
        2,
        "actuation_attempts: each write of a decision, recorded before it is sent",
        {
            "sqlite": [
                "CREATE TABLE IF NOT EXISTS actuation_attempts ("
                " decision_id INTEGER NOT NULL, attempt INTEGER NOT NULL, job TEXT NOT NULL,"
                " to_count INTEGER NOT NULL, sent_at REAL NOT NULL, deadline REAL NOT NULL,"
                " baseline REAL, status TEXT NOT NULL, detail TEXT NOT NULL, updated_at REAL NOT NULL,"
                " PRIMARY KEY (decision_id, attempt))",
                "CREATE INDEX IF NOT EXISTS actuation_attempts_status ON actuation_attempts (status)",
            ],
            "mysql": [
                "CREATE TABLE IF NOT EXISTS actuation_attempts ("
                " decision_id BIGINT NOT NULL, attempt INT NOT NULL, job VARCHAR(200) NOT NULL,"
                " to_count INT NOT NULL, sent_at DOUBLE NOT NULL, deadline DOUBLE NOT NULL,"
                " baseline DOUBLE NULL, status VARCHAR(16) NOT NULL, detail LONGTEXT NOT NULL, updated_at DOUBLE NOT NULL,"
                " PRIMARY KEY (decision_id, attempt), INDEX actuation_attempts_status (status)"
                f") {_MYSQL_TABLE}",
            ],
        },
    ),
    (
        3,
        "access: tokens, audit",
        {
            "sqlite": [
                "CREATE TABLE IF NOT EXISTS tokens ("
                " name TEXT NOT NULL PRIMARY KEY, record TEXT NOT NULL, updated_at REAL NOT NULL)",
                "CREATE TABLE IF NOT EXISTS audit ("
                " id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, actor TEXT NOT NULL,"
                " source TEXT NOT NULL, action TEXT NOT NULL, job TEXT,"
                " before_version INTEGER, after_version INTEGER, detail TEXT NOT NULL)",
                "CREATE INDEX IF NOT EXISTS audit_job_at ON audit (job, at)",
                "CREATE INDEX IF NOT EXISTS audit_at ON audit (at)",
            ],
            "mysql": [
                "CREATE TABLE IF NOT EXISTS tokens ("
                " name VARCHAR(64) NOT NULL PRIMARY KEY, record TEXT NOT NULL,"
                f" updated_at DOUBLE NOT NULL) {_MYSQL_TABLE}",
                "CREATE TABLE IF NOT EXISTS audit ("
                " id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, at DOUBLE NOT NULL,"
                " actor VARCHAR(64) NOT NULL, source VARCHAR(200) NOT NULL, action VARCHAR(64) NOT NULL,"
                " job VARCHAR(200) NULL, before_version BIGINT NULL, after_version BIGINT NULL,"
                " detail TEXT NOT NULL,"
                " INDEX audit_job_at (job, at), INDEX audit_at (at)"
                f") {_MYSQL_TABLE}",
            ],
        },
    ),
    (
        4,
        "history: per-job bucket values and counts, per period then rolled up",
        {
            "sqlite": [
                "CREATE TABLE IF NOT EXISTS history ("
                " job TEXT NOT NULL, t REAL NOT NULL, step INTEGER NOT NULL, vals TEXT NOT NULL,"
                " ready INTEGER NOT NULL, running INTEGER NOT NULL, desired INTEGER NOT NULL,"
                " decision INTEGER, PRIMARY KEY (job, t))",
                "CREATE INDEX IF NOT EXISTS history_step_t ON history (step, t)",
            ],
            "mysql": [
                "CREATE TABLE IF NOT EXISTS history ("
                " job VARCHAR(200) NOT NULL, t DOUBLE NOT NULL, step INT NOT NULL, vals TEXT NOT NULL,"
                " ready INT NOT NULL, running INT NOT NULL, desired INT NOT NULL, decision BIGINT NULL,"
                " PRIMARY KEY (job, t), INDEX history_step_t (step, t)"
                f") {_MYSQL_TABLE}",
            ],
        },
    ),
    (
        5,
        "actuation_outcomes: what became of each decision, a record of its own (decisions stay as made)",
        {
            "sqlite": [
                "CREATE TABLE IF NOT EXISTS actuation_outcomes ("
                " decision_id INTEGER NOT NULL PRIMARY KEY, job TEXT NOT NULL, status TEXT NOT NULL,"
                " outcome TEXT NOT NULL, updated_at REAL NOT NULL)",
                "CREATE INDEX IF NOT EXISTS actuation_outcomes_status ON actuation_outcomes (status)",
            ],
            "mysql": [
                "CREATE TABLE IF NOT EXISTS actuation_outcomes ("
                " decision_id BIGINT NOT NULL PRIMARY KEY, job VARCHAR(200) NOT NULL,"
                " status VARCHAR(16) NOT NULL, outcome LONGTEXT NOT NULL, updated_at DOUBLE NOT NULL,"
                " INDEX actuation_outcomes_status (status)"
                f") {_MYSQL_TABLE}",
            ],
        },
    ),
    (
        6,
        "templates: shared job fields, and the template and own fields of each job that names one",
        {
            "sqlite": [
                "CREATE TABLE IF NOT EXISTS templates ("
                " name TEXT NOT NULL PRIMARY KEY, doc TEXT NOT NULL,"
                " version INTEGER NOT NULL, updated_at REAL NOT NULL)",
                "CREATE TABLE IF NOT EXISTS job_templates ("
                " job TEXT NOT NULL PRIMARY KEY, template TEXT NOT NULL, own TEXT NOT NULL,"
                " updated_at REAL NOT NULL)",
                "CREATE INDEX IF NOT EXISTS job_templates_template ON job_templates (template)",
            ],
            "mysql": [
                "CREATE TABLE IF NOT EXISTS templates ("
                " name VARCHAR(200) NOT NULL PRIMARY KEY, doc LONGTEXT NOT NULL,"
                f" version BIGINT NOT NULL, updated_at DOUBLE NOT NULL) {_MYSQL_TABLE}",
                "CREATE TABLE IF NOT EXISTS job_templates ("
                " job VARCHAR(200) NOT NULL PRIMARY KEY, template VARCHAR(200) NOT NULL,"
                " own LONGTEXT NOT NULL, updated_at DOUBLE NOT NULL,"
                f" INDEX job_templates_template (template)) {_MYSQL_TABLE}",
            ],
        },
    ),
    (
        7,
        "cluster: cluster_meta, daemon, shard_lease; attempts fenced by shard epoch (issue 14)",
        {
            "sqlite": [
                "CREATE TABLE IF NOT EXISTS cluster_meta ("
                " name TEXT NOT NULL PRIMARY KEY, shards INTEGER NOT NULL, created_at REAL NOT NULL)",
                "CREATE TABLE IF NOT EXISTS daemon ("
                " instance_id TEXT NOT NULL PRIMARY KEY, stable_id TEXT NOT NULL, addr TEXT NOT NULL,"
                " started_at REAL NOT NULL, expires_at REAL NOT NULL)",
                "CREATE TABLE IF NOT EXISTS shard_lease ("
                " shard INTEGER NOT NULL PRIMARY KEY, owner TEXT, epoch INTEGER NOT NULL DEFAULT 0,"
                " expires_at REAL NOT NULL DEFAULT 0)",
                "ALTER TABLE actuation_attempts ADD COLUMN shard INTEGER",
                "ALTER TABLE actuation_attempts ADD COLUMN epoch INTEGER",
                "ALTER TABLE actuation_attempts ADD COLUMN owner TEXT",
                "ALTER TABLE actuation_attempts ADD COLUMN decision_key TEXT",
                "CREATE UNIQUE INDEX IF NOT EXISTS actuation_attempts_key"
                " ON actuation_attempts (job, decision_key, attempt)",
                "CREATE INDEX IF NOT EXISTS actuation_attempts_pending"
                " ON actuation_attempts (shard, status, epoch)",
            ],
            "mysql": [
                "CREATE TABLE IF NOT EXISTS cluster_meta ("
                " name VARCHAR(64) NOT NULL PRIMARY KEY, shards INT NOT NULL,"
                f" created_at DATETIME(6) NOT NULL) {_MYSQL_TABLE}",
                "CREATE TABLE IF NOT EXISTS daemon ("
                " instance_id VARCHAR(64) NOT NULL PRIMARY KEY, stable_id VARCHAR(128) NOT NULL,"
                " addr VARCHAR(128) NOT NULL, started_at DATETIME(6) NOT NULL,"
                f" expires_at DATETIME(6) NOT NULL, INDEX daemon_expires (expires_at)) {_MYSQL_TABLE}",
                "CREATE TABLE IF NOT EXISTS shard_lease ("
                " shard SMALLINT UNSIGNED NOT NULL PRIMARY KEY, owner VARCHAR(64) NULL,"
                " epoch BIGINT UNSIGNED NOT NULL DEFAULT 0,"
                f" expires_at DATETIME(6) NOT NULL DEFAULT '1970-01-01 00:00:01') {_MYSQL_TABLE}",
                *_mysql_add_column("actuation_attempts", "shard", "INT NULL"),
                *_mysql_add_column("actuation_attempts", "epoch", "BIGINT UNSIGNED NULL"),
                *_mysql_add_column("actuation_attempts", "owner", "VARCHAR(64) NULL"),
                *_mysql_add_column("actuation_attempts", "decision_key", "VARCHAR(96) NULL"),
                *_mysql_add_index(
                    "actuation_attempts",
                    "actuation_attempts_key",
                    "(job, decision_key, attempt)",
                    unique=True,
                ),
                *_mysql_add_index(
                    "actuation_attempts", "actuation_attempts_pending", "(shard, status, epoch)"
                ),
            ],
        },
    ),
    (
        8,
        "job_changes: a row per job write or delete, read by the other daemons of a cluster (issue 14)",
        {
            "sqlite": [
                "CREATE TABLE IF NOT EXISTS job_changes ("
                " seq INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, at REAL NOT NULL)",
                "CREATE INDEX IF NOT EXISTS job_changes_at ON job_changes (at)",
            ],
            "mysql": [
                "CREATE TABLE IF NOT EXISTS job_changes ("
                " seq BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, job VARCHAR(200) NOT NULL,"
                f" at DOUBLE NOT NULL, INDEX job_changes_at (at)) {_MYSQL_TABLE}",
            ],
        },
    ),
]


class MigrationListError(ValueError):
    """A migration list that cannot be applied (a programming error caught before touching the store)."""


def check_migrations(migrations: list[Migration]) -> None:
    """Versions are 1, 2, 3... in order, each names itself, and each has SQL for every dialect."""
    for index, (version, name, sql) in enumerate(migrations):
        if version != index + 1:
            raise MigrationListError(f"migration #{index} has version {version}, expected {index + 1}")
        if not name.strip():
            raise MigrationListError(f"migration {version} has no name")
        for dialect in DIALECTS:
            statements = sql.get(dialect)
            if not statements or not all(s.strip() for s in statements):
                raise MigrationListError(f"migration {version} ({name}) has no {dialect} statements")


def pending(migrations: list[Migration], current: int) -> list[Migration]:
    """The migrations to apply on a store whose schema is at `current` (0 = empty store).

    Raises MigrationListError when the store is newer than the list (it belongs to a newer oceand).
    """
    latest = migrations[-1][0] if migrations else 0
    if current > latest:
        raise MigrationListError(
            f"the store's schema is at version {current}, newer than this oceand knows ({latest});"
            " upgrade oceand or point it at another store"
        )
    return [m for m in migrations if m[0] > current]
