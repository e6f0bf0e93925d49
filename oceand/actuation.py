"""Where decisions go: the actuator seam between the engine and Marathon (or a recording stand-in).

`view` answers from memory what the engine needs to build an observation (instance count, ready
instances, a running deployment); `apply` writes an absolute count and says how it went. The recording
actuator keeps a simulated app per job: it serves tests, and any job whose Marathon cluster is not
configured (such jobs run dry, see docs/operations.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from policies.document import JobDocument
from policies.types import Decision


@dataclass(slots=True)
class AppView:
    instances: int  # the app's desired count as Marathon holds it
    ready: int  # running and healthy tasks
    running: int | None  # running tasks (None = unknown: buckets wait for the previous bucket's reporters)
    deployment_started_at: float | None = None
    known: bool = True  # False until the app has been read at least once


@dataclass(slots=True)
class Outcome:
    status: str  # "applied" | "failed"
    result: dict[str, Any] = field(default_factory=dict)
    permanent: bool = (
        False  # a failure that retrying cannot fix (Marathon 4xx): stop until the document changes
    )


class Actuator(Protocol):
    def view(self, doc: JobDocument) -> AppView: ...

    async def apply(self, doc: JobDocument, decision: Decision) -> Outcome: ...

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

    async def apply(self, doc: JobDocument, decision: Decision) -> Outcome:
        self.calls.append((doc.job, decision.desired))
        self.instances[doc.job] = decision.desired
        return Outcome("applied", {"actuator": "recording", "instances": decision.desired})
