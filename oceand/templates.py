"""Templates and product lines in the daemon (PRODUCT §13): the rules the admin handlers and job files
call, over the store (oceand/store/templates.py) and the pure part (policies/templates.py).

A job that names a template is stored twice over: its own document as given (`job_templates.own`) and
its effective document, `merge_patch(template, own)` validated like any job document, in `jobs.doc`,
which is what the engine runs and every reader of jobs sees. Every write of jobs goes through
`Templates` under the daemon's job lock, in one store transaction:

- a job written with `"template"` is composed from the template's stored version (the write is refused
  if that version changed meanwhile); written without, it loses any link it had;
- a template written re-composes every job naming it; if any would be invalid the write is refused
  (422 naming each job and field, nothing written), otherwise the template and each job whose
  effective document changes get their next version together; `dry_run` returns the same plan
  without writing;
- a mode change (one job, or every job a selector matches) is the job's own `mode` field, so a job
  naming a template keeps its link and a later template change keeps the mode.

`apply` is the daemon's callback for each job written (the engine takes the new document).
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from oceand.store.base import JobLink, JobWrite, Store, StoredTemplate, TemplateConflict, TemplateWrite
from policies.document import DocumentError, JobDocument, dump_job, parse_job
from policies.redact import public_job
from policies.templates import TemplateError, check_name, check_template, compose, diff
from policies.tree import TREE_KEYS, tree_parts

SELECT_KEYS = (*TREE_KEYS, "name")  # a selector: Ocean tree parts and/or a glob on the whole job name
MAX_BROKEN_SHOWN = 50  # jobs a refusal lists in its details (the message counts them all)


class Refused(Exception):
    """A request the rules refuse: the HTTP status, a code, a message and [{"path", "message"}]."""

    def __init__(
        self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []


@dataclass(frozen=True, slots=True)
class Composed:
    """A job document as given, resolved: `data` is the effective document to validate; `template`,
    `own` and `based_on` ({template: version}) are set when it names a template."""

    data: Any
    template: str | None = None
    own: dict[str, Any] | None = None
    based_on: dict[str, int] = field(default_factory=dict)

    def write(self, doc: JobDocument) -> JobWrite:
        return JobWrite(doc.job, dump_job(doc), self.template, self.own)


@dataclass(frozen=True, slots=True)
class JobChange:
    job: str
    version: int | None  # the job's version before
    doc: JobDocument  # its new effective document
    own: dict[str, Any]
    changes: list[dict[str, Any]]

    def public(self) -> dict[str, Any]:
        return {"job": self.job, "version": self.version, "changes": _public_changes(self.changes)}


@dataclass(frozen=True, slots=True)
class TemplatePlan:
    name: str
    doc: dict[str, Any]
    before: StoredTemplate | None
    dependents: frozenset[str]
    jobs: list[JobChange]  # dependents whose effective document changes

    @property
    def noop(self) -> bool:
        return self.before is not None and self.before.doc == self.doc


def _public_changes(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A diff as the API and the audit trail show it: a webhook's credentials as `***`."""

    def shown(path: str, value: Any) -> Any:
        if path == "notify.webhook" and isinstance(value, str):
            return public_job({"notify": {"webhook": value}})["notify"]["webhook"]
        if path == "notify" and isinstance(value, dict):
            return public_job({"notify": value})["notify"]
        if path == "(document)" and isinstance(value, dict):
            return public_job(value)
        return value

    return [{k: shown(c["path"], v) if k != "path" else v for k, v in c.items()} for c in changes]


def refused_document(e: DocumentError, what: str = "the job document") -> Refused:
    return Refused(422, "invalid_document", f"{len(e.errors)} error(s) in {what}", list(e.errors))


def refused_template(e: TemplateError) -> Refused:
    status = 400 if e.code == "bad_template_name" else 422
    return Refused(status, e.code, e.message, e.errors)


def _refused_conflict(e: TemplateConflict) -> Refused:
    jobs = ", ".join(e.jobs[:MAX_BROKEN_SHOWN]) + (" ..." if len(e.jobs) > MAX_BROKEN_SHOWN else "")
    message = f"{e.message}: {jobs}" if e.jobs else e.message
    if e.code == "template_missing":
        return Refused(422, "template_not_found", message, [{"path": "template", "message": e.message}])
    details = [{"path": "jobs", "message": job} for job in e.jobs[:MAX_BROKEN_SHOWN]]
    return Refused(409, e.code, message, details)


def matches(name: str, select: Mapping[str, str]) -> bool:
    """Whether job `name` matches a selector: every tree part given equals the name's, and the `name`
    glob (fnmatch, case-sensitive) matches the whole name."""
    parts = tree_parts(name)
    for key, value in select.items():
        if key == "name":
            if not fnmatch.fnmatchcase(name, value):
                return False
        elif parts.get(key) != value:
            return False
    return True


def check_selector(data: Any, where: str = "select") -> dict[str, str]:
    """A selector {cop, owt, pdl, service, cluster, job, name}: at least one key, each a non-empty string."""
    if not isinstance(data, dict) or not data:
        raise Refused(
            422,
            "invalid_body",
            f"{where}: an object with at least one of {', '.join(SELECT_KEYS)}",
            [{"path": where, "message": "required"}],
        )
    for key, value in data.items():
        if key not in SELECT_KEYS:
            raise Refused(
                422,
                "invalid_body",
                f"{where}.{str(key)[:40]}: unknown (use {', '.join(SELECT_KEYS)})",
                [{"path": f"{where}.{str(key)[:40]}", "message": "unknown field"}],
            )
        if not isinstance(value, str) or not 1 <= len(value) <= 200:
            raise Refused(
                422,
                "invalid_body",
                f"{where}.{key}: a string of 1-200 characters",
                [{"path": f"{where}.{key}", "message": "a string of 1-200 characters"}],
            )
    return dict(data)


class Templates:
    def __init__(
        self,
        store: Store,
        lock: asyncio.Lock,
        apply: Callable[[JobDocument, int], Awaitable[None]],
    ) -> None:
        self.store = store
        self.lock = lock  # the daemon's job lock: every write of jobs holds it
        self._apply = apply

    # ---- jobs ----------------------------------------------------------------------------------

    async def compose(self, data: Any) -> Composed:
        """Resolve a job document as given: a plain one as is; one with `"template"` laid over the
        template's stored document (Refused when the name is bad or there is no such template)."""
        if not isinstance(data, dict) or "template" not in data:
            return Composed(data)
        try:
            name = check_name(data["template"])
        except TemplateError as e:
            raise refused_template(e) from None
        stored = await self.store.get_template(name)
        if stored is None:
            raise Refused(
                422,
                "template_not_found",
                f"no template named {name!r} (PUT /api/v1/templates/{name} creates it)",
                [{"path": "template", "message": "no such template"}],
            )
        return Composed(compose(data, stored.doc), name, dict(data), {name: stored.version})

    async def put_job(self, doc: JobDocument, composed: Composed | None = None) -> int:
        """Store `doc` (and its link to a template, or none) as the job's next version."""
        async with self.lock:
            version = await self.put_job_locked(doc, composed)
            await self._apply(doc, version)
            return version

    async def put_job_locked(self, doc: JobDocument, composed: Composed | None = None) -> int:
        """`put_job` for a caller that holds the lock and tells the engine itself (job files)."""
        c = composed if composed is not None else Composed(None)
        try:
            versions, _ = await self.store.write_jobs([c.write(doc)], based_on=c.based_on)
        except TemplateConflict as e:
            raise _refused_conflict(e) from None
        return versions[doc.job]

    async def link(self, job: str) -> JobLink | None:
        links = await self.store.job_links(job=job)
        return links[0] if links else None

    async def set_modes(
        self,
        view: Callable[[], Mapping[str, tuple[JobDocument, int]]],
        pick: Callable[[list[str]], list[str]],
        mode: str,
    ) -> dict[str, tuple[int, int]]:
        """Set the mode of the jobs `pick` chooses (it may raise to refuse) among those of `view` (the
        engine's {job: (document, version)}, read under the lock), in one transaction; a job naming a
        template gets it in its own fields. {job: (version before, version after)}, equal for a job
        already in that mode."""
        async with self.lock:
            jobs = view()
            names = pick(sorted(jobs))
            links = {link.job: link for link in await self.store.job_links()}
            writes: list[JobWrite] = []
            docs: dict[str, JobDocument] = {}
            out: dict[str, tuple[int, int]] = {}
            for name in names:
                doc, version = jobs[name]
                out[name] = (version, version)
                if doc.mode == mode:
                    continue
                new = doc.model_copy(update={"mode": mode})
                link = links.get(name)
                if link is None:
                    writes.append(JobWrite(name, dump_job(new)))
                else:
                    writes.append(JobWrite(name, dump_job(new), link.template, {**link.own, "mode": mode}))
                docs[name] = new
            if not writes:
                return out
            versions, _ = await self.store.write_jobs(writes)
            for name, version in versions.items():
                await self._apply(docs[name], version)
                out[name] = (out[name][0], version)
            return out

    # ---- templates -----------------------------------------------------------------------------

    async def get(self, name: str) -> tuple[StoredTemplate, list[str]]:
        """The template and the jobs naming it; Refused 404 if there is none."""
        stored = await self.store.get_template(self.name(name))
        if stored is None:
            raise Refused(404, "template_not_found", f"no template named {name!r}")
        return stored, [link.job for link in await self.store.job_links(name)]

    @staticmethod
    def name(name: str) -> str:
        try:
            return check_name(name)
        except TemplateError as e:
            raise refused_template(e) from None

    async def _plan(
        self, name: str, data: Any, allow: Callable[[frozenset[str]], None] | None = None
    ) -> TemplatePlan:
        links = await self.store.job_links(name, with_docs=True)
        if allow is not None:  # before anything about those jobs is said
            allow(frozenset(link.job for link in links))
        try:
            doc = check_template(data)
        except TemplateError as e:
            raise refused_template(e) from None
        before = await self.store.get_template(name)
        changes: list[JobChange] = []
        broken: dict[str, list[dict[str, str]]] = {}
        for link in links:
            try:
                new = parse_job(compose({**link.own, "job": link.job}, doc))
            except DocumentError as e:
                broken[link.job] = e.errors
                continue
            delta = diff(link.doc or {}, dump_job(new))
            if delta:
                changes.append(JobChange(link.job, link.version, new, link.own, delta))
        if broken:
            jobs = sorted(broken)
            shown = ", ".join(jobs[:MAX_BROKEN_SHOWN]) + (" ..." if len(jobs) > MAX_BROKEN_SHOWN else "")
            raise Refused(
                422,
                "template_breaks_jobs",
                f"the template would make {len(jobs)} job(s) invalid, nothing changed: {shown}",
                [
                    {"job": job, "path": err["path"], "message": err["message"]}
                    for job in jobs[:MAX_BROKEN_SHOWN]
                    for err in broken[job]
                ],
            )
        return TemplatePlan(name, doc, before, frozenset(link.job for link in links), changes)

    async def put(
        self,
        name: str,
        data: Any,
        dry_run: bool,
        allow: Callable[[frozenset[str]], None] | None = None,
    ) -> tuple[TemplatePlan, int | None, dict[str, int]]:
        """Create or replace a template: (the plan, the template's version, {job: new version}). With
        `dry_run` nothing is written (the version is the present one, None for a new template). `allow`
        is given the jobs naming the template, under the lock, and may raise to refuse."""
        self.name(name)
        async with self.lock:
            plan, version, versions = await self.put_locked(name, data, dry_run, allow)
            for c in plan.jobs:
                if c.job in versions:
                    await self._apply(c.doc, versions[c.job])
            return plan, version, versions

    async def put_locked(
        self,
        name: str,
        data: Any,
        dry_run: bool,
        allow: Callable[[frozenset[str]], None] | None = None,
    ) -> tuple[TemplatePlan, int | None, dict[str, int]]:
        """`put` for a caller that holds the lock and tells the engine itself (job files)."""
        plan = await self._plan(name, data, allow)
        if dry_run or plan.noop:
            return plan, plan.before.version if plan.before is not None else None, {}
        template = TemplateWrite(name, plan.doc, plan.dependents)
        writes = [JobWrite(c.job, dump_job(c.doc), name, c.own) for c in plan.jobs]
        try:
            versions, version = await self.store.write_jobs(writes, template)
        except TemplateConflict as e:
            raise _refused_conflict(e) from None
        return plan, version, versions

    async def delete(self, name: str) -> int:
        """Delete a template; its last version. Refused: 404 none, 409 jobs name it (listed)."""
        stored, _ = await self.get(name)
        async with self.lock:
            try:
                deleted = await self.store.delete_template(name)
            except TemplateConflict as e:
                raise _refused_conflict(e) from None
        if not deleted:
            raise Refused(404, "template_not_found", f"no template named {name!r}")
        return stored.version

    async def rename(self, name: str, to: Any) -> int:
        """Rename a template no job names; its new version. Refused: 404, 409 in use or `to` exists."""
        self.name(name)
        if not isinstance(to, str):
            raise Refused(422, "invalid_body", "to: the template's new name", [{"path": "to"}])
        self.name(to)
        async with self.lock:
            try:
                version = await self.store.rename_template(name, to)
            except TemplateConflict as e:
                raise _refused_conflict(e) from None
        if version is None:
            raise Refused(404, "template_not_found", f"no template named {name!r}")
        return version
