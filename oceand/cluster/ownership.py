"""The engine's seam to the cluster (issue 14): `Engine(ownership=...)`, None for a single daemon.

- `gate(job)`: None when the job's worker may act (its shard is held, renewed within stop_acting_after by
  the local clock, not draining), else the reason code (`intent.gate`);
- `begin_attempt(...)`: the fenced intent insert before every Marathon write (`LeaseManager.fenced_attempt`)
  and the local budget check right after it (the write follows with no other await: `AttemptLog.begin`
  then `client.scale`). Raises a StoreError subclass (nothing is sent) or DuplicateDecision;
- `acquired_at(job)`: when this daemon acquired the job's shard (database clock), for `takeover_gap`;
- `describe(job)`: shard, owner and lease epoch for the job's status, and whether this daemon acts on it;
- `on_acquired`: the engine's callback that reloads a taken-over shard's jobs (state and pending writes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from oceand.cluster import intent
from oceand.cluster.lease import Held, LeaseManager
from oceand.metrics import Metrics
from oceand.store.base import Fence, Store, StoreError, attempt_row


class NotOwner(StoreError):
    """The job's shard may not be acted on by this daemon now (the reason code is in `reason`)."""

    def __init__(self, job: str, reason: str) -> None:
        super().__init__(f"job {job}: not acting ({reason})")
        self.reason = reason


class OverBudget(StoreError):
    """The intent was recorded but the local clock passed actuation_budget before the write: the
    attempt is marked abandoned and nothing is sent."""


class Ownership:
    def __init__(
        self,
        leases: LeaseManager,
        store: Store,
        *,
        metrics: Metrics | None = None,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.leases = leases
        self.store = store
        self.metrics = metrics
        self.mono = mono
        self.on_acquired: Callable[[int, Held], None] | None = None
        leases.on_acquired.append(self._acquired)

    def _acquired(self, shard: int, held: Held) -> None:
        if self.on_acquired is not None:
            self.on_acquired(shard, held)

    @property
    def takeover_grace(self) -> float:
        return self.leases.s.takeover_grace

    def shard(self, job: str) -> int:
        return self.leases.shard_of(job)

    def gate(self, job: str) -> str | None:
        s = self.shard(job)
        h = self.leases.held.get(s)
        valid = h is not None and intent.may_act(h.valid_until, self.mono())
        return intent.gate(h is not None, valid, h is not None and h.draining, False)

    def acquired_at(self, job: str) -> float | None:
        h = self.leases.held.get(self.shard(job))
        return None if h is None else h.acquired_at

    def describe(self, job: str) -> dict[str, Any]:
        s = self.shard(job)
        owner, epoch = self.leases.owner_of(s)
        reason = self.gate(job)
        # owner/this_daemon: the lease as last read (stale while MySQL does not answer); acting: whether
        # this daemon may act on the job now by its own clock, and if not, why (the gate's reason code)
        return {
            "shard": s,
            "owner": owner,
            "epoch": epoch,
            "this_daemon": owner == self.leases.me,
            "acting": reason is None,
            "not_acting": reason,
        }

    async def begin_attempt(
        self, decision_id: int, job: str, decision_key: str, attempt: dict[str, Any], now: float
    ) -> int:
        """Insert the attempt as the job's fenced intent; returns the lease epoch it was fenced by."""
        reason = self.gate(job)
        s = self.shard(job)
        h = self.leases.held.get(s)
        if reason is not None or h is None:
            raise NotOwner(job, reason or intent.NOT_OWNER)
        row = attempt_row(decision_id, job, attempt)
        t0 = self.mono()
        await self.leases.fenced_attempt(s, h.epoch, decision_id, job, decision_key, row, now)
        self.count(intent.PENDING)
        if not intent.in_budget(t0, self.mono(), self.leases.s.actuation_budget):
            if self.metrics is not None:
                self.metrics.intent_abandoned.labels("budget").inc()
            late = dict(
                attempt, status=intent.ABANDONED, detail={**attempt.get("detail", {}), "error": "budget"}
            )
            await self.record_attempt(decision_id, job, decision_key, late, now)
            raise OverBudget(f"job {job}: the write was not sent within actuation_budget of its intent")
        return h.epoch

    async def record_attempt(
        self, decision_id: int, job: str, decision_key: str, attempt: dict[str, Any], now: float
    ) -> None:
        """Write an attempt's outcome fenced by this daemon's lease epoch of the job's shard (HA.md §6.6
        step 7): Fenced (nothing written) when another daemon holds it now or it is not held here."""
        s = self.shard(job)
        h = self.leases.held.get(s)
        if h is None:
            raise NotOwner(job, intent.NOT_OWNER)
        row = attempt_row(decision_id, job, attempt)
        await self.leases.fenced_resolve(s, h.epoch, decision_id, job, decision_key, row, now)
        self.count(str(attempt.get("status")))

    def fence(self, job: str) -> Fence:
        """The fence of the job's outcome writes: its shard at the epoch held here (-1 when not held: no
        lease row has it, so the write is refused)."""
        s = self.shard(job)
        h = self.leases.held.get(s)
        return Fence(s, -1 if h is None else h.epoch, self.leases.me)

    def count(self, status: str) -> None:
        """oceand_intents_total{status}: an intent this daemon inserted (pending) or resolved."""
        if self.metrics is not None:
            self.metrics.intents.labels(status).inc()

    def outcome_fenced(self) -> None:
        """oceand_outcome_writes_fenced_total: an outcome write refused by the fence (FencedWrite)."""
        if self.metrics is not None:
            self.metrics.outcomes_fenced.inc()

    def epoch(self, job: str) -> int | None:
        """The lease epoch this daemon holds the job's shard by, None when it does not hold it."""
        h = self.leases.held.get(self.shard(job))
        return None if h is None else h.epoch
