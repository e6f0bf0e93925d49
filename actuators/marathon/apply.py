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

One write per decision (issue 18): every PUT is an `Attempt`, recorded through the decision's
`AttemptLog` (durably, by the engine) *before* it is sent. A PUT whose outcome is unknown (no reply in
time, the connection dropped, a 500/504, the daemon killed or stopped mid-call) stays `pending`, and
nothing is sent again until `settle` has decided whether it landed:

- it reads GET /v2/deployments, then the app (its `deployments` and `versionInfo.lastScalingAt`);
- the attempt landed when `lastScalingAt` >= the earliest unknown attempt's `sent_at` − `skew`, or a
  deployment of the app started then or later (a deployment the app shows that the earlier
  deployments read did not list started after that read, so after the PUT), or the app already has the
  attempt's count;
- with no such evidence it polls until the last unknown attempt's `deadline` (when the client stopped
  waiting for the reply) + `grace` has passed, then takes the attempts as not landed (`abandoned`), and
  only then may a new PUT go out.

`sent_at` is the daemon's wall clock, `lastScalingAt` Marathon's: `skew` is the clock difference
allowed between them. Erring either way is bounded: a Marathon clock behind ours by more than `skew`
hides a landed PUT only until the instance count shows it; a clock ahead takes a foreign scale within
`skew` before ours as ours, and the decision is settled as applied with the count observed (not sent).
A Marathon that takes a PUT more than `grace` after the client gave up on it can still see it twice.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from actuators.marathon.actuation import AppView, Outcome, Settled
from actuators.marathon.attempts import ABANDONED, APPLIED, FAILED, Attempt, AttemptLog
from actuators.marathon.client import MarathonClient, ScaleResult
from actuators.marathon.errors import AppNotFound, Locked, Permanent, Transient
from actuators.marathon.model import AppState, parse_time
from actuators.marathon.watcher import ClusterWatcher
from policies.backoff import Backoff
from policies.document import JobDocument
from policies.types import Decision

WaitDeployment = Callable[[str, float], Awaitable[None]]
SKEW = 2.0  # seconds: daemon clock vs Marathon's, when comparing lastScalingAt with sent_at
GRACE = 5.0  # seconds after a PUT's reply deadline during which Marathon may still take it
POLL = 0.25  # seconds between reads while settling
PUT_MARGIN = 0.05  # seconds: a PUT's budget ends this long before its attempt's deadline
APPLY_BACKOFF = Backoff(initial=0.2, factor=2.0, maximum=10.0, jitter=0.5)  # between tries of one write


def landing_evidence(
    app: AppState, deployments: list[dict[str, Any]], attempts: list[Attempt], skew: float
) -> str | None:
    """Why one of `attempts` (PUTs of unknown outcome, sent before `deployments` and then `app` were
    read) must be taken as landed; None when nothing shows it did. A scaling counts when Marathon
    stamped it no earlier than the first attempt's `sent_at` − `skew` and after every scaling known
    before the attempts (their `baseline`, Marathon's own clock: an earlier decision's write that
    landed just before is not mistaken for this one)."""
    since = min(a.sent_at for a in attempts) - skew
    baselines = [a.baseline for a in attempts]
    base = None if None in baselines else min(b for b in baselines if b is not None)

    def after_send(t: float | None) -> bool:
        return t is not None and t >= since and (base is None or t > base)

    if after_send(app.last_scaling_at):
        return "lastScalingAt"
    listed: dict[str, float | None] = {}
    for d in deployments:
        if app.id in (d.get("affectedApps") or []):
            listed[str(d.get("id"))] = parse_time(d.get("version"))
    for dep_id in app.deployments:
        if dep_id not in listed:
            return "deployment"  # started after the deployments read, which came after the PUT
    if any(after_send(version) for version in listed.values()):
        return "deployment"
    if app.instances == attempts[-1].to_count:
        return "instances"
    return None


@dataclass(frozen=True, slots=True)
class Landing:
    landed: bool
    evidence: str | None
    app: AppState


async def settle(
    client: MarathonClient,
    app_id: str,
    log: AttemptLog,
    *,
    skew: float = SKEW,
    grace: float = GRACE,
    poll: float = POLL,
    deadline: float | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> Landing | None:
    """Decide whether the log's unknown attempts landed (see the module docstring) and record it;
    None when there are none. Raises Transient (maybe_applied) when `deadline` (a `clock()` reading)
    comes before the answer: the attempts stay pending for the next try."""
    pending = log.unresolved()
    if not pending:
        return None
    window_end = max(a.deadline for a in pending) + grace
    while True:
        deployments = await client.deployments()
        app = await client.get_app(app_id)
        evidence = landing_evidence(app, deployments, pending, skew)
        if evidence is not None:
            await log.resolve(pending, APPLIED, evidence=evidence, observed=app.instances)
            return Landing(True, evidence, app)
        left = window_end - wall()
        if left <= 0:
            await log.resolve(pending, ABANDONED, observed=app.instances)
            return Landing(False, None, app)
        step = min(poll, left)
        if deadline is not None and clock() + step > deadline:
            raise Transient(
                f"{app_id}: whether attempt {pending[-1].n} landed is not known before the apply"
                f" deadline (it is until {left:.1f}s from now); settled on the next try",
                maybe_applied=True,
            )
        await sleep(step)


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
    backoff: Backoff = APPLY_BACKOFF,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    rand: Callable[[], float] = random.random,
    log: AttemptLog | None = None,
    skew: float = SKEW,
    grace: float = GRACE,
    poll: float = POLL,
    wall: Callable[[], float] = time.time,
    baseline: float | None = None,
) -> ScaleResult:
    """PUT `{"instances": instances}` until it is taken; `deadline` is a `clock()` reading. Every PUT
    is recorded in `log` first; unknown attempts (earlier ones in `log` too) are settled before any
    other PUT goes out. `baseline`: the app's `lastScalingAt` as known before this apply (Unix
    seconds), so that a scaling already known is never taken for one of these PUTs."""
    log = log if log is not None else AttemptLog()
    attempt = 0  # transient failures so far (drives the backoff)
    locked_in_a_row = 0
    forced = False
    recheck = False
    while True:
        if log.unresolved():
            try:
                landing = await settle(
                    client, app_id, log, skew=skew, grace=grace, poll=poll, deadline=deadline,
                    sleep=sleep, clock=clock, wall=wall,
                )  # fmt: skip
            except Transient as e:
                if e.maybe_applied:
                    raise  # the apply deadline came first: the attempts stay pending
                attempt = await _pause(e, attempt, deadline, backoff, sleep, clock, rand)
                continue
            assert landing is not None
            if landing.landed:
                app = landing.app
                dep = app.deployments[0] if app.deployments else None
                return ScaleResult(dep, app.version, client.active_url, True, landing.evidence, app.instances)
            recheck = False  # settle has just read the app: it does not have the count
            baseline = landing.app.last_scaling_at
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
        sent_at = wall()
        sent = await log.begin(instances, sent_at, sent_at + write_window(client), baseline)
        # the PUT is never in flight past its attempt's deadline (the time a new owner's quiet period
        # counts from): its timeout is what is left of it once the attempt is recorded (a slow intent
        # insert shortens it), less a margin
        left = sent.deadline - wall() - PUT_MARGIN
        if left <= 0:
            await log.resolve([sent], ABANDONED, error="not sent: no time left before its deadline")
            attempt = await _pause(
                Transient(f"{app_id}: the write's record took its whole window; not sent"),
                attempt, deadline, backoff, sleep, clock, rand,
            )  # fmt: skip
            continue
        try:
            result = await client.scale(
                app_id, instances, force=forced, headers=log.headers(sent), budget=left
            )
        except Locked as e:
            await log.resolve([sent], FAILED, error=str(e))
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
            if e.maybe_applied:
                sent.deadline = min(sent.deadline, wall())  # the client has stopped waiting for it
            else:
                await log.resolve([sent], FAILED, error=str(e))
            locked_in_a_row = 0
            attempt = await _pause(e, attempt, deadline, backoff, sleep, clock, rand)
        except Permanent as e:
            await log.resolve([sent], FAILED, error=str(e))
            raise
        else:
            await log.resolve([sent], APPLIED, deployment_id=result.deployment_id, version=result.version)
            return result


def write_window(client: MarathonClient) -> float:
    """Seconds after a PUT is sent by which the client has stopped waiting for its reply: `timeout`
    per URL (a PUT moves on to the next URL only after a reply or failure that proves it was not taken
    there, which can itself take up to `timeout`)."""
    return client.cfg.timeout * len(client.cfg.urls)


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


APPLY_DEADLINE = 30.0  # seconds one apply may take (409 waits and retries) before the engine backs off


class MarathonActuator:
    def __init__(
        self,
        client: MarathonClient,
        watcher: ClusterWatcher,
        apply_deadline: float = APPLY_DEADLINE,
        clock_skew: float = 2.0,
        settle_grace: float = 5.0,
    ) -> None:
        self.client = client
        self.watcher = watcher
        self.apply_deadline = apply_deadline
        self.clock_skew = clock_skew
        self.settle_grace = settle_grace
        self._scaled_at: dict[str, float] = {}  # app -> lastScalingAt of the newest write seen to land

    def _baseline(self, app_id: str) -> float | None:
        """The newest `lastScalingAt` of the app known now: the watcher's copy or the newest write of
        ours seen to land, whichever is later."""
        app = self.watcher.app(app_id)
        known = [t for t in (app.last_scaling_at if app else None, self._scaled_at.get(app_id)) if t]
        return max(known) if known else None

    def view(self, doc: JobDocument) -> AppView:
        w = self.watcher
        app = w.app(doc.target.app)
        if app is None:
            return AppView(instances=0, ready=0, running=None, known=False)
        return _view(app, w.deployment_started_at(doc.target.app), w.startup.p90(doc.target.app))

    async def refresh(self, doc: JobDocument) -> AppView:
        w = self.watcher
        app = await w.refresh(doc.target.app)
        return _view(app, w.deployment_started_at(doc.target.app), w.startup.p90(doc.target.app))

    async def settle(self, doc: JobDocument, attempts: AttemptLog) -> Settled:
        """Whether the unresolved attempts landed (GET /v2/deployments and the app; may wait out their
        landing window, bounded by `apply_deadline`)."""
        landing = await settle(
            self.client,
            doc.target.app,
            attempts,
            skew=self.clock_skew,
            grace=self.settle_grace,
            deadline=time.monotonic() + self.apply_deadline,
        )
        if landing is None:
            return Settled(False, None, self.view(doc).instances)
        if landing.landed:
            self._landed(doc.target.app, landing.app.last_scaling_at)
            self.watcher.refresh_soon(doc.target.app)
        return Settled(landing.landed, landing.evidence, landing.app.instances)

    async def apply(
        self, doc: JobDocument, decision: Decision, attempts: AttemptLog | None = None
    ) -> Outcome:
        result: dict[str, Any]
        try:
            res = await set_instances(
                self.client,
                doc.target.app,
                decision.desired,
                force=doc.target.force,
                wait_deployment=self.watcher.wait_deployment,
                deadline=time.monotonic() + self.apply_deadline,
                log=attempts,
                skew=self.clock_skew,
                grace=self.settle_grace,
                baseline=self._baseline(doc.target.app),
            )
        except AppNotFound as e:
            return Outcome("failed", {"error": str(e), "status": e.status, "url": e.url}, permanent=True)
        except Permanent as e:
            return Outcome("failed", {"error": str(e), "status": e.status, "url": e.url}, permanent=True)
        except Transient as e:
            result = {"error": str(e), "url": e.url}
            if e.maybe_applied:
                result["unknown"] = True  # may have landed: settled before anything is sent again
            return Outcome("failed", result)
        self._landed(doc.target.app, parse_time(res.version))
        self.watcher.refresh_soon(doc.target.app)
        result = {"deployment_id": res.deployment_id, "version": res.version, "url": res.url}
        if res.already_applied:
            result["already_applied"] = True
        if res.landed is not None:
            result.update(landed=res.landed, observed=res.observed)
        return Outcome("applied", result)

    def _landed(self, app_id: str, scaled_at: float | None) -> None:
        if scaled_at is not None and scaled_at > self._scaled_at.get(app_id, 0.0):
            self._scaled_at[app_id] = scaled_at


def _view(app: AppState, deployment_started_at: float | None, startup: float | None) -> AppView:
    return AppView(
        instances=app.instances,
        ready=app.ready,
        running=app.running,
        deployment_started_at=deployment_started_at if app.deployments else None,
        startup=startup,
    )
