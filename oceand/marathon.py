"""Marathon clusters in the daemon: wiring of client, event-stream watcher and actuator (filled in below)."""

from __future__ import annotations

from typing import Any


async def start_clusters(daemon: Any) -> None:
    if daemon.config.marathon:
        raise NotImplementedError("Marathon clusters are not wired yet")
