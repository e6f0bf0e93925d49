"""The job change log (`job_changes`), one implementation for both backends (like oceand/store/templates.py).

Every write of a job's row (`templates.log_change`) (create, replace, a template's re-render, a mode change) and every delete adds
a row `(seq, job, at)` in the same transaction, so the log and the jobs never disagree. Other daemons of
a cluster read it every `[cluster] jobs_poll` (oceand/cluster/jobsync.py) and apply what changed; rows
older than an hour are pruned (a daemon that fell further behind reloads every job instead).
"""

from __future__ import annotations

from oceand.store.base import JobChange, check_limit, check_time, decode
from oceand.store.templates import Tx

MAX_RANGES = 64  # ranges per read: the gaps a reader waits on, beyond that read at its next poll


async def changes(tx: Tx, ranges: list[tuple[int, int | None]], limit: int) -> list[JobChange]:
    check_limit(limit)
    if not ranges:
        return []
    where: list[str] = []
    args: list[int] = []
    for low, high in ranges[:MAX_RANGES]:
        if high is None:
            where.append("c.seq > ?")
            args.append(int(low))
        else:
            where.append("(c.seq > ? AND c.seq < ?)")
            args += [int(low), int(high)]
    rows = await tx.rows(
        "SELECT c.seq, c.job, j.doc, j.version FROM job_changes c LEFT JOIN jobs j ON j.name = c.job"
        f" WHERE {' OR '.join(where)} ORDER BY c.seq LIMIT ?",
        (*args, limit),
    )
    return [
        JobChange(
            int(seq), str(job), None if doc is None else dict(decode(doc)), None if ver is None else int(ver)
        )
        for seq, job, doc, ver in rows
    ]


async def bounds(tx: Tx) -> tuple[int, int]:
    rows = await tx.rows("SELECT COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) FROM job_changes")
    return int(rows[0][0]), int(rows[0][1])


async def prune(tx: Tx, before: float, limit: int) -> int:
    check_limit(limit)
    at = check_time(before, "before")
    rows = await tx.rows("SELECT seq FROM job_changes WHERE at < ? ORDER BY seq LIMIT ?", (at, limit))
    if not rows:
        return 0
    return await tx.run("DELETE FROM job_changes WHERE seq <= ? AND at < ?", (int(rows[-1][0]), at))
