"""`takeover_gap` (issue 14, HA.md §6.7 step 4): a bucket that began before this daemon acquired the
job's shard neither breaks nor extends streaks; buckets after it count as usual."""

from __future__ import annotations

from typing import Any

from oceand.cluster.intent import gate
from tests.conftest import DaemonFactory
from tests.engine.test_idle import close_bucket, doc
from tests.engine.test_live_decisions import JOB, T0, Clock


class Owned:
    """The engine's ownership seam, owning every job; `acquired` is when the shard was taken."""

    def __init__(self) -> None:
        self.acquired: float | None = None

    def gate(self, job: str) -> str | None:
        return gate(True, True, False, False)

    def acquired_at(self, job: str) -> float | None:
        return self.acquired

    def describe(self, job: str) -> dict[str, Any]:
        return {}


async def test_gap_buckets_neither_break_nor_extend_streaks(start_daemon: DaemonFactory) -> None:
    clock = Clock(T0 + 1)
    d, c = await start_daemon(clock=clock)
    assert (await c.call("POST", "/api/v1/jobs", doc()))[0] == 201
    own = Owned()
    d.engine.ownership = own  # type: ignore[assignment]
    rt = d.engine.jobs[JOB]
    await close_bucket(d, c, clock, 0, None)
    await close_bucket(d, c, clock, 1, 90.0)
    assert rt.state.streaks["cpu"].out == 1
    own.acquired = T0 + 40  # taken over again: buckets 2 and 3 began before it
    await close_bucket(d, c, clock, 2, 90.0)  # hot, but a gap: not counted
    await close_bucket(d, c, clock, 3, None)  # empty, but a gap: does not end the streak
    assert rt.state.streaks["cpu"].out == 1
    assert rt.state.last_bucket == T0 + 30
    await close_bucket(d, c, clock, 4, 90.0)
    assert rt.state.streaks["cpu"].out == 2
