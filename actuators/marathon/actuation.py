"""Where decisions go: the actuator seam between the engine and Marathon (or a recording stand-in).

`view` answers from memory what the engine needs to build an observation (instance count, ready
instances, a running deployment); `apply` writes an absolute count and says how it went, recording each
write in the decision's `AttemptLog` before it is sent; `settle` decides whether a decision's writes of
unknown outcome (a crash, a timeout, a stop mid-call) landed, before anything is sent again. The recording
actuator keeps a simulated app per job: it serves tests, and any job whose Marathon cluster is not
configured (such jobs run dry, see docs/operations.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from actuators.marathon.attempts import ABANDONED, APPLIED, Attempt, AttemptLog
from policies.document import JobDocument
from policies.types import Decision


@dataclass(slots=True)
class AppView:
    instances: int  # the app's desired count as Marathon holds it
    ready: int  # running and healthy tasks
    running: int | None  # running tasks (None = unknown: buckets wait for the previous bucket's reporters)
    deployment_started_at: float | None = None
    known: bool = True  # False until the app has been read at least once
    startup: float | None = None  # launch -> healthy, p90 of the app's recent tasks (None: not known yet)


@dataclass(slots=True)
class Outcome:
    status: str  # "applied" | "failed"
    result: dict[str, Any] = field(default_factory=dict)
    permanent: bool = (
        False  # a failure that retrying cannot fix (Marathon 4xx): stop until the document changes
    )


@dataclass(slots=True)
class Settled:
    """What `settle` found: whether a write of unknown outcome landed, why, and the app's count."""

    landed: bool
    evidence: str | None
    instances: int


class Actuator(Protocol):
    def view(self, doc: JobDocument) -> AppView: ...

    async def apply(
        self, doc: JobDocument, decision: Decision, attempts: AttemptLog | None = None
    ) -> Outcome:
        """Write `decision.desired`; every write is recorded in `attempts` before it is sent."""
        ...

    async def settle(self, doc: JobDocument, attempts: AttemptLog) -> Settled:
        """Decide (and record in `attempts`) whether its unresolved writes landed; raises like `refresh`
        when the app cannot be read."""
        ...

    async def refresh(self, doc: JobDocument) -> AppView: ...


class RecordingActuator:
    """Applies decisions to an in-memory app per job and records every call (tests, dry-run daemons)."""

    def __init__(self) -> None:
        self.instances: dict[str, int] = {}
        self.calls: list[tuple[str, int]] = []

    def view(self, doc: JobDocument) -> AppView:
        n = self.instances.setdefault(doc.job, doc.min_instances)
        return AppView(instances=n, ready=n, running=None)

    async def refresh(self, doc: JobDocument) -> AppView:
        return self.view(doc)

    async def apply(
        self, doc: JobDocument, decision: Decision, attempts: AttemptLog | None = None
    ) -> Outcome:
        """An in-memory write cannot be half done, so it is not recorded as an attempt."""
        self.calls.append((doc.job, decision.desired))
        self.instances[doc.job] = decision.desired
        return Outcome("applied", {"actuator": "recording", "instances": decision.desired})

    async def settle(self, doc: JobDocument, attempts: AttemptLog) -> Settled:
        """An in-memory write cannot be half done: a pending attempt landed iff the count shows it."""
        pending: list[Attempt] = attempts.unresolved()
        n = self.view(doc).instances
        landed = bool(pending) and n == pending[-1].to_count
        await attempts.resolve(pending, APPLIED if landed else ABANDONED, observed=n)
        return Settled(landed, "instances" if landed else None, n)
