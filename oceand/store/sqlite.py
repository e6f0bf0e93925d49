"""The SQLite store (aiosqlite): one connection with a rollback journal, one transaction at a time.

Every call holds an asyncio lock for its whole transaction, so the calls of one daemon never
interleave; writes open with `BEGIN IMMEDIATE`, so a second process (another daemon, `sqlite3` in a
shell) waits up to the URL's `timeout` for the write lock instead of failing at once.

Why not WAL: in WAL mode every connection maps the `-shm` file into memory and writes to it. When
that file can no longer be written (the filesystem remounted read-only after a disk error, the file
made immutable) the kernel answers the write to the mapped page with SIGBUS, and the process dies
without a word. A rollback journal (`journal_mode=DELETE`) uses read() and write() only, so the same
failure is an ordinary I/O error: the write fails, the daemon says so (`WriteHealth`), stays up and
recovers when the disk does. Memory-mapped reads are off (`mmap_size=0`) for the same reason. Other
processes can still read and write the file; a reader holding a transaction open delays commits
(up to `timeout`), which WAL would not.

The cost, measured by bench/store_journal.py: a single commit takes about 5x as long as in WAL mode
(a few more fsyncs: ~16 ms against ~3 ms on the reference machine), a crowd of 2,000 commits about
1.8x; a pending decision queued behind that crowd about 1.4x. The URL's `?journal=wal` brings WAL
back for those who prefer its speed and accept the SIGBUS on an unwritable disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

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
    DecisionRow,
    Fence,
    FencedWrite,
    JobChange,
    JobLink,
    JobWrite,
    OutcomeRow,
    SQLiteURL,
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

GROUP_MAX = 50  # commits per group transaction: bounds how long a commit waits for the one before
PROBE_JOB = ""  # the job_state key probe_write writes and deletes: never a job's name (1-200 chars)


ANTICIPATE = 0.02  # seconds the store is kept from other work after an urgent write (see _PriorityLock)


class _PriorityLock:
    """The store's one lock (a transaction at a time), with two queues: when it is released an urgent
    waiter goes first — the write of a decision about to be applied, the attempt recorded before its
    write goes out — then the others, each queue first come, first served. An asyncio.Lock served a
    pending decision after every state flush, history batch and read queued before it (bench/reaction.py
    p99 200+ ms at 10,000 jobs; BENCHMARKS.md, *Reaction: the store's queue and the collector*).

    Anticipation (as an anticipatory disk scheduler's): once an urgent holder releases it, the lock is
    kept from the others for `anticipate` seconds, because the next urgent write usually follows within a
    millisecond or two (a decision's commit, then its attempt): without it, a state-flush transaction
    slipped in between and the attempt waited for it (p90 ~11 ms). An urgent waiter takes it at once."""

    def __init__(self, anticipate: float = ANTICIPATE) -> None:
        self._locked = False
        self._urgent_holder = False
        self._anticipate = anticipate
        self._held_back: asyncio.TimerHandle | None = None  # the others kept waiting until it fires
        self._queues: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (deque(), deque())

    def locked(self) -> bool:
        return self._locked

    def urgent_waiting(self) -> bool:
        """Whether an urgent waiter is queued (also read from the database's thread: a deque's length)."""
        return bool(self._queues[0])

    async def acquire(self, urgent: bool = False) -> None:
        await self.wait(self.queue(urgent))

    def queue(self, urgent: bool = False) -> asyncio.Future[None]:
        """A place in the queue: a future that is done when the lock is the caller's (at once if free)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if (
            not self._locked
            and not self._queues[0]
            and (urgent or (self._held_back is None and not self._queues[1]))
        ):
            self._grant(waiter, urgent)
        else:
            self._queues[0 if urgent else 1].append(waiter)
        return waiter

    def _grant(self, waiter: asyncio.Future[None], urgent: bool) -> None:
        if self._held_back is not None and urgent:
            self._held_back.cancel()
            self._held_back = None
        self._locked = True
        self._urgent_holder = urgent
        waiter.set_result(None)

    def promote(self, waiter: asyncio.Future[None]) -> None:
        """Move a waiter of the other queue to the end of the urgent one (it became urgent). A waiter of the
        other queue may be waiting while the lock is free, held back after an urgent holder: urgent now, it
        gets the lock at once, as an urgent newcomer would (left queued, nobody would ever hand it the lock:
        bench/reaction.py stalled on it, every write of the daemon waiting behind it)."""
        with contextlib.suppress(ValueError):
            self._queues[1].remove(waiter)
            self._queues[0].append(waiter)
            if not self._locked:
                self._hand(0)

    async def wait(self, waiter: asyncio.Future[None]) -> None:
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed the lock, then cancelled before using it: hand it on
            else:
                for queue in self._queues:
                    with contextlib.suppress(ValueError):
                        queue.remove(waiter)
            raise

    def release(self) -> None:
        """Hand the lock to the first live urgent waiter; else, after an urgent holder, keep it from the
        others for `anticipate` seconds; else hand it to the first other waiter, or unlock."""
        if self._hand(0):
            return
        if self._urgent_holder and self._anticipate > 0:
            self._locked = self._urgent_holder = False
            self._held_back = asyncio.get_running_loop().call_later(self._anticipate, self._end_hold)
            return
        if not self._hand(1):
            self._locked = self._urgent_holder = False

    def _hand(self, which: int) -> bool:
        queue = self._queues[which]
        while queue:
            waiter = queue.popleft()
            if not waiter.done():
                self._grant(waiter, which == 0)
                return True
        return False

    def _end_hold(self) -> None:
        self._held_back = None
        if not self._locked and not self._hand(0):
            self._hand(1)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()


@dataclass(slots=True)
class _Commit:
    job: str
    state: str | None  # None: a newer commit of the job, queued after this one, writes the state
    row: DecisionRow | None
    outcome: tuple[int, OutcomeRow] | None = None  # (decision id, its new outcome): record_outcome
    done: asyncio.Future[int | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class SQLiteStore:
    def __init__(
        self,
        url: SQLiteURL | str,
        *,
        clock: Callable[[], float] = time.time,
        migrations: list[Migration] = MIGRATIONS,
    ) -> None:
        parsed = parse_url(url) if isinstance(url, str) else url
        if not isinstance(parsed, SQLiteURL):
            raise ValueError(f"SQLiteStore needs a sqlite:// URL, got {parsed.redacted}")
        self._url = parsed
        self._clock = clock
        check_migrations(migrations)
        self._migrations = migrations
        self._db: aiosqlite.Connection | None = None
        self._lock = _PriorityLock()
        self._urgent: list[_Commit] = []  # group commit queues (see commit)
        self._queued: list[_Commit] = []
        self._waiting: dict[str, _Commit] = {}  # job -> its newest commit not yet being written
        self._writer: asyncio.Future[None] | None = None
        self._group_waiter: asyncio.Future[None] | None = None  # the group writer's place in the lock's queue
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
        if self._db is not None:
            return
        try:
            if not self._url.memory:
                path = Path(self._url.path)
                path.parent.mkdir(parents=True, exist_ok=True)
                if path.is_dir():  # caught here: aiosqlite's own failure path races the loop's close
                    raise IsADirectoryError(f"{path} is a folder")
            connecting = aiosqlite.connect(self._url.path, timeout=self._url.timeout, isolation_level=None)
            # aiosqlite's worker thread is not a daemon thread: a process that ends without close()
            # (a crash) would hang at exit instead of letting systemd restart it. SQLite's own
            # journal keeps the file consistent if the thread dies mid-transaction.
            thread = getattr(connecting, "_thread", None)
            if isinstance(thread, threading.Thread):
                thread.daemon = True
            db = await connecting
        except (OSError, sqlite3.Error) as e:
            raise self._error(f"cannot open the database: {e}") from e
        try:
            async with self._lock:
                await db.execute("PRAGMA mmap_size=0")  # read(), never a mapped page (see the module doc)
                await self._while_locked(db, f"PRAGMA journal_mode={self._url.journal.upper()}")
                await db.execute("PRAGMA synchronous=FULL")  # a committed decision survives power loss
                await self._migrate(db)
                await self._check_writable(db)
        except BaseException as e:
            await db.close()
            if isinstance(e, sqlite3.Error):
                raise self._error(f"cannot open the database: {e}") from e
            raise
        self._db = db

    async def _while_locked(self, db: aiosqlite.Connection, statement: str) -> None:
        """Run a statement that only takes a lock, retrying while the database is locked.

        SQLite's busy timeout covers most waits, but not all: while another connection switches the
        file to WAL (two daemons starting at once), `journal_mode=WAL` and `BEGIN IMMEDIATE` can fail
        with "database is locked" at once. Retrying them is safe: they change nothing but locks.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._url.timeout
        while True:
            try:
                cursor = await db.execute(statement)
                await cursor.close()  # a PRAGMA's row left unread keeps its statement in progress
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or loop.time() >= deadline:
                    raise
            await asyncio.sleep(0.01)

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        try:
            await self._while_locked(db, "BEGIN IMMEDIATE")
            try:
                await db.execute(SCHEMA_VERSION_DDL["sqlite"])
                rows = list(await db.execute_fetchall("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
                for version, name, sql in pending(self._migrations, int(rows[0][0])):
                    for statement in sql["sqlite"]:
                        await db.execute(statement)
                    await db.execute(
                        "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                        (version, name, self._clock()),
                    )
                await db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    await db.execute("ROLLBACK")
                raise
        except MigrationListError as e:
            raise self._error(e) from e
        except sqlite3.Error as e:
            raise self._error(f"migration failed: {e}") from e

    async def _check_writable(self, db: aiosqlite.Connection) -> None:
        """A probe write at open. SQLite opens a file it cannot open for writing read-only, without a
        word, and such a connection never writes again even once the file could be: refuse to start
        (StoreError) rather than run on it."""
        try:
            await self._while_locked(db, "BEGIN IMMEDIATE")
            try:
                await self._probe_rows(db)
                await db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        await db.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise self._error(f"the database cannot be written: {e}") from e

    async def _probe_rows(self, db: aiosqlite.Connection) -> None:
        await db.execute(
            "INSERT INTO job_state (job, state, updated_at) VALUES (?, '{}', ?)"
            " ON CONFLICT (job) DO UPDATE SET updated_at = excluded.updated_at",
            (PROBE_JOB, self._clock()),
        )
        await db.execute("DELETE FROM job_state WHERE job = ?", (PROBE_JOB,))

    async def close(self) -> None:
        if self._writer is not None and not self._writer.done():
            with contextlib.suppress(Exception):
                await self._writer  # commits already accepted are written before the database closes
        db, self._db = self._db, None
        if db is not None:
            async with self._lock:
                await db.close()

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(max(1.0, self._url.timeout)), self._lock:
                db = self._db
                if db is None:
                    return False
                await db.execute_fetchall("SELECT 1")
                return True
        except Exception:
            return False

    # ------------------------------------------------------------ plumbing

    @asynccontextmanager
    async def _read(self, urgent: bool = False, held: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, under the lock (`held`: the caller holds it, and releases it)."""
        if not held:
            await self._lock.acquire(urgent)
        try:
            if self._db is None:
                raise self._error("not open")
            try:
                yield self._db
            except sqlite3.Error as e:
                raise self._error(e) from e
        finally:
            if not held:
                self._lock.release()

    async def _in_thread(
        self, work: Callable[[sqlite3.Connection], T], *, urgent: bool = False, held: bool = False
    ) -> T:
        """One write transaction run whole in the database's thread: BEGIN IMMEDIATE (retried while the
        database is locked, as `_while_locked`), `work`, COMMIT — ROLLBACK if anything raises — in one call.
        Statement by statement (`_write`), each statement is a round trip between the event loop and that
        thread, and on a busy daemon each waits for the loop: a pending decision's 3 ms transaction took
        17 ms at p90 under bench/reaction.py's load. Health as `_reported`."""
        timeout = self._url.timeout

        def tx(conn: sqlite3.Connection) -> T:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as e:
                    if "locked" not in str(e) or time.monotonic() >= deadline:
                        raise
                time.sleep(0.01)
            try:
                result = work(conn)
                conn.execute("COMMIT")
                return result
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise

        async with self._reported(), self._read(urgent, held) as db:
            # aiosqlite (pinned, 0.22) runs a function in the connection's thread with `_execute`: the
            # same queue its own calls go through, so it is ordered with them
            result: T = await db._execute(tx, db._conn)  # type: ignore[no-untyped-call]
        return result

    @asynccontextmanager
    async def _reported(self) -> AsyncIterator[None]:
        """A write's outcome goes to `health`: a refused row (IntegrityError) says nothing about the store."""
        try:
            yield
        except StoreError as e:
            if not isinstance(e.__cause__, sqlite3.IntegrityError):
                self.health.failed(e)
            raise
        self.health.ok()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction: committed when the block ends, rolled back if it raises. Health as
        `_reported`. (The writes that go before the others, urgent, use `_in_thread`.)"""
        async with self._reported(), self._read() as db:
            await self._while_locked(db, "BEGIN IMMEDIATE")
            try:
                yield db
                await db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # a failed COMMIT (I/O error) can leave it open, too
                    with contextlib.suppress(sqlite3.Error):
                        await db.execute("ROLLBACK")
                raise

    async def probe_write(self) -> bool:
        try:
            async with self._write() as db:
                await self._probe_rows(db)
            return True
        except Exception:
            return False

    # ------------------------------------------------------------ jobs

    async def put_job(self, name: str, doc: dict[str, Any]) -> int:
        check_job(name)
        text = encode(doc, "job document")
        now = self._clock()
        async with self._write() as db:
            rows = await db.execute_fetchall(
                "INSERT INTO jobs (name, doc, version, updated_at) VALUES (?, ?, 1, ?)"
                " ON CONFLICT (name) DO UPDATE SET doc = excluded.doc, version = jobs.version + 1,"
                " updated_at = excluded.updated_at RETURNING version",
                (name, text, now),
            )
            await tpl.log_change(_Tx(db), name, now)
            return int(next(iter(rows))[0])

    async def get_job(self, name: str) -> StoredJob | None:
        check_job(name)
        async with self._read() as db:
            rows = list(
                await db.execute_fetchall(
                    "SELECT name, doc, version, updated_at FROM jobs WHERE name = ?", (name,)
                )
            )
        return _job(rows[0]) if rows else None

    async def list_jobs(self) -> list[StoredJob]:
        async with self._read() as db:
            rows = await db.execute_fetchall("SELECT name, doc, version, updated_at FROM jobs ORDER BY name")
        return [_job(row) for row in rows]

    async def delete_job(self, name: str) -> bool:
        check_job(name)
        async with self._write() as db:
            cursor = await db.execute("DELETE FROM jobs WHERE name = ?", (name,))
            await db.execute("DELETE FROM job_state WHERE job = ?", (name,))
            await tpl.unlink_job(_Tx(db), name)
            if cursor.rowcount > 0:
                await tpl.log_change(_Tx(db), name, self._clock())
            return cursor.rowcount > 0

    async def job_changes(self, ranges: list[tuple[int, int | None]], limit: int) -> list[JobChange]:
        async with self._read() as db:
            return await jobchanges.changes(_Tx(db), ranges, limit)

    async def job_change_bounds(self) -> tuple[int, int]:
        async with self._read() as db:
            return await jobchanges.bounds(_Tx(db))

    async def prune_job_changes(self, before: float, limit: int) -> int:
        async with self._write() as db:
            return await jobchanges.prune(_Tx(db), before, limit)

    # ------------------------------------------------------------ templates (oceand/store/templates.py)

    async def get_template(self, name: str) -> StoredTemplate | None:
        async with self._read() as db:
            return await tpl.get_template(_Tx(db), name)

    async def list_templates(self) -> list[StoredTemplate]:
        async with self._read() as db:
            return await tpl.list_templates(_Tx(db))

    async def job_links(
        self, template: str | None = None, job: str | None = None, with_docs: bool = False
    ) -> list[JobLink]:
        async with self._read() as db:
            return await tpl.job_links(_Tx(db), template, job, with_docs)

    async def write_jobs(
        self,
        jobs: list[JobWrite],
        template: TemplateWrite | None = None,
        based_on: dict[str, int] | None = None,
    ) -> tuple[dict[str, int], int | None]:
        now = self._clock()

        def work(conn: sqlite3.Connection) -> tuple[dict[str, int], int | None]:
            return _drive(tpl.write_jobs(_ThreadTx(conn), now, jobs, template, based_on))

        # whole in the database's thread: statement by statement (`_write`) a job took four round trips
        # through the loop, and 10,000 job files at start took 15 s in 500-job transactions
        return await self._in_thread(work)

    async def rename_template(self, name: str, to: str) -> int | None:
        async with self._write() as db:
            return await tpl.rename_template(_Tx(db), self._clock(), name, to)

    async def delete_template(self, name: str) -> bool:
        async with self._write() as db:
            return await tpl.delete_template(_Tx(db), name)

    # ------------------------------------------------------------ state and decisions

    async def load_state(self, job: str) -> dict[str, Any] | None:
        check_job(job)
        async with self._read() as db:
            rows = list(await db.execute_fetchall("SELECT state FROM job_state WHERE job = ?", (job,)))
        return dict(decode(rows[0][0])) if rows else None

    async def load_states(self) -> dict[str, dict[str, Any]]:
        async with self._read() as db:
            rows = await db.execute_fetchall("SELECT job, state FROM job_state")
        return {str(job): dict(decode(state)) for job, state in rows}

    async def commit(
        self,
        job: str,
        state: dict[str, Any],
        decision: dict[str, Any] | None = None,
        outcome: dict[str, Any] | None = None,
    ) -> int | None:
        """Store a job's state (and its decision) durably; the decision's id once it is on disk.

        Group commit: commits that arrive while a transaction is being written wait and go together in
        the next one, so thousands of jobs deciding in the same second cost a few fsyncs, not one each
        (with synchronous=FULL a fsync is a disk flush). Decisions about to be applied (`pending`) go
        first, so an active job's reaction does not queue behind a crowd of dry-run decisions."""
        check_job(job)
        row = decision_row(job, decision, outcome) if decision is not None else None
        return await self._enqueue(_Commit(job, encode(state, "state"), row))

    async def record_outcome(
        self,
        decision_id: int,
        job: str,
        outcome: dict[str, Any],
        state: dict[str, Any] | None = None,
        fence: Fence | None = None,
    ) -> None:
        """In the group commit queue too, so that a state written with it is never overwritten by an
        older state queued before it. No leases here (several daemons need MySQL): a fence is refused."""
        if fence is not None:
            raise FencedWrite("a SQLite store holds no shard leases: several daemons need a mysql:// store")
        check_decision_id(decision_id)
        check_job(job)
        item = _Commit(job, None if state is None else encode(state, "state"), None)
        item.outcome = (decision_id, outcome_row(outcome))
        await self._enqueue(item)

    async def _enqueue(self, item: _Commit) -> int | None:
        job = item.job
        if item.state is not None:
            # Pending decisions jump the queue, so an older commit of the same job may be written after
            # this one: it must not write its (older) state then.
            older = self._waiting.get(job)
            if older is not None:
                older.state = None
            self._waiting[job] = item
        urgent = item.row is not None and item.row.status == "pending"
        (self._urgent if urgent else self._queued).append(item)
        if urgent and self._group_waiter is not None:
            self._lock.promote(self._group_waiter)  # the group writer waits for the lock: go first
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_queued())
        # Awaited without a shield: a cancelled caller cancels `done`, but its commit stays queued and is
        # written all the same (`_done` skips a cancelled future). A shield cost each commit one more loop
        # iteration before its caller went on (its inner future's callback, then the outer one's).
        return await item.done

    async def _write_queued(self) -> None:
        while self._urgent or self._queued:
            # The lock first, then the batch: a pending decision that comes while the writer waits for the
            # lock promotes the wait and goes in this batch, not after it.
            self._group_waiter = self._lock.queue(urgent=bool(self._urgent))
            try:
                await self._lock.wait(self._group_waiter)
            finally:
                self._group_waiter = None
            # Urgent commits go alone: each statement of the transaction gives the GIL up in the database's
            # thread and waits up to a switch interval to get it back from a busy loop, so a pending
            # decision that carried 49 queued states and dry-run decisions took 25-55 ms in the thread
            # (bench/reaction.py) instead of ~1 ms.
            urgent = bool(self._urgent)
            if urgent:
                batch = self._urgent[:GROUP_MAX]
                del self._urgent[: len(batch)]
            else:
                batch = self._queued[:GROUP_MAX]
                del self._queued[: len(batch)]
            for item in batch:
                if self._waiting.get(item.job) is item:
                    del self._waiting[item.job]
            try:
                try:
                    ids = await self._commit_many(batch, held=True, yields=not urgent)
                finally:
                    self._lock.release()
            except StoreError as e:
                if len(batch) > 1 and isinstance(e.__cause__, sqlite3.IntegrityError):
                    # a row was refused: it must not fail the others, so write each on its own
                    for item in batch:
                        try:
                            _done(item, (await self._commit_many([item]))[0])
                        except StoreError as one:
                            _failed(item, one)
                else:
                    # the database itself failed (locked past the timeout, I/O, closed): every commit of
                    # the group gets that error once, instead of waiting out the timeout one by one
                    for item in batch:
                        _failed(item, e)
                continue
            except BaseException as e:  # cancelled (shutdown) or a bug: no caller waits forever
                for item in batch:
                    _failed(item, self._error(f"commit not written: {e!r}"))
                raise
            for item, result in zip(batch, ids, strict=False):
                _done(item, result)
            if len(ids) < len(batch):
                self._requeue(batch[len(ids) :])

    def _requeue(self, rest: list[_Commit]) -> None:
        """Commits a group transaction left for an urgent write (`_commit_many`'s `yields`) go back to the
        head of the queue, in order. A commit of the same job that came since they were taken is newer:
        one of them then writes no state (`_enqueue`'s rule, here after the fact)."""
        for item in rest:
            if item.state is not None:
                newer = self._waiting.get(item.job)
                if newer is None:
                    self._waiting[item.job] = item
                elif newer is not item:
                    item.state = None
        self._queued[:0] = rest

    async def _commit_many(
        self, batch: list[_Commit], held: bool = False, yields: bool = False
    ) -> list[int | DecisionNotFound | None]:
        """One transaction for the batch (`held`: under the caller's hold of the lock, which it releases),
        run whole in the database's thread (`_in_thread`). The states go in one executemany at the end: the
        batch holds at most one state per job (`_enqueue` drops an older commit's state).

        `yields`: once an urgent write waits (a decision about to be applied, an attempt), the transaction
        ends after the commit at hand and the result is shorter than the batch; the caller queues the rest
        again. Each statement in the database's thread gives the GIL up and waits to get it back from a
        busy loop: a 50-commit group took up to 30 ms there, and the urgent write waited for all of it."""
        now = self._clock()
        urgent_waits = self._lock.urgent_waiting

        def work(conn: sqlite3.Connection) -> list[int | DecisionNotFound | None]:
            ids: list[int | DecisionNotFound | None] = []
            states: list[tuple[str, str, float]] = []
            for item in batch:
                if yields and ids and (self._urgent or urgent_waits()):  # read from this thread: len() only
                    break
                if item.outcome is not None:
                    did, out = item.outcome
                    if not conn.execute(
                        "SELECT 1 FROM decisions WHERE id = ? AND job = ?", (did, item.job)
                    ).fetchall():
                        ids.append(DecisionNotFound(f"decision {did} of job {item.job!r} does not exist"))
                        continue
                    conn.execute(
                        f"INSERT INTO actuation_outcomes {OUTCOME_COLUMNS} VALUES (?, ?, ?, ?, ?)"
                        " ON CONFLICT (decision_id) DO UPDATE SET status = excluded.status,"
                        " outcome = excluded.outcome, updated_at = excluded.updated_at",
                        (did, item.job, out.status, out.text, now),
                    )
                if item.state is not None:
                    states.append((item.job, item.state, now))
                row = item.row
                if row is None:
                    ids.append(None)
                    continue
                cursor = conn.execute(
                    "INSERT INTO decisions (job, at, status, body, result) VALUES (?, ?, ?, ?, '{}')",
                    (item.job, row.at, row.status, row.body),
                )
                assert cursor.lastrowid is not None
                new_id = int(cursor.lastrowid)
                conn.execute(
                    f"INSERT INTO actuation_outcomes {OUTCOME_COLUMNS} VALUES (?, ?, ?, ?, ?)",
                    (new_id, item.job, row.outcome.status, row.outcome.text, now),
                )
                ids.append(new_id)
            if states:
                conn.executemany(
                    "INSERT INTO job_state (job, state, updated_at) VALUES (?, ?, ?) ON CONFLICT (job)"
                    " DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                    states,
                )
            return ids

        return await self._in_thread(work, held=held)

    async def decisions(self, job: str, limit: int = 50, since: float | None = None) -> list[dict[str, Any]]:
        check_job(job)
        check_limit(limit)
        low = -float("inf") if since is None else check_time(since, "since")
        async with self._read() as db:
            rows = await db.execute_fetchall(
                f"{DECISION_SELECT} WHERE d.job = ? AND d.at >= ? ORDER BY d.at DESC, d.id DESC LIMIT ?",
                (job, low, limit),
            )
        return [decision_dict(*row) for row in rows]

    async def pending_decisions(self) -> list[dict[str, Any]]:
        async with self._read() as db:
            rows = await db.execute_fetchall(f"{DECISION_SELECT} WHERE {PENDING_WHERE} ORDER BY d.at, d.id")
        return [decision_dict(*row) for row in rows]

    async def pending_attempt_decisions(self) -> list[dict[str, Any]]:
        async with self._read() as db:
            rows = await db.execute_fetchall(
                f"{DECISION_SELECT} WHERE {PENDING_ATTEMPT_WHERE} ORDER BY d.at, d.id"
            )
        return [decision_dict(*row) for row in rows]

    # ------------------------------------------------------------ schedule fires

    async def claim_fire(self, job: str, rule: str, at: float, status: str) -> bool:
        check_job(job)
        check_rule(rule)
        at = check_time(at, "at")
        check_status(status, FIRE_STATUSES, "fire status")
        async with self._write() as db:
            cursor = await db.execute(
                "INSERT INTO fires (job, rule, at, status, recorded_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (job, rule, at) DO NOTHING",
                (job, rule, at, status, self._clock()),
            )
            return cursor.rowcount == 1

    async def fires(self, job: str, limit: int = 50) -> list[dict[str, Any]]:
        check_job(job)
        check_limit(limit)
        async with self._read() as db:
            rows = await db.execute_fetchall(
                "SELECT rule, at, status, recorded_at FROM fires WHERE job = ?"
                " ORDER BY at DESC, rule LIMIT ?",
                (job, limit),
            )
        return [{"rule": r[0], "at": float(r[1]), "status": r[2], "recorded_at": float(r[3])} for r in rows]

    # ------------------------------------------------------------ actuation attempts

    async def record_attempt(self, decision_id: int, job: str, attempt: dict[str, Any]) -> None:
        values = attempt_row(decision_id, job, attempt).values(self._clock())

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO actuation_attempts ({ATTEMPT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (decision_id, attempt) DO UPDATE SET status = excluded.status,"
                " deadline = excluded.deadline, detail = excluded.detail, updated_at = excluded.updated_at",
                values,
            )

        await self._in_thread(work, urgent=True)  # its own transaction, on disk before the write goes out

    async def attempts(self, decision_id: int) -> list[dict[str, Any]]:
        check_decision_id(decision_id)
        async with self._read() as db:
            rows = await db.execute_fetchall(
                f"{ATTEMPT_SELECT} WHERE decision_id = ? ORDER BY attempt",
                (decision_id,),
            )
        return [attempt_dict(r) for r in rows]

    # ------------------------------------------------------------ tokens and audit

    async def list_tokens(self) -> list[dict[str, Any]]:
        async with self._read() as db:
            rows = await db.execute_fetchall("SELECT name, record FROM tokens ORDER BY name")
        return [{"name": r[0], "record": dict(decode(r[1]))} for r in rows]

    async def create_token(self, name: str, record: dict[str, Any]) -> bool:
        check_token_name(name)
        text = encode(record, "token record")
        async with self._write() as db:
            cursor = await db.execute(
                "INSERT INTO tokens (name, record, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
                (name, text, self._clock()),
            )
            return cursor.rowcount == 1

    async def update_token(self, name: str, record: dict[str, Any]) -> bool:
        check_token_name(name)
        text = encode(record, "token record")
        async with self._write() as db:
            cursor = await db.execute(
                "UPDATE tokens SET record = ?, updated_at = ? WHERE name = ?", (text, self._clock(), name)
            )
            return cursor.rowcount > 0

    async def delete_token(self, name: str) -> bool:
        check_token_name(name)
        async with self._write() as db:
            cursor = await db.execute("DELETE FROM tokens WHERE name = ?", (name,))
            return cursor.rowcount > 0

    async def add_audit(self, entry: dict[str, Any]) -> int:
        return (await self.add_audits([entry]))[0]

    async def add_audits(self, entries: list[dict[str, Any]]) -> list[int]:
        rows = [tuple(audit_row(e).values()) for e in entries]
        if not rows:
            return []

        def work(conn: sqlite3.Connection) -> list[int]:
            ids = []
            for row in rows:
                cursor = conn.execute(
                    f"INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row
                )
                assert cursor.lastrowid is not None
                ids.append(int(cursor.lastrowid))
            return ids

        return await self._in_thread(work)  # whole in the database's thread: one round trip, not one a row

    async def audit(
        self, job: str | None = None, since: float | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        check_limit(limit)
        where = ["at >= ?"]
        args: list[Any] = [-float("inf") if since is None else check_time(since, "since")]
        if job is not None:
            where.append("job = ?")
            args.append(check_job(job))
        async with self._read() as db:
            rows = await db.execute_fetchall(
                f"SELECT id, {AUDIT_COLUMNS} FROM audit WHERE {' AND '.join(where)}"
                " ORDER BY at DESC, id DESC LIMIT ?",
                (*args, limit),
            )
        return [audit_dict(r) for r in rows]

    # ------------------------------------------------------------ history

    async def add_history(self, rows: list[dict[str, Any]]) -> int:
        values = [history_row(r) for r in rows]
        if not values:
            return 0

        def work(conn: sqlite3.Connection) -> None:
            conn.executemany(
                f"INSERT OR REPLACE INTO history ({HISTORY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", values
            )

        # whole in the database's thread: statement by statement (`_write`), the lock was held across
        # three round trips through a busy loop (~18 ms), and a pending decision waited for them
        await self._in_thread(work)
        return len(values)

    async def history(
        self, job: str, since: float | None = None, until: float | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        check_job(job)
        check_limit(limit)
        low = -float("inf") if since is None else check_time(since, "since")
        high = float("inf") if until is None else check_time(until, "until")
        async with self._read() as db:
            rows = await db.execute_fetchall(
                "SELECT t, step, vals, ready, running, desired, decision FROM history"
                " WHERE job = ? AND t >= ? AND t < ? ORDER BY t LIMIT ?",
                (job, low, high, limit),
            )
        return [history_dict(r) for r in rows]

    async def rollup_history(self, before: float, limit: int) -> int:
        check_time(before, "before")
        check_limit(limit)

        def work(conn: sqlite3.Connection) -> int:
            rows = conn.execute(
                "SELECT job, t, vals, ready, running, desired, decision FROM history"
                " WHERE step = 0 AND t < ? ORDER BY job, t LIMIT ?",
                (before, limit),
            ).fetchall()
            out, gone = rollup(rows, complete=len(rows) < limit)
            conn.executemany("DELETE FROM history WHERE job = ? AND t = ?", gone)
            conn.executemany(
                f"INSERT OR REPLACE INTO history ({HISTORY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", out
            )
            return len(gone)

        return await self._in_thread(work)  # whole in the database's thread, as add_history

    async def prune_history(self, before: float, limit: int) -> int:
        check_time(before, "before")
        check_limit(limit)

        def work(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM history WHERE rowid IN (SELECT rowid FROM history WHERE step IN (0, 60)"
                " AND t < ? LIMIT ?)",
                (before, limit),
            ).rowcount

        return await self._in_thread(work)  # whole in the database's thread, as add_history

    async def prune_audit(self, before: float, limit: int) -> int:
        check_limit(limit)
        async with self._write() as db:
            cursor = await db.execute(
                "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < ? ORDER BY at LIMIT ?)",
                (check_time(before, "before"), limit),
            )
            return max(0, cursor.rowcount)


def _done(item: _Commit, result: int | DecisionNotFound | None) -> None:
    if isinstance(result, DecisionNotFound):
        _failed(item, result)
    elif not item.done.done():  # done: its caller was cancelled (the commit was written all the same)
        item.done.set_result(result)


def _failed(item: _Commit, error: BaseException) -> None:
    if not item.done.done():
        item.done.set_exception(error)


class _Tx:
    """oceand/store/templates.py's view of a transaction on the connection."""

    lock = ""  # BEGIN IMMEDIATE holds the database's write lock already
    upsert_link = (
        "INSERT INTO job_templates (job, template, own, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (job)"
        " DO UPDATE SET template = excluded.template, own = excluded.own, updated_at = excluded.updated_at"
    )

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await self._db.execute_fetchall(sql, args)]

    async def run(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        cursor = await self._db.execute(sql, args)
        return int(cursor.rowcount)


class _ThreadTx:
    """`_Tx` in the database's thread, on the sqlite3 connection itself: its coroutines never suspend, so
    oceand/store/templates.py's functions run there through `_drive`."""

    lock = _Tx.lock
    upsert_link = _Tx.upsert_link

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._conn.execute(sql, args).fetchall()]

    async def run(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        return int(self._conn.execute(sql, args).rowcount)


def _drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (one on `_ThreadTx`) to its end, here and now."""
    try:
        coro.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coro.close()
    raise RuntimeError("a coroutine on _ThreadTx suspended")


def _job(row: Any) -> StoredJob:
    return StoredJob(name=row[0], doc=dict(decode(row[1])), version=int(row[2]), updated_at=float(row[3]))
