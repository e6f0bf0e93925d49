"""Per-job period buckets (PRODUCT §3.1).

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

import math
from collections.abc import Callable
from dataclasses import dataclass, field

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
    # called by ingest when a sample completed a bucket: the engine points it at the job worker's wake event
    wake: Callable[[], object] = field(default=lambda: None, repr=False, compare=False)

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
