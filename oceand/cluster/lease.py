"""Shard leases in MySQL on the database clock (HA.md §3.2–§3.4, §4.4, §6.5).

One row per shard in `shard_lease (shard, owner, epoch, expires_at)`; one row per running daemon in
`daemon`. Every statement is a single autocommit statement on a pool of its own (`Coordinator`):

- autocommit, so a plain SELECT never reads an old REPEATABLE READ snapshot (aiomysql's default
  `autocommit=False` would hide every takeover from a poller, HA.md §3.3 pitfall 1);
- `innodb_lock_wait_timeout = 1` and `wait_timeout = 30` on its sessions, and no statement ever holds a row
  lock across a round trip (pitfall 3);
- every call under `asyncio.timeout(store_timeout)` (aiomysql has no per-query timeout; a cancelled call
  closes its connection, which the pool then drops: pitfall 4);
- every lease statement changes `expires_at` or `epoch`, so the affected-row count (changed rows: PyMySQL
  does not set CLIENT.FOUND_ROWS) equals the matched rows (pitfall 5);
- expiry is judged by `NOW(6)` on the database only; session `time_zone = '+00:00'` on every daemon.

`LeaseManager` runs the loop: every `renew_interval` it renews its membership row and all its leases in
one statement each; every `acquire_poll` (or when kicked) it reads the live members and the leases, and
releases (rate-limited, revoke-then-assign) or acquires shards as rendezvous (`assign.plan`) says. It
never takes a valid lease. `may_act(shard)` is a pure comparison with the local monotonic clock: a shard
may be acted on until `stop_acting_after` after the send time of its last successful renewal; a renewal
that fails or times out leaves that time where it was (uncertainty counts as loss).

`fenced_attempt` is the atomic check-and-record of HA.md §3.2: the intent (an `actuation_attempts` row)
is inserted only while this daemon's epoch of the job's shard holds and at least `intent_margin` of the
lease is left by the database clock (`LOCK IN SHARE MODE` serialises it with a takeover's UPDATE).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiomysql

from oceand.cluster import assign
from oceand.cluster.ids import shard_of
from oceand.cluster.intent import may_act
from oceand.metrics import Metrics
from oceand.store.base import AttemptRow, MySQLURL, StoreError
from oceand.store.mysql import RETRY_TRANSACTION, create_pool

log = logging.getLogger("oceand.cluster")
T = TypeVar("T")
Cursor = Any  # aiomysql.Cursor (untyped library)
_DUPLICATE_KEY = 1062


class ClusterError(Exception):
    """The daemon cannot join the cluster (another shard count or name in this database, or a live daemon
    with the same advertised address): it must not start."""


class CoordError(StoreError):
    """A coordination statement failed or did not finish within store_timeout: its outcome is unknown."""


# an attempt row (AttemptRow.values, then the decision key) taken with the lease row's shard, epoch and
# owner, from that row only while it is (shard, epoch, owner): the fenced intent insert and outcome write
_INTENT_FROM_LEASE = (
    "INSERT INTO actuation_attempts (decision_id, attempt, job, to_count, sent_at, deadline,"
    " baseline, status, detail, updated_at, shard, epoch, owner, decision_key)"
    " SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, shard, epoch, owner, %s FROM shard_lease"
    " WHERE shard = %s AND epoch = %s AND owner = %s"
)


class Fenced(StoreError):
    """The intent was not inserted: the shard's lease is not ours with this epoch, or has less than
    intent_margin left by the database clock. Nothing may be sent."""


class DuplicateDecision(Exception):
    """An intent with this (job, decision key, attempt) exists: the decision was already actuated."""


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    """The `[cluster]` timings (seconds), see docs/configuration.md."""

    name: str = "oceand"
    shards: int = 1024
    lease_ttl: float = 3.0
    renew_interval: float = 1.0
    stop_acting_after: float = 2.0
    acquire_poll: float = 0.5
    intent_margin: float = 1.0
    actuation_budget: float = 2.0
    takeover_grace: float = 3.0
    release_rate: int = 64
    member_min_age: float = 2.0
    store_timeout: float = 0.8


@dataclass(slots=True)
class Held:
    epoch: int
    valid_until: float  # local monotonic clock: act only before this
    acquired_at: float  # database clock (UNIX seconds) of the acquisition: buckets begun before are gaps
    draining: bool = False
    previous: int = 0  # the shard's epoch before this acquisition (0: never held): its handoff's epoch


@dataclass(frozen=True, slots=True)
class Member:
    instance_id: str
    stable_id: str
    addr: str


@dataclass(slots=True)
class ClusterView:
    """The last poll: live members, and each shard's (owner instance id, epoch, valid)."""

    members: list[Member] = field(default_factory=list)
    leases: list[tuple[str | None, int, bool]] = field(default_factory=list)


def _us(seconds: float) -> int:
    return max(0, round(seconds * 1_000_000))


DEADLOCK_RETRIES = 3  # a single statement InnoDB rolled back (store.mysql.RETRY_TRANSACTION) is run again


class Coordinator:
    """The coordination pool: autocommit sessions, short lock waits, every call bounded."""

    def __init__(self, url: MySQLURL, timeout: float, *, pool_size: int = 3) -> None:
        self.url = url
        self.timeout = timeout
        self.pool_size = pool_size
        self._pool: Any = None

    async def open(self) -> None:
        u = self.url
        try:
            async with asyncio.timeout(u.connect_timeout + self.timeout):
                self._pool = await create_pool(
                    u,
                    self.pool_size,
                    autocommit=True,
                    session=", innodb_lock_wait_timeout = 1, wait_timeout = 30, time_zone = '+00:00'",
                    recycle=600,
                )
        except TimeoutError:
            raise CoordError(f"cluster store {u.redacted}: no connection in time") from None
        except (aiomysql.Error, OSError) as e:
            raise CoordError(f"cluster store {u.redacted}: cannot connect: {e}") from e

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
            await pool.wait_closed()

    async def run(
        self,
        fn: Callable[[Cursor], Awaitable[T]],
        timeout: float | None = None,
        *,
        one_statement: bool = False,
    ) -> T:
        """`fn` on one pooled connection, within `timeout` (store_timeout) or CoordError. Each statement
        commits by itself (autocommit). `one_statement`: `fn` runs one statement, which InnoDB rolls back
        whole when it picks it as a deadlock's victim (1213): it is run again (up to DEADLOCK_RETRIES
        times, within the same timeout). Two daemons starting at once deadlocked on `shard_lease` /
        `daemon` rows, and one of them exited ("store unavailable at start"; tests/ha/test_chaos.py)."""
        if self._pool is None:
            raise CoordError("the cluster store is not open")
        try:
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                tries = 0
                while True:
                    try:
                        async with self._pool.acquire() as conn, conn.cursor() as cur:
                            return await fn(cur)
                    except (aiomysql.OperationalError, aiomysql.InternalError) as e:
                        tries += 1
                        if not (
                            one_statement
                            and e.args
                            and e.args[0] in RETRY_TRANSACTION
                            and tries <= DEADLOCK_RETRIES
                        ):
                            raise
                        await asyncio.sleep(0.01 * tries)
        except TimeoutError:
            raise CoordError(f"cluster store: no answer within {self.timeout:g}s") from None
        except aiomysql.IntegrityError:
            raise
        except (aiomysql.Error, OSError) as e:
            raise CoordError(f"cluster store: {e}") from e

    async def execute(self, sql: str, args: Any = None, timeout: float | None = None) -> int:
        async def go(cur: Cursor) -> int:
            await cur.execute(sql, args)
            return int(cur.rowcount)

        return await self.run(go, timeout, one_statement=True)

    async def fetch(self, sql: str, args: Any = None, timeout: float | None = None) -> list[tuple[Any, ...]]:
        async def go(cur: Cursor) -> list[tuple[Any, ...]]:
            await cur.execute(sql, args)
            return [tuple(r) for r in await cur.fetchall()]

        return await self.run(go, timeout, one_statement=True)


Acquired = Callable[[int, Held], None]
Lost = Callable[[int, str], None]
Drain = Callable[[int], Awaitable[None]]
HandOver = Callable[[list[tuple[int, int]]], Awaitable[None]]


class LeaseManager:
    def __init__(
        self,
        coord: Coordinator,
        settings: LeaseSettings,
        *,
        instance_id: str,
        stable_id: str,
        addr: str | None = None,
        metrics: Metrics | None = None,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.coord = coord
        self.s = settings
        self.me = instance_id
        self.stable_id = stable_id
        self.addr = addr if addr is not None else stable_id
        self.metrics = metrics
        self.mono = mono
        self.held: dict[int, Held] = {}
        self.view = ClusterView()
        self.on_acquired: list[Acquired] = []
        self.on_lost: list[Lost] = []
        self.drain: Drain | None = None  # waits for a shard's in-flight writes before it is released
        # then, still held: the shards' open buckets are handed over (Redis), (shard, epoch) pairs
        self.hand_over: HandOver | None = None
        self._bucket = assign.TokenBucket(settings.release_rate, settings.release_rate)
        self._kick = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    # ---- what the engine asks ------------------------------------------------------------------

    def shard_of(self, job: str) -> int:
        return shard_of(job, self.s.shards)

    def may_act(self, shard: int) -> bool:
        h = self.held.get(shard)
        return h is not None and not h.draining and may_act(h.valid_until, self.mono())

    def epoch(self, shard: int) -> int | None:
        h = self.held.get(shard)
        return None if h is None else h.epoch

    def owner_of(self, shard: int) -> tuple[str | None, int]:
        """(owner instance id, epoch) of a shard as last polled (this daemon's own view for its shards)."""
        h = self.held.get(shard)
        if h is not None:
            return self.me, h.epoch
        if shard < len(self.view.leases):
            owner, epoch, valid = self.view.leases[shard]
            return (owner if valid else None), epoch
        return None, 0

    def describe(self) -> dict[str, Any]:
        """GET /api/v1/cluster: members with the shards each holds, every shard's lease as last read
        (this daemon's own as of its last renewal), and how many are unowned."""
        view = self.view
        held: dict[str, int] = {}
        rows = []
        for shard, (owner, epoch, valid) in enumerate(view.leases):
            if shard in self.held:
                owner, epoch, valid = self.me, self.held[shard].epoch, True
            rows.append({"shard": shard, "owner": owner, "epoch": epoch, "valid": valid})
            if owner is not None and valid:
                held[owner] = held.get(owner, 0) + 1
        members = [
            {
                "instance_id": m.instance_id,
                "stable_id": m.stable_id,
                "addr": m.addr,
                "shards_held": held.get(m.instance_id, 0),
            }
            for m in view.members
        ]
        return {
            "enabled": True,
            "name": self.s.name,
            "shards": self.s.shards,
            "this_daemon": self.me,
            "members": members,
            "unowned": sum(1 for r in rows if r["owner"] is None or not r["valid"]),
            "leases": rows,
        }

    # ---- start and stop ------------------------------------------------------------------------

    async def start(self, *, loops: bool = True) -> None:
        await self.ensure_cluster()
        await self.join()
        await self.poll_once()
        if loops:
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._renew_loop(), name="cluster:renew"),
                loop.create_task(self._poll_loop(), name="cluster:poll"),
            ]

    async def ensure_cluster(self) -> None:
        """The `cluster_meta` row (name, shard count), checked against this daemon's settings, and one
        `shard_lease` row per shard."""
        await self.coord.execute(
            "INSERT INTO cluster_meta (name, shards, created_at) VALUES (%s, %s, NOW(6))"
            " ON DUPLICATE KEY UPDATE name = name",
            (self.s.name, self.s.shards),
        )
        rows = await self.coord.fetch("SELECT name, shards FROM cluster_meta")
        for name, shards in rows:
            if name != self.s.name:
                raise ClusterError(
                    f"this database belongs to cluster {name!r}, not {self.s.name!r} ([cluster] name): "
                    "one cluster per database"
                )
            if int(shards) != self.s.shards:
                raise ClusterError(
                    f"cluster {name!r} was created with {shards} shards; [cluster] shards = {self.s.shards} "
                    "(the count is fixed when the cluster is created)"
                )
        values = ",".join(f"({s})" for s in range(self.s.shards))
        await self.coord.execute(
            f"INSERT INTO shard_lease (shard) VALUES {values} ON DUPLICATE KEY UPDATE shard = shard",
            timeout=10.0,
        )

    async def join(self) -> None:
        """Register this daemon. A live row with the same stable id (a daemon killed a moment ago, or a
        second daemon with the same `advertise`) is waited out for one lease TTL, then refused."""
        end = self.mono() + self.s.lease_ttl + 1.0
        while True:
            rows = await self.coord.fetch(
                "SELECT instance_id FROM daemon WHERE stable_id = %s AND instance_id <> %s"
                " AND expires_at > NOW(6)",
                (self.stable_id, self.me),
            )
            if not rows:
                break
            if self.mono() >= end:
                raise ClusterError(
                    f"daemon {rows[0][0]} is live with the same advertise address {self.stable_id!r}: "
                    "each daemon needs its own [cluster] advertise"
                )
            await asyncio.sleep(0.2)
        await self.coord.execute(
            "DELETE FROM daemon WHERE expires_at < NOW(6) - INTERVAL 1 HOUR"
        )  # rows of daemons long gone
        await self.coord.execute(
            "INSERT INTO daemon (instance_id, stable_id, addr, started_at, expires_at)"
            " VALUES (%s, %s, %s, NOW(6), NOW(6) + INTERVAL %s MICROSECOND)",
            (self.me, self.stable_id, self.addr, _us(self.s.lease_ttl)),
        )

    async def stop(self) -> None:
        """Clean shutdown (SIGTERM): stop the loops, release every held shard (draining each first) and
        leave; successors take the shards at their next poll instead of after the TTL."""
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        with contextlib.suppress(StoreError):
            await self.release(sorted(self.held))
        with contextlib.suppress(StoreError):
            await self.coord.execute("DELETE FROM daemon WHERE instance_id = %s", (self.me,))

    def kick(self) -> None:
        """Poll now (a wake-up, e.g. a pub/sub message; never trusted for anything but timing)."""
        self._kick.set()

    # ---- the loop ------------------------------------------------------------------------------

    async def _renew_loop(self) -> None:
        while not self._stopping:
            started = self.mono()
            try:
                await self.renew_once()
            except StoreError as e:
                log.warning("lease renewal failed: %s", e, extra={"event": "lease_renew_failed"})
            self.expire_local()
            await asyncio.sleep(max(0.0, self.s.renew_interval - (self.mono() - started)))

    async def _poll_loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.s.acquire_poll):
                    await self._kick.wait()
            self._kick.clear()
            try:
                await self.poll_once()
            except StoreError as e:
                log.warning("cluster poll failed: %s", e, extra={"event": "cluster_poll_failed"})

    async def renew_once(self) -> bool:
        """Renew the membership row and every held lease; True when all were renewed. A shard not renewed
        (taken over, or expired by the database clock) is dropped at once ("lease_lost")."""
        await self.coord.execute(
            "UPDATE daemon SET expires_at = NOW(6) + INTERVAL %s MICROSECOND WHERE instance_id = %s",
            (_us(self.s.lease_ttl), self.me),
        )
        held = dict(self.held)
        if not held:
            return True
        t0 = self.mono()
        pairs = sorted((s, h.epoch) for s, h in held.items())
        placeholders = ",".join(["(%s,%s)"] * len(pairs))
        args: list[Any] = [_us(self.s.lease_ttl), self.me]
        for s, e in pairs:
            args += [s, e]
        n = await self.coord.execute(
            "UPDATE shard_lease SET expires_at = NOW(6) + INTERVAL %s MICROSECOND"
            f" WHERE owner = %s AND expires_at > NOW(6) AND (shard, epoch) IN ({placeholders})",
            args,
        )
        if self.metrics is not None:
            self.metrics.lease_renew.observe(self.mono() - t0)
        if n == len(pairs):
            renewed = set(held)
        else:
            rows = await self.coord.fetch(
                "SELECT shard, epoch FROM shard_lease WHERE owner = %s AND expires_at > NOW(6)", (self.me,)
            )
            still = {(int(s), int(e)) for s, e in rows}
            renewed = {s for s, e in pairs if (s, e) in still}
        for s in held:
            h = self.held.get(s)
            if h is None or h.epoch != held[s].epoch:
                continue  # released or re-acquired meanwhile
            if s in renewed:
                h.valid_until = t0 + self.s.stop_acting_after
            else:
                self._lose(s, "taken")
        return len(renewed) == len(pairs)

    def expire_local(self) -> None:
        """Drop the shards whose last successful renewal is older than stop_acting_after (local clock):
        no store round trip needed to stop acting; the shard is acquired again, with a new epoch."""
        now = self.mono()
        for s, h in list(self.held.items()):
            if not may_act(h.valid_until, now):
                self._lose(s, "not_renewed")

    def lose(self, shard: int, reason: str) -> None:
        """Stop acting on `shard` now (e.g. a newer epoch wrote its hot state in Redis): it is dropped as if
        not renewed, and acquired again (with a new epoch) only when rendezvous and the leases allow."""
        self._lose(shard, reason)

    def _lose(self, shard: int, reason: str) -> None:
        if self.held.pop(shard, None) is None:
            return
        log.warning("shard %d lost (%s)", shard, reason, extra={"event": "lease_lost", "shard": shard})
        if self.metrics is not None:
            self.metrics.lease_lost.labels(reason).inc()
            self.metrics.shards_held.set(len(self.held))
        for cb in self.on_lost:
            cb(shard, reason)

    async def read_view(self) -> ClusterView:
        rows = await self.coord.fetch(
            "SELECT instance_id, stable_id, addr FROM daemon WHERE expires_at > NOW(6)"
            " AND started_at < NOW(6) - INTERVAL %s MICROSECOND",
            (_us(self.s.member_min_age),),
        )
        members = [Member(str(i), str(s), str(a)) for i, s, a in rows]
        leases: list[tuple[str | None, int, bool]] = [(None, 0, False)] * self.s.shards
        for shard, owner, epoch, valid in await self.coord.fetch(
            "SELECT shard, owner, epoch, expires_at > NOW(6) FROM shard_lease WHERE shard < %s",
            (self.s.shards,),
        ):
            leases[int(shard)] = (None if owner is None else str(owner), int(epoch), bool(valid))
        return ClusterView(members, leases)

    async def poll_once(self) -> assign.Plan:
        """Read members and leases; release and acquire as rendezvous says (HA.md §4.4). Shards held past
        stop_acting_after (a pause: this loop may run before the renewal's) are lost first, not released."""
        self.expire_local()
        self.view = view = await self.read_view()
        owner_of = {m.instance_id: m.stable_id for m in view.members}
        desired = assign.desired_owners({m.stable_id for m in view.members}, self.s.shards)
        leases = [assign.LeaseView(o, v) for o, _, v in view.leases]
        wanted = [s for s in self.held if desired[s] not in (None, self.stable_id)]
        budget = self._bucket.take(self.mono(), len(wanted)) if wanted else 0
        p = assign.plan(self.stable_id, self.held, desired, leases, owner_of, budget)
        if p.release:
            await self.release(p.release)
        if p.acquire and not self._stopping:
            await self.acquire_many(p.acquire)
        return p

    async def acquire(self, shard: int) -> Held | None:
        """Take one free or expired lease; None when not taken (see `acquire_many`)."""
        return (await self.acquire_many([shard])).get(shard)

    async def acquire_many(self, shards: list[int]) -> dict[int, Held]:
        """Take the free or expired leases among `shards` (never a valid one) in one statement: each taken
        shard's epoch becomes epoch + 1, and at least the database clock in ms, so epochs keep growing
        even after a failover that lost the last bump. The rows this statement took are told apart by
        their new `expires_at` (`@t` + TTL, `@t` being this statement's NOW(6)), read on the same
        connection. Returns the shards taken."""
        shards = [s for s in shards if s not in self.held]
        if not shards:
            return {}
        t0 = self.mono()
        marks = ",".join(["%s"] * len(shards))
        ttl = _us(self.s.lease_ttl)
        ends: dict[int, float] = {}  # shard -> the end of its former lease (database clock), held before
        before: dict[int, int] = {}  # shard -> its former epoch (the releasing owner's handoff is under it)

        async def go(cur: Cursor) -> list[tuple[Any, ...]]:
            # the former leases' ends, for oceand_takeover_seconds (a plain read: autocommit, no lock)
            await cur.execute(
                f"SELECT shard, epoch, UNIX_TIMESTAMP(expires_at) FROM shard_lease WHERE shard IN ({marks})",
                shards,
            )
            for s, epoch, end in await cur.fetchall():
                if int(epoch) > 0:
                    ends[int(s)], before[int(s)] = float(end), int(epoch)
            await cur.execute("SET @t = NOW(6)")
            await cur.execute(
                "UPDATE shard_lease SET owner = %s,"
                " epoch = GREATEST(epoch + 1, FLOOR(UNIX_TIMESTAMP(@t) * 1000)),"
                " expires_at = @t + INTERVAL %s MICROSECOND"
                f" WHERE shard IN ({marks}) AND (owner IS NULL OR expires_at < @t)",
                (self.me, ttl, *shards),
            )
            if cur.rowcount == 0:
                return []
            await cur.execute(
                "SELECT shard, epoch, UNIX_TIMESTAMP(@t) FROM shard_lease"
                f" WHERE owner = %s AND shard IN ({marks}) AND expires_at = @t + INTERVAL %s MICROSECOND",
                (self.me, *shards, ttl),
            )
            return [tuple(r) for r in await cur.fetchall()]

        rows = await self.coord.run(go)
        taken: dict[int, Held] = {}
        for shard, epoch, now in rows:
            h = Held(
                int(epoch), t0 + self.s.stop_acting_after, float(now), previous=before.get(int(shard), 0)
            )
            self.held[int(shard)] = taken[int(shard)] = h
        if taken:
            log.info(
                "%d shards acquired", len(taken), extra={"event": "lease_acquired", "shards": sorted(taken)}
            )
            if self.metrics is not None:
                self.metrics.handoff_shards.labels("acquired").inc(len(taken))
                for shard, h in taken.items():
                    if shard in ends:  # a takeover or handoff, not a shard never held
                        self.metrics.takeover.observe(max(0.0, h.acquired_at - ends[shard]))
                self.metrics.shards_held.set(len(self.held))
            for shard, h in taken.items():
                for cb in self.on_acquired:
                    cb(shard, h)
        return taken

    async def release(self, shards: Iterable[int]) -> int:
        """Revoke (HA.md §4.4 step 2): mark each shard draining (no new intents), wait for its in-flight
        writes (`drain`, at most actuation_budget), then free the lease for its epoch."""
        shards = [s for s in shards if s in self.held]
        for s in shards:
            self.held[s].draining = True
        if self.drain is not None and shards:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.s.actuation_budget):
                    await asyncio.gather(*(self.drain(s) for s in shards))
        if self.hand_over is not None and shards:
            try:  # before the lease is freed: a successor cannot acquire it and look for them too early
                async with asyncio.timeout(self.s.actuation_budget):
                    await self.hand_over([(s, self.held[s].epoch) for s in shards if s in self.held])
            except Exception:  # a handoff only completes the successor's first buckets: never block a release
                log.exception("handoff of %d released shards failed", len(shards))
        pairs = [(s, self.held.pop(s).epoch) for s in shards if s in self.held]
        if not pairs:
            return 0
        args: list[Any] = [self.me]
        for s, e in pairs:
            args += [s, e]
        try:
            return await self.coord.execute(
                "UPDATE shard_lease SET owner = NULL, expires_at = NOW(6)"
                f" WHERE owner = %s AND (shard, epoch) IN ({','.join(['(%s,%s)'] * len(pairs))})",
                args,
            )
        finally:  # not acted on any more, whether the statement got through or not (the TTL frees them)
            if self.metrics is not None:
                self.metrics.handoff_shards.labels("released").inc(len(pairs))
                self.metrics.shards_held.set(len(self.held))
            for s, _ in pairs:
                for cb in self.on_lost:
                    cb(s, "released")

    # ---- the fenced intent ---------------------------------------------------------------------

    async def fenced_attempt(
        self,
        shard: int,
        epoch: int,
        decision_id: int,
        job: str,
        decision_key: str,
        row: AttemptRow,
        now: float,
    ) -> None:
        """Insert the attempt `row` as the intent of (job, decision_key),
        only while this daemon's lease of `shard` at `epoch` has more than intent_margin left by the
        database clock. Raises Fenced (0 rows: stop acting on the shard), DuplicateDecision (this
        decision's attempt exists: it was actuated), CoordError (unknown: nothing may be sent)."""
        values = row.values(now)

        async def go(cur: Cursor) -> int:
            await cur.execute(
                f"{_INTENT_FROM_LEASE} AND expires_at > NOW(6) + INTERVAL %s MICROSECOND LOCK IN SHARE MODE",
                (*values, decision_key, shard, epoch, self.me, _us(self.s.intent_margin)),
            )
            return int(cur.rowcount)

        try:
            n = await self.coord.run(go)
        except aiomysql.IntegrityError as e:
            if e.args and e.args[0] == _DUPLICATE_KEY:
                raise DuplicateDecision(f"{job} {decision_key}: already has this attempt") from None
            raise CoordError(f"cluster store: {e}") from e
        if n != 1:
            raise self._fenced(
                shard, f"shard {shard} epoch {epoch}: the lease is not ours or ends within the margin"
            )

    def _fenced(self, shard: int, message: str) -> Fenced:
        """A fenced statement matched no lease row: count it, stop acting on the shard."""
        if self.metrics is not None:
            self.metrics.intent_fenced.inc()
        self._lose(shard, "fenced")
        return Fenced(message)

    async def fenced_resolve(
        self,
        shard: int,
        epoch: int,
        decision_id: int,
        job: str,
        decision_key: str,
        row: AttemptRow,
        now: float,
    ) -> None:
        """Write an attempt's outcome (applied, failed, abandoned; its own intent or a former owner's
        found at a takeover) only while this daemon holds `shard` at `epoch`: one INSERT ... SELECT from
        the lease row under a shared lock, updating the existing row (its shard, epoch and owner stay the
        intent's) or inserting it when the intent's insert had no answer. A daemon whose epoch is stale
        (the shard was taken or released) writes nothing: Fenced, and it drops the shard; the new owner
        settles the write. Affected rows: 1 inserted, 2 updated, 0 for no lease row *or* a row already
        holding these values (PyMySQL counts changed rows, HA.md §3.3 pitfall 5), told apart by reading
        the lease again."""
        values = row.values(now)

        async def go(cur: Cursor) -> bool:
            await cur.execute(
                f"{_INTENT_FROM_LEASE} LOCK IN SHARE MODE"
                # only this decision's row: another decision's with the same key (a refused duplicate) stays
                " ON DUPLICATE KEY UPDATE"
                " status = IF(decision_id = VALUES(decision_id), VALUES(status), status),"
                " deadline = IF(decision_id = VALUES(decision_id), VALUES(deadline), deadline),"
                " detail = IF(decision_id = VALUES(decision_id), VALUES(detail), detail),"
                " updated_at = IF(decision_id = VALUES(decision_id), VALUES(updated_at), updated_at)",
                (*values, decision_key, shard, epoch, self.me),
            )
            if cur.rowcount > 0:
                return True
            await cur.execute(
                "SELECT 1 FROM shard_lease WHERE shard = %s AND epoch = %s AND owner = %s",
                (shard, epoch, self.me),
            )
            return await cur.fetchone() is not None

        try:
            ok = await self.coord.run(go)
        except aiomysql.IntegrityError as e:
            raise CoordError(f"cluster store: {e}") from e
        if not ok:
            raise self._fenced(
                shard, f"shard {shard} epoch {epoch}: the lease is not ours, the outcome is not written"
            )
