"""The intent state machine, the gate, the local budget check, the takeover verdict (adopt / abandon)
and the takeover_gap label (HA.md §6.6, §6.7; issue 14): pure, table tests."""

from __future__ import annotations

import pytest

from oceand.cluster import intent as it
from oceand.cluster.intent import AppSeen, Event, ForeignIntent, Verdict

E = Event


@pytest.mark.parametrize(
    ("status", "event", "after"),
    [
        pytest.param("pending", E.REPLY_OK, "applied", id="2xx applies"),
        pytest.param("pending", E.REPLY_REFUSED, "failed", id="409/4xx fails"),
        pytest.param("pending", E.REPLY_UNKNOWN, "pending", id="timeout stays pending"),
        pytest.param("pending", E.OVER_BUDGET, "abandoned", id="over budget before the write"),
        pytest.param("pending", E.LANDED, "applied", id="reconciled as landed"),
        pytest.param("pending", E.NOT_LANDED, "abandoned", id="reconciled as not landed"),
    ],
)
def test_transitions(status: str, event: Event, after: str) -> None:
    assert it.transition(status, event) == after


@pytest.mark.parametrize(
    ("status", "event"),
    [
        pytest.param(s, e, id=f"{s} + {e.value}")
        for s in ("applied", "failed", "abandoned")
        for e in (E.REPLY_OK, E.REPLY_UNKNOWN, E.LANDED, E.NOT_LANDED)
    ],
)
def test_final_statuses_never_move(status: str, event: Event) -> None:
    with pytest.raises(it.IllegalTransition, match=status):
        it.transition(status, event)


def test_the_intent_statuses_are_the_attempt_statuses() -> None:
    from actuators.marathon import ABANDONED, APPLIED, FAILED, PENDING

    assert it.STATUSES == (PENDING, APPLIED, FAILED, ABANDONED)


@pytest.mark.parametrize(
    ("held", "may_act", "draining", "unresolved", "reason"),
    [
        pytest.param(True, True, False, False, None, id="owned, renewed, idle: act"),
        pytest.param(False, True, False, False, "not_owner", id="not held"),
        pytest.param(False, False, True, True, "not_owner", id="not held wins over the rest"),
        pytest.param(True, False, False, False, "lease_unsure", id="no renewal in time"),
        pytest.param(True, True, True, False, "draining", id="being handed off"),
        pytest.param(True, True, False, True, "pending_intent", id="an intent unresolved"),
    ],
)
def test_gate(held: bool, may_act: bool, draining: bool, unresolved: bool, reason: str | None) -> None:
    assert it.gate(held, may_act, draining, unresolved) == reason


@pytest.mark.parametrize(
    ("valid_until", "now", "expected"),
    [
        pytest.param(None, 0.0, False, id="never renewed"),
        pytest.param(10.0, 9.999, True, id="before"),
        pytest.param(10.0, 10.0, False, id="at the instant"),
        pytest.param(10.0, 11.0, False, id="after"),
    ],
)
def test_may_act(valid_until: float | None, now: float, expected: bool) -> None:
    assert it.may_act(valid_until, now) is expected


@pytest.mark.parametrize(
    ("t0", "now", "expected"),
    [
        pytest.param(100.0, 100.5, True, id="early"),
        pytest.param(100.0, 101.94, True, id="just inside"),
        pytest.param(100.0, 101.95, False, id="within the 50 ms slack"),
        pytest.param(100.0, 103.0, False, id="late (a stop between insert and write)"),
    ],
)
def test_in_budget(t0: float, now: float, expected: bool) -> None:
    assert it.in_budget(t0, now, budget=2.0) is expected


INTENT = ForeignIntent(to_count=5, created_at=1000.0, deadline=1002.0)
GRACE = 3.0


@pytest.mark.parametrize(
    ("app", "now", "verdict"),
    [
        pytest.param(AppSeen(5, 1000.5, False), 1004.0, Verdict("wait", 1005.0, "quiet period"), id="quiet"),
        pytest.param(AppSeen(5, 1000.5, False), 1005.0, Verdict("wait", 1005.0, "quiet period"), id="edge"),
        pytest.param(None, 1005.5, Verdict("wait", 1005.5, "app not read"), id="not read yet"),
        pytest.param(
            AppSeen(5, 1000.5, False),
            1005.5,
            Verdict("adopt", None, "count and lastScalingAt show it"),
            id="landed: adopt (no double scale)",
        ),
        pytest.param(
            AppSeen(5, 998.1, False),
            1005.5,
            Verdict("adopt", None, "count and lastScalingAt show it"),
            id="scaled within the clock skew before the intent: adopt",
        ),
        pytest.param(
            AppSeen(5, 997.0, False),
            1005.5,
            Verdict("abandon", None, "not in Marathon after the quiet period"),
            id="count matches but scaled before the intent: someone else, abandon",
        ),
        pytest.param(
            AppSeen(4, 1001.0, False),
            1005.5,
            Verdict("abandon", None, "not in Marathon after the quiet period"),
            id="another count: abandon",
        ),
        pytest.param(
            AppSeen(5, None, False),
            1005.5,
            Verdict("abandon", None, "not in Marathon after the quiet period"),
            id="no lastScalingAt: abandon",
        ),
        pytest.param(
            AppSeen(4, 1001.0, True),
            1005.5,
            Verdict("wait", 1006.0, "deployment running"),
            id="deployment running: wait",
        ),
        pytest.param(
            AppSeen(4, 1001.0, True),
            1007.9,
            Verdict("wait", 1008.0, "deployment running"),
            id="deployment running: wait at most 2x grace",
        ),
        pytest.param(
            AppSeen(4, 1001.0, True),
            1008.0,
            Verdict("abandon", None, "not in Marathon after the quiet period"),
            id="deployment still running after 2x grace: abandon",
        ),
    ],
)
def test_takeover_verdict(app: AppSeen | None, now: float, verdict: Verdict) -> None:
    assert it.takeover_verdict(INTENT, app, now, GRACE) == verdict


@pytest.mark.parametrize(
    ("start", "acquired", "label"),
    [
        pytest.param(100.0, None, None, id="single daemon: never"),
        pytest.param(100.0, 105.0, "takeover_gap", id="began before the takeover"),
        pytest.param(105.0, 105.0, None, id="began at the takeover"),
        pytest.param(110.0, 105.0, None, id="began after"),
    ],
)
def test_bucket_label(start: float, acquired: float | None, label: str | None) -> None:
    assert it.bucket_label(start, acquired) == label


@pytest.mark.parametrize(
    ("trigger", "kw", "key"),
    [
        pytest.param("bucket", {"bucket": 1700000000}, "b:1700000000", id="bucket"),
        pytest.param(
            "schedule", {"rule": "night", "at": 1700000060.0}, "s:night:1700000060.000000", id="fire"
        ),
        pytest.param("alarm", {"alarm": "s_7_abc", "at": 1.5}, "a:s_7_abc:1.500000", id="alarm"),
        pytest.param("manual", {"op": "op-42"}, "m:op-42", id="manual"),
    ],
)
def test_decision_key(trigger: str, kw: dict[str, object], key: str) -> None:
    assert it.decision_key(trigger, **kw) == key  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("trigger", "kw"),
    [
        pytest.param("bucket", {}, id="bucket without its bucket"),
        pytest.param("schedule", {"rule": "r"}, id="fire without its time"),
        pytest.param("manual", {"bucket": 1}, id="manual without op"),
    ],
)
def test_decision_key_refuses_missing_parts(trigger: str, kw: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="no decision key"):
        it.decision_key(trigger, **kw)  # type: ignore[arg-type]
