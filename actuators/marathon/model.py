"""What oceand knows of a Marathon app: its tasks and deployments (PROTOCOLS.md A.3, A.4, A.6).

Shared by the Marathon client, the event-stream watcher, the engine (bucket closing, deployment waits)
and the load-balancer reconciler (desired backends). Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

RUNNING = "TASK_RUNNING"
# Task states after which a task is gone for good (status_update_event).
TERMINAL_STATES = frozenset(
    {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_GONE", "TASK_DROPPED", "TASK_UNKNOWN"}
)


@dataclass(slots=True)
class Task:
    id: str
    app_id: str
    host: str
    ports: list[int] = field(default_factory=list)
    ip_addresses: list[str] = field(default_factory=list)
    state: str = RUNNING
    healthy: bool | None = None  # None: the app has no health checks (or no result yet)
    started_at: str | None = None
    # launch and first-healthy times, Unix seconds on Marathon's clock (the start-up time is their
    # difference: actuators.marathon.startup); None when Marathon has not said (yet)
    staged_at: float | None = None
    healthy_at: float | None = None

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    def serving(self, has_health_checks: bool) -> bool:
        """Running and, when the app has health checks, alive in every check (PROTOCOLS.md A.4)."""
        if not self.running:
            return False
        return self.healthy is True if has_health_checks else self.healthy is not False

    @staticmethod
    def from_marathon(d: dict[str, Any]) -> Task:
        results = d.get("healthCheckResults") or []
        healthy: bool | None = all(bool(r.get("alive")) for r in results) if results else None
        # healthy once every health check has succeeded once: the latest of their first successes
        firsts = [parse_time(r.get("firstSuccess")) for r in results]
        known = [f for f in firsts if f is not None]
        healthy_at = max(known) if known and len(known) == len(firsts) else None
        return Task(
            id=str(d["id"]),
            app_id=str(d.get("appId", "")),
            host=str(d.get("host", "")),
            ports=[int(p) for p in d.get("ports") or []],
            ip_addresses=[str(a.get("ipAddress")) for a in d.get("ipAddresses") or [] if a.get("ipAddress")],
            state=str(d.get("state", RUNNING)),
            healthy=healthy,
            started_at=d.get("startedAt"),
            staged_at=parse_time(d.get("stagedAt")),
            healthy_at=healthy_at,
        )


@dataclass(slots=True)
class AppState:
    id: str
    instances: int  # desired count (Marathon's `instances`)
    tasks: dict[str, Task] = field(default_factory=dict)  # task id -> task
    deployments: list[str] = field(default_factory=list)  # running deployment ids
    has_health_checks: bool = False
    version: str | None = None
    health_checks: int = 0  # how many health checks the app defines (events name none of them)
    last_scaling_at: float | None = None  # versionInfo.lastScalingAt, Unix seconds (Marathon's clock)

    @property
    def running(self) -> int:
        return sum(1 for t in self.tasks.values() if t.running)

    @property
    def ready(self) -> int:
        return sum(1 for t in self.tasks.values() if t.serving(self.has_health_checks))

    def serving_tasks(self) -> list[Task]:
        return [t for t in self.tasks.values() if t.serving(self.has_health_checks)]

    @staticmethod
    def from_marathon(app: dict[str, Any]) -> AppState:
        """From the `app` object of GET /v2/apps/{id} (embeds tasks and deployments)."""
        tasks = {str(t["id"]): Task.from_marathon(t) for t in app.get("tasks") or []}
        return AppState(
            id=str(app["id"]),
            instances=int(app.get("instances", 0)),
            tasks=tasks,
            deployments=[str(d["id"]) for d in app.get("deployments") or [] if "id" in d],
            has_health_checks=bool(app.get("healthChecks")),
            version=app.get("version"),
            health_checks=len(app.get("healthChecks") or []),
            last_scaling_at=parse_time((app.get("versionInfo") or {}).get("lastScalingAt")),
        )


def parse_time(value: Any) -> float | None:
    """Marathon's ISO 8601 timestamps (`2015-09-25T15:13:48.343Z`) as Unix seconds; None if absent or
    unreadable (a missing time is never evidence of anything)."""
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t.timestamp() if t.tzinfo is not None else None


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
