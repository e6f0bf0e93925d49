"""Marathon's event stream (PROTOCOLS A.6): one watcher per cluster, a user of the Marathon client
(actuators/marathon/client.py, whose `events()` parses the stream with actuators/marathon/sse.py).
It depends on the client, never the other way round.

`ClusterWatcher` keeps the tasks and running deployments of the apps the daemon watches. The stream is
cache invalidation: after every (re)connect it re-reads every watched app, then applies events
(status updates, health changes, deployments, API posts) and calls `on_change(app_id)` for each change
of a watched app. It reconnects with backoff and logs on state changes only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from actuators.marathon.client import STREAM_OPENED, MarathonClient
from actuators.marathon.errors import AppNotFound, MarathonError, Transient
from actuators.marathon.model import RUNNING, TERMINAL_STATES, AppState, Task, parse_time
from actuators.marathon.startup import StartupTimes
from policies.backoff import Backoff
from policies.redact import redact_text

log = logging.getLogger(__name__)

DEFAULT_EVENT_TYPES = (
    "status_update_event",
    "health_status_changed_event",
    "instance_health_changed_event",
    "deployment_info",
    "deployment_success",
    "deployment_failed",
    "api_post_event",
    "app_terminated_event",
)


def _plan_apps(data: dict[str, Any]) -> set[str]:
    """App ids a deployment_info event names: plan.affectedApps, plan.steps[*].actions[*].app and
    currentStep.actions[*].app (the light plan format differs between versions)."""
    plan: dict[str, Any] = data["plan"] if isinstance(data.get("plan"), dict) else {}
    apps = {a for a in plan.get("affectedApps") or [] if isinstance(a, str)}
    steps = list(plan.get("steps") or [])
    if isinstance(data.get("currentStep"), dict):
        steps.append(data["currentStep"])
    for step in steps:
        if not isinstance(step, dict):
            continue
        actions: list[Any] = step["actions"] if isinstance(step.get("actions"), list) else [step]
        for action in actions:
            if isinstance(action, dict) and isinstance(action.get("app"), str):
                apps.add(action["app"])
    return apps


def _subjects(event: str, d: dict[str, Any]) -> set[str] | None:
    """The apps an event is about (None: possibly any app, e.g. the end of a deployment)."""
    if event == "deployment_info":
        return _plan_apps(d)
    if event in ("deployment_success", "deployment_failed"):
        return None
    if event == "api_post_event":
        app = d.get("appDefinition")
        return {app["id"]} if isinstance(app, dict) and isinstance(app.get("id"), str) else set()
    for key in ("appId", "runSpecId"):
        if isinstance(d.get(key), str):
            return {d[key]}
    return set()


def _matches_instance(task_id: str, instance_id: str) -> bool:
    return task_id == instance_id or task_id.startswith(instance_id + ".")


class ClusterWatcher:
    """The event-stream watcher of one Marathon cluster. All methods run on the event loop."""

    def __init__(
        self,
        client: MarathonClient,
        *,
        on_change: Callable[[str], None],
        backoff_max: float = 30.0,
        backoff_initial: float = 0.5,
        event_types: Sequence[str] = DEFAULT_EVENT_TYPES,
        list_threshold: int = 20,
        poll_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.on_change = on_change
        self.backoff = Backoff(initial=backoff_initial, factor=2.0, maximum=backoff_max, jitter=0.5)
        self.event_types = tuple(event_types)
        self.list_threshold = list_threshold  # re-read with one GET /v2/apps above this many watched apps
        self.poll_interval = poll_interval  # deployment waits poll this often while disconnected
        self.clock = clock
        self.state = "disconnected"
        self.reconnects = 0
        self.events_applied = 0
        self.last_error: str | None = None
        self.connected_since: float | None = None  # wall clock
        self.last_event_at: float | None = None  # wall clock
        self._apps: dict[str, AppState | None] = {}
        self._deploy_since: dict[str, float] = {}
        self._signals: dict[str, asyncio.Event] = {}
        self._recording: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self._recorders: dict[str, int] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._failure_logged = False
        self.startup = StartupTimes()  # per app: launch -> healthy of its recent tasks

    # ---- what the daemon reads -------------------------------------------------------------------
    def watch(self, app_id: str) -> None:
        if app_id in self._apps:
            return
        self._apps[app_id] = None
        if self.state == "connected":
            self._spawn(self._quiet_refresh(app_id))

    def unwatch(self, app_id: str) -> None:
        self._apps.pop(app_id, None)
        self._deploy_since.pop(app_id, None)
        self.startup.forget(app_id)
        self._signal(app_id)

    def watched(self) -> list[str]:
        return list(self._apps)

    def app(self, app_id: str) -> AppState | None:
        return self._apps.get(app_id)

    def deployment_started_at(self, app_id: str) -> float | None:
        """`clock()` reading when the watcher first saw the app's current deployment, or None."""
        return self._deploy_since.get(app_id)

    def info(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "url": self.client.active_url,
            "leader": self.client.leader,
            "urls": self.client.url_state(),
            "watched_apps": len(self._apps),
            "reconnects": self.reconnects,
            "events_applied": self.events_applied,
            "connected_since": self.connected_since,
            "last_event_at": self.last_event_at,
            "last_error": self.last_error,
        }

    async def refresh(self, app_id: str) -> AppState:
        """GET the app now and update the cache (events that arrive meanwhile are applied on top)."""
        self._recorders[app_id] = self._recorders.get(app_id, 0) + 1
        pending = self._recording.setdefault(app_id, [])
        try:
            st = await self.client.get_app(app_id)
        except AppNotFound:
            self._store(app_id, None)
            raise
        finally:
            self._recorders[app_id] -= 1
            if self._recorders[app_id] == 0:
                del self._recorders[app_id], self._recording[app_id]
        replay = list(pending)
        if app_id in self._apps:
            self._store(app_id, st)
            for event, data in replay:
                self._apply(event, data, record=False)
        return st

    async def wait_deployment(self, app_id: str, timeout: float) -> None:
        """Return when the app has no running deployment (or is gone); TimeoutError after `timeout`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        st = await self._read(app_id)
        while st is not None and st.deployments:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"deployment {st.deployments} of {app_id} still running after {timeout}s")
            live = self.state == "connected" and app_id in self._apps
            sig = self._signals.setdefault(app_id, asyncio.Event())
            try:
                await asyncio.wait_for(sig.wait(), min(remaining, self.poll_interval * (10 if live else 1)))
                woke = True
            except TimeoutError:
                woke = False
            if woke and self.state == "connected" and app_id in self._apps:
                st = self._apps[app_id]  # the events keep the cache current
            else:
                st = await self._read(app_id)  # disconnected, unwatched, or a periodic check

    async def _read(self, app_id: str) -> AppState | None:
        try:
            if app_id in self._apps:
                return await self.refresh(app_id)
            return await self.client.get_app(app_id)
        except AppNotFound:
            return None
        except Transient:
            if app_id in self._apps and self._apps[app_id] is not None:
                return self._apps[app_id]
            return AppState(app_id, 0, deployments=["unknown"])  # unknown: keep waiting and polling

    def refresh_soon(self, app_id: str) -> None:
        """Re-read the app in the background (after a write: its new deployment and count); a failure
        is left to the stream and the next read."""
        self._spawn(self._quiet_refresh(app_id))

    async def _quiet_refresh(self, app_id: str) -> None:
        with contextlib.suppress(MarathonError):
            await self.refresh(app_id)

    # ---- the stream -----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        stop_wait = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                self._set_state("connecting")
                session = asyncio.ensure_future(self._stream_once())
                done, _ = await asyncio.wait({session, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if session not in done:
                    session.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await session
                    break
                opened, error = session.result()
                if opened:
                    attempt = 0
                self._lost(error)
                delay = self.backoff.delay(attempt, random.random)
                attempt += 1
                await asyncio.wait({stop_wait}, timeout=delay)
        finally:
            stop_wait.cancel()
            for t in list(self._background):
                t.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)
            self._set_state("disconnected")

    async def _stream_once(self) -> tuple[bool, str]:
        """One connection: (whether it opened, why it ended)."""
        opened = False
        try:
            async with contextlib.aclosing(self.client.events(self.event_types)) as stream:
                async for event, data in stream:
                    if event == STREAM_OPENED:
                        await self._resync()
                        opened = True
                        self.connected_since = time.time()
                        self._set_state("connected", f"via {redact_text(str(data.get('url')))}")
                        continue
                    self._apply(event, data)
            return opened, "event stream ended"
        except MarathonError as e:
            return opened, str(e)
        except Exception as e:  # a bug must not end the watcher: log it, reconnect, re-read
            log.exception("marathon %s: watcher error", self.client.cfg.name)
            return opened, f"{type(e).__name__}: {e}"

    async def _resync(self) -> None:
        ids = list(self._apps)
        if len(ids) > self.list_threshold:
            apps = await self.client.list_apps()
            for app_id in ids:
                self._store(app_id, apps.get(app_id))
            return
        sem = asyncio.Semaphore(8)

        async def one(app_id: str) -> None:
            async with sem:
                try:
                    st: AppState | None = await self.client.get_app(app_id)
                except AppNotFound:
                    st = None
            self._store(app_id, st)

        await asyncio.gather(*(one(a) for a in ids))

    def _set_state(self, state: str, detail: str = "") -> None:
        if state == self.state:
            return
        previous, self.state = self.state, state
        if state == "connected":
            self._failure_logged = False
            log.info("marathon %s: event stream connected %s", self.client.cfg.name, detail)
        elif previous == "connected":
            self.connected_since = None
        for app_id in list(self._signals):
            self._signal(app_id)  # deployment waits switch between events and polling

    def _lost(self, error: str) -> None:
        error = redact_text(error)  # shown in GET /api/v1/clusters and logged: no URL credentials or tokens
        self.last_error = error
        was_connected = self.state == "connected"
        if was_connected:
            self.reconnects += 1
            log.warning("marathon %s: event stream lost: %s", self.client.cfg.name, error)
            self._failure_logged = True
        elif not self._failure_logged:
            log.warning("marathon %s: cannot open the event stream: %s", self.client.cfg.name, error)
            self._failure_logged = True
        self._set_state("connecting")

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ---- applying events ------------------------------------------------------------------------
    def _store(self, app_id: str, st: AppState | None) -> None:
        if app_id not in self._apps:
            return
        old = self._apps[app_id]
        self._apps[app_id] = st
        if st is not None:
            self.startup.observe_app(st)
        if old != st:
            self._changed(app_id)

    def _changed(self, app_id: str) -> None:
        st = self._apps.get(app_id)
        if st is not None and st.deployments:
            self._deploy_since.setdefault(app_id, self.clock())
        else:
            self._deploy_since.pop(app_id, None)
        self._signal(app_id)
        try:
            self.on_change(app_id)
        except Exception:
            log.exception("marathon %s: on_change(%s) failed", self.client.cfg.name, app_id)

    def _signal(self, app_id: str) -> None:
        sig = self._signals.pop(app_id, None)
        if sig is not None:
            sig.set()

    def _apply(self, event: str, data: dict[str, Any], *, record: bool = True) -> None:
        self.events_applied += record
        if record:
            self.last_event_at = time.time()
        changed: set[str] = set()
        if event == "status_update_event":
            changed = self._on_status(data)
        elif event in ("health_status_changed_event", "instance_health_changed_event"):
            changed = self._on_health(event, data)
        elif event == "deployment_info":
            changed = self._on_deployment_info(data)
        elif event in ("deployment_success", "deployment_failed"):
            changed = self._on_deployment_end(data)
        elif event == "api_post_event":
            changed = self._on_api_post(data)
        elif event == "app_terminated_event":
            app_id = data.get("appId")
            if isinstance(app_id, str) and self._apps.get(app_id) is not None:
                self._apps[app_id] = None
                changed = {app_id}
        if record and self._recording:
            subjects = _subjects(event, data)
            for app_id, pending in self._recording.items():
                if subjects is None or app_id in subjects:
                    pending.append((event, data))
        for app_id in changed:
            self._changed(app_id)

    def _on_status(self, d: dict[str, Any]) -> set[str]:
        app_id, tid, status = d.get("appId"), d.get("taskId"), d.get("taskStatus")
        if not (isinstance(app_id, str) and isinstance(tid, str) and isinstance(status, str)):
            return set()
        st = self._apps.get(app_id)
        if st is None:
            return set()
        if status in TERMINAL_STATES:
            return {app_id} if st.tasks.pop(tid, None) is not None else set()
        task = st.tasks.get(tid)
        if task is None:
            task = st.tasks[tid] = Task(id=tid, app_id=app_id, host=str(d.get("host", "")), state=status)
        elif task.state == status:
            return set()
        task.state = status
        if isinstance(d.get("ports"), list):
            task.ports = [int(p) for p in d["ports"] if isinstance(p, int)]
        if isinstance(d.get("ipAddresses"), list):
            task.ip_addresses = [
                str(a["ipAddress"]) for a in d["ipAddresses"] if isinstance(a, dict) and a.get("ipAddress")
            ]
        if task.staged_at is None and status == "TASK_STAGING":
            task.staged_at = parse_time(d.get("timestamp"))
        if status == RUNNING and task.started_at is None:
            task.started_at = d.get("timestamp")
        self.startup.observe(app_id, task, st.has_health_checks)
        return {app_id}

    def _on_health(self, event: str, d: dict[str, Any]) -> set[str]:
        app_id = d.get("appId") if event == "health_status_changed_event" else d.get("runSpecId")
        iid = d.get("instanceId")
        value = d.get("alive") if event == "health_status_changed_event" else d.get("healthy")
        if not (isinstance(app_id, str) and isinstance(iid, str)) or not isinstance(value, bool | None):
            return set()
        st = self._apps.get(app_id)
        if st is None:
            return set()
        if event == "health_status_changed_event" and value is True and st.health_checks > 1:
            # The event is about one of the app's health checks and does not say which: one alive check
            # says nothing of the others (a task failing its HTTP check would come back as soon as its
            # TCP check passed). Read the task's results per check from Marathon instead.
            if any(_matches_instance(t.id, iid) and t.healthy is not True for t in st.tasks.values()):
                self._spawn(self._quiet_refresh(app_id))
            return set()
        hit = False
        for task in st.tasks.values():
            if not _matches_instance(task.id, iid):
                continue
            if value is True and task.healthy_at is None:
                task.healthy_at = parse_time(d.get("timestamp"))
                self.startup.observe(app_id, task, st.has_health_checks)
            if task.healthy != value:
                task.healthy, hit = value, True
        return {app_id} if hit else set()

    def _on_deployment_info(self, d: dict[str, Any]) -> set[str]:
        plan = d.get("plan")
        dep_id = plan.get("id") if isinstance(plan, dict) else None
        if not isinstance(dep_id, str):
            return set()
        changed = set()
        for app_id in _plan_apps(d):
            st = self._apps.get(app_id)
            if st is not None and dep_id not in st.deployments:
                st.deployments.append(dep_id)
                changed.add(app_id)
        return changed

    def _on_deployment_end(self, d: dict[str, Any]) -> set[str]:
        dep_id = d.get("id")
        if not isinstance(dep_id, str) and isinstance(d.get("plan"), dict):
            dep_id = d["plan"].get("id")
        changed = set()
        for app_id, st in self._apps.items():
            if st is not None and dep_id in st.deployments:
                st.deployments.remove(dep_id)
                changed.add(app_id)
        return changed

    def _on_api_post(self, d: dict[str, Any]) -> set[str]:
        app = d.get("appDefinition")
        if not isinstance(app, dict) or not isinstance(app.get("id"), str):
            return set()
        st = self._apps.get(app["id"])
        n = app.get("instances")
        if st is None or not isinstance(n, int) or st.instances == n:
            return set()
        st.instances = n
        return {st.id}
