"""Samples for jobs owned by another daemon go to that owner (HA.md §4.5 option A, §6.8).

Ingest parses and routes once (oceand/ingest.py, unchanged): a job whose shard this daemon holds has its
own bucket set in the route; a job owned elsewhere has a `ForwardBuckets` instead, whose `add` hands the
already-routed sample — (job, instance, rule index, ts, value): selectors, derived metrics and counter
rates applied — to the `Forwarder`. The forwarder keeps one buffer per destination address and flushes it
every `forward_flush` or at `forward_batch` samples: `POST /internal/v1/samples`, body
`{"from", "sent_at", "samples": [[job, instance, rule, ts, value], ...]}`, header X-Oceand-Cluster-Token.

The owner answers 204, or 409 `{"not_owner": [shards]}` for shards it does not hold (it keeps the rest):
the sender reads the route table again and resends those samples once, then drops and counts them. When
the owner cannot be reached (refused, timeout, 5xx) the samples are held per shard, up to `forward_hold`
seconds, and resent when the route table shows the shard with another epoch (a takeover) or, for the same
epoch, at most once a second. Buffered and held samples together are bounded by `forward_buffer`; beyond
it new ones are dropped and counted. A shard that becomes this daemon's gets its held samples locally.

`SampleRouter` is the one interface ingest sees (`buckets_for`), so another way of moving samples (option B,
Redis streams) can replace this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

import aiohttp
import orjson

from oceand.cluster.routes import Route, RouteTable
from oceand.ingest import JobBuckets
from oceand.metrics import Metrics

log = logging.getLogger("oceand.cluster")

SAMPLES_PATH = "/internal/v1/samples"
TOKEN_HEADER = "X-Oceand-Cluster-Token"
FORWARDED_HEADER = "X-Oceand-Forwarded"  # an admin call already forwarded once: never forwarded again
SEND_TIMEOUT = 2.0  # one POST to an owner, at most (then its samples are held)
SENDS_PER_OWNER = 4  # POSTs in flight to one owner at once; later batches wait (and count in the buffer)
PROBE_EVERY = 1.0  # held samples of a shard whose route did not change are tried again this often
MAX_BODY_SAMPLES = 100_000  # samples in one /internal/v1/samples body, at most (the receiver's 400)

Sample = tuple[str, str, int, int, float]  # job, instance, rule index, timestamp, value


class SampleRouter(Protocol):
    """Where ingest puts a job's samples: its own buckets, or something that moves them to the owner."""

    def buckets_for(self, job: str, local: JobBuckets) -> JobBuckets: ...


def check_token(expected: str | None, got: str | None) -> str | None:
    """None when `got` is the cluster token; else the refusal reason (no_token, bad_token, not_clustered)."""
    if expected is None:
        return "not_clustered"
    if not got:
        return "no_token"
    if not hmac.compare_digest(expected.encode(), got.encode()):
        return "bad_token"
    return None


class BadSamples(ValueError):
    """A /internal/v1/samples body that is not the documented shape (the reply is 400 with this text)."""


def parse_samples(body: bytes) -> tuple[str, list[Sample]]:
    """(from, samples) of a request body, or BadSamples naming the first problem."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadSamples(f"body is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise BadSamples("body must be an object {from, sent_at, samples}")
    sender = doc.get("from")
    samples = doc.get("samples")
    if not isinstance(sender, str) or not isinstance(samples, list):
        raise BadSamples("body needs 'from' (a string) and 'samples' (a list)")
    if len(samples) > MAX_BODY_SAMPLES:
        raise BadSamples(f"at most {MAX_BODY_SAMPLES} samples in one body, got {len(samples)}")
    out: list[Sample] = []
    for i, s in enumerate(samples):
        if not (
            isinstance(s, list)
            and len(s) == 5
            and isinstance(s[0], str)
            and isinstance(s[1], str)
            and type(s[2]) is int
            and type(s[3]) is int
            and type(s[4]) in (int, float)
        ):
            raise BadSamples(f"samples[{i}]: expected [job, instance, rule, ts, value], got {str(s)[:80]}")
        out.append((s[0], s[1], s[2], s[3], float(s[4])))
    return sender, out


def group_by_shard(samples: Iterable[Sample], shard_of: Callable[[str], int]) -> dict[int, list[Sample]]:
    out: dict[int, list[Sample]] = {}
    for s in samples:
        out.setdefault(shard_of(s[0]), []).append(s)
    return out


def split_by_owner(
    by_shard: dict[int, list[Sample]], held: Callable[[int], bool]
) -> tuple[list[Sample], list[int]]:
    """(samples of shards held here, the other shards): what a receiver keeps and what it answers 409 for."""
    keep: list[Sample] = []
    not_owner: list[int] = []
    for shard, ss in by_shard.items():
        if held(shard):
            keep += ss
        else:
            not_owner.append(shard)
    return keep, sorted(not_owner)


class ForwardBuckets(JobBuckets):
    """A job owned elsewhere, as ingest's hot loop sees it: no open bucket, so every sample reaches `add`,
    which hands it to the forwarder. Timestamp bounds are the job's own (checked before `add`)."""

    def __init__(self, local: JobBuckets, shard: int, sink: Callable[[int, Sample], None]) -> None:
        super().__init__(
            local.job,
            local.period,
            local.grace,
            local.rules,
            max_ahead=local.max_ahead,
            max_age=local.max_age,
        )
        self.closed_upto = -(1 << 62)
        self.shard = shard
        self.sink = sink

    def add(self, rule_index: int, instance: str, ts: int, value: float) -> bool:
        self.sink(self.shard, (self.job, instance, rule_index, ts, value))
        return False


class _Held:
    __slots__ = ("epoch", "samples", "tried")

    def __init__(self, epoch: int, tried: float) -> None:
        self.epoch = epoch  # the epoch of the route the samples failed on (-1: no route)
        self.samples: deque[tuple[float, Sample]] = deque()
        self.tried = tried


class Forwarder:
    """Per-destination batches to the owners (see the module doc). `held(shard)`: the shard's lease is this
    daemon's; `local(samples)`: put samples into this daemon's own buckets."""

    def __init__(
        self,
        routes: RouteTable,
        *,
        me: str,
        token: str,
        shard_of: Callable[[str], int],
        held: Callable[[int], bool],
        local: Callable[[list[Sample]], object],
        metrics: Metrics | None = None,
        flush: float = 0.01,
        batch: int = 500,
        hold: float = 5.0,
        buffer: int = 200_000,
        clock: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.routes = routes
        self.me = me
        self.token = token
        self.shard_of = shard_of
        self.held = held
        self.local = local
        self.metrics = metrics
        self.flush_every = flush
        self.batch = batch
        self.hold = hold
        self.buffer = buffer
        self.clock = clock
        self.mono = mono
        self._out: dict[str, list[tuple[int, Sample]]] = {}
        self._held: dict[int, _Held] = {}
        self._n = 0  # samples in _out and _held
        self._inflight = 0  # samples in batches being sent or waiting for a send slot
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._jobs: dict[str, int] = {}
        routes.on_change.append(self._routes_changed)

    # ---- the SampleRouter side -------------------------------------------------------------------

    def shard(self, job: str) -> int:
        s = self._jobs.get(job)
        if s is None:
            s = self._jobs[job] = self.shard_of(job)
        return s

    def buckets_for(self, job: str, local: JobBuckets) -> JobBuckets:
        s = self.shard(job)
        return local if self.held(s) else ForwardBuckets(local, s, self.put)

    def jobs_in(self, shards: set[int]) -> list[str]:
        """The jobs seen by `buckets_for` whose shard is among `shards`."""
        return [j for j, s in self._jobs.items() if s in shards]

    @property
    def pending(self) -> int:
        return self._n + self._inflight

    def _count(self, result: str, n: int = 1) -> None:
        if self.metrics is not None and n:
            self.metrics.forward_samples.labels(result).inc(n)

    def put(self, shard: int, sample: Sample) -> None:
        """A sample for `shard`'s owner: into its destination's buffer (or held when there is no route)."""
        if self._n + self._inflight >= self.buffer:
            self._count("dropped_overflow")
            return
        h = self._held.get(shard)
        r = self.routes.get(shard)
        if h is not None or r is None or r.owner == self.me:
            self._hold(shard, r, [sample])
            return
        buf = self._out.get(r.addr)
        if buf is None:
            buf = self._out[r.addr] = []
        buf.append((shard, sample))
        self._n += 1
        if len(buf) >= self.batch:
            self._send_now(r.addr)
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.flush_every, self._flush_all)

    # ---- sending ---------------------------------------------------------------------------------

    def _send_now(self, addr: str) -> None:
        items = self._out.pop(addr, None)
        if not items:
            return
        self._n -= len(items)
        self._inflight += len(items)
        task = asyncio.get_running_loop().create_task(self._sent(addr, items))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _flush_all(self) -> None:
        self._timer = None
        for addr in list(self._out):
            self._send_now(addr)

    async def flush(self) -> None:
        """Send every buffer now and wait for the sends (tests, shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
        self._flush_all()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT, sock_connect=0.5),
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )
        return self._session

    async def post(self, addr: str, body: bytes) -> tuple[int, bytes]:
        """One POST to an owner: (status, body); raises OSError / aiohttp.ClientError / TimeoutError."""
        async with self.client().post(
            f"http://{addr}{SAMPLES_PATH}",
            data=body,
            headers={TOKEN_HEADER: self.token, "Content-Type": "application/json"},
        ) as resp:
            return resp.status, await resp.read()

    async def _sent(self, addr: str, items: list[tuple[int, Sample]]) -> None:
        try:
            await self._send(addr, items, retry=True)
        finally:
            self._inflight -= len(items)

    async def _send(self, addr: str, items: list[tuple[int, Sample]], *, retry: bool) -> None:
        if self.metrics is not None:
            self.metrics.forward_batch.observe(len(items))
        slot = self._slots.get(addr)
        if slot is None:
            slot = self._slots[addr] = asyncio.Semaphore(SENDS_PER_OWNER)
        try:
            async with slot:
                body = orjson.dumps(
                    {"from": self.me, "sent_at": self.clock(), "samples": [s for _, s in items]}
                )
                status, reply = await self.post(addr, body)
        except (OSError, aiohttp.ClientError, TimeoutError) as e:
            log.warning(
                "owner %s unreachable: %d samples held (%s)",
                addr,
                len(items),
                e or type(e).__name__,
                extra={"event": "forward_unreachable"},
            )
            self._hold_items(items)
            return
        if status == 204:
            self._count("sent", len(items))
            return
        if status == 409:
            try:
                not_owner = set(orjson.loads(reply).get("not_owner", []))
            except (orjson.JSONDecodeError, AttributeError):
                not_owner = {s for s, _ in items}
            back = [(s, x) for s, x in items if s in not_owner]
            self._count("sent", len(items) - len(back))
            await self._rerouted(back, retry)
            return
        if status >= 500:
            self._hold_items(items)
            return
        log.error(
            "owner %s refused %d forwarded samples: %d %s",
            addr,
            len(items),
            status,
            reply[:200].decode(errors="replace"),
            extra={"event": "forward_refused"},
        )
        self._count("dropped_refused", len(items))

    async def _rerouted(self, back: list[tuple[int, Sample]], retry: bool) -> None:
        """Samples a daemon said it does not own: once more after reading the routes again, then dropped."""
        if not back:
            return
        if not retry:
            self._count("dropped_not_owner", len(back))
            return
        with contextlib.suppress(Exception):
            await self.routes.refresh()
        by_addr: dict[str, list[tuple[int, Sample]]] = {}
        for shard, s in back:
            r = self.routes.get(shard)
            if self.held(shard):
                self.local([s])
                self._count("rerouted")
            elif r is None or r.owner == self.me:
                self._hold(shard, r, [s])
            else:
                by_addr.setdefault(r.addr, []).append((shard, s))
        for addr, items in by_addr.items():
            self._count("rerouted", len(items))
            await self._send(addr, items, retry=False)

    # ---- holding through a takeover -----------------------------------------------------------------

    def _hold_items(self, items: list[tuple[int, Sample]]) -> None:
        by_shard: dict[int, list[Sample]] = {}
        for shard, s in items:
            by_shard.setdefault(shard, []).append(s)
        for shard, ss in by_shard.items():
            self._hold(shard, self.routes.get(shard), ss)

    def _hold(self, shard: int, route: Route | None, samples: list[Sample]) -> None:
        now = self.mono()
        h = self._held.get(shard)
        if h is None:
            h = self._held[shard] = _Held(-1 if route is None else route.epoch, now)
        room = self.buffer - self._n  # (a batch coming back from a send is still counted in flight)
        if len(samples) > room:
            self._count("dropped_overflow", len(samples) - max(room, 0))
            samples = samples[: max(room, 0)]
        h.samples.extend((now, s) for s in samples)
        self._n += len(samples)
        self._count("held", len(samples))

    def _routes_changed(self, shards: set[int]) -> None:
        """After each route refresh: expire old held samples; resend those whose shard has a new epoch
        (or a first route, or is this daemon's now), and probe the others once a second."""
        if not self._held:
            return
        now = self.mono()
        for shard in list(self._held):
            h = self._held[shard]
            while h.samples and now - h.samples[0][0] > self.hold:
                h.samples.popleft()
                self._n -= 1
                self._count("dropped_expired")
            r = self.routes.get(shard)
            mine = self.held(shard)
            moved = r is not None and r.owner != self.me and r.epoch != h.epoch
            if h.samples and not (mine or moved or (r is not None and now - h.tried >= PROBE_EVERY)):
                continue
            del self._held[shard]
            ss = [s for _, s in h.samples]
            self._n -= len(ss)
            if not ss:
                continue
            if mine:
                self.local(ss)
                self._count("sent", len(ss))
            elif r is None or r.owner == self.me:
                self._held[shard] = h  # still no owner to send to
                self._n += len(ss)
                h.tried = now
            else:
                h.tried = now
                for s in ss:
                    self.put(shard, s)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), SEND_TIMEOUT)
        for t in list(self._tasks):
            t.cancel()
        if self._session is not None:
            await self._session.close()
