"""The engine's entry points end to end: evaluation order through evaluate(), modes, state, restart."""

from __future__ import annotations

import json
from typing import Any

import pytest

from policies.engine import bounds, evaluate, mark_fires, on_fire, on_manual, status
from policies.types import (
    COOLDOWN,
    DEPLOYMENT_IN_PROGRESS,
    DRY_RUN,
    FLAPPING_GUARD,
    MANUAL,
    MAX_INSTANCES,
    MAX_STEP,
    MIN_INSTANCES,
    NO_DATA,
    PAUSED,
    SCALE_IN,
    SCALE_OUT,
    SCHEDULE,
    STABILIZED,
    WITHIN_TOLERANCE,
    Decision,
    Fire,
    JobState,
    Streak,
    Window,
)
from tests.policies.build import at, cpu_rule, job, obs, qps_rule, run

HOT, COLD = 85.0, 50.0


@pytest.mark.parametrize(
    ("doc_kw", "start", "values", "desired", "codes"),
    [
        pytest.param(
            {"rules": [cpu_rule(consecutive=1)], "out_cooldown": 30}, 2, [HOT] * 5, [3, 3, 3, 4, 4],
            [[], [COOLDOWN], [COOLDOWN], [], [COOLDOWN]], id="out cooldown 30 s: exactly at the limit allowed",
        ),
        pytest.param(
            {"rules": [cpu_rule(consecutive=3)], "out_cooldown": 60}, 2, [HOT] * 10, [2, 2, 3, 3, 3, 3, 3, 3, 4, 4],
            [[], [], [], [], [], [COOLDOWN], [COOLDOWN], [COOLDOWN], [], []],
            id="held by the cooldown, the streak goes on: acts in the first bucket allowed",
        ),
        pytest.param(
            {"rules": [cpu_rule(consecutive=1)], "in_cooldown": 40, "out_cooldown": 0}, 3,
            [HOT, COLD, COLD, COLD, COLD, COLD], [4, 4, 4, 4, 3, 3],
            [[], [COOLDOWN], [COOLDOWN], [COOLDOWN], [], [COOLDOWN]],
            id="in cooldown 40 s counts from a scale-out too",
        ),
        pytest.param(
            {"rules": [cpu_rule(consecutive=1)], "in_cooldown": 40, "out_cooldown": 0}, 3,
            [COLD, HOT, HOT], [2, 3, 4], [[], [], []], id="scale-out after scale-in waits only for its own 0 s",
        ),
        pytest.param(
            {"rules": [cpu_rule(consecutive=1)], "max_instances": 10, "behavior": {"scale_out": {"max_step": 2}}},
            2, [{"cpu": 99}], [3], [[]], id="max step 2 does not touch a step of 1",
        ),
        pytest.param(
            {"rules": [qps_rule()], "max_instances": 20, "behavior": {"scale_out": {"max_step": 2}}},
            2, [{"qps": 300}], [4], [[MAX_STEP]], id="max step 2: 2 → 10 becomes 4",
        ),
        pytest.param(
            {"rules": [qps_rule()], "behavior": {"scale_in": {"max_step": 1}}},
            5, [{"qps": 12}], [4], [[MAX_STEP]], id="scale-in max step 1: 5 → 1 becomes 4",
        ),
        pytest.param(
            {"rules": [cpu_rule(consecutive=1, step="50%")], "max_instances": 10}, 3, [HOT, HOT], [5, 8], [[], []],
            id="percentage steps round up: 3 + 2, 5 + 3",
        ),
        pytest.param(
            {"rules": [cpu_rule(consecutive=1, step="50%")], "max_instances": 10}, 5, [10, 10, 10], [2, 1, 1],
            [[], [], [MIN_INSTANCES]], id="percentage scale-in rounds up (5 − 3, 2 − 1), down to min",
        ),
        pytest.param(
            {"rules": [cpu_rule(consecutive=1), qps_rule()]}, 4, [{"cpu": COLD, "qps": None}] * 2, [4, 4], [[], []],
            id="a rule with no data blocks another rule's scale-in",
        ),
        pytest.param(
            {"rules": [cpu_rule(consecutive=1), qps_rule()]}, 3, [{"cpu": HOT, "qps": None}], [4], [[]],
            id="no data does not block scale-out",
        ),
        pytest.param(
            {"rules": [cpu_rule(consecutive=1), qps_rule()]}, 4, [{"cpu": COLD, "qps": 60}], [4], [[]],
            id="a rule within tolerance blocks scale-in",
        ),
        pytest.param(
            {"rules": [cpu_rule(consecutive=1), qps_rule(tolerance=0.05)]}, 4, [{"cpu": COLD, "qps": 30}], [3], [[]],
            id="every rule below current: the smallest reduction (cpu −1, qps → 2)",
        ),
        pytest.param(
            {"rules": [cpu_rule(consecutive=1, step=2)]}, 4, [{"cpu": 55}], [3], [[FLAPPING_GUARD]],
            id="flapping guard: 55 on 2 would be 110 > 80, shrink to 3",
        ),
        pytest.param(
            {"rules": [cpu_rule(consecutive=1)]}, 2, [{"cpu": 59}], [2], [[FLAPPING_GUARD]],
            id="flapping guard: 59 on 1 would be 118, skip",
        ),
    ],
)  # fmt: skip
def test_sequences(
    doc_kw: dict[str, Any], start: int, values: list[Any], desired: list[int], codes: list[list[str]]
) -> None:
    r = run(job(**doc_kw), values, start)
    assert r.desired == desired
    assert r.codes == codes


def test_flapping_guard_with_target_rule_details() -> None:
    # qps target 100, 2 ready of 4 at 40: HPA proposes ceil(2 × 0.4) = 1; spread over 1 the load would be
    # 160 (ratio 1.6 → ask for 2): the guard shrinks the reduction to 2 (80 per instance, within).
    doc = job([qps_rule(target=100)], min_instances=1)
    d, _ = evaluate(doc, obs(0, 4, {"qps": 40}, ready=2), JobState(), mode="active")
    assert d.desired == 2
    assert [(x.code, x.before, x.after) for x in d.limits] == [(FLAPPING_GUARD, 1, 2)]
    assert d.reasons == [SCALE_IN, FLAPPING_GUARD]


def test_stabilization_over_a_window() -> None:
    doc = job([qps_rule()], behavior={"scale_in": {"stabilization": "60s"}})
    # 5 at target, then load drops: HPA proposes 3 at once, held at 5 while the 5 is in the 60 s window
    r = run(doc, [{"qps": 60}] + [{"qps": 36}] * 6, 5)
    assert r.desired == [5, 5, 5, 5, 5, 5, 3]
    assert r.codes[1:6] == [[STABILIZED]] * 5
    assert r.decisions[1].proposals[0].desired == 3
    # a run of equal proposals is kept as its latest time: the same answers, a short list
    assert r.states[5].recent == [(at(0), 5), (at(5), 3)]
    assert r.states[6].recent == [(at(6), 3)]  # the 5 of bucket 0 pruned


def test_scale_out_stabilization_is_symmetric() -> None:
    doc = job([qps_rule()], max_instances=20, behavior={"scale_out": {"stabilization": "30s"}})
    r = run(doc, [{"qps": 60}, {"qps": 120}, {"qps": 120}, {"qps": 120}], 4)
    assert r.desired == [4, 4, 4, 8]
    assert r.codes == [[], [STABILIZED], [STABILIZED], []]


@pytest.mark.parametrize(
    ("started", "desired", "code"),
    [
        pytest.param(at(0) - 599, 2, DEPLOYMENT_IN_PROGRESS, id="deployment 599 s old: wait"),
        pytest.param(at(0) - 600, 3, None, id="deployment at its 600 s timeout: go"),
        pytest.param(None, 3, None, id="no deployment"),
    ],
)
def test_deployment_in_progress(started: float | None, desired: int, code: str | None) -> None:
    doc = job([cpu_rule(consecutive=1)])
    d, st = evaluate(doc, obs(0, 2, HOT, deployment_started_at=started), JobState(), mode="active")
    assert d.desired == desired
    assert [x.code for x in d.limits] == ([code] if code else [])
    if code:  # held: the streak is kept for the next bucket
        assert st.streaks["cpu"] == Streak(1, 0)


def test_dry_run_records_and_simulates_the_change() -> None:
    doc = job([cpu_rule(consecutive=1)], out_cooldown=30)
    r = run(doc, [HOT] * 5, 2, mode="dry-run", apply=False)  # nothing is applied: the count stays 2
    assert r.desired == [3, 2, 2, 3, 2]
    assert r.reasons[0] == [SCALE_OUT, DRY_RUN]
    assert r.reasons[1] == [SCALE_OUT, COOLDOWN, DRY_RUN]
    assert (r.states[0].count, r.states[0].last_change_at) == (3, at(0))
    assert all(d.mode == "dry-run" for d in r.decisions)


def test_paused_keeps_the_count_and_the_state() -> None:
    doc = job([cpu_rule(consecutive=1)])
    before = JobState(count=2, streaks={"cpu": Streak(1, 0)}, last_change_at=5.0, recent=[(1.0, 2)])
    d, st = evaluate(doc, obs(7, 2, HOT), before, mode="paused")
    assert (d.desired, d.reasons, d.proposals, d.mode) == (2, [PAUSED], [], "paused")
    assert st.to_json() == {**before.to_json(), "last_bucket": obs(7, 2, HOT).bucket}
    assert before.last_bucket is None  # input untouched


def test_restart_after_the_second_hot_bucket_still_scales_on_the_third() -> None:
    doc = job([cpu_rule()])
    r = run(doc, [HOT, HOT], 2)
    saved = json.dumps(r.states[-1].to_json())
    loaded = JobState.from_json(json.loads(saved))
    r2 = run(doc, [HOT], 2, state=loaded, first=2)
    assert r2.desired == [3]
    assert r2.reasons[0] == [SCALE_OUT]


def test_evaluate_does_not_modify_its_inputs() -> None:
    doc = job([cpu_rule(consecutive=1)], behavior={"scale_in": {"stabilization": 60}})
    state = JobState(count=2, streaks={"cpu": Streak(0, 0)}, recent=[(at(0) - 10, 2)], alarms={"k": 1.0})
    snapshot = json.dumps(state.to_json())
    _, new = evaluate(doc, obs(0, 2, HOT), state, mode="active")
    assert json.dumps(state.to_json()) == snapshot
    assert (
        new.streaks is not state.streaks and new.recent is not state.recent and new.alarms is not state.alarms
    )


def test_window_lifts_a_job_below_its_min_without_any_proposal() -> None:
    doc = job([], min_instances=1)
    win = Window("business", at(0) - 100, at(0) + 3600, 3, None)
    d, st = evaluate(doc, obs(0, 2, None), JobState(), mode="active", windows=[win])
    assert (d.desired, d.reasons) == (3, [MIN_INSTANCES])
    assert (st.last_change_at, st.count) == (at(0), 3)
    assert bounds(doc, [win]) == (3, 5) and bounds(doc, []) == (1, 5)


def test_window_cap_brings_a_job_down() -> None:
    doc = job([cpu_rule()], max_instances=10)
    win = Window("night", 0.0, at(5), None, 4)
    d, _ = evaluate(doc, obs(0, 8, 70.0), JobState(), mode="active", windows=[win])
    assert (d.desired, d.reasons) == (4, [WITHIN_TOLERANCE, MAX_INSTANCES])


def test_no_data_reason_is_recorded() -> None:
    d, _ = evaluate(job([cpu_rule(), qps_rule()]), obs(0, 3, {"cpu": 70}), JobState(), mode="active")
    assert d.reasons == [WITHIN_TOLERANCE, NO_DATA]  # qps is missing from the bucket: no data
    d, _ = evaluate(job([qps_rule()]), obs(0, 3, {"qps": float("nan")}), JobState(), mode="active")
    assert (d.desired, d.reasons) == (3, [NO_DATA])


def test_decision_is_json_ready() -> None:
    doc = job([cpu_rule(consecutive=1, out={"bands": [{"above": 90, "step": "50%"}]})], max_instances=3)
    d, _ = evaluate(doc, obs(0, 3, 95.0), JobState(), mode="dry-run")
    data = json.loads(json.dumps(d.to_json()))
    assert Decision.from_json(data) == d
    assert data["proposals"][0]["inputs"]["band"] == 90
    assert data["limits"][0]["code"] == MAX_INSTANCES


# --- schedule fires and manual scaling --------------------------------------------------------------------

SCHED = {
    "name": "morning",
    "type": "schedule",
    "cron": "0 7 * * *",
    "timezone": "Asia/Shanghai",
    "instances": 4,
}


@pytest.mark.parametrize(
    ("instances", "current", "mode", "windows", "desired", "reasons"),
    [
        pytest.param(4, 2, "active", [], 4, [SCHEDULE], id="sets the count directly"),
        pytest.param(9, 2, "active", [], 5, [SCHEDULE, MAX_INSTANCES], id="bounds apply"),
        pytest.param(9, 2, "active", [Window("w", 0, 1e10, None, 8)], 8, [SCHEDULE, MAX_INSTANCES],
                     id="bounds with a window"),
        pytest.param(4, 2, "dry-run", [], 4, [SCHEDULE, DRY_RUN], id="dry-run: recorded"),
        pytest.param(4, 2, "paused", [], 2, [PAUSED], id="paused: not run"),
        pytest.param(2, 2, "active", [], 2, [SCHEDULE], id="already there"),
    ],
)  # fmt: skip
def test_on_fire(
    instances: int, current: int, mode: str, windows: list[Window], desired: int, reasons: list[str]
) -> None:
    doc = job([cpu_rule(), {**SCHED, "instances": instances}], out_cooldown=300, in_cooldown=300)
    # a change 10 s ago: a cooldown would hold any metric action, a fire ignores it
    state = JobState(count=current, last_change_at=at(0) - 10, streaks={"cpu": Streak(2, 0)})
    fire = Fire("morning", at(0) - 5, at(0))
    d, st = on_fire(doc, fire, current, state, mode=mode, windows=windows)
    assert (d.trigger, d.desired, d.reasons) == ("schedule", desired, reasons)
    assert st.fires == {"morning": fire.at}  # handled in every mode
    if desired != current:
        assert (st.count, st.last_change_at, st.streaks) == (desired, at(0), {})
        assert d.proposals[0].inputs["late"] == 5
    else:
        assert st.last_change_at == at(0) - 10


def test_on_fire_rejects_unknown_and_window_rules() -> None:
    window = {"name": "w", "type": "schedule", "cron": "0 9 * * *", "duration": "8h", "min_instances": 2}
    doc = job([SCHED, window])
    with pytest.raises(ValueError, match="no schedule rule 'nope'"):
        on_fire(doc, Fire("nope", 1.0, 1.0), 2, JobState(), mode="active")
    with pytest.raises(ValueError, match="sets no instances"):
        on_fire(doc, Fire("w", 1.0, 1.0), 2, JobState(), mode="active")


@pytest.mark.parametrize(
    ("instances", "mode", "desired", "reasons"),
    [
        pytest.param(4, "active", 4, [MANUAL], id="manual scale, inside the cooldown"),
        pytest.param(9, "active", 5, [MANUAL, MAX_INSTANCES], id="max applies"),
        pytest.param(0, "active", 1, [MANUAL, MIN_INSTANCES], id="min applies"),
        pytest.param(4, "dry-run", 4, [MANUAL, DRY_RUN], id="dry-run"),
        pytest.param(4, "paused", 4, [MANUAL], id="paused: an operator's order still acts"),
    ],
)
def test_on_manual(instances: int, mode: str, desired: int, reasons: list[str]) -> None:
    doc = job([cpu_rule()], out_cooldown=300)
    state = JobState(count=2, last_change_at=99.0)
    d, st = on_manual(doc, 100.0, 2, instances, "load test", state, mode=mode)
    assert (d.trigger, d.desired, d.reasons) == ("manual", desired, reasons)
    assert d.proposals[0].inputs == {"instances": instances, "reason": "load test"}
    assert (st.count, st.last_change_at) == (desired, 100.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(lambda doc: evaluate(doc, obs(0, 2, 1.0), JobState(), mode="on"), "mode 'on'", id="bad mode"),
        pytest.param(lambda doc: evaluate(doc, obs(0, -1, 1.0), JobState(), mode="active"), "negative",
                     id="negative count"),
        pytest.param(lambda doc: on_manual(doc, 1.0, 2, -3, "", JobState(), mode="active"), "instances must be",
                     id="negative instances"),
        pytest.param(lambda doc: on_manual(doc, 1.0, 2, True, "", JobState(), mode="active"), "instances must be",
                     id="bool instances"),
    ],
)  # fmt: skip
def test_bad_input_is_a_clear_error(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(job([cpu_rule()]))


def test_mark_fires() -> None:
    state = JobState(fires={"a": 100.0})
    new = mark_fires(state, [("a", 50.0), ("b", 70.0)])
    assert new.fires == {"a": 100.0, "b": 70.0}
    assert state.fires == {"a": 100.0}


def test_status() -> None:
    alarm = {"name": "falcon", "type": "alarm", "match": {"stra_id": 7}}
    doc = job([cpu_rule(), qps_rule(), alarm, SCHED], out_cooldown=30, in_cooldown=300)
    state = JobState(
        count=3,
        last_change_at=1000.0,
        streaks={"cpu": Streak(2, 0)},
        alarms={"s7/e3/host1/cpu.busy/": 990.0, "s8/e3/host1/cpu.busy/": 995.0},
        fires={"morning": 500.0},
    )
    s = status(doc, state, 1010.0)
    assert json.loads(json.dumps(s)) == s
    assert s["rules"]["cpu"] == {
        "type": "threshold", "streak_out": 2, "streak_in": 0, "consecutive_out": 3, "consecutive_in": 3,
    }  # fmt: skip
    assert s["rules"]["falcon"]["alarms"] == {"s7/e3/host1/cpu.busy/": 990.0}
    assert s["rules"]["morning"]["last_fire"] == 500.0
    assert s["rules"]["morning"]["next_fire"] == 23 * 3600.0  # 1970-01-01 07:00 in Shanghai = 23:00 UTC
    assert s["cooldown_left"] == {"scale_out": 20.0, "scale_in": 290.0}
    assert status(doc, JobState(), 0.0)["cooldown_left"] == {"scale_out": 0.0, "scale_in": 0.0}
