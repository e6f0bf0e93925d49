"""Memory per active series (PRODUCT §8): ≤ 2 KiB per series with a 60-bucket window.

Builds the daemon's ingest structures for JOBS jobs × INSTANCES instances × 2 routed metrics, feeds
WINDOW+5 periods of samples so every series' window is full and every route and bucket exists, and
measures the Python heap (tracemalloc) that this adds, divided by the number of routed series.
Baseline in the same run: the same windows held naively, one Python list of 60 floats per series.

Run: .venv/bin/python bench/memory.py [--jobs 2000] [--instances 5]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import job_doc
from oceand.ingest import Ingestor, JobBuckets
from policies.document import JobDocument

WINDOW = 60  # the baseline: one list of a 60-bucket window of floats per series


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--instances", type=int, default=5)
    args = ap.parse_args()
    docs = [JobDocument.model_validate(job_doc(f"job.m{j:05d}", f"/m/a{j}")) for j in range(args.jobs)]
    now = int(time.time())
    start = now - now % 10 - 10 * (WINDOW + 5)

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    ing = Ingestor()
    for doc in docs:
        jb = JobBuckets(doc.job, 10, 5.0, [(r.name, r.aggregate) for r in doc.metric_rules()])
        jb.start(start)
        ing.set_job(doc, jb)
    for p in range(WINDOW + 5):
        ts = start + 10 * p
        items = [
            {
                "endpoint": f"h{j}-{i}",
                "metric": m,
                "timestamp": ts,
                "step": 10,
                "value": 42.0,
                "counterType": "GAUGE",
                "tags": f"job=job.m{j:05d}",
            }
            for j in range(args.jobs)
            for i in range(args.instances)
            for m in ("cpu.idle", "proc.qps")
        ]
        ing.ingest(items, ts + 1.0)
        del items
        for jb in (jb for r in ing._routes.values() if r for jb in r.buckets()):  # type: ignore[union-attr]
            jb.due(ts + 16)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    series = ing.series

    naive_before = tracemalloc.get_traced_memory()[0]
    naive = [[float(k) + 0.5 for k in range(WINDOW)] for _ in range(series)]
    naive_used = tracemalloc.get_traced_memory()[0] - naive_before
    tracemalloc.stop()
    del naive

    per = used / series
    print(f"jobs={args.jobs} instances={args.instances} routed series={series} window={WINDOW}")
    print(f"ingest structures (routes, series slots, open buckets, job routing): {used / 2**20:.1f} MiB")
    print(f"baseline: one list of {WINDOW} floats per series: {naive_used / series:.0f} B/series")
    print(
        f"per series: {per:.0f} B = {per / 1024:.2f} KiB  (ratio to baseline {per / (naive_used / series):.2f}; target <= 2 KiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
