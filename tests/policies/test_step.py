"""`policies.engine.step`: the one entry point the live worker and `oceand replay` call (issue 11).

Every event kind through `step`: a closed bucket, a fire time (due, missed, lost claims, count unknown,
several rules at once, paused), an alarm callback and a manual scale, with the schedule windows found by
the step itself. States are values: a step never changes the state it was given."""

from __future__ import annotations

import ast
import copy
import math
import random
from pathlib import Path
from typing import Any

import pytest

from policies.behavior import combine
from policies.engine import _reasons, fire_of, fires_due, newly_handled, step
from policies.types import (
    MANUAL,
    MIN_INSTANCES,
    PAUSED,
    SCALE_OUT,
    SCHEDULE,
    AlarmCall,
    AlarmEvent,
    FireTime,
    JobState,
    ManualScale,
    Observation,
)
from tests.policies.build import T0, at, cpu_rule, job, obs, qps_rule

ROOT = Path(__file__).resolve().parents[2]
H = 3600.0
DAY0 = 1_699_920_000.0  # 2023-11-14 00:00 UTC: T0 (1_700_000_000) is 22:13:20 that day


def sched(name: str, cron: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "type": "schedule", "cron": cron, "timezone": "UTC", **kw}


MORNING = sched("morning", "0 7 * * *", instances=4)
NIGHT = sched("night", "0 2 * * *", instances=2)
ALSO_7 = sched("also7", "0 7 * * *", instances=3)
PEAK = sched("peak", "0 9 * * *", duration="2h", min_instances=3)


def fire_table_doc() -> Any:
    return job([cpu_rule(consecutive=1), MORNING, NIGHT, PEAK], max_instances=10)


@pytest.mark.parametrize(
    ("fires", "now", "event", "decided", "handled"),
    [
        pytest.param({}, DAY0 + 6 * H, FireTime(2), None, {}, id="nothing due before 07:00"),
        pytest.param({}, DAY0 + 7 * H, FireTime(2), ("morning", 4), {"morning": DAY0 + 7 * H},
                     id="07:00 exactly: morning fires"),
        pytest.param({}, DAY0 + 7 * H + 200, FireTime(2), ("morning", 4), {"morning": DAY0 + 7 * H},
                     id="late within the 5 min grace: fires"),
        pytest.param({}, DAY0 + 7 * H + 301, FireTime(2), None, {"morning": DAY0 + 7 * H},
                     id="beyond the grace: missed, marked, no decision"),
        pytest.param({"morning": DAY0 + 7 * H}, DAY0 + 7 * H + 10, FireTime(4), None, {},
                     id="handled already: nothing"),
        pytest.param({}, DAY0 + 7 * H, FireTime(None), None, {},
                     id="count unknown: the due fire waits, unmarked"),
        pytest.param({}, DAY0 + 7 * H, FireTime(2, frozenset({("morning", DAY0 + 7 * H)})), None,
                     {"morning": DAY0 + 7 * H}, id="claim lost: marked, not run"),
        pytest.param({"morning": DAY0 + 7 * H}, DAY0 + 9 * H + 30, FireTime(1), None, {},
                     id="a window rule never fires"),
    ],
)  # fmt: skip
def test_fire_time(
    fires: dict[str, float],
    now: float,
    event: FireTime,
    decided: tuple[str, int] | None,
    handled: dict[str, float],
) -> None:
    doc = fire_table_doc()
    state = JobState(created_at=DAY0 + 3 * H, fires=dict(fires))  # after the 02:00 fire
    before = copy.deepcopy(state)
    d, nxt = step(doc, state, event, now, mode="active")
    assert state == before  # never changed in place
    if decided is None:
        assert d is None
    else:
        assert d is not None and (d.trigger, d.reasons[0]) == ("schedule", SCHEDULE)
        assert (d.proposals[0].rule, d.desired) == decided
        assert fire_of(d) == (decided[0], handled[decided[0]])
    assert dict(newly_handled(state, nxt)) == handled


def test_fire_time_before_the_job_existed_never_runs() -> None:
    doc = fire_table_doc()
    state = JobState(created_at=DAY0 + 7 * H + 1)
    assert step(doc, state, FireTime(2), DAY0 + 7 * H + 2, mode="active") == (None, state)


def test_fires_at_the_same_time_run_one_per_step_until_none() -> None:
    doc = job([MORNING, ALSO_7], max_instances=10)
    state = JobState(created_at=DAY0)
    now, current, got = DAY0 + 7 * H + 1, 1, []
    assert fires_due(doc, state, now)
    for _ in range(5):
        d, state = step(doc, state, FireTime(current), now, mode="active")
        if d is None:
            break
        got.append((d.proposals[0].rule, d.current, d.desired))
        current = d.desired
    assert got == [("morning", 1, 4), ("also7", 4, 3)]  # document order at equal times
    assert not fires_due(doc, state, now)


def test_fire_time_in_paused_mode_marks_the_fire_and_decides_nothing_to_apply() -> None:
    doc = fire_table_doc()
    d, nxt = step(doc, JobState(created_at=DAY0 + 3 * H), FireTime(2), DAY0 + 7 * H, mode="paused")
    assert d is not None and (d.desired, d.reasons) == (2, [PAUSED])
    assert nxt.fires == {"morning": DAY0 + 7 * H}


def test_fire_inside_a_window_is_clamped_by_the_window_found_by_the_step() -> None:
    doc = job([sched("lift", "0 10 * * *", instances=2), PEAK], max_instances=10)
    d, _ = step(doc, JobState(created_at=DAY0), FireTime(5), DAY0 + 10 * H, mode="active")
    assert d is not None and (d.desired, [lim.code for lim in d.limits]) == (3, [MIN_INSTANCES])


@pytest.mark.parametrize(
    ("now", "desired"),
    [
        pytest.param(DAY0 + 9 * H - 10, 1, id="before the window: own min 1"),
        pytest.param(DAY0 + 9 * H, 3, id="window start: min 3"),
        pytest.param(DAY0 + 11 * H - 10, 3, id="inside the window"),
        pytest.param(DAY0 + 11 * H, 1, id="window end: own min again"),
        pytest.param(DAY0 + 33 * H, 3, id="next day's window"),
    ],
)
def test_bucket_windows_come_from_the_step(now: float, desired: int) -> None:
    doc = job([cpu_rule(consecutive=1), PEAK], max_instances=10)
    o = Observation(now, int(now) - 10, 1, 1, {"cpu": 70.0}, 1)
    d, _ = step(doc, JobState(), o, now, mode="active")
    assert d.desired == desired


def test_bucket_windows_memo_follows_the_clock_both_ways() -> None:
    """The windows are memoised per document; the answer depends on `now` only (also going back)."""
    doc = job([cpu_rule(consecutive=1), PEAK], max_instances=10)
    seen = []
    for now in (DAY0 + 9 * H + 5, DAY0 + 8 * H, DAY0 + 10 * H, DAY0 + 12 * H, DAY0 + 9 * H + 5):
        o = Observation(now, int(now) - 10, 1, 1, {"cpu": 70.0}, 1)
        seen.append(step(doc, JobState(), o, now, mode="active")[0].desired)
    assert seen == [3, 1, 3, 1, 3]


def test_bucket_time_must_be_the_step_time() -> None:
    doc = job([cpu_rule()])
    with pytest.raises(ValueError, match="now"):
        step(doc, JobState(), obs(0, 2, 90.0), at(0) + 1, mode="active")


def test_bucket_step_is_evaluate() -> None:
    doc = job([cpu_rule(consecutive=1)], out_cooldown=0)
    state = JobState()
    d, nxt = step(doc, state, obs(0, 2, 90.0), at(0), mode="active")
    assert (d.desired, d.reasons, d.bucket, nxt.count, nxt.last_bucket) == (3, [SCALE_OUT], T0, 3, T0)
    assert state == JobState()


def test_bucket_step_combines_and_gives_reasons_as_their_functions() -> None:
    """A closed bucket's step gives the answers of step 1 (`behavior.combine`) and of the reasons
    (`engine._reasons`), on every kind of proposal (no data,
    NaN, a one-sided rule's no opinion, scale-out and scale-in, one to three rules) in both modes that
    decide. With no limit at all (no cooldown, stabilization or max step; wide bounds) the decided
    count is the combined proposal unless the flapping guard held it."""
    rules = [
        cpu_rule(consecutive=1),
        cpu_rule(name="hot", below=None, consecutive=2),  # no scale_in side: no opinion on scale-in
        qps_rule(target=100, tolerance=0.1),
    ]
    choices = [[0], [1], [2], [0, 2], [1, 2], [0, 1], [0, 1, 2]]
    rng = random.Random(11)
    seen: set[tuple[int, ...]] = set()
    for pick in choices:
        doc = job(
            [rules[k] for k in pick],
            min_instances=0,
            max_instances=1000,
            behavior={"scale_in": {"stabilization": 0}},
        )
        for mode in ("active", "dry-run"):
            state, current = JobState(), 5
            for i in range(300):
                values = {
                    name: rng.choice([None, math.nan, math.inf, 40.0, 70.0, 95.0, 60.0, 100.0, 130.0])
                    for name in ("cpu", "hot", "qps")
                    if rng.random() < 0.9
                }
                d, state = step(doc, state, obs(i, current, values), at(i), mode=mode)
                assert d.reasons == _reasons(d.proposals, d.limits, mode)
                if not d.limits:
                    assert d.desired == combine(d.proposals, current)
                seen.add((len(d.proposals), (d.desired > current) - (d.desired < current), len(d.limits)))
                current = d.desired if d.desired and rng.random() < 0.7 else rng.randrange(1, 9)
    assert {(n, way, 0) for n in (1, 2, 3) for way in (-1, 0, 1)} <= seen  # every way, every rule count


def alarm(status: str = "PROBLEM", now: float = at(0)) -> AlarmEvent:
    return AlarmEvent(now, "h1", "cpu.idle", status, 1, 0, "2023-11-14 22:13:30", 1, 0, 1042, 3.0, {})  # type: ignore[arg-type]


def test_alarm_step() -> None:
    doc = job(
        [{"name": "falcon", "type": "alarm", "match": {"stra_id": 1042}, "step": 2}, PEAK], max_instances=10
    )
    d, nxt = step(doc, JobState(), AlarmCall(alarm(), 2, 2), at(0), mode="active")
    assert d is not None and (d.trigger, d.desired) == ("alarm", 4)
    assert nxt.alarms and nxt.count == 4
    other = AlarmEvent(at(0), "h1", "mem", "PROBLEM", 1, 0, "", 1, 0, 7, None, {})
    assert step(doc, nxt, AlarmCall(other, 4, 4), at(0), mode="active") == (None, nxt)


def test_manual_step_in_a_window() -> None:
    doc = job([cpu_rule(), PEAK], max_instances=10)
    now = DAY0 + 10 * H
    d, nxt = step(doc, JobState(), ManualScale(5, 1, "night"), now, mode="active")
    assert d is not None and (d.trigger, d.desired, d.reasons) == ("manual", 3, [MANUAL, MIN_INSTANCES])
    assert nxt.count == 3


def test_unknown_event_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="event"):
        step(job([cpu_rule()]), JobState(), object(), at(0), mode="active")  # type: ignore[call-overload]


SHELLS = ["oceand/engine.py", "oceand/replay.py"]
DECIDERS = {"evaluate", "on_alarm", "on_fire", "on_manual", "mark_fires", "due_fires", "active_windows"}


@pytest.mark.parametrize("path", [pytest.param(p, id=p) for p in SHELLS])
def test_the_shells_decide_only_through_step(path: str) -> None:
    """The live worker and replay reach the policy through `step` (and read-only queries), never the
    per-trigger functions or the schedule's fire/window functions."""
    tree = ast.parse((ROOT / path).read_text())
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    used |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert not used & DECIDERS
