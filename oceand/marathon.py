"""Marathon clusters in the daemon: per configured cluster a client, an event-stream watcher and an actuator.

The watcher keeps every watched app's tasks and deployments current (events are cache invalidation; it
re-reads after every reconnect). Each change of an app tells the engine how many tasks run (so buckets
close as soon as every running instance reported) and wakes the job's worker and the LB reconciler.
The actuator writes absolute counts through `set_instances` (409: wait for the deployment, or force;
5xx/timeouts: retry on the next URL with backoff; other 4xx: a permanent failure).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from actuators.marathon import AppNotFound, MarathonClient, Permanent, Transient
from actuators.marathon_apply import AttemptLog, set_instances, settle
from actuators.marathon_events import ClusterWatcher
from actuators.marathon_model import AppState, parse_time
from oceand.actuation import AppView, Outcome, Settled
from oceand.config import ClusterSettings
from policies.document import JobDocument
from policies.types import Decision

log = logging.getLogger("oceand.marathon")

APPLY_DEADLINE = 30.0  # seconds one apply may take (409 waits and retries) before the engine backs off


class MarathonActuator:
    def __init__(
        self,
        cluster: ClusterRuntime,
        apply_deadline: float = APPLY_DEADLINE,
        clock_skew: float = 2.0,
        settle_grace: float = 5.0,
    ) -> None:
        self.cluster = cluster
        self.apply_deadline = apply_deadline
        self.clock_skew = clock_skew
        self.settle_grace = settle_grace
        self._scaled_at: dict[str, float] = {}  # app -> lastScalingAt of the newest write seen to land

    def _baseline(self, app_id: str) -> float | None:
        """The newest `lastScalingAt` of the app known now: the watcher's copy or the newest write of
        ours seen to land, whichever is later."""
        app = self.cluster.watcher.app(app_id)
        known = [t for t in (app.last_scaling_at if app else None, self._scaled_at.get(app_id)) if t]
        return max(known) if known else None

    def view(self, doc: JobDocument) -> AppView:
        w = self.cluster.watcher
        app = w.app(doc.target.app)
        if app is None:
            return AppView(instances=0, ready=0, running=None, known=False)
        return _view(app, w.deployment_started_at(doc.target.app), w.startup.p90(doc.target.app))

    async def refresh(self, doc: JobDocument) -> AppView:
        w = self.cluster.watcher
        app = await w.refresh(doc.target.app)
        return _view(app, w.deployment_started_at(doc.target.app), w.startup.p90(doc.target.app))

    async def settle(self, doc: JobDocument, attempts: AttemptLog) -> Settled:
        """Whether the unresolved attempts landed (GET /v2/deployments and the app; may wait out their
        landing window, bounded by `apply_deadline`)."""
        landing = await settle(
            self.cluster.client,
            doc.target.app,
            attempts,
            skew=self.clock_skew,
            grace=self.settle_grace,
            deadline=time.monotonic() + self.apply_deadline,
        )
        if landing is None:
            return Settled(False, None, self.view(doc).instances)
        if landing.landed:
            self._landed(doc.target.app, landing.app.last_scaling_at)
            self.cluster.refresh_soon(doc.target.app)
        return Settled(landing.landed, landing.evidence, landing.app.instances)

    async def apply(
        self, doc: JobDocument, decision: Decision, attempts: AttemptLog | None = None
    ) -> Outcome:
        c = self.cluster
        result: dict[str, Any]
        try:
            res = await set_instances(
                c.client,
                doc.target.app,
                decision.desired,
                force=doc.target.force,
                wait_deployment=c.watcher.wait_deployment,
                deadline=time.monotonic() + self.apply_deadline,
                log=attempts,
                skew=self.clock_skew,
                grace=self.settle_grace,
                baseline=self._baseline(doc.target.app),
            )
        except AppNotFound as e:
            return Outcome("failed", {"error": str(e), "status": e.status, "url": e.url}, permanent=True)
        except Permanent as e:
            return Outcome("failed", {"error": str(e), "status": e.status, "url": e.url}, permanent=True)
        except Transient as e:
            result = {"error": str(e), "url": e.url}
            if e.maybe_applied:
                result["unknown"] = True  # may have landed: settled before anything is sent again
            return Outcome("failed", result)
        self._landed(doc.target.app, parse_time(res.version))
        c.refresh_soon(doc.target.app)
        result = {"deployment_id": res.deployment_id, "version": res.version, "url": res.url}
        if res.already_applied:
            result["already_applied"] = True
        if res.landed is not None:
            result.update(landed=res.landed, observed=res.observed)
        return Outcome("applied", result)

    def _landed(self, app_id: str, scaled_at: float | None) -> None:
        if scaled_at is not None and scaled_at > self._scaled_at.get(app_id, 0.0):
            self._scaled_at[app_id] = scaled_at


def _view(app: AppState, deployment_started_at: float | None, startup: float | None) -> AppView:
    return AppView(
        instances=app.instances,
        ready=app.ready,
        running=app.running,
        deployment_started_at=deployment_started_at if app.deployments else None,
        startup=startup,
    )


def task_endpoints(app: AppState | None) -> frozenset[str]:
    """The endpoints a falcon-agent in one of the app's tasks reports as: the task's host, its IPs."""
    if app is None:
        return frozenset()
    out: set[str] = set()
    for t in app.tasks.values():
        if t.host:
            out.add(t.host)
        out.update(a for a in t.ip_addresses if a)
    return frozenset(out)


AppChanged = Callable[[str, AppState | None], None]  # (job, its app's state, None: gone) -> None


class ClusterRuntime:
    """One Marathon cluster: client, event-stream watcher and actuator. What its apps do reaches the rest
    of the daemon through `on_app` (called per job watching the app), not through the daemon itself."""

    def __init__(self, settings: ClusterSettings, on_app: AppChanged) -> None:
        self.name = settings.client.name
        self.on_app = on_app
        self.client = MarathonClient(settings.client)
        self.watcher = ClusterWatcher(self.client, on_change=self._changed, clock=time.time)
        self.actuator = MarathonActuator(
            self, settings.apply_timeout, settings.clock_skew, settings.settle_grace
        )
        self.jobs_by_app: dict[str, list[str]] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self.watcher.run(self._stop), name=f"marathon:{self.name}"
        )

    def connected(self) -> bool:
        return self.watcher.state == "connected"

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "jobs": sum(len(v) for v in self.jobs_by_app.values()),
            **self.watcher.info(),
        }

    def sync_jobs(self, docs: list[JobDocument]) -> None:
        by_app: dict[str, list[str]] = {}
        for doc in docs:
            if doc.target.cluster == self.name:
                by_app.setdefault(doc.target.app, []).append(doc.job)
        for app in set(self.jobs_by_app) - set(by_app):
            self.watcher.unwatch(app)
        for app in by_app:
            self.watcher.watch(app)
        self.jobs_by_app = by_app
        for app in by_app:
            self._changed(app)

    def sync_job(self, name: str, doc: JobDocument | None) -> None:
        """One job created, replaced or deleted: watch its app (or stop watching an app left unused)."""
        for app, jobs in list(self.jobs_by_app.items()):
            if name in jobs and (doc is None or doc.target.cluster != self.name or doc.target.app != app):
                jobs.remove(name)
                if not jobs:
                    del self.jobs_by_app[app]
                    self.watcher.unwatch(app)
        if doc is not None and doc.target.cluster == self.name:
            jobs = self.jobs_by_app.setdefault(doc.target.app, [])
            if name not in jobs:
                jobs.append(name)
            self.watcher.watch(doc.target.app)
            self._changed(doc.target.app)

    def _changed(self, app_id: str) -> None:
        app = self.watcher.app(app_id)
        for job in self.jobs_by_app.get(app_id, ()):
            self.on_app(job, app)

    def refresh_soon(self, app_id: str) -> None:
        async def refresh() -> None:
            try:
                await self.watcher.refresh(app_id)
            except (Transient, Permanent) as e:
                log.debug("refresh of %s after apply failed: %s", app_id, e)

        t = asyncio.get_running_loop().create_task(refresh())
        self._background.add(t)
        t.add_done_callback(self._background.discard)

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for t in list(self._background):
            t.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.client.close()


def start_clusters(
    clusters: dict[str, ClusterRuntime], settings: dict[str, ClusterSettings], on_app: AppChanged
) -> None:
    """A runtime per configured cluster, added to `clusters` and started."""
    for name, s in settings.items():
        cluster = ClusterRuntime(s, on_app)
        clusters[name] = cluster
        cluster.start()
