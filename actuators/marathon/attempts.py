"""The record of one decision's writes: each PUT is an `Attempt`, written durably through the decision's
`AttemptLog` before it is sent (issue 18; actuators/marathon/apply.py sends and settles them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

PENDING, APPLIED, FAILED, ABANDONED = "pending", "applied", "failed", "abandoned"
ATTEMPT_STATUSES = (PENDING, APPLIED, FAILED, ABANDONED)


@dataclass(slots=True)
class Attempt:
    """One PUT of one decision, recorded before it is sent (the same shape as HA.md's intent row)."""

    n: int  # 1, 2, ... within the decision
    to_count: int
    sent_at: float  # wall clock, taken before the record is written: the PUT cannot land earlier
    deadline: float  # wall clock: the client stops waiting for the reply by then
    baseline: float | None = None  # the app's lastScalingAt as known before the PUT (Marathon's clock)
    status: str = PENDING  # pending (outcome unknown), applied, failed (not taken), abandoned
    detail: dict[str, Any] = field(default_factory=dict)  # deployment_id, version, error, evidence...
    epoch: int | None = None  # several daemons: the lease epoch its intent was fenced by (as stored)

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt": self.n,
            "to_count": self.to_count,
            "sent_at": self.sent_at,
            "deadline": self.deadline,
            "baseline": self.baseline,
            "status": self.status,
            "detail": self.detail,
        }

    @staticmethod
    def from_json(d: dict[str, Any]) -> Attempt:
        return Attempt(
            int(d["attempt"]),
            int(d["to_count"]),
            float(d["sent_at"]),
            float(d["deadline"]),
            None if d.get("baseline") is None else float(d["baseline"]),
            str(d.get("status", PENDING)),
            dict(d.get("detail") or {}),
            None if d.get("epoch") is None else int(d["epoch"]),
        )


Record = Callable[[Attempt], Awaitable[None]]


class AttemptLog:
    """The attempts of one decision. `record` writes an attempt durably (insert or update); without
    one the log lives in memory only. `decision` (the decision id) goes into the PUT's headers."""

    def __init__(
        self, attempts: Iterable[Attempt] = (), record: Record | None = None, decision: int | None = None
    ) -> None:
        self.attempts = sorted(attempts, key=lambda a: a.n)
        self.record = record
        self.decision = decision
        self.epoch: int | None = None  # several daemons: the lease epoch the last attempt was fenced by

    def unresolved(self) -> list[Attempt]:
        return [a for a in self.attempts if a.status == PENDING]

    async def begin(
        self, to_count: int, sent_at: float, deadline: float, baseline: float | None = None
    ) -> Attempt:
        """Record a new attempt (pending) before its PUT; the PUT must not go out if this raises."""
        a = Attempt(self.attempts[-1].n + 1 if self.attempts else 1, to_count, sent_at, deadline, baseline)
        if self.record is not None:
            await self.record(a)
        self.attempts.append(a)
        return a

    async def resolve(self, attempts: list[Attempt], status: str, **detail: Any) -> None:
        for a in attempts:
            a.status = status
            a.detail.update(detail)
            if self.record is not None:
                await self.record(a)

    def headers(self, a: Attempt) -> dict[str, str]:
        h = {"X-Oceand-Attempt": str(a.n)}
        if self.decision is not None:
            h["X-Oceand-Decision"] = str(self.decision)
        if self.epoch is not None:
            h["X-Oceand-Epoch"] = str(self.epoch)
        return h
