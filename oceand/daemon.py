"""The daemon: one asyncio process composed of the store, the engine, the actuators and the HTTP server.

Lifecycle (ARCHITECTURE property 6): `start` opens resources in order and registers their closing on an
AsyncExitStack; root tasks run in a TaskGroup-like set of named tasks whose failures are logged; signals
only set flags (SIGTERM/SIGINT: stop; SIGHUP: reload). `stop` finishes in-flight actuations, then closes
in reverse order. A reload validates the new config first; a bad one is rejected and the old keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from actuators.marathon_model import AppState
from oceand import console
from oceand.actuation import Actuator, RecordingActuator
from oceand.api import admin, ingest
from oceand.api.auth import AUTHORITY, LIMITER, auth_middleware
from oceand.api.auth import add_routes as add_auth_routes
from oceand.api.errors import error_middleware
from oceand.api.openapi import openapi
from oceand.api.server import ConnectionGuard, GuardedSite, runner_options
from oceand.auth import Authority, WriteLimiter, audit, prune_audit
from oceand.config import Config, ConfigError, changed_keys, load_config
from oceand.engine import Engine
from oceand.history import HistoryRecorder
from oceand.jobfiles import load_job_files
from oceand.keys import DAEMON, ENGINE, METRICS, STORE
from oceand.lbmanager import LBManager, lb_settings
from oceand.listeners import Listeners
from oceand.logs import setup_logging
from oceand.marathon import ClusterRuntime, start_clusters, task_endpoints
from oceand.metrics import Metrics
from oceand.notify import Notifier
from oceand.store import open_store
from oceand.store.base import Store, StoreError
from oceand.systemd import Notifier as SystemdNotifier
from oceand.warm import WarmStart
from policies.document import JobDocument, dump_job
from policies.types import Decision

log = logging.getLogger("oceand")
AUDIT_PRUNE_INTERVAL = 3600.0  # seconds between prunings of the audit trail ([auth] audit_retention)


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        actuator: Actuator | None = None,
        store: Store | None = None,
    ) -> None:
        self.config = config
        self.config_loaded = True
        self.clock = clock
        self.metrics = Metrics()
        self.store = store if store is not None else open_store(config.store.url)
        self.store.health.on_failure = self.metrics.store_write_failures.inc
        self.recording = RecordingActuator()
        self._forced_actuator = actuator  # tests: every job goes to this actuator, live mode
        self.clusters: dict[str, ClusterRuntime] = {}  # name -> Marathon client, watcher, actuator
        self.lb = LBManager(
            lb_settings(config.lb),
            self._app_of,
            lambda job, metric, ts, value: self.engine.feed(job, metric, ts, value),
            self.metrics,
            interval=config.lb.reconcile_interval,
            nginx_status_url=config.lb.nginx_status_url,
            clock=clock,
            dry_run=lambda: self.config.dry_run,
        )
        self.notifier = Notifier(config.notify, on_error=self._notify_error, on_event=self._notify_event)
        self.engine = Engine(
            self.store,
            self.actuator_for,
            clock=clock,
            dry_run=lambda: self.config.dry_run,
            dry_reason=self.dry_reason,
            default_tz=config.timezone,
            grace=config.ingest.grace,
            limits=config.ingest.limits(),
            on_series_expired=self.metrics.series_expired.inc,
            on_decision=self._on_decision,
            on_bucket=self.metrics.buckets.inc,
            on_alarm_dropped=lambda reason: self.metrics.alarms_dropped.labels(reason).inc(),
            stale_after=config.decision_stale_after,
            on_actuation=self._on_actuation,
        )
        self.listeners = Listeners(
            config.ingest, self.engine, self.metrics
        )  # [ingest] rpc_listen, tsdb_listen
        self.authority = Authority(
            self.store, clock, config.auth.refresh, config.auth.grace, config.auth.max_tokens
        )
        self.write_limiter = WriteLimiter()  # [auth] write_rate / write_burst, shared by the listeners
        self.guard = ConnectionGuard(config.server, self.metrics)  # every listener: header timeout, cap
        self.engine.on_deferred = self.metrics.timer_deferred.inc
        h = config.history
        self.history = HistoryRecorder(
            self.store,
            retention=h.retention,
            rollup_after=h.rollup_after,
            flush_interval=h.flush_interval,
            max_buffer=h.max_buffer,
            batch=h.batch,
            prune_interval=h.prune_interval,
            clock=clock,
            on_dropped=self.metrics.history_dropped.inc,
            on_written=self.metrics.history_rows.inc,
        )
        self.engine.history = self.history if h.enabled else None
        self.stop_event = asyncio.Event()
        self._reload_requested = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._runner: web.AppRunner | None = None
        self._ingest_runner: web.AppRunner | None = None
        self.warm: WarmStart | None = None  # [history] falcon_api: warm starts from Falcon's graph
        self._tls: dict[str, ssl.SSLContext | None] = {}  # listener table -> the context its site serves
        self.ingest_url: str | None = None
        self._lock = asyncio.Lock()
        self.url: str | None = None
        self.systemd = SystemdNotifier()

    # ---- wiring --------------------------------------------------------------------------------

    def actuator_for(self, doc: JobDocument) -> Actuator:
        if self._forced_actuator is not None:
            return self._forced_actuator
        cluster = self.clusters.get(doc.target.cluster)
        if cluster is not None:
            return cluster.actuator
        return self.recording

    def _app_of(self, doc: JobDocument) -> AppState | None:
        cluster = self.clusters.get(doc.target.cluster)
        return None if cluster is None else cluster.watcher.app(doc.target.app)

    def dry_reason(self, doc: JobDocument) -> str | None:
        if self._forced_actuator is not None:
            return None
        if doc.target.cluster not in self.clusters:
            return f"no Marathon cluster {doc.target.cluster!r} is configured: the job runs dry"
        return None

    async def _on_decision(self, doc: JobDocument, d: Decision) -> None:
        for reason in d.reasons or ["None"]:
            self.metrics.decisions.labels(reason, d.status).inc()
        if d.status in ("applied", "failed") and "latency_ms" in d.result:
            self.metrics.actuation.labels(doc.target.cluster).observe(float(d.result["latency_ms"]) / 1000)
        if d.status == "failed" or (d.status == "pending" and "error" in d.result):
            self.metrics.actuation_errors.labels(doc.target.cluster).inc()
        self.notifier.submit(doc, d)

    def _on_actuation(self, what: str) -> None:
        if what in ("landed", "not_landed"):
            self.metrics.settles.labels(what).inc()
        else:
            self.metrics.stale.labels("dropped" if what == "stale_dropped" else "reread").inc()

    def _notify_error(self, kind: str) -> None:
        self.metrics.notify_errors.labels(kind).inc()

    def _notify_event(self, event: str, kind: str) -> None:
        m = self.metrics
        counters = {
            "sent": m.notify_sent,
            "retry": m.notify_retries,
            "dropped": m.notify_dropped,
            "refused": m.notify_refused,
        }
        if event.startswith("team_"):
            m.notify_team_lookups.labels(event.removeprefix("team_")).inc()
        elif event in counters:
            counters[event].labels(kind).inc()

    def build_app(self) -> web.Application:
        """The admin listener's app; it carries ingest too unless [ingest] listen gives ingest its own."""
        app = self._app()
        if self.config.ingest.listen is None:
            self._add_ingest_routes(app)
        admin.add_routes(app)
        app.router.add_get("/api/v1/openapi.json", openapi)
        add_auth_routes(app)
        console.add_routes(app)  # the web console at /ui/ (PRODUCT §12)
        return app

    def build_ingest_app(self) -> web.Application:
        """[ingest] listen's app: push, alarm callbacks and /healthz."""
        app = self._app()
        self._add_ingest_routes(app)
        app.router.add_get("/healthz", admin.healthz)
        return app

    @staticmethod
    def _add_ingest_routes(app: web.Application) -> None:
        app.router.add_post("/v1/push", ingest.push)
        app.router.add_get("/v1/falcon/alarm", ingest.alarm)
        app.router.add_post("/v1/falcon/alarm", ingest.alarm)

    def _app(self) -> web.Application:
        app = web.Application(
            middlewares=[self.guard.middleware, error_middleware, console.cross_site_guard, auth_middleware],
            client_max_size=self.config.server.max_body,
        )
        app[ENGINE] = self.engine
        app[STORE] = self.store
        app[METRICS] = self.metrics
        app[DAEMON] = self
        app[AUTHORITY] = self.authority
        app[LIMITER] = self.write_limiter
        return app

    # ---- jobs ----------------------------------------------------------------------------------

    async def put_job(self, doc: JobDocument) -> int:
        async with self._lock:
            version = await self.store.put_job(doc.job, dump_job(doc))
            await self.engine.upsert(doc, version)
            self._job_changed(doc.job, doc)
            return version

    async def delete_job(self, name: str) -> None:
        async with self._lock:
            await self.store.delete_job(name)
            await self.engine.remove(name)
            self._job_changed(name, None)

    async def _jobs_changed(self) -> None:
        """Tell the clusters and the LB manager the whole job set (start, reload)."""
        docs = [rt.doc for rt in self.engine.jobs.values()]
        for cluster in self.clusters.values():
            cluster.sync_jobs(docs)
        self.lb.sync_jobs(docs)

    def _job_changed(self, name: str, doc: JobDocument | None) -> None:
        """One job was created, replaced (doc) or deleted (None)."""
        for cluster in self.clusters.values():
            cluster.sync_job(name, doc)
        self.lb.sync_job(name, doc)

    async def apply_job_files(self) -> None:
        d = self.config.jobs_dir
        if d is None:
            return
        for path, doc in load_job_files(Path(d)):
            stored = await self.store.get_job(doc.job)
            if stored is None or stored.doc != dump_job(doc):
                version = await self.store.put_job(doc.job, dump_job(doc))
                log.info("job %s applied from %s (version %d)", doc.job, path, version)
                before = None if stored is None else stored.version
                action = "job.create" if stored is None else "job.replace"
                await audit(
                    self.store, self.clock(), "local", f"file:{path}"[:200], action, doc.job, before, version
                )

    def job_status(self, name: str) -> dict[str, Any]:
        status = self.engine.status(name)
        status["lb"] = self.lb.status(name)
        status["notify"] = self.notifier.status(name)
        status["warm_start"] = self.warm.status(name) if self.warm is not None else None
        return status

    def clusters_info(self) -> list[dict[str, Any]]:
        return [c.info() for c in self.clusters.values()]

    def update_gauges(self) -> None:
        modes: dict[str, int] = {"active": 0, "dry-run": 0, "paused": 0}
        for rt in self.engine.jobs.values():
            modes[self.engine.mode(rt)] += 1
        for m, n in modes.items():
            self.metrics.jobs.labels(m).set(n)
        self.metrics.series.set(self.engine.ingestor.series)
        self.metrics.bucket_overflow.set(sum(rt.buckets.overflow for rt in self.engine.jobs.values()))
        for c in self.clusters.values():
            self.metrics.event_stream.labels(c.name).set(1 if c.connected() else 0)
        self.metrics.store_writable.set(1 if self.store.health.writable else 0)

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """/readyz: the store answers a query and its writes succeed (see `_probe_store`)."""
        answers = await self.store.ping()
        health = self.store.health
        self.metrics.store_writable.set(1 if health.writable else 0)
        ready = answers and health.writable
        body: dict[str, Any] = {
            "status": "ready" if ready else "not ready",
            "store": answers,
            "store_writable": health.writable,
            "config": self.config_loaded,
            "jobs": len(self.engine.jobs),
        }
        if not answers:
            body["reason"] = f"store {self.store.url} does not answer"
        elif not health.writable:
            body["reason"] = health.reason()
        return ready, body

    async def _probe_store(self) -> None:
        """A test write every `store.probe_interval`: an idle daemon notices a store it cannot write,
        and an unwritable one is marked writable again without waiting for real work."""
        while not self.stop_event.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), self.config.store.probe_interval)
            if not self.stop_event.is_set():
                await self.store.probe_write()  # never raises; the outcome goes to store.health

    async def prune_audit(self) -> int:
        """Delete audit entries older than `[auth] audit_retention` (never raises: a store error is logged)."""
        try:
            n = await prune_audit(self.store, self.clock() - self.config.auth.audit_retention)
        except StoreError as e:
            log.warning("audit entries not pruned: %s", e, extra={"event": "audit_prune_failed"})
            return 0
        self.metrics.audit_pruned.inc(n)
        if n:
            log.info(
                "pruned %d audit entries older than [auth] audit_retention",
                n,
                extra={"event": "audit_pruned"},
            )
        return n

    async def _prune_audit_hourly(self) -> None:
        while not self.stop_event.is_set():
            await self.prune_audit()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), AUDIT_PRUNE_INTERVAL)

    # ---- lifecycle -----------------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    @staticmethod
    def _task_done(task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("root task %s failed: %r", task.get_name(), exc, exc_info=exc)

    async def start(self) -> None:
        await self.store.open()
        await self.apply_job_files()
        await self._start_clusters()
        if self.config.history.falcon_api is not None:
            self.warm = WarmStart(self.config.history, self.engine, self.metrics)
            self.engine.on_upsert = self.warm.submit
        await self.engine.load()
        await self._jobs_changed()
        runner = web.AppRunner(self.build_app(), **runner_options(self.config.server))
        await runner.setup()
        server = self.config.server
        self._tls["server"] = server.ssl_context()
        await GuardedSite(runner, server.host, server.port, self.guard, self._tls["server"]).start()
        self._runner = runner
        self.url = _url(runner, https=server.tls_cert is not None)
        if self.config.ingest.address is not None:
            self._ingest_runner = web.AppRunner(self.build_ingest_app(), **runner_options(self.config.server))
            await self._ingest_runner.setup()
            host, port = self.config.ingest.address
            tls = self._tls["ingest"] = self.config.ingest.ssl_context()
            await GuardedSite(self._ingest_runner, host, port, self.guard, tls).start()
            self.ingest_url = _url(self._ingest_runner, https=tls is not None)
        await self.listeners.start()
        for r in (self._runner, self._ingest_runner):
            for addr in r.addresses if r is not None else ():
                self.notifier.destinations.listener(addr[0], addr[1])  # webhooks never go there
        for host, port in self.listeners.addresses():  # nor to rpc_listen / tsdb_listen
            self.notifier.destinations.listener(host, port)
        self._spawn(self.listeners.run(self.stop_event), "listeners-idle-sweep")
        self._spawn(self.engine.flusher(self.stop_event), "state-flusher")
        self._spawn(self.history.run(self.stop_event), "history-writer")
        if self.warm is not None:
            self._spawn(self.warm.run(self.stop_event), "warm-start")
        self._spawn(self.notifier.run(self.stop_event), "notifier")
        self._spawn(self._probe_store(), "store-probe")
        self._spawn(self._prune_audit_hourly(), "audit-prune")
        interval = self.systemd.watchdog_interval()
        if interval:
            self._spawn(self._watchdog(interval / 2), "watchdog")
        self.systemd.ready(f"serving on {self.url}, {len(self.engine.jobs)} jobs")
        ingest_on = f" (ingest on {self.ingest_url})" if self.ingest_url else ""
        log.info(
            "oceand ready on %s%s with %d jobs",
            self.url,
            ingest_on,
            len(self.engine.jobs),
            extra={"event": "ready"},
        )

    async def _start_clusters(self) -> None:
        """Marathon clusters: a client, an event-stream watcher and an actuator per configured cluster."""
        start_clusters(self.clusters, self.config.marathon_clusters(), self._app_changed)

    def _app_changed(self, job: str, app: AppState | None) -> None:
        """A watched app changed (or is gone): the job's expected instances and its balancers follow."""
        self.engine.set_expected(job, app.running if app is not None else None)
        self.engine.set_tasks(job, task_endpoints(app))  # for selectors with "tasks": true
        self.lb.app_changed(job, app)

    async def _watchdog(self, every: float) -> None:
        while not self.stop_event.is_set():
            self.systemd.watchdog()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), every)

    async def stop(self) -> None:
        """Stop within `stop_timeout` (default 20 s, under systemd's 60 s), whatever is queued or in
        flight: each phase gets a share of the budget and is cut off when it runs out (see
        docs/operations.md "Signals and lifecycle")."""
        loop = asyncio.get_running_loop()
        budget = self.config.stop_timeout
        deadline = loop.time() + budget

        def left(share: float = 1.0) -> float:
            """Seconds for the next phase: `share` of the budget, never past the deadline."""
            return max(0.0, min(deadline - loop.time(), share * budget))

        async def bounded(what: str, aw: Awaitable[Any], seconds: float) -> None:
            try:
                async with asyncio.timeout(max(0.05, seconds)):
                    await aw
            except TimeoutError:
                log.warning("stopping: %s cut off after %.1fs", what, seconds, extra={"event": "stop_cut"})

        self.systemd.stopping("draining")
        log.info("oceand stopping", extra={"event": "stopping"})
        self.stop_event.set()
        for r in (self._runner, self._ingest_runner):
            if r is not None:
                await bounded("the API's shutdown hooks", r.shutdown(), left(0.05))
        await bounded("the Falcon listeners", self.listeners.close(), left(0.05))
        # in-flight applies get up to half the budget; a write cut off is settled at the next start
        await self.engine.stop(timeout=left(0.5))
        for c in list(self.clusters.values()):
            await bounded(f"closing Marathon cluster {c.name}", c.close(), left(0.1))
        await bounded("the LB loops", self.lb.close(timeout=left(0.15)), left(0.2))
        # root tasks end by themselves once stop_event is set (the flusher writes its last batch)
        _, late = await asyncio.wait(self._tasks, timeout=left(0.1)) if self._tasks else (set(), set())
        for t in late:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await bounded("writing the last states", self.engine.flush(), left(0.1))
        for r in (self._runner, self._ingest_runner):
            if r is not None:
                r._shutdown_timeout = left(0.05)  # requests still open are not waited for longer
                await bounded("closing the API", r.cleanup(), left(0.1))
        await bounded("closing the store", self.store.close(), left())
        self.systemd.close()
        log.info("oceand stopped", extra={"event": "stopped"})

    def _reload_tls(self, new: Config) -> None:
        """Renewed certificates: each TLS listener's context loads its (already checked) files again, so
        new connections get them; turning TLS on or off needs a restart."""
        for table, files in (("server", new.server), ("ingest", new.ingest)):
            ctx = self._tls.get(table)
            if ctx is not None and files.tls_cert is not None and files.tls_key is not None:
                try:
                    ctx.load_cert_chain(files.tls_cert, files.tls_key, password=lambda: b"")
                except (ssl.SSLError, OSError) as e:  # changed again since the check: keep serving
                    log.error("%s.tls_cert: not reloaded: %s", table, e, extra={"event": "reload_partial"})
            elif (ctx is None) != (files.tls_cert is None) and (table == "server" or self._ingest_runner):
                log.warning(
                    "%s.tls_cert: TLS is turned on or off only on restart",
                    table,
                    extra={"event": "reload_partial"},
                )

    async def reload(self) -> bool:
        """SIGHUP: validate the config file again and apply what can change without a restart."""
        path = self.config.path
        if path is None:
            return False
        self.systemd.reloading()
        try:
            new = load_config(path)
            if new.jobs_dir is not None:
                load_job_files(Path(new.jobs_dir))
        except ConfigError as e:
            log.error("reload rejected, the running config stays: %s", e, extra={"event": "reload_rejected"})
            self.systemd.ready("reload rejected")
            return False
        if (new.store.url, new.server.listen, new.ingest.listen) != (
            self.config.store.url,
            self.config.server.listen,
            self.config.ingest.listen,
        ):
            log.warning(
                "store.url, server.listen and ingest.listen change only on restart",
                extra={"event": "reload_partial"},
            )
        self._reload_tls(new)
        old = self.config
        self.config = new
        self.engine.default_tz = new.timezone
        self.engine.stale_after = new.decision_stale_after
        self.authority.refresh, self.authority.grace = new.auth.refresh, new.auth.grace
        self.authority.max_tokens = new.auth.max_tokens  # write_rate/burst, audit_retention: read per use
        if new.log != old.log:
            setup_logging(new.log.level, new.log.format)
        changed = changed_keys(old, new)
        if changed:
            log.info("reload changes %s", ", ".join(changed), extra={"event": "reload_changes"})
        if new.marathon != old.marathon:
            for c in list(self.clusters.values()):
                await c.close()
            self.clusters.clear()
            await self._start_clusters()
        async with self._lock:
            await self.apply_job_files()
            for stored in await self.store.list_jobs():
                doc = JobDocument.model_validate(stored.doc)
                rt = self.engine.jobs.get(doc.job)
                if rt is None or rt.version != stored.version:
                    await self.engine.upsert(doc, stored.version)
            await self._jobs_changed()
        self.systemd.ready("reloaded")
        log.info("config reloaded from %s", path, extra={"event": "reloaded"})
        return True

    async def serve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop_event.set)
        loop.add_signal_handler(signal.SIGINT, self.stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_requested.set)
        try:
            while not self.stop_event.is_set():
                waiter = asyncio.ensure_future(self._reload_requested.wait())
                stopper = asyncio.ensure_future(self.stop_event.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                if self._reload_requested.is_set() and not self.stop_event.is_set():
                    self._reload_requested.clear()
                    await self.reload()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)


def _url(runner: web.AppRunner, https: bool = False) -> str | None:
    """The bound address of a runner's site (port 0 in tests becomes a real port)."""
    for addr in runner.addresses:
        host, port = addr[0], addr[1]
        return f"{'https' if https else 'http'}://{host if ':' not in host else f'[{host}]'}:{port}"
    return None


async def run(config: Config) -> int:
    daemon = Daemon(config)
    try:
        await daemon.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await daemon.stop()
        raise
    # What is alive once serving (modules, config, job documents, routes) lives as long as the process:
    # keep it out of the collector's view, so a full collection walks only what came later.
    gc.freeze()
    try:
        await daemon.serve_forever()
    finally:
        await daemon.stop()
    return 0
