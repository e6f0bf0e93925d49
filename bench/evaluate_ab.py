"""Benchmark: the evaluation round of bench/evaluate.py, this tree against another commit, in one process.

On a shared machine two runs of bench/evaluate.py a minute apart differ by more than most changes do.
This script imports the other commit's `policies` package under another name (`policies_before`, its
imports rewritten) next to this tree's, runs the rounds of both interleaved, alternating which goes
first, and checks that both decide the same counts. It prints each side's best and median round and
the median of the per-round ratios (after / before).

    git archive 0bfbd1b | tar -x -C /tmp/before
    .venv/bin/python bench/evaluate_ab.py --before /tmp/before [--jobs 10000] [--rounds 30]

`--history` also records each evaluated bucket as bench/evaluate.py --history does, each side through
its own tree's `oceand/history.py` (`HistoryRecorder.record`; the buffer is emptied between rounds,
untimed). Both sides run under the daemon's collector settings (`oceand.daemon.configure_gc`, applied
after the warm-up rounds): the collector is one per process, so this script cannot compare two settings
of it; run bench/evaluate.py of each tree for that.

`--only before|after|none` runs one side (or only the inputs) for an instruction count that does not
move with the machine's load, e.g.
    PYTHONHASHSEED=0 valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \\
        .venv/bin/python bench/evaluate_ab.py --before /tmp/before --jobs 1000 --rounds 15 --only after
Per side, (count with --rounds R) − (count with --rounds 0), less the same difference with `--only none`
(the inputs), divided by jobs × R: instructions per evaluation.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import policies.document as doc_after  # noqa: E402
import policies.engine as engine_after  # noqa: E402
import policies.types as types_after  # noqa: E402
from bench.evaluate import make_doc, values_for  # noqa: E402
from oceand.daemon import configure_gc  # noqa: E402

Round = Callable[[int], float]


def load_before(tree: Path) -> tuple[Any, Any, Any]:
    """The other tree's policies.document, policies.engine and policies.types, as policies_before.*"""
    tmp = Path(tempfile.mkdtemp(prefix="evaluate-ab-"))
    shutil.copytree(tree / "policies", tmp / "policies_before")
    for f in (tmp / "policies_before").glob("*.py"):
        f.write_text(re.sub(r"\bpolicies(?=[. ])", "policies_before", f.read_text()))
    sys.path.insert(0, str(tmp))
    import policies_before.document as d  # type: ignore[import-not-found]
    import policies_before.engine as e  # type: ignore[import-not-found]
    import policies_before.types as t  # type: ignore[import-not-found]

    return d, e, t


def load_recorder(tree: Path, name: str) -> Any:
    """A HistoryRecorder of `tree`'s oceand/history.py (loaded under `name`; its imports are this tree's)."""
    spec = importlib.util.spec_from_file_location(name, tree / "oceand" / "history.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.HistoryRecorder


def side(
    docmod: Any, engine: Any, types: Any, jobs: int, evaluate: bool = True, history: Any = None
) -> tuple[Round, list[int]]:
    """A round function for one version of the package (`evaluate` False: build the inputs only);
    `history`: a HistoryRecorder that records each evaluated bucket."""
    docs = [docmod.JobDocument.model_validate(make_doc(i).model_dump()) for i in range(jobs)]
    states = [types.JobState() for _ in docs]
    counts = [4] * jobs
    has_step = hasattr(engine, "step")

    def run(r: int) -> float:
        t0 = time.process_time()
        now = float((r + 1) * 10 + 1_700_000_000)
        bucket = int(now) - 10
        obs_type = types.Observation
        for i, doc in enumerate(docs):
            cpu, qps = values_for(i, r)
            cur = counts[i]
            values = {"cpu": cpu, "qps": qps}
            obs = obs_type(now, bucket, cur, cur, values, cur)
            if not evaluate:
                continue
            if has_step:
                d, states[i] = engine.step(doc, states[i], obs, now, mode="active")
            else:
                d, states[i] = engine.evaluate(doc, obs, states[i], mode="active")
            counts[i] = d.desired
            if history is not None:
                history.record(doc.job, bucket, values, cur, cur, d.desired, None)
        took = (time.process_time() - t0) * 1000.0
        if history is not None:
            # what the writer task takes away between rounds (not timed); a tree older than clear(): its list
            (getattr(history, "clear", None) or history._rows.clear)()
        return took

    return run, counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, required=True, help="a tree of the other commit (git archive)")
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--only", choices=("before", "after", "none"))
    ap.add_argument("--history", action="store_true", help="also record each bucket (each tree's recorder)")
    args = ap.parse_args()
    before_mods = load_before(args.before)
    recorders: dict[str, Any] = {}
    if args.history:
        rec_b = load_recorder(args.before, "history_before")
        rec_a = load_recorder(ROOT, "history_after")
        recorders = {"before": rec_b(None, max_buffer=args.jobs), "after": rec_a(None, max_buffer=args.jobs)}
    after_mods = (doc_after, engine_after, types_after)
    if args.only is not None:
        mods = before_mods if args.only == "before" else after_mods
        run, _ = side(*mods, args.jobs, evaluate=args.only != "none", history=recorders.get(args.only))
        run(0)  # the warm-up round (compiles the documents; with "none", builds the inputs only)
        gc.collect()
        gc.disable()  # the same work in every run: no collections at allocation-dependent times
        for r in range(1, args.rounds + 1):
            run(r)
        return
    run_b, counts_b = side(*before_mods, args.jobs, history=recorders.get("before"))
    run_a, counts_a = side(*after_mods, args.jobs, history=recorders.get("after"))
    run_b(0)
    run_a(0)
    configure_gc()  # the daemon's settings (collected, then frozen)
    before: list[float] = []
    after: list[float] = []
    for r in range(1, args.rounds + 1):
        if r % 2:
            before.append(run_b(r))
            after.append(run_a(r))
        else:
            after.append(run_a(r))
            before.append(run_b(r))
    if counts_a != counts_b:
        raise SystemExit("the two versions decided different counts")
    ratios = [a / b for a, b in zip(after, before, strict=True)]
    print(
        f"before: best {min(before):.1f} ms, median {statistics.median(before):.1f} ms | "
        f"after: best {min(after):.1f} ms, median {statistics.median(after):.1f} ms | "
        f"ratio of bests {min(after) / min(before):.3f}, median of per-round ratios {statistics.median(ratios):.3f} "
        f"({args.rounds} rounds of {args.jobs} jobs{', history recorded' if args.history else ''}, same counts"
        " decided)"
    )


if __name__ == "__main__":
    main()
