"""Typed aiohttp application keys: how handlers reach the daemon's parts (no module globals)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from oceand.cluster.lease import LeaseManager
    from oceand.engine import Engine
    from oceand.health import Health
    from oceand.ingest import Ingestor
    from oceand.jobs import JobsService
    from oceand.metrics import Metrics
    from oceand.store.base import Store

ENGINE: web.AppKey[Engine] = web.AppKey("engine")
INGESTOR: web.AppKey[Ingestor] = web.AppKey("ingestor")  # pushes: routing into buckets, worker wakes
STORE: web.AppKey[Store] = web.AppKey("store")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
JOBS: web.AppKey[JobsService] = web.AppKey("jobs")
HEALTH: web.AppKey[Health] = web.AppKey("health")
LEASES: web.AppKey[LeaseManager | None] = web.AppKey("leases")  # None: a daemon alone (no [cluster])
DAEMON: web.AppKey[Any] = web.AppKey("daemon")  # the config and the clock (oceand/api/auth.py)
