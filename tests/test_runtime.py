"""The runtime (oceand/runtime.py): the shutdown order follows the registration stack; every step runs
within its share of the budget, a failing or hanging step does not keep the later ones from running;
root tasks run in a TaskGroup, end when `stopping` is set, and one that fails cancels nothing else."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from oceand.runtime import Runtime


async def test_steps_unwind_in_the_reverse_order_of_registration() -> None:
    rt = Runtime(budget=lambda: 5.0)
    done: list[str] = []

    def step(name: str) -> Callable[[float], Awaitable[None]]:
        async def run(seconds: float) -> None:
            done.append(name)

        return run

    for name in ("store", "api", "engine", "listeners"):
        rt.on_stop(name, step(name))
    await rt.stop()
    assert done == ["listeners", "engine", "api", "store"]
    assert rt.stopping.is_set()


async def test_a_failing_step_is_logged_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    rt = Runtime(budget=lambda: 5.0)
    done: list[str] = []

    async def first(seconds: float) -> None:
        done.append("first")

    async def broken(seconds: float) -> None:
        raise RuntimeError("boom")

    rt.on_stop("first", first)
    rt.on_stop("broken", broken)
    await rt.stop()
    assert done == ["first"]
    assert [r.getMessage() for r in caplog.records if getattr(r, "event", "") == "stop_failed"] == [
        "stopping: broken failed"
    ]


@pytest.mark.looptime
async def test_a_hanging_step_is_cut_at_its_share_and_the_later_steps_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """On the loop's fake clock (looptime): the default 20 s budget, a step that never ends."""
    loop = asyncio.get_running_loop()
    rt = Runtime(budget=lambda: 20.0)
    given: list[tuple[str, float, float]] = []  # (step, seconds given, loop time it began)

    def step(name: str, hang: bool) -> Callable[[float], Awaitable[None]]:
        async def run(seconds: float) -> None:
            given.append((name, seconds, loop.time()))
            if hang:
                await asyncio.Event().wait()

        return run

    rt.on_stop("store", step("store", hang=False))
    rt.on_stop("the LB loops", step("the LB loops", hang=True), share=0.6)
    rt.on_stop("the listeners", step("the listeners", hang=True), share=0.6)
    await rt.stop()
    assert [(name, round(s, 6), round(t, 6)) for name, s, t in given] == [
        ("the listeners", 12.0, 0.0),
        ("the LB loops", 8.0, 12.0),  # 0.6 of the budget, but only 8 s are left
        ("store", 0.0, 20.0),  # past the deadline: runs with nothing left (cut at the 0.05 s floor)
    ]
    assert [r.getMessage() for r in caplog.records if getattr(r, "event", "") == "stop_cut"] == [
        "stopping: the listeners cut off after 12.0s",
        "stopping: the LB loops cut off after 8.0s",
    ]


async def test_root_tasks_end_with_stopping_and_a_failure_cancels_nothing_else(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="oceand")
    rt = Runtime(budget=lambda: 5.0)
    await rt.start_tasks()
    failed = asyncio.Event()

    async def fails() -> None:
        failed.set()
        raise ValueError("bad")

    async def runs_until_stop() -> str:
        await rt.stopping.wait()
        return "ended by itself"

    survivor = rt.spawn(runs_until_stop(), "survivor")
    rt.spawn(fails(), "fails")
    await failed.wait()
    await asyncio.wait({rt.tasks[1]})
    assert not survivor.done()
    await rt.stop()
    assert survivor.done() and not survivor.cancelled()
    assert [name for name, _ in rt.failures] == ["fails"]
    assert any("root task fails failed" in r.getMessage() for r in caplog.records)


@pytest.mark.looptime
async def test_a_root_task_that_ignores_stopping_is_cancelled_at_its_share() -> None:
    loop = asyncio.get_running_loop()
    rt = Runtime(budget=lambda: 20.0)
    await rt.start_tasks(share=0.1)
    stuck = rt.spawn(asyncio.Event().wait(), "stuck")
    await rt.stop()
    assert stuck.cancelled()
    assert loop.time() == pytest.approx(2.0)  # 0.1 of the budget, on the fake clock
    assert rt.failures == []


async def test_stop_runs_once() -> None:
    rt = Runtime(budget=lambda: 5.0)
    calls: list[float] = []

    async def step(seconds: float) -> None:
        calls.append(seconds)

    rt.on_stop("step", step)
    await rt.stop()
    await rt.stop()
    assert len(calls) == 1
