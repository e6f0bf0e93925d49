"""SIGHUP: the config file read and validated again, and what can change without a restart applied.

A bad config (or a bad job file) is rejected and logged (`reload_rejected`); the running config stays.
A good one replaces the daemon's config: the engine's timezone and staleness bound, the token cache's
refresh, grace and cap, logging, the Marathon clusters (every cluster reconnected when any `[marathon.*]`
table changed), the jobs (job files applied, stored versions loaded) and the listeners' TLS certificates
(their files loaded again into the contexts the listeners serve: a renewed certificate needs no restart).
`store.url`, `server.listen` and `ingest.listen` change only on restart (`reload_partial`), and so does
`[redis]`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from oceand.auth import Authority
from oceand.config import Config, ConfigError, changed_keys, load_config
from oceand.engine import Engine
from oceand.jobfiles import load_job_files
from oceand.jobs import JobsService
from oceand.logs import setup_logging
from oceand.systemd import Notifier as SystemdNotifier

log = logging.getLogger("oceand")


class Reloadable(Protocol):
    """What a reload changes in the running daemon."""

    config: Config
    engine: Engine
    authority: Authority
    systemd: SystemdNotifier
    jobs: JobsService

    async def restart_clusters(self) -> None:
        """Close every Marathon cluster and start those of `config` (the job set is synced after)."""
        ...

    def reload_tls(self, new: Config) -> None:
        """Load the listeners' certificate files of `new` into the contexts they serve."""
        ...


async def reload(d: Reloadable) -> bool:
    """Whether the config file was read again and applied (False: no file, or rejected)."""
    path = d.config.path
    if path is None:
        return False
    d.systemd.reloading()
    try:
        new = load_config(path)
        if new.jobs_dir is not None:
            load_job_files(Path(new.jobs_dir))
    except ConfigError as e:
        log.error("reload rejected, the running config stays: %s", e, extra={"event": "reload_rejected"})
        d.systemd.ready("reload rejected")
        return False
    old = d.config
    if (new.store.url, new.server.listen, new.ingest.listen) != (
        old.store.url,
        old.server.listen,
        old.ingest.listen,
    ):
        log.warning(
            "store.url, server.listen and ingest.listen change only on restart",
            extra={"event": "reload_partial"},
        )
    if new.redis != old.redis:
        log.warning("[redis] changes only on restart", extra={"event": "reload_partial"})
    d.reload_tls(new)
    d.config = new
    d.engine.default_tz = new.timezone
    d.engine.stale_after = new.decision_stale_after
    d.authority.refresh, d.authority.grace = new.auth.refresh, new.auth.grace
    d.authority.max_tokens = new.auth.max_tokens  # write_rate/burst, audit_retention: read per use
    if new.log != old.log:
        setup_logging(new.log.level, new.log.format)
    changed = changed_keys(old, new)
    if changed:
        log.info("reload changes %s", ", ".join(changed), extra={"event": "reload_changes"})
    if new.marathon != old.marathon:
        await d.restart_clusters()
    await d.jobs.reload(new.jobs_dir)
    d.systemd.ready("reloaded")
    log.info("config reloaded from %s", path, extra={"event": "reloaded"})
    return True
