"""Benchmark of `oceand replay` (PRODUCT §8: >= 100,000 simulated periods per second, 2-rule job).

Replays the NASA trace (`--per-second --capacity 0.5`, period 10 s: ~249,000 periods) with:
- the 2-rule job of §8: the seed's threshold rule on cpu.used (conf/jobs/seed-threshold.json) plus a
  target rule on proc.qps (target 0.35 = 70 % of the 0.5 capacity);
- the seed policies alone (conf/jobs/seed-threshold.json, conf/jobs/seed-target.json);
- a baseline measured in the same run: the same simulated cluster and metrics with a no-op policy
  (keep the current count) instead of `policies.engine.step`, i.e. the bare per-period loop.

Each case runs --repeat times; the best CPU time counts. Prints periods/s, the ratio to the 100,000
target, and the engine's share of the time (1 − baseline / full). `--profile` adds a cProfile of one
2-rule replay.

    .venv/bin/python bench/replay.py [--trace FILE] [--repeat 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from oceand.replay import ReplayOptions, ReplayResult, Step, simulate  # noqa: E402
from oceand.trace import Trace, load_trace  # noqa: E402
from policies.document import JobDocument, parse_job  # noqa: E402
from policies.types import JobState, Observation  # noqa: E402

TARGET = 100_000.0
CAPACITY = 0.5
TRACES = (ROOT.parent / "shared" / "traces", Path("/work/shared/traces"))
NASA = "nasa_http_aug95_per_min.csv"


def find_trace(name: str) -> Path:
    for folder in TRACES:
        if (folder / name).is_file():
            return folder / name
    raise SystemExit(f"bench/replay.py: {name} not found in {', '.join(map(str, TRACES))}")


def load_doc(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "conf" / "jobs" / name).read_text())
    return data


def two_rule_job() -> JobDocument:
    doc = load_doc("seed-threshold.json")
    doc["rules"].append(
        {"name": "qps", "type": "target", "metric": "proc.qps", "aggregate": "avg", "target": 0.7 * CAPACITY}
    )
    return parse_job(doc)


def keep_current(obs: Observation, state: JobState) -> tuple[int, JobState]:
    return obs.current, state


def best_of(repeat: int, run: Callable[[], ReplayResult]) -> tuple[float, float, ReplayResult]:
    """(best CPU seconds, best wall seconds, last result) over `repeat` runs."""
    cpu, wall = float("inf"), float("inf")
    result: ReplayResult | None = None
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        result = run()
        cpu = min(cpu, time.process_time() - c0)
        wall = min(wall, time.perf_counter() - w0)
    assert result is not None
    return cpu, wall, result


def case(doc: JobDocument, trace: Trace, repeat: int, step: Step | None = None) -> tuple[float, float, int]:
    options = ReplayOptions(capacity=CAPACITY)
    cpu, wall, result = best_of(repeat, lambda: simulate(doc, trace, options, step=step))
    return cpu, wall, result.summary()["periods"]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--trace", type=Path, default=None, help=f"CSV trace (default {NASA})")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--profile", action="store_true", help="print a cProfile of one 2-rule replay")
    args = p.parse_args(argv)
    path = args.trace or find_trace(NASA)
    t0 = time.perf_counter()
    trace = load_trace(path, per_second=True)
    load_s = time.perf_counter() - t0
    two = two_rule_job()
    cases = [
        ("baseline: 2-rule metrics, no-op policy", two, keep_current),
        ("2 rules: threshold cpu.used + target proc.qps", two, None),
        ("seed-threshold.json (1 rule)", parse_job(load_doc("seed-threshold.json")), None),
        ("seed-target.json (1 rule)", parse_job(load_doc("seed-target.json")), None),
    ]
    print(
        f"trace {path.name}: {len(trace.times)} rows, loaded in {load_s:.3f} s; capacity {CAPACITY}, period 10 s"
    )
    print(f"{'case':<48} {'periods':>8} {'cpu s':>7} {'periods/s':>10} {'/ target':>9}")
    rates: dict[str, float] = {}
    for name, doc, step in cases:
        cpu, _wall, periods = case(doc, trace, args.repeat, step)
        rate = periods / cpu
        rates[name] = rate
        print(f"{name:<48} {periods:>8} {cpu:>7.3f} {rate:>10,.0f} {rate / TARGET:>8.2f}x")
    full = rates[cases[1][0]]
    base = rates[cases[0][0]]
    print(f"target (PRODUCT §8): {TARGET:,.0f} periods/s for a 2-rule job")
    print(f"2-rule replay / target = {full / TARGET:.2f}   ({'PASS' if full >= TARGET else 'FAIL'})")
    print(
        f"2-rule replay / baseline (bare loop) = {full / base:.3f}; engine share of the time = {1 - full / base:.0%}"
    )
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        simulate(two, trace, ReplayOptions(capacity=CAPACITY))
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    return 0 if full >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
