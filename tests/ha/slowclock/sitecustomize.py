"""Loaded at interpreter start-up when this folder is on PYTHONPATH (the chaos rig's `clock_skew` fault,
tests/ha/faults.py): the process's monotonic clock runs at OCEAND_HA_CLOCK_RATE (e.g. 0.5: half speed)
from start-up on. asyncio's loop clock is `time.monotonic`, so every timer of the daemon (lease validity,
renewal, stop acting, poll, timeouts) runs slow by the same rate. The wall clock (`time.time`) is left
alone: daemons stamp intents and decisions with it and the invariants compare those stamps across
processes. libfaketime (`faketime -f 'x0.5'`) slows both and cannot slow only CLOCK_MONOTONIC; see
docs/cluster.md."""

import os
import sys
import time

_rate = float(os.environ.get("OCEAND_HA_CLOCK_RATE", "1"))
if _rate != 1.0:
    _real, _real_ns = time.monotonic, time.monotonic_ns
    _t0, _t0_ns = _real(), _real_ns()

    def monotonic() -> float:
        return _t0 + (_real() - _t0) * _rate

    def monotonic_ns() -> int:
        return _t0_ns + int((_real_ns() - _t0_ns) * _rate)

    time.monotonic = monotonic
    time.monotonic_ns = monotonic_ns
    print(f"oceand-ha: monotonic clock at x{_rate}", file=sys.stderr, flush=True)
