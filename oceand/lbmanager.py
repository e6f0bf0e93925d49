"""Load balancers follow the instances (PRODUCT §4.2): one reconciler per (job, `lb` entry).

Triggers: every change of the job's app that the Marathon watcher reports (immediately, coalesced per
job), a re-run when a drain ends, and a periodic full reconcile that also catches changes made by hand.
Each reconcile is a diff against what the balancer reports now (actuators.lb.reconcile), so running it
twice, concurrently or after a crash converges to the same set.

ALB statistics: for a job with an HAProxy entry (and, when `[lb] nginx_status_url` is set, an nginx
entry) the request rate is sampled every period and fed to the job's rules on metric `alb.qps`, as a
job-level value (one reporter, not one per instance).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actuators.lb.albstats import HaproxyStats, NginxStubStatus
from actuators.lb.reconcile import DriverFactory, LBSettings, Reconciler
from actuators.marathon import AppState
from oceand.config import LBConfig
from oceand.ingest import ALB_QPS as ALB_METRIC
from oceand.metrics import Metrics
from policies.document import HaproxyLB, JobDocument, NginxLB

log = logging.getLogger("oceand.lb")


def lb_settings(c: LBConfig) -> LBSettings:
    """The `[lb]` table as the drivers' settings."""
    return LBSettings(
        timeout=c.timeout,
        ipvsadm=c.ipvsadm,
        keepalived=c.keepalived,
        keepalived_config=Path(c.keepalived_config),
        keepalived_include_dir=Path(c.keepalived_include_dir),
        keepalived_pid_file=None if c.keepalived_pid_file is None else Path(c.keepalived_pid_file),
        keepalived_real_server_lines=tuple(c.keepalived_real_server_lines),
        nginx=c.nginx,
        nginx_conf=Path(c.nginx_conf),
        nginx_prefix=None if c.nginx_prefix is None else Path(c.nginx_prefix),
        nginx_pid_file=None if c.nginx_pid_file is None else Path(c.nginx_pid_file),
        nginx_upstream_dir=Path(c.nginx_upstream_dir),
        haproxy_socket=Path(c.haproxy_socket),
        haproxy_servers_dir=None if c.haproxy_servers_dir is None else Path(c.haproxy_servers_dir),
        haproxy_server_options=c.haproxy_server_options,
        use_ip_address=c.use_ip_address,
    )


class LBManager:
    def __init__(
        self,
        settings: LBSettings,
        app_of: Callable[[JobDocument], AppState | None],
        feed: Callable[[str, str, float, float], None],
        metrics: Metrics,
        *,
        interval: float = 30.0,
        nginx_status_url: str | None = None,
        clock: Callable[[], float] = time.time,
        dry_run: Callable[[], bool] = lambda: False,
    ) -> None:
        self.factory = DriverFactory(settings)
        self.app_of = app_of  # the job's app as the Marathon watcher knows it
        self.feed = feed  # (job, metric, ts, value): a job-level sample into the job's buckets
        self.metrics = metrics
        self.interval = interval
        self.nginx_status_url = nginx_status_url
        self.clock = clock
        self.dry_run = dry_run  # the daemon-wide switch: no balancer is changed while it is on
        self.docs: dict[str, JobDocument] = {}
        self.reconcilers: dict[str, list[Reconciler]] = {}
        self.stats: dict[str, list[HaproxyStats | NginxStubStatus]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stop = asyncio.Event()

    # ---- the job set ---------------------------------------------------------------------------

    def sync_jobs(self, docs: list[JobDocument]) -> None:
        names = {d.job for d in docs}
        for name in list(self.docs):
            if name not in names:
                self.sync_job(name, None)
        for d in docs:
            self.sync_job(d.job, d)

    def sync_job(self, name: str, doc: JobDocument | None) -> None:
        old = self.docs.get(name)
        if doc is not None and old is not None and old.lb == doc.lb and old.period == doc.period:
            self.docs[name] = doc
            return
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
        self.docs.pop(name, None)
        self.reconcilers.pop(name, None)
        self.stats.pop(name, None)
        self._wake.pop(name, None)
        if doc is None or not doc.lb:
            return
        self.docs[name] = doc
        self.reconcilers[name] = [self.factory.reconciler(name, lb) for lb in doc.lb]
        samplers: list[HaproxyStats | NginxStubStatus] = []
        if any(r.metric == ALB_METRIC for r in doc.metric_rules()):
            for lb in doc.lb:
                if isinstance(lb, HaproxyLB):
                    samplers.append(HaproxyStats(self.factory.settings.haproxy_socket, lb.backend))
                elif isinstance(lb, NginxLB) and self.nginx_status_url:
                    samplers.append(NginxStubStatus(self.nginx_status_url))
        self.stats[name] = samplers
        self._wake[name] = asyncio.Event()
        self._tasks[name] = asyncio.get_running_loop().create_task(self._job_loop(name), name=f"lb:{name}")

    def app_changed(self, name: str, app: AppState | None) -> None:
        ev = self._wake.get(name)
        if ev is not None:
            ev.set()

    # ---- loops ---------------------------------------------------------------------------------

    async def _job_loop(self, name: str) -> None:
        """Reconcile on every wake (coalesced) and at least every `interval`; sample ALB stats each period."""
        next_full = 0.0
        next_sample = 0.0
        while not self._stop.is_set():
            doc = self.docs.get(name)
            ev = self._wake.get(name)
            if doc is None or ev is None:
                return
            now = self.clock()
            if ev.is_set() or now >= next_full:
                ev.clear()
                delay = await self.reconcile(name, now)
                next_full = now + (self.interval if delay is None else min(self.interval, delay))
            if self.stats.get(name) and now >= next_sample:
                await self._sample(name, doc, now)
                next_sample = now - now % doc.period + doc.period
            wait = max(0.0, min(next_full, next_sample if self.stats.get(name) else next_full) - self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ev.wait(), wait)

    async def reconcile(self, name: str, now: float) -> float | None:
        """One pass over the job's balancers; returns the seconds until a drain ends, if any."""
        doc = self.docs.get(name)
        app = self.app_of(doc) if doc is not None else None
        if app is None:
            return None  # the app is not known yet: never empty a balancer on missing information
        if self.dry_run():
            return None
        soonest: float | None = None
        for r in self.reconcilers.get(name, []):
            res = await r.reconcile(app, now)
            self.metrics.lb_applies.labels(r.lb.type, "ok" if res.ok else "error").inc()
            if not res.ok:
                log.warning("lb %s of job %s: %s", r.key, name, res.error, extra={"event": "lb_error"})
            elif res.ops:
                log.info(
                    "lb %s of job %s: %s",
                    r.key,
                    name,
                    ", ".join(str(o) for o in res.ops),
                    extra={"event": "lb_apply", "job": name},
                )
            for started in r.drains.values():
                left = started + r.lb.drain - now
                soonest = left if soonest is None else min(soonest, left)
        return None if soonest is None else max(0.05, soonest)

    async def _sample(self, name: str, doc: JobDocument, now: float) -> None:
        total: float | None = None
        for s in self.stats.get(name, []):
            rate = await s.sample(now)
            if rate is not None:
                total = rate if total is None else total + rate
        if total is not None:
            self.feed(name, ALB_METRIC, now, total)

    def status(self, name: str) -> list[dict[str, Any]]:
        return [r.status() for r in self.reconcilers.get(name, [])]

    async def close(self, timeout: float = 30.0) -> None:
        """Let passes in progress finish (SIGTERM finishes in-flight actions), then stop the loops."""
        self._stop.set()
        for ev in self._wake.values():
            ev.set()
        tasks = list(self._tasks.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            for t in late:
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for samplers in self.stats.values():
            for s in samplers:
                if isinstance(s, NginxStubStatus):
                    await s.close()
