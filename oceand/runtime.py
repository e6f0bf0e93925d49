"""The process's lifecycle, for any set of components: an AsyncExitStack, a TaskGroup, a bounded stop, signals.

A component is started by the wiring (oceand/daemon.py) and registers how it stops, in the order it
starts: `on_stop` pushes a closing step on the exit stack, `enter` enters an async context manager on it,
`spawn` runs a root task in the TaskGroup (entered on the stack too, at `start_tasks`). `stop` unwinds
the stack: the shutdown order is the reverse of the registration order, never hand-written.

The stop is bounded (ARCHITECTURE property 6, docs/operations.md "Signals and lifecycle"): it has
`budget` seconds in all (`stop_timeout`), each step gets its `share` of the budget and is cut off when
that runs out (log event `stop_cut`), and no step runs past the deadline. A step that fails is logged and
the others still run. Root tasks end by themselves once `stopping` is set; one that fails is logged
(`root task ... failed`) and kept in `failures`, and the others go on.

Signals only set flags: SIGTERM and SIGINT stop, SIGHUP calls `on_reload` (`serve`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

log = logging.getLogger("oceand")
T = TypeVar("T")
Step = Callable[[float], Awaitable[Any]]  # a closing step, given the seconds it may take


class Runtime:
    def __init__(self, budget: Callable[[], float]) -> None:
        self.budget = budget  # seconds a stop may take, read when the stop begins (reload may change it)
        self.stopping = asyncio.Event()
        self.tasks: list[asyncio.Task[Any]] = []
        self.failures: list[tuple[str, BaseException]] = []
        self._stack = contextlib.AsyncExitStack()
        self._group: asyncio.TaskGroup | None = None
        self._deadline: float | None = None
        self._stopped = False

    # ---- registering, in start order -------------------------------------------------------------
    async def enter(self, cm: AbstractAsyncContextManager[T]) -> T:
        return await self._stack.enter_async_context(cm)

    def on_stop(self, what: str, step: Step, share: float = 1.0, *, cut: bool = True) -> None:
        """At stop, run `step(seconds)` with `share` of the budget (never past the deadline), cut off
        when that runs out (`cut=False`: the step keeps to `seconds` itself, e.g. to settle what it
        cancelled); unwound in the reverse order of registration."""

        async def bounded() -> None:
            seconds = self.left(share)
            try:
                async with asyncio.timeout(max(0.05, seconds) if cut else None):
                    await step(seconds)
            except TimeoutError:
                log.warning("stopping: %s cut off after %.1fs", what, seconds, extra={"event": "stop_cut"})
            except Exception:
                log.exception("stopping: %s failed", what, extra={"event": "stop_failed"})

        self._stack.push_async_callback(bounded)

    async def start_tasks(self, share: float = 0.1) -> None:
        """Enter the TaskGroup of root tasks. At stop they get `share` of the budget to end by themselves
        (`stopping` is set first); those still running are cancelled."""
        self._group = await self.enter(asyncio.TaskGroup())

        async def wind_down(seconds: float) -> None:
            if self.tasks:
                _, late = await asyncio.wait(self.tasks, timeout=seconds)
                for t in late:
                    t.cancel()

        self.on_stop("the root tasks", wind_down, share, cut=False)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A root task: a failure is logged and kept in `failures`, and cancels nothing else."""
        if self._group is None:
            raise RuntimeError("spawn before start_tasks")

        async def guarded() -> None:
            try:
                await coro
            except Exception as e:
                self.failures.append((name, e))
                log.error("root task %s failed: %r", name, e, exc_info=e)

        task = self._group.create_task(guarded(), name=name)
        self.tasks.append(task)
        return task

    # ---- stopping --------------------------------------------------------------------------------
    def left(self, share: float = 1.0) -> float:
        """Seconds for the next step: `share` of the budget, never past the deadline."""
        loop = asyncio.get_running_loop()
        if self._deadline is None:
            return share * self.budget()
        return max(0.0, min(self._deadline - loop.time(), share * self.budget()))

    @property
    def stopped(self) -> bool:
        """`stop` has begun (it runs once)."""
        return self._stopped

    async def stop(self) -> None:
        """Set `stopping`, then unwind the stack within the budget. Once only; later calls return."""
        if self._stopped:
            return
        self._stopped = True
        self._deadline = asyncio.get_running_loop().time() + self.budget()
        self.stopping.set()
        await self._stack.aclose()

    # ---- signals ---------------------------------------------------------------------------------
    async def serve(self, on_reload: Callable[[], Awaitable[Any]]) -> None:
        """Until SIGTERM or SIGINT (or `stopping` set otherwise): SIGHUP runs `on_reload`, one at a time."""
        loop = asyncio.get_running_loop()
        reload_requested = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, reload_requested.set)
        try:
            async for _ in _either(reload_requested, self.stopping):
                reload_requested.clear()
                await on_reload()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)


async def _either(wake: asyncio.Event, stop: asyncio.Event) -> AsyncIterator[None]:
    """Yield each time `wake` is set, until `stop` is."""
    while not stop.is_set():
        waiter = asyncio.ensure_future(wake.wait())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stopper.cancel()
        if wake.is_set() and not stop.is_set():
            yield None
