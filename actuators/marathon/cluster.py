"""One configured Marathon cluster in the daemon: its client, event-stream watcher and actuator.

The watcher keeps every watched app's tasks and deployments current (events are cache invalidation; it
re-reads after every reconnect). Each change of an app reaches the rest of the daemon through the
`on_app` callback, once per job watching the app (the engine learns how many tasks run, the job's
worker and the LB reconciler wake); the runtime never calls the daemon. The actuator
(actuators/marathon/apply.py) writes absolute counts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from actuators.marathon.apply import MarathonActuator
from actuators.marathon.client import ClusterConfig, MarathonClient
from actuators.marathon.model import AppState
from actuators.marathon.watcher import ClusterWatcher
from policies.document import JobDocument


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """One Marathon cluster: the Marathon client's settings, and how long one apply may take."""

    client: ClusterConfig
    apply_timeout: float = 30.0
    clock_skew: float = 2.0
    settle_grace: float = 5.0


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
            self.client, self.watcher, settings.apply_timeout, settings.clock_skew, settings.settle_grace
        )
        self.jobs_by_app: dict[str, list[str]] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

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

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.client.close()


def start_clusters(
    clusters: dict[str, ClusterRuntime], settings: dict[str, ClusterSettings], on_app: AppChanged
) -> None:
    """A runtime per configured cluster, added to `clusters` and started."""
    for name, s in settings.items():
        cluster = ClusterRuntime(s, on_app)
        clusters[name] = cluster
        cluster.start()
