"""The faults of HA.md §5.2 as named scenarios on the chaos rig (tests/ha/rig.py, tests/ha/faults.py):
three real daemon processes on MariaDB, the fake Marathon, a constant breach on six jobs. Each scenario
warms up (every app scaled once), injects its fault, shows the cluster acts on every job again, and then
checks I1–I8 (HA.md §5.3) over the whole run. The scenarios marked `ha_soak` are kept out of the suite's
time budget and run on demand (OCEAND_HA_SOAK=1); docs/cluster.md lists the time of each."""

from __future__ import annotations

import pytest

from tests.ha.faults import FAULTS, NEEDS_MYSQL, NEEDS_REDIS, TAKEOVER_BOUND
from tests.ha.rig import Rig

pytestmark = [pytest.mark.slow, pytest.mark.mysql]

IN_SUITE = {"kill_9", "gc_pause", "mysql_pause", "late_put"}
SCENARIOS = [
    pytest.param(name, id=name, marks=() if name in IN_SUITE else (pytest.mark.ha_soak,)) for name in FAULTS
]


@pytest.mark.parametrize("fault", SCENARIOS)
def test_fault_keeps_the_invariants(rig: Rig, fault: str) -> None:
    if fault in NEEDS_MYSQL:
        rig.with_mysql()
    if fault in NEEDS_REDIS:
        rig.with_redis(aof=fault == "redis_restart_aof")
    rig.start(3)
    rig.warm()
    FAULTS[fault](rig)
    rig.check(TAKEOVER_BOUND + 4.0 if fault == "gc_pause" else TAKEOVER_BOUND)
