"""An idle daemon with many jobs (issue 18 item 4): empty buckets close without store writes, states
written behind go to the store together, and jobs due at the same moment are woken in slices so the
event loop keeps serving requests between them. CPU and latency figures are in bench/idle.py."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from actuators.marathon import RecordingActuator
from oceand import engine as engine_mod
from oceand.daemon import Daemon
from oceand.engine import Engine
from oceand.store import open_store
from oceand.store.base import StoreError
from policies.document import parse_job
from tests.conftest import Client, DaemonFactory
from tests.engine.test_live_decisions import JOB, T0, Clock, bucket, cpu_item, seed


def doc(name: str = JOB, **over: Any) -> dict[str, Any]:
    return seed(job=name, **over)


def count_commits(d: Daemon) -> list[str]:
    """Record the job of every store commit from now on."""
    seen: list[str] = []
    real = d.store.commit

    async def commit(job: str, state: dict[str, Any], *decided: Any) -> int | None:
        seen.append(job)
        return await real(job, state, *decided)

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

        async def commit(job: str, state: dict[str, Any], *decided: Any) -> int | None:
            nonlocal flying, most
            flying += 1
            most = max(most, flying)
            try:
                if job in ("job.idle007", "job.idle250"):
                    raise StoreError("disk full")
                return await real(job, state, *decided)
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
    iterations (the loop polls its sockets between them), none before its deadline. The first two rounds
    wake the workers (the streaks start, then the same again); from the third on the jobs are idle and the
    timer closes their empty buckets itself, also in slices."""
    d, _ = await start_daemon()  # the real clock: the jobs' timers fire by themselves
    n = 400
    closes: list[int] = []  # the loop iteration of every bucket close
    iteration = 0
    loop = asyncio.get_running_loop()

    def tick() -> None:
        nonlocal iteration
        iteration += 1
        if len(closes) < 3 * n:
            loop.call_soon(tick)

    for i in range(n):
        await d.engine.upsert(parse_job(doc(f"job.idle{i:03d}", period=1)), 1)
    d.engine.on_bucket = lambda: closes.append(iteration)
    loop.call_soon(tick)
    for _ in range(1000):
        if len(closes) >= 3 * n:
            break
        await asyncio.sleep(0.01)
    assert len(closes) >= 3 * n
    for r, limit in enumerate((engine_mod.WAKE_BATCH, engine_mod.WAKE_BATCH, engine_mod.TICK_BATCH)):
        per_iteration: dict[int, int] = {}
        for it in closes[r * n : (r + 1) * n]:
            per_iteration[it] = per_iteration.get(it, 0) + 1
        assert max(per_iteration.values()) < n, f"round {r + 1}: every job in the same loop iteration"
        # at most `limit` jobs a loop iteration; a job whose wake came late (a loaded machine, real clock)
        # closes its overdue bucket and the one it reached together, so allow two closes per job
        assert max(per_iteration.values()) <= 2 * limit
    assert all(not rt.wake.is_set() and rt.idle is not None for rt in d.engine.jobs.values())
    assert d.metrics.timer_deferred._value.get() >= 2 * (n // engine_mod.WAKE_BATCH)
    last = [rt.buckets.last for rt in d.engine.jobs.values()]
    assert all(b is not None and not b.early for b in last)  # none closed before its deadline


async def steps_after_one_push(d: Daemon, client: Client, names: list[str]) -> dict[str, int]:
    """Push one sample of every job (one instance each) in one body, in `names`' order: the loop iteration
    (counted from the push) in which each job's worker stepped."""
    for name in names:
        d.engine.set_expected(name, 1)
    iteration = 0
    stepped: dict[str, int] = {}  # job -> the loop iteration of its first worker step from now on
    loop = asyncio.get_running_loop()

    def tick() -> None:
        nonlocal iteration
        iteration += 1
        if len(stepped) < len(names):
            loop.call_soon(tick)

    real = d.engine._step

    async def step(rt: Any) -> None:
        stepped.setdefault(rt.name, iteration)
        await real(rt)

    d.engine._step = step  # type: ignore[method-assign]
    ts = int(time.time()) // 60 * 60
    items = [cpu_item(f"{name}-host", ts, 50.0) | {"tags": f"job={name}"} for name in names]
    loop.call_soon(tick)
    status, _ = await client.call("POST", "/v1/push", json=items)
    assert status == 200
    async with asyncio.timeout(10):
        while len(stepped) < len(names):
            await asyncio.sleep(0.01)
    return stepped


async def test_a_push_that_completes_many_buckets_wakes_their_workers_in_slices(
    start_daemon: DaemonFactory,
) -> None:
    """One push completes 300 dry-run jobs' buckets (each job's one instance reported): their workers are
    woken at most PACE_BATCH per loop iteration (Engine._wake_paced), so the loop polls its sockets and runs
    what became ready in between — woken together, all 300 steps ran in one iteration."""
    d, client = await start_daemon()
    n = 300
    names = [f"job.paced{i:03d}" for i in range(n)]
    for name in names:
        await d.engine.upsert(parse_job(doc(name, period=60)), 1)
    stepped = await steps_after_one_push(d, client, names)
    per_iteration: dict[int, int] = {}
    for it in stepped.values():
        per_iteration[it] = per_iteration.get(it, 0) + 1
    assert max(per_iteration.values()) <= engine_mod.PACE_BATCH, per_iteration
    assert len(per_iteration) >= n // engine_mod.PACE_BATCH


async def test_an_active_jobs_worker_does_not_wait_behind_the_paced_ones(start_daemon: DaemonFactory) -> None:
    """The same push completes an active job's bucket too, last in the body: its worker is woken at once,
    and steps in the first iteration with the first slice of the 300 dry-run jobs, not after all of them
    (first come, first served, it stepped iterations later: 15 against 10 in one run)."""
    d, client = await start_daemon(actuator=RecordingActuator())  # an actuator: the active job is applied
    names = [f"job.paced{i:03d}" for i in range(300)]
    for name in names:
        await d.engine.upsert(parse_job(doc(name, period=60, mode="dry-run")), 1)
    active = "job.active"
    await d.engine.upsert(parse_job(doc(active, period=60, mode="active")), 1)
    assert d.engine.mode(d.engine.jobs[active]) == "active"
    stepped = await steps_after_one_push(d, client, [*names, active])
    first = min(stepped[n] for n in names)
    assert stepped[active] <= first, (stepped[active], first)
    assert max(stepped[n] for n in names) > first  # the dry-run ones were paced behind it


async def run_timers(d: Daemon, clock: Clock, t: float) -> None:
    """The clock reaches `t` and the engine's timer fires (as the event loop would call it then); wait
    until every woken worker is done."""
    clock.t = t
    d.engine._on_timer()
    for _ in range(400):
        await asyncio.sleep(0.005)
        woken = any(rt.wake.is_set() for rt in d.engine.jobs.values())
        if d.engine._timer_at > t and d.engine._inflight == 0 and not woken:
            return
    raise AssertionError("the workers did not settle")


async def test_an_idle_job_closes_its_empty_buckets_without_waking_its_worker(
    start_daemon: DaemonFactory,
) -> None:
    clock = Clock(T0 + 1)
    d, c = await start_daemon(clock=clock)  # no Marathon: the job runs dry at min_instances (1)
    assert (await c.call("POST", "/api/v1/jobs", doc()))[0] == 201
    rt = d.engine.jobs[JOB]
    steps: list[float] = []
    real_step = d.engine._step

    async def step(job: Any) -> None:
        steps.append(clock.t)
        await real_step(job)

    d.engine._step = step  # type: ignore[method-assign]
    commits = count_commits(d)
    # bucket T0 closes at T0 + 15: the streaks start (a state change), T0 + 10 evaluates to the same again
    await run_timers(d, clock, T0 + 15)
    await run_timers(d, clock, T0 + 25)
    assert steps == [T0 + 15, T0 + 25]
    for k in range(3, 8):  # buckets T0 + 20 ... T0 + 60 close on time, empty, without a worker step
        await run_timers(d, clock, T0 + 10 * k + 5)
        assert rt.buckets.closed_upto == T0 + 10 * k
        assert rt.state.last_bucket == T0 + 10 * (k - 1)
    assert steps == [T0 + 15, T0 + 25]
    assert d.metrics.buckets._value.get() == 7
    await d.engine.flush()
    assert commits == [JOB]  # the first close's streaks; nothing after

    # samples arrive: the worker evaluates their bucket at its deadline (no instance count from Marathon:
    # one reporter is complete only from the next bucket on)
    items = [
        {
            "endpoint": "h0",
            "metric": "cpu.idle",
            "timestamp": T0 + 70,
            "step": 10,
            "value": 10.0,
            "counterType": "GAUGE",
            "tags": f"job={JOB}",
        }
    ]
    clock.t = T0 + 71
    assert (await c.call("POST", "/v1/push", items))[0] == 200
    await run_timers(d, clock, T0 + 85)
    assert steps == [T0 + 15, T0 + 25, T0 + 85]
    assert rt.state.last_bucket == T0 + 70 and rt.state.streaks["cpu"].out == 1
    _, st = await c.call("GET", f"/api/v1/jobs/{JOB}/status")
    assert st["rules"]["cpu"]["value"] == 90 and st["rules"]["cpu"]["reporters"] == 1

    # idle again after one empty bucket ends the streak (a state change) and one more evaluates the same
    for t in (95, 105, 115, 125):
        await run_timers(d, clock, T0 + t)
    assert steps[-2:] == [T0 + 95, T0 + 105]
    assert rt.state.last_bucket == T0 + 110 and rt.state.streaks["cpu"].out == 0

    # the app's count changed (here: the stand-in app of a dry job): the next bucket is evaluated
    d.recording.instances[JOB] = 3
    await run_timers(d, clock, T0 + 135)
    assert steps[-1] == T0 + 135 and rt.state.count == 3

    # so is it after a new version of the document (paused: the state stays, buckets still close)
    assert (await c.call("PUT", f"/api/v1/jobs/{JOB}", doc(mode="paused")))[0] == 200
    await run_timers(d, clock, T0 + 145)
    assert steps[-1] == T0 + 145
    await run_timers(d, clock, T0 + 155)
    assert steps[-1] == T0 + 145 and rt.buckets.closed_upto == T0 + 150


async def test_a_bucket_that_became_complete_by_an_earlier_close_closes_at_once(
    start_daemon: DaemonFactory,
) -> None:
    """Both instances report bucket T0 + 10 before bucket T0 closed: until T0 closed nobody knew that two
    instances report (no Marathon count), so the push did not complete it; the close of T0 does."""
    clock = Clock(T0 + 1)
    d, c = await start_daemon(clock=clock)
    assert (await c.call("POST", "/api/v1/jobs", doc()))[0] == 201
    rt = d.engine.jobs[JOB]

    def items(ts: int) -> list[dict[str, Any]]:
        return [
            {
                "endpoint": f"h{i}",
                "metric": "cpu.idle",
                "timestamp": ts,
                "step": 10,
                "value": 50.0,
                "counterType": "GAUGE",
                "tags": f"job={JOB}",
            }
            for i in range(2)
        ]

    assert (await c.call("POST", "/v1/push", items(T0)))[0] == 200
    clock.t = T0 + 12
    assert (await c.call("POST", "/v1/push", items(T0 + 10)))[0] == 200
    await run_timers(d, clock, T0 + 15)  # bucket T0's deadline
    assert rt.buckets.closed_upto == T0 + 20, "bucket T0 + 10 waits for its deadline"
    assert rt.buckets.last is not None and rt.buckets.last.start == T0 + 10 and rt.buckets.last.early


async def test_a_complete_bucket_ahead_of_the_clock_does_not_spin_its_worker(tmp_path: Path) -> None:
    """Samples stamped in the next period (agents' clocks a little ahead, within `max_ahead`) fill a
    bucket that is complete but has not begun: it cannot close yet, so its worker must sleep until it
    begins (its timer), not wake itself again and again in the meantime (a busy loop burning a core)."""
    store = open_store(f"sqlite:///{tmp_path / 'oceand.db'}")
    await store.open()
    clock = Clock(T0 + 1)
    engine = Engine(store, lambda doc: RecordingActuator(), clock=clock)
    steps = 0
    real_step = engine._step

    async def counted(rt: Any) -> None:
        nonlocal steps
        steps += 1
        if steps > 1000:  # spinning without a yield: end it (the bucket begins) so the test fails, not hangs
            clock.t = max(clock.t, T0 + 10)
        await real_step(rt)

    engine._step = counted  # type: ignore[method-assign]
    try:
        await store.put_job(JOB, doc())
        rt = await engine.upsert(parse_job(doc()), 1)
        engine.set_expected(JOB, 2)
        for _ in range(20):
            await asyncio.sleep(0)
        ahead = T0 + 10  # the next bucket: complete, not begun
        items = [
            {
                "endpoint": f"h{i}",
                "metric": "cpu.idle",
                "timestamp": ahead,
                "step": 10,
                "value": 20.0,
                "counterType": "GAUGE",
                "tags": f"job={JOB}",
            }
            for i in range(2)
        ]
        engine.ingestor.push(items)
        before = steps
        for _ in range(200):  # loop iterations, not time: a spinning worker steps on each of them
            await asyncio.sleep(0)
        assert steps - before <= 2, f"the worker stepped {steps - before} times for a bucket it cannot close"
        assert ahead in rt.buckets.open
        clock.t = ahead  # its period begins: the worker's timer (or a push) closes it
        rt.wake.set()
        for _ in range(20):
            await asyncio.sleep(0)
        assert ahead not in rt.buckets.open and rt.buckets.closed_upto == ahead + 10
    finally:
        await engine.stop()
        await store.close()


async def test_a_bucket_handed_over_by_ingest_is_evaluated_before_an_idle_job_closes_later_ones(
    start_daemon: DaemonFactory,
) -> None:
    """A bucket ingest closed after a push and handed to the job (`JobRuntime.take`) waits for the worker;
    the timer's idle close must not close the next empty buckets past it (they would be evaluated before
    it, out of order): it wakes the worker instead, which evaluates the handed bucket, then the rest."""
    clock = Clock(T0 + 1)
    d, c = await start_daemon(clock=clock)
    assert (await c.call("POST", "/api/v1/jobs", doc()))[0] == 201
    rt = d.engine.jobs[JOB]
    await run_timers(d, clock, T0 + 15)
    await run_timers(d, clock, T0 + 25)
    assert rt.idle is not None and rt.buckets.closed_upto == T0 + 20
    handed = rt.buckets.due(T0 + 35)  # as Ingestor.route does once a body completed a bucket
    assert [b.start for b in handed] == [T0 + 20]
    rt.take(handed)
    assert not d.engine._idle_close(rt, T0 + 45)  # the worker is woken instead
    assert rt.buckets.closed_upto == T0 + 30 and rt.idle is None
    evaluated: list[int] = []
    real = d.engine._evaluate_bucket

    async def evaluate(job: Any, closed: Any) -> None:
        evaluated.append(closed.start)
        await real(job, closed)

    d.engine._evaluate_bucket = evaluate  # type: ignore[method-assign]
    await run_timers(d, clock, T0 + 45)
    # the handed bucket first; the next one (empty, the job idle again) closes by the timer's idle close
    assert evaluated == [T0 + 20] and rt.ready == []
    assert rt.buckets.closed_upto == T0 + 40 and rt.state.last_bucket == T0 + 30


async def test_a_job_with_a_stabilization_window_goes_idle_with_the_state_a_step_of_every_bucket_gives(
    start_daemon: DaemonFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A target rule has a scale-in stabilization window: every step records the held count at its time
    (`recent`), so the state changed at every empty bucket and such a job never went idle (10,000 of them
    idle cost 13-15 % of a core, bench/idle.py). Now the idle close moves that time itself: the job stops
    stepping and writing, and its state is the one a daemon that steps every empty bucket has."""
    target = doc(rules=[{"name": "qps", "type": "target", "metric": "proc.qps", "target": 500}])
    runs: dict[str, Any] = {}
    for idle in (True, False):
        clock = Clock(T0 + 1)
        d, c = await start_daemon(clock=clock, store={"url": f"sqlite:///idle-{idle}.db"})
        if not idle:
            monkeypatch.setattr(d.engine, "_idle_close", lambda rt, now: False)
        assert (await c.call("POST", "/api/v1/jobs", target))[0] == 201
        rt = d.engine.jobs[JOB]
        commits = count_commits(d)
        for k in range(1, 9):
            await run_timers(d, clock, T0 + 10 * k + 5)
            await d.engine.flush()  # the flusher's turn after each bucket
        runs[str(idle)] = (rt.steps, commits, rt.state.to_json(), rt.state.recent)
        await d.stop()
    idle_steps, idle_commits, idle_state, recent = runs["True"]
    all_steps, all_commits, all_state, _ = runs["False"]
    assert recent and recent[-1][0] == T0 + 85  # the held count, at the last close (bucket T0 + 70)
    assert idle_state == all_state  # the same state as stepping every empty bucket
    assert all_steps == 8 and idle_steps <= 3  # idle from the third bucket on
    assert len(all_commits) == 8 and len(idle_commits) <= 3  # a state write a bucket; none while idle
