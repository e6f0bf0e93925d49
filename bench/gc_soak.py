"""The collector policy over time (oceand/gcpolicy.py): pauses and memory of a loaded daemon, two settings.

For each setting of `[server] gc_rebase` (default: the shipped 10 minutes, then 0 = CPython's collector as
it is, the baseline measured in the same run), a daemon with BACKGROUND dry-run jobs receives the reaction
benchmark's background load (2 instances × cpu.idle + proc.qps per job every 10 s) for MINUTES. Every 30 s
it reads the daemon's resident memory (/proc/PID/status VmRSS) and its collector metrics
(`oceand_gc_*`): full collections, their total and longest pause. A freeze that kept cyclic garbage from
the collector would show as resident memory growing between rebases where the baseline's does not.

Run: .venv/bin/python bench/gc_soak.py [--background 10000] [--minutes 12] [--rebase 10m]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import DaemonProcess
from bench.reaction import background_jobs, loader


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def gc_metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in re.finditer(r'^(oceand_gc_[a-z_]+)(?:\{generation="(\d)"\})? ([0-9.e+-]+)$', text, re.M):
        out[m[1] + (f"[{m[2]}]" if m[2] else "")] = float(m[3])
    return out


async def soak(d: DaemonProcess, jobs: int, minutes: float) -> list[tuple[float, int, dict[str, float]]]:
    stop = asyncio.Event()
    sent = [0]
    load = asyncio.ensure_future(loader(d.url, jobs, stop, sent))
    rows: list[tuple[float, int, dict[str, float]]] = []
    t0 = time.monotonic()
    assert d.proc is not None
    async with aiohttp.ClientSession() as s:
        while time.monotonic() - t0 < minutes * 60:
            await asyncio.sleep(30)
            async with s.get(d.url + "/metrics") as r:
                m = gc_metrics(await r.text())
            rows.append((time.monotonic() - t0, rss_kib(d.proc.pid), m))
            print(
                f"  {rows[-1][0]:6.0f} s  RSS {rows[-1][1] / 1024:7.1f} MiB  full collections "
                f"{m.get('oceand_gc_collections_total[2]', 0):5.0f}  full pause total "
                f"{m.get('oceand_gc_pause_seconds_total[2]', 0):6.2f} s, longest "
                f"{1000 * m.get('oceand_gc_pause_max_seconds[2]', 0):6.1f} ms  rebases "
                f"{m.get('oceand_gc_rebases_total', 0):.0f}",
                flush=True,
            )
    stop.set()
    await load
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--background", type=int, default=10000)
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--rebase", default="10m", help="the gc_rebase measured (the baseline is 0)")
    args = ap.parse_args()
    results = {}
    for setting in (args.rebase, "0"):
        d = DaemonProcess(start=False)
        background_jobs(d.dir / "jobs", args.background)
        conf = d.conf.read_text().replace("[server]\n", f'[server]\ngc_rebase = "{setting}"\n', 1)
        d.conf.write_text(conf + '[jobs]\ndir = "jobs"\n')
        d.start(timeout=600)
        print(f"gc_rebase = {setting!r}: daemon up with {args.background} jobs", flush=True)
        try:
            results[setting] = asyncio.run(soak(d, args.background, args.minutes))
        finally:
            d.close()
    print()
    for setting, rows in results.items():
        first, last = rows[1][1], rows[-1][1]  # from the first minute on (the series are created by then)
        m = rows[-1][2]
        n = m.get("oceand_gc_collections_total[2]", 0)
        print(
            f"gc_rebase {setting!r}: RSS {first / 1024:.1f} -> {last / 1024:.1f} MiB "
            f"({(last - first) / 1024:+.1f}); full collections {n:.0f}, mean pause "
            f"{1000 * m.get('oceand_gc_pause_seconds_total[2]', 0) / max(n, 1):.1f} ms, longest "
            f"{1000 * m.get('oceand_gc_pause_max_seconds[2]', 0):.1f} ms, rebases "
            f"{m.get('oceand_gc_rebases_total', 0):.0f}"
        )
    a, b = results[args.rebase][-1][1], results["0"][-1][1]
    print(f"final RSS, gc_rebase {args.rebase!r} / baseline 0: {a / b:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
