"""Templates in the store, one implementation for both backends (oceand/templates.py uses it).

Each function runs inside the caller's transaction (`Tx`: SQLite's `BEGIN IMMEDIATE`, or an InnoDB
transaction whose reads of rows it then writes say `FOR UPDATE`), so a template change and the
documents of every job that names it commit together or not at all. A write whose inputs changed since
the caller read them (another daemon, another request) raises `TemplateConflict` and rolls back: the caller
computed effective documents from a template version or a set of dependents that no longer holds.
"""

from __future__ import annotations

from typing import Any, Protocol

from oceand.store.base import (
    JobLink,
    JobWrite,
    StoredTemplate,
    TemplateConflict,
    TemplateWrite,
    check_job,
    decode,
    encode,
)


class Tx(Protocol):
    """One open transaction. SQL uses `?` placeholders; `lock` is appended to reads of rows the
    transaction may write (" FOR UPDATE" on MySQL, "" on SQLite, whose write lock covers the file)."""

    lock: str
    upsert_link: str  # insert or replace a job_templates row: (job, template, own, updated_at)

    async def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]: ...

    async def run(self, sql: str, args: tuple[Any, ...] = ()) -> int: ...


def check_template_name(name: object) -> str:
    try:
        return check_job(name)
    except ValueError:
        raise ValueError(f"template name must be 1-200 characters of [A-Za-z0-9._-], got {name!r}") from None


def _template(row: tuple[Any, ...]) -> StoredTemplate:
    return StoredTemplate(
        name=row[0], doc=dict(decode(row[1])), version=int(row[2]), updated_at=float(row[3])
    )


async def get_template(tx: Tx, name: str) -> StoredTemplate | None:
    check_template_name(name)
    rows = await tx.rows("SELECT name, doc, version, updated_at FROM templates WHERE name = ?", (name,))
    return _template(rows[0]) if rows else None


async def list_templates(tx: Tx) -> list[StoredTemplate]:
    rows = await tx.rows("SELECT name, doc, version, updated_at FROM templates ORDER BY name")
    return [_template(r) for r in rows]


async def job_links(
    tx: Tx, template: str | None = None, job: str | None = None, with_docs: bool = False
) -> list[JobLink]:
    """The links of every job (or of the jobs naming `template`, or of `job`), by job name; `with_docs`:
    with each job's stored (effective) document and version, in the same query."""
    cols = "jt.job, jt.template, jt.own" + (", j.doc, j.version" if with_docs else "")
    sql = f"SELECT {cols} FROM job_templates jt" + (
        " LEFT JOIN jobs j ON j.name = jt.job" if with_docs else ""
    )
    args: tuple[str, ...] = ()
    if template is not None:
        sql, args = sql + " WHERE jt.template = ?", (check_template_name(template),)
    elif job is not None:
        sql, args = sql + " WHERE jt.job = ?", (check_job(job),)
    rows = await tx.rows(sql + " ORDER BY jt.job", args)
    return [
        JobLink(
            job=r[0],
            template=r[1],
            own=dict(decode(r[2])),
            doc=dict(decode(r[3])) if with_docs and r[3] is not None else None,
            version=int(r[4]) if with_docs and r[4] is not None else None,
        )
        for r in rows
    ]


async def _put_template(tx: Tx, now: float, name: str, doc: dict[str, Any]) -> int:
    text = encode(doc, "template")
    rows = await tx.rows("SELECT version FROM templates WHERE name = ?" + tx.lock, (name,))
    if rows:
        version = int(rows[0][0]) + 1
        await tx.run(
            "UPDATE templates SET doc = ?, version = ?, updated_at = ? WHERE name = ?",
            (text, version, now, name),
        )
        return version
    await tx.run(
        "INSERT INTO templates (name, doc, version, updated_at) VALUES (?, ?, 1, ?)", (name, text, now)
    )
    return 1


async def _put_job(tx: Tx, now: float, w: JobWrite) -> int:
    text = encode(w.doc, "job document")
    rows = await tx.rows("SELECT version FROM jobs WHERE name = ?" + tx.lock, (w.name,))
    if rows:
        version = int(rows[0][0]) + 1
        await tx.run(
            "UPDATE jobs SET doc = ?, version = ?, updated_at = ? WHERE name = ?",
            (text, version, now, w.name),
        )
    else:
        version = 1
        await tx.run(
            "INSERT INTO jobs (name, doc, version, updated_at) VALUES (?, ?, 1, ?)", (w.name, text, now)
        )
    await log_change(tx, w.name, now)
    if w.template is None:
        await tx.run("DELETE FROM job_templates WHERE job = ?", (w.name,))
    else:
        own = encode(w.own if w.own is not None else {}, "job's own document")
        await tx.run(tx.upsert_link, (w.name, w.template, own, now))
    return version


async def write_jobs(
    tx: Tx,
    now: float,
    jobs: list[JobWrite],
    template: TemplateWrite | None = None,
    based_on: dict[str, int] | None = None,
) -> tuple[dict[str, int], int | None]:
    """Write `template` (if given) and every job of `jobs`; return (job -> new version, the template's
    new version). `based_on` maps each template the jobs were composed from to the version read."""
    for w in jobs:
        check_job(w.name)
        if w.template is not None:
            check_template_name(w.template)
    template_version = None
    if template is not None:
        check_template_name(template.name)
        rows = await tx.rows("SELECT job FROM job_templates WHERE template = ?" + tx.lock, (template.name,))
        now_using = frozenset(r[0] for r in rows)
        if now_using != template.dependents:
            raise TemplateConflict(
                "template_changed",
                f"the jobs naming template {template.name!r} changed while this request ran; try again",
                sorted(now_using ^ template.dependents),
            )
        template_version = await _put_template(tx, now, template.name, template.doc)
    named = {w.template for w in jobs if w.template is not None} | set(based_on or {})
    for name in sorted(named):
        if template is not None and name == template.name:
            continue
        users = sorted(w.name for w in jobs if w.template == name)
        rows = await tx.rows("SELECT version FROM templates WHERE name = ?" + tx.lock, (name,))
        if not rows:
            raise TemplateConflict("template_missing", f"no template named {name!r}", users)
        expected = (based_on or {}).get(name)
        if expected is not None and int(rows[0][0]) != expected:
            raise TemplateConflict(
                "template_changed", f"template {name!r} changed while this request ran; try again", users
            )
    versions = {w.name: await _put_job(tx, now, w) for w in jobs}
    return versions, template_version


async def delete_template(tx: Tx, name: str) -> bool:
    """Delete the template; False if there is none; Conflict (template_in_use) if jobs name it."""
    check_template_name(name)
    rows = await tx.rows("SELECT job FROM job_templates WHERE template = ? ORDER BY job" + tx.lock, (name,))
    if rows:
        jobs = [r[0] for r in rows]
        raise TemplateConflict("template_in_use", f"template {name!r} is used by {len(jobs)} job(s)", jobs)
    return await tx.run("DELETE FROM templates WHERE name = ?", (name,)) > 0


async def unlink_job(tx: Tx, job: str) -> None:
    await tx.run("DELETE FROM job_templates WHERE job = ?", (job,))


async def log_change(tx: Tx, job: str, now: float) -> None:
    """A row in the job change log (oceand/store/jobchanges.py), in the transaction that wrote the job."""
    await tx.run("INSERT INTO job_changes (job, at) VALUES (?, ?)", (job, now))


async def rename_template(tx: Tx, now: float, name: str, to: str) -> int | None:
    """Rename a template (its version goes up by one); None if there is none; TemplateConflict if jobs
    name it (template_in_use: they would name a template that is gone) or `to` exists (template_exists)."""
    check_template_name(name)
    check_template_name(to)
    rows = await tx.rows("SELECT job FROM job_templates WHERE template = ? ORDER BY job" + tx.lock, (name,))
    if rows:
        jobs = [r[0] for r in rows]
        raise TemplateConflict(
            "template_in_use", f"template {name!r} is used by {len(jobs)} job(s): it cannot be renamed", jobs
        )
    if await tx.rows("SELECT version FROM templates WHERE name = ?" + tx.lock, (to,)):
        raise TemplateConflict("template_exists", f"a template named {to!r} exists")
    rows = await tx.rows("SELECT version FROM templates WHERE name = ?" + tx.lock, (name,))
    if not rows:
        return None
    version = int(rows[0][0]) + 1
    await tx.run(
        "UPDATE templates SET name = ?, version = ?, updated_at = ? WHERE name = ?", (to, version, now, name)
    )
    return version
