"""The actuation intent (HA.md §6.6, §6.7) as pure functions: its state machine, the gate before a
decision may become an intent, the last local check before the write, the takeover verdict (adopt or
abandon a foreign pending intent) and the `takeover_gap` label of a bucket. No clock, no I/O: every time
comes in as an argument.

The intent is the `actuation_attempts` row (oceand/store/migrations.py): in cluster mode it is inserted
fenced by the shard's lease epoch in the database, and carries the shard, epoch, owner and decision key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from policies.types import Decision

PENDING, APPLIED, FAILED, ABANDONED = "pending", "applied", "failed", "abandoned"
STATUSES = (PENDING, APPLIED, FAILED, ABANDONED)


class Event(StrEnum):
    REPLY_OK = "reply_ok"  # Marathon answered 2xx
    REPLY_REFUSED = "reply_refused"  # 409 / other 4xx: the write was not taken
    REPLY_UNKNOWN = "reply_unknown"  # timeout, connection lost, 5xx: may or may not have landed
    OVER_BUDGET = "over_budget"  # the local check before the write: too late to send (not sent)
    LANDED = "landed"  # reconciliation found it in Marathon
    NOT_LANDED = "not_landed"  # reconciliation: past deadline + grace and nothing shows it


class IllegalTransition(ValueError):
    pass


_NEXT: dict[tuple[str, Event], str] = {
    (PENDING, Event.REPLY_OK): APPLIED,
    (PENDING, Event.REPLY_REFUSED): FAILED,
    (PENDING, Event.REPLY_UNKNOWN): PENDING,
    (PENDING, Event.OVER_BUDGET): ABANDONED,
    (PENDING, Event.LANDED): APPLIED,
    (PENDING, Event.NOT_LANDED): ABANDONED,
}


def transition(status: str, event: Event) -> str:
    """The intent's next status. Only `pending` moves; applied, failed and abandoned are final (a late
    reply after reconciliation does not reopen an intent: reconciliation already decided)."""
    try:
        return _NEXT[(status, event)]
    except KeyError:
        raise IllegalTransition(f"intent {status} cannot take {event.value}") from None


# ---- the gate (§6.6 step 3) ------------------------------------------------------------------------

NOT_OWNER = "not_owner"  # the shard is not held by this daemon
LEASE_UNSURE = "lease_unsure"  # held, but no successful renewal within stop_acting_after (local clock)
DRAINING = "draining"  # being handed to another member
PENDING_INTENT = "pending_intent"  # an unresolved intent of the job (own or foreign) comes first


def gate(held: bool, may_act: bool, draining: bool, unresolved_intent: bool) -> str | None:
    """None when a decision may become an intent; else the reason code it is deferred with."""
    if not held:
        return NOT_OWNER
    if not may_act:
        return LEASE_UNSURE
    if draining:
        return DRAINING
    if unresolved_intent:
        return PENDING_INTENT
    return None


def may_act(valid_until: float | None, now: float) -> bool:
    """Whether a held shard may still be acted on: `now` (local monotonic clock) before `valid_until`
    (the send time of the last successful renewal + stop_acting_after)."""
    return valid_until is not None and now < valid_until


def in_budget(t0: float, now: float, budget: float, slack: float = 0.05) -> bool:
    """The last check before the write (§6.6 step 5): `t0` was read before the fenced intent insert; the
    write may go only while `now < t0 + budget − slack` (all on the local monotonic clock)."""
    return now < t0 + budget - slack


# ---- takeover (§6.7) -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ForeignIntent:
    """A pending intent of an older epoch, as read at takeover. Times on the database clock (seconds)."""

    to_count: int
    created_at: float
    deadline: float


@dataclass(frozen=True, slots=True)
class AppSeen:
    """The app as read from Marathon during reconciliation. `last_scaling_at`: versionInfo.lastScalingAt
    (Marathon's clock, seconds), None when unknown."""

    instances: int
    last_scaling_at: float | None
    deployment_running: bool


WAIT, ADOPT, ABANDON = "wait", "adopt", "abandon"


@dataclass(frozen=True, slots=True)
class Verdict:
    action: str  # wait | adopt | abandon
    until: float | None = None  # for wait: read again at this database time
    why: str = ""


def takeover_verdict(
    intent: ForeignIntent, app: AppSeen | None, now: float, grace: float, skew: float = 2.0
) -> Verdict:
    """What the new owner does with a foreign pending intent at database time `now`.

    - before `deadline + grace` (the quiet period): wait — the old owner may still be sending;
    - the app has the intent's count and was scaled at or after `created_at − skew`: adopt (the intent
      landed: its `state_after` becomes the job's state, so its cooldown counts from the intent — this
      is the no-double-scale rule);
    - a deployment of the app is running: wait for it, at most until `deadline + 2 × grace`;
    - otherwise abandon: the job keeps its state from before the intent and the next bucket decides.
    `app` None (not read yet) means wait for a read."""
    quiet_end = intent.deadline + grace
    if now <= quiet_end:
        return Verdict(WAIT, quiet_end, "quiet period")
    if app is None:
        return Verdict(WAIT, now, "app not read")
    scaled = app.last_scaling_at is not None and app.last_scaling_at >= intent.created_at - skew
    if app.instances == intent.to_count and scaled:
        return Verdict(ADOPT, None, "count and lastScalingAt show it")
    if app.deployment_running and now < intent.deadline + 2 * grace:
        return Verdict(WAIT, min(now + 0.5, intent.deadline + 2 * grace), "deployment running")
    return Verdict(ABANDON, None, "not in Marathon after the quiet period")


TAKEOVER_GAP = "takeover_gap"


def bucket_label(
    bucket_start: float, acquired_at: float | None, handed_from: float | None = None
) -> str | None:
    """`takeover_gap` for a bucket that began before this daemon acquired the job's shard (some of its
    samples went to the old owner, or nowhere): it neither breaks nor extends streaks. None otherwise
    (also in single-daemon mode, `acquired_at` None). `handed_from`: the old owner handed over its open
    buckets (Redis handoff), those from this start on: their samples are all here, so they are whole."""
    if acquired_at is not None and bucket_start < acquired_at:
        if handed_from is not None and bucket_start >= handed_from:
            return None
        return TAKEOVER_GAP
    return None


KEY_MAX = 96  # actuation_attempts.decision_key VARCHAR(96)


def decision_key(
    trigger: str,
    *,
    bucket: int | None = None,
    rule: str | None = None,
    at: float | None = None,
    alarm: str | None = None,
    event_time: str | None = None,
    op: str | None = None,
) -> str:
    """The deterministic key of a decision, the same on every daemon, so `UNIQUE(job, decision_key,
    attempt)` refuses a decision made twice across daemons (an ownership change, a callback delivered
    twice, an admin call retried): `b:<bucket>` for a bucket, `s:<rule>:<fire time>` for a schedule fire,
    `a:<digest>` for an alarm (a digest of the alarm's identity — strategy, expression, endpoint, metric,
    tags, status — and Falcon's event time, so the key stays within its 96 characters), `m:<op>` for a
    manual scale (the call's Idempotency-Key)."""
    if trigger == "bucket" and bucket is not None:
        key = f"b:{bucket}"
    elif trigger == "schedule" and rule is not None and at is not None:
        key = f"s:{rule}:{at:.6f}"
    elif trigger == "alarm" and alarm is not None and event_time is not None:
        key = "a:" + hashlib.blake2b(f"{alarm}\n{event_time}".encode(), digest_size=16).hexdigest()
    elif trigger == "manual" and op is not None:
        key = f"m:{op}"
    else:
        raise ValueError(f"no decision key for a {trigger!r} decision without its bucket, fire, alarm or op")
    if len(key) > KEY_MAX:
        raise ValueError(f"decision key {key[:40]!r}... is longer than {KEY_MAX} characters")
    return key


def key_of(d: Decision) -> str:
    """The decision key of a decision's writes (cluster mode), from what the decision itself records, so
    a daemon that takes the job over derives the same key from the stored decision. A decision that
    records no identity of its event (an alarm or manual scale stored before keys were derived, a manual
    scale without an Idempotency-Key) is keyed by its decision id: unique, but not shared by a duplicate."""
    p = d.proposals[0] if d.proposals else None
    inputs = {} if p is None else p.inputs
    if d.trigger == "bucket" and d.bucket is not None:
        return decision_key("bucket", bucket=d.bucket)
    if d.trigger == "schedule" and p is not None and isinstance(inputs.get("at"), int | float):
        return decision_key("schedule", rule=p.rule, at=float(inputs["at"]))
    if d.trigger == "alarm" and isinstance(inputs.get("key"), str) and isinstance(inputs.get("time"), str):
        alarm = f"{inputs['key']}\n{inputs.get('status')}"
        return decision_key("alarm", alarm=alarm, event_time=str(inputs["time"]))
    if d.trigger == "manual" and isinstance(inputs.get("op"), str):
        return decision_key("manual", op=str(inputs["op"]))
    if d.id is None:
        raise ValueError(
            f"no decision key for an uncommitted {d.trigger} decision without its event's identity"
        )
    return f"{d.trigger[0]}:{d.id}"
