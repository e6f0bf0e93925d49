"""Prometheus metrics (PRODUCT §4.3), on a registry of the daemon's own (tests build several daemons)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class GcCounts(Protocol):
    """What oceand/gcpolicy.py's GcPolicy counts (per generation 0, 1, 2)."""

    collections: list[int]
    pause_seconds: list[float]
    pause_max: list[float]
    rebases: int
    frozen: int


class _GcCollector(Collector):
    def __init__(self, counts: GcCounts) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        gc = self.counts
        c = CounterMetricFamily(
            "oceand_gc_collections", "Garbage collections, by generation", labels=["generation"]
        )
        s = CounterMetricFamily(
            "oceand_gc_pause_seconds",
            "Time the process stood in garbage collections, by generation",
            labels=["generation"],
        )
        m = GaugeMetricFamily(
            "oceand_gc_pause_max_seconds",
            "The longest garbage collection, by generation",
            labels=["generation"],
        )
        for g in range(3):
            c.add_metric([str(g)], gc.collections[g])
            s.add_metric([str(g)], gc.pause_seconds[g])
            m.add_metric([str(g)], gc.pause_max[g])
        yield from (c, s, m)
        yield GaugeMetricFamily(
            "oceand_gc_frozen_objects",
            "Objects out of the collector's view after the last rebase (counting them is a walk of them all)",
            value=gc.frozen,
        )
        yield CounterMetricFamily(
            "oceand_gc_rebases",
            "Unfreeze + full collections of everything ([server] gc_rebase; the start's included)",
            value=gc.rebases,
        )


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.samples = Counter(
            "oceand_samples_total", "Falcon samples received, by result", ["result"], registry=r
        )
        self.pushes = Counter(
            "oceand_push_requests_total", "Push requests, by HTTP status", ["status"], registry=r
        )
        self.alarms = Counter(
            "oceand_alarm_callbacks_total", "Falcon alarm callbacks, by result", ["result"], registry=r
        )
        self.alarms_dropped = Counter(
            "oceand_alarm_events_dropped_total",
            "Queued alarms not evaluated: replaced by a newer alarm for the same job and rule (coalesced), "
            "or the job's app could not be read (app_unknown)",
            ["reason"],
            registry=r,
        )
        self.auth_tokens_refused = Counter(
            "oceand_auth_tokens_refused_total",
            "Token creations refused because [auth] max_tokens tokens exist",
            registry=r,
        )
        self.audit_pruned = Counter(
            "oceand_audit_pruned_total",
            "Audit entries deleted for being older than [auth] audit_retention",
            registry=r,
        )
        self.auth_rate_limited = Counter(
            "oceand_auth_rate_limited_total",
            "Admin writes answered 429 by [auth] write_rate / write_burst (per token, or source address)",
            registry=r,
        )
        self.auth_denied = Counter(
            "oceand_auth_denied_total",
            "Requests refused by access control (401/403), by reason",
            ["reason"],
            registry=r,
        )
        self.buckets = Counter("oceand_buckets_evaluated_total", "Closed buckets evaluated", registry=r)
        self.timer_deferred = Counter(
            "oceand_timer_deferred_total",
            "Times the engine's timer left due jobs for the next event-loop iteration (too many due at once)",
            registry=r,
        )
        self.decisions = Counter(
            "oceand_decisions_total",
            "Stored decisions, by reason code and status",
            ["reason", "status"],
            registry=r,
        )
        self.actuation = Histogram(
            "oceand_actuation_seconds",
            "Time to apply a decision, by target cluster",
            ["cluster"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.actuation_errors = Counter(
            "oceand_actuation_errors_total", "Failed applies, by target cluster", ["cluster"], registry=r
        )
        self.settles = Counter(
            "oceand_actuation_settles_total",
            "Marathon writes of unknown outcome settled before anything is sent again, by outcome"
            " (landed: not resent; not_landed: the landing window passed without a sign of it)",
            ["outcome"],
            registry=r,
        )
        self.stale = Counter(
            "oceand_stale_decisions_total",
            "Decisions older than decision_stale_after when applied, re-read first, by result"
            " (reread: the app was read again; dropped: its count had moved, not sent)",
            ["result"],
            registry=r,
        )
        self.event_stream = Gauge(
            "oceand_event_stream_connected",
            "Marathon event stream connected (1) or not (0)",
            ["cluster"],
            registry=r,
        )
        self.lb_applies = Counter(
            "oceand_lb_applies_total",
            "Load-balancer reconciles, by type and result",
            ["type", "result"],
            registry=r,
        )
        self.jobs = Gauge("oceand_jobs", "Jobs, by effective mode", ["mode"], registry=r)
        self.series = Gauge("oceand_series", "Routed series with a window", registry=r)
        self.push_large = Counter(
            "oceand_push_large_bodies_total",
            "Push bodies over 256 KiB handled in slices, by path (fast, tolerant; whole: decoded in one go)",
            ["path"],
            registry=r,
        )
        self.bucket_overflow = Gauge(
            "oceand_bucket_overflow_samples",
            "Samples dropped because their job already had 256 open buckets (sum over jobs since start)",
            registry=r,
        )
        self.history_rows = Counter(
            "oceand_history_rows_written_total", "History rows written to the store (issue 16)", registry=r
        )
        self.history_dropped = Counter(
            "oceand_history_rows_dropped_total",
            "History rows dropped because [history] max_buffer rows were waiting for the store",
            registry=r,
        )
        self.previews_refused = Counter(
            "oceand_previews_refused_total",
            "History previews refused at a bound (range_too_long, range_too_large)",
            ["reason"],
            registry=r,
        )
        self.series_expired = Counter(
            "oceand_series_expired_total",
            "Routed series dropped after not being seen for a while",
            registry=r,
        )
        self.route_cache_purges = Counter(
            "oceand_route_cache_purges_total",
            "Times the cache of series that route nowhere reached [ingest] max_unrouted and was emptied",
            registry=r,
        )
        self.ingest_rejected = Counter(
            "oceand_ingest_rejected_total",
            "Push items rejected by an ingest bound (timestamp window, series caps), by bound",
            ["bound"],
            registry=r,
        )
        self.notify_errors = Counter(
            "oceand_notify_errors_total", "Failed notifications", ["kind"], registry=r
        )
        # notify.group through Falcon (docs/falcon.md "Notifications"); kind: webhook, group, falcon_api,
        # sms, mail, im
        self.notify_sent = Counter(
            "oceand_notify_sent_total", "Notifications taken by their endpoint, by kind", ["kind"], registry=r
        )
        self.notify_retries = Counter(
            "oceand_notify_retries_total",
            "Notification requests tried again (up to notify.attempts), by kind",
            ["kind"],
            registry=r,
        )
        self.notify_refused = Counter(
            "oceand_notify_refused_total",
            "Webhooks refused by [notify] allow (loopback, link-local, own listener, or not listed), by kind",
            ["kind"],
            registry=r,
        )
        self.notify_dropped = Counter(
            "oceand_notify_dropped_total",
            "Notifications dropped from a full queue (notify.queue; the oldest goes), by kind",
            ["kind"],
            registry=r,
        )
        self.warm_starts = Counter(
            "oceand_warm_starts_total",
            "Warm starts of jobs from Falcon's graph history ([history] falcon_api), by result: warmed, "
            "no_history (nothing matched), failed (API error or time-out: the job starts cold), late "
            "(the rule had live data first)",
            ["result"],
            registry=r,
        )
        self.warm_points = Counter(
            "oceand_warm_points_total",
            "Graph history points taken by warm starts, and points left out past [history] warm_max_points",
            ["result"],
            registry=r,
        )
        self.notify_team_lookups = Counter(
            "oceand_notify_team_lookups_total",
            "falcon-plus team lookups for notify.group: cached, fetched, stale (lookup failed, last "
            "answer used), failed",
            ["result"],
            registry=r,
        )
        self.documents_rejected = Counter(
            "oceand_job_documents_rejected_total",
            "Job documents refused at a document bound (job_name, schedule_every, string_length, tag_count)",
            ["bound"],
            registry=r,
        )
        self.http_connections = Gauge("oceand_http_connections", "Open HTTP connections", registry=r)
        self.http_refused = Counter(
            "oceand_http_connections_refused_total",
            "HTTP connections refused (503) at server.max_connections",
            registry=r,
        )
        self.http_cross_site_refused = Counter(
            "oceand_http_cross_site_refused_total",
            "Writes refused (403 cross_origin) because a browser sent them from a page of another site",
            registry=r,
        )
        self.http_header_timeouts = Counter(
            "oceand_http_header_timeouts_total",
            "HTTP connections closed for no complete request head within server.header_timeout",
            registry=r,
        )
        self.store_writable = Gauge(
            "oceand_store_writable", "1 while store writes succeed, 0 since one failed", registry=r
        )
        self.store_writable.set(1)
        self.store_write_failures = Counter(
            "oceand_store_write_failures_total",
            "Store write transactions that failed (probes included)",
            registry=r,
        )
        # the Falcon transfer listeners ([ingest] rpc_listen / tsdb_listen; docs/falcon.md)
        self.listener_connections = Gauge(
            "oceand_listener_connections",
            "Open connections, by listener (rpc, tsdb)",
            ["listener"],
            registry=r,
        )
        self.listener_events = Counter(
            "oceand_listener_events_total",
            "Listener connections and requests (RPC calls, put lines), by listener and what became of them",
            ["listener", "event"],
            registry=r,
        )
        self.listener_samples = Counter(
            "oceand_listener_samples_total",
            "Samples received on a listener, by listener and result (also in oceand_samples_total)",
            ["listener", "result"],
            registry=r,
        )

        # Redis hot state and wake-ups (issue 14, HA.md §6.4/§6.9/§6.11; oceand/cluster/hotstate.py)
        self.hotstate_writes = Counter(
            "oceand_hotstate_write_total",
            "Fenced hot-state snapshot writes to Redis, by result (ok; fenced: a newer lease epoch is "
            "stored; unchanged: the same state as the last accepted write, not sent; skipped: Redis is "
            "degraded, not sent; error: the call failed or timed out)",
            ["result"],
            registry=r,
        )
        self.hotstate_reads = Counter(
            "oceand_hotstate_read_total",
            "Hot-state snapshot reads from Redis, by result (hit, miss, skipped: Redis degraded, error)",
            ["result"],
            registry=r,
        )
        self.hotstate_source = Counter(
            "oceand_hotstate_source_total",
            "States loaded at a takeover, by the source that was newer (redis, store; ties go to the store)",
            ["source"],
            registry=r,
        )
        self.handoffs = Counter(
            "oceand_hotstate_handoff_total",
            "Open-bucket handoffs of released shards, by operation (write, take) and result "
            "(ok, empty, stale, skipped, error)",
            ["op", "result"],
            registry=r,
        )
        self.redis_up = Gauge(
            "oceand_redis_up", "1 while Redis answers (the last call or probe succeeded), else 0", registry=r
        )
        self.redis_events = Counter(
            "oceand_redis_events_total",
            "Wake-ups received on the cluster's Redis channel, by kind (joined, leaving, released, acquired, "
            "invalid: not understood, ignored)",
            ["kind"],
            registry=r,
        )
        self.redis_resubscribes = Counter(
            "oceand_redis_resubscribes_total",
            "Times the wake-up subscriber (re)subscribed after its connection to Redis was lost",
            registry=r,
        )
        # several daemons (issue 14, HA.md §6.11; docs/cluster.md)
        self.shards_held = Gauge("oceand_shards_held", "Shards whose lease this daemon holds", registry=r)
        self.lease_renew = Histogram(
            "oceand_lease_renew_seconds",
            "Time of one renewal statement of all held shard leases",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
            registry=r,
        )
        self.lease_lost = Counter(
            "oceand_lease_lost_total",
            "Shards this daemon stopped holding other than by releasing them, by reason (taken: not "
            "renewed by the database; not_renewed: no successful renewal within stop_acting_after; "
            "fenced: an intent insert found the lease gone; hotstate_fenced: a newer epoch wrote a job's hot "
            "state in Redis)",
            ["reason"],
            registry=r,
        )
        self.job_sync = Counter(
            "oceand_job_sync_total",
            "Jobs created, replaced or deleted here because another daemon changed them (issue 14), full"
            " comparisons (resync) and failed reads of the job change log (read_failed)",
            ["op"],
            registry=r,
        )
        self.handoff_shards = Counter(
            "oceand_handoff_shards_total",
            "Shard leases acquired and released by this daemon, by direction",
            ["direction"],
            registry=r,
        )
        self.takeover = Histogram(
            "oceand_takeover_seconds",
            "Per shard taken from another daemon: from the end of its former lease (expiry, or release) to "
            "this daemon's acquisition, on the database clock",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60),
            registry=r,
        )
        self.intents = Counter(
            "oceand_intents_total",
            "Intents (fenced attempt rows) this daemon wrote, by status: pending (inserted before the "
            "write), applied, failed, abandoned (resolved, its own or a former owner's)",
            ["status"],
            registry=r,
        )
        self.outcomes_fenced = Counter(
            "oceand_outcome_writes_fenced_total",
            "Decision outcomes (with the job's state) this daemon did not record because the job's shard "
            "is no longer held here at its epoch (FencedWrite): the new owner's record stands",
            registry=r,
        )
        self.reconcile = Counter(
            "oceand_reconcile_total",
            "Writes of unknown outcome left under another lease epoch (a former owner's, or this daemon's "
            "before a restart) settled by this daemon, by result (adopted: Marathon shows it landed; "
            "abandoned: nothing shows it after its deadline and the grace)",
            ["result"],
            registry=r,
        )
        self.foreign_writes = Counter(
            "oceand_foreign_writes_total",
            "Times a settle or re-read found a job's app at a count neither its decisions nor their "
            "writes set: someone else scaled it",
            registry=r,
        )
        self.intent_fenced = Counter(
            "oceand_intent_fenced_total",
            "Intent inserts refused by the database: the lease was lost or within intent_margin of its end",
            registry=r,
        )
        self.intent_abandoned = Counter(
            "oceand_intent_abandoned_total",
            "Intents not sent after their insert, by reason (budget: the local clock passed "
            "actuation_budget before the write)",
            ["reason"],
            registry=r,
        )

        self.forward_samples = Counter(
            "oceand_forward_samples_total",
            "Samples for jobs owned by another daemon, by result (sent: accepted by the owner; rerouted: "
            "resent after a not_owner reply; held: kept while the owner is unreachable; dropped_not_owner, "
            "dropped_expired (held past forward_hold), dropped_overflow (forward_buffer full), dropped_no_route; "
            "received: accepted from another daemon; refused: sent here for a shard not held)",
            ["result"],
            registry=r,
        )
        self.forward_batch = Histogram(
            "oceand_forward_batch_size",
            "Samples in one POST /internal/v1/samples this daemon sent",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 5000),
            registry=r,
        )
        self.forward_calls = Counter(
            "oceand_forward_calls_total",
            "Alarm callbacks and admin calls for jobs owned by another daemon, by kind and result",
            ["kind", "result"],
            registry=r,
        )
        self.internal_rejected = Counter(
            "oceand_internal_rejected_total",
            "Requests to /internal/ refused, by reason (no_token, bad_token, malformed, not_clustered)",
            ["reason"],
            registry=r,
        )

    def watch_gc(self, counts: GcCounts) -> None:
        """The collector policy's counts as oceand_gc_* (`oceand run` only: the collector is the process's)."""
        self.registry.register(_GcCollector(counts))

    def render(self) -> bytes:
        return generate_latest(self.registry)
