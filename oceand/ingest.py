"""The ingest routing: typed Falcon items -> job buckets (PRODUCT §2.1, §3.1).

Parsing is not here: collectors.falcon_items turns a body into FalconItems, by the fast decoder
(`decode_items`) or the tolerant item-by-item checks (`check_items`, which `Ingestor.check` / `ingest`
call with the body's PushResult). Both kinds of items go through the same `_route`:

- items whose metric no job watches leave in C-level passes (map/compress), touching no per-series state;
- a series' identity (endpoint, metric, tags) is routed once and cached: the next sample of it costs one
  dictionary lookup (in a C-level pass), its last-seen write and one bucket write per job that watches it
  (ARCHITECTURE property 5). Routing uses each rule's selector (default tag job=<name>);
  `cpu.used` and `mem.used.percent` are derived from `cpu.idle` and `mem.memfree.percent`.

COUNTER and DERIVE series become per-second rates from consecutive samples, as Falcon stores them.
Every routed series has a slot that holds when it was last seen (its newest sample's period), which is
all its expiry needs; its values live only in its jobs' buckets.

A body larger than collectors.falcon_items.SLICE_BYTES is not decoded or routed in one go: the caller cuts
it (`split_body`), decodes and routes the pieces one by one, SLICE_ITEMS items at a time, letting the loop
run between (`ingest` and `ingest_items` add to one PushResult, with the items' positions in the body).

The job buckets (PRODUCT §3.1), where the routed samples land:

Buckets are aligned to whole multiples of the period since the Unix epoch. For each metric rule, each
instance's value in a bucket is its last sample in that bucket; the job value is the rule's aggregate over
the instances that reported. A bucket closes as soon as every metric rule has heard from as many distinct
instances as the job has running tasks (known from Marathon; before that, as many as reported in the
previous closed bucket), or at bucket end + grace, whichever comes first. Buckets close in order: closing a
bucket closes every earlier open one first. Samples for a closed bucket are counted and dropped.

The daemon's clock decides what closes, never the data: a complete bucket closes early only once its period
has begun (start <= now), so samples stamped in the future wait in their bucket and cannot close every bucket
up to them or move the bucket clock ahead. A job holds at most MAX_OPEN open buckets (samples for another
one are counted in `overflow` and dropped), and a run of empty buckets closes as one no-data bucket, so no
input closes more than 2 x MAX_OPEN + 1 buckets at once.

The clock is an argument: `add` and `due` take the time, so tests and replay control it.
"""

from __future__ import annotations

import bisect
import fnmatch
import math
import operator
import os
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain, compress, count, islice, repeat
from typing import Any

from collectors.falcon import check_key, parse_tags
from collectors.falcon_items import FalconItem, check_items
from policies.document import JobDocument, Selector

# ---- the job buckets (PRODUCT §3.1) ------------------------------------------------------------

AGGREGATES = ("avg", "max", "min", "sum", "p50", "p90", "p99")
MAX_OPEN = 256  # open buckets per job (the ingest timestamp window keeps the usual count near 62)
NO_DATA_PERIODS = 3  # a rule without a sample for this many periods says so in the job's status
ALB_QPS = "alb.qps"  # the rule metric fed by the job's own balancer (PRODUCT §2.3): its one definition
JOB_LEVEL_METRICS = frozenset({ALB_QPS})  # one value per job (from its balancer), not per instance
WINDOW_PERIODS = 60  # a job's window: how far back (in periods) a sample's timestamp may be by default


def aggregate(kind: str, values: list[float]) -> float | None:
    """avg | max | min | sum | pNN over instance values (percentiles interpolate linearly, as numpy)."""
    n = len(values)
    if n == 0:
        return None
    if kind == "avg":
        return math.fsum(values) / n
    if kind == "max":
        return max(values)
    if kind == "min":
        return min(values)
    if kind == "sum":
        return math.fsum(values)
    q = {"p50": 0.5, "p90": 0.9, "p99": 0.99}[kind]
    s = sorted(values)
    pos = (n - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass(slots=True)
class OpenBucket:
    start: int
    # per metric rule (by index): instance -> (timestamp, value)
    values: list[dict[str, tuple[int, float]]]


@dataclass(frozen=True, slots=True)
class ClosedBucket:
    start: int
    closed_at: float
    values: dict[str, float | None]  # rule name -> aggregate (None = no data)
    reporters: int  # distinct instances that reported any metric rule
    per_rule_reporters: dict[str, int]
    early: bool  # closed because every instance reported (not at the deadline)


@dataclass(slots=True)
class JobBuckets:
    job: str
    period: int
    grace: float
    rules: list[tuple[str, str]]  # (rule name, aggregate) of the job's metric rules, in order
    expected: int | None = None  # running tasks from Marathon; None = unknown
    open: dict[int, OpenBucket] = field(default_factory=dict)
    closed_upto: int = 0  # every bucket starting before this is closed
    last_reporters: int = 0  # distinct reporters in the last closed bucket
    reporting: list[bool] | None = None  # per rule: had data in the last closed bucket (None: none closed)
    job_level: list[bool] | None = None  # per rule: one value for the whole job (alb.qps), not per instance
    late: int = 0  # samples dropped because their bucket had closed
    overflow: int = 0  # samples dropped because the job had MAX_OPEN open buckets
    last: ClosedBucket | None = None
    # the timestamps ingest accepts for this job, around the daemon's clock (seconds); < 0: the defaults,
    # one period ahead and a window of WINDOW_PERIODS periods back
    max_ahead: float = -1.0
    max_age: float = -1.0
    started: int = 0  # the start of the first bucket (`start`)
    data_upto: dict[str, int] = field(default_factory=dict)  # rule -> end of its last closed bucket with data
    # the buckets a push body completed, closed by ingest once the body is routed (`Ingestor.route`): the
    # engine points it at the job's worker, which evaluates them (without asking the buckets again)
    hand: Callable[[list[ClosedBucket]], object] = field(
        default=lambda closed: None, repr=False, compare=False
    )
    # whether ingest may close them: not while the job's takeover is pending (cluster), whose stored state
    # and handed-over buckets decide where closing starts; then a completing push only wakes the worker
    may_close: Callable[[], bool] = field(default=lambda: True, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_ahead < 0:
            self.max_ahead = float(self.period)
        if self.max_age < 0:
            self.max_age = float(WINDOW_PERIODS * self.period)

    def start(self, now: float) -> None:
        """Begin with the bucket that contains `now` (earlier buckets are considered closed)."""
        self.closed_upto = self.started = int(now) - int(now) % self.period

    def add(self, rule_index: int, instance: str, ts: int, value: float) -> bool:
        """Record a sample; True when its bucket just became complete (every instance reported)."""
        start = ts - ts % self.period
        if start < self.closed_upto:
            self.late += 1
            return False
        b = self.open.get(start)
        if b is None:
            if len(self.open) >= MAX_OPEN:
                self.overflow += 1
                return False
            b = self.open[start] = OpenBucket(start, [{} for _ in self.rules])
        per = b.values[rule_index]
        prev = per.get(instance)
        if prev is None or prev[0] <= ts:
            per[instance] = (ts, value)
        if prev is not None:
            return False  # an instance already counted: completion cannot change
        return self.complete(b)

    def open_samples(self) -> list[tuple[str, str, int, float]]:
        """The samples of the open buckets as (rule, instance, ts, value): what a handoff carries."""
        return [
            (self.rules[i][0], instance, ts, value)
            for b in self.open.values()
            for i, per in enumerate(b.values)
            for instance, (ts, value) in per.items()
        ]

    def merge(self, closed_upto: int, samples: Iterable[tuple[str, str, int, float]]) -> int:
        """Another daemon's open buckets join these (a handoff): every bucket before `closed_upto` was
        closed there, so it is closed here too (open ones dropped); its samples are added as if pushed
        here (a later sample of an instance wins). Samples of a rule these buckets do not have, or of a
        bucket closed here, are dropped. Returns how many were added."""
        if closed_upto > self.closed_upto:
            self.closed_upto = closed_upto
            for start in [start for start in self.open if start < closed_upto]:
                del self.open[start]
        index = {name: i for i, (name, _) in enumerate(self.rules)}
        added = 0
        for rule, instance, ts, value in samples:
            i = index.get(rule)
            if i is not None and ts - ts % self.period >= self.closed_upto:
                self.add(i, instance, ts, value)
                added += 1
        return added

    def _want(self) -> int:
        return self.expected if self.expected is not None else self.last_reporters

    def complete(self, b: OpenBucket) -> bool:
        """Every instance reported every rule that is reporting: a rule that had data in the last closed
        bucket, or has some in this one, must hear from every instance; a rule whose metric nobody sends
        does not hold the bucket open. Before the first close every rule counts."""
        want = self._want()
        if want <= 0 or not self.rules:
            return False
        seen = self.reporting
        job_level = self.job_level
        full = False
        for i, per in enumerate(b.values):
            n = len(per)
            if n >= (1 if job_level is not None and job_level[i] else want):
                full = True
            elif n or seen is None or seen[i]:
                return False
        return full

    def silent_since(self, rule: str, now: float) -> int | None:
        """When the rule's data stopped (the end of its last closed bucket with a sample, or the start), if
        that is NO_DATA_PERIODS periods or more before `now`; else None."""
        since = self.data_upto.get(rule, self.started)
        return since if now - since >= NO_DATA_PERIODS * self.period else None

    def deadline(self) -> float:
        """When the oldest open bucket (or the next empty one) must close at the latest, or, sooner, when a
        bucket already complete (its samples stamped ahead of the daemon's clock) begins."""
        t = self.closed_upto + self.period + self.grace
        for start, b in self.open.items():
            if start < t and self.complete(b):
                t = start
        return t

    def due(self, now: float) -> list[ClosedBucket]:
        """Close every bucket that is complete or past its deadline, oldest first (empty: no data)."""
        out: list[ClosedBucket] = []
        # The newest complete bucket that has begun: everything up to it closes now.
        complete_upto = -1
        for start, b in self.open.items():
            if complete_upto < start <= now and self.complete(b):
                complete_upto = start
        p = self.period
        while True:
            start = self.closed_upto
            if (
                start not in self.open
                and start + p not in self.open
                and (start + p <= complete_upto or now >= start + 2 * p + self.grace)
            ):
                # A run of empty buckets that close now (the daemon was busy or asleep, or a complete
                # bucket follows): one no-data close for the last of them says the same as one per bucket.
                self.closed_upto = start + p
                continue
            if start <= complete_upto or now >= start + p + self.grace:
                early = now < start + self.period + self.grace
                out.append(self._close(start, now, early))
                continue
            break
        return out

    def _close(self, start: int, now: float, early: bool) -> ClosedBucket:
        b = self.open.pop(start, None)
        values: dict[str, float | None] = {}
        per_rule: dict[str, int] = {}
        reporters: set[str] = set()
        for i, (name, agg) in enumerate(self.rules):
            per = b.values[i] if b is not None else {}
            values[name] = aggregate(agg, [v for _, v in per.values()])
            per_rule[name] = len(per)
            reporters.update(per)
        self.closed_upto = start + self.period
        for name, n in per_rule.items():
            if n:
                self.data_upto[name] = self.closed_upto
        self.last_reporters = len(reporters)
        self.reporting = [n > 0 for n in per_rule.values()]
        closed = ClosedBucket(start, now, values, len(reporters), per_rule, early)
        self.last = closed
        return closed


# ---- routing ---------------------------------------------------------------------------------

# rule metric -> (pushed metric, transform) pairs that feed it, besides the metric itself
DERIVED: dict[str, tuple[str, str]] = {
    "cpu.used": ("cpu.idle", "100-v"),
    "mem.used.percent": ("mem.memfree.percent", "100-v"),
}
MAX_REASONS = 5
EXPIRY_WINDOWS = 3  # a series not seen for this many windows of its jobs expires (default)

_key_of = operator.attrgetter("endpoint", "metric", "tags")
_metric_of = operator.attrgetter("metric")
_ts_of = operator.attrgetter("timestamp")
NEVER_ROUTED = ("kernel.hostname",)  # metrics check_key refuses: their items must meet their route
SEEN_STEP = 10  # seconds: a series' last-seen time is kept to this resolution (its period number)


SLICE_ITEMS = 1024  # items routed between two turns of the event loop


@dataclass(frozen=True, slots=True)
class IngestLimits:
    """The ingest bounds (`[ingest]` in the config file, docs/configuration.md)."""

    max_ahead: float | None = None  # seconds a timestamp may be ahead of the clock; None: one job period
    max_age: float | None = None  # seconds a timestamp may be behind the clock; None: the job's window
    max_series_per_job: int = 20_000  # routed series counted for one job
    max_series: int = 500_000  # routed series in total
    series_expiry: float | None = None  # a series not seen for this long expires; None: 3 job windows
    max_unrouted: int = 200_000  # cached series that route nowhere, before that cache is emptied


@dataclass(frozen=True, slots=True)
class _Owners:
    """The jobs a routed series is counted for, and how long it lives unseen (shared by many series)."""

    jobs: frozenset[str]
    ttl: float


@dataclass(slots=True)
class Target:
    buckets: JobBuckets
    rule_index: int
    instance: str
    invert: bool  # value -> 100 - value


UNROUTED = False  # the route of a valid series no job watches (falsy: the hot loop skips it in C)


@dataclass(slots=True, eq=False)
class Route:
    """A series' route. Its first target's fields sit in the route itself, read by the hot loop without a
    trip through a list (most series feed one rule of one job); `more` holds the other targets. A route
    whose `jb` is None refuses the series: its identity is invalid (`reason`)."""

    jb: JobBuckets | None
    rule: int
    instance: str
    invert: bool
    more: tuple[Target, ...]
    ctype: str  # the counterType the route was resolved for
    counter: str | None  # "COUNTER" | "DERIVE" | None (GAUGE)
    slot: int  # series slot (its last-seen period), -1 for a refused series
    prev_ts: int = 0
    prev_value: float = math.nan
    reason: str | None = None
    limit: str | None = None  # the bound that refused the series (series_per_job, series_total)
    ahead: float = 0.0  # the timestamps accepted, around the daemon's clock: the loosest of the targets' jobs
    age: float = 0.0
    # the first timestamp of a later last-seen period than the route has seen its slot hold (the hot loop's
    # one comparison per sample; only a sample at or after it writes the slot)
    fresh: int = 0

    @classmethod
    def to(cls, targets: list[Target], ctype: str, counter: str | None, slot: int, fresh: int) -> Route:
        t = targets[0]
        return cls(
            t.buckets,
            t.rule_index,
            t.instance,
            t.invert,
            tuple(targets[1:]),
            ctype,
            counter,
            slot,
            ahead=max(x.buckets.max_ahead for x in targets),
            age=max(x.buckets.max_age for x in targets),
            fresh=fresh,
        )

    @classmethod
    def refused(cls, ctype: str, reason: str, limit: str | None = None) -> Route:
        return cls(None, 0, "", False, (), ctype, None, -1, reason=reason, limit=limit)

    def buckets(self) -> list[JobBuckets]:
        """The bucket sets the series feeds."""
        return [self.jb, *(t.buckets for t in self.more)] if self.jb is not None else []


@dataclass(slots=True)
class PushResult:
    total: int = 0
    invalid: int = 0
    reasons: list[str] = field(default_factory=list)
    completed: set[str] = field(default_factory=set)  # jobs whose bucket became complete
    too_new: int = 0  # rejected: stamped further ahead of the daemon's clock than the job accepts
    too_old: int = 0  # rejected: stamped further back than the job's window
    limited: dict[str, int] = field(default_factory=dict)  # rejected by a series cap, by bound
    purged: bool = False  # the cache of series that route nowhere reached its bound and was emptied
    unmatched: int = 0  # valid items whose series no job takes (neither accepted nor rejected)

    _at: list[int] = field(default_factory=list)  # the positions of `reasons`

    def reject(self, index: int, reason: str) -> None:
        """Count a rejected item; `reasons` keeps those of the first MAX_REASONS rejected positions, so a
        body gets the same reasons whichever order its items were checked in (whole or in slices)."""
        self.invalid += 1
        at = self._at
        if len(at) == MAX_REASONS:
            if index > at[-1]:
                return
            at.pop()
            self.reasons.pop()
        k = bisect.bisect(at, index)
        at.insert(k, index)
        self.reasons.insert(k, f"[{index}] {reason}")


UNMATCHED_KEEP = 100  # unmatched series listed by GET /api/v1/ingest/unmatched
UNMATCHED_PER_PUSH = 16  # unmatched items a push adds to that list, at most (bounds its per-push cost)
UNMATCHED_EVERY = 0.1  # seconds between two pushes that add to it (bounds its cost per second)


class UnmatchedSeries:
    """The latest series no job takes: a ring of `keep` series keys, deduplicated, newest last.

    Filled from a sample of the pushes (at most UNMATCHED_PER_PUSH items of a push, from a start that
    turns from push to push, so every series of a large push turns up; at most one push per
    UNMATCHED_EVERY seconds, the slices of one body counting as one): `count` is how many of a series'
    samples were noted, not all it sent (the exact total is `oceand_samples_total{result="unmatched"}`)."""

    __slots__ = ("keep", "noted_at", "series", "total", "turn")

    def __init__(self, keep: int = UNMATCHED_KEEP) -> None:
        self.keep = keep
        self.series: OrderedDict[tuple[str, str, str], list[Any]] = OrderedDict()  # key -> [seen, n, ctype]
        self.turn = 0
        self.total = 0  # unmatched samples since start
        self.noted_at = -math.inf  # the clock of the last push noted

    def note(self, items: list[FalconItem], mask: Sequence[Any], now: float) -> None:
        """Note some of the `items` whose `mask` entry is falsy (unless a push was noted just before)."""
        if now != self.noted_at:
            if now - self.noted_at < UNMATCHED_EVERY:
                return
            self.noted_at = now
        n = len(items)
        s = self.turn % n
        self.turn += UNMATCHED_PER_PUSH
        misses = chain(  # lazily: only the items up to the last one noted are visited
            compress(islice(items, s, None), map(operator.not_, islice(mask, s, None))),
            compress(islice(items, s), map(operator.not_, islice(mask, s))),
        )
        series = self.series
        for it in islice(misses, UNMATCHED_PER_PUSH):
            key = (it.endpoint, it.metric, it.tags)
            e = series.get(key)
            if e is None:
                series[key] = [now, 1, it.counterType]
                if len(series) > self.keep:
                    series.popitem(last=False)
            else:
                e[0] = now
                e[1] += 1
                e[2] = it.counterType
                series.move_to_end(key)

    def listing(self) -> list[dict[str, Any]]:
        """Newest first."""
        return [
            {
                "endpoint": k[0],
                "metric": k[1],
                "tags": k[2],
                "counterType": e[2],
                "last_seen": e[0],
                "count": e[1],
            }
            for k, e in reversed(self.series.items())
        ]


@dataclass(frozen=True, slots=True)
class _Watch:
    job: str
    rule_index: int
    selector: Selector
    invert: bool
    instance_tag: str | None


class _MetricIndex:
    """The watches of one pushed metric, indexed by one tag pair of their selector (a dict lookup per tag
    of a new series, not a scan of every job); selectors without tags sit in `generic`."""

    __slots__ = ("by_tag", "generic")

    def __init__(self) -> None:
        self.by_tag: dict[tuple[str, str], list[_Watch]] = {}
        self.generic: list[_Watch] = []

    @staticmethod
    def tag_of(sel: Selector) -> tuple[str, str] | None:
        if not sel.tags:
            return None
        k = "job" if "job" in sel.tags else min(sel.tags)
        return k, sel.tags[k]

    def add(self, w: _Watch) -> None:
        tag = self.tag_of(w.selector)
        if tag is None:
            self.generic.append(w)
        else:
            self.by_tag.setdefault(tag, []).append(w)

    def remove(self, job: str) -> None:
        self.generic = [w for w in self.generic if w.job != job]
        for tag in [t for t, ws in self.by_tag.items() if any(w.job == job for w in ws)]:
            rest = [w for w in self.by_tag[tag] if w.job != job]
            if rest:
                self.by_tag[tag] = rest
            else:
                del self.by_tag[tag]

    def candidates(self, tags: dict[str, str]) -> list[_Watch]:
        out = list(self.generic)
        for pair in tags.items():
            ws = self.by_tag.get(pair)
            if ws:
                out.extend(ws)
        return out


class Ingestor:
    """Routes samples into job buckets; once a body (or a slice of a large one) is routed, closes the
    buckets it completed and hands them to their jobs (each bucket set's `hand` hook). `set_job` /
    `remove_job` as jobs come and go."""

    def __init__(self, limits: IngestLimits | None = None, clock: Callable[[], float] = time.time) -> None:
        self.limits = limits if limits is not None else IngestLimits()
        self.clock = clock  # the daemon's clock: `push` stamps a body with it
        self._seen = array("q")  # slot -> the newest period (timestamp // SEEN_STEP) the series was seen in
        self._by_metric: dict[str, _MetricIndex] = {}
        self._watched: set[str] = set(NEVER_ROUTED)  # pushed metrics some job watches, and refused ones
        self._metrics_of: dict[str, set[str]] = {}  # job -> pushed metrics it watches
        self._buckets: dict[str, JobBuckets] = {}
        self._routes: dict[tuple[Any, ...], Route | bool] = {}
        self._slots: dict[tuple[Any, ...], int] = {}  # series -> slot (kept across re-routing)
        self._keys: list[tuple[Any, ...]] = []  # slot -> series
        self._owners: list[_Owners] = []  # slot -> the jobs the series is counted for
        self._owner_cache: dict[frozenset[str], _Owners] = {}
        self._per_job: dict[str, int] = {}  # routed series counted for each job
        self._refused_per_job: dict[str, int] = {}  # new series refused at the job's series_per_job bound
        self._negatives = 0  # route cache entries of series that route nowhere (or are refused)
        self._limited: set[tuple[Any, ...]] = set()  # series refused by a cap: asked again after expiry
        self.accepted = 0
        self.rejected = 0
        self.expired = 0  # series expired since start
        self.purges = 0  # times the cache of series that route nowhere was emptied
        self.unmatched = UnmatchedSeries()
        self._tasks: dict[str, frozenset[str]] = {}  # job -> its Marathon tasks' host names and IPs
        self._task_metrics: dict[str, set[str]] = {}  # job -> pushed metrics its `tasks` selectors watch
        self._task_watched: dict[str, int] = {}  # metric -> how many jobs' `tasks` selectors watch it
        self._by_endpoint: dict[str, set[tuple[Any, ...]]] = {}  # cached keys of those metrics, by endpoint
        self._bounds: tuple[float, float] | None = None  # the tightest timestamp bounds of the jobs

    @property
    def series(self) -> int:
        """Routed series (each with a slot)."""
        return len(self._slots)

    def series_of(self, job: str) -> int:
        return self._per_job.get(job, 0)

    def series_refused(self, job: str) -> int:
        """New series of `job` refused at its series bound since it was set (a refused series is refused
        again, uncounted, until the job has room or the refusal is forgotten)."""
        return self._refused_per_job.get(job, 0)

    def series_keys(self) -> list[tuple[Any, ...]]:
        return list(self._slots)

    def _reset_routes(self) -> None:
        self._routes = {}  # re-resolved lazily; series keep their slots
        self._by_endpoint = {}
        self._negatives = 0
        self._limited.clear()
        self._owner_cache = {}
        self._bounds = None

    def set_jobs(self, jobs: Iterable[tuple[JobDocument, JobBuckets]]) -> None:
        """Replace the whole job set."""
        for name in list(self._buckets):
            self.remove_job(name)
        for doc, jb in jobs:
            self.set_job(doc, jb)

    def set_job(self, doc: JobDocument, jb: JobBuckets) -> None:
        """Add or replace one job's routing (its rules' selectors) and bucket set."""
        if doc.job in self._buckets:
            self._unwatch(doc.job)
        self._buckets[doc.job] = jb
        metrics: set[str] = set()
        task_metrics: set[str] = set()
        for i, rule in enumerate(doc.metric_rules()):
            sel = doc.selector_for(rule)
            feeds = [(rule.metric, False)]
            if rule.metric in DERIVED:
                feeds.append((DERIVED[rule.metric][0], True))
            for metric, invert in feeds:
                self._by_metric.setdefault(metric, _MetricIndex()).add(
                    _Watch(doc.job, i, sel, invert, doc.instance_tag)
                )
                metrics.add(metric)
                if sel.tasks:
                    task_metrics.add(metric)
        self._metrics_of[doc.job] = metrics
        if task_metrics:
            self._task_metrics[doc.job] = task_metrics
            for m in task_metrics:
                self._task_watched[m] = self._task_watched.get(m, 0) + 1
        self._watched = {*self._by_metric, *NEVER_ROUTED}
        self._reset_routes()

    def swap_buckets(self, pairs: Iterable[tuple[str, JobBuckets]]) -> None:
        """Replace the bucket sets of known jobs (cluster: a job's shard came here or went elsewhere); the
        routes are resolved again (a counter series loses its previous sample once)."""
        swapped = False
        for job, jb in pairs:
            if job in self._buckets and self._buckets[job] is not jb:
                self._buckets[job] = jb
                swapped = True
        if swapped:
            self._reset_routes()

    def remove_job(self, name: str) -> None:
        self._tasks.pop(name, None)
        self._refused_per_job.pop(name, None)
        self._unwatch(name)

    def _unwatch(self, name: str) -> None:
        for m in self._task_metrics.pop(name, ()):
            if self._task_watched[m] > 1:
                self._task_watched[m] -= 1
            else:
                del self._task_watched[m]
        for metric in self._metrics_of.pop(name, ()):
            idx = self._by_metric.get(metric)
            if idx is not None:
                idx.remove(name)
                if not idx.generic and not idx.by_tag:
                    del self._by_metric[metric]
        self._watched = {*self._by_metric, *NEVER_ROUTED}
        if self._buckets.pop(name, None) is not None:
            self._reset_routes()

    def tasks_of(self, job: str) -> frozenset[str]:
        return self._tasks.get(job, frozenset())

    def set_tasks(self, job: str, endpoints: frozenset[str]) -> None:
        """The host names and IPs of the job's current Marathon tasks (for `"tasks": true` selectors).

        Only the cached routes of the endpoints that came or went, on the metrics the job's `tasks`
        selectors watch, are dropped (and resolved again on their next sample): a cost of the change, not
        of the number of series."""
        old = self._tasks.get(job, frozenset())
        if endpoints == old:
            return
        if endpoints:
            self._tasks[job] = endpoints
        else:
            self._tasks.pop(job, None)
        metrics = self._task_metrics.get(job)
        if not metrics:
            return
        routes = self._routes
        for e in old ^ endpoints:
            keys = self._by_endpoint.get(e)
            if not keys:
                continue
            for key in [k for k in keys if k[1] in metrics]:
                keys.discard(key)
                route = routes.pop(key, None)
                if route is not None and (type(route) is not Route or route.jb is None):
                    self._negatives -= 1
            if not keys:
                del self._by_endpoint[e]

    def _index_endpoint(self, key: tuple[Any, ...]) -> None:
        """Keep a cached key of a metric some `tasks` selector watches findable by its endpoint."""
        if key[1] in self._task_watched:
            self._by_endpoint.setdefault(key[0], set()).add(key)

    def _owner(self, jobs: frozenset[str]) -> _Owners:
        o = self._owner_cache.get(jobs)
        if o is None:
            ttl = self.limits.series_expiry
            if ttl is None:
                period = max((self._buckets[j].period for j in jobs if j in self._buckets), default=10)
                ttl = float(EXPIRY_WINDOWS * WINDOW_PERIODS * period)
            o = self._owner_cache[jobs] = _Owners(jobs, ttl)
        return o

    def _count(self, jobs: frozenset[str], step: int) -> None:
        for j in jobs:
            n = self._per_job.get(j, 0) + step
            if n > 0:
                self._per_job[j] = n
            else:
                self._per_job.pop(j, None)

    def _admit(
        self, key: tuple[Any, ...], targets: list[Target], ctype: str, now: float
    ) -> tuple[int, list[Target]] | Route:
        """The series' slot and the targets the series caps let it feed, or its refusal."""
        limits = self.limits
        slot = self._slots.get(key)
        have = self._owners[slot].jobs if slot is not None else frozenset()
        jobs = frozenset(t.buckets.job for t in targets)
        if jobs == have:
            return slot, targets  # type: ignore[return-value]
        cap = limits.max_series_per_job
        full = {j for j in jobs - have if self._per_job.get(j, 0) >= cap}
        if full:
            targets = [t for t in targets if t.buckets.job not in full]
            for j in full:
                self._refused_per_job[j] = self._refused_per_job.get(j, 0) + 1
        if not targets:
            self._limited.add(key)
            return Route.refused(
                ctype,
                f"series: job {min(full)} is at its limit of {cap} series ([ingest] max_series_per_job)",
                "series_per_job",
            )
        if slot is None and len(self._slots) >= limits.max_series:
            self._limited.add(key)
            return Route.refused(
                ctype,
                f"series: the daemon is at its limit of {limits.max_series} series ([ingest] max_series)",
                "series_total",
            )
        jobs = frozenset(t.buckets.job for t in targets)
        owners = self._owner(jobs)
        if slot is None:
            slot = self._slots[key] = len(self._seen)
            self._seen.append(int(now) // SEEN_STEP)
            self._keys.append(key)
            self._owners.append(owners)
        else:
            self._owners[slot] = owners
        self._count(have - jobs, -1)
        self._count(jobs - have, 1)
        return slot, targets

    def expire(self, now: float, keys: Iterable[tuple[Any, ...]] | None = None) -> int:
        """Drop the series (of `keys`, default all) not seen for their time to live: their route, slot
        and counts; the last slot moves into a freed one, so the arrays shrink. Returns how many."""
        slots, last, step, owners = self._slots, self._seen, SEEN_STEP, self._owners
        n = 0
        for key in list(slots) if keys is None else keys:
            slot = slots.get(key)
            if slot is None or (last[slot] + 1) * step + owners[slot].ttl > now:
                continue
            self._drop(key, slot)
            n += 1
        if n:
            self.expired += n
            for key in self._limited:  # refused by a cap: there may be room now
                if self._routes.pop(key, None) is not None:
                    self._negatives -= 1
            self._limited.clear()
        return n

    def _drop(self, key: tuple[Any, ...], slot: int) -> None:
        route = self._routes.pop(key, None)
        keys = self._by_endpoint.get(key[0])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_endpoint[key[0]]
        if route is not None and (type(route) is not Route or route.jb is None):
            self._negatives -= 1
        self._count(self._owners[slot].jobs, -1)
        seen = self._seen
        moved = len(seen) - 1
        seen[slot] = seen[moved]
        del seen[moved]
        if moved != slot:  # the last series now lives in the freed slot
            mkey = self._keys[moved]
            self._keys[slot] = mkey
            self._owners[slot] = self._owners[moved]
            self._slots[mkey] = slot
            r = self._routes.get(mkey)
            if type(r) is Route and r.slot == moved:
                r.slot = slot
        self._keys.pop()
        self._owners.pop()
        del self._slots[key]

    def _purge_negatives(self, res: PushResult) -> None:
        """Empty the cache of series that route nowhere (in place: the hot loop holds the dict); routed
        series keep their routes."""
        routes = self._routes
        for key in [k for k, r in routes.items() if type(r) is not Route or r.jb is None]:
            del routes[key]
        self._by_endpoint = {}
        for key in routes:
            self._index_endpoint(key)
        self._negatives = 0
        self._limited.clear()
        self.purges += 1
        res.purged = True

    def _resolve(self, key: tuple[Any, ...], ctype: str, now: float) -> Route | bool:
        """The series' route to its targets, or its refusal; UNROUTED when no job watches it."""
        endpoint, metric, tags = key
        reason = check_key(endpoint, metric, tags, ctype, 1)
        if reason is not None:
            return Route.refused(ctype, reason)
        counter = ctype if ctype != "GAUGE" else None
        index = self._by_metric.get(metric)
        if index is None:
            return UNROUTED
        parsed = parse_tags(tags)
        targets: list[Target] = []
        if self._task_watched:
            self._index_endpoint(key)
        for w in index.candidates(parsed):
            if not _matches(w.selector, parsed, endpoint):
                continue
            if w.selector.tasks and endpoint not in self._tasks.get(w.job, ()):
                continue
            if w.instance_tag is not None:
                instance = parsed.get(w.instance_tag)
                if not instance:
                    continue  # cannot tell the instance apart: not this job's sample shape
            else:
                instance = endpoint
            targets.append(Target(self._buckets[w.job], w.rule_index, instance, w.invert))
        if not targets:
            return UNROUTED
        admitted = self._admit(key, targets, ctype, now)
        if isinstance(admitted, Route):
            return admitted
        slot, targets = admitted
        return Route.to(targets, ctype, counter, slot, (self._seen[slot] + 1) * SEEN_STEP)

    def push(
        self,
        items: list[Any],
        typed: bool = False,
        res: PushResult | None = None,
        offset: int = 0,
        index: list[int] | None = None,
    ) -> PushResult:
        """A decoded push body at the clock's time (`typed`: FalconItems from `decode_items`, else any JSON
        list), or a slice of one (adding to the body's `res`, from position `offset`; `index`: FalconItems
        already checked by `check`, at these positions). The way in of the push handler and the listeners."""
        now = self.clock()
        if index is not None:
            res = res if res is not None else PushResult()
            self.route(items, now, res, index)
            return res
        if typed:
            return self.ingest_items(items, now, res, offset)
        return self.ingest(items, now, res, offset)

    def ingest(
        self, items: list[Any], now: float, res: PushResult | None = None, offset: int = 0
    ) -> PushResult:
        """Validate and route a decoded push body of any shape (a list). Never raises on item content.

        The tolerant path: each item is checked on its own (transfer's rules, `check`), rejects are counted
        with their index, and the valid items go through the same routing as a typed body (`route`). A
        slice of a larger body adds to that body's `res`; `offset` is the slice's first position in it."""
        if res is None:
            res = PushResult()
        typed, index = self.check(items, now, res, offset)
        self.route(typed, now, res, index)
        return res

    def check(
        self, items: list[Any], now: float, res: PushResult, offset: int = 0
    ) -> tuple[list[FalconItem], list[int]]:
        """The tolerant path's checks: the valid items as FalconItems with their positions in the body;
        the others rejected in `res`. Touches no routing state."""
        res.total += len(items)
        invalid = res.invalid
        typed, index = check_items(items, now, res.reject, offset)
        self.rejected += res.invalid - invalid
        return typed, index

    def ingest_items(
        self, items: list[FalconItem], now: float, res: PushResult | None = None, offset: int = 0
    ) -> PushResult:
        """Route a body `decode_items` decoded: every field already has its type and range."""
        if res is None:
            res = PushResult()
        res.total += len(items)
        self.route(items, now, res, range(offset, offset + len(items)) if offset else None)
        return res

    def route(
        self, items: list[FalconItem], now: float, res: PushResult, index: Sequence[int] | None
    ) -> None:
        """Route checked items; `index`: their positions in the body (None: 0, 1, ...). Then close the
        buckets they completed, with every earlier one (`JobBuckets.due` at the body's time), and hand
        them to their jobs: only now, so that a later sample of the same body for such a bucket (an
        instance's newer value, a rule that was not needed for completion) still lands in it (§3.1)."""
        invalid = res.invalid
        unmatched = res.unmatched
        self._route(items, now, res, index)
        self.accepted += len(items) - (res.invalid - invalid) - (res.unmatched - unmatched)
        self.rejected += res.invalid - invalid
        buckets = self._buckets
        for name in res.completed:
            jb = buckets.get(name)  # a slice of a large body: the job may have gone in between
            if jb is not None:
                if not jb.may_close():
                    jb.hand([])  # a wake-up: the worker closes them once it has taken the job over
                    continue
                closed = jb.due(now)
                if closed:
                    jb.hand(closed)

    def _unmatched(
        self, res: PushResult, items: list[FalconItem], found: list[Any], n: int, now: float
    ) -> None:
        """Count `n` items as unmatched (those whose `found` entry is falsy), and note some in the list."""
        res.unmatched += n
        self.unmatched.total += n
        self.unmatched.note(items, found, now)

    def _route(
        self, items: list[FalconItem], now: float, res: PushResult, index: Sequence[int] | None
    ) -> None:
        """The hot loop: per item one route lookup, the last-seen write and one bucket write per target.

        `scan` looks every item's route up in one pass (oceand/_fastroute.c, or `_scan` in Python): None
        for a metric no job watches (most of what agents push: it touches no per-series state), UNROUTED
        (False) for a series no job takes, else its Route; series seen for the first time are resolved
        (and cached) first. The timestamps are checked against the jobs' bounds once for the whole body
        when they all lie within the tightest bounds of any job (agents stamp a push with one time): then
        the loop checks none of them. The loop itself runs in C for the usual sample, `one` (in Python)
        for every other item and for all of them when the extension is not built."""
        routes = self._routes
        if type(items) is not list:
            items = list(items)
        scan = _native.scan if _native is not None else _scan
        found, unwatched, unrouted, missing, lo, hi = scan(items, self._watched, routes, _MISSING)
        if missing:  # series seen for the first time: resolve (and cache) their routes, then again
            for item, r in zip(items, found, strict=True):
                if r is _MISSING:
                    key = _key_of(item)
                    if key not in routes:
                        r = routes[key] = self._resolve(key, item.counterType, now)
                        if type(r) is not Route or r.jb is None:
                            self._negatives += 1
            found, unwatched, unrouted, missing, lo, hi = scan(items, self._watched, routes, _MISSING)
            if self._negatives > self.limits.max_unrouted:
                self._purge_negatives(res)
        if unwatched or unrouted:
            self._unmatched(res, items, found, unwatched + unrouted, now)
        if unwatched == len(items):
            return
        if lo is None:  # a timestamp beyond 64 bits (the C scan leaves these to Python)
            stamps = [it.timestamp for it, r in zip(items, found, strict=True) if r is not None]
            lo, hi = min(stamps), max(stamps)
        assert lo is not None and hi is not None
        two_now = 2 * now
        inow = int(now)
        ahead, age = self._tightest()
        # every timestamp usable and accepted by every job: no item needs its own check
        check_ts = not (lo > 0 and hi <= two_now and hi - now <= ahead and now - lo <= age)
        completed = res.completed
        seen = self._seen

        def one(i: int, item: FalconItem, route: Route) -> None:
            """Everything that happens to an item with a route: the C loop hands it what it does not do itself,
            and the Python loop below hands it every item when the extension is not built."""
            if item.counterType != route.ctype:
                key = _key_of(item)
                route = routes[key] = self._resolve(key, item.counterType, now)  # type: ignore[assignment]
                if not route:
                    self._unmatched(res, [item], [False], 1, now)
                    return
            jb = route.jb
            if jb is None:
                res.reject(i if index is None else index[i], route.reason or "")
                if route.limit is not None:
                    res.limited[route.limit] = res.limited.get(route.limit, 0) + 1
                return
            v = item.value
            ts = item.timestamp
            if check_ts:
                if ts > two_now or ts <= 0:
                    ts = inow  # transfer's rule for a timestamp it cannot use
                elif ts - now > route.ahead or now - ts > route.age:
                    _reject_timestamp(res, i if index is None else index[i], ts, now, route)
                    return
            if route.counter is not None:
                prev_ts, prev_v = route.prev_ts, route.prev_value
                if ts <= prev_ts:
                    return  # out of order or repeated: no rate from it
                route.prev_ts, route.prev_value = ts, v
                if prev_v != prev_v:  # first sample of the series: no rate yet
                    return
                rate = (v - prev_v) / (ts - prev_ts)
                if rate < 0:
                    return  # counter reset / wrap (COUNTER) or negative DERIVE: Falcon drops it
                v = rate
            if ts >= route.fresh:  # a later period than its slot holds: when it was last seen (for expiry)
                slot = route.slot
                period = max(ts // SEEN_STEP, seen[slot])
                seen[slot] = period
                route.fresh = (period + 1) * SEEN_STEP
            # the bucket write (JobBuckets.add inlined for the first target, the usual only one)
            start = ts - ts % jb.period
            val = 100.0 - v if route.invert else v
            b = jb.open.get(start)
            if b is None or start < jb.closed_upto:
                if jb.add(route.rule, route.instance, ts, val):
                    completed.add(jb.job)
            else:
                per = b.values[route.rule]
                instance = route.instance
                prev = per.get(instance)
                if prev is None:
                    per[instance] = (ts, val)
                    if jb.complete(b):
                        completed.add(jb.job)
                elif prev[0] <= ts:
                    per[instance] = (ts, val)
            if route.more:
                for t in route.more:
                    if t.buckets.add(t.rule_index, t.instance, ts, 100.0 - v if t.invert else v):
                        completed.add(t.buckets.job)

        if _native is not None:  # the usual sample in C, the rest through `one` (oceand/_fastroute.c)
            _native.route(items, found, check_ts, now, one, completed, seen, SEEN_STEP)
        else:
            for i, item, route in compress(zip(count(), items, found), found):
                one(i, item, route)

    def _tightest(self) -> tuple[float, float]:
        """The timestamps every job accepts, around the daemon's clock: the smallest `max_ahead` and
        `max_age` of the jobs' bucket sets (kept until the job set changes)."""
        b = self._bounds
        if b is None:
            jbs = self._buckets.values()
            b = self._bounds = (
                min((jb.max_ahead for jb in jbs), default=0.0),
                min((jb.max_age for jb in jbs), default=0.0),
            )
        return b


_MISSING = object()  # `scan`'s mark of a watched series with no cached route yet


def _scan(
    items: list[FalconItem], watched: set[str], routes: dict[tuple[Any, ...], Route | bool], missing: object
) -> tuple[list[Any], int, int, int, int | None, int | None]:
    """oceand/_fastroute.c's `scan` in Python (when the extension is not built): every item's route
    (None: its metric is not watched; `missing`: not cached yet), how many of each, and the smallest and
    largest timestamp of the watched items (None when there are none)."""
    pick = list(map(watched.__contains__, map(_metric_of, items)))
    if all(pick):
        found: list[Any] = list(map(routes.get, map(_key_of, items), repeat(missing)))
        stamps = list(map(_ts_of, items))
    else:
        found = [routes.get(_key_of(it), missing) if p else None for it, p in zip(items, pick, strict=True)]
        stamps = [it.timestamp for it, p in zip(items, pick, strict=True) if p]
    unwatched = len(items) - len(stamps)
    n_missing = found.count(missing) if missing in found else 0
    return (
        found,
        unwatched,
        found.count(False),
        n_missing,
        min(stamps, default=None),
        max(stamps, default=None),
    )


def _reject_timestamp(res: PushResult, index: int, ts: int, now: float, route: Route) -> None:
    if ts > now:
        res.too_new += 1
        res.reject(
            index,
            f"timestamp: {ts} is {ts - now:.0f} s ahead of the daemon's clock (at most {route.ahead:g} s)",
        )
    else:
        res.too_old += 1
        res.reject(index, f"timestamp: {ts} is {now - ts:.0f} s old (at most {route.age:g} s)")


def _matches(sel: Selector, tags: dict[str, str], endpoint: str) -> bool:
    for k, v in sel.tags.items():
        if tags.get(k) != v:
            return False
    if sel.endpoint is not None:
        pattern = sel.endpoint
        if any(c in pattern for c in "*?["):
            return fnmatch.fnmatchcase(endpoint, pattern)
        return endpoint == pattern
    return True


def _load_native() -> Any:
    """oceand._fastroute, the hot loop's usual sample in C, set up with this module's classes; None when it
    was not built (no C compiler where oceand was installed) or OCEAND_NATIVE=0: then every item takes the
    same path in Python (`one` in `Ingestor._route`), with the same results, at about twice the CPU."""
    if os.environ.get("OCEAND_NATIVE", "1") == "0":
        return None
    try:
        from oceand import _fastroute
    except ImportError:
        return None
    _fastroute.setup(Route, JobBuckets, OpenBucket, FalconItem)
    return _fastroute


_native = _load_native()
NATIVE = _native is not None  # what this process routes with (the daemon logs it at start when False)
