"""Set an app's instance count until Marathon takes it, or a deadline passes (PRODUCT §4.1).

- 409 (locked by a deployment): wait for that deployment (`wait_deployment`, which the cluster watcher
  provides; without one, poll GET /v2/deployments), then send again. With `force`, the second PUT carries
  `force=true` (cancelling the deployment in the way) instead of waiting — once.
- Transient (5xx, timeouts, connection errors on every URL): retry with exponential backoff and jitter
  until `deadline`, then raise the last Transient.
- Permanent (other 4xx, app gone): raise at once.

Idempotency: before every retry the app is read again; when its `instances` already equals the target
(an earlier PUT did land, e.g. its reply was lost) no second PUT is sent and the result says
`already_applied`. Time comes in through `clock` and `sleep`, so tests run on a fake clock.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from actuators.marathon import Locked, MarathonClient, ScaleResult, Transient

WaitDeployment = Callable[[str, float], Awaitable[None]]


@dataclass(frozen=True)
class Backoff:
    """Delay before retry `attempt` (0-based): initial × factor^attempt, capped at `maximum`, then
    scaled by a random factor in [1 − jitter, 1] ("equal jitter" for jitter 0.5)."""

    initial: float = 0.2
    factor: float = 2.0
    maximum: float = 10.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.factor < 1 or self.maximum < self.initial or not 0 <= self.jitter <= 1:
            raise ValueError(
                f"bad backoff {self}: want initial > 0, factor >= 1, maximum >= initial, 0 <= jitter <= 1"
            )

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        base = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        return base * (1.0 - self.jitter * rand())


async def poll_deployments(
    client: MarathonClient,
    app_id: str,
    timeout: float,
    *,
    interval: float = 1.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Wait until no deployment in GET /v2/deployments affects `app_id`; TimeoutError after `timeout`."""
    end = clock() + timeout
    while True:
        try:
            deps = await client.deployments()
            if not any(app_id in (d.get("affectedApps") or []) for d in deps):
                return
        except Transient:
            pass
        if clock() + interval > end:
            raise TimeoutError(f"{app_id}: deployment still running after {timeout}s")
        await sleep(interval)


async def set_instances(
    client: MarathonClient,
    app_id: str,
    instances: int,
    *,
    force: bool,
    wait_deployment: WaitDeployment | None,
    deadline: float,
    backoff: Backoff = Backoff(),  # frozen: one shared default is safe
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    rand: Callable[[], float] = random.random,
) -> ScaleResult:
    """PUT `{"instances": instances}` until it is taken; `deadline` is a `clock()` reading."""
    attempt = 0  # transient failures so far (drives the backoff)
    locked_in_a_row = 0
    forced = False
    recheck = False
    while True:
        if recheck:
            try:
                app = await client.get_app(app_id)
            except Transient as e:
                attempt = await _pause(e, attempt, deadline, backoff, sleep, clock, rand)
                continue
            if app.instances == instances:
                dep = app.deployments[0] if app.deployments else None
                return ScaleResult(dep, app.version, client.active_url, already_applied=True)
        recheck = True
        try:
            return await client.scale(app_id, instances, force=forced)
        except Locked as e:
            locked_in_a_row += 1
            if force and not forced:
                forced = True  # PUT again at once with force=true, cancelling the deployment in the way
                continue
            if clock() >= deadline:
                raise
            if locked_in_a_row > 1:  # the wait returned but the app is still locked: do not spin
                attempt = await _pause(e, attempt, deadline, backoff, sleep, clock, rand)
            try:
                if wait_deployment is not None:
                    await wait_deployment(app_id, max(0.0, deadline - clock()))
                else:
                    await poll_deployments(
                        client, app_id, max(0.0, deadline - clock()), sleep=sleep, clock=clock
                    )
            except TimeoutError:
                raise Locked(f"{e} (still locked at the deadline)", e.deployments, url=e.url) from e
        except Transient as e:
            locked_in_a_row = 0
            attempt = await _pause(e, attempt, deadline, backoff, sleep, clock, rand)


async def _pause(
    error: Transient,
    attempt: int,
    deadline: float,
    backoff: Backoff,
    sleep: Callable[[float], Awaitable[None]],
    clock: Callable[[], float],
    rand: Callable[[], float],
) -> int:
    """Sleep before the next try (at most until the deadline, for one last try), or raise `error` once
    the deadline has passed."""
    now = clock()
    if now >= deadline:
        raise error
    await sleep(min(backoff.delay(attempt, rand), deadline - now))
    return attempt + 1
