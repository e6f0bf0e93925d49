"""Start-up benchmark: how long `oceand run` takes to answer `/readyz` with many job files.

A real daemon process (`oceand run`, SQLite, no Marathon cluster: every job runs dry) on a folder of JOBS
job files (`[jobs] dir`; the same documents as bench/reaction.py's background jobs). Timed from the
process's start to the first `GET /readyz` answered 200 (the daemon answers once its jobs are stored and
loaded: `READY=1` to systemd at the same point), in three phases on the same folder and store:

- first: a fresh store, every file stored as a new job (a new deployment, or a folder of new files);
- restart: the same files again, the store already holding them (an upgrade, a host reboot);
- baseline, in the same run: the same daemon with no job files.

The unit file (conf/oceand.service) gives the start TimeoutStartSec=60.

Run: .venv/bin/python bench/startup.py [--jobs 10000] [--runs 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import DaemonProcess
from bench.reaction import background_jobs


def timed_start(d: DaemonProcess) -> float:
    t = time.monotonic()
    d.start(timeout=600)
    return time.monotonic() - t


def phase(jobs: int) -> dict[str, float]:
    """(seconds) first start on a fresh store, then a restart on the same store; 0 jobs: no folder."""
    with tempfile.TemporaryDirectory(prefix="oceand-startup-") as tmp:
        work = Path(tmp)
        if jobs:
            background_jobs(work / "jobs", jobs)
        d = DaemonProcess('[jobs]\ndir = "jobs"\n' if jobs else "", workdir=work, start=False)
        try:
            first = timed_start(d)
            d.stop()
            restart = timed_start(d)
        finally:
            d.close()
    return {"first": first, "restart": restart}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=1, help="phases of each kind; the medians are printed")
    args = ap.parse_args()
    base = [phase(0) for _ in range(args.runs)]
    runs = [phase(args.jobs) for _ in range(args.runs)]
    b_first = statistics.median(r["first"] for r in base)
    b_restart = statistics.median(r["restart"] for r in base)
    first = statistics.median(r["first"] for r in runs)
    restart = statistics.median(r["restart"] for r in runs)
    print(f"baseline (no job files): first start {b_first:.2f} s, restart {b_restart:.2f} s")
    print(f"{args.jobs} job files: first start {first:.2f} s ({first / b_first:.1f}x baseline)")
    print(f"{args.jobs} job files: restart {restart:.2f} s ({restart / b_restart:.1f}x baseline)")
    print(f"startup: first {first:.1f} s, restart {restart:.1f} s  (systemd TimeoutStartSec=60 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
