"""Every benchmark of PRODUCT §8 in one command, each figure printed next to its target.

Run: .venv/bin/python bench/all.py [--quick]
Each benchmark runs as its own process (see its module for what it measures and its baseline); this
prints their full output and then a summary table. `--quick` uses smaller sizes (a smoke run, not a record).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BENCHES: list[tuple[str, str, list[str], list[str], str, str]] = [
    # (name, script, args, args with --quick, what to grep for the summary line, target)
    ("ingest", "ingest.py", [], ["--bodies", "100"], "ingest ratio", "ratio >= 0.5 (issue floor 0.3)"),
    ("evaluation", "evaluate.py", [], ["--jobs", "2000"], "evaluate: best", "<= 50 ms CPU per round"),
    (
        "reaction",
        "reaction.py",
        [],
        ["--background", "1000", "--triggers", "20"],
        "reaction p99",
        "p99 <= 50 ms",
    ),
    ("memory", "memory.py", [], ["--jobs", "200"], "per series", "<= 2 KiB per series"),
    (
        "hostile ingest",
        "hostile_ingest.py",
        [],
        ["--pushes", "1"],
        "hostile ingest:",
        "/healthz p99 < 100 ms",
    ),
    ("replay", "replay.py", [], ["--repeat", "1"], "2 rules: threshold", ">= 100,000 periods/s"),
    (
        "idle",
        "idle.py",
        [],
        ["--jobs", "2000", "--seconds", "15", "--settle", "15"],
        "idle:",
        "< 5 % of a core, /healthz p99 < 100 ms (issue 18)",
    ),
    (
        "startup",
        "startup.py",
        [],
        ["--jobs", "2000"],
        "startup:",
        "ready well inside systemd's TimeoutStartSec (60 s)",
    ),
]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    print(
        f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.platform()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}"
    )
    rows = []
    failed = 0
    for name, script, full, quick, needle, target in BENCHES:
        print(f"\n===== {name}: bench/{script}", flush=True)
        cmd = [sys.executable, str(ROOT / "bench" / script), *(quick if args.quick else full)]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        print(proc.stdout, end="")
        if proc.returncode not in (0, 1):
            print(proc.stderr[-3000:], end="")
            failed += 1
        lines = [ln for ln in proc.stdout.splitlines() if needle in ln]
        rows.append((name, lines[-1].strip() if lines else f"(failed: exit {proc.returncode})", target))
    print("\n===== summary")
    for name, line, target in rows:
        print(f"{name:11s} | {line} | target {target}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
