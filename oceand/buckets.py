"""Per-job period buckets (PRODUCT §3.1).

Buckets are aligned to whole multiples of the period since the Unix epoch. For each metric rule, each
instance's value in a bucket is its last sample in that bucket; the job value is the rule's aggregate over
the instances that reported. A bucket closes as soon as every metric rule has heard from as many distinct
instances as the job has running tasks (known from Marathon; before that, as many as reported in the
previous closed bucket), or at bucket end + grace, whichever comes first. Buckets close in order: closing a
bucket closes every earlier open one first. Samples for a closed bucket are counted and dropped.

The clock is an argument: `add` and `due` take the time, so tests and replay control it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

AGGREGATES = ("avg", "max", "min", "sum", "p50", "p90", "p99")


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
    last: ClosedBucket | None = None

    def start(self, now: float) -> None:
        """Begin with the bucket that contains `now` (earlier buckets are considered closed)."""
        self.closed_upto = int(now) - int(now) % self.period

    def add(self, rule_index: int, instance: str, ts: int, value: float) -> bool:
        """Record a sample; True when its bucket just became complete (every instance reported)."""
        start = ts - ts % self.period
        if start < self.closed_upto:
            self.late += 1
            return False
        b = self.open.get(start)
        if b is None:
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

    def deadline(self) -> float:
        """When the oldest open bucket (or the next empty one) must close at the latest."""
        return self.closed_upto + self.period + self.grace

    def due(self, now: float) -> list[ClosedBucket]:
        """Close every bucket that is complete or past its deadline, oldest first (empty: no data)."""
        out: list[ClosedBucket] = []
        # The newest complete bucket: everything up to it closes now.
        complete_upto = -1
        for start, b in self.open.items():
            if start > complete_upto and self.complete(b):
                complete_upto = start
        p = self.period
        while True:
            start = self.closed_upto
            if (
                start > complete_upto
                and start not in self.open
                and start + p not in self.open
                and now >= start + 2 * p + self.grace
            ):
                # A run of empty overdue buckets (the daemon was busy or asleep): one no-data close
                # for the last of them says the same as one per bucket.
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
        self.last_reporters = len(reporters)
        self.reporting = [n > 0 for n in per_rule.values()]
        closed = ClosedBucket(start, now, values, len(reporters), per_rule, early)
        self.last = closed
        return closed
