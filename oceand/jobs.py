"""The jobs service: what the API (and the job files, and a reload) may do to the set of jobs.

Handlers reach it through the typed application key `oceand.keys.JOBS`, never through the engine's
runtime objects. Each write stores the document's new version, hands it to the engine and tells the
Marathon clusters (watch the job's app) and the LB manager; writes are serialized. A document identical
to the job's present one changes nothing (same version; the job's buckets, state and any block go on).
Recording who did what (the audit trail) stays with the caller, who knows the principal.

Templates (PRODUCT §13, oceand/templates.py) share the service's lock: a job written with a template
keeps its link (`Composed`), one written without loses it, a mode change goes into a templated job's
own fields, and a template change writes every job naming it in one transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actuators.marathon import ClusterRuntime
from oceand.auth import AuditEntry, audit, audit_many
from oceand.config import ConfigError, ConfigProblem
from oceand.engine import Decided, Engine, JobRuntime
from oceand.jobfiles import JobFile, load_job_tree
from oceand.lbmanager import LBManager
from oceand.store.base import JobChange, Store, StoredJob, TemplateConflict
from oceand.templates import Composed, Refused, Templates
from policies.document import JobDocument, dump_job
from policies.warnings import document_warnings

log = logging.getLogger("oceand")
Changes = list[JobChange]  # (the class's `list` method hides the builtin in its annotations)
FileChanges = list[tuple[JobFile, StoredJob | None]]  # changed job files, each with what was stored
FILE_BATCH = 500  # changed job files stored per transaction at start and reload (`apply_files`)


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


class JobLimit(Exception):
    """A new job beyond `[limits] jobs`."""


class JobsService:
    def __init__(
        self,
        store: Store,
        engine: Engine,
        clusters: Mapping[str, ClusterRuntime],
        lb: LBManager,
        clock: Callable[[], float],
        *,
        max_jobs: int = 100_000,
    ) -> None:
        self.store = store
        self.max_jobs = max_jobs  # [limits] jobs: a new job beyond it is refused (JobLimit)
        self.engine = engine
        self.clusters = clusters  # the daemon's own mapping: a reload of [marathon.*] replaces its values
        self.lb = lb
        self.clock = clock
        self._lock = asyncio.Lock()
        # more parts of a job's status, by key (the notifier's refusals, the warm start), from the daemon
        self.status_parts: dict[str, Callable[[str], Any]] = {}
        self.templates = Templates(store, self._lock, self._written)
        # called after each change made here (a job written or deleted): the cluster's Redis wake-up
        self.on_local_change: list[Callable[[], None]] = []
        # told how a long apply of the job files goes (the daemon's start: systemd's EXTEND_TIMEOUT_USEC)
        self.progress: Callable[[str], object] = lambda _: None

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
    async def create(self, doc: JobDocument, composed: Composed | None = None) -> int:
        """Store a new job (naming a template when `composed` says so); JobExists when one of that name
        exists."""
        async with self._lock:
            if doc.job in self.engine.jobs:
                raise JobExists(doc.job)
            self._room_for(doc.job)
            return await self._put(doc, composed)

    async def replace(self, doc: JobDocument, composed: Composed | None = None) -> int:
        """Store `doc` as the job's next version (or its first); an identical document naming the same
        template with the same own fields (or none) keeps the version."""
        async with self._lock:
            rt = self.engine.jobs.get(doc.job)
            self._room_for(doc.job)
            if rt is not None and rt.doc == doc:
                link = await self.templates.link(doc.job)
                c = composed if composed is not None else Composed(None)
                if (link is None and c.template is None) or (
                    link is not None and (link.template, link.own) == (c.template, c.own)
                ):
                    return rt.version
            return await self._put(doc, composed)

    async def set_mode(self, name: str, mode: str) -> int:
        """The job's document with `mode` (a job naming a template: in its own fields): a new version,
        unless it had that mode. KeyError: no such job."""

        def pick(names: list[str]) -> list[str]:
            if name not in names:
                raise KeyError(name)
            return [name]

        return (await self.templates.set_modes(self.view, pick, mode))[name][1]

    def _room_for(self, name: str) -> None:
        """JobLimit when `name` would be a new job beyond `[limits] jobs`."""
        if name not in self.engine.jobs and len(self.engine.jobs) >= self.max_jobs:
            raise JobLimit(f"the daemon holds {len(self.engine.jobs)} jobs, its limit ([limits] jobs)")

    def view(self) -> dict[str, tuple[JobDocument, int]]:
        """{job: (document, version)} as the engine runs them (read it under the lock to write from it)."""
        return {name: (rt.doc, rt.version) for name, rt in self.engine.jobs.items()}

    async def delete(self, name: str) -> None:
        async with self._lock:
            await self.store.delete_job(name)
            await self.engine.remove(name)
            self._changed(name, None)
            self._local_change()

    async def scale(self, name: str, instances: int, reason: str, op: str | None = None) -> Decided:
        """A manual scale (PRODUCT §5): decided and applied like any decision. AppUnknown when the app
        cannot be read. `op`: the call's Idempotency-Key (several daemons: a retry is refused, not
        applied twice)."""
        return await self.engine.manual(name, instances, reason, op)

    async def _put(self, doc: JobDocument, composed: Composed | None = None) -> int:
        version = await self.templates.put_job_locked(doc, composed)
        await self._written(doc, version)
        return version

    async def _written(self, doc: JobDocument, version: int) -> None:
        """A job's new version is stored (under the lock): the engine and the actuators take it."""
        await self.engine.upsert(doc, version)
        self._changed(doc.job, doc)
        self._local_change()

    def _local_change(self) -> None:
        for cb in self.on_local_change:
            cb()

    # ---- changes made through another daemon (oceand/cluster/jobsync.py) -------------------------
    async def follow(self, read: Callable[[], Awaitable[Changes]], counts: dict[str, int]) -> Changes:
        """Read change-log rows (`read`, under the lock: no local write interleaves) and apply each job
        as stored now; `counts` gets the jobs created, replaced and deleted here. Returns the rows."""
        async with self._lock:
            rows = await read()
            latest = {r.job: r for r in rows}  # every row of a job carries the same (present) document
            for r in latest.values():
                await self._follow_one(r.job, r.doc, r.version, counts)
        return rows

    async def resync(self, counts: dict[str, int]) -> None:
        """Compare every stored job with the engine's (changes were missed): apply the differences."""
        async with self._lock:
            stored = {j.name: j for j in await self.store.list_jobs()}
            for name in [n for n in self.engine.jobs if n not in stored]:
                await self._follow_one(name, None, None, counts)
            for j in stored.values():
                await self._follow_one(j.name, j.doc, j.version, counts)

    async def _follow_one(
        self, name: str, stored: dict[str, Any] | None, version: int | None, counts: dict[str, int]
    ) -> None:
        rt = self.engine.jobs.get(name)
        if stored is None or version is None:
            if rt is None:
                return
            await self.engine.remove(name)
            self._changed(name, None)
            op = "deleted"
        else:
            if rt is not None and rt.version == version and dump_job(rt.doc) == stored:
                return
            try:
                doc = JobDocument.model_validate(stored)
            except ValueError as e:  # written by a newer oceand? keep the job as it runs
                log.error("job %s: stored version %d not applied: %s", name, version, e)
                counts["invalid"] = counts.get("invalid", 0) + 1
                return
            await self.engine.upsert(doc, version)
            self._changed(name, doc)
            op = "created" if rt is None else "replaced"
        log.debug("job %s %s by another daemon (version %s)", name, op, version)
        counts[op] = counts.get(op, 0) + 1

    # ---- the whole set: start, reload ------------------------------------------------------------
    async def apply_files(self, jobs_dir: str | Path | None) -> None:
        """Store what `[jobs] dir` holds and the store does not (audited as `local`): templates first
        (each re-validates and rewrites the jobs naming it, API jobs too), then the jobs with their links.
        The caller holds the lock or runs before the engine loads; the engine takes the new versions from
        the store. A template that would break a job is a ConfigError naming the file and the jobs."""
        if jobs_dir is None:
            return
        tree = load_job_tree(Path(jobs_dir))
        self.progress(f"read {len(tree.jobs)} job files")
        if len(tree.jobs) > self.max_jobs:
            raise ConfigError.one(
                Path(jobs_dir),
                "(jobs)",
                f"{len(tree.jobs)} job files, more than [limits] jobs = {self.max_jobs}",
            )
        for t in tree.templates:
            source = f"file:{t.path}"[:200]
            try:
                plan, version, versions = await self.templates.put_locked(t.name, t.doc, dry_run=False)
            except Refused as e:
                problems = [ConfigProblem(str(t.path), "(template)", e.message)]
                problems += [
                    ConfigProblem(str(t.path), f"{x['job']}: {x['path']}", x["message"]) for x in e.details
                ]
                raise ConfigError(problems) from None
            if plan.noop:
                continue
            log.info("template %s applied from %s (version %s)", t.name, t.path, version)
            action = "template.create" if plan.before is None else "template.replace"
            detail = {"template": t.name, "version": version}
            await audit(self.store, self.clock(), "local", source, action, None, None, None, detail)
            for c in plan.jobs:
                changes = {"template": t.name, "template_version": version, "changes": c.public()["changes"]}
                after = versions[c.job]
                await audit(
                    self.store,
                    self.clock(),
                    "local",
                    source,
                    "job.template",
                    c.job,
                    c.version,
                    after,
                    changes,
                )
        links = {link.job: link for link in await self.store.job_links()}
        stored = {s.name: s for s in await self.store.list_jobs()}  # one read, not one a file
        changed: FileChanges = []
        for f in tree.jobs:
            doc = f.doc
            for w in document_warnings(doc):
                log.warning("job %s (%s): %s", doc.job, f.path, w["message"], extra={"event": "job_warning"})
            before = stored.get(doc.job)
            link = links.get(doc.job)
            same = (
                (link.template, link.own) == (f.template, f.own) if link is not None else f.template is None
            )
            if before is None or before.doc != dump_job(doc) or not same:
                changed.append((f, before))
        for i in range(0, len(changed), FILE_BATCH):
            await self._write_files(changed[i : i + FILE_BATCH])
            self.progress(f"stored {min(i + FILE_BATCH, len(changed))} of {len(changed)} changed job files")

    async def _write_files(self, files: FileChanges) -> None:
        """Store changed job files in one transaction and audit them in another: at 10,000 new files a
        transaction each (and an audit entry each) took 40 s of a first start here, each commit waiting
        for the disk. A batch the store refuses (a template gone meanwhile) is a ConfigError naming the
        files of the jobs concerned; nothing of the batch is written."""
        writes = [Composed(None, f.template, f.own).write(f.doc) for f, _ in files]
        try:
            versions, _ = await self.store.write_jobs(writes)
        except TemplateConflict as e:
            paths = {f.doc.job: f.path for f, _ in files}
            named = [paths[job] for job in e.jobs if job in paths] or [files[0][0].path]
            raise ConfigError([ConfigProblem(str(path), "template", e.message) for path in named]) from None
        entries = []
        for f, before in files:
            version = versions[f.doc.job]
            log.info("job %s applied from %s (version %d)", f.doc.job, f.path, version)
            entries.append(
                AuditEntry(
                    "local",
                    f"file:{f.path}"[:200],
                    "job.create" if before is None else "job.replace",
                    f.doc.job,
                    None if before is None else before.version,
                    version,
                    {"template": f.template} if f.template is not None else None,
                )
            )
        await audit_many(self.store, self.clock(), entries)

    async def reload(self, jobs_dir: str | Path | None) -> None:
        """A reload: the job files again, then every stored job whose version the engine does not run."""
        async with self._lock:
            try:
                await self.apply_files(jobs_dir)
            except ConfigError as e:  # a template file that would break jobs: nothing of it written
                log.error("job files not applied: %s", e, extra={"event": "reload_rejected"})
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
