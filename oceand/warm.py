"""Warm start from Falcon's graph history (PRODUCT §9; docs/falcon.md "Warm start").

With `[history] falcon_api` set, every job added or changed (at start, by the API, by a reload) whose
rules have something to learn (policies/warm.py: predictive rules with an empty state) is queued here.
`warm_concurrency` tasks take jobs from the queue; per job, within `warm_timeout` for every request:

1. the hosts of each such rule: the job's current Marathon tasks (`"tasks": true`; waited for until
   the timeout when none is known yet), the selector's exact `endpoint`, or the graph's endpoints that
   match the selector's endpoint glob and tags (`GET /api/v1/graph/endpoint`); at most `warm_max_hosts`;
2. one `POST /api/v1/graph/history` for them over the last `warm_window`, counters
   `metric/<selector tags>` (and the raw metric of a derived one: `cpu.idle` for `cpu.used`, as 100 − v);
   at most `warm_max_points` points are taken;
3. the points become the buckets the live ones would have been (`falcon_history.bucket_values`) and
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
    counter,
    endpoint_regex,
    fetch_endpoints,
    fetch_history,
    history_body,
)
from oceand.ingest import DERIVED
from oceand.metrics import Metrics
from policies.document import JobDocument, PredictiveRule
from policies.warm import BucketValue

log = logging.getLogger("oceand.warm")

TASKS_POLL = 0.2  # seconds between looks at a job's Marathon tasks while none is known yet


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
        for rule in rules:
            if doc.instance_tag is not None:
                continue  # instances told apart by a tag: not one graph endpoint each
            sel = doc.selector_for(rule)
            hosts = await self._hosts(session, doc.job, sel.tasks, sel.endpoint, sel.tags)
            if not hosts:
                out[rule.name] = []
                continue
            feeds = {counter(rule.metric, sel.tags): False}
            if rule.metric in DERIVED:
                feeds[counter(DERIVED[rule.metric][0], sel.tags)] = True
            body = history_body(hosts, list(feeds), start, end)
            series = await fetch_history(
                session, self.api, s.falcon_api_user, self.token, body, max(0, budget)
            )
            kept: list[Series] = []
            for one in series:
                if one.counter not in feeds:
                    continue
                points = one.points[: max(0, budget)]
                if len(points) < len(one.points):
                    self.metrics.warm_points.labels("left_out").inc(len(one.points) - len(points))
                budget -= len(points)
                if feeds[one.counter]:
                    points = [(t, 100.0 - v) for t, v in points]
                kept.append(Series(one.endpoint, one.counter, one.step, points))
            rows = bucket_values(kept, period, rule.aggregate, start, end)
            out[rule.name] = rows
        taken = s.warm_max_points - max(0, budget)
        self.metrics.warm_points.labels("taken").inc(taken)
        return out, taken

    async def _hosts(
        self,
        session: aiohttp.ClientSession,
        job: str,
        tasks: bool,
        endpoint: str | None,
        tags: dict[str, str],
    ) -> list[str]:
        limit = self.settings.warm_max_hosts
        if not tasks and endpoint is not None and not any(c in endpoint for c in "*?["):
            return [endpoint]
        if not tasks and (endpoint is not None or tags):
            q = endpoint_regex(endpoint) if endpoint is not None else ""
            user = self.settings.falcon_api_user
            return await fetch_endpoints(session, self.api, user, self.token, q, tags, limit)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.settings.warm_timeout / 2
        known = self.engine.tasks_of(job)
        while not known:  # Marathon's first answer for the app is still on its way (or the app has none)
            if loop.time() >= give_up:
                raise HistoryError("no Marathon task of the job is known: no host to ask the graph for")
            await asyncio.sleep(TASKS_POLL)
            known = self.engine.tasks_of(job)
        return sorted(known)[:limit]
