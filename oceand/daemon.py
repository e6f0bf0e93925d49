"""The daemon: the wiring of one asyncio process — store, engine, Marathon clusters, balancers, listeners,
notifier, history and the HTTP servers — and what a reload changes in it.

It builds the parts and connects them with callbacks; it holds no job CRUD (oceand/jobs.py, behind the
`JOBS` application key), no health or gauges (oceand/health.py, `HEALTH`) and no lifecycle of its own:
`start` starts each part and registers how it stops with the runtime (oceand/runtime.py: AsyncExitStack,
TaskGroup, the bounded stop, signals), so the shutdown order is the reverse of the start order. A reload
validates the new config first; a bad one is rejected and the old keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from actuators.marathon import (
    Actuator,
    AppState,
    ClusterRuntime,
    RecordingActuator,
    start_clusters,
    task_endpoints,
)
from oceand import console
from oceand import ingest as ingest_module
from oceand.api import admin, ingest, internal
from oceand.api import templates as templates_api
from oceand.api.auth import AUTHORITY, LIMITER, auth_middleware
from oceand.api.auth import add_routes as add_auth_routes
from oceand.api.errors import error_middleware
from oceand.api.openapi import openapi
from oceand.api.pushserver import PushListener
from oceand.api.server import ConnectionGuard, GuardedSite, runner_options
from oceand.auth import Authority, WriteLimiter, prune_audit
from oceand.cluster.forward import Forwarder
from oceand.cluster.ids import instance_id
from oceand.cluster.jobsync import RETENTION as JOB_CHANGES_RETENTION
from oceand.cluster.jobsync import JobSync
from oceand.cluster.lease import Coordinator, LeaseManager
from oceand.cluster.ownership import Ownership
from oceand.cluster.routes import ROUTES_SQL, RouteTable
from oceand.config import Config
from oceand.engine import Engine
from oceand.gcpolicy import MAX_AGE, GcPolicy
from oceand.health import Health
from oceand.history import HistoryRecorder
from oceand.jobs import JobsService
from oceand.keys import DAEMON, ENGINE, HEALTH, INGESTOR, JOBS, LEASES, METRICS, STORE
from oceand.lbmanager import LBManager, lb_settings
from oceand.listeners import Listeners
from oceand.metrics import Metrics
from oceand.notify import Notifier
from oceand.reload import reload as reload_config
from oceand.runtime import Runtime
from oceand.store import open_store
from oceand.store.base import MySQLURL, Store, StoreError
from oceand.systemd import Notifier as SystemdNotifier
from oceand.warm import WarmStart
from policies import engine as policy_engine
from policies.document import JobDocument
from policies.types import ActuationOutcome, Decision

if TYPE_CHECKING:
    from oceand.cluster.hotlink import HotLink
    from oceand.cluster.hotstate import HotState

log = logging.getLogger("oceand")
AUDIT_PRUNE_INTERVAL = 3600.0  # seconds between prunings of the audit trail ([auth] audit_retention)
START_STEP = 30.0  # seconds systemd waits for the next sign of progress of a long start (EXTEND_TIMEOUT_USEC)


def hot_state(config: Config, metrics: Metrics) -> HotState | None:
    """The Redis hot state and wake-ups (issue 14, docs/redis.md) when `[redis] url` is set; its keys are
    prefixed with the `[cluster] name`."""
    r = config.redis
    if r.url is None:
        return None
    from oceand.cluster.hotstate import HotState  # here: redis-py is imported only when Redis is used

    return HotState(r.url, config.cluster.name, socket_timeout=r.socket_timeout, metrics=metrics)


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
        self.hotstate = hot_state(config, self.metrics)
        self.leases: LeaseManager | None = None  # [cluster] enabled: shard leases in the MySQL store
        ownership: Ownership | None = None
        if config.cluster.enabled:
            url = config.store.parsed()
            assert isinstance(url, MySQLURL)  # config.cluster_problems refuses anything else
            c = config.cluster
            assert c.advertise is not None
            self.leases = LeaseManager(
                Coordinator(url, c.store_timeout),
                c.lease_settings(),
                instance_id=instance_id(),
                stable_id=c.advertise,
                metrics=self.metrics,
            )
            ownership = Ownership(self.leases, self.store, metrics=self.metrics)
        self.engine = Engine(
            self.store,
            self.actuator_for,
            clock=clock,
            dry_run=lambda: self.config.dry_run,
            dry_reason=self.dry_reason,
            default_tz=config.timezone,
            grace=config.ingest.grace,
            limits=config.ingest_limits(),
            on_series_expired=self.metrics.series_expired.inc,
            on_decision=self._on_decision,
            on_bucket=self.metrics.buckets.inc,
            on_alarm_dropped=lambda reason: self.metrics.alarms_dropped.labels(reason).inc(),
            stale_after=config.decision_stale_after,
            on_actuation=self._on_actuation,
            ownership=ownership,
        )
        self.hotlink: HotLink | None = None  # [cluster] and [redis]: hot-state snapshots and wake-ups
        if self.hotstate is not None and ownership is not None:
            from oceand.cluster.hotlink import HotLink  # here: redis-py is imported only when Redis is used

            self.hotlink = HotLink(self.hotstate, ownership, self.engine.handoff_of)
            self.engine.on_state = self.hotlink.note
            self.engine.load_hot = self.hotlink.load
            self.engine.take_handoff = self.hotlink.handed
        self.forwarder: Forwarder | None = None  # [cluster]: samples for jobs owned elsewhere go there
        if self.leases is not None:
            self.leases.drain = self.engine.drain_shard
            self.forwarder = self._forwarder(self.leases)
        self.listeners = Listeners(
            config.ingest, self.engine.ingestor, self.metrics
        )  # [ingest] rpc_listen, tsdb_listen
        self.authority = Authority(
            self.store, clock, config.auth.refresh, config.auth.grace, config.auth.max_tokens
        )
        if config.ingest.http_listen is not None:  # push over HTTP on a lean listener of its own
            self.listeners.by_name["http"] = PushListener(
                config.ingest.http_listen,
                self.engine.ingestor,
                self.metrics,
                config.ingest,
                self.authority,
                config.server.max_body,
            )
        self.write_limiter = WriteLimiter()  # [auth] write_rate / write_burst, shared by the listeners
        self.guard = ConnectionGuard(config.server, self.metrics)  # every listener: header timeout, cap
        self.engine.on_deferred = self.metrics.timer_deferred.inc
        h = config.history
        self.history = HistoryRecorder(
            self.store,
            retention=h.retention,
            rollup_after=h.per_period_for,
            flush_interval=h.flush_interval,
            max_buffer=h.max_buffer,
            batch=h.batch,
            prune_interval=h.prune_interval,
            clock=clock,
            on_dropped=self.metrics.history_dropped.inc,
            on_written=self.metrics.history_rows.inc,
        )
        self.engine.history = self.history if h.enabled else None
        self.jobs = JobsService(
            self.store, self.engine, self.clusters, self.lb, clock, max_jobs=config.limits.jobs
        )
        self.warm: WarmStart | None = None  # [history] falcon_api: warm starts from Falcon's graph
        if h.falcon_api is not None:
            self.warm = WarmStart(h, self.engine, self.metrics)
            self.engine.on_upsert = self.warm.submit
        self.jobsync: JobSync | None = None  # [cluster]: job changes made through the other daemons
        if self.leases is not None:
            self.jobsync = JobSync(
                self.store,
                self.jobs,
                interval=config.cluster.jobs_poll,
                on_applied=lambda op, n: self.metrics.job_sync.labels(op).inc(n),
            )
            if self.hotlink is not None:  # Redis: a change here wakes the others' polls
                self.jobs.on_local_change.append(self.hotlink.jobs_changed)
                self.hotlink.on_jobs.append(self.jobsync.kick)
        self.jobs.status_parts["notify"] = self.notifier.status
        self.jobs.status_parts["warm_start"] = lambda name: self.warm.status(name) if self.warm else None
        self.health = Health(self.store, self.engine, self.metrics, self.clusters, lambda: self.config_loaded)
        self.health.hotstate = self.hotstate
        self.runtime = Runtime(budget=lambda: self.config.stop_timeout)
        self.stop_event = self.runtime.stopping
        self._runners: list[web.AppRunner] = []
        self._tls: dict[str, ssl.SSLContext | None] = {}  # listener table -> the context its site serves
        self.ingest_url: str | None = None
        self.url: str | None = None
        self.systemd = SystemdNotifier()
        self.jobs.progress = self.engine.progress = self._progress

    def _progress(self, text: str) -> None:
        """A long start (or reload) goes on: systemd gives it START_STEP seconds more from now (a step
        that takes longer is killed at TimeoutStartSec, never earlier)."""
        self.systemd.starting(START_STEP, text)

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

    async def _on_decision(self, doc: JobDocument, d: Decision, outcome: ActuationOutcome) -> None:
        status = outcome.api_status
        for reason in [*d.reasons, *filter(None, [outcome.reason])] or ["None"]:
            self.metrics.decisions.labels(reason, status).inc()
        if status in ("applied", "failed") and outcome.latency_ms is not None:
            self.metrics.actuation.labels(doc.target.cluster).observe(outcome.latency_ms / 1000)
        if status == "failed" or (status == "pending" and outcome.error is not None):
            self.metrics.actuation_errors.labels(doc.target.cluster).inc()
        self.notifier.submit(doc, d, outcome)

    def _on_actuation(self, what: str) -> None:
        if what in ("landed", "not_landed"):
            self.metrics.settles.labels(what).inc()
        elif what.startswith("reconcile_"):
            self.metrics.reconcile.labels(what.removeprefix("reconcile_")).inc()
        elif what == "foreign_write":
            self.metrics.foreign_writes.inc()
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
        templates_api.add_routes(app)
        internal.add_routes(app)  # between the daemons of a cluster: not in the OpenAPI
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
        app[INGESTOR] = self.engine.ingestor
        app[STORE] = self.store
        app[METRICS] = self.metrics
        app[DAEMON] = self
        app[LEASES] = self.leases
        app[JOBS] = self.jobs
        app[HEALTH] = self.health
        app[AUTHORITY] = self.authority
        app[LIMITER] = self.write_limiter
        return app

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

    async def prune_job_changes(self) -> int:
        """Delete job change-log rows older than an hour (oceand/cluster/jobsync.py); never raises."""
        try:
            return await self.store.prune_job_changes(self.clock() - JOB_CHANGES_RETENTION, 100_000)
        except (StoreError, ValueError) as e:
            log.warning("job changes not pruned: %s", e, extra={"event": "job_changes_prune_failed"})
            return 0

    async def _prune_audit_hourly(self) -> None:
        while not self.stop_event.is_set():
            await self.prune_audit()
            await self.prune_job_changes()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), AUDIT_PRUNE_INTERVAL)

    # ---- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every part, registering how it stops as it goes: the runtime unwinds in reverse, so the
        steps below read bottom-up are the shutdown (docs/operations.md "Signals and lifecycle")."""
        rt = self.runtime
        await self.store.open()
        rt.on_stop("closing the store", lambda _: self.store.close())
        if (hot := self.hotstate) is not None:
            await hot.start()  # never fails: a Redis that does not answer starts degraded
            rt.on_stop("closing Redis", lambda _: hot.close(), 0.05)
        self._progress("storing job files")
        await self.jobs.apply_files(self.config.jobs_dir)
        server = self.config.server
        self._runners.append(web.AppRunner(self.build_app(), **runner_options(server)))
        if self.config.ingest.address is not None:
            self._runners.append(web.AppRunner(self.build_ingest_app(), **runner_options(server)))
        for r in self._runners:
            await r.setup()
        rt.on_stop("closing the API", self._close_runners, 0.1)
        rt.on_stop("writing the last states", lambda _: self.engine.flush(), 0.1)
        await rt.start_tasks(share=0.1)  # root tasks end by themselves once stopping (the flusher writes)
        rt.on_stop("the LB loops", lambda s: self.lb.close(timeout=0.75 * s), 0.2)
        await self._start_clusters()
        rt.on_stop("closing the Marathon clusters", self._close_clusters, 0.3)
        if self.leases is not None:  # released after the in-flight applies: successors take over at once
            leases = self.leases
            await leases.coord.open()
            rt.on_stop("closing the cluster store", lambda _: leases.coord.close(), 0.05)
            await leases.start()
            if (link := self.hotlink) is not None:  # Redis: snapshots written behind, wake-ups published
                link.joined()
                rt.spawn(link.run(self.stop_event), "redis-hot-state")
                rt.on_stop("announcing the releases on Redis", lambda _: link.farewell(), 0.05)
            rt.on_stop("releasing the shard leases", lambda _: leases.stop(), 0.1)
            if self.forwarder is not None:
                await self._start_forwarding(self.forwarder)
        if (sync := self.jobsync) is not None:  # changes from here on are read (again, if loaded below)
            await sync.start()
        self._progress("loading jobs")
        await self.engine.load()
        # in-flight applies get up to half the budget; a write cut off is settled at the next start
        rt.on_stop("the in-flight applies", lambda s: self.engine.stop(timeout=s), 0.5, cut=False)
        self.jobs.sync()
        self._tls["server"] = server.ssl_context()
        await self._serve(self._runners[0], server.host, server.port, self._tls["server"])
        self.url = _url(self._runners[0], https=server.tls_cert is not None)
        if len(self._runners) > 1:
            assert self.config.ingest.address is not None
            host, port = self.config.ingest.address
            tls = self._tls["ingest"] = self.config.ingest.ssl_context()
            await self._serve(self._runners[1], host, port, tls)
            self.ingest_url = _url(self._runners[1], https=tls is not None)
        await self.listeners.start()
        for r in self._runners:
            for addr in r.addresses:
                self.notifier.destinations.listener(addr[0], addr[1])  # webhooks never go there
        for host, port in self.listeners.addresses():  # nor to rpc_listen / tsdb_listen
            self.notifier.destinations.listener(host, port)
        rt.on_stop("the Falcon listeners", lambda _: self.listeners.close(), 0.05)
        rt.on_stop("the API's shutdown hooks", self._shutdown_runners, 0.05)
        rt.spawn(self.listeners.run(self.stop_event), "listeners-idle-sweep")
        rt.spawn(self.engine.flusher(self.stop_event), "state-flusher")
        rt.spawn(self.history.run(self.stop_event), "history-writer")
        if self.warm is not None:
            rt.spawn(self.warm.run(self.stop_event), "warm-start")
        rt.spawn(self.notifier.run(self.stop_event), "notifier")
        rt.spawn(self.health.probe(self.stop_event, lambda: self.config.store.probe_interval), "store-probe")
        rt.spawn(self._prune_audit_hourly(), "audit-prune")
        if self.jobsync is not None:
            rt.spawn(self.jobsync.run(self.stop_event), "cluster:job-sync")
        interval = self.systemd.watchdog_interval()
        if interval:
            rt.spawn(self._watchdog(interval / 2), "watchdog")
        self.systemd.ready(f"serving on {self.url}, {len(self.jobs)} jobs")
        ingest_on = f" (ingest on {self.ingest_url})" if self.ingest_url else ""
        log.info(
            "oceand ready on %s%s with %d jobs",
            self.url,
            ingest_on,
            len(self.jobs),
            extra={"event": "ready"},
        )
        if not ingest_module.NATIVE:
            log.warning(
                "ingest routes in Python: oceand._fastroute is not built (no C compiler when oceand was "
                "installed) or OCEAND_NATIVE=0; the same results at about twice the CPU per sample",
                extra={"event": "ingest_python"},
            )
        if not policy_engine.NATIVE:
            log.warning(
                "buckets are stepped in Python: policies._faststep is not built (no C compiler when oceand "
                "was installed) or OCEAND_NATIVE=0; the same decisions at about three times the CPU per bucket",
                extra={"event": "eval_python"},
            )

    def _forwarder(self, leases: LeaseManager) -> Forwarder:
        """The route table and the forwarder (oceand/cluster/forward.py), wired to the engine: a shard
        acquired or lost here re-routes its jobs' samples (once per turn of the loop)."""
        c = self.config.cluster
        assert c.token is not None  # config.cluster_problems
        coord = leases.coord
        routes = RouteTable(lambda n: coord.fetch(ROUTES_SQL, (n,)), c.shards, interval=c.acquire_poll)
        fwd = Forwarder(
            routes,
            me=leases.me,
            token=c.token,
            shard_of=leases.shard_of,
            held=leases.held.__contains__,
            local=self.engine.feed_forwarded,
            metrics=self.metrics,
            flush=c.forward_flush,
            batch=c.forward_batch,
            hold=c.forward_hold,
            buffer=c.forward_buffer,
        )
        self.engine.router = fwd
        moved: set[int] = set()

        def reroute() -> None:
            shards = set(moved)
            moved.clear()
            self.engine.reroute(fwd.jobs_in(shards))

        def shard_moved(shard: int, *_: Any) -> None:
            if not moved:
                asyncio.get_running_loop().call_soon(reroute)
            moved.add(shard)

        leases.on_acquired.append(shard_moved)
        leases.on_lost.append(shard_moved)
        if self.hotstate is not None:  # a Redis wake-up (a shard released or acquired): read the routes now
            self.hotstate.on_event.append(
                lambda event: None if event and event.kind == "jobs" else routes.kick()
            )
        return fwd

    async def _start_forwarding(self, fwd: Forwarder) -> None:
        await fwd.routes.refresh()
        task = asyncio.get_running_loop().create_task(fwd.routes.run(), name="cluster:routes")

        async def stop(_: float) -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await fwd.close()

        self.runtime.on_stop("forwarding to the owners", stop, 0.05)

    async def _serve(self, runner: web.AppRunner, host: str, port: int, tls: Any) -> None:
        await GuardedSite(runner, host, port, self.guard, tls).start()

    async def _shutdown_runners(self, seconds: float) -> None:
        for r in self._runners:
            await r.shutdown()

    async def _close_runners(self, seconds: float) -> None:
        for r in self._runners:
            r._shutdown_timeout = self.runtime.left(0.05)  # requests still open are not waited for longer
            await r.cleanup()

    async def _close_clusters(self, seconds: float) -> None:
        for c in list(self.clusters.values()):
            each = self.runtime.left(0.1)
            try:
                async with asyncio.timeout(max(0.05, each)):
                    await c.close()
            except TimeoutError:
                log.warning(
                    "stopping: closing Marathon cluster %s cut off after %.1fs",
                    c.name,
                    each,
                    extra={"event": "stop_cut"},
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
        flight: the runtime unwinds what `start` registered, each step within its share of the budget
        (see docs/operations.md "Signals and lifecycle"). Once: a second call returns at once."""
        if self.runtime.stopped:
            return
        self.systemd.stopping("draining")
        log.info("oceand stopping", extra={"event": "stopping"})
        await self.runtime.stop()
        self.systemd.close()
        log.info("oceand stopped", extra={"event": "stopped"})

    def reload_tls(self, new: Config) -> None:
        """Renewed certificates: each TLS listener's context loads its (already checked) files again, so
        new connections get them; turning TLS on or off needs a restart."""
        for table, files in (("server", new.server), ("ingest", new.ingest)):
            ctx = self._tls.get(table)
            if ctx is not None and files.tls_cert is not None and files.tls_key is not None:
                try:
                    ctx.load_cert_chain(files.tls_cert, files.tls_key, password=lambda: b"")
                except (ssl.SSLError, OSError) as e:  # changed again since the check: keep serving
                    log.error("%s.tls_cert: not reloaded: %s", table, e, extra={"event": "reload_partial"})
            elif (ctx is None) != (files.tls_cert is None) and (table == "server" or len(self._runners) > 1):
                log.warning(
                    "%s.tls_cert: TLS is turned on or off only on restart",
                    table,
                    extra={"event": "reload_partial"},
                )

    async def reload(self) -> bool:
        """SIGHUP (oceand/reload.py): the config file again; what can change without a restart."""
        return await reload_config(self)

    async def restart_clusters(self) -> None:
        for c in list(self.clusters.values()):
            await c.close()
        self.clusters.clear()
        await self._start_clusters()

    async def serve_forever(self) -> None:
        """Until SIGTERM or SIGINT; SIGHUP reloads."""
        await self.runtime.serve(self.reload)


def _url(runner: web.AppRunner, https: bool = False) -> str | None:
    """The bound address of a runner's site (port 0 in tests becomes a real port)."""
    for addr in runner.addresses:
        host, port = addr[0], addr[1]
        return f"{'https' if https else 'http'}://{host if ':' not in host else f'[{host}]'}:{port}"
    return None


def configure_gc(rebase: float = MAX_AGE) -> GcPolicy:
    """The garbage collector's policy for a serving daemon, started once it has started (`run`), and by
    bench/evaluate.py and bench/evaluate_ab.py so that the evaluation benchmark measures what the daemon
    runs: the start's garbage collected, what is alive frozen, and what survives each full collection
    frozen too, with rebases (oceand/gcpolicy.py; docs/operations.md §12, *The garbage collector*). The
    thresholds stay CPython's (700, 10, 10): a youngest-generation threshold of 50,000 took a fifth off a
    10,000-job evaluation round with history recorded, but tripled the median reaction time in
    bench/reaction.py (BENCHMARKS.md, *Issue 16: the evaluation with history recorded*)."""
    policy = GcPolicy(max_age=rebase)
    policy.start()
    return policy


SWITCH_INTERVAL = 0.001  # seconds: how long a thread that wants the GIL waits before asking for it (5 ms)


def configure_switch() -> None:
    """The GIL's switch interval for a serving daemon: 1 ms instead of CPython's 5. The store's thread
    (aiosqlite) and the event loop hand work to each other twice per transaction; on a busy loop the thread
    waited for the GIL up to the whole interval each time (a pending decision's commit reached its thread
    after 8 ms at p90 in bench/reaction.py; 2.6 ms at 1 ms). Only threads that want the GIL are affected: the
    loop alone runs as before (docs/operations.md §12, *The GIL's switch interval*)."""
    sys.setswitchinterval(SWITCH_INTERVAL)


async def run(config: Config) -> int:
    configure_switch()
    daemon = Daemon(config)
    try:
        await daemon.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await daemon.stop()
        raise
    policy = configure_gc(config.server.gc_rebase)
    daemon.metrics.watch_gc(policy)
    daemon.runtime.spawn(policy.run(daemon.stop_event), "gc-rebase")
    daemon.runtime.spawn(policy.young(daemon.stop_event), "gc-young")
    try:
        await daemon.serve_forever()
    finally:
        await daemon.stop()
        policy.stop(unfreeze=False)
    return 0
