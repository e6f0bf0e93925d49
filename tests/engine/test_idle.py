"""An idle daemon with many jobs (issue 18 item 4): empty buckets close without store writes, states
written behind go to the store together, and jobs due at the same moment are woken in slices so the
event loop keeps serving requests between them. CPU and latency figures are in bench/idle.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from oceand import engine as engine_mod
from oceand.actuation import RecordingActuator
from oceand.daemon import Daemon
from oceand.engine import Engine
from oceand.store import open_store
from oceand.store.base import StoreError
from policies.document import parse_job
from tests.conftest import Client, DaemonFactory
from tests.engine.test_live_decisions import JOB, T0, Clock, bucket, seed


def doc(name: str = JOB, **over: Any) -> dict[str, Any]:
    return seed(job=name, **over)


def count_commits(d: Daemon) -> list[str]:
    """Record the job of every store commit from now on."""
    seen: list[str] = []
    real = d.store.commit

    async def commit(job: str, state: dict[str, Any], decision: dict[str, Any] | None) -> int | None:
        seen.append(job)
        return await real(job, state, decision)

    d.store.commit = commit  # type: ignore[method-assign]
    return seen


async def close_bucket(d: Daemon, c: Client, clock: Clock, k: int, cpu_used: float | None) -> None:
    """Bucket T0 + 10k: two instances report `cpu_used` (None: nobody reports), then its deadline passes
    and the worker runs; then the states written behind are flushed."""
    ts = T0 + 10 * k
    rt = d.engine.jobs[JOB]
    if cpu_used is not None:
        await bucket(d, c, clock, k, cpu_used)
    clock.t = ts + 16  # past end + grace
    for _ in range(200):
        if rt.buckets.closed_upto > ts and d.engine._inflight == 0:
            break
        rt.wake.set()
        await asyncio.sleep(0.005)
    assert rt.buckets.closed_upto > ts, f"bucket {ts} did not close"
    await d.engine.flush()


@pytest.mark.parametrize(
    ("values", "writes"),
    [
        pytest.param([None] * 5, 0, id="empty buckets: nothing to write"),
        pytest.param(
            [70.0] * 5,
            4,
            id="buckets within tolerance that close early: their last bucket is written (a restart in "
            "the same period must not evaluate it again); the first closes at its deadline",
        ),
        pytest.param([90.0, 90.0], 2, id="hot buckets: each one lengthens the streak"),
        pytest.param([90.0, None], 2, id="a hot bucket, then no data ends the streak"),
    ],
)
async def test_a_state_is_written_behind_only_when_more_than_its_last_bucket_changed(
    start_daemon: DaemonFactory, values: list[float | None], writes: int
) -> None:
    clock = Clock(T0 + 1)
    d, c = await start_daemon(clock=clock)  # no Marathon: the job runs dry
    assert (await c.call("POST", "/api/v1/jobs", doc()))[0] == 201
    await close_bucket(d, c, clock, 0, None)  # the first close sets the streaks and the count
    commits = count_commits(d)
    for k, v in enumerate(values, start=1):
        await close_bucket(d, c, clock, k, v)
    assert commits == [JOB] * writes
    state = d.engine.jobs[JOB].state
    assert state.last_bucket == T0 + 10 * len(values)  # every bucket was evaluated
    assert await c.call("GET", "/metrics") and d.metrics.buckets._value.get() == 1 + len(values)


async def test_states_written_behind_go_to_the_store_together_and_failed_ones_stay_queued(
    tmp_path: Path,
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'oceand.db'}")
    await store.open()
    rec = RecordingActuator()
    engine = Engine(store, lambda doc: rec, clock=Clock(T0 + 1))
    names = [f"job.idle{i:03d}" for i in range(300)]
    try:
        for n in names:
            await store.put_job(n, doc(n))
            await engine.upsert(parse_job(doc(n)), 1)
        flying, most = 0, 0

        async def commit(job: str, state: dict[str, Any], decision: dict[str, Any] | None) -> int | None:
            nonlocal flying, most
            flying += 1
            most = max(most, flying)
            try:
                if job in ("job.idle007", "job.idle250"):
                    raise StoreError("disk full")
                return await real(job, state, decision)
            finally:
                flying -= 1

        real, store.commit = store.commit, commit  # type: ignore[method-assign]
        assert engine._dirty == set(names)  # created_at is new for every job
        with pytest.raises(StoreError, match="disk full"):
            await engine.flush()
        assert engine._dirty == {"job.idle007", "job.idle250"}  # the next flush tries them again
        assert most > 50, "commits were handed to the store one after the other"
        assert await store.load_state("job.idle123") is not None
        assert await store.load_state("job.idle007") is None
        store.commit = real  # type: ignore[method-assign]
        await engine.flush()
        assert engine._dirty == set()
        assert await store.load_state("job.idle007") is not None
    finally:
        await engine.stop()
        await store.close()


async def test_jobs_due_at_the_same_moment_are_woken_in_slices(start_daemon: DaemonFactory) -> None:
    """400 jobs with a 1 s period share every bucket deadline: their closes are spread over several loop
    iterations (the loop polls its sockets between them), none before its deadline."""
    d, _ = await start_daemon()  # the real clock: the jobs' timers fire by themselves
    n = 400
    closes: list[int] = []  # the loop iteration of every bucket close
    iteration = 0
    loop = asyncio.get_running_loop()

    def tick() -> None:
        nonlocal iteration
        iteration += 1
        if len(closes) < n:
            loop.call_soon(tick)

    for i in range(n):
        await d.engine.upsert(parse_job(doc(f"job.idle{i:03d}", period=1)), 1)
    d.engine.on_bucket = lambda: closes.append(iteration)
    loop.call_soon(tick)
    for _ in range(600):
        if len(closes) >= n:
            break
        await asyncio.sleep(0.01)
    assert len(closes) >= n
    per_iteration: dict[int, int] = {}
    for it in closes[:n]:
        per_iteration[it] = per_iteration.get(it, 0) + 1
    assert max(per_iteration.values()) < n, "every job woke in the same loop iteration"
    assert max(per_iteration.values()) <= engine_mod.WAKE_BATCH
    last = [rt.buckets.last for rt in d.engine.jobs.values()]
    assert all(b is not None and not b.early for b in last)  # none closed before its deadline
