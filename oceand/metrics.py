"""Prometheus metrics (PRODUCT §4.3), on a registry of the daemon's own (tests build several daemons)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


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
        self.notify_errors = Counter(
            "oceand_notify_errors_total", "Failed notifications", ["kind"], registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
