"""Benchmark: the predictive rule's evaluation round (bench/quality.py --eval-cost), this tree against
another commit, in one process, rounds interleaved.

10,000 jobs with one predictive rule each on `proc.qps`, each its own document and job id
(quality-0 .. quality-9999: the id sets when its cycle tests run), 1,000 distinct states (each shared
by 10 jobs: states are values) warmed up over 1,600 buckets of 10 s (4.4 hours: the full error window, and
two hours of the hourly history), then `--rounds` buckets, each evaluated by both trees in alternating
order. Prints each side's best, median and worst round: the median and the worst include the rounds
where every rule closes a history slot (every minute, every 15 minutes) and, for a tree with the hourly
cycle test before its per-job phase (main before branch stagger), the round at minute 7 of a quarter
hour where every rule runs it (all jobs' buckets end at the same times); with the phase, each round
runs the tests of about 1/90 of the jobs.

    git archive main | tar -x -C /tmp/before
    .venv/bin/python bench/predictive_ab.py --before /tmp/before [--rounds 100]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import policies.document as doc_after  # noqa: E402
import policies.engine as engine_after  # noqa: E402
import policies.types as types_after  # noqa: E402
from bench.evaluate_ab import load_before  # noqa: E402

T0 = 1_700_000_000.0
DOC = {
    "job": "quality", "target": {"cluster": "lg", "app": "/quality"}, "mode": "active", "period": "10s",
    "min_instances": 1, "max_instances": 20,
    "rules": [{"name": "r", "type": "predictive", "metric": "proc.qps", "target": 50}],
}  # fmt: skip


def value(i: int, r: int) -> float:
    return 40.0 + (i % 7) + 3 * math.sin(r / 5 + i)


def side(docmod: Any, engine: Any, types: Any, jobs: int, warm: int, distinct: int = 1_000) -> Any:
    docs = [docmod.parse_job({**DOC, "job": f"quality-{i}"}) for i in range(jobs)]  # each job its own id
    st = [types.JobState() for _ in range(distinct)]
    for r in range(warm):
        t = T0 + 10 * r
        for i in range(distinct):
            _, st[i] = engine.evaluate(docs[i], types.Observation(t, int(t), 4, 4, {"r": value(i, r)}, 4), st[i], mode="active")  # fmt: skip
    states = [st[i % distinct] for i in range(jobs)]
    for d in docs:  # compiled before the first timed round (memoised per document)
        engine.compile_job(d)

    def run(r: int) -> float:
        t = T0 + 10 * r
        obs = [types.Observation(t, int(t), 4, 4, {"r": value(i % distinct, r)}, 4) for i in range(jobs)]
        c0 = time.process_time()
        for i in range(jobs):
            _, states[i] = engine.evaluate(docs[i], obs[i], states[i], mode="active")
        return (time.process_time() - c0) * 1000.0

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, required=True, help="a tree of the other commit (git archive)")
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--warm", type=int, default=1_600)
    ap.add_argument("--verbose", action="store_true", help="print every round's times")
    args = ap.parse_args()
    runs = {
        "before": side(*load_before(args.before), args.jobs, args.warm),
        "after": side(doc_after, engine_after, types_after, args.jobs, args.warm),
    }
    took: dict[str, list[float]] = {"before": [], "after": []}
    for k, r in enumerate(range(args.warm, args.warm + args.rounds)):
        for name in ("before", "after") if k % 2 == 0 else ("after", "before"):
            took[name].append(runs[name](r))
    for name, ms in took.items():
        print(f"{name:6} {args.jobs} jobs x 1 predictive rule: best {min(ms):6.1f} ms  median "
              f"{statistics.median(ms):6.1f} ms  worst {max(ms):6.1f} ms per round ({args.rounds} rounds)")  # fmt: skip
    if args.verbose:
        for k, r in enumerate(range(args.warm, args.warm + args.rounds)):
            t = T0 + 10 * r
            print(f"round {k:3} at {int(t % 900):3} s past a quarter hour: before {took['before'][k]:6.1f} ms  "
                  f"after {took['after'][k]:6.1f} ms")  # fmt: skip
    ratios = [a / b for a, b in zip(took["after"], took["before"], strict=True)]
    print(f"after / before: median of the per-round ratios {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
