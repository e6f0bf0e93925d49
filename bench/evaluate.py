"""Benchmark: one closed bucket for each of 10,000 jobs with 2 rules (threshold cpu + target qps).

Measures CPU time (time.process_time) per round of `policies.engine.step` (the entry point the daemon's
workers call; a closed bucket is its Observation; the usual job's bucket is stepped in C,
policies/_faststep.c, unless OCEAND_NATIVE=0) over every job, against a
baseline measured in the same run: the same loop that only builds the inputs (values dict, Observation)
without evaluating. Prints the absolute ms per round (best of N, as timeit does, since other load on the
machine only ever adds time; and the median), the baseline, their ratio and a line for BENCHMARKS.md.
Target: <= 50 ms per round; must be <= 100 ms.

The load mix varies by job and round: about a third of the jobs hot on cpu, a third cold, and qps from
0.6× to 1.6× its target, so most buckets propose a change and many hit a cooldown or max step: a busier
round than a steady fleet's, where most rules sit within tolerance.

The garbage collector runs as in the daemon: after the first round (which compiles the documents),
`oceand.daemon.configure_gc` collects and freezes what is alive (the documents, as the daemon's start
does), so no full collection walks the 10,000 documents in a timed round.

    .venv/bin/python bench/evaluate.py [--jobs 10000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from oceand.daemon import configure_gc
from oceand.history import HistoryRecorder
from oceand.store.base import Store
from policies.document import JobDocument, parse_job
from policies.engine import step
from policies.types import JobState, Observation

PERIOD = 10


def make_doc(i: int) -> JobDocument:
    return parse_job(
        {
            "job": f"job-{i}",
            "target": {"cluster": "lg", "app": f"/bench/app-{i}"},
            "mode": "active",
            "min_instances": 1,
            "max_instances": 50,
            "rules": [
                {
                    "name": "cpu",
                    "type": "threshold",
                    "metric": "cpu.used",
                    "scale_out": {"above": 80, "consecutive": 3, "step": 1},
                    "scale_in": {"below": 60, "consecutive": 3, "step": 1},
                },
                {"name": "qps", "type": "target", "metric": "proc.qps", "target": 500, "tolerance": 0.1},
            ],
            "behavior": {"scale_out": {"cooldown": "30s", "max_step": 4}, "scale_in": {"cooldown": "5m"}},
        }
    )


def values_for(i: int, r: int) -> tuple[float, float]:
    """A spread of loads: some jobs hot, some cold, most within tolerance; varies by round."""
    cpu = 40.0 + ((i * 7 + r * 13) % 60)  # 40..99
    qps = 300.0 + ((i * 11 + r * 17) % 500)  # 300..799
    return cpu, qps


def run_round(
    docs: list[JobDocument],
    states: list[JobState],
    counts: list[int],
    r: int,
    history: HistoryRecorder | None = None,
) -> float:
    """One round; with `history`, each evaluated bucket is also recorded as the daemon's worker does
    (`HistoryRecorder.record` on the engine's path; its batched writes run off the path)."""
    t0 = time.process_time()
    now = float((r + 1) * PERIOD + 1_700_000_000)
    bucket = int(now) - PERIOD
    for i, doc in enumerate(docs):
        cpu, qps = values_for(i, r)
        cur = counts[i]
        values = {"cpu": cpu, "qps": qps}
        obs = Observation(now, bucket, cur, cur, values, cur)
        decision, states[i] = step(doc, states[i], obs, now, mode="active")
        counts[i] = decision.desired
        if history is not None:
            history.record(doc.job, bucket, values, cur, cur, decision.desired, None)
    took = (time.process_time() - t0) * 1000.0
    if history is not None:
        history.clear()  # what the writer task takes away between rounds (not timed: off the path)
    return took


def run_baseline(docs: list[JobDocument], counts: list[int], r: int) -> float:
    t0 = time.process_time()
    now = float((r + 1) * PERIOD + 1_700_000_000)
    bucket = int(now) - PERIOD
    sink = None
    for i, _doc in enumerate(docs):
        cpu, qps = values_for(i, r)
        cur = counts[i]
        sink = Observation(now, bucket, cur, cur, {"cpu": cpu, "qps": qps}, cur)
    del sink
    return (time.process_time() - t0) * 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument(
        "--history",
        action="store_true",
        help="also record each evaluated bucket in the history buffer, as the daemon does with [history] on",
    )
    args = ap.parse_args()
    # the store is never written here: only `record`, the engine's share of the history, is timed
    history = HistoryRecorder(cast(Store, None), max_buffer=args.jobs) if args.history else None
    docs = [make_doc(i) for i in range(args.jobs)]
    states = [JobState() for _ in docs]
    counts = [4 for _ in docs]
    first = run_round(docs, states, counts, 0)  # includes compiling every document once
    rounds: list[float] = []
    bases: list[float] = []
    plain: list[float] = []  # --history: the same rounds without it, interleaved, on states of their own
    states_p, counts_p = [JobState() for _ in docs], [4 for _ in docs]
    if history is not None:
        run_round(docs, states_p, counts_p, 0)
    configure_gc()  # as the daemon, once started
    for r in range(1, args.rounds + 1):
        bases.append(run_baseline(docs, counts, r))
        if history is not None and r % 2:  # the order alternates: the round after the baseline's costs more
            plain.append(run_round(docs, states_p, counts_p, r))
        rounds.append(run_round(docs, states, counts, r, history))
        if history is not None and not r % 2:
            plain.append(run_round(docs, states_p, counts_p, r))
    if plain:
        ratios = sorted(w / o for w, o in zip(rounds, plain, strict=True))
        print(
            f"without history.record (interleaved): best {min(plain):.1f} ms, median {statistics.median(plain):.1f}"
            f" ms; with it / without it: median of per-round ratios {statistics.median(ratios):.3f}"
            f" (range {ratios[0]:.3f} - {ratios[-1]:.3f})"
        )
    best, base_best = min(rounds), min(bases)
    ms, base = statistics.median(rounds), statistics.median(bases)
    print(f"first round (compiles {args.jobs} documents): {first:.1f} ms")
    print(f"rounds (ms): {', '.join(f'{x:.1f}' for x in rounds)}")
    print(f"baseline (inputs only, ms): {', '.join(f'{x:.1f}' for x in bases)}")
    print(f"evaluate: best {best:.1f} ms, median {ms:.1f} ms per round of {args.jobs} jobs")
    print(
        f"baseline: best {base_best:.1f} ms, median {base:.1f} ms; ratio {best / base_best:.1f}x (best/best)"
    )
    verdict = (
        "OK (target <= 50 ms)" if best <= 50 else ("within limit (<= 100 ms)" if best <= 100 else "TOO SLOW")
    )
    print(
        f"| policies.step (closed bucket){' + history.record' if history else ''} | "
        f"{args.jobs} jobs × 2 rules (threshold + target), 1 bucket each | "
        f"{best:.1f} ms CPU/round (best of {args.rounds}; median {ms:.1f}) | "
        f"baseline {base_best:.1f} ms, ratio {best / base_best:.1f}x | {verdict} |"
    )


if __name__ == "__main__":
    main()
