"""The jobs service: what the API (and the job files, and a reload) may do to the set of jobs.

Handlers reach it through the typed application key `oceand.keys.JOBS`, never through the engine's
runtime objects. Each write stores the document's new version, hands it to the engine and tells the
Marathon clusters (watch the job's app) and the LB manager; writes are serialized. A document identical
to the job's present one changes nothing (same version; the job's buckets, state and any block go on).
Recording who did what (the audit trail) stays with the caller, who knows the principal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actuators.marathon import ClusterRuntime
from oceand.auth import audit
from oceand.engine import Engine, JobRuntime
from oceand.jobfiles import load_job_files
from oceand.lbmanager import LBManager
from oceand.store.base import Store
from policies.document import JobDocument, dump_job
from policies.types import Decision

log = logging.getLogger("oceand")


@dataclass(frozen=True, slots=True)
class Job:
    """A job as the service shows it: its document, version and the mode it runs in (and why)."""

    doc: JobDocument
    version: int
    effective_mode: str  # "active" | "dry-run" | "paused": what the daemon does, whatever `doc.mode` says
    dry_run_reason: str | None  # why it runs dry although its mode is active (None: nothing forces it)

    @property
    def name(self) -> str:
        return self.doc.job


class JobExists(Exception):
    """`create` of a job that exists."""


class JobsService:
    def __init__(
        self,
        store: Store,
        engine: Engine,
        clusters: Mapping[str, ClusterRuntime],
        lb: LBManager,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.engine = engine
        self.clusters = clusters  # the daemon's own mapping: a reload of [marathon.*] replaces its values
        self.lb = lb
        self.clock = clock
        self._lock = asyncio.Lock()
        # more parts of a job's status, by key (the notifier's refusals, the warm start), from the daemon
        self.status_parts: dict[str, Callable[[str], Any]] = {}

    # ---- reading ---------------------------------------------------------------------------------
    def __contains__(self, name: object) -> bool:
        return name in self.engine.jobs

    def __len__(self) -> int:
        return len(self.engine.jobs)

    def get(self, name: str) -> Job | None:
        rt = self.engine.jobs.get(name)
        return None if rt is None else self._job(rt)

    def list(self) -> list[Job]:
        return [self._job(rt) for rt in sorted(self.engine.jobs.values(), key=lambda r: r.name)]

    def status(self, name: str) -> dict[str, Any]:
        status = self.engine.status(name)
        status["lb"] = self.lb.status(name)
        for key, part in self.status_parts.items():
            status[key] = part(name)
        return status

    def _job(self, rt: JobRuntime) -> Job:
        return Job(rt.doc, rt.version, self.engine.mode(rt), self.engine.dry_run_reason(rt.doc))

    # ---- writing ---------------------------------------------------------------------------------
    async def create(self, doc: JobDocument) -> int:
        """Store a new job; JobExists when one of that name exists."""
        async with self._lock:
            if doc.job in self.engine.jobs:
                raise JobExists(doc.job)
            return await self._put(doc)

    async def replace(self, doc: JobDocument) -> int:
        """Store `doc` as the job's next version (or its first); an identical document keeps the version."""
        async with self._lock:
            rt = self.engine.jobs.get(doc.job)
            if rt is not None and rt.doc == doc:
                return rt.version
            return await self._put(doc)

    async def set_mode(self, name: str, mode: str) -> int:
        """The job's document with `mode`: a new version, unless it had that mode. KeyError: no such job."""
        async with self._lock:
            rt = self.engine.jobs[name]
            if rt.doc.mode == mode:
                return rt.version
            return await self._put(rt.doc.model_copy(update={"mode": mode}))

    async def delete(self, name: str) -> None:
        async with self._lock:
            await self.store.delete_job(name)
            await self.engine.remove(name)
            self._changed(name, None)

    async def scale(self, name: str, instances: int, reason: str) -> Decision:
        """A manual scale (PRODUCT §5): decided and applied like any decision. AppUnknown when the app
        cannot be read."""
        return await self.engine.manual(name, instances, reason)

    async def _put(self, doc: JobDocument) -> int:
        version = await self.store.put_job(doc.job, dump_job(doc))
        await self.engine.upsert(doc, version)
        self._changed(doc.job, doc)
        return version

    # ---- the whole set: start, reload ------------------------------------------------------------
    async def apply_files(self, jobs_dir: str | Path | None) -> None:
        """Store the documents of `[jobs] dir` that differ from the stored ones (audited as `local`)."""
        if jobs_dir is None:
            return
        for path, doc in load_job_files(Path(jobs_dir)):
            stored = await self.store.get_job(doc.job)
            if stored is None or stored.doc != dump_job(doc):
                version = await self.store.put_job(doc.job, dump_job(doc))
                log.info("job %s applied from %s (version %d)", doc.job, path, version)
                before = None if stored is None else stored.version
                action = "job.create" if stored is None else "job.replace"
                await audit(
                    self.store, self.clock(), "local", f"file:{path}"[:200], action, doc.job, before, version
                )

    async def reload(self, jobs_dir: str | Path | None) -> None:
        """A reload: the job files again, then every stored job whose version the engine does not run."""
        async with self._lock:
            await self.apply_files(jobs_dir)
            for stored in await self.store.list_jobs():
                doc = JobDocument.model_validate(stored.doc)
                rt = self.engine.jobs.get(doc.job)
                if rt is None or rt.version != stored.version:
                    await self.engine.upsert(doc, stored.version)
            self.sync()

    def sync(self) -> None:
        """Tell the clusters and the LB manager the whole job set (start, reload)."""
        docs = [rt.doc for rt in self.engine.jobs.values()]
        for cluster in self.clusters.values():
            cluster.sync_jobs(docs)
        self.lb.sync_jobs(docs)

    def _changed(self, name: str, doc: JobDocument | None) -> None:
        """One job was created, replaced (doc) or deleted (None)."""
        for cluster in self.clusters.values():
            cluster.sync_job(name, doc)
        self.lb.sync_job(name, doc)
