"""Hot per-job state and wake-ups in Redis (HA.md §6.4, §6.7 step 3, §6.9; PRODUCT §11).

Redis is a cache and a wake-up bus, never the authority: leases, intents and decisions live in the MySQL
store. Everything here degrades instead of failing. When Redis does not answer, writes and reads are
skipped and counted, `status()` says `degraded` (in /readyz, which stays ready), and a takeover loads the
store's state.

Keys (`<c>` is `[cluster] name`; see docs/cluster.md "Redis"):

- `oceand:{<c>:s<shard>}:st:<job>`: a hash `epoch, bucket_ts, state` (orjson), with a TTL of STATE_TTL
  (1 h). It is written by the shard's owner through the fenced Lua script FENCED_WRITE, which refuses a
  write whose epoch is older than the stored one.
- `oceand:{<c>:s<shard>}:handoff`: a string (orjson `{"epoch", "jobs": {job: [closed_upto, samples]}}`)
  holding the open buckets of a released shard's jobs, with a TTL of HANDOFF_TTL (30 s). The new owner
  takes it (GETDEL) when an older epoch left it.
- `oceand:{<c>}:events`: a pub/sub channel carrying `joined:<id>`, `leaving:<id>`, `released:<shard>:<epoch>`
  and `acquired:<shard>:<epoch>`. These are wake-ups only and are never trusted: a receiver re-reads MySQL.

The hash tag (the first `{...}` in a key is all that Redis Cluster hashes) holds both the cluster and the
shard. A shard's keys therefore share a slot, and different shards spread over the slots. HA.md's
`oceand:{<c>}:st:{s<shard>}:<job>` would have put every key of a cluster in one slot.

Every call is bounded by `socket_timeout` (0.5 s) and runs with 0 retries, set explicitly. redis-py
8.1's defaults differ by constructor: a `Redis(host=...)` connection retries a failed call 10 times with
exponential backoff, while `Redis.from_url` happens to give 0. The explicit Retry(NoBackoff(), 0) keeps
one call from hanging for several timeouts whichever way the client is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from oceand.metrics import Metrics

log = logging.getLogger("oceand.redis")
T = TypeVar("T")

STATE_TTL = 3600.0  # seconds a state snapshot lives after its last write (HA.md §6.4)
HANDOFF_TTL = 30.0  # seconds the open-bucket samples of a released shard wait for the new owner
PROBE_INTERVAL = 1.0  # seconds between PINGs: how soon a lost or returned Redis is noticed
VOLATILE_KEYS = ("last_bucket",)  # state keys that alone do not make a write worth sending
EVENT_KINDS = ("joined", "leaving", "released", "acquired", "jobs")
MEMBER_KINDS = ("joined", "leaving", "jobs")  # `jobs`: this member changed jobs (oceand/cluster/jobsync.py)

# KEYS[1]=state key; ARGV[1]=epoch ARGV[2]=bucket_ts ("" for none) ARGV[3]=state blob ARGV[4]=ttl_ms
FENCED_WRITE = """
local e = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
if e > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'bucket_ts', ARGV[2], 'state', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

WriteResult = Literal["ok", "fenced", "unchanged", "skipped", "error"]
Source = Literal["redis", "store"]


# ---- names (pure) ------------------------------------------------------------------------------------


def state_key(cluster: str, shard: int, job: str) -> str:
    return f"oceand:{{{cluster}:s{shard}}}:st:{job}"


def handoff_key(cluster: str, shard: int) -> str:
    return f"oceand:{{{cluster}:s{shard}}}:handoff"


def events_channel(cluster: str) -> str:
    return f"oceand:{{{cluster}}}:events"


@dataclass(frozen=True, slots=True)
class Event:
    """One wake-up: `member` for joined/leaving/jobs, `shard` and `epoch` for released/acquired."""

    kind: str
    member: str | None = None
    shard: int | None = None
    epoch: int | None = None

    def encode(self) -> str:
        if self.kind in MEMBER_KINDS:
            return f"{self.kind}:{self.member}"
        return f"{self.kind}:{self.shard}:{self.epoch}"


def parse_event(raw: bytes | str) -> Event | None:
    """A wake-up from the channel, or None for anything not understood."""
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        return None
    kind, sep, rest = text.partition(":")
    if not sep or kind not in EVENT_KINDS or not rest:
        return None
    if kind in MEMBER_KINDS:
        return Event(kind, member=rest)
    shard, sep, epoch = rest.partition(":")
    if not sep or not shard.isdigit() or not epoch.isdigit():
        return None
    return Event(kind, shard=int(shard), epoch=int(epoch))


# ---- choosing the state at a takeover (pure) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A job's state as last written to Redis by the owner of `epoch`."""

    epoch: int
    bucket_ts: int | None
    state: dict[str, Any]


def pick_state(
    snapshot: Snapshot | None, stored: dict[str, Any] | None
) -> tuple[Source, dict[str, Any] | None]:
    """HA.md §6.7 step 3: the newer of the Redis snapshot and the store's state, compared by the bucket
    each was evaluated at (the store's `last_bucket`). Ties go to the store. A state without a bucket is
    older than any state with one. With no snapshot the store's state (possibly None) is the answer, so
    streaks restart from the store, which errs on the side of not acting."""
    if snapshot is None:
        return "store", stored
    if stored is None:
        return "redis", snapshot.state
    mine, theirs = snapshot.bucket_ts, stored.get("last_bucket")
    if mine is not None and (theirs is None or mine > theirs):
        return "redis", snapshot.state
    return "store", stored


def _comparable(state: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {k: v for k, v in state.items() if k not in VOLATILE_KEYS}, option=orjson.OPT_SORT_KEYS
    )


# ---- the client --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobHandoff:
    """One job's open buckets as its releasing owner left them: every bucket starting before
    `closed_upto` was closed (evaluated) there, and `samples` are those of its open buckets as
    (rule, instance, ts, value)."""

    closed_upto: int
    samples: list[tuple[str, str, int, float]]


class HotStateError(Exception):
    """A Redis call failed or did not answer within socket_timeout (its outcome is unknown)."""


@dataclass(frozen=True, slots=True)
class StateWrite:
    """One snapshot to write: the job's shard, this daemon's lease epoch of it, the bucket the state
    was evaluated at (None: never evaluated) and the state (orjson-serialisable)."""

    shard: int
    epoch: int
    job: str
    bucket_ts: int | None
    state: dict[str, Any]


@dataclass(slots=True)
class _Written:
    epoch: int
    comparable: bytes
    at: float  # local monotonic clock


class HotState:
    """The daemon's Redis: fenced state snapshots, handoffs, wake-ups; see the module docstring.

    `start()` runs two tasks: a probe that PINGs every `probe_interval` (it marks Redis up or degraded and
    notices a restart, after which nothing counts as already written), and the subscriber, which
    reconnects whenever its connection is lost and calls each of `on_event` for every wake-up (and once
    with None after each (re)subscription, since wake-ups sent meanwhile are lost)."""

    def __init__(
        self,
        url: str,
        cluster: str,
        *,
        socket_timeout: float = 0.5,
        metrics: Metrics | None = None,
        probe_interval: float = PROBE_INTERVAL,
        state_ttl: float = STATE_TTL,
        handoff_ttl: float = HANDOFF_TTL,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url, self.cluster = url, cluster
        self.timeout = socket_timeout
        self.metrics = metrics
        self.probe_interval = probe_interval
        self.state_ttl, self.handoff_ttl = state_ttl, handoff_ttl
        self.mono = mono
        common: dict[str, Any] = {
            "socket_connect_timeout": socket_timeout,
            "retry": Retry(NoBackoff(), 0),  # no retries: a coordination call is tried once
        }
        self.client: Redis = Redis.from_url(url, socket_timeout=socket_timeout, **common)
        # the subscriber waits for messages far longer than socket_timeout: a client of its own
        self._sub_client: Redis = Redis.from_url(url, socket_timeout=None, **common)
        self._script = self.client.register_script(FENCED_WRITE)
        self.up = False  # until the first successful call
        self.reason: str | None = "not connected yet"
        self.subscribed = False
        self.on_event: list[Callable[[Event | None], None]] = []
        self._written: dict[str, _Written] = {}
        self._run_id: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = asyncio.Event()
        self._set_up(False, self.reason)

    # ---- health ----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """For /readyz: `redis` is "ok" or "degraded" (never a reason for 503), with the reason."""
        if self.up and self.subscribed:
            return {"redis": "ok"}
        reason = self.reason if not self.up else "the wake-up subscriber is not connected"
        return {"redis": "degraded", "redis_reason": reason}

    def _set_up(self, up: bool, reason: str | None = None) -> None:
        if up != self.up:
            if up:
                log.info("redis %s answers", self._where(), extra={"event": "redis_up"})
            else:
                log.warning(
                    "redis %s degraded (hot-state writes skipped): %s",
                    self._where(),
                    reason,
                    extra={"event": "redis_degraded"},
                )
        self.up, self.reason = up, None if up else reason
        if self.metrics is not None:
            self.metrics.redis_up.set(1 if up else 0)

    def _where(self) -> str:
        kw = self.client.connection_pool.connection_kwargs
        return str(kw.get("path") or f"{kw.get('host')}:{kw.get('port')}")

    async def _call(self, aw: Awaitable[T]) -> T:
        """One Redis call, bounded by the timeout; any failure marks Redis degraded until the probe
        gets an answer, and forgets what was written (a restart may have lost it)."""
        try:
            async with asyncio.timeout(self.timeout):
                return await aw
        except (RedisError, OSError, TimeoutError) as e:
            self._written.clear()
            why = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            self._set_up(False, why)
            if isinstance(e, (RedisConnectionError, ConnectionError)):
                # a restart killed every idle pooled connection: drop them all now, or each one fails
                # once more after the probe has found Redis back (a takeover's reads meet them)
                with contextlib.suppress(Exception):
                    await self.client.connection_pool.disconnect(inuse_connections=False)
            raise HotStateError(why) from e

    async def probe(self) -> bool:
        """PING (and the server's run id): up or degraded. A changed run id means Redis restarted and
        may have lost every key, so the next writes are sent even if unchanged."""
        try:
            info = await self._call(self.client.info("server"))
        except HotStateError:
            return False
        run_id = str(info.get("run_id", ""))
        if run_id != self._run_id:
            self._written.clear()
            self._run_id = run_id
        self._set_up(True)
        return True

    # ---- state snapshots ---------------------------------------------------------------------------

    def _count_write(self, result: WriteResult) -> WriteResult:
        if self.metrics is not None:
            self.metrics.hotstate_writes.labels(result).inc()
        return result

    def _not_needed(self, w: StateWrite, comparable: bytes, now: float) -> WriteResult | None:
        """`unchanged` or `skipped` when the write need not or cannot be sent, else None."""
        last = self._written.get(w.job)
        if (
            last is not None
            and last.epoch == w.epoch
            and last.comparable == comparable
            and now - last.at < self.state_ttl / 2
        ):
            return "unchanged"
        return None if self.up else "skipped"

    def _args(self, w: StateWrite) -> tuple[list[str], list[bytes | str | int]]:
        ts = "" if w.bucket_ts is None else str(int(w.bucket_ts))
        keys = [state_key(self.cluster, w.shard, w.job)]
        return keys, [w.epoch, ts, orjson.dumps(w.state), int(self.state_ttl * 1000)]

    def _stored(self, w: StateWrite, comparable: bytes, now: float, reply: Any) -> WriteResult:
        if reply != 1:
            self._written.pop(w.job, None)
            log.info(
                "job %s: hot-state write of epoch %d refused, a newer owner wrote it",
                w.job,
                w.epoch,
                extra={"event": "hotstate_fenced", "job": w.job},
            )
            return "fenced"
        self._written[w.job] = _Written(w.epoch, comparable, now)
        return "ok"

    async def write_state(
        self, shard: int, epoch: int, job: str, bucket_ts: int | None, state: dict[str, Any]
    ) -> WriteResult:
        """The fenced snapshot write (HA.md §6.4). It never raises. Results:

        - `ok`: the write was stored.
        - `fenced`: a newer epoch is stored. The caller lost the shard and must stop acting on it.
        - `unchanged`: same epoch and same state as the last accepted write (keys in VOLATILE_KEYS aside),
          and that write is younger than half the TTL, so nothing was sent.
        - `skipped`: Redis is degraded, so nothing was sent.
        - `error`: the call failed or timed out."""
        w = StateWrite(shard, epoch, job, bucket_ts, state)
        comparable, now = _comparable(state), self.mono()
        result = self._not_needed(w, comparable, now)
        if result is None:
            keys, args = self._args(w)
            try:
                reply = await self._call(self._script(keys=keys, args=args))
            except HotStateError as e:
                log.debug("job %s: hot state not written: %s", job, e)
                reply, result = None, "error"
            if result is None:
                result = self._stored(w, comparable, now, reply)
        return self._count_write(result)

    async def write_states(self, writes: Sequence[StateWrite]) -> list[WriteResult]:
        """Several fenced writes in one round trip (a pipeline of EVALSHA, not a transaction: each is
        fenced on its own), results in the same order as `write_state`'s. A daemon closing many jobs'
        buckets at once spends far less client CPU per write this way (bench/hotstate.py)."""
        now = self.mono()
        comparables = [_comparable(w.state) for w in writes]
        results: list[WriteResult | None] = [
            self._not_needed(w, c, now) for w, c in zip(writes, comparables, strict=True)
        ]
        todo = [i for i, r in enumerate(results) if r is None]
        if todo:
            # `async with`: the pipeline's connection goes back to the pool even when the call timed out
            # (else it is held until garbage collection: "Unclosed Pipeline client")
            async with self.client.pipeline(transaction=False) as pipe:
                for i in todo:
                    keys, args = self._args(writes[i])
                    await self._script(keys=keys, args=args, client=pipe)
                try:
                    replies = await self._call(pipe.execute())
                except HotStateError as e:
                    log.debug("%d hot states not written: %s", len(todo), e)
                    replies = None
            for n, i in enumerate(todo):
                results[i] = (
                    "error" if replies is None else self._stored(writes[i], comparables[i], now, replies[n])
                )
        done: list[WriteResult] = []
        for r in results:
            assert r is not None  # every write was judged above or sent
            done.append(self._count_write(r))
        return done

    def forget(self, jobs: Iterable[str]) -> None:
        """Jobs no longer written by this daemon (shard released or lost, job removed)."""
        for job in jobs:
            self._written.pop(job, None)

    async def read_state(self, shard: int, job: str) -> Snapshot | None:
        """The job's snapshot, or None: absent, unreadable, or Redis degraded (never raises)."""
        result = "skipped"
        try:
            if not self.up:
                return None
            try:
                raw = await self._call(self.client.hgetall(state_key(self.cluster, shard, job)))
            except HotStateError:
                result = "error"
                return None
            try:
                bucket = raw.get(b"bucket_ts", b"")
                snap = Snapshot(
                    epoch=int(raw[b"epoch"]),
                    bucket_ts=int(bucket) if bucket else None,
                    state=orjson.loads(raw[b"state"]),
                )
            except (KeyError, ValueError, orjson.JSONDecodeError):
                result = "miss" if not raw else "error"
                if raw:
                    log.warning("job %s: hot-state snapshot unreadable, ignored", job)
                return None
            if not isinstance(snap.state, dict):
                result = "error"
                return None
            result = "hit"
            return snap
        finally:
            if self.metrics is not None:
                self.metrics.hotstate_reads.labels(result).inc()

    async def load_state(
        self, shard: int, job: str, stored: dict[str, Any] | None
    ) -> tuple[Source, dict[str, Any] | None]:
        """The state a new owner starts the job from: `pick_state` of its snapshot and the store's."""
        source, state = pick_state(await self.read_state(shard, job), stored)
        if self.metrics is not None:
            self.metrics.hotstate_source.labels(source).inc()
        return source, state

    # ---- handoff of a released shard's open buckets ---------------------------------------------------

    def _count_handoff(self, op: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.handoffs.labels(op, result).inc()

    async def write_handoff(self, shard: int, epoch: int, jobs: dict[str, JobHandoff]) -> bool:
        """The releasing owner (epoch `epoch`) leaves the open buckets of the shard's jobs for HANDOFF_TTL:
        per job, where its closed buckets end and its open buckets' samples. True when stored (never
        raises)."""
        if not self.up:
            self._count_handoff("write", "skipped")
            return False
        body = orjson.dumps(
            {"epoch": epoch, "jobs": {j: [h.closed_upto, h.samples] for j, h in jobs.items()}}
        )
        try:
            await self._call(
                self.client.set(handoff_key(self.cluster, shard), body, px=int(self.handoff_ttl * 1000))
            )
        except HotStateError:
            self._count_handoff("write", "error")
            return False
        self._count_handoff("write", "ok")
        return True

    async def take_handoff(
        self, shard: int, epoch: int, previous: int | None = None
    ) -> dict[str, JobHandoff]:
        """The new owner (epoch `epoch`) takes the open buckets left by an older owner of the shard,
        deleting them. Empty when there are none, when they came from this epoch or a newer one, or, with
        `previous` (the shard's epoch right before this acquisition), from any other epoch than that one:
        a late write of an owner older than the last (`stale`); or when Redis is degraded (never
        raises)."""
        if not self.up:
            self._count_handoff("take", "skipped")
            return {}
        try:
            raw = await self._call(self.client.getdel(handoff_key(self.cluster, shard)))
        except HotStateError:
            self._count_handoff("take", "error")
            return {}
        if raw is None:
            self._count_handoff("take", "empty")
            return {}
        try:
            doc = orjson.loads(raw)
            left_by = int(doc["epoch"])
            jobs = {
                str(job): JobHandoff(
                    int(closed), [(str(r), str(i), int(t), float(v)) for r, i, t, v in samples]
                )
                for job, (closed, samples) in doc["jobs"].items()
            }
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            self._count_handoff("take", "error")
            log.warning("shard %d: handoff unreadable, ignored", shard)
            return {}
        if left_by >= epoch or (previous is not None and left_by != previous):
            self._count_handoff("take", "stale")
            log.warning(
                "shard %d: handoff of epoch %d refused (this owner's epoch is %d)",
                shard,
                left_by,
                epoch,
                extra={"event": "handoff_stale"},
            )
            return {}
        self._count_handoff("take", "ok")
        return jobs

    # ---- wake-ups --------------------------------------------------------------------------------

    async def publish(self, event: Event) -> bool:
        """Send a wake-up (never raises; a lost wake-up only delays the receivers to their next poll)."""
        if not self.up:
            return False
        try:
            await self._call(self.client.publish(events_channel(self.cluster), event.encode()))
        except HotStateError:
            return False
        return True

    def _deliver(self, event: Event | None) -> None:
        for cb in self.on_event:
            try:
                cb(event)
            except Exception:  # a receiver's bug must not stop the subscriber
                log.exception("wake-up receiver failed")

    async def _subscriber(self) -> None:
        channel = events_channel(self.cluster)
        backoff = 0.05
        while not self._closing.is_set():
            pubsub: PubSub = self._sub_client.pubsub()
            try:
                async with asyncio.timeout(self.timeout):
                    await pubsub.subscribe(channel)
                self.subscribed, backoff = True, 0.05
                if self.metrics is not None:
                    self.metrics.redis_resubscribes.inc()
                self._deliver(None)  # wake-ups may have been missed while not subscribed
                while not self._closing.is_set():
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is None or msg.get("type") != "message":
                        continue
                    event = parse_event(msg["data"])
                    if self.metrics is not None:
                        self.metrics.redis_events.labels(event.kind if event else "invalid").inc()
                    if event is not None:
                        self._deliver(event)
            except (RedisError, OSError, TimeoutError) as e:
                if self.subscribed:
                    log.warning("redis wake-up subscriber lost its connection: %s", e)
            finally:
                self.subscribed = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), backoff)
            backoff = min(backoff * 2, self.probe_interval)

    async def _prober(self) -> None:
        while not self._closing.is_set():
            await self.probe()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.probe_interval)

    async def start(self) -> None:
        """Probe once (a daemon starts with Redis down, degraded), then run the probe and subscriber."""
        await self.probe()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._prober(), name="redis-probe"),
            loop.create_task(self._subscriber(), name="redis-subscriber"),
        ]

    async def close(self) -> None:
        self._closing.set()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []
        for c in (self.client, self._sub_client):
            with contextlib.suppress(Exception):
                await c.aclose()
