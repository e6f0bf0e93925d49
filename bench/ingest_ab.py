"""Benchmark: ingest routing (`Ingestor.push` of decoded bodies), this tree against another commit, in one
process.

bench/ingest.py measures the whole daemon over HTTP or RPC; on a shared machine two of its runs a minute
apart differ by more than a change to the routing does. This script loads the other commit's
`oceand/ingest.py` under another name (`ingest_before`; what it imports comes from this tree) next to
this tree's, feeds both the same bench/ingest.py bodies (decoded once by the fast decoder, outside the
timing), rounds interleaved and alternating which goes first, and checks that both give the same
answers (accepted, rejected, unmatched) and the same bucket contents. It prints each side's best and
median round in ns per point (of all the body's points, as bench/ingest.py counts them) and the median of
the per-round ratios (after / before), beside `orjson.loads` of the same bodies in the same rounds.

    git archive main | tar -x -C /tmp/before
    .venv/bin/python bench/ingest_ab.py --before /tmp/before [--bodies 400] [--jobs 200] [--rounds 15]

`--shape agent` sends what agents send instead: every series once per period (each job's 5 hosts × the 4
metrics, 50 jobs to a body, 4 bodies a period, the clock a second into the period), so nearly every sample
is its instance's first in its bucket and each job's bucket completes (5 instances expected) and closes
inside the routing, as in production; the bench's default bodies (`bench/ingest.py`) repeat each series
about 100 times a round into the same few buckets.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import oceand.ingest as ingest_after  # noqa: E402
from bench.common import job_doc  # noqa: E402
from bench.ingest import POINTS, make_bodies  # noqa: E402
from collectors.falcon_items import decode_items  # noqa: E402
from oceand.ingest import JobBuckets  # noqa: E402
from policies.document import JobDocument  # noqa: E402


def load_before(tree: Path) -> Any:
    spec = importlib.util.spec_from_file_location("ingest_before", tree / "oceand" / "ingest.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["ingest_before"] = mod
    spec.loader.exec_module(mod)
    return mod


def side(
    mod: Any,
    docs: list[JobDocument],
    now: int,
    bodies: list[list[Any]],
    clock: list[float] | None = None,
    expected: int | None = None,
) -> tuple[Any, list[JobBuckets]]:
    """An Ingestor of `mod` with the bench's jobs (samples accepted up to 30 s ahead, as bench/ingest.py
    configures its daemon), its route cache warmed by `bodies`."""
    at = clock if clock is not None else [now + 0.5]
    ing = mod.Ingestor(clock=lambda: at[0])
    jbs = []
    for doc in docs:
        jb = JobBuckets(
            doc.job,
            10,
            5.0,
            [(r.name, r.aggregate) for r in doc.metric_rules()],
            max_ahead=30.0,
            expected=expected,
        )
        jb.start(now)
        ing.set_job(doc, jb)
        jbs.append(jb)
    for items in bodies:
        ing.push(items, typed=True)
    return ing, jbs


def answers(ing: Any, jbs: list[JobBuckets], results: list[Any]) -> tuple[Any, ...]:
    return (
        [(r.total, r.invalid, r.unmatched, sorted(r.completed)) for r in results],
        ing.accepted,
        ing.rejected,
        ing.series,
        [{s: b.values for s, b in jb.open.items()} for jb in jbs],
    )


def agent_bodies(jobs: int, start: int, periods: int, seed: int) -> list[tuple[int, bytes]]:
    """(period start, body): every series of 50 jobs for one period, `jobs` / 50 bodies a period."""
    rng = random.Random(seed)
    metrics = ("cpu.idle", "proc.qps", "mem.memfree.percent", "proc.delay")
    out = []
    for p in range(periods):
        t0 = start + 10 * p
        for first in range(0, jobs, 50):
            items = [
                {
                    "endpoint": f"host-{j:04d}-{h}",
                    "metric": m,
                    "timestamp": t0 + rng.randrange(10),
                    "step": 10,
                    "value": round(rng.uniform(0, 100), 3),
                    "counterType": "GAUGE",
                    "tags": f"job=job.bench{j:05d}.svc,container=c{h}",
                }
                for j in range(first, min(first + 50, jobs))
                for h in range(5)
                for m in metrics
            ]
            rng.shuffle(items)
            out.append((t0, orjson.dumps(items)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", type=Path, required=True, help="a tree of the other commit (git archive)")
    ap.add_argument("--bodies", type=int, default=400)
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--shape", choices=("bench", "agent"), default="bench")
    args = ap.parse_args()
    if args.shape == "agent":
        return main_agent(args)
    before = load_before(args.before)
    now = int(time.time())
    docs = [
        JobDocument.model_validate(job_doc(f"job.bench{j:05d}.svc", f"/bench/a{j}")) for j in range(args.jobs)
    ]
    raw = make_bodies(args.bodies, args.jobs, now, seed=1)
    warm = [decode_items(b) for b in make_bodies(20, args.jobs, now, seed=0)]

    sides: dict[str, tuple[Any, list[JobBuckets]]] = {
        "before": side(before, docs, now, warm),
        "after": side(ingest_after, docs, now, warm),
    }
    decoded: dict[str, list[Any]] = {}
    results: dict[str, list[Any]] = {"before": [], "after": []}

    def route(name: str) -> Callable[[], float]:
        ing = sides[name][0]

        def run() -> float:
            items = [list(d) for d in decoded["bodies"]]  # fresh lists: the routing may not keep them
            t = time.process_time()
            out = [ing.push(i, typed=True) for i in items]
            used = time.process_time() - t
            results[name] = out
            return used

        return run

    def base() -> float:
        t = time.process_time()
        for b in raw:
            orjson.loads(b)
        return time.process_time() - t

    decoded["bodies"] = [decode_items(b) for b in raw]
    runs = {"before": route("before"), "after": route("after")}
    per: dict[str, list[float]] = {"before": [], "after": [], "orjson": []}
    points = len(raw) * POINTS
    gc.disable()
    try:
        for r in range(args.rounds):
            order = ("before", "after") if r % 2 == 0 else ("after", "before")
            per["orjson"].append(base() / points * 1e9)
            for name in order:
                per[name].append(runs[name]() / points * 1e9)
            gc.collect()
    finally:
        gc.enable()
    same = answers(*sides["before"], results["before"]) == answers(*sides["after"], results["after"])
    print(f"jobs={args.jobs} bodies/round={args.bodies} points/body={POINTS} rounds={args.rounds}")
    return report(per, same)


def report(per: dict[str, list[float]], same: bool) -> int:
    """Each side's best and median round, the median of the per-round ratios; exit 1 when they differ."""
    for name in ("orjson", "before", "after"):
        label = "orjson.loads" if name == "orjson" else f"route {name}"
        print(f"{label:14} best {min(per[name]):6.0f} ns/point, median {statistics.median(per[name]):6.0f}")
    ratios = [a / b for a, b in zip(per["after"], per["before"], strict=True)]
    print(
        f"after / before: median of per-round ratios {statistics.median(ratios):.3f} "
        f"(range {min(ratios):.3f} - {max(ratios):.3f}); same answers and buckets: {same}"
    )
    return 0 if same else 1


def main_agent(args: argparse.Namespace) -> int:
    """--shape agent: each round a fresh run of periods, the same for both sides, clocks moving."""
    before = load_before(args.before)
    now = int(time.time()) // 10 * 10
    docs = [
        JobDocument.model_validate(job_doc(f"job.bench{j:05d}.svc", f"/bench/a{j}")) for j in range(args.jobs)
    ]
    periods = max(1, args.bodies // max(1, args.jobs // 50))
    clocks = {"before": [now + 1.0], "after": [now + 1.0]}
    warm = [(t, decode_items(b)) for t, b in agent_bodies(args.jobs, now, 2, seed=0)]
    sides = {}
    for name, mod in (("before", before), ("after", ingest_after)):
        sides[name] = side(mod, docs, now, [], clocks[name], expected=5)
        for t, items in warm:
            clocks[name][0] = t + 1.0
            sides[name][0].push(list(items), typed=True)
    start = now + 20
    per: dict[str, list[float]] = {"before": [], "after": [], "orjson": []}
    results: dict[str, list[Any]] = {"before": [], "after": []}
    gc.disable()
    try:
        for r in range(args.rounds):
            raw = agent_bodies(args.jobs, start, periods, seed=r + 1)
            start += 10 * periods
            decoded = [(t, decode_items(b)) for t, b in raw]
            points = sum(len(d) for _, d in decoded)
            t0 = time.process_time()
            for _, b in raw:
                orjson.loads(b)
            per["orjson"].append((time.process_time() - t0) / points * 1e9)
            order = ("before", "after") if r % 2 == 0 else ("after", "before")
            for name in order:
                ing, clock = sides[name][0], clocks[name]
                bodies = [(t, list(d)) for t, d in decoded]
                t0 = time.process_time()
                out = []
                for t, items in bodies:
                    clock[0] = t + 1.0
                    out.append(ing.push(items, typed=True))
                per[name].append((time.process_time() - t0) / points * 1e9)
                results[name] = out
            gc.collect()
    finally:
        gc.enable()
    same = answers(*sides["before"], results["before"]) == answers(*sides["after"], results["after"])
    closed = sum(len(r.completed) for r in results["after"])
    print(
        f"shape=agent jobs={args.jobs} periods/round={periods} bodies/round={len(decoded)} "
        f"rounds={args.rounds} (buckets completed in the last round: {closed})"
    )
    return report(per, same)


if __name__ == "__main__":
    sys.exit(main())
