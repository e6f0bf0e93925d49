"""Alarm rules: Falcon PROBLEM / OK callbacks matched to rules, de-duplicated within the out cooldown."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from policies.alarm import alarm_matches, propose_alarm
from policies.document import AlarmRule
from policies.engine import on_alarm
from policies.types import (
    COOLDOWN,
    DRY_RUN,
    MAX_INSTANCES,
    PAUSED,
    SCALE_IN,
    SCALE_OUT,
    STABILIZED,
    WITHIN_TOLERANCE,
    AlarmEvent,
    JobState,
    Streak,
)
from tests.policies.build import cpu_rule, job

EVENT = AlarmEvent(
    now=1000.0, endpoint="host1", metric="cpu.busy", status="PROBLEM", step=1, priority=0,
    time="2016-10-01 07:00:00", tpl_id=1, exp_id=3, stra_id=1042, left_value=93.5,
    tags={"job": "web", "dc": "lg"},
)  # fmt: skip


def alarm(match: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"name": "falcon", "type": "alarm", "match": match, **kw}


@pytest.mark.parametrize(
    ("match", "matches"),
    [
        pytest.param({"stra_id": 1042}, True, id="stra_id"),
        pytest.param({"stra_id": 1043}, False, id="other stra_id"),
        pytest.param({"exp_id": 3}, True, id="exp_id"),
        pytest.param({"stra_id": 1042, "exp_id": 4}, False, id="every set field must agree"),
        pytest.param({"metric": "cpu.busy"}, True, id="metric"),
        pytest.param({"metric": "cpu.busy", "tags": {"job": "web"}}, True, id="metric + tags subset"),
        pytest.param({"metric": "cpu.busy", "tags": {"job": "api"}}, False, id="tag value differs"),
        pytest.param({"metric": "cpu.busy", "tags": {"rack": "a"}}, False, id="tag missing from the event"),
        pytest.param({"metric": "mem.used"}, False, id="other metric"),
        pytest.param({"stra_id": 1042, "endpoint": "host1"}, True, id="endpoint"),
        pytest.param({"stra_id": 1042, "endpoint": "host2"}, False, id="other endpoint"),
    ],
)
def test_matches(match: dict[str, Any], matches: bool) -> None:
    assert alarm_matches(AlarmRule.model_validate(alarm(match)), EVENT) is matches


@pytest.mark.parametrize(
    ("kw", "status", "last_acted", "current", "desired", "reason"),
    [
        pytest.param({"step": 2}, "PROBLEM", None, 3, 5, SCALE_OUT, id="PROBLEM: current + step"),
        pytest.param({"step": "50%"}, "PROBLEM", None, 3, 5, SCALE_OUT, id="PROBLEM: percentage step"),
        pytest.param({}, "PROBLEM", 971.0, 3, 3, COOLDOWN, id="repeat 29 s after acting: not cumulative"),
        pytest.param({}, "PROBLEM", 970.0, 3, 4, SCALE_OUT, id="repeat 30 s after: acts again"),
        pytest.param({}, "OK", None, 3, None, WITHIN_TOLERANCE, id="OK without step_in: no opinion"),
        pytest.param({"step_in": 1}, "OK", None, 3, 2, SCALE_IN, id="OK with step_in: scale-in"),
        pytest.param({"step_in": 5}, "OK", None, 3, 0, SCALE_IN, id="OK never below zero"),
    ],
)
def test_proposal(
    kw: dict[str, Any], status: str, last_acted: float | None, current: int, desired: int | None, reason: str
) -> None:
    rule = AlarmRule.model_validate(alarm({"stra_id": 1042}, **kw))
    p = propose_alarm(rule, replace(EVENT, status=status), current, last_acted, 30.0)  # type: ignore[arg-type]
    assert (p.desired, p.reason) == (desired, reason)
    assert (p.inputs["key"], p.inputs["time"]) == (EVENT.key(), EVENT.time)  # its identity: the decision key
    if reason == COOLDOWN:
        assert p.inputs["repeat_of"] == last_acted


def test_no_matching_rule_returns_none_and_the_same_state() -> None:
    doc = job([cpu_rule(), alarm({"stra_id": 1})])
    state = JobState(count=3)
    assert on_alarm(doc, EVENT, 3, 3, state, mode="active") == (None, state)


def test_repeated_callbacks_are_not_cumulative_through_the_engine() -> None:
    doc = job([alarm({"stra_id": 1042}, step=2)], max_instances=20, out_cooldown=60)
    d1, s1 = on_alarm(doc, EVENT, 3, 3, JobState(), mode="active")
    assert d1 is not None and (d1.trigger, d1.desired, d1.reasons) == ("alarm", 5, [SCALE_OUT])
    assert s1.alarms == {EVENT.key(): 1000.0}
    # Falcon calls again 20 s later for the same alarm: the job is at 5 now; no second +2
    d2, s2 = on_alarm(doc, replace(EVENT, now=1020.0), 5, 5, s1, mode="active")
    assert d2 is not None and (d2.desired, d2.reasons) == (5, [COOLDOWN])
    assert s2.alarms == {EVENT.key(): 1000.0}
    # after the cooldown a PROBLEM still firing acts again
    d3, s3 = on_alarm(doc, replace(EVENT, now=1060.0), 5, 5, s2, mode="active")
    assert d3 is not None and d3.desired == 7
    # another alarm (other endpoint) is not a repeat, but the job's out cooldown holds it
    d4, _ = on_alarm(doc, replace(EVENT, now=1070.0, endpoint="host2"), 7, 7, s3, mode="active")
    assert d4 is not None and (d4.desired, d4.reasons) == (7, [SCALE_OUT, COOLDOWN])


def test_ok_forgets_the_alarm_and_scales_in_through_the_limits() -> None:
    doc = job([alarm({"stra_id": 1042}, step_in=1)], in_cooldown=300)
    state = JobState(count=4, last_change_at=800.0, alarms={EVENT.key(): 800.0})
    ok = replace(EVENT, status="OK", now=1000.0)  # 200 s after the change: inside the 300 s in cooldown
    d, s = on_alarm(doc, ok, 4, 4, state, mode="active")
    assert d is not None and (d.desired, d.reasons) == (4, [SCALE_IN, COOLDOWN])
    assert s.alarms == {}
    d, s = on_alarm(doc, replace(ok, now=1100.0), 4, 4, state, mode="active")
    assert d is not None and (d.desired, d.reasons) == (3, [SCALE_IN])
    assert (s.count, s.last_change_at) == (3, 1100.0)


def test_alarm_scale_in_is_held_by_stabilization_of_metric_proposals() -> None:
    doc = job(
        [cpu_rule(), alarm({"stra_id": 1042}, step_in=1)], behavior={"scale_in": {"stabilization": 120}}
    )
    state = JobState(count=4, recent=[(950.0, 4)])  # the metric rules wanted 4 fifty seconds ago
    d, s = on_alarm(doc, replace(EVENT, status="OK"), 4, 4, state, mode="active")
    assert d is not None and (d.desired, d.reasons) == (4, [SCALE_IN, STABILIZED])
    assert s.recent == [(950.0, 4), (1000.0, 3)]


@pytest.mark.parametrize(
    ("mode", "current", "desired", "reasons"),
    [
        pytest.param("active", 4, 5, [SCALE_OUT, MAX_INSTANCES], id="bounds apply"),
        pytest.param("dry-run", 2, 4, [SCALE_OUT, DRY_RUN], id="dry-run"),
        pytest.param("paused", 2, 2, [PAUSED], id="paused"),
    ],
)
def test_modes_and_bounds(mode: str, current: int, desired: int, reasons: list[str]) -> None:
    doc = job([alarm({"stra_id": 1042}, step=2)])
    state = JobState(count=current, streaks={"cpu": Streak(1, 0)})
    d, s = on_alarm(doc, EVENT, current, current, state, mode=mode)
    assert d is not None and (d.desired, d.reasons) == (desired, reasons)
    if mode == "paused":
        assert s is state
    else:
        assert s.streaks == {}  # a change restarts the streaks


def test_two_rules_matching_one_event_take_the_largest() -> None:
    rules = [alarm({"stra_id": 1042}, step=1), {**alarm({"metric": "cpu.busy"}, step=3), "name": "big"}]
    d, _ = on_alarm(job(rules, max_instances=10), EVENT, 2, 2, JobState(), mode="active")
    assert d is not None and [p.desired for p in d.proposals] == [3, 5] and d.desired == 5
