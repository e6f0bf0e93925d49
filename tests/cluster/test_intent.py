"""The intent state machine, the gate, the local budget check, the takeover verdict (adopt / abandon)
and the takeover_gap label (HA.md §6.6, §6.7; issue 14): pure, table tests."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from oceand.cluster import intent as it
from oceand.cluster.intent import AppSeen, Event, ForeignIntent, Verdict
from policies.types import AlarmEvent, Decision, Proposal

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
    ("start", "acquired", "handed", "label"),
    [
        pytest.param(100.0, None, None, None, id="single daemon: never"),
        pytest.param(100.0, 105.0, None, "takeover_gap", id="began before the takeover"),
        pytest.param(105.0, 105.0, None, None, id="began at the takeover"),
        pytest.param(110.0, 105.0, None, None, id="began after"),
        pytest.param(100.0, 105.0, 100.0, None, id="began before, open at the old owner: handed over"),
        pytest.param(90.0, 105.0, 100.0, "takeover_gap", id="began before the handed buckets"),
        pytest.param(110.0, 105.0, 100.0, None, id="handed, began after"),
    ],
)
def test_bucket_label(start: float, acquired: float | None, handed: float | None, label: str | None) -> None:
    assert it.bucket_label(start, acquired, handed) == label


_ALARM = "s1042/e3/host1/cpu.busy/dc=lg,job=web\nPROBLEM"


@pytest.mark.parametrize(
    ("trigger", "kw", "key"),
    [
        pytest.param("bucket", {"bucket": 1700000000}, "b:1700000000", id="bucket"),
        pytest.param(
            "schedule", {"rule": "night", "at": 1700000060.0}, "s:night:1700000060.000000", id="fire"
        ),
        pytest.param(
            "alarm",
            {"alarm": _ALARM, "event_time": "2016-10-01 07:00:00"},
            "a:" + hashlib.blake2b(f"{_ALARM}\n2016-10-01 07:00:00".encode(), digest_size=16).hexdigest(),
            id="alarm: a digest of its identity and event time",
        ),
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
        pytest.param("alarm", {"alarm": _ALARM}, id="alarm without its event time"),
        pytest.param("manual", {"bucket": 1}, id="manual without op"),
    ],
)
def test_decision_key_refuses_missing_parts(trigger: str, kw: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="no decision key"):
        it.decision_key(trigger, **kw)  # type: ignore[arg-type]


def test_decision_key_refuses_a_key_longer_than_its_column() -> None:
    with pytest.raises(ValueError, match="longer than 96"):
        it.decision_key("manual", op="x" * 95)


# The same event decided on two daemons: another receipt time (`now`), decision id and `at`, the same
# identity. Each row: (decision as daemon A made it, as daemon B made it, whether their keys agree).
_EV = AlarmEvent(
    now=1000.0, endpoint="host1", metric="cpu.busy", status="PROBLEM", step=1, priority=0,
    time="2016-10-01 07:00:00", tpl_id=1, exp_id=3, stra_id=1042, left_value=93.5,
    tags={"job": "web", "dc": "lg"},
)  # fmt: skip


def _alarm(ev: AlarmEvent, at: float, did: int) -> Decision:
    inputs = {"status": ev.status, "key": ev.key(), "time": ev.time}
    return Decision(
        "web", at, "alarm", 2, 3, None, [Proposal("falcon", "alarm", 3, "ScaleOut", inputs)], id=did
    )


def _manual(op: str | None, at: float, did: int) -> Decision:
    inputs: dict[str, object] = {"instances": 3, "reason": ""} | ({} if op is None else {"op": op})
    return Decision(
        "web", at, "manual", 2, 3, None, [Proposal("manual", "manual", 3, "Manual", inputs)], id=did
    )


def _fire(rule: str, fire_at: float, at: float, did: int) -> Decision:
    p = Proposal(rule, "schedule", 3, "Schedule", {"at": fire_at})
    return Decision("web", at, "schedule", 2, 3, None, [p], id=did)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        pytest.param(
            Decision("web", 60.0, "bucket", 2, 3, 1700000000, id=1),
            Decision("web", 61.5, "bucket", 2, 3, 1700000000, id=9),
            True,
            id="a bucket decided again after a takeover",
        ),
        pytest.param(_fire("night", 3600.0, 3600.2, 1), _fire("night", 3600.0, 3601.0, 9), True, id="a fire"),
        pytest.param(
            _fire("night", 3600.0, 3600.2, 1), _fire("night", 7200.0, 7200.2, 9), False, id="next fire"
        ),
        pytest.param(
            _alarm(_EV, 1000.1, 1),
            _alarm(replace(_EV, now=1003.0), 1003.1, 9),
            True,
            id="a callback delivered to two daemons (forwarded, or retried by Falcon)",
        ),
        pytest.param(
            _alarm(_EV, 1000.1, 1),
            _alarm(replace(_EV, time="2016-10-01 07:01:00", step=2), 1060.1, 9),
            False,
            id="the alarm's next notification",
        ),
        pytest.param(
            _alarm(_EV, 1000.1, 1), _alarm(replace(_EV, status="OK"), 1000.2, 9), False, id="its recovery"
        ),
        pytest.param(
            _alarm(_EV, 1000.1, 1),
            _alarm(replace(_EV, endpoint="host2"), 1000.2, 9),
            False,
            id="another endpoint at the same time",
        ),
        pytest.param(
            _manual("k-1", 5.0, 1), _manual("k-1", 9.0, 9), True, id="an admin call retried with its key"
        ),
        pytest.param(_manual("k-1", 5.0, 1), _manual("k-2", 9.0, 9), False, id="two admin calls"),
        pytest.param(
            _manual(None, 5.0, 1), _manual(None, 9.0, 9), False, id="admin calls without a key: by id"
        ),
    ],
)
def test_key_of_a_decision_is_the_same_on_every_daemon_for_the_same_event(
    a: Decision, b: Decision, same: bool
) -> None:
    assert (it.key_of(a) == it.key_of(b)) is same
    assert len(it.key_of(a)) <= it.KEY_MAX


@pytest.mark.parametrize(
    ("d", "key"),
    [
        pytest.param(Decision("web", 1.0, "bucket", 2, 3, 60, id=4), "b:60", id="bucket"),
        pytest.param(_fire("night", 3600.0, 3600.2, 4), "s:night:3600.000000", id="fire"),
        pytest.param(_manual("k-1", 5.0, 4), "m:k-1", id="manual with its key"),
        pytest.param(_manual(None, 5.0, 4), "m:4", id="manual without: its decision id"),
        pytest.param(
            Decision(
                "web", 1.0, "alarm", 2, 3, None, [Proposal("r", "alarm", 3, "ScaleOut", {"key": "k"})], id=4
            ),
            "a:4",
            id="alarm stored before keys were derived (no event time): its decision id",
        ),
    ],
)
def test_key_of(d: Decision, key: str) -> None:
    assert it.key_of(d) == key


def test_key_of_an_uncommitted_decision_without_its_events_identity_is_refused() -> None:
    with pytest.raises(ValueError, match="uncommitted"):
        it.key_of(_manual(None, 5.0, 0)._replace(id=None))
