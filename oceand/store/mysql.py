"""The MySQL / MariaDB store (aiomysql): a connection pool, one InnoDB transaction per call.

Connections run with autocommit off, utf8mb4 and a strict sql_mode; each call takes a connection,
runs its statements, commits, and gives the connection back. Every call is bounded by the URL's
`timeout` (pool wait included), so a dead server yields a StoreError, never a hang.

Lost connections (server restart, `KILL`, idle timeout): the pool drops connections whose socket has
closed. If one still fails on its first use, the call is retried once on a fresh connection when the
failure came before COMMIT was sent (nothing can have been committed then); a failure during COMMIT
raises StoreError, and the caller's retry is the only place that can decide what to do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiomysql

from oceand.store import jobchanges
from oceand.store import templates as tpl
from oceand.store.base import (
    ATTEMPT_COLUMNS,
    ATTEMPT_SELECT,
    AUDIT_COLUMNS,
    DECISION_SELECT,
    FIRE_STATUSES,
    HISTORY_COLUMNS,
    OUTCOME_COLUMNS,
    PENDING_ATTEMPT_WHERE,
    PENDING_WHERE,
    DecisionNotFound,
    Fence,
    FencedWrite,
    JobChange,
    JobLink,
    JobWrite,
    MySQLURL,
    StoredJob,
    StoredTemplate,
    StoreError,
    TemplateWrite,
    WriteHealth,
    attempt_dict,
    attempt_row,
    audit_dict,
    audit_row,
    check_decision_id,
    check_job,
    check_limit,
    check_rule,
    check_status,
    check_time,
    check_token_name,
    decision_dict,
    decision_row,
    decode,
    encode,
    history_dict,
    history_row,
    outcome_row,
    parse_url,
    rollup,
)
from oceand.store.migrations import (
    MIGRATIONS,
    SCHEMA_VERSION_DDL,
    Migration,
    MigrationListError,
    check_migrations,
    pending,
)

T = TypeVar("T")
Cursor = Any  # aiomysql.Cursor (untyped library)

# Client errors that mean "this connection is gone": server gone away, lost during query, lost
# during handshake, killed (MariaDB ER_CONNECTION_KILLED), dropped for inactivity (MySQL 8).
_LOST_CONNECTION = {2006, 2013, 2055, 1927, 4031}
RETRY_TRANSACTION = {1213}  # deadlock: InnoDB rolled the transaction back, running it again is safe
_DUPLICATE_KEY = 1062
# Migrations (DDL: index builds on tables of any size) are bounded by this, not by the URL's per-call
# `timeout`: a call timeout of 0.5 s must not keep a daemon from ever opening its store.
MIGRATE_TIMEOUT = 300.0
PROBE_JOB = ""  # the job_state key probe_write writes and deletes: never a job's name (1-200 chars)
_SQL_MODE = "STRICT_ALL_TABLES,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"


async def create_pool(url: MySQLURL, size: int, *, autocommit: bool, session: str, recycle: int) -> Any:
    """An aiomysql pool on `url`: utf8mb4, the strict sql_mode, and `session` (more `SET SESSION`
    assignments, e.g. ", innodb_lock_wait_timeout = 1") on every new connection."""
    return await aiomysql.create_pool(
        minsize=1,
        maxsize=size,
        host=url.host,
        port=url.port,
        user=url.user,
        password=url.password,
        db=url.database,
        unix_socket=url.unix_socket,
        charset="utf8mb4",
        autocommit=autocommit,
        connect_timeout=url.connect_timeout,
        init_command=f"SET SESSION sql_mode = '{_SQL_MODE}'{session}",
        pool_recycle=recycle,
    )


class _Retry(Exception):
    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _lost(error: BaseException) -> bool:
    if isinstance(error, aiomysql.OperationalError | aiomysql.InternalError):
        code = error.args[0] if error.args else None
        return code in _LOST_CONNECTION or code in RETRY_TRANSACTION
    return isinstance(error, aiomysql.InterfaceError | ConnectionError)


class MySQLStore:
    def __init__(
        self,
        url: MySQLURL | str,
        *,
        clock: Callable[[], float] = time.time,
        migrations: list[Migration] = MIGRATIONS,
    ) -> None:
        parsed = parse_url(url) if isinstance(url, str) else url
        if not isinstance(parsed, MySQLURL):
            raise ValueError(f"MySQLStore needs a mysql:// URL, got {parsed.redacted}")
        self._url = parsed
        self._clock = clock
        check_migrations(migrations)
        self._migrations = migrations
        self._pool: Any = None  # aiomysql.Pool
        self._health = WriteHealth(self._url.redacted)

    @property
    def url(self) -> str:
        return self._url.redacted

    @property
    def health(self) -> WriteHealth:
        return self._health

    def _error(self, problem: object) -> StoreError:
        return StoreError(f"store {self.url}: {problem}")

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._pool is not None:
            return
        u = self._url
        try:
            async with asyncio.timeout(u.connect_timeout + u.timeout):
                pool = await create_pool(u, u.pool_size, autocommit=False, session="", recycle=3600)
        except TimeoutError:
            raise self._error(f"no connection within {u.connect_timeout + u.timeout:g}s") from None
        except (aiomysql.Error, OSError) as e:
            raise self._error(f"cannot connect: {e}") from e
        self._pool = pool
        try:
            await self._run(self._migrate, retry=False, timeout=max(self._url.timeout, MIGRATE_TIMEOUT))
        except BaseException:
            await self.close()
            raise

    async def _migrate(self, cur: Cursor) -> None:
        lock = f"oceand.migrate.{self._url.database}"[:64]
        await cur.execute("SELECT GET_LOCK(%s, %s)", (lock, max(1, int(self._url.timeout))))
        (got,) = await cur.fetchone()
        if got != 1:
            raise self._error(f"another process holds the migration lock {lock!r}")
        try:
            await cur.execute("SET SESSION sql_notes = 0")  # "table already exists" is expected here
            await cur.execute(SCHEMA_VERSION_DDL["mysql"])
            await cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            (current,) = await cur.fetchone()
            try:
                todo = pending(self._migrations, int(current))
            except MigrationListError as e:
                raise self._error(e) from e
            for version, name, sql in todo:
                for statement in sql["mysql"]:
                    await cur.execute(statement)
                await cur.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (%s, %s, %s)",
                    (version, name, self._clock()),
                )
                await cur.connection.commit()
        finally:
            await cur.execute("SET SESSION sql_notes = 1")
            await cur.execute("SELECT RELEASE_LOCK(%s)", (lock,))
            await cur.fetchone()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
            await pool.wait_closed()

    async def ping(self) -> bool:
        try:
            await asyncio.wait_for(self._run(_select_one, retry=False), timeout=min(5.0, self._url.timeout))
            return True
        except Exception:
            return False

    # ------------------------------------------------------------ plumbing

    async def _run(
        self,
        fn: Callable[[Cursor], Awaitable[T]],
        *,
        retry: bool = True,
        write: bool = False,
        timeout: float | None = None,
    ) -> T:
        """Run `fn` in one transaction on a pooled connection; commit; StoreError on failure.

        A write's outcome goes to `health` (a refused row, IntegrityError or DataError, says nothing
        about the store)."""
        if not write:
            return await self._transaction(fn, retry, timeout)
        try:
            result = await self._transaction(fn, retry, timeout)
        except StoreError as e:
            if not isinstance(e.__cause__, aiomysql.IntegrityError | aiomysql.DataError):
                self._health.failed(e)
            raise
        self._health.ok()
        return result

    async def probe_write(self) -> bool:
        async def probe(cur: Cursor) -> None:
            await cur.execute(
                "INSERT INTO job_state (job, state, updated_at) VALUES (%s, '{}', %s)"
                " ON DUPLICATE KEY UPDATE updated_at = VALUES(updated_at)",
                (PROBE_JOB, self._clock()),
            )
            await cur.execute("DELETE FROM job_state WHERE job = %s", (PROBE_JOB,))

        try:
            await self._run(probe, write=True)
            return True
        except Exception:
            return False

    async def _transaction(
        self, fn: Callable[[Cursor], Awaitable[T]], retry: bool, timeout: float | None = None
    ) -> T:
        pool = self._pool
        if pool is None:
            raise self._error("not open")
        bound = self._url.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(bound):
                try:
                    return await self._once(pool, fn)
                except _Retry as r:
                    if not retry:
                        raise r.error from None
                    try:
                        return await self._once(pool, fn)
                    except _Retry as again:
                        raise again.error from None
        except TimeoutError:
            raise self._error(f"no answer within {bound:g}s") from None
        except (aiomysql.Error, OSError) as e:
            raise self._error(e) from e

    async def _once(self, pool: Any, fn: Callable[[Cursor], Awaitable[T]]) -> T:
        async with pool.acquire() as conn:
            try:
                async with conn.cursor() as cur:
                    result = await fn(cur)
            except Exception as e:
                if _lost(e):
                    conn.close()  # nothing was committed: the transaction died with the connection
                    raise _Retry(e) from e
                try:
                    await conn.rollback()
                except Exception:
                    conn.close()
                raise
            except BaseException:
                conn.close()  # cancelled mid-statement: the connection's state is unknown
                raise
            await conn.commit()
            return result

    # ------------------------------------------------------------ jobs

    async def put_job(self, name: str, doc: dict[str, Any]) -> int:
        check_job(name)
        text = encode(doc, "job document")
        now = self._clock()

        async def put(cur: Cursor) -> int:
            await cur.execute(
                "INSERT INTO jobs (name, doc, version, updated_at) VALUES (%s, %s, 1, %s)"
                " ON DUPLICATE KEY UPDATE doc = VALUES(doc), version = version + 1,"
                " updated_at = VALUES(updated_at)",
                (name, text, now),
            )
            await cur.execute("SELECT version FROM jobs WHERE name = %s", (name,))
            (version,) = await cur.fetchone()
            await tpl.log_change(_Tx(cur), name, now)
            return int(version)

        return await self._run(put, write=True)

    async def get_job(self, name: str) -> StoredJob | None:
        check_job(name)

        async def get(cur: Cursor) -> StoredJob | None:
            await cur.execute("SELECT name, doc, version, updated_at FROM jobs WHERE name = %s", (name,))
            row = await cur.fetchone()
            return _job(row) if row else None

        return await self._run(get)

    async def list_jobs(self) -> list[StoredJob]:
        async def list_(cur: Cursor) -> list[StoredJob]:
            await cur.execute("SELECT name, doc, version, updated_at FROM jobs ORDER BY name")
            return [_job(row) for row in await cur.fetchall()]

        return await self._run(list_)

    async def delete_job(self, name: str) -> bool:
        check_job(name)

        async def delete(cur: Cursor) -> bool:
            deleted = await cur.execute("DELETE FROM jobs WHERE name = %s", (name,))
            await cur.execute("DELETE FROM job_state WHERE job = %s", (name,))
            await tpl.unlink_job(_Tx(cur), name)
            if deleted:
                await tpl.log_change(_Tx(cur), name, self._clock())
            return bool(deleted)

        return await self._run(delete, write=True)

    async def job_changes(self, ranges: list[tuple[int, int | None]], limit: int) -> list[JobChange]:
        return await self._run(lambda cur: jobchanges.changes(_Tx(cur), ranges, limit))

    async def job_change_bounds(self) -> tuple[int, int]:
        return await self._run(lambda cur: jobchanges.bounds(_Tx(cur)))

    async def prune_job_changes(self, before: float, limit: int) -> int:
        return await self._run(lambda cur: jobchanges.prune(_Tx(cur), before, limit))

    # ------------------------------------------------------------ templates (oceand/store/templates.py)

    async def get_template(self, name: str) -> StoredTemplate | None:
        return await self._run(lambda cur: tpl.get_template(_Tx(cur), name))

    async def list_templates(self) -> list[StoredTemplate]:
        return await self._run(lambda cur: tpl.list_templates(_Tx(cur)))

    async def job_links(
        self, template: str | None = None, job: str | None = None, with_docs: bool = False
    ) -> list[JobLink]:
        return await self._run(lambda cur: tpl.job_links(_Tx(cur), template, job, with_docs))

    async def write_jobs(
        self,
        jobs: list[JobWrite],
        template: TemplateWrite | None = None,
        based_on: dict[str, int] | None = None,
    ) -> tuple[dict[str, int], int | None]:
        now = self._clock()
        return await self._run(
            lambda cur: tpl.write_jobs(_Tx(cur), now, jobs, template, based_on), write=True
        )

    async def rename_template(self, name: str, to: str) -> int | None:
        now = self._clock()
        return await self._run(lambda cur: tpl.rename_template(_Tx(cur), now, name, to), write=True)

    async def delete_template(self, name: str) -> bool:
        return await self._run(lambda cur: tpl.delete_template(_Tx(cur), name), write=True)

    # ------------------------------------------------------------ state and decisions

    async def load_state(self, job: str) -> dict[str, Any] | None:
        check_job(job)

        async def load(cur: Cursor) -> dict[str, Any] | None:
            await cur.execute("SELECT state FROM job_state WHERE job = %s", (job,))
            row = await cur.fetchone()
            return dict(decode(row[0])) if row else None

        return await self._run(load)

    async def load_states(self) -> dict[str, dict[str, Any]]:
        async def load(cur: Cursor) -> dict[str, dict[str, Any]]:
            await cur.execute("SELECT job, state FROM job_state")
            return {str(job): dict(decode(state)) for job, state in await cur.fetchall()}

        return await self._run(load)

    async def commit(
        self,
        job: str,
        state: dict[str, Any],
        decision: dict[str, Any] | None = None,
        outcome: dict[str, Any] | None = None,
    ) -> int | None:
        check_job(job)
        state_text = encode(state, "state")
        row = decision_row(job, decision, outcome) if decision is not None else None
        now = self._clock()

        async def write(cur: Cursor) -> int | None:
            await cur.execute(
                "INSERT INTO job_state (job, state, updated_at) VALUES (%s, %s, %s)"
                " ON DUPLICATE KEY UPDATE state = VALUES(state), updated_at = VALUES(updated_at)",
                (job, state_text, now),
            )
            if row is None:
                return None
            await cur.execute(
                "INSERT INTO decisions (job, at, status, body, result) VALUES (%s, %s, %s, %s, '{}')",
                (job, row.at, row.status, row.body),
            )
            did = int(cur.lastrowid)
            await cur.execute(
                f"INSERT INTO actuation_outcomes {OUTCOME_COLUMNS} VALUES (%s, %s, %s, %s, %s)",
                (did, job, row.outcome.status, row.outcome.text, now),
            )
            return did

        return await self._run(write, write=True)

    async def record_outcome(
        self,
        decision_id: int,
        job: str,
        outcome: dict[str, Any],
        state: dict[str, Any] | None = None,
        fence: Fence | None = None,
    ) -> None:
        check_decision_id(decision_id)
        check_job(job)
        out = outcome_row(outcome)
        state_text = None if state is None else encode(state, "state")
        now = self._clock()

        async def write(cur: Cursor) -> bool | None:
            if fence is not None:  # a locking read: the latest committed lease, held until our commit
                await cur.execute(
                    "SELECT 1 FROM shard_lease WHERE shard = %s AND epoch = %s AND owner = %s"
                    " LOCK IN SHARE MODE",
                    (fence.shard, fence.epoch, fence.owner),
                )
                if await cur.fetchone() is None:
                    return None
            await cur.execute("SELECT 1 FROM decisions WHERE id = %s AND job = %s", (decision_id, job))
            if await cur.fetchone() is None:
                return False
            await cur.execute(
                f"INSERT INTO actuation_outcomes {OUTCOME_COLUMNS} VALUES (%s, %s, %s, %s, %s)"
                " ON DUPLICATE KEY UPDATE status = VALUES(status), outcome = VALUES(outcome),"
                " updated_at = VALUES(updated_at)",
                (decision_id, job, out.status, out.text, now),
            )
            if state_text is not None:
                await cur.execute(
                    "INSERT INTO job_state (job, state, updated_at) VALUES (%s, %s, %s)"
                    " ON DUPLICATE KEY UPDATE state = VALUES(state), updated_at = VALUES(updated_at)",
                    (job, state_text, now),
                )
            return True

        done = await self._run(write, write=True)
        if done is None:
            assert fence is not None
            raise FencedWrite(
                f"decision {decision_id} of job {job!r}: not recorded, shard {fence.shard} is no longer held"
                f" by {fence.owner} at epoch {fence.epoch}"
            )
        if not done:
            raise DecisionNotFound(f"decision {decision_id} of job {job!r} does not exist")

    async def decisions(self, job: str, limit: int = 50, since: float | None = None) -> list[dict[str, Any]]:
        check_job(job)
        check_limit(limit)
        low = None if since is None else check_time(since, "since")

        async def select(cur: Cursor) -> list[dict[str, Any]]:
            where = "d.job = %s" if low is None else "d.job = %s AND d.at >= %s"
            args: tuple[Any, ...] = (job,) if low is None else (job, low)
            await cur.execute(
                f"{DECISION_SELECT} WHERE {where} ORDER BY d.at DESC, d.id DESC LIMIT %s", (*args, limit)
            )
            return [decision_dict(*row) for row in await cur.fetchall()]

        return await self._run(select)

    async def pending_decisions(self) -> list[dict[str, Any]]:
        async def select(cur: Cursor) -> list[dict[str, Any]]:
            await cur.execute(f"{DECISION_SELECT} WHERE {PENDING_WHERE} ORDER BY d.at, d.id")
            return [decision_dict(*row) for row in await cur.fetchall()]

        return await self._run(select)

    async def pending_attempt_decisions(self) -> list[dict[str, Any]]:
        async def select(cur: Cursor) -> list[dict[str, Any]]:
            await cur.execute(f"{DECISION_SELECT} WHERE {PENDING_ATTEMPT_WHERE} ORDER BY d.at, d.id")
            return [decision_dict(*row) for row in await cur.fetchall()]

        return await self._run(select)

    # ------------------------------------------------------------ schedule fires

    async def claim_fire(self, job: str, rule: str, at: float, status: str) -> bool:
        check_job(job)
        check_rule(rule)
        at = check_time(at, "at")
        check_status(status, FIRE_STATUSES, "fire status")
        now = self._clock()

        async def claim(cur: Cursor) -> bool:
            try:
                await cur.execute(
                    "INSERT INTO fires (job, rule, at, status, recorded_at) VALUES (%s, %s, %s, %s, %s)",
                    (job, rule, at, status, now),
                )
            except aiomysql.IntegrityError as e:
                if e.args and e.args[0] == _DUPLICATE_KEY:
                    return False
                raise
            return True

        return await self._run(claim, write=True)

    async def fires(self, job: str, limit: int = 50) -> list[dict[str, Any]]:
        check_job(job)
        check_limit(limit)

        async def select(cur: Cursor) -> list[dict[str, Any]]:
            await cur.execute(
                "SELECT rule, at, status, recorded_at FROM fires WHERE job = %s"
                " ORDER BY at DESC, rule LIMIT %s",
                (job, limit),
            )
            return [
                {"rule": r[0], "at": float(r[1]), "status": r[2], "recorded_at": float(r[3])}
                for r in await cur.fetchall()
            ]

        return await self._run(select)

    # ------------------------------------------------------------ actuation attempts

    async def record_attempt(self, decision_id: int, job: str, attempt: dict[str, Any]) -> None:
        row = attempt_row(decision_id, job, attempt)
        now = self._clock()

        async def write(cur: Cursor) -> None:
            await cur.execute(
                f"INSERT INTO actuation_attempts ({ATTEMPT_COLUMNS})"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON DUPLICATE KEY UPDATE status = VALUES(status), deadline = VALUES(deadline),"
                " detail = VALUES(detail), updated_at = VALUES(updated_at)",
                row.values(now),
            )

        await self._run(write)

    async def attempts(self, decision_id: int) -> list[dict[str, Any]]:
        check_decision_id(decision_id)

        async def select(cur: Cursor) -> list[dict[str, Any]]:
            await cur.execute(
                f"{ATTEMPT_SELECT} WHERE decision_id = %s ORDER BY attempt",
                (decision_id,),
            )
            return [attempt_dict(r) for r in await cur.fetchall()]

        return await self._run(select)

    # ------------------------------------------------------------ tokens and audit

    async def list_tokens(self) -> list[dict[str, Any]]:
        async def select(cur: Cursor) -> list[dict[str, Any]]:
            await cur.execute("SELECT name, record FROM tokens ORDER BY name")
            return [{"name": r[0], "record": dict(decode(r[1]))} for r in await cur.fetchall()]

        return await self._run(select)

    async def create_token(self, name: str, record: dict[str, Any]) -> bool:
        check_token_name(name)
        text = encode(record, "token record")
        now = self._clock()

        async def insert(cur: Cursor) -> bool:
            try:
                await cur.execute(
                    "INSERT INTO tokens (name, record, updated_at) VALUES (%s, %s, %s)", (name, text, now)
                )
            except aiomysql.IntegrityError as e:
                if e.args and e.args[0] == _DUPLICATE_KEY:
                    return False
                raise
            return True

        return await self._run(insert)

    async def update_token(self, name: str, record: dict[str, Any]) -> bool:
        check_token_name(name)
        text = encode(record, "token record")
        now = self._clock()

        async def update(cur: Cursor) -> bool:
            await cur.execute("SELECT 1 FROM tokens WHERE name = %s FOR UPDATE", (name,))
            if await cur.fetchone() is None:
                return False
            await cur.execute(
                "UPDATE tokens SET record = %s, updated_at = %s WHERE name = %s", (text, now, name)
            )
            return True

        return await self._run(update)

    async def delete_token(self, name: str) -> bool:
        check_token_name(name)

        async def delete(cur: Cursor) -> bool:
            return bool(await cur.execute("DELETE FROM tokens WHERE name = %s", (name,)))

        return await self._run(delete)

    async def add_audit(self, entry: dict[str, Any]) -> int:
        return (await self.add_audits([entry]))[0]

    async def add_audits(self, entries: list[dict[str, Any]]) -> list[int]:
        rows = [tuple(audit_row(e).values()) for e in entries]
        if not rows:
            return []

        async def insert(cur: Cursor) -> list[int]:
            ids = []
            for row in rows:  # one by one: a multi-row INSERT's ids need not be consecutive
                await cur.execute(
                    f"INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", row
                )
                ids.append(int(cur.lastrowid))
            return ids

        return await self._run(insert)

    async def audit(
        self, job: str | None = None, since: float | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        check_limit(limit)
        where: list[str] = ["1 = 1"]
        args: list[Any] = []
        if since is not None:
            where.append("at >= %s")
            args.append(check_time(since, "since"))
        if job is not None:
            where.append("job = %s")
            args.append(check_job(job))

        async def select(cur: Cursor) -> list[dict[str, Any]]:
            await cur.execute(
                f"SELECT id, {AUDIT_COLUMNS} FROM audit WHERE {' AND '.join(where)}"
                " ORDER BY at DESC, id DESC LIMIT %s",
                (*args, limit),
            )
            return [audit_dict(r) for r in await cur.fetchall()]

        return await self._run(select)

    async def add_history(self, rows: list[dict[str, Any]]) -> int:
        values = [history_row(r) for r in rows]
        if not values:
            return 0

        async def insert(cur: Cursor) -> None:
            await cur.executemany(
                f"REPLACE INTO history ({HISTORY_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", values
            )

        await self._run(insert, write=True)
        return len(values)

    async def history(
        self, job: str, since: float | None = None, until: float | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        check_job(job)
        check_limit(limit)
        where: list[str] = ["job = %s"]
        args: list[Any] = [job]
        if since is not None:
            where.append("t >= %s")
            args.append(check_time(since, "since"))
        if until is not None:
            where.append("t < %s")
            args.append(check_time(until, "until"))

        async def select(cur: Cursor) -> list[dict[str, Any]]:
            await cur.execute(
                "SELECT t, step, vals, ready, running, desired, decision FROM history"
                f" WHERE {' AND '.join(where)} ORDER BY t LIMIT %s",
                (*args, limit),
            )
            return [history_dict(r) for r in await cur.fetchall()]

        return await self._run(select)

    async def rollup_history(self, before: float, limit: int) -> int:
        check_time(before, "before")
        check_limit(limit)

        async def roll(cur: Cursor) -> int:
            await cur.execute(
                "SELECT job, t, vals, ready, running, desired, decision FROM history"
                " WHERE step = 0 AND t < %s ORDER BY job, t LIMIT %s FOR UPDATE",
                (before, limit),
            )
            rows = list(await cur.fetchall())
            out, gone = rollup(rows, complete=len(rows) < limit)
            if gone:
                await cur.executemany("DELETE FROM history WHERE job = %s AND t = %s", gone)
            if out:
                await cur.executemany(
                    f"REPLACE INTO history ({HISTORY_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", out
                )
            return len(gone)

        return await self._run(roll, write=True)

    async def prune_history(self, before: float, limit: int) -> int:
        check_time(before, "before")
        check_limit(limit)

        async def prune(cur: Cursor) -> int:
            n = 0
            for step in (0, 60):
                if n < limit:
                    await cur.execute(
                        "DELETE FROM history WHERE step = %s AND t < %s LIMIT %s", (step, before, limit - n)
                    )
                    n += cur.rowcount
            return n

        return await self._run(prune, write=True)

    async def prune_audit(self, before: float, limit: int) -> int:
        check_limit(limit)
        at = check_time(before, "before")

        async def delete(cur: Cursor) -> int:
            return int(await cur.execute("DELETE FROM audit WHERE at < %s ORDER BY at LIMIT %s", (at, limit)))

        return await self._run(delete)


async def _select_one(cur: Cursor) -> None:
    await cur.execute("SELECT 1")
    await cur.fetchone()


class _Tx:
    """oceand/store/templates.py's view of a transaction on the cursor (`?` placeholders become `%s`)."""

    lock = " FOR UPDATE"
    upsert_link = (
        "INSERT INTO job_templates (job, template, own, updated_at) VALUES (?, ?, ?, ?) ON DUPLICATE KEY"
        " UPDATE template = VALUES(template), own = VALUES(own), updated_at = VALUES(updated_at)"
    )

    def __init__(self, cur: Cursor) -> None:
        self._cur = cur

    async def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        await self._cur.execute(sql.replace("?", "%s"), args or None)
        return [tuple(r) for r in await self._cur.fetchall()]

    async def run(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        return int(await self._cur.execute(sql.replace("?", "%s"), args or None))


def _job(row: Any) -> StoredJob:
    return StoredJob(name=row[0], doc=dict(decode(row[1])), version=int(row[2]), updated_at=float(row[3]))
