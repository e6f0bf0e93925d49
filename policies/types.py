"""Values that flow through a decision (PRODUCT §1, §3.3, §4.3). Pure data, JSON round-trippable.

The live daemon and `oceand replay` build the same inputs and call the same functions in
`policies.engine`; nothing here reads a clock: time arrives as `now` (Unix seconds, float).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Iterator, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

# Reason codes (PRODUCT §3.3): stable strings, part of the API.
SCALE_OUT = "ScaleOut"
SCALE_IN = "ScaleIn"
WITHIN_TOLERANCE = "WithinTolerance"
NO_DATA = "NoData"
STABILIZED = "Stabilized"
FLAPPING_GUARD = "FlappingGuard"
MAX_STEP = "MaxStep"
COOLDOWN = "Cooldown"
DEPLOYMENT_IN_PROGRESS = "DeploymentInProgress"
MAX_INSTANCES = "MaxInstances"
MIN_INSTANCES = "MinInstances"
SCHEDULE = "Schedule"
MANUAL = "Manual"
DRY_RUN = "DryRun"
PAUSED = "Paused"
ACTUATION_FAILED = "ActuationFailed"
REASON_CODES = (
    SCALE_OUT, SCALE_IN, WITHIN_TOLERANCE, NO_DATA, STABILIZED, FLAPPING_GUARD, MAX_STEP, COOLDOWN,
    DEPLOYMENT_IN_PROGRESS, MAX_INSTANCES, MIN_INSTANCES, SCHEDULE, MANUAL, DRY_RUN, PAUSED, ACTUATION_FAILED,
)  # fmt: skip

Trigger = Literal["bucket", "alarm", "schedule", "manual"]


class Observation(NamedTuple):
    """One closed bucket of a job, as the rules see it. A NamedTuple (immutable, as the frozen dataclass it
    was): one is built for every closed bucket, and a frozen dataclass's __init__ sets each of its eight
    fields through object.__setattr__ (about 0.9 µs, a sixth of a bucket's evaluation; this is 0.3 µs)."""

    now: float  # evaluation time (bucket close), Unix seconds
    bucket: int  # bucket start, Unix seconds (a multiple of the period)
    current: int  # the job's instance count now (Marathon's `instances`)
    ready: int  # running (and healthy, if the app has health checks) instances
    values: dict[str, float | None]  # metric rule name -> job aggregate for the bucket; None = no data
    reporters: int = 0  # distinct instances that reported in this bucket
    deployment_started_at: float | None = None  # set while the job's last deployment still runs
    startup: float | None = None  # the app's launch-to-healthy time, when known (predictive rules' lead)


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """A Falcon alarm callback (PRODUCT §2.2), already parsed."""

    now: float
    endpoint: str
    metric: str
    status: Literal["PROBLEM", "OK"]
    step: int
    priority: int
    time: str
    tpl_id: int
    exp_id: int
    stra_id: int
    left_value: float | None
    tags: dict[str, str]

    def key(self) -> str:
        """Identity of the alarm (for de-duplication): strategy/expression, endpoint, metric, tags."""
        tags = ",".join(f"{k}={v}" for k, v in sorted(self.tags.items()))
        return f"s{self.stra_id}/e{self.exp_id}/{self.endpoint}/{self.metric}/{tags}"


@dataclass(frozen=True, slots=True)
class Fire:
    """A schedule rule's fire time that is due now."""

    rule: str
    at: float  # the fire time itself (may be earlier than now: a misfire within grace)
    now: float


@dataclass(frozen=True, slots=True)
class FireTime:
    """Event: the clock reached a time a schedule rule may fire at (`policies.engine.step` finds the due
    and missed fires itself, from the state's fire history)."""

    current: int | None  # the job's instance count now; None = unknown (a due fire waits, within grace)
    lost: frozenset[tuple[str, float]] = frozenset()  # (rule, at) whose at-most-once claim the shell lost


@dataclass(frozen=True, slots=True)
class AlarmCall:
    """Event: a Falcon alarm callback for the job, with the app's state when it is handled."""

    alarm: AlarmEvent
    current: int
    ready: int
    deployment_started_at: float | None = None


@dataclass(frozen=True, slots=True)
class ManualScale:
    """Event: an operator's scale to `instances`."""

    current: int
    instances: int
    reason: str
    op: str | None = None  # the admin call's Idempotency-Key: the same on a retry (cluster decision key)


Event = Observation | FireTime | AlarmCall | ManualScale  # what `policies.engine.step` takes (a closed
# bucket is its Observation)


@dataclass(frozen=True, slots=True)
class Window:
    """Active min/max overrides from schedule rules that have a duration."""

    rule: str
    start: float
    end: float
    min_instances: int | None
    max_instances: int | None


_ATOMS = frozenset({int, float, str, bool, type(None)})


def json_copy(value: Any) -> Any:
    """A deep copy of a JSON-shaped value (dicts, lists, tuples of numbers, strings, booleans, None):
    what `copy.deepcopy` gives for it, without its memo and dispatch; anything else goes to `deepcopy`."""
    t = type(value)
    if t in _ATOMS:
        return value
    if t is dict:
        return {k: v if type(v) in _ATOMS else json_copy(v) for k, v in value.items()}
    if t is list:
        return [json_copy(v) for v in value]
    if t is tuple:
        return tuple(json_copy(v) for v in value)
    return deepcopy(value)


class Proposal(NamedTuple):
    """One rule's proposal. A NamedTuple, as Decision: immutable, and the evaluation's hot path builds it
    as the tuple it is (`tuple.__new__(Proposal, (...))`, without NamedTuple's Python-level __new__)."""

    rule: str
    kind: str  # threshold | target | alarm | schedule | manual
    desired: int | None  # None = "no opinion" (no data, no event)
    reason: str  # ScaleOut | ScaleIn | WithinTolerance | NoData | Schedule | Manual ...
    # value, streaks, target, ratio, band ...; the empty default is shared: pass a dict to fill one
    inputs: dict[str, Any] = {}  # noqa: RUF012

    def to_json(self) -> dict[str, Any]:
        """Its fields, `inputs` a copy (as dataclasses.asdict made): `json_copy`, not `deepcopy`, which cost
        a stored decision ~40 µs per proposal (bench/reaction.py: 10,000 dry-run jobs storing decisions)."""
        return {
            "rule": self.rule,
            "kind": self.kind,
            "desired": self.desired,
            "reason": self.reason,
            "inputs": json_copy(self.inputs),
        }


_tuple_item: Any = tuple.__getitem__  # a tuple's own item, past LazyProposal.__getitem__


class LazyProposal(Proposal):
    """A Proposal whose `inputs` dict is built when it is read, from the few raw values its slot holds
    (a tuple: cheaper to build and to free than the dict, and most bucket decisions are never stored or
    shown). Subclasses name the keys (`KEYS`, in the dict's order). It reads as the Proposal it stands
    for: `inputs`, iteration, indexing, equality, `_asdict`, `_replace` and `to_json` see the dict;
    `_replace` and `_make` give a plain Proposal (so a caller may change that copy's inputs in place).
    Each read of `inputs` builds a new dict: change a copy, never expect a change to stick."""

    __slots__ = ()
    KEYS: tuple[str, ...] = ()

    @property  # a read-only view in place of the NamedTuple field of the same name
    def inputs(self) -> dict[str, Any]:
        return dict(zip(self.KEYS, _tuple_item(self, 4), strict=True))

    def plain(self) -> Proposal:
        """The Proposal it stands for, with its inputs dict built."""
        return tuple.__new__(Proposal, (self.rule, self.kind, self.desired, self.reason, self.inputs))

    def __iter__(self) -> Iterator[Any]:
        return tuple.__iter__(self.plain())

    def __getitem__(self, i: Any) -> Any:
        return _tuple_item(self.plain(), i)

    def __eq__(self, other: object) -> bool:
        return self.plain() == other

    def __ne__(self, other: object) -> bool:
        return not self.plain() == other

    __hash__ = None  # type: ignore[assignment]  # as a Proposal's (its inputs dict is unhashable)

    def __repr__(self) -> str:
        return repr(self.plain())

    def __reduce__(self) -> tuple[Any, ...]:  # copy, deepcopy, pickle: the plain Proposal
        return Proposal, tuple(self.plain())

    @classmethod
    def _make(cls, iterable: Iterable[Any]) -> Proposal:  # type: ignore[override]  # _replace's too: plain
        return Proposal._make(iterable)

    def _asdict(self) -> dict[str, Any]:
        return self.plain()._asdict()


class QuietThresholdProposal(LazyProposal):
    """A threshold rule's WithinTolerance proposal with data: inputs (value, streak_out, streak_in)."""

    __slots__ = ()
    KEYS = ("value", "streak_out", "streak_in")


class TargetProposal(LazyProposal):
    """A target rule's proposal with data: inputs (value, target, ratio, ready)."""

    __slots__ = ()
    KEYS = ("value", "target", "ratio", "ready")


class Limit(NamedTuple):
    """One step of the evaluation order that changed (or held) the count (a NamedTuple, as Proposal)."""

    code: str  # Stabilized | FlappingGuard | MaxStep | Cooldown | DeploymentInProgress | Min/MaxInstances ...
    before: int
    after: int
    detail: str = ""


ApplyStatus = Literal["none", "pending", "applied", "dry-run", "paused", "failed"]  # the API's `status`
OutcomeStatus = Literal["none", "pending", "applied", "failed", "superseded", "dry-run", "paused"]


class Decision(NamedTuple):
    """What the policy decided, immutable once made (a NamedTuple: no field can be assigned, and it is
    built faster than a slots dataclass on the evaluation hot path). What became of it — applied,
    failed, retried, superseded — is its `ActuationOutcome`, a record of its own. The store assigns `id`
    when it is committed (`decision._replace(id=...)` gives the stored copy). The sequences are typed
    read-only: nothing appends to a decision's reasons after the policy made it."""

    job: str
    at: float
    trigger: Trigger
    current: int
    desired: int  # the final count after every limit
    bucket: int | None = None
    # read-only (Sequence): the empty defaults are shared by every decision built without them
    proposals: Sequence[Proposal] = []
    limits: Sequence[Limit] = []
    reasons: Sequence[str] = []  # every reason code that applied, in order
    mode: str = "dry-run"
    id: int | None = None  # store id, set when committed

    @property
    def changes(self) -> bool:
        return self.desired != self.current

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "at": self.at,
            "trigger": self.trigger,
            "current": self.current,
            "desired": self.desired,
            "bucket": self.bucket,
            "proposals": [p.to_json() for p in self.proposals],
            "limits": [x._asdict() for x in self.limits],
            "reasons": list(self.reasons),
            "mode": self.mode,
            "id": self.id,
        }

    @staticmethod
    def from_json(d: dict[str, Any]) -> Decision:
        """A decision as `to_json` wrote it (keys it does not know, such as an API view's `status`,
        `result` and `outcome`, are left out)."""
        return Decision(
            d["job"],
            d["at"],
            d["trigger"],
            d["current"],
            d["desired"],
            d.get("bucket"),
            [Proposal(**p) for p in d.get("proposals", [])],
            [Limit(**x) for x in d.get("limits", [])],
            list(d.get("reasons", [])),
            d.get("mode", "dry-run"),
            d.get("id"),
        )


_OUTCOME_FIELDS = ("deployment_id", "version", "latency_ms", "error", "superseded_by", "retry_at")


@dataclass(frozen=True, slots=True)
class ActuationOutcome:
    """What became of one decision (its own record, stored beside the immutable decision and replaced as
    the apply goes on): `none` (nothing to apply), `dry-run`, `paused`, `pending` (being applied, or
    waiting for `retry_at` after a transient failure), `applied`, `failed` (Marathon refused, the job is
    blocked, or the decision went stale), `superseded` (a newer decision replaced it while it waited).
    `attempts` counts its writes (each one an `actuation_attempts` row); `tries` its apply rounds."""

    status: OutcomeStatus = "none"
    deployment_id: str | None = None  # Marathon's deployment of the write that landed
    version: str | None = None  # the app version Marathon answered with
    latency_ms: float | None = None  # the last apply round, settle and re-read included
    error: str | None = None  # the last failure (kept while a retry is pending)
    attempts: int = 0
    tries: int = 0
    retry_at: float | None = None  # pending after a transient failure: when it is tried again
    superseded_by: int | None = None  # the newer decision that replaced it
    detail: dict[str, Any] = field(default_factory=dict)  # note, url, unknown, settled, landed, stale ...

    @property
    def reason(self) -> str | None:
        """`ActuationFailed` when Marathon did not take the count (PRODUCT §3.3): an error is recorded
        (a retry is pending, the write was refused, the job is blocked). None otherwise, also for a
        decision dropped as stale (the app moved; nothing failed)."""
        return ACTUATION_FAILED if self.error is not None else None

    @property
    def api_status(self) -> ApplyStatus:
        """The `status` the API has always shown: a superseded decision is `failed`."""
        return "failed" if self.status == "superseded" else self.status

    def api_result(self) -> dict[str, Any]:
        """The flat `result` the API has always shown: the detail and every field that is set."""
        out = dict(self.detail)
        for key in _OUTCOME_FIELDS:
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.tries:
            out["tries"] = self.tries
            out["attempts"] = self.attempts
        return out

    def view(self, decision: dict[str, Any]) -> dict[str, Any]:
        """A decision as the API shows it: its own fields, `status` and `result` as before, `outcome`."""
        out = dict(decision)
        out["status"] = self.api_status
        out["result"] = self.api_result()
        out["outcome"] = dict(self.to_json(), reason=self.reason)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "deployment_id": self.deployment_id,
            "version": self.version,
            "latency_ms": self.latency_ms,
            "error": self.error,
            "attempts": self.attempts,
            "tries": self.tries,
            "retry_at": self.retry_at,
            "superseded_by": self.superseded_by,
            "detail": dict(self.detail),
        }

    @staticmethod
    def from_json(d: dict[str, Any] | None) -> ActuationOutcome:
        if not d:
            return ActuationOutcome()
        return ActuationOutcome(
            status=d.get("status", "none"),
            deployment_id=d.get("deployment_id"),
            version=d.get("version"),
            latency_ms=d.get("latency_ms"),
            error=d.get("error"),
            attempts=int(d.get("attempts", 0)),
            tries=int(d.get("tries", 0)),
            retry_at=d.get("retry_at"),
            superseded_by=d.get("superseded_by"),
            detail=dict(d.get("detail") or {}),
        )


@dataclass(frozen=True, slots=True)
class ActuationState:
    """What a job's actuation must remember across a restart, persisted with its `JobState` in the same
    commit (the state's `actuation` key): a decision waiting for a retry (and when), and a block left by
    a permanent failure (Marathon refused the write), which holds until the job's document changes."""

    retry: int | None = None  # id of the pending decision to try again
    retry_at: float | None = None
    blocked: str | None = None  # the refusal: no more applies until the document changes
    blocked_version: int | None = None  # the document version that was refused
    blocked_by: int | None = None  # the decision that was refused

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in ((f, getattr(self, f)) for f in self.__slots__) if v is not None}

    @staticmethod
    def from_json(d: dict[str, Any] | None) -> ActuationState:
        if not d:
            return ActuationState()
        return ActuationState(
            retry=d.get("retry"),
            retry_at=d.get("retry_at"),
            blocked=d.get("blocked"),
            blocked_version=d.get("blocked_version"),
            blocked_by=d.get("blocked_by"),
        )


class Streak(NamedTuple):
    """A threshold rule's streaks (a NamedTuple: immutable, so an unchanged or zero one is shared)."""

    out: int = 0
    in_: int = 0


def pack_floats(values: Iterable[float]) -> bytes:
    """Floats as packed native doubles (PredictiveState's compact sequences)."""
    vs = tuple(values)
    return struct.pack(f"{len(vs)}d", *vs)


def unpack_floats(data: bytes) -> tuple[float, ...]:
    return struct.unpack(f"{len(data) // 8}d", data)


@dataclass(slots=True)  # not frozen (its __init__ would cost twice as much): never changed once built
class PredictiveState:
    """What one predictive rule remembers between buckets (policies/predictive.py; JSON round-trippable).

    The sequences the rule touches at every bucket — forecasts waiting for their time, the errors of the
    checked ones — are packed native doubles (`bytes`): copying one is a copy of its bytes, not of
    pointers to float objects scattered in memory that each get their reference count touched (with
    10,000 jobs' states out of the CPU caches, that was a third of the rule's time). `pending`,
    `errors` and `fresh` read them as tuples; the JSON form is lists, as it always was."""

    t: float | None = None  # time of the last bucket with data
    level: float = 0.0
    trend: float = 0.0  # unused since issue 17 (the forecast has no trend term): read and written as 0
    slot: int | None = None  # absolute index floor(t / SLOT) of the slot being filled
    acc: float = 0.0  # sum of the loads seen in that slot
    n: int = 0  # and their number
    ring: tuple[float, ...] = ()  # means of the completed slots up to slot - 1, oldest first (NaN: no data)
    season: float = 0.0  # the cycle followed now, seconds (0: none)
    pending_packed: bytes = b""  # (due time, forecast) pairs, oldest first
    last_pending: float | None = None  # when the last forecast was put in `pending`
    errors_packed: bytes = b""  # recent (actual − forecast), oldest first, up to the fresh ones
    margin: float = 0.0  # quantile of the errors when it was last computed
    fresh_packed: bytes = b""  # errors since then (< 16), oldest first: they join `errors` in a batch
    hslot: int | None = None  # the hourly history (season auto): absolute minute being filled
    hacc: float = 0.0  # sum of the loads seen in that minute
    hn: int = 0  # and their number
    hring_packed: bytes = b""  # means of the completed minutes up to hslot - 1, oldest first (NaN: no data)
    hourly: float = 0.0  # the hourly cycle followed now (3600) or none (0)

    @property
    def pending(self) -> tuple[tuple[float, float], ...]:
        """The forecasts waiting for their time: (due time, forecast), oldest first."""
        flat = unpack_floats(self.pending_packed)
        return tuple(zip(flat[::2], flat[1::2], strict=True))

    @property
    def hring(self) -> tuple[float, ...]:
        """The hourly history: means of the completed minutes, oldest first (NaN: a minute without data)."""
        return unpack_floats(self.hring_packed)

    @property
    def errors(self) -> tuple[float, ...]:
        return unpack_floats(self.errors_packed)

    @property
    def fresh(self) -> tuple[float, ...]:
        return unpack_floats(self.fresh_packed)

    @property
    def checked(self) -> int:
        """How many recent forecasts have been checked against the load (the errors kept)."""
        return (len(self.errors_packed) + len(self.fresh_packed)) // 8

    def to_json(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "level": self.level,
            "trend": self.trend,
            "slot": self.slot,
            "acc": self.acc,
            "n": self.n,
            "ring": [None if math.isnan(x) else x for x in self.ring],
            "season": self.season,
            "pending": [[d, f] for d, f in self.pending],
            "last_pending": self.last_pending,
            "errors": list(self.errors),
            "margin": self.margin,
            "fresh": list(self.fresh),
            "hslot": self.hslot,
            "hacc": self.hacc,
            "hn": self.hn,
            "hring": [None if math.isnan(x) else x for x in self.hring],
            "hourly": self.hourly,
        }

    @staticmethod
    def from_json(d: dict[str, Any]) -> PredictiveState:
        return PredictiveState(
            t=d.get("t"),
            level=float(d.get("level", 0.0)),
            trend=float(d.get("trend", 0.0)),
            slot=d.get("slot"),
            acc=float(d.get("acc", 0.0)),
            n=int(d.get("n", 0)),
            ring=tuple(math.nan if x is None else float(x) for x in d.get("ring", [])),
            season=float(d.get("season", 0.0)),
            pending_packed=pack_floats(x for a, b in d.get("pending", []) for x in (float(a), float(b))),
            last_pending=d.get("last_pending"),
            errors_packed=pack_floats(float(x) for x in d.get("errors", [])),
            margin=float(d.get("margin", 0.0)),
            fresh_packed=pack_floats(float(x) for x in d.get("fresh", [])),
            hslot=d.get("hslot"),
            hacc=float(d.get("hacc", 0.0)),
            hn=int(d.get("hn", 0)),
            hring_packed=pack_floats(math.nan if x is None else float(x) for x in d.get("hring", [])),
            hourly=float(d.get("hourly", 0.0)),
        )


@dataclass(slots=True)
class JobState:
    """Everything a job's evaluation remembers between evaluations. Persisted with each decision."""

    count: int | None = None  # the instance count at the last evaluation (a change resets streaks)
    last_change_at: float | None = None  # last change of the count, either direction
    last_bucket: int | None = None  # last evaluated bucket (never evaluate one twice)
    streaks: dict[str, Streak] = field(default_factory=dict)  # threshold rule -> streaks
    recent: list[tuple[float, int]] = field(default_factory=list)  # (t, proposed count) for stabilization
    alarms: dict[str, float] = field(default_factory=dict)  # alarm key -> time it last acted
    fires: dict[str, float] = field(default_factory=dict)  # schedule rule -> last fire time handled
    created_at: float | None = None  # first time the job was seen (fires before it are not run)
    predictive: dict[str, PredictiveState] = field(default_factory=dict)  # predictive rule -> its state

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "count": self.count,
            "last_change_at": self.last_change_at,
            "last_bucket": self.last_bucket,
            "streaks": {k: [s.out, s.in_] for k, s in self.streaks.items()},
            "recent": [[t, c] for t, c in self.recent],
            "alarms": dict(self.alarms),
            "fires": dict(self.fires),
            "created_at": self.created_at,
        }
        if self.predictive:
            out["predictive"] = {k: v.to_json() for k, v in self.predictive.items()}
        return out

    @staticmethod
    def from_json(d: dict[str, Any] | None) -> JobState:
        if not d:
            return JobState()
        return JobState(
            count=d.get("count"),
            last_change_at=d.get("last_change_at"),
            last_bucket=d.get("last_bucket"),
            streaks={k: Streak(int(v[0]), int(v[1])) for k, v in d.get("streaks", {}).items()},
            recent=[(float(t), int(c)) for t, c in d.get("recent", [])],
            alarms={k: float(v) for k, v in d.get("alarms", {}).items()},
            fires={k: float(v) for k, v in d.get("fires", {}).items()},
            created_at=d.get("created_at"),
            predictive={k: PredictiveState.from_json(v) for k, v in d.get("predictive", {}).items()},
        )
