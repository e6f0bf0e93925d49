"""The ingest hot path: a parsed Falcon push body -> validated samples -> job buckets (PRODUCT §2.1, §3.1).

A sample's identity (endpoint, metric, tags, counterType, step) is validated and routed once, then cached:
the next sample of the same series costs a dictionary lookup, a value check and one bucket append per job
that watches it (ARCHITECTURE property 5). Routing uses each rule's selector (default tag job=<name>);
`cpu.used` and `mem.used.percent` are derived from `cpu.idle` and `mem.memfree.percent`.
COUNTER and DERIVE series become per-second rates from consecutive samples, as Falcon stores them.
Every routed series also keeps a window of its last WINDOW bucket values (oceand.windows).
"""

from __future__ import annotations

import fnmatch
import math
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from collectors.falcon import COUNTER_TYPES, check_key, check_timestamp, check_value, parse_tags
from oceand.buckets import JobBuckets
from oceand.windows import SeriesWindows
from policies.document import JobDocument, Selector

# rule metric -> (pushed metric, transform) pairs that feed it, besides the metric itself
DERIVED: dict[str, tuple[str, str]] = {
    "cpu.used": ("cpu.idle", "100-v"),
    "mem.used.percent": ("mem.memfree.percent", "100-v"),
}
REQUIRED = ("endpoint", "metric", "timestamp", "step", "value", "counterType")
MAX_REASONS = 5
MAX_ROUTES = 2_000_000  # route cache entries before it is rebuilt from scratch (unbounded series churn)

_key_of = operator.itemgetter("endpoint", "metric", "tags")
_rest_of = operator.itemgetter("timestamp", "value", "counterType", "step")


@dataclass(slots=True)
class Target:
    buckets: JobBuckets
    rule_index: int
    instance: str
    invert: bool  # value -> 100 - value


@dataclass(slots=True)
class Route:
    targets: list[Target]
    ctype: str  # the counterType the route was resolved for
    counter: str | None  # "COUNTER" | "DERIVE" | None (GAUGE)
    slot: int  # series window slot, -1 when unrouted
    prev_ts: int = 0
    prev_value: float = math.nan
    reason: str | None = None  # set: the series' identity is invalid (every item of it is rejected)
    base: int = 0  # slot * window: where the series' window starts in the flat array


@dataclass(slots=True)
class PushResult:
    total: int = 0
    invalid: int = 0
    reasons: list[str] = field(default_factory=list)
    completed: set[str] = field(default_factory=set)  # jobs whose bucket became complete

    def reject(self, index: int, reason: str) -> None:
        self.invalid += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(f"[{index}] {reason}")


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
    """Routes samples into job buckets. `set_job` / `remove_job` as jobs come and go."""

    def __init__(self, windows: SeriesWindows | None = None) -> None:
        self.windows = windows if windows is not None else SeriesWindows()
        self._by_metric: dict[str, _MetricIndex] = {}
        self._metrics_of: dict[str, set[str]] = {}  # job -> pushed metrics it watches
        self._buckets: dict[str, JobBuckets] = {}
        self._routes: dict[tuple[Any, ...], Route] = {}
        self._slots: dict[tuple[Any, ...], int] = {}  # series -> window slot (kept across re-routing)
        self.accepted = 0
        self.rejected = 0

    def set_jobs(self, jobs: Iterable[tuple[JobDocument, JobBuckets]]) -> None:
        """Replace the whole job set."""
        for name in list(self._buckets):
            self.remove_job(name)
        for doc, jb in jobs:
            self.set_job(doc, jb)

    def set_job(self, doc: JobDocument, jb: JobBuckets) -> None:
        """Add or replace one job's routing (its rules' selectors) and bucket set."""
        if doc.job in self._buckets:
            self.remove_job(doc.job)
        self._buckets[doc.job] = jb
        metrics: set[str] = set()
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
        self._metrics_of[doc.job] = metrics
        self._routes = {}  # re-resolved lazily; series windows keep their slots

    def remove_job(self, name: str) -> None:
        for metric in self._metrics_of.pop(name, ()):
            idx = self._by_metric.get(metric)
            if idx is not None:
                idx.remove(name)
                if not idx.generic and not idx.by_tag:
                    del self._by_metric[metric]
        if self._buckets.pop(name, None) is not None:
            self._routes = {}

    def _slot(self, key: tuple[Any, ...]) -> int:
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = self.windows.allocate()
        return slot

    def _resolve(self, key: tuple[Any, ...], ctype: str) -> Route:
        endpoint, metric, tags = key
        reason = check_key(endpoint, metric, tags, ctype, 1)
        if reason is not None:
            return Route([], ctype, None, -1, reason=reason)
        counter = ctype if ctype != "GAUGE" else None
        index = self._by_metric.get(metric)
        if index is None:
            return Route([], ctype, counter, -1)
        parsed = parse_tags(tags)
        targets: list[Target] = []
        for w in index.candidates(parsed):
            if not _matches(w.selector, parsed, endpoint):
                continue
            if w.instance_tag is not None:
                instance = parsed.get(w.instance_tag)
                if not instance:
                    continue  # cannot tell the instance apart: not this job's sample shape
            else:
                instance = endpoint
            targets.append(Target(self._buckets[w.job], w.rule_index, instance, w.invert))
        slot = self._slot(key) if targets else -1
        return Route(targets, ctype, counter, slot, base=slot * self.windows.window)

    def ingest(self, items: Any, now: float) -> PushResult:
        """Validate and route a decoded push body (a list). Never raises on item content."""
        res = PushResult(total=len(items))
        routes = self._routes
        if len(routes) > MAX_ROUTES:  # unbounded series churn: start the caches afresh
            routes.clear()
            self._slots.clear()
            self.windows.clear()
        two_now = 2 * now
        completed = res.completed
        windows = self.windows
        wvals, wlast, wsize, wstep = windows.values, windows.last, windows.window, windows.step
        for i, item in enumerate(items):
            try:
                key = _key_of(item)
                ts, value, ctype, step = _rest_of(item)
            except (KeyError, TypeError):
                if type(item) is not dict:
                    res.reject(i, "item is not an object")
                    continue
                missing = [k for k in REQUIRED if k not in item]
                if missing:
                    res.reject(i, f"{missing[0]}: missing")
                    continue
                # Only `tags` is absent: treat as no tags, as Falcon's agent does for "".
                key = (item["endpoint"], item["metric"], "")
                ts, value, ctype, step = _rest_of(item)
            try:
                route = routes.get(key)
            except TypeError:
                res.reject(i, "endpoint/metric/tags: wrong type")
                continue
            if route is None or ctype != route.ctype:
                if type(ctype) is not str or ctype not in COUNTER_TYPES:
                    res.reject(i, f"counterType: {str(ctype)[:40]!r} is not GAUGE, COUNTER or DERIVE")
                    continue
                route = routes[key] = self._resolve(key, ctype)
            if route.reason is not None:
                res.reject(i, route.reason)
                continue
            if type(step) is not int or step <= 0:
                res.reject(i, "step: must be an integer > 0")
                continue
            tv = type(value)
            if tv is float and value - value == 0.0:
                v = value
            elif tv is int:
                v = float(value)
            else:
                checked = check_value(value)
                if checked is None:
                    res.reject(i, f"value: {str(value)[:40]!r} is not a finite number")
                    continue
                v = checked
            if type(ts) is not int or ts <= 0 or ts > two_now:
                ts = check_timestamp(ts, now)
            targets = route.targets
            if not targets:
                continue
            if route.counter is not None:
                prev_ts, prev_v = route.prev_ts, route.prev_value
                if ts <= prev_ts:
                    continue  # out of order or repeated: no rate from it
                route.prev_ts, route.prev_value = ts, v
                if prev_v != prev_v:  # first sample of the series: no rate yet
                    continue
                rate = (v - prev_v) / (ts - prev_ts)
                if rate < 0:
                    continue  # counter reset / wrap (COUNTER) or negative DERIVE: Falcon drops it
                v = rate
            # the series' window (inlined SeriesWindows.put: this loop is the hot path)
            period = ts // wstep
            last = wlast[route.slot]
            if period == last:
                wvals[route.base + period % wsize] = v
            elif period > last:
                windows.put(route.slot, ts, v)
            elif last - period < wsize:
                wvals[route.base + period % wsize] = v
            for t in targets:
                jb = t.buckets
                start = ts - ts % jb.period
                b = jb.open.get(start)
                val = 100.0 - v if t.invert else v
                if b is None or start < jb.closed_upto:
                    if jb.add(t.rule_index, t.instance, ts, val):
                        completed.add(jb.job)
                    continue
                per = b.values[t.rule_index]
                prev = per.get(t.instance)
                if prev is None:
                    per[t.instance] = (ts, val)
                    if jb.complete(b):
                        completed.add(jb.job)
                elif prev[0] <= ts:
                    per[t.instance] = (ts, val)
        self.accepted += res.total - res.invalid
        self.rejected += res.invalid
        return res


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
