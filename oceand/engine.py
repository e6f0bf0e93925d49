"""Per-job workers: observe -> decide (pure) -> commit -> apply -> record (ARCHITECTURE properties 2-4).

Every job has one worker task. Alarms, manual scales and timers only *wake* it; a push body that completed
a bucket hands it over already closed (ingest closes it once the body is routed: `JobRuntime.take`). The
worker then evaluates the handed buckets (else closes the due ones), runs due schedule fires and queued
events, one evaluation at a time, so a burst of pushes coalesces into one evaluation per closed bucket. A slow Marathon blocks only its own job.
One timer (a heap) serves every job and wakes due jobs in slices; an idle job (its last evaluation was of
an empty bucket and changed nothing) has its next empty buckets closed by the timer, without a wake.

Commit order (never lose a decision, never scale twice): a decision that changes the count in active mode is
committed with a `pending` outcome together with the job's next state in one transaction, then applied,
then its outcome is replaced (the decision itself never changes: its `ActuationOutcome` is a record of its
own). Each write the apply sends is recorded first (an attempt, `pending` until its outcome is known). A
write of unknown outcome (a crash, a timeout, a stop mid-call, a reload) is settled before the job sends
anything again: landed (the app's deployments or `lastScalingAt` show it) means applied, not resent.
A retry waiting after a transient failure and a block left by a permanent one are the job's
`ActuationState`, written with the outcome and the job's state in one transaction, so a restart keeps
them. After a crash, `pending` decisions are retried by their workers (at the retry time the state kept,
else at once), which settle them that way and re-read the app before sending; a decision older than
`stale_after` is re-read too, and is not sent when the app's count moved away from the one it was
decided on.
The outcome code (`_decided` to `_record`) is the seam where a fenced multi-daemon intent would wrap the
apply: `_first_outcome`, `_apply` (one round: settle, send, outcome), `_supersede`, `_settle_older`.
State changes without a decision (streak counts) are written behind in batches every `flush_interval`
and at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from actuators.marathon import (
    ABANDONED,
    PENDING,
    Actuator,
    AppView,
    Attempt,
    AttemptLog,
    MarathonError,
    Outcome,
    Permanent,
)
from oceand.cluster.forward import SampleRouter
from oceand.cluster.intent import (
    TAKEOVER_GAP,
    WAIT,
    ForeignIntent,
    bucket_label,
    key_of,
    takeover_verdict,
)
from oceand.cluster.lease import CoordError, DuplicateDecision, Held
from oceand.cluster.ownership import OverBudget, Ownership
from oceand.history import HistoryRecorder
from oceand.ingest import JOB_LEVEL_METRICS, ClosedBucket, IngestLimits, Ingestor, JobBuckets
from oceand.logs import log_decision
from oceand.store.base import FencedWrite, Store, StoreError
from policies import engine as policy
from policies import schedule, warm
from policies.alarm import alarm_matches
from policies.backoff import Backoff
from policies.document import AlarmRule, JobDocument, PredictiveRule
from policies.predictive import lead_for
from policies.types import (
    ActuationOutcome,
    ActuationState,
    AlarmCall,
    AlarmEvent,
    Decision,
    FireTime,
    JobState,
    ManualScale,
    Observation,
    OutcomeStatus,
)
from policies.warnings import document_warnings

log = logging.getLogger("oceand.engine")


class AppUnknown(Exception):
    """The job's app state cannot be read (Marathon unreachable, app not found): nothing can be decided."""


class Stopping(AppUnknown):
    """The daemon stopped before a queued or running manual scale was done."""


class Decided(NamedTuple):
    """A decision as stored (with its id, when it was worth storing) and what became of it so far."""

    decision: Decision
    outcome: ActuationOutcome

    def view(self) -> dict[str, Any]:
        """As the API shows it: the decision's fields, `status` / `result` (derived) and `outcome`."""
        return self.outcome.view(self.decision.to_json())


Clock = Callable[[], float]
Hook = Callable[[JobDocument, Decision, ActuationOutcome], Awaitable[None] | None]
# a job's open buckets handed over by its former owner: (closed_upto, [(rule, instance, ts, value)])
Handed = tuple[int, list[tuple[str, str, int, float]]]
NO_OUTCOME = ActuationOutcome()
UNKNOWN_APP_TTL = 10.0  # seconds alarms do not ask Marathon again for an app that could not be read
# Due jobs woken per event-loop iteration: thousands of jobs whose buckets share a deadline are woken in
# slices, so the loop serves requests (/healthz, pushes) between them instead of stalling for all of them.
WAKE_BATCH = 64
# Workers woken per loop iteration for buckets a push completed (Engine._wake_paced): a step costs ~0.1-0.3 ms
# at 10,000 jobs, so what becomes ready meanwhile (a request, a commit back from the store) waits a few ms.
PACE_BATCH = 16
# Idle jobs' empty buckets closed by the timer itself per loop iteration (see Engine._idle_close), and
# the time that may take (seconds): a request waits for a few such slices at most.
TICK_BATCH = 64
TICK_SLICE = 0.001
FLUSH_CHUNK = 500  # states written behind handed to the store at once (it groups them into transactions)
LOAD_PROGRESS = 1000  # jobs loaded at start between two `progress` calls (systemd's EXTEND_TIMEOUT_USEC)


@dataclass(slots=True)
class Manual:
    instances: int
    reason: str
    done: asyncio.Future[Decided]
    op: str | None = None  # the call's Idempotency-Key (cluster: the decision key of its writes)


@dataclass(slots=True)
class JobRuntime:
    doc: JobDocument
    version: int
    buckets: JobBuckets
    state: JobState
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    events: deque[Manual] = field(default_factory=deque)  # manual scales: each waits on its API request
    alarms: dict[str, AlarmEvent] = field(default_factory=dict)  # alarm rule -> its newest queued alarm
    task: asyncio.Task[None] | None = None
    # retry and block, persisted with the state (a restart keeps them); see Engine._state_json
    actuation: ActuationState = field(default_factory=ActuationState)
    last_decision: dict[str, Any] | None = None  # the newest stored decision as the API shows it
    retry: Decision | None = None  # the pending decision `actuation.retry` names, tried again at retry_at
    # superseded decisions whose last write's outcome is unknown: settled before the job sends again
    unsettled: list[tuple[Decision, ActuationOutcome, AttemptLog]] = field(default_factory=list)
    wake_at: float = math.inf  # the worker's timer (Engine._timers): when it is to be woken next
    ready: list[ClosedBucket] = field(default_factory=list)  # closed by ingest, not evaluated yet (`take`)
    idle: tuple[JobDocument, str] | None = None  # (document, mode) of an idle job (Engine._idle_key)
    steps: int = 0  # whole worker steps run: what a test waits on to see that a step found nothing to do
    reload: bool = False  # cluster: state and pending writes are read again before the job acts (takeover)
    quiet_until: float | None = None  # cluster: nothing is decided before (a former owner's write pending)
    handed_from: int | None = None  # cluster: buckets from here on were handed over whole by the former owner
    pace: Callable[[JobRuntime], None] = lambda rt: rt.wake.set()  # wakes the worker for `take` (the
    # engine gives Engine._wake_paced)

    def __post_init__(self) -> None:
        self.wire()

    def wire(self) -> None:
        """Point the job's buckets at its worker: the buckets a push completed come here, closed by ingest,
        except while a takeover is pending (`reload`), when the worker closes them after it."""
        self.buckets.hand = self.take
        self.buckets.may_close = self.may_close

    def may_close(self) -> bool:
        return not self.reload

    def take(self, closed: list[ClosedBucket]) -> None:
        """Buckets ingest closed after a push body completed them: the worker evaluates them next (woken
        through `pace`, the engine's paced wakes)."""
        self.ready.extend(closed)
        self.pace(self)

    def closed(self, now: float) -> list[ClosedBucket]:
        """The buckets to evaluate now, oldest first: those ingest closed and handed over, else those due
        (their deadline passed, or complete since a close or a change of the running count)."""
        if self.ready:
            out, self.ready = self.ready, []
            return out
        return self.buckets.due(now)

    @property
    def name(self) -> str:
        return self.doc.job

    @property
    def blocked(self) -> str | None:
        """A permanent actuation failure: no more applies until the document changes."""
        return self.actuation.blocked

    @property
    def retry_at(self) -> float | None:
        """When the decision waiting after a transient failure is tried again."""
        return self.actuation.retry_at if self.retry is not None else None

    @retry_at.setter
    def retry_at(self, at: float | None) -> None:
        """Set after `retry` (`rt.retry, rt.retry_at = decision, t`; None, None clears): the persisted
        `actuation` follows."""
        retry = self.retry.id if self.retry is not None and at is not None else None
        self.actuation = replace(self.actuation, retry=retry, retry_at=None if retry is None else at)


class Engine:
    def __init__(
        self,
        store: Store,
        actuator_for: Callable[[JobDocument], Actuator],
        *,
        clock: Clock = time.time,
        dry_run: Callable[[], bool] = lambda: False,
        dry_reason: Callable[[JobDocument], str | None] = lambda doc: None,
        default_tz: str = "UTC",
        grace: float | None = None,
        flush_interval: float = 1.0,
        retry_delays: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0),
        on_decision: Hook | None = None,
        on_bucket: Callable[[], None] | None = None,
        on_alarm_dropped: Callable[[str], None] | None = None,
        stale_after: float = 5.0,
        on_actuation: Callable[[str], None] | None = None,
        limits: IngestLimits | None = None,
        on_series_expired: Callable[[int], None] | None = None,
        sweep_interval: float = 60.0,
        ownership: Ownership | None = None,
    ) -> None:
        self.store = store
        self.actuator_for = actuator_for
        self.clock = clock
        self.dry_run = dry_run
        self.dry_reason = dry_reason
        self.default_tz = default_tz
        self.grace = grace
        self.flush_interval = flush_interval
        self.retry_backoff = Backoff(steps=retry_delays, jitter=0)
        self.on_decision = on_decision
        self.on_bucket = on_bucket
        self.on_alarm_dropped = on_alarm_dropped
        self.unknown_app_ttl = UNKNOWN_APP_TTL
        self._unknown_apps: dict[tuple[str, str], float] = {}  # (cluster, app) -> not read again before
        self.stale_after = stale_after  # a decision applied later than this after it was taken is re-read
        self.on_actuation = on_actuation  # counts settle / stale outcomes (metrics)
        self._logs: dict[int, AttemptLog] = {}  # pending decision id -> its writes
        self._outcomes: dict[int, ActuationOutcome] = {}  # pending decision id -> its outcome so far
        self._applying: dict[str, Decision] = {}  # job -> the decision its worker is applying now
        self.limits = limits if limits is not None else IngestLimits()
        self.ingestor = Ingestor(limits=self.limits, clock=clock)  # routes pushes, wakes the workers
        self.on_series_expired = on_series_expired
        self.sweep_interval = sweep_interval
        self.jobs: dict[str, JobRuntime] = {}
        self._dirty: set[str] = set()
        self._stopping = False
        self._inflight = 0
        # One timer for every job (instead of a loop timer per job): a heap of (wall time, seq, job), an
        # entry valid while its time is the job's `wake_at`; one loop handle armed for the earliest.
        self._timers: list[tuple[float, int, JobRuntime]] = []
        self._timer_seq = itertools.count()
        self._timer: asyncio.Handle | None = None
        self._timer_at = math.inf
        self.on_deferred: Callable[[], None] | None = None  # a timer slice left due jobs for the next one
        self._paced: deque[JobRuntime] = deque()  # workers ingest completed a bucket for, to be woken
        self._pacing = False  # a `_wake_some` is scheduled
        self.history: HistoryRecorder | None = None  # each evaluated bucket is recorded (oceand/history.py)
        self.on_upsert: Callable[[str], None] | None = None  # a job was added or changed (warm start)
        # Several daemons (oceand/cluster): a job acts only while its shard is held here; None = alone
        self.ownership = ownership
        if ownership is not None:
            ownership.on_acquired = self._shard_acquired
        # Several daemons: where ingest puts each job's samples (its buckets, or a forwarder to its owner)
        self.router: SampleRouter | None = None
        # Several daemons with Redis (oceand/cluster/hotlink.py): a step that changed a job's state hands
        # it on (job, its last bucket, the state as stored), and a takeover starts from the newer of the
        # Redis snapshot and the store's state (`load_hot(job, stored)`)
        self.on_state: Callable[[str, int | None, dict[str, Any]], None] | None = None
        self.load_hot: Callable[[str, dict[str, Any] | None], Awaitable[dict[str, Any] | None]] | None = None
        # ... and a takeover merges the open buckets the former owner handed over (`take_handoff(job)`:
        # where its closed buckets ended and its open buckets' samples, or None)
        self.take_handoff: Callable[[str], Awaitable[Handed | None]] | None = None
        self.progress: Callable[[str], object] = lambda _: None  # how `load` goes (the daemon's start)

    # ---- job set -------------------------------------------------------------------------------

    async def load(self) -> None:
        """Start a worker for every stored job, resuming its state, then settle pending decisions."""
        states = await self.store.load_states()  # one read, not one a job (10,000 jobs: seconds)
        jobs = await self.store.list_jobs()
        for i, stored in enumerate(jobs, 1):
            doc = JobDocument.model_validate(stored.doc)
            await self.upsert(doc, stored.version, states)
            if i % LOAD_PROGRESS == 0:
                self.progress(f"loaded {i} of {len(jobs)} jobs")
        newest: dict[str, Decision] = {}
        for d in await self.store.pending_decisions():  # oldest first
            decision = Decision.from_json(d)
            rt = self.jobs.get(decision.job)
            if rt is None:
                continue
            assert decision.id is not None
            self._logs[decision.id] = await self._load_attempts(rt.name, decision.id, key_of(decision))
            self._outcomes[decision.id] = ActuationOutcome.from_json(d.get("outcome"))
            older = newest.get(decision.job)
            if older is not None:  # only the newest pending decision of a job still means anything
                await self._supersede(rt, older, decision)
            newest[decision.job] = decision
        for decision in newest.values():
            self._settle_pending(self.jobs[decision.job], decision)
        for d in await self.store.pending_attempt_decisions():  # failed or superseded, a write unsettled
            rt = self.jobs.get(str(d.get("job")))
            if rt is not None:
                await self._add_unsettled(rt, d)

    async def upsert(
        self, doc: JobDocument, version: int, states: Mapping[str, dict[str, Any]] | None = None
    ) -> JobRuntime:
        """Start or update the job's worker; a new one resumes its stored state (from `states`, every
        job's state read at once, when given)."""
        rt = self.jobs.get(doc.job)
        now = self.clock()
        if rt is not None:
            old = rt.doc
            rt.doc, rt.version = doc, version
            if rt.actuation.blocked is not None:  # a changed document may be applied again
                rt.actuation = _unblocked(rt.actuation)
                self._dirty.add(doc.job)
            if (old.period, [(r.name, r.aggregate) for r in old.metric_rules()]) != (
                doc.period,
                [(r.name, r.aggregate) for r in doc.metric_rules()],
            ) or old.grace_seconds() != doc.grace_seconds():
                rt.buckets = self._new_buckets(doc, now)
                rt.ready = []  # buckets closed under the old rules: dropped
                rt.wire()
            self.ingestor.set_job(doc, self._sink(rt))
            rt.wake.set()
            self._upserted(doc.job)
            return rt
        stored = states.get(doc.job) if states is not None else await self.store.load_state(doc.job)
        state = JobState.from_json(stored)
        actuation = ActuationState.from_json((stored or {}).get("actuation"))
        if state.created_at is None:
            state.created_at = now
            self._dirty.add(doc.job)
        if actuation.blocked is not None and actuation.blocked_version != version:
            actuation = _unblocked(actuation)  # blocked at another version of the document
            self._dirty.add(doc.job)
        rt = JobRuntime(
            doc,
            version,
            self._new_buckets(doc, now),
            state,
            actuation=actuation,
            reload=self.ownership is not None,
            pace=self._wake_paced,
        )
        if state.last_bucket is not None:  # a bucket closed before a restart is not evaluated again
            if state.last_bucket <= rt.buckets.closed_upto:
                rt.buckets.closed_upto = max(rt.buckets.closed_upto, state.last_bucket + int(doc.period))
            else:  # closed ahead of the clock by an earlier version (a future-stamped sample): not a freeze
                log.warning(
                    "job %s: its last closed bucket %d is ahead of the clock; buckets start at %d",
                    doc.job,
                    state.last_bucket,
                    rt.buckets.closed_upto,
                    extra={"event": "future_bucket_clamped"},
                )
        self.jobs[doc.job] = rt
        self.ingestor.set_job(doc, self._sink(rt))
        rt.task = asyncio.get_running_loop().create_task(self._worker(rt), name=f"job:{doc.job}")
        self._upserted(doc.job)
        return rt

    def _sink(self, rt: JobRuntime) -> JobBuckets:
        """The bucket set ingest writes the job's samples into (cluster: the owner's, through the router)."""
        return rt.buckets if self.router is None else self.router.buckets_for(rt.name, rt.buckets)

    def reroute(self, jobs: Iterable[str] | None = None) -> None:
        """Ask the router again where these jobs' samples go (all jobs when None): their shard came here
        or went elsewhere."""
        names = self.jobs if jobs is None else jobs
        self.ingestor.swap_buckets((n, self._sink(self.jobs[n])) for n in names if n in self.jobs)

    def feed_forwarded(self, samples: Iterable[tuple[str, str, int, int, float]]) -> int:
        """Samples another daemon routed for jobs owned here, (job, instance, rule index, ts, value), into
        the buckets; returns how many were not taken (unknown job or rule: the daemons' documents differ
        for a moment)."""
        skipped = 0
        for job, instance, rule, ts, value in samples:
            rt = self.jobs.get(job)
            if rt is None or not 0 <= rule < len(rt.buckets.rules):
                skipped += 1
                continue
            if rt.buckets.add(rule, instance, ts, value):
                rt.wake.set()
        return skipped

    def _upserted(self, name: str) -> None:
        if self.on_upsert is not None:
            self.on_upsert(name)

    # ---- warm start (oceand/warm.py fetches, policies/warm.py decides what is filled) ----------------

    def warm_rules(self, name: str) -> list[PredictiveRule]:
        """The job's rules a warm start would fill now (none for a job that is gone)."""
        rt = self.jobs.get(name)
        return [] if rt is None else warm.warm_rules(rt.doc, rt.state)

    def tasks_of(self, name: str) -> frozenset[str]:
        """The host names and IPs of the job's current Marathon tasks, as far as known."""
        return self.ingestor.tasks_of(name)

    def warm(self, name: str, history: Mapping[str, Sequence[warm.BucketValue]]) -> dict[str, int]:
        """Fill the job's empty rule states from past bucket values (per rule); how many each took. Runs
        between two steps of the job's worker (no await): a rule the live buckets reached first is kept."""
        rt = self.jobs.get(name)
        if rt is None:
            return {}
        state, taken = warm.warm_state(rt.doc, rt.state, history)
        if taken:
            rt.state = state
            self._dirty.add(name)  # written behind with the next flush
        return taken

    async def remove(self, name: str) -> None:
        rt = self.jobs.pop(name, None)
        if rt is None:
            return
        self._dirty.discard(name)
        self.ingestor.remove_job(name)
        if rt.task is not None:
            rt.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rt.task

    def _new_buckets(self, doc: JobDocument, now: float) -> JobBuckets:
        grace = self.grace if self.grace is not None and doc.grace is None else doc.grace_seconds()
        rules = doc.metric_rules()
        jb = JobBuckets(doc.job, int(doc.period), grace, [(r.name, r.aggregate) for r in rules])
        jb.job_level = [r.metric in JOB_LEVEL_METRICS for r in rules]
        if self.limits.max_ahead is not None:
            jb.max_ahead = self.limits.max_ahead
        if self.limits.max_age is not None:
            jb.max_age = self.limits.max_age
        jb.start(now)
        return jb

    # ---- inputs --------------------------------------------------------------------------------

    def feed(self, name: str, metric: str, ts: float, value: float) -> None:
        """A job-level sample (e.g. alb.qps from the job's balancer) into every rule on that metric."""
        rt = self.jobs.get(name)
        if rt is None:
            return
        for i, rule in enumerate(rt.doc.metric_rules()):
            if rule.metric == metric and rt.buckets.add(i, f"job:{metric}", int(ts), value):
                rt.wake.set()

    def alarm(
        self,
        event: AlarmEvent,
        only: Callable[[str], bool] | None = None,
        elsewhere: list[str] | None = None,
    ) -> list[str]:
        """Queue an alarm callback for every job with a matching alarm rule; returns their names.

        A job queues one alarm per rule (the first of its alarm rules that matches): a newer alarm for the
        same rule replaces the queued one (counted, "coalesced"), so a flood never grows the queue.
        Cluster: a matching job for which `only` is false is not queued here but listed in `elsewhere`."""
        names = []
        for rt in self.jobs.values():
            rule = next(
                (r.name for r in rt.doc.rules if isinstance(r, AlarmRule) and alarm_matches(r, event)), None
            )
            if rule is None:
                continue
            if only is not None and not only(rt.name):
                if elsewhere is not None:
                    elsewhere.append(rt.name)
                continue
            if rt.alarms.pop(rule, None) is not None:
                self._alarm_dropped("coalesced")
            rt.alarms[rule] = event
            rt.wake.set()
            names.append(rt.name)
        return names

    def _alarm_dropped(self, reason: str) -> None:
        if self.on_alarm_dropped is not None:
            self.on_alarm_dropped(reason)

    async def manual(self, name: str, instances: int, reason: str, op: str | None = None) -> Decided:
        rt = self.jobs[name]
        fut: asyncio.Future[Decided] = asyncio.get_running_loop().create_future()
        rt.events.append(Manual(instances, reason, fut, op))
        rt.wake.set()
        return await fut

    def set_expected(self, name: str, running: int | None) -> None:
        """Marathon's running task count for the job (buckets close when that many reported)."""
        rt = self.jobs.get(name)
        if rt is not None and rt.buckets.expected != running:
            rt.buckets.expected = running
            if running is not None and rt.buckets.open:
                rt.wake.set()

    def set_tasks(self, name: str, endpoints: frozenset[str]) -> None:
        """The host names and IPs of the job's current Marathon tasks (`"tasks": true` selectors)."""
        self.ingestor.set_tasks(name, endpoints)

    # ---- the worker ----------------------------------------------------------------------------

    def mode(self, rt: JobRuntime) -> str:
        if rt.doc.mode == "paused":
            return "paused"
        if rt.doc.mode == "dry-run" or self.dry_run() or self.dry_reason(rt.doc) is not None:
            return "dry-run"
        return "active"

    def dry_run_reason(self, doc: JobDocument) -> str | None:
        """Why the job runs dry whatever its mode says (None when nothing forces it)."""
        if self.dry_run():
            return "dry_run = true in the daemon's configuration: nothing is applied"
        return self.dry_reason(doc)

    def _next_wake(self, rt: JobRuntime) -> float:
        t = rt.buckets.deadline()
        for rule in rt.doc.rules:
            if rule.type == "schedule":
                nf = schedule.next_fire(rule, rt.state.fires.get(rule.name, self.clock()), self.default_tz)
                if nf is not None:
                    t = min(t, nf)
        if rt.retry_at is not None:
            t = min(t, rt.retry_at)
        return t

    def _wake_at(self, rt: JobRuntime, wall: float) -> None:
        """Set the job's timer: its worker is woken at `wall` (clock time), unless woken before."""
        if wall == rt.wake_at:
            return  # already there (woken early by a push: the timer still stands)
        rt.wake_at = wall
        heapq.heappush(self._timers, (wall, next(self._timer_seq), rt))
        if len(self._timers) > 2 * len(self.jobs) + 64:  # entries left behind by changed times
            self._timers = [
                e for e in self._timers if e[2].wake_at == e[0] and self.jobs.get(e[2].name) is e[2]
            ]
            heapq.heapify(self._timers)
        if wall < self._timer_at:
            self._arm(wall)

    def _arm(self, wall: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = wall
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, wall - self.clock()), self._on_timer)

    def _on_timer(self) -> None:
        """Run the timers whose time has come: an idle job's empty bucket closes here (_idle_close), any
        other job's worker is woken. At most WAKE_BATCH wakes and TICK_BATCH closes (or TICK_SLICE seconds of
        them) now, the rest in later loop iterations, after the loop has run these workers and polled its
        sockets."""
        self._timer, self._timer_at = None, -math.inf  # no arming while this runs: it arms once, at the end
        if self._stopping:
            return
        timers, now, woken, ticked = self._timers, self.clock(), 0, 0
        end = time.perf_counter() + TICK_SLICE
        try:
            while timers and timers[0][0] <= now:
                if woken >= WAKE_BATCH or ticked >= TICK_BATCH or (ticked and time.perf_counter() > end):
                    self._timer = asyncio.get_running_loop().call_soon(self._on_timer)
                    if self.on_deferred is not None:
                        self.on_deferred()
                    return
                wall, _, rt = heapq.heappop(timers)
                if rt.wake_at != wall or self.jobs.get(rt.name) is not rt:
                    continue  # replaced by a later time, or the job was removed
                rt.wake_at = math.inf
                if rt.idle is not None and self._idle_close(rt, now):
                    ticked += 1
                else:
                    rt.wake.set()
                    woken += 1
        finally:
            if self._timer is None:  # not continued in the next iteration (also after an error): arm
                self._timer_at = math.inf
                if timers:
                    self._arm(timers[0][0])

    def _wake_paced(self, rt: JobRuntime) -> None:
        """Wake a worker whose bucket a push completed: at once when the job's decisions are applied (mode
        active), else — dry-run and paused jobs, whose decisions go nowhere — at most PACE_BATCH of them per
        loop iteration, first come, first served. A 1,000-point body completes ~250 jobs' buckets at once:
        woken together, their steps ran back to back (~25 ms at 10,000 jobs), and everything that became
        ready meanwhile — a request, a pending decision's commit coming back from the store's thread —
        waited behind all of them, at each of a reaction's hops (bench/reaction.py). Paced first come,
        first served with the others, an active job's own wake queued behind that backlog (its
        evaluation p90 26 ms after its push): it never waits for a simulation."""
        if self.mode(rt) == "active":
            rt.wake.set()
            return
        self._paced.append(rt)
        if not self._pacing:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a synchronous caller): at once
                self._paced.popleft().wake.set()
                return
            self._pacing = True
            loop.call_soon(self._wake_some)

    def _wake_some(self) -> None:
        paced = self._paced
        for _ in range(min(PACE_BATCH, len(paced))):
            paced.popleft().wake.set()
        if paced:  # after the workers just woken have run and the loop has polled its sockets
            asyncio.get_running_loop().call_soon(self._wake_some)
        else:
            self._pacing = False

    def _idle_key(self, rt: JobRuntime, before: JobState, last_decision: dict[str, Any] | None) -> Any:
        """After a step: (document, mode) when the job is idle, else None. Idle: the step evaluated an
        empty bucket (no samples at all), stored no decision and changed no state but its last bucket (and
        the time of a stabilization window's held count, which `_idle_close` moves as a step would); no
        data waits in a newer bucket, no event or retry is queued, and no schedule rule makes the bounds
        depend on the time. Evaluating the next empty bucket would then give the same result again (no
        data proposes nothing, so neither stabilization, cooldowns nor the clock come into play), as long
        as the document, the mode and the app's instance count stay the same."""
        b, state = rt.buckets, rt.state
        last = b.last
        if (
            last is None
            or last.reporters
            or b.open
            or rt.ready
            or rt.events
            or rt.retry_at is not None
            or state is before
            or state.last_bucket != last.start
            or rt.last_decision is not last_decision
            or any(r.type == "schedule" for r in rt.doc.rules)
        ):
            return None
        if not _same_state(before, state) and not (
            # a stabilization window: the step moved the time of its held count, as `_idle_close` will
            state.count is not None
            and _same_state(before, replace(state, recent=before.recent))
            and state.recent == policy.held_recent(rt.doc, before.recent, state.count, last.closed_at)
        ):
            return None
        return (rt.doc, self.mode(rt))

    def _idle_close(self, rt: JobRuntime, now: float) -> bool:
        """An idle job's due empty bucket, closed without waking its worker: it would evaluate to what the
        last one did (see _idle_key), so only the bucket closes and the state's last bucket moves (with a
        stabilization window, its held count's time too: `policy.held_recent`, what the step does). False
        (the worker is woken instead) when anything changed: samples arrived, an event or retry is queued,
        the document, the mode or the instance count is different."""
        b = rt.buckets
        try:
            if not (b.open or rt.ready or rt.events or rt.retry_at is not None):
                view = self._view(rt)  # as an evaluation would: also passes Marathon's running count on
                if view.known and view.instances == rt.state.count and rt.idle == (rt.doc, self.mode(rt)):
                    state = rt.state
                    for closed in b.due(now):
                        if self.on_bucket is not None:
                            self.on_bucket()
                        state.last_bucket = closed.start
                        if state.recent and state.count is not None:  # what a step does to the window
                            state.recent = policy.held_recent(
                                rt.doc, state.recent, state.count, closed.closed_at
                            )
                    self._wake_at(rt, b.deadline())  # = _next_wake: no schedule, no retry
                    return True
        except Exception:
            log.exception("idle close failed for job %s", rt.name, extra={"event": "worker_error"})
        rt.idle = None
        return False

    async def _worker(self, rt: JobRuntime) -> None:
        while not self._stopping:
            self._wake_at(rt, self._next_wake(rt))
            await rt.wake.wait()
            rt.wake.clear()
            if self._stopping:
                break
            rt.idle = None
            before, last_decision, acted = rt.state, rt.last_decision, rt.actuation
            try:
                self._inflight += 1
                await self._step(rt)
                if self.on_state is not None and (
                    rt.actuation is not acted
                    or (rt.state is not before and not _same_state(before, rt.state))
                ):  # cluster with Redis: the hot-state snapshot (only the last bucket moved: not worth it)
                    self.on_state(rt.name, rt.state.last_bucket, self._state_json(rt))
                rt.idle = self._idle_key(rt, before, last_decision)
                b, now = rt.buckets, self.clock()
                if b.open and any(start <= now and b.complete(o) for start, o in b.open.items()):
                    # complete only now: closing an earlier bucket taught how many instances report (its
                    # samples came before that close), so no push will wake the worker for it. A complete
                    # bucket that has not begun (stamped ahead of the clock) cannot close yet: its timer
                    # (`deadline`) wakes the worker when it begins; waking now would spin without a yield.
                    rt.wake.set()
            except asyncio.CancelledError:
                raise
            except StoreError as e:
                level = logging.WARNING if self.store.health.writable else logging.DEBUG  # else logged once
                log.log(level, "store unavailable for job %s: %s", rt.name, e, extra={"event": "store_error"})
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("worker step failed for job %s", rt.name, extra={"event": "worker_error"})
                await asyncio.sleep(1.0)
            finally:
                self._inflight -= 1
                rt.steps += 1

    async def _step(self, rt: JobRuntime) -> None:
        now = self.clock()
        if self.ownership is not None and not await self._owned(rt, now):
            return
        if rt.quiet_until is not None:  # cluster: a former owner's write may still land; nothing decided
            if now < rt.quiet_until:
                for closed in rt.closed(now):  # takeover gaps: streaks neither end nor grow
                    rt.state.last_bucket = closed.start
                return
            rt.quiet_until = None
        if rt.unsettled and rt.retry is None:  # a retry settles them first itself (`_apply`)
            try:
                await self._settle_older(rt, self.actuator_for(rt.doc))
            except (MarathonError, Permanent) as e:  # settled at a later step
                log.warning("job %s: cannot settle its earlier writes now: %s", rt.name, e)
        retry_at = rt.retry_at
        if rt.retry is not None and retry_at is not None and now >= retry_at:
            d, rt.retry = rt.retry, None
            await self._apply(rt, d, reread=True)
        for closed in rt.closed(now):
            await self._evaluate_bucket(rt, closed)
        await self._run_fires(rt, now)
        while (rt.events or rt.alarms) and not self._stopping:
            if rt.events:  # a manual scale never waits behind queued alarms
                ev = rt.events.popleft()
                try:
                    ev.done.set_result(await self._manual(rt, ev))
                except Exception as e:  # the API caller gets the error; the worker goes on
                    if not ev.done.done():
                        ev.done.set_exception(e)
                except asyncio.CancelledError:  # stopped mid-way: the caller must not wait forever
                    if not ev.done.done():
                        ev.done.set_exception(Stopping("the daemon stopped before the scale finished"))
                    raise
            else:
                await self._alarm(rt, rt.alarms.pop(next(iter(rt.alarms))))

    def _view(self, rt: JobRuntime) -> AppView:
        view = self.actuator_for(rt.doc).view(rt.doc)
        self.set_expected(rt.name, view.running)
        return view

    async def _known_view(self, rt: JobRuntime) -> AppView | None:
        """The app's state, read now if the cache has none; None when it cannot be known."""
        view = self._view(rt)
        if view.known:
            return view
        try:
            view = await self.actuator_for(rt.doc).refresh(rt.doc)
        except Exception as e:
            log.warning("job %s: cannot read its app: %s", rt.name, e, extra={"event": "app_unknown"})
            return None
        return view if view.known else None

    async def _evaluate_bucket(self, rt: JobRuntime, closed: ClosedBucket) -> None:
        if self.on_bucket is not None:
            self.on_bucket()
        if self.ownership is not None and (
            bucket_label(closed.start, self.ownership.acquired_at(rt.name), rt.handed_from) == TAKEOVER_GAP
        ):  # began before this daemon owned the job: its samples are partial; streaks neither end nor grow
            rt.state.last_bucket = closed.start
            self._dirty.add(rt.name)
            return
        view = self._view(rt)
        if not view.known:
            log.debug("job %s: app state unknown, bucket %d not evaluated", rt.name, closed.start)
            return
        values = dict(closed.values)
        if rt.buckets.job_level is not None:
            # a job-level total (alb.qps) is shared by the ready instances: rules see it per instance
            for (name, _), job_level in zip(rt.buckets.rules, rt.buckets.job_level, strict=True):
                v = values.get(name)
                if job_level and v is not None:
                    values[name] = v / max(1, view.ready)
        obs = Observation(
            now=closed.closed_at,
            bucket=closed.start,
            current=view.instances,
            ready=view.ready,
            values=values,
            reporters=closed.reporters,
            deployment_started_at=view.deployment_started_at,
            startup=view.startup,
        )
        decision, state = policy.step(
            rt.doc, rt.state, obs, obs.now, mode=self.mode(rt), default_tz=self.default_tz
        )
        did = (await self._decided(rt, decision, state)).decision.id
        if self.history is not None:
            self.history.record(
                rt.name, closed.start, values, view.ready, view.running, decision.desired, did
            )

    async def _alarm(self, rt: JobRuntime, event: AlarmEvent) -> None:
        view = self._view(rt)
        if not view.known:
            # negative cache: an app that could not be read is not asked for again for unknown_app_ttl
            # seconds, so an alarm flood costs at most one Marathon GET per app per TTL
            key, now = (rt.doc.target.cluster, rt.doc.target.app), self.clock()
            until = self._unknown_apps.get(key)
            if until is not None and now < until <= now + self.unknown_app_ttl:
                self._alarm_dropped("app_unknown")
                return
            known = await self._known_view(rt)
            if known is None:
                self._unknown_apps[key] = self.clock() + self.unknown_app_ttl
                self._alarm_dropped("app_unknown")
                log.warning(
                    "job %s: alarm ignored, app state unknown (not read again for %gs)",
                    rt.name,
                    self.unknown_app_ttl,
                    extra={"event": "alarm_skipped"},
                )
                return
            self._unknown_apps.pop(key, None)
            view = known
        call = AlarmCall(event, view.instances, view.ready, view.deployment_started_at)
        decision, state = policy.step(
            rt.doc, rt.state, call, event.now, mode=self.mode(rt), default_tz=self.default_tz
        )
        if decision is None:
            return
        await self._decided(rt, decision, state)

    async def _manual(self, rt: JobRuntime, m: Manual) -> Decided:
        view = await self._known_view(rt)  # read now, whatever the alarms' negative cache holds
        if view is None:
            raise AppUnknown(f"the state of app {rt.doc.target.app!r} cannot be read now; try again")
        self._unknown_apps.pop((rt.doc.target.cluster, rt.doc.target.app), None)
        mode = self.mode(rt)
        if mode == "paused":  # pausing stops automatic scaling, not an operator's explicit scale
            mode = "dry-run" if self.dry_run() or self.dry_reason(rt.doc) is not None else "active"
        scale = ManualScale(view.instances, m.instances, m.reason, m.op)
        decision, state = policy.step(
            rt.doc, rt.state, scale, self.clock(), mode=mode, default_tz=self.default_tz
        )
        assert decision is not None  # a manual scale always decides
        return await self._decided(rt, decision, state, always_store=True)

    async def _run_fires(self, rt: JobRuntime, now: float) -> None:
        """The schedule fires due at `now`, one `policy.step` each (the step finds them and marks them
        handled in the state it returns). Each fire is claimed in the store before its decision is
        committed, so it runs at most once across restarts: a fire claimed before (lost) is stepped
        again as lost, marked and not run. A store error leaves the state as it was: due again."""
        doc, mode = rt.doc, self.mode(rt)
        if not policy.fires_due(doc, rt.state, now, self.default_tz):
            return
        view = self._view(rt)
        if not view.known and mode != "paused":
            view = await self._known_view(rt) or view  # unknown: the due fires wait, within their grace
        lost: set[tuple[str, float]] = set()
        missed: set[tuple[str, float]] = set()
        while True:
            current = view.instances if view.known or mode == "paused" else None
            event = FireTime(current, frozenset(lost))
            decision, state = policy.step(doc, rt.state, event, now, mode=mode, default_tz=self.default_tz)
            fire = policy.fire_of(decision)
            for rule, at in policy.newly_handled(rt.state, state):
                if (rule, at) == fire or (rule, at) in lost or (rule, at) in missed:
                    continue
                await self.store.claim_fire(rt.name, rule, at, "missed")
                missed.add((rule, at))
                log.warning(
                    "schedule %s of job %s missed its fire at %s",
                    rule,
                    rt.name,
                    at,
                    extra={"event": "misfire"},
                )
            if decision is None or fire is None:
                if state is not rt.state:
                    rt.state = state
                    self._dirty.add(rt.name)
                return
            if not await self.store.claim_fire(rt.name, *fire, "fired"):  # StoreError: due again
                lost.add(fire)  # already run before a restart: at most once
                continue
            if decision.mode == "paused":  # marked handled, not run
                rt.state = state
                self._dirty.add(rt.name)
                continue
            await self._decided(rt, decision, state, always_store=True)
            view = self._view(rt)

    # ---- several daemons (oceand/cluster) ------------------------------------------------------

    async def _owned(self, rt: JobRuntime, now: float) -> bool:
        """Cluster mode: whether the job acts in this step. A job this daemon may not act on (its shard
        is held elsewhere, or not renewed in time here) closes its due buckets unevaluated, drops queued
        alarms and manual scales, and leaves its pending writes to the owner; once owned again it reads
        its state and pending writes from the store before anything else (`_take_over`)."""
        assert self.ownership is not None
        reason = self.ownership.gate(rt.name)
        if reason is not None:
            rt.reload, rt.quiet_until, rt.handed_from = True, None, None
            rt.ready = []
            rt.buckets.due(now)
            rt.retry, rt.retry_at, rt.unsettled = None, None, []
            for _ in rt.alarms:
                self._alarm_dropped(reason)
            rt.alarms.clear()
            while rt.events:
                ev = rt.events.popleft()
                if not ev.done.done():
                    ev.done.set_exception(
                        AppUnknown(f"job {rt.name} is not acted on by this daemon ({reason})")
                    )
            return False
        if rt.reload:
            await self._take_over(rt)
        return True

    def handoff_of(self, shards: set[int]) -> dict[int, dict[str, Handed]]:
        """The open buckets of the jobs of `shards` (being released), per shard and job: where the job's
        closed buckets end and its open buckets' samples as (rule, instance, ts, value)."""
        assert self.ownership is not None
        out: dict[int, dict[str, Handed]] = {}
        for rt in self.jobs.values():
            shard = self.ownership.shard(rt.name)
            if shard not in shards:
                continue
            out.setdefault(shard, {})[rt.name] = (rt.buckets.closed_upto, rt.buckets.open_samples())
        return out

    def _merge_handed(self, rt: JobRuntime, handed: Handed) -> None:
        """A takeover: the former owner's open buckets join this daemon's. Its buckets before
        `closed_upto` were evaluated there, so none of them is evaluated here again; those from there on
        hold the samples of both daemons and are whole, not `takeover_gap` (`handed_from`; see
        `JobBuckets.merge`)."""
        closed_upto, samples = handed
        merged = rt.buckets.merge(closed_upto, samples)
        rt.handed_from = closed_upto
        log.info(
            "job %s: %d samples of the former owner's open buckets merged (from bucket %d on)",
            rt.name,
            merged,
            closed_upto,
            extra={"event": "handoff_merged", "job": rt.name},
        )

    async def drain_shard(self, shard: int) -> None:
        """Wait until no job of `shard` is applying a decision (its shard is draining: no new intents)."""
        assert self.ownership is not None
        own = self.ownership
        while any(own.shard(name) == shard for name in self._applying):
            await asyncio.sleep(0.01)

    def _shard_acquired(self, shard: int, held: Held) -> None:
        assert self.ownership is not None
        for rt in self.jobs.values():
            if self.ownership.shard(rt.name) == shard:
                rt.reload = True
                rt.wake.set()

    async def _take_over(self, rt: JobRuntime) -> None:
        """HA.md §6.7, from the MySQL store: the job's last committed state (the former owner's; with Redis,
        its snapshot instead when that was evaluated at a later bucket: `load_hot`), and its
        newest pending decision, retried by `_apply`, which settles its writes of unknown outcome
        (landed: adopted, not resent; no sign of it past the write's deadline + grace: abandoned) and
        re-reads the app before sending anything. With such writes, the retry and every decision of the
        job wait for the quiet period (`quiet_until`: the last write's deadline + takeover_grace; the
        deadline is the former owner's wall clock, so this assumes the daemons' clocks roughly agree)."""
        own = self.ownership
        assert own is not None
        rt.ready = []  # closed before the takeover, against a state it replaces (ingest holds off meanwhile)
        stored = await self.store.load_state(rt.name)
        if self.load_hot is not None:  # Redis: the snapshot when it was evaluated at a later bucket
            newer = await self.load_hot(rt.name, stored)
            if newer is not stored:
                stored = newer
                self._dirty.add(rt.name)  # the store catches up with the next flush
        state = JobState.from_json(stored)
        if state.created_at is None:
            state.created_at = rt.state.created_at
        rt.state = state
        actuation = ActuationState.from_json((stored or {}).get("actuation"))  # the former owner's
        if actuation.blocked is not None and actuation.blocked_version != rt.version:
            actuation = _unblocked(actuation)
        rt.retry, rt.actuation, rt.unsettled = None, actuation, []
        if state.last_bucket is not None:
            rt.buckets.closed_upto = max(rt.buckets.closed_upto, state.last_bucket + int(rt.doc.period))
        rt.handed_from = None
        if self.take_handoff is not None:  # Redis: the former owner's open buckets, handed over at release
            handed = await self.take_handoff(rt.name)
            if handed is not None:
                self._merge_handed(rt, handed)
        newest: Decision | None = None
        for d in await self.store.pending_decisions():  # oldest first
            if d.get("job") != rt.name:
                continue
            decision = Decision.from_json(d)
            assert decision.id is not None
            self._logs[decision.id] = await self._load_attempts(rt.name, decision.id, key_of(decision))
            self._outcomes[decision.id] = ActuationOutcome.from_json(d.get("outcome"))
            if newest is not None:
                await self._supersede(rt, newest, decision)
            newest = decision
        for d in await self.store.pending_attempt_decisions():  # failed or superseded, a write unsettled
            if d.get("job") == rt.name:
                await self._add_unsettled(rt, d)
        rt.reload = False
        unknown = [a for _, _, log_ in rt.unsettled for a in log_.unresolved()]
        if newest is not None:
            self._settle_pending(rt, newest)
            assert newest.id is not None
            unknown += self._logs[newest.id].unresolved()  # writes of an older epoch: the former owner's
        if unknown:  # the quiet period first: the former owner may still be sending (HA.md §6.7)
            last = max(unknown, key=lambda a: a.deadline)
            wait = takeover_verdict(
                ForeignIntent(last.to_count, last.sent_at, last.deadline),
                None,
                self.clock(),
                own.takeover_grace,
            )
            if wait.action == WAIT and wait.until is not None and wait.until > self.clock():
                rt.quiet_until = wait.until
                if newest is not None:
                    rt.retry_at = wait.until

    async def _add_unsettled(self, rt: JobRuntime, d: dict[str, Any]) -> None:
        """A decision no longer pending (failed, superseded) with a write still pending in the store (its
        outcome unknown when a crash or a takeover came): the write is settled before the job sends
        anything (`_settle_older`: landed, the decision is adopted as applied; else abandoned), never sent
        again. Kept in memory only until then, so a restart or the next owner reads it here again."""
        decision = Decision.from_json(d)
        assert decision.id is not None
        if decision.id in self._logs or any(old.id == decision.id for old, _, _ in rt.unsettled):
            return  # pending itself (retried by `_apply`), or already read
        attempts = await self._load_attempts(rt.name, decision.id, key_of(decision))
        rt.unsettled.append((decision, ActuationOutcome.from_json(d.get("outcome")), attempts))
        rt.wake.set()  # settled at the worker's next step (`_step`), not at its next bucket

    # ---- commit and apply ----------------------------------------------------------------------

    @staticmethod
    def _worth_storing(d: Decision) -> bool:
        return (
            d.changes
            or bool(d.limits)
            or any(p.desired is not None and p.desired != d.current for p in d.proposals)
        )

    async def _decided(
        self, rt: JobRuntime, decision: Decision, state: JobState, *, always_store: bool = False
    ) -> Decided:
        previous, rt.state = rt.state, state
        if not (always_store or self._worth_storing(decision)):
            if self._worth_flushing(rt, previous, state):
                self._dirty.add(rt.name)
            return Decided(decision, NO_OUTCOME)
        outcome = self._first_outcome(rt, decision)
        body = decision.to_json()  # built once: for the store, then (with its id) for `_after`
        try:
            did = await self.store.commit(rt.name, self._state_json(rt), body, outcome.to_json())
        except StoreError as e:
            # Not recorded, so never applied. A change leaves the job's state as it was (streaks, count,
            # cooldown), so the job decides again at its next bucket, alarm or fire once writes succeed.
            if decision.changes and rt.state is state:
                rt.state = previous
            self._dirty.add(rt.name)  # the state in memory is written behind once the store takes it
            log.warning(
                "job %s: decision %d -> %d (%s) not recorded, so not applied: %s",
                rt.name,
                decision.current,
                decision.desired,
                ",".join(decision.reasons),
                e,
                extra={"event": "decision_not_recorded", "job": rt.name, "trigger": decision.trigger},
            )
            raise
        decision = decision._replace(id=did)
        self._dirty.discard(rt.name)
        if outcome.status == "pending" and did is not None:
            self._logs[did] = self._attempt_log(rt.name, did, key=key_of(decision))
            self._outcomes[did] = outcome
            if rt.retry is not None:
                await self._supersede(rt, rt.retry, decision)
            outcome = await self._apply(rt, decision)
        else:
            await self._after(rt, decision, outcome, {**body, "id": did})
        return Decided(decision, outcome)

    def _first_outcome(self, rt: JobRuntime, decision: Decision) -> ActuationOutcome:
        """The outcome a decision is committed with: `pending` when it is to be applied now."""
        mode = decision.mode
        if decision.changes and mode == "active" and rt.actuation.blocked is None:
            return ActuationOutcome("pending")
        if decision.changes and mode == "active":
            return ActuationOutcome("failed", error=rt.actuation.blocked, detail={"blocked": True})
        if decision.changes and mode == "dry-run":
            why = self.dry_reason(rt.doc)
            return ActuationOutcome("dry-run", detail={"note": why} if why else {})
        return ActuationOutcome("paused" if mode == "paused" else "none")

    def _state_json(self, rt: JobRuntime) -> dict[str, Any]:
        """The job's state as stored: its `JobState` and, when there is one, its `ActuationState`."""
        out = rt.state.to_json()
        act = rt.actuation
        if act.retry is not None or act.blocked is not None:
            out["actuation"] = act.to_json()
        return out

    async def _record(self, rt: JobRuntime, decision_id: int, outcome: ActuationOutcome) -> None:
        """Replace a decision's outcome, with the job's state (and its retry / block) in one transaction.
        Cluster: fenced by this daemon's lease epoch of the job's shard. A daemon that lost the shard
        writes nothing (the owner's record stands; it settles the decision's writes itself) and goes on:
        the job stops acting at its next step and reads the store again once its shard is back."""
        fence = None if self.ownership is None else self.ownership.fence(rt.name)
        try:
            await self.store.record_outcome(
                decision_id, rt.name, outcome.to_json(), self._state_json(rt), fence=fence
            )
        except FencedWrite as e:
            rt.reload = True
            if self.ownership is not None:
                self.ownership.outcome_fenced()
            log.warning(
                "job %s: outcome of decision %s not recorded: %s",
                rt.name,
                decision_id,
                e,
                extra={"event": "outcome_fenced", "job": rt.name},
            )
            return
        self._dirty.discard(rt.name)

    def _attempt_log(
        self, job: str, decision_id: int, attempts: list[Attempt] | None = None, *, key: str = ""
    ) -> AttemptLog:
        own = self.ownership

        async def record(a: Attempt) -> None:
            if own is not None and a.status == PENDING:  # a new write: its intent, fenced by the lease epoch
                try:
                    log_.epoch = await own.begin_attempt(decision_id, job, key, a.to_json(), self.clock())
                except OverBudget:  # recorded, then abandoned unsent: the next write is the next attempt
                    a.status = ABANDONED
                    log_.attempts.append(a)
                    raise
                except (
                    CoordError
                ) as e:  # inserted or not, nothing is sent: settle it here (`_unknown_intent`)
                    await self._unknown_intent(job, decision_id, key, log_, a, e)
                    raise
                return
            if own is not None:  # an outcome: written only while this daemon's lease epoch is current
                await own.record_attempt(decision_id, job, key, a.to_json(), self.clock())
                return
            await self.store.record_attempt(decision_id, job, a.to_json())

        log_ = AttemptLog(attempts or (), record, decision_id)
        return log_

    async def _unknown_intent(
        self, job: str, decision_id: int, key: str, log_: AttemptLog, a: Attempt, error: CoordError
    ) -> None:
        """A fenced intent whose insert got no answer may be in the store all the same, pending, with
        nothing sent. It is written abandoned at once (an insert or an update: either is true); when the
        store does not take that either, it stays in the log as pending, so the decision's retry (or, when
        superseded, `_settle_older`; after a crash, the next owner) settles it before anything is sent.
        Either way the next write of the decision is the next attempt."""
        log_.attempts.append(a)
        abandoned = replace(a, status=ABANDONED, detail={**a.detail, "error": f"intent unknown: {error}"})
        assert self.ownership is not None
        try:
            await self.ownership.record_attempt(decision_id, job, key, abandoned.to_json(), self.clock())
        except StoreError:
            return
        a.status, a.detail = abandoned.status, abandoned.detail

    async def _load_attempts(self, job: str, decision_id: int, key: str) -> AttemptLog:
        stored = await self.store.attempts(decision_id)
        return self._attempt_log(job, decision_id, [Attempt.from_json(a) for a in stored], key=key)

    def _count(self, what: str) -> None:
        if self.on_actuation is not None:
            self.on_actuation(what)

    async def _apply(self, rt: JobRuntime, decision: Decision, *, reread: bool = False) -> ActuationOutcome:
        """Send a pending decision's count; every write is recorded (an attempt) before it goes out.

        Before anything is sent: writes of unknown outcome of this job are settled (one that landed
        settles its decision as applied and is never sent again), and the app is read again when
        `reread` (a retry, a restart), when such a write was found, or when the decision is older than
        `stale_after` (taken while the store stalled, say): a count that already matches settles it as
        applied; a count other than the one it was decided on makes it stale, and it is not sent."""
        assert decision.id is not None
        actuator = self.actuator_for(rt.doc)
        attempts = self._logs.get(decision.id)
        started = time.monotonic()
        stale = False
        self._applying[rt.name] = decision
        try:
            if attempts is None:
                attempts = self._logs[decision.id] = await self._load_attempts(
                    rt.name, decision.id, key_of(decision)
                )
            ours = self._ours(rt, decision, attempts)
            if rt.unsettled:
                await self._settle_older(rt, actuator, ours)
                reread = True
            outcome, stale = await self._settle_and_send(rt, actuator, decision, attempts, reread, ours)
        except DuplicateDecision as e:  # cluster: this decision's write was recorded (and sent) before
            outcome, stale = Outcome("failed", {"duplicate": str(e)}), True
        except StoreError as e:  # nothing is sent before its attempt is on disk (or fenced): retried
            outcome = Outcome("failed", {"error": f"store: {e}"})
        except Permanent as e:  # the app is gone or refused while settling or re-reading
            outcome = Outcome("failed", {"error": str(e), "status": e.status}, permanent=True)
        except MarathonError as e:  # Marathon cannot be read now: retried
            outcome = Outcome("failed", {"error": str(e)})
        except Exception as e:  # an actuator bug must not kill the worker; record it as a failure
            log.exception("actuator failed for job %s", rt.name)
            outcome = Outcome("failed", {"error": f"{type(e).__name__}: {e}"})
        finally:
            self._applying.pop(rt.name, None)
        latency = round((time.monotonic() - started) * 1000, 3)
        prev = self._outcomes.get(decision.id, NO_OUTCOME)
        writes = len(attempts.attempts) if attempts else 0  # writes of this decision
        new = _outcome(outcome, stale, latency, prev.tries + 1, writes)
        act = rt.actuation
        if new.status == "pending":  # transient: retried with backoff; a newer decision replaces it
            delay = self.retry_backoff.delay(new.tries - 1)
            new = replace(new, retry_at=self.clock() + delay)
            rt.retry, rt.actuation = decision, replace(act, retry=decision.id, retry_at=new.retry_at)
            self._outcomes[decision.id] = new
        else:
            if act.retry == decision.id:
                act = replace(act, retry=None, retry_at=None)
            if outcome.permanent and not stale:  # refused: nothing is applied until the document changes
                error = new.error or "failed"
                act = replace(act, blocked=error, blocked_version=rt.version, blocked_by=decision.id)
            rt.actuation = act
            self._logs.pop(decision.id, None)
            self._outcomes.pop(decision.id, None)
        await self._record(rt, decision.id, new)
        await self._after(rt, decision, new)
        return new

    async def _settle_and_send(
        self,
        rt: JobRuntime,
        actuator: Actuator,
        decision: Decision,
        attempts: AttemptLog,
        reread: bool,
        ours: set[int],
    ) -> tuple[Outcome, bool]:
        """(outcome, stale): the checks of `_apply`, then the send."""
        if unknown := attempts.unresolved():
            settled = await actuator.settle(rt.doc, attempts)
            self._settled(rt, unknown, settled.landed, settled.instances, ours)
            if settled.landed:
                note = f"an earlier write of this decision landed ({settled.evidence}); not sent again"
                return Outcome(
                    "applied", {"settled": note, "landed": settled.evidence, "observed": settled.instances}
                ), False
            reread = True
        age = self.clock() - decision.at
        if reread or age > self.stale_after:
            if not reread:
                self._count("stale")
            view = await actuator.refresh(rt.doc)
            self._seen_count(view.instances, ours)
            if view.instances == decision.desired:
                note = "the app already has the count"
                return Outcome("applied", {"settled": note, "already_applied": True}), False
            if view.instances != decision.current:
                self._count("stale_dropped")
                note = (
                    f"not sent: decided {age:.1f}s ago on {decision.current} instances,"
                    f" the app has {view.instances} now"
                )
                return Outcome("failed", {"stale": note, "observed": view.instances}), True
        return await actuator.apply(rt.doc, decision, attempts), False

    async def _settle_older(self, rt: JobRuntime, actuator: Actuator, ours: set[int] | None = None) -> None:
        """Settle the writes of unknown outcome that superseded decisions of this job left. One that
        landed makes its decision applied; the decision at hand is then re-read before it is sent.
        Raises (a transient failure for the decision at hand) when the app cannot be read."""
        ours = self._ours(rt) if ours is None else ours
        while rt.unsettled:
            old, outcome, attempts = rt.unsettled[0]
            unknown = attempts.unresolved()
            settled = await actuator.settle(rt.doc, attempts)
            self._settled(rt, unknown, settled.landed, settled.instances, ours)
            rt.unsettled.pop(0)
            if settled.landed:
                note = f"a write of this decision landed ({settled.evidence}) after it was superseded"
                detail = dict(
                    outcome.detail, settled=note, landed=settled.evidence, observed=settled.instances
                )
                assert old.id is not None
                await self._record(rt, old.id, replace(outcome, status="applied", detail=detail))
                log.info(
                    "job %s: superseded decision %s was applied after all (%s)",
                    rt.name,
                    old.id,
                    settled.evidence,
                    extra={"event": "settled_landed"},
                )

    def _ours(
        self, rt: JobRuntime, decision: Decision | None = None, attempts: AttemptLog | None = None
    ) -> set[int]:
        """The counts this daemon's decisions of the job (the one at hand, and the superseded ones with
        writes to settle) were made on or wrote: an app found at another count was scaled by someone else."""
        out: set[int] = set()
        pairs = [(d, log_) for d, _, log_ in rt.unsettled]
        if decision is not None and attempts is not None:
            pairs.append((decision, attempts))
        for d, log_ in pairs:
            out |= {d.current, d.desired, *(a.to_count for a in log_.attempts)}
        return out

    def _settled(
        self, rt: JobRuntime, unknown: list[Attempt], landed: bool, instances: int, ours: set[int]
    ) -> None:
        """Count a settle: landed or not; in cluster mode, writes left under another lease epoch than the
        one held now are a takeover's reconciliation (adopted or abandoned); an app at none of our counts
        is a foreign write (`_seen_count`)."""
        self._count("landed" if landed else "not_landed")
        own = self.ownership
        if own is not None:
            epoch = own.epoch(rt.name)
            if any(a.epoch is not None and a.epoch != epoch for a in unknown):
                self._count("reconcile_adopted" if landed else "reconcile_abandoned")
        if unknown:
            self._seen_count(instances, ours)

    def _seen_count(self, instances: int, ours: set[int]) -> None:
        """The app was found at `instances`: a count none of our decisions or writes of the job had is a
        foreign write, counted once per count seen in one apply (`ours` takes it)."""
        if instances not in ours:
            self._count("foreign_write")
            ours.add(instances)

    async def _supersede(self, rt: JobRuntime, old: Decision, new: Decision) -> None:
        """A decision still retrying is replaced by a newer one: it will never be sent again. A write of
        it whose outcome is unknown is settled before the job sends anything (`_settle_older`)."""
        assert old.id is not None
        rt.retry = None
        if rt.actuation.retry == old.id:
            rt.actuation = replace(rt.actuation, retry=None, retry_at=None)
        prev = self._outcomes.pop(old.id, ActuationOutcome("pending"))
        outcome = replace(prev, status="superseded", superseded_by=new.id, retry_at=None)
        attempts = self._logs.pop(old.id, None)
        if attempts is not None and attempts.unresolved():
            rt.unsettled.append((old, outcome, attempts))
        await self._record(rt, old.id, outcome)

    def _settle_pending(self, rt: JobRuntime, decision: Decision) -> None:
        """A decision left pending by a crash or a stop: its worker retries it at the retry time its
        state kept (at once when it kept none: a write was cut off), settling its writes of unknown
        outcome and re-reading the app before anything is sent (`_apply`)."""
        act, now = rt.actuation, self.clock()
        at = act.retry_at if act.retry == decision.id and act.retry_at is not None else now
        rt.retry, rt.actuation = decision, replace(act, retry=decision.id, retry_at=at)
        rt.wake.set()

    async def _after(
        self,
        rt: JobRuntime,
        decision: Decision,
        outcome: ActuationOutcome,
        body: dict[str, Any] | None = None,
    ) -> None:
        """`body`: `decision.to_json()` when the caller has it already."""
        rt.last_decision = outcome.view(decision.to_json() if body is None else body)
        log_decision(log, rt.last_decision)
        if self.on_decision is not None:
            res = self.on_decision(rt.doc, decision, outcome)
            if res is not None:
                await res

    # ---- background ----------------------------------------------------------------------------

    async def flush(self) -> None:
        """Write the states that changed without a decision (streak counts, fire history).

        FLUSH_CHUNK commits at a time go to the store together, so its group commit writes many states
        per transaction (SQLite) or per pooled connection (MySQL) instead of one after the other."""
        dirty, self._dirty = self._dirty, set()
        pending = list(dirty)
        try:
            while pending:
                chunk = pending[-FLUSH_CHUNK:]
                results = await asyncio.gather(*(self._write_state(n) for n in chunk), return_exceptions=True)
                del pending[-len(chunk) :]
                failed = [(n, r) for n, r in zip(chunk, results, strict=True) if isinstance(r, BaseException)]
                if failed:
                    pending += [n for n, _ in failed]
                    raise failed[0][1]
        finally:
            self._dirty.update(pending)  # not written (store error, cancelled): the next flush writes them

    async def _write_state(self, name: str) -> None:
        rt = self.jobs.get(name)
        if self.ownership is not None and self.ownership.gate(name) is not None:
            return  # cluster: a job owned elsewhere now is the owner's to write (never an older state)
        if rt is not None:
            await self.store.commit(name, self._state_json(rt))

    def _worth_flushing(self, rt: JobRuntime, old: JobState, new: JobState) -> bool:
        """Whether a state changed without a decision must be written behind. Not when only `last_bucket`
        moved and a restart would skip that bucket anyway (it starts with the bucket containing its
        clock): an idle job whose empty buckets close every period then writes nothing."""
        if not _same_state(old, new):
            return True
        if new.last_bucket is None or new.last_bucket == old.last_bucket:
            return False
        now, period = int(self.clock()), int(rt.doc.period)
        return new.last_bucket + period > now - now % period

    async def flusher(self, stop: asyncio.Event) -> None:
        sweep_at = time.monotonic() + self.sweep_interval
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.flush_interval)
            try:
                await self.flush()
            except StoreError as e:
                level = logging.WARNING if self.store.health.writable else logging.DEBUG  # else logged once
                log.log(level, "state flush failed: %s", e, extra={"event": "store_error"})
            if time.monotonic() >= sweep_at:
                sweep_at = time.monotonic() + self.sweep_interval
                await self.expire_series()

    async def expire_series(self, chunk: int = 20_000) -> int:
        """Drop the routed series not seen for a while (Ingestor.expire), `chunk` series at a time with the
        event loop running in between; returns how many."""
        now = self.clock()
        keys = self.ingestor.series_keys()
        n = 0
        for i in range(0, len(keys), chunk):
            n += self.ingestor.expire(now, keys[i : i + chunk])
            await asyncio.sleep(0)
        if n:
            log.info("%d series not seen for a while expired", n, extra={"event": "series_expired"})
            if self.on_series_expired is not None:
                self.on_series_expired(n)
        return n

    async def stop(self, timeout: float = 30.0) -> int:
        """Stop within `timeout` seconds; returns the number of queued events dropped.

        Queued alarms and manual scales are dropped at once (counted and logged; a waiting manual scale
        gets an error). Steps in flight (an apply, a Marathon call) get until the deadline to finish,
        then are cancelled: a write cut off that way keeps its attempt `pending` (recorded before it was
        sent) and is settled at the next start. The last states are written within what is left."""
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        dropped = 0
        for rt in self.jobs.values():
            dropped += len(rt.events) + len(rt.alarms)
            for ev in rt.events:
                if not ev.done.done():
                    ev.done.set_exception(Stopping("the daemon is stopping; the scale was not applied"))
            rt.events.clear()
            rt.alarms.clear()
            rt.wake.set()
        if dropped:
            log.warning(
                "stopping: dropped %d queued alarm and manual-scale events",
                dropped,
                extra={"event": "shutdown_dropped", "dropped": dropped},
            )
        while self._inflight and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for name, d in self._applying.items():
            log.warning(
                "stopping: job %s: decision %s still being applied; its write is settled at the next start",
                name,
                d.id,
                extra={"event": "actuation_unknown", "job": name, "decision": d.id},
            )
        tasks = [rt.task for rt in self.jobs.values() if rt.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            async with asyncio.timeout(max(0.1, deadline - loop.time())):
                await self.flush()
        except TimeoutError:
            log.warning(
                "stopping: the last states were not all written in time", extra={"event": "store_error"}
            )
        return dropped

    # ---- status --------------------------------------------------------------------------------

    def status(self, name: str) -> dict[str, Any]:
        rt = self.jobs[name]
        now = self.clock()
        view = self.actuator_for(rt.doc).view(rt.doc)
        pstatus = policy.status(rt.doc, rt.state, now)
        windows = policy.windows_at(rt.doc, now, self.default_tz)
        rules: dict[str, Any] = {}
        last = rt.buckets.last
        per_rule: Mapping[str, Any] = pstatus.get("rules", {})
        for rule in rt.doc.rules:
            entry: dict[str, Any] = {"type": rule.type}
            entry.update(per_rule.get(rule.name, {}))
            if rule.type in ("threshold", "target", "predictive") and last is not None:
                entry["last_bucket"] = last.start
                entry["value"] = last.values.get(rule.name)
                entry["reporters"] = last.per_rule_reporters.get(rule.name, 0)
            if rule.type in ("threshold", "target", "predictive"):
                entry.update(_no_data(rt.buckets, rule.name, now))
            if isinstance(rule, PredictiveRule):
                # the lead its forecasts use: the document's startup, else the one learned from Marathon
                entry["lead"], entry["lead_from"] = lead_for(rule.startup, view.startup)
            if rule.type == "schedule":
                nf = schedule.next_fire(rule, now, self.default_tz)
                entry["next_fire"] = nf
                entry["next_fire_local"] = _local(nf, rule.timezone or self.default_tz)
            rules[rule.name] = entry
        return {
            "job": name,
            "mode": rt.doc.mode,
            "effective_mode": self.mode(rt),
            "dry_run_reason": self.dry_run_reason(rt.doc),
            "version": rt.version,
            "app_known": view.known,
            "instances": view.instances,
            "ready": view.ready,
            "running": view.running,
            "deployment_in_progress": view.deployment_started_at is not None,
            "startup": view.startup,
            "warnings": document_warnings(rt.doc),
            "bounds": dict(zip(("min", "max"), policy.bounds(rt.doc, windows), strict=True)),
            "rules": rules,
            "cooldown_left": pstatus.get("cooldown_left", {}),
            "buckets": {
                "period": rt.buckets.period,
                "open": sorted(rt.buckets.open),
                "closed_upto": rt.buckets.closed_upto,
                "expected_reporters": rt.buckets.expected,
                "late_samples": rt.buckets.late,
                "overflow_samples": rt.buckets.overflow,
                "series": self.ingestor.series_of(name),
                "series_limit": self.limits.max_series_per_job,
                "series_refused": self.ingestor.series_refused(name),
            },
            "windows": [{"rule": w.rule, "start": w.start, "end": w.end} for w in windows],
            "blocked": rt.actuation.blocked,
            "retry_at": rt.retry_at,
            "last_decision": rt.last_decision,
            "cluster": None if self.ownership is None else self.ownership.describe(name),
        }


def _unblocked(act: ActuationState) -> ActuationState:
    return replace(act, blocked=None, blocked_version=None, blocked_by=None)


_OUTCOME_KEYS = ("deployment_id", "version", "error", "latency_ms")


def _outcome(applied: Outcome, stale: bool, latency_ms: float, tries: int, writes: int) -> ActuationOutcome:
    """The record of one apply round, from what the actuator answered (`applied.result`: deployment id,
    version, error, and details such as url, unknown, landed, settled, stale)."""
    detail = dict(applied.result)
    known = {k: detail.pop(k) for k in _OUTCOME_KEYS if k in detail}
    status: OutcomeStatus = "applied" if applied.status == "applied" else "pending"
    if applied.status != "applied" and (stale or applied.permanent):
        status = "failed"
    return ActuationOutcome(
        status,
        deployment_id=None if known.get("deployment_id") is None else str(known["deployment_id"]),
        version=None if known.get("version") is None else str(known["version"]),
        latency_ms=float(known.get("latency_ms", latency_ms)),
        error=None if known.get("error") is None else str(known["error"]),
        attempts=writes,
        tries=tries,
        detail=detail,
    )


def _same_state(a: JobState, b: JobState) -> bool:
    """Equal but for `last_bucket`."""
    return (a.count, a.last_change_at, a.streaks, a.recent, a.alarms, a.fires, a.created_at) == (
        b.count,
        b.last_change_at,
        b.streaks,
        b.recent,
        b.alarms,
        b.fires,
        b.created_at,
    )


def _no_data(jb: JobBuckets, rule: str, now: float) -> dict[str, Any]:
    """`no_data_since` and a reason the operator can act on, when the rule has had no sample for
    NO_DATA_PERIODS periods (PRODUCT §9)."""
    since = jb.silent_since(rule, now)
    if since is None:
        return {"no_data_since": None, "no_data_reason": None}
    if rule in jb.data_upto:
        why = (
            "series matched the rule's selector but have sent no sample since then: the agents stopped, "
            "or their endpoint or tags changed (GET /api/v1/ingest/unmatched lists what arrives unmatched)"
        )
    else:
        why = (
            "no series has matched the rule's metric and selector since the job started: compare them "
            "with what arrives (GET /api/v1/ingest/unmatched)"
        )
    return {"no_data_since": since, "no_data_reason": why}


def _local(t: float | None, tz: str) -> str | None:
    """A fire time as ISO 8601 in the schedule's time zone (what an operator reads)."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, ZoneInfo(tz)).isoformat()
