"""Threshold rules: the seed's "add after 3 buckets > 80, remove after 3 buckets < 60, step 1"."""

from __future__ import annotations

from typing import Any

import pytest

from policies.document import ThresholdRule
from policies.threshold import ThresholdSpec, next_streak, projected_scales_out, propose_threshold
from policies.types import (
    MAX_INSTANCES,
    MIN_INSTANCES,
    NO_DATA,
    SCALE_IN,
    SCALE_OUT,
    WITHIN_TOLERANCE,
    Streak,
)
from tests.policies.build import cpu_rule, job, run


def rule(**kw: Any) -> ThresholdSpec:
    return ThresholdSpec.of(ThresholdRule.model_validate(cpu_rule(**kw)))


@pytest.mark.parametrize(
    ("kw", "value", "before", "current", "desired", "reason", "after"),
    [
        pytest.param({}, 85, Streak(0, 0), 2, 2, WITHIN_TOLERANCE, Streak(1, 0), id="first hot bucket: streak 1"),
        pytest.param({}, 85, Streak(1, 0), 2, 2, WITHIN_TOLERANCE, Streak(2, 0), id="second hot bucket: no add yet"),
        pytest.param({}, 85, Streak(2, 0), 2, 3, SCALE_OUT, Streak(3, 0), id="third hot bucket adds one"),
        pytest.param({}, 85, Streak(7, 0), 2, 3, SCALE_OUT, Streak(8, 0), id="held streak still proposes"),
        pytest.param({}, 80, Streak(2, 0), 2, 2, WITHIN_TOLERANCE, Streak(0, 0), id="exactly above is not above"),
        pytest.param({}, 79, Streak(2, 0), 2, 2, WITHIN_TOLERANCE, Streak(0, 0), id="79 ends the out streak"),
        pytest.param({}, 50, Streak(0, 2), 3, 2, SCALE_IN, Streak(0, 3), id="third cold bucket removes one"),
        pytest.param({}, 60, Streak(0, 2), 3, 3, WITHIN_TOLERANCE, Streak(0, 0), id="exactly below is not below"),
        pytest.param({}, None, Streak(2, 0), 2, None, NO_DATA, Streak(0, 0), id="no data ends both streaks"),
        pytest.param({}, 50, Streak(0, 2), 0, 0, SCALE_IN, Streak(0, 3), id="never below zero"),
        pytest.param({"step": "50%"}, 85, Streak(2, 0), 3, 5, SCALE_OUT, Streak(3, 0), id="50% of 3 rounds up to 2"),
        pytest.param({"step": "50%"}, 85, Streak(2, 0), 1, 2, SCALE_OUT, Streak(3, 0), id="50% of 1 is at least 1"),
        pytest.param({"step": "10%"}, 50, Streak(0, 2), 25, 22, SCALE_IN, Streak(0, 3), id="10% of 25 rounds up to 3"),
        pytest.param({"consecutive": 1}, 81, None, 4, 5, SCALE_OUT, Streak(1, 0), id="consecutive 1 acts at once"),
        pytest.param({"below": None}, 10, Streak(0, 0), 4, None, WITHIN_TOLERANCE, Streak(0, 0), id="no scale_in side: no opinion"),
        pytest.param({"above": None}, 99, Streak(0, 0), 4, 4, WITHIN_TOLERANCE, Streak(0, 0), id="no scale_out side keeps count"),
    ],
)  # fmt: skip
def test_proposal(
    kw: dict[str, Any],
    value: float | None,
    before: Streak | None,
    current: int,
    desired: int | None,
    reason: str,
    after: Streak,
) -> None:
    p, st = propose_threshold(rule(**kw), value, current, before)
    assert (p.desired, p.reason, st) == (desired, reason, after)
    assert p.inputs["streak_out"] == after.out and p.inputs["streak_in"] == after.in_
    assert next_streak(rule(**kw), value, before) == after
    if before is not None:
        assert before == Streak(before.out, before.in_)  # the input is not modified


OUT_BANDS = {"bands": [{"above": 90, "step": 2}, {"above": 95, "step": "100%"}]}
IN_BANDS = {"bands": [{"below": 30, "step": 2}, {"below": 10, "step": 3}]}


@pytest.mark.parametrize(
    ("value", "current", "desired", "band"),
    [
        pytest.param(85, 4, 5, None, id="under every band: the side's step"),
        pytest.param(90, 4, 5, None, id="at a band's edge: not in it"),
        pytest.param(92, 4, 6, 90, id="above 90: step 2"),
        pytest.param(99, 4, 8, 95, id="above 95: the largest matching band, 100%"),
        pytest.param(50, 6, 5, None, id="cold, no band"),
        pytest.param(20, 6, 4, 30, id="below 30: step 2"),
        pytest.param(5, 6, 3, 10, id="below 10: the largest matching band, step 3"),
    ],
)
def test_bands(value: float, current: int, desired: int, band: float | None) -> None:
    p, _ = propose_threshold(rule(consecutive=1, out=OUT_BANDS, in_=IN_BANDS), value, current, None)
    assert p.desired == desired
    assert p.inputs["band"] == band


@pytest.mark.parametrize(
    ("value", "current", "new", "unsafe", "projected"),
    [
        pytest.param(55, 4, 3, False, 55 * 4 / 3, id="55 on 4 → 73.3 on 3: safe"),
        pytest.param(55, 4, 2, True, 110, id="55 on 4 → 110 on 2: would scale out"),
        pytest.param(40, 4, 2, False, 80, id="exactly at above is safe"),
        pytest.param(10, 4, 0, True, float("inf"), id="to zero: any load is unsafe"),
    ],
)
def test_projection(value: float, current: int, new: int, unsafe: bool, projected: float) -> None:
    bad, got = projected_scales_out(rule(), value, current, new)
    assert bad is unsafe
    assert got == pytest.approx(projected)


# --- the seed's example through the engine: min 1, max 5, ±1 after 3 buckets (> 80 / < 60) ----------------


@pytest.mark.parametrize(
    ("start", "values", "desired"),
    [
        pytest.param(2, [85, 85, 85], [2, 2, 3], id="adds on the third hot bucket, not the second"),
        pytest.param(2, [85, 85, 79, 85, 85, 85], [2, 2, 2, 2, 2, 3], id="a 79 in between resets the streak"),
        pytest.param(2, [85, 85, None, 85, 85, 85], [2, 2, 2, 2, 2, 3], id="no data in between resets it"),
        pytest.param(2, [85] * 6, [2, 2, 3, 3, 3, 4], id="streaks restart after the change"),
        pytest.param(3, [50, 50, 50], [3, 3, 2], id="removes on the third cold bucket"),
        pytest.param(
            3, [50, 50, 70, 50, 50, 50], [3, 3, 3, 3, 3, 2], id="a 70 in between resets the cold streak"
        ),
        pytest.param(3, [80, 80, 80, 60, 60, 60], [3] * 6, id="bounds themselves are inside"),
    ],
)
def test_seed_example(start: int, values: list[float | None], desired: list[int]) -> None:
    assert run(job([cpu_rule()]), values, start).desired == desired


def test_seed_at_max_records_max_instances_and_keeps_the_streak() -> None:
    r = run(job([cpu_rule()]), [85, 85, 85, 85], 5)
    assert r.desired == [5, 5, 5, 5]
    assert r.codes == [[], [], [MAX_INSTANCES], [MAX_INSTANCES]]
    lim = r.decisions[2].limits[0]
    assert (lim.before, lim.after) == (6, 5)
    assert r.reasons[2] == [SCALE_OUT, MAX_INSTANCES]
    assert r.states[-1].streaks["cpu"] == Streak(4, 0)  # held by a bound: the streak is kept


def test_seed_at_min_records_min_instances() -> None:
    r = run(job([cpu_rule()]), [50, 50, 50], 1)
    assert r.desired == [1, 1, 1]
    assert r.reasons[2] == [SCALE_IN, MIN_INSTANCES]
    assert (r.decisions[2].limits[0].before, r.decisions[2].limits[0].after) == (0, 1)


def test_count_changed_by_hand_restarts_the_streak_then_counts_the_bucket() -> None:
    doc = job([cpu_rule()])
    r = run(doc, [85, 85], 2)
    # someone scaled to 4 by hand: this hot bucket is streak 1 (reset, then counted), not 3
    r2 = run(doc, [85, 85, 85], 4, state=r.states[-1], first=2)
    assert r2.desired == [4, 4, 5]
    assert r2.states[0].streaks["cpu"] == Streak(1, 0)
    assert r2.states[0].last_change_at is None  # a change by hand starts no cooldown
