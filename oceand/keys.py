"""Typed aiohttp application keys: how handlers reach the daemon's parts (no module globals)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from oceand.engine import Engine
    from oceand.metrics import Metrics
    from oceand.store.base import Store

ENGINE: web.AppKey[Engine] = web.AppKey("engine")
STORE: web.AppKey[Store] = web.AppKey("store")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
DAEMON: web.AppKey[Any] = web.AppKey("daemon")
