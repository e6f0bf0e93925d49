"""The randomized soak (HA.md §5.5): one rig (three daemons with a MariaDB and a Redis of the rig's
own, six jobs under a constant breach) and the faults of tests/ha/faults.py in random order for OCEAND_HA_SOAK seconds (a value
> 1; `=1` runs only the on-demand scenarios). It prints what it did and the counts — double actuations
(I2), stale-owner writes (I1, I8), lost decisions (I6), other violations — and fails unless all are 0.
Seed: OCEAND_HA_SEED."""

from __future__ import annotations

import collections
import os
import random
import time

import pytest

from tests.ha import faults, mariadb
from tests.ha.rig import Rig

pytestmark = [pytest.mark.slow, pytest.mark.mysql, pytest.mark.ha_soak]


def soak_seconds() -> float:
    v = os.environ.get("OCEAND_HA_SOAK", "")
    try:
        return float(v)
    except ValueError:
        raise pytest.UsageError(
            f"OCEAND_HA_SOAK={v!r}: a number (1: scenarios only, >1: soak seconds)"
        ) from None


def test_randomized_soak(rig: Rig) -> None:
    seconds = soak_seconds()
    if seconds <= 1:
        pytest.skip("OCEAND_HA_SOAK=1 runs the scenarios; the soak needs OCEAND_HA_SOAK=SECONDS (> 1)")
    seed = int(os.environ.get("OCEAND_HA_SEED", str(int(time.time()))))
    random.seed(seed)
    draw = sorted(faults.FAULTS)
    if mariadb.missing() is None:
        rig.with_mysql()  # a MariaDB of the rig's own, so that mysql_restart is among the faults
    else:
        draw = [f for f in draw if f not in faults.NEEDS_MYSQL]
    rig.with_redis()  # hot state and wake-ups on through every fault, and redis_restart among them
    rig.start(3)
    rig.warm()
    done: collections.Counter[str] = collections.Counter()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        name = random.choice(draw)
        t0 = time.monotonic()
        faults.FAULTS[name](rig)
        done[name] += 1
        print(
            f"soak {seconds - (end - time.monotonic()):6.0f}s: {name} ({time.monotonic() - t0:.1f}s)",
            flush=True,
        )
    rig.stop_load()
    violations = rig.settled_violations()
    counts = {
        "double actuations": len([v for v in violations if v.startswith("I2")]),
        "stale-owner writes": len([v for v in violations if v.startswith(("I1", "I8"))]),
        "lost decisions": len([v for v in violations if v.startswith("I6")]),
        "other violations": len([v for v in violations if not v.startswith(("I1", "I2", "I6", "I8"))]),
    }
    taken = rig.taken()
    print(
        f"\nsoak seed {seed}, {seconds:.0f}s: faults {dict(done)}; writes taken {sum(taken.values())} "
        f"over {len(taken)} apps; takeovers {len(rig.takeovers)} (max {max(rig.takeovers, default=0):.2f}s)\n"
        + ", ".join(f"{k}: {n}" for k, n in counts.items())
    )
    (rig.tmp / "violations.txt").write_text("\n".join(violations) + "\n")
    assert violations == [], "\n".join(violations[:50]) + f"\n(all in {rig.tmp}/violations.txt)"
