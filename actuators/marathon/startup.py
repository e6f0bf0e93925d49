"""The start-up time of a Marathon app, learned from its tasks (PRODUCT §14: a predictive rule's lead).

A task's start-up time is launch → healthy on Marathon's own clock: from its `stagedAt` to the latest
`firstSuccess` of its health checks (`healthCheckResults`), or to its `startedAt` (TASK_RUNNING) when
the app has no health checks. `StartupTimes` keeps, per app, the start-up times of its `RECENT_TASKS`
most recently launched tasks (also those gone since) and their 90th percentile. Tasks that have not
become healthy yet, or whose times Marathon did not give, teach nothing.
"""

from __future__ import annotations

from actuators.marathon.model import AppState, Task, parse_time
from policies.predictive import quantile

RECENT_TASKS = 20  # start-up times kept per app (the most recently launched tasks)
STARTUP_QUANTILE = 0.9
MAX_STARTUP = 86400.0  # longer (or negative) differences are clock errors, not start-up times


def task_startup(task: Task, has_health_checks: bool) -> float | None:
    """Launch → healthy of one task in seconds, None when it is not known (yet)."""
    if task.staged_at is None:
        return None
    ready = task.healthy_at if has_health_checks else parse_time(task.started_at)
    if ready is None:
        return None
    seconds = ready - task.staged_at
    return seconds if 0.0 <= seconds <= MAX_STARTUP else None


class StartupTimes:
    """Per app: the recent tasks' start-up times and their p90 (kept current as tasks are observed)."""

    def __init__(self, keep: int = RECENT_TASKS) -> None:
        self.keep = keep
        self._times: dict[str, dict[str, tuple[float, float]]] = {}  # app -> task -> (staged_at, seconds)
        self._p90: dict[str, float] = {}

    def observe(self, app_id: str, task: Task, has_health_checks: bool) -> bool:
        """Learn from one task (once it has become healthy); True when the app's figure changed."""
        seen = self._times.get(app_id)
        if seen is not None and task.id in seen:
            return False
        seconds = task_startup(task, has_health_checks)
        if seconds is None or task.staged_at is None:
            return False
        seen = self._times.setdefault(app_id, {})
        if len(seen) >= self.keep:
            oldest = min(seen, key=lambda k: seen[k][0])
            if seen[oldest][0] > task.staged_at:
                return False  # older than every task kept: not recent
            del seen[oldest]
        seen[task.id] = (task.staged_at, seconds)
        before = self._p90.get(app_id)
        self._p90[app_id] = quantile(tuple(s for _, s in seen.values()), STARTUP_QUANTILE)
        return self._p90[app_id] != before

    def observe_app(self, app: AppState) -> bool:
        """Learn from every task of a fresh read of the app."""
        changed = False
        for task in app.tasks.values():
            changed |= self.observe(app.id, task, app.has_health_checks)
        return changed

    def p90(self, app_id: str) -> float | None:
        """The 90th percentile of the recent tasks' start-up times, None before any task was seen healthy."""
        return self._p90.get(app_id)

    def samples(self, app_id: str) -> int:
        return len(self._times.get(app_id, ()))

    def forget(self, app_id: str) -> None:
        self._times.pop(app_id, None)
        self._p90.pop(app_id, None)
