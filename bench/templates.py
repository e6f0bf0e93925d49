"""A template change over many jobs (issue 16): how long one `PUT /api/v1/templates/{name}` holds the job
lock when N jobs name the template, against the baseline of writing effective documents one job at a
time (`PUT /api/v1/jobs/{job}`-equivalents through the same rules; SINGLE of them, each its own
transaction), per job, in one run. The other N - SINGLE jobs are written in bulk beforehand (untimed).

In-process, no HTTP: `oceand.templates.Templates` over a SQLite file; the engine's part (`apply`) is a
no-op in both, so the figures are validation, merge and store writes.

    .venv/bin/python bench/templates.py [N ...]          (default 1000 10000)
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from typing import Any

from oceand.store import JobWrite, SQLiteStore
from oceand.templates import Composed, Templates
from policies.document import JobDocument, dump_job, parse_job
from policies.templates import compose

RULE = {
    "name": "cpu",
    "type": "threshold",
    "metric": "cpu.used",
    "scale_out": {"above": 80, "consecutive": 3, "step": 1},
    "scale_in": {"below": 60, "consecutive": 3, "step": 1},
}
TEMPLATE: dict[str, Any] = {"mode": "active", "max_instances": 20, "rules": [RULE]}
STRICTER: dict[str, Any] = {
    **TEMPLATE,
    "rules": [{**RULE, "scale_out": {"above": 90, "consecutive": 3, "step": 1}}],
}
SINGLE = 200


async def _noop(doc: JobDocument, version: int) -> None:
    return None


async def run(n: int) -> tuple[float, float, float]:
    """(seconds of the template change, seconds of SINGLE single-job writes, seconds of N compose+validate)"""
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(f"sqlite:///{tmp}/t.db")
        await store.open()
        t = Templates(store, asyncio.Lock(), _noop)
        await t.put("web", TEMPLATE, dry_run=False)
        stored = await store.get_template("web")
        assert stored is not None
        owns = [
            {
                "job": f"job.j{i}_pdl.p{i % 40}_cop.xiaomi",
                "template": "web",
                "target": {"cluster": "lg", "app": f"/a{i}"},
            }
            for i in range(n)
        ]
        c0 = time.perf_counter()
        docs = [parse_job(compose(own, TEMPLATE)) for own in owns]
        validate = time.perf_counter() - c0
        c0 = time.perf_counter()
        for own, doc in zip(owns[:SINGLE], docs[:SINGLE], strict=True):  # baseline: one job a time
            await t.put_job(doc, Composed(None, "web", own, {"web": stored.version}))
        single = time.perf_counter() - c0
        rest = [JobWrite(d.job, dump_job(d), "web", o) for o, d in zip(owns, docs, strict=True)]
        for i in range(SINGLE, n, 1000):
            await store.write_jobs(rest[i : i + 1000])
        c0 = time.perf_counter()
        plan, _, versions = await t.put("web", STRICTER, dry_run=False)
        change = time.perf_counter() - c0
        assert len(plan.jobs) == n and len(versions) == n
        await store.close()
    return change, single, validate


async def main(sizes: list[int]) -> None:
    for n in sizes:
        change, single, validate = await run(n)
        per_change, per_single = change / n, single / SINGLE
        print(
            f"{n:,} jobs on one template: one change {change:.2f} s ({per_change * 1e6:.0f} us/job);"
            f" baseline, {SINGLE} jobs written one at a time: {per_single * 1e6:.0f} us/job;"
            f" per job {per_change / per_single:.3f} of the baseline; compose + validate alone"
            f" {validate / n * 1e6:.0f} us/job"
        )


if __name__ == "__main__":
    asyncio.run(main([int(a) for a in sys.argv[1:]] or [1000, 10000]))
