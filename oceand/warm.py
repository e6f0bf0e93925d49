"""Warm start from Falcon's graph history (PRODUCT §9; docs/falcon.md "Warm start").

With `[history] falcon_api` set, every job added or changed (at start, by the API, by a reload) whose
rules have something to learn (policies/warm.py: predictive rules with an empty state) is queued here.
`warm_concurrency` tasks take jobs from the queue; per job, within `warm_timeout` for every request:

1. the hosts of each such rule: the job's current Marathon tasks (`"tasks": true`; waited for up to
   half the timeout when none is known yet) or the selector's exact `endpoint` (their graph ids:
   `GET /api/v1/graph/endpointobj`), or the graph's endpoints that match the selector's endpoint glob
   and tags (`GET /api/v1/graph/endpoint`); at most `warm_max_hosts`;
2. their counters of the rule's metric (and the raw metric of a derived one: `cpu.idle` for `cpu.used`,
   taken as 100 − v) that carry the selector's tags, more tags allowed as for live samples, and, for a
   job with `instance_tag`, that tag (`GET /api/v1/graph/endpoint_counter`); each counter is then an
   instance of its own, named by that tag's value, as live samples are (several on one host);
3. one `POST /api/v1/graph/history` per group of hosts with the same counters, over the last
   `warm_window`; at most `warm_max_points` points are taken;
4. the points become the buckets the live ones would have been (`falcon_history.bucket_values`) and
   `Engine.warm` gives them to the job's rules between two steps of its worker.

It never holds anything up: start-up, pushes and evaluations go on while it runs; a job whose history
cannot be had (API down, time-out, 4xx) starts cold, logged once and counted
(`oceand_warm_starts_total{result="failed"}`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from oceand.config import HistorySettings
from oceand.engine import Engine
from oceand.falcon_history import (
    HistoryError,
    Series,
    bucket_values,
    counter_matches,
    counter_tags,
    endpoint_regex,
    fetch_counters,
    fetch_endpoint_ids,
    fetch_endpoints,
    fetch_history,
    history_body,
)
from oceand.ingest import DERIVED
from oceand.metrics import Metrics
from policies.document import JobDocument, PredictiveRule, Selector
from policies.warm import BucketValue

log = logging.getLogger("oceand.warm")

TASKS_POLL = 0.2  # seconds between looks at a job's Marathon tasks while none is known yet
MAX_RESULTS = 100_000  # jobs whose last warm start is kept for their status
MAX_COUNTERS = 10_000  # counters listed per rule (GET /api/v1/graph/endpoint_counter's limit)


class WarmStart:
    def __init__(
        self,
        settings: HistorySettings,
        engine: Engine,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        assert settings.falcon_api is not None and settings.falcon_api_token is not None
        self.settings = settings
        self.api, self.token = settings.falcon_api, settings.falcon_api_token
        self.engine = engine
        self.metrics = metrics
        self.clock = clock
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self.results: dict[str, dict[str, Any]] = {}  # job -> its last warm start (for its status)

    def submit(self, name: str) -> None:
        """Queue a job (added or changed); nothing is fetched for one with nothing to learn."""
        if name not in self._queued and self.engine.warm_rules(name):
            self._queued.add(name)
            self._queue.put_nowait(name)

    def status(self, name: str) -> dict[str, Any] | None:
        return self.results.get(name)

    async def run(self, stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.warm_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            workers = [
                asyncio.ensure_future(self._worker(session)) for _ in range(self.settings.warm_concurrency)
            ]
            try:
                await stop.wait()
            finally:
                for w in workers:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)

    async def _worker(self, session: aiohttp.ClientSession) -> None:
        while True:
            name = await self._queue.get()
            self._queued.discard(name)
            try:
                await self.warm(session, name)
            except Exception:  # a bug must not stop the warm starts of the other jobs
                log.exception(
                    "warm start of job %s failed", name, extra={"event": "warm_failed", "job": name}
                )

    async def warm(self, session: aiohttp.ClientSession, name: str) -> str | None:
        """Warm one job; the result counted (None: nothing to learn, or the job is gone)."""
        rules = self.engine.warm_rules(name)
        rt = self.engine.jobs.get(name)
        if not rules or rt is None:
            return None
        doc, now = rt.doc, self.clock()
        entry: dict[str, Any] = {"at": now, "rules": {}, "points": 0, "error": None}
        try:
            async with asyncio.timeout(self.settings.warm_timeout):
                history, points = await self._history(session, doc, rules, now)
        except (HistoryError, TimeoutError) as e:
            error = str(e) or f"no answer within {self.settings.warm_timeout:g} s (warm_timeout)"
            entry |= {"result": "failed", "error": error}
            log.warning(
                "job %s starts cold: graph history not had: %s",
                name,
                error,
                extra={"event": "warm_failed", "job": name},
            )
            return self._done(name, entry)
        taken = self.engine.warm(name, history)
        entry |= {"rules": taken, "points": points}
        if taken:
            entry["result"] = "warmed"
        elif any(any(v is not None for _, v, _ in rows) for rows in history.values()):
            entry["result"] = "late"  # the rules had live data (or a new state) first
        else:
            entry["result"] = "no_history"
        log.info(
            "job %s warm start: %s (%s; %d points)",
            name,
            entry["result"],
            ", ".join(f"{r}: {n} buckets" for r, n in taken.items()) or "no bucket taken",
            points,
            extra={"event": "warm_start", "job": name},
        )
        return self._done(name, entry)

    def _done(self, name: str, entry: dict[str, Any]) -> str:
        self.results.pop(name, None)
        if len(self.results) >= MAX_RESULTS:  # the oldest goes (jobs deleted since, mostly)
            del self.results[next(iter(self.results))]
        self.results[name] = entry
        self.metrics.warm_starts.labels(entry["result"]).inc()
        return str(entry["result"])

    async def _history(
        self, session: aiohttp.ClientSession, doc: JobDocument, rules: list[PredictiveRule], now: float
    ) -> tuple[dict[str, list[BucketValue]], int]:
        s = self.settings
        period = int(doc.period)
        end = int(now) - int(now) % period  # the bucket open now is the live buckets' first
        start = end - int(s.warm_window)
        out: dict[str, list[BucketValue]] = {}
        budget = s.warm_max_points
        tag = doc.instance_tag  # instances told apart by this tag's value, not by their endpoint
        for rule in rules:
            sel = doc.selector_for(rule)
            feeds = {rule.metric: False}  # metric -> taken as 100 - v (the raw metric of a derived one)
            if rule.metric in DERIVED:
                feeds[DERIVED[rule.metric][0]] = True
            kept: list[Series] = []
            for hosts, counters in await self._series(session, doc.job, sel, tuple(feeds), tag):
                body = history_body(hosts, counters, start, end)
                series = await fetch_history(
                    session, self.api, s.falcon_api_user, self.token, body, max(0, budget)
                )
                for one in series:
                    metric = counter_matches(one.counter, tuple(feeds), sel.tags, tag)
                    if metric is None:
                        continue
                    instance = one.endpoint if tag is None else counter_tags(one.counter)[tag]
                    points = one.points[: max(0, budget)]
                    if len(points) < len(one.points):
                        self.metrics.warm_points.labels("left_out").inc(len(one.points) - len(points))
                    budget -= len(points)
                    if feeds[metric]:
                        points = [(t, 100.0 - v) for t, v in points]
                    kept.append(Series(instance, one.counter, one.step, points))
            out[rule.name] = bucket_values(kept, period, rule.aggregate, start, end)
        taken = s.warm_max_points - max(0, budget)
        self.metrics.warm_points.labels("taken").inc(taken)
        return out, taken

    async def _series(
        self,
        session: aiohttp.ClientSession,
        job: str,
        sel: Selector,
        metrics: tuple[str, ...],
        instance_tag: str | None = None,
    ) -> list[tuple[list[str], list[str]]]:
        """The graph series of a selector, as (hosts, counters) groups for history queries: the hosts
        (`_hosts`), then their counters of these metrics that carry the selector's tags (more tags are
        fine, as for live samples) and the job's `instance_tag`, if it has one; hosts with the same
        counters share one query."""
        s = self.settings
        ids = await self._hosts(session, job, sel)
        if not ids:
            return []
        pairs = await fetch_counters(
            session, self.api, s.falcon_api_user, self.token, sorted(ids), metrics, MAX_COUNTERS
        )
        per_host: dict[str, list[str]] = {}
        for eid, name in pairs:
            host = ids.get(eid)
            if host is not None and counter_matches(name, metrics, sel.tags, instance_tag) is not None:
                per_host.setdefault(host, []).append(name)
        groups: dict[tuple[str, ...], list[str]] = {}
        for host, names in sorted(per_host.items()):
            groups.setdefault(tuple(sorted(set(names))), []).append(host)
        return [(hosts, list(names)) for names, hosts in groups.items()]

    async def _hosts(self, session: aiohttp.ClientSession, job: str, sel: Selector) -> dict[int, str]:
        """The graph's endpoints (id -> name) of a selector: the job's Marathon tasks, its exact
        endpoint, or a search by its endpoint glob and tags; at most `warm_max_hosts`."""
        s = self.settings
        user, limit = s.falcon_api_user, s.warm_max_hosts
        endpoint = sel.endpoint
        if not sel.tasks and endpoint is not None and not any(c in endpoint for c in "*?["):
            return await fetch_endpoint_ids(session, self.api, user, self.token, [endpoint])
        if not sel.tasks and (endpoint is not None or sel.tags):
            q = endpoint_regex(endpoint) if endpoint is not None else ""
            return await fetch_endpoints(session, self.api, user, self.token, q, sel.tags, limit)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + s.warm_timeout / 2
        known = self.engine.tasks_of(job)
        while not known:  # Marathon's first answer for the app is still on its way (or the app has none)
            if loop.time() >= give_up:
                raise HistoryError("no Marathon task of the job is known: no host to ask the graph for")
            await asyncio.sleep(TASKS_POLL)
            known = self.engine.tasks_of(job)
        return await fetch_endpoint_ids(session, self.api, user, self.token, sorted(known)[:limit])
