"""The evaluation order (PRODUCT §3.3): combine, stabilization, flapping guard, max step, cooldown, bounds."""

from __future__ import annotations

import random

import pytest

from policies.behavior import (
    Limits,
    apply_limits,
    clamp,
    combine,
    cooldown,
    effective_bounds,
    flapping_guard,
    max_step,
    stabilize,
)
from policies.document import TargetRule, ThresholdRule
from policies.target import TargetSpec
from policies.threshold import ThresholdSpec
from policies.types import (
    COOLDOWN,
    DEPLOYMENT_IN_PROGRESS,
    FLAPPING_GUARD,
    MAX_INSTANCES,
    MAX_STEP,
    MIN_INSTANCES,
    NO_DATA,
    SCALE_OUT,
    STABILIZED,
    WITHIN_TOLERANCE,
    JobState,
    Proposal,
    Window,
)
from tests.policies.build import cpu_rule, qps_rule


def P(desired: int | None, reason: str = "") -> Proposal:
    if not reason:
        reason = NO_DATA if desired is None else SCALE_OUT
    return Proposal("r", "threshold", desired, reason)


@pytest.mark.parametrize(
    ("proposals", "current", "combined"),
    [
        pytest.param([P(5), P(7)], 4, 7, id="scale out: the largest proposal"),
        pytest.param([P(5), P(2)], 4, 5, id="any proposal above current scales out"),
        pytest.param([P(6), P(None)], 4, 6, id="no data never blocks scale-out"),
        pytest.param([P(2), P(3)], 4, 3, id="scale in: the largest, i.e. the smallest reduction"),
        pytest.param([P(2), P(4)], 4, 4, id="one rule keeping the count blocks scale-in"),
        pytest.param([P(2), P(None)], 4, 4, id="no data blocks scale-in"),
        pytest.param([P(2), P(None, WITHIN_TOLERANCE)], 4, 2, id="no opinion neither causes nor blocks"),
        pytest.param([P(None, WITHIN_TOLERANCE)], 4, 4, id="only no opinion: keep"),
        pytest.param([P(None)], 4, 4, id="only no data: keep"),
        pytest.param([], 4, 4, id="no metric rule: keep"),
    ],
)
def test_combine(proposals: list[Proposal], current: int, combined: int) -> None:
    assert combine(proposals, current) == combined


def limits(**kw: float | int | None) -> Limits:
    base: dict[str, float | int | None] = dict(
        out_cooldown=30.0, in_cooldown=300.0, out_max_step=None, in_max_step=None, out_window=0.0,
        in_window=0.0, deployment_timeout=600.0, min_instances=1, max_instances=10,
    )  # fmt: skip
    base.update(kw)
    return Limits(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("recent", "proposed", "kept"),
    [
        pytest.param([(50, 5), (60, 3)], 3, [(50, 5), (100, 3)], id="a repeat moves the latest time of its count"),
        pytest.param([(50, 5), (60, 3)], 4, [(50, 5), (60, 3), (100, 4)], id="another count is appended"),
        pytest.param([(30, 9), (50, 5)], 5, [(100, 5)], id="expired entries leave from the front"),
    ],
)  # fmt: skip
def test_stabilize_keeps_a_short_history(
    recent: list[tuple[float, int]], proposed: int, kept: list[tuple[float, int]]
) -> None:
    """Equal proposals in a row are kept as the latest one: every window's max and min stay the same."""
    _, hist, _ = stabilize(limits(in_window=60), 5, proposed, 100, recent)
    assert hist == kept


@pytest.mark.parametrize(
    ("kw", "current", "proposed", "now", "recent", "result", "code"),
    [
        pytest.param({"in_window": 60}, 5, 3, 100, [(50, 5)], 5, STABILIZED, id="5 proposed 50 s ago holds 3 at 5"),
        pytest.param({"in_window": 60}, 5, 3, 100, [(40, 5)], 3, None, id="60 s ago is out of the window"),
        pytest.param({"in_window": 60}, 6, 3, 100, [(50, 4), (60, 5)], 5, STABILIZED, id="the largest in the window"),
        pytest.param({"in_window": 60}, 4, 3, 100, [(50, 9)], 4, STABILIZED, id="never above current"),
        pytest.param({"in_window": 60}, 4, 6, 100, [(50, 2)], 6, None, id="scale-out is not held by the in window"),
        pytest.param({"out_window": 60}, 4, 7, 100, [(50, 5)], 5, STABILIZED, id="out window: the smallest proposal"),
        pytest.param({"out_window": 60}, 4, 7, 100, [(50, 2)], 4, STABILIZED, id="out window: never below current"),
        pytest.param({}, 5, 3, 100, [(50, 5)], 3, None, id="no window: no history"),
    ],
)  # fmt: skip
def test_stabilize(
    kw: dict[str, float],
    current: int,
    proposed: int,
    now: float,
    recent: list[tuple[float, int]],
    result: int,
    code: str | None,
) -> None:
    new, hist, hit = stabilize(limits(**kw), current, proposed, now, recent)
    assert new == result
    assert (hit.code if hit else None) == code
    if kw:
        assert hist[-1] == (now, proposed)
        assert all(t > now - 60 for t, _ in hist)  # pruned
    else:
        assert hist == []


def test_apply_limits_stabilizes_as_stabilize() -> None:
    """apply_limits' step 2 is `stabilize`: the same count, limit and kept history, over windows,
    histories and proposals of every kind (nothing else applies here: no cooldown, max step, guard or
    bound), and the state's history is not changed in place."""
    rng = random.Random(16)
    now = 1000.0
    held = 0
    for _ in range(4000):
        lim = limits(
            in_window=rng.choice([0.0, 30.0, 60.0, 300.0]),
            out_window=rng.choice([0.0, 30.0, 60.0, 400.0]),
            min_instances=0,
            max_instances=100,
        )
        times = sorted(rng.sample(range(500, 1000, 10), rng.randrange(0, 8)))
        recent = [(float(t), rng.randrange(0, 10)) for t in times]
        before = list(recent)
        current, proposed = rng.randrange(0, 10), rng.randrange(0, 10)
        count, hit_limits, kept = apply_limits(
            lim, current, proposed, now, JobState(recent=recent), None, (), None
        )
        s_count, s_kept, s_hit = stabilize(lim, current, proposed, now, recent)
        assert (count, hit_limits, kept) == (s_count, [] if s_hit is None else [s_hit], s_kept)
        assert recent == before  # the state's history is not changed in place
        held += s_hit is not None
    assert held > 400  # the windows did hold proposals


CPU = ThresholdSpec.of(ThresholdRule.model_validate(cpu_rule()))
QPS = TargetSpec.of(TargetRule.model_validate(qps_rule(target=100)))


@pytest.mark.parametrize(
    ("current", "proposed", "rules", "floor", "result"),
    [
        pytest.param(4, 2, [(CPU, 55.0)], 0, 3, id="55 on 2 would be 110: shrink to 3 (73.3)"),
        pytest.param(4, 3, [(CPU, 55.0)], 0, 3, id="already safe: unchanged"),
        pytest.param(2, 1, [(CPU, 59.0)], 0, 2, id="even current - 1 unsafe: skip"),
        pytest.param(10, 1, [(CPU, 20.0)], 0, 3, id="binary search: 20 × 10 / 3 = 66.7 is the first safe"),
        pytest.param(4, 1, [(CPU, 10.0), (QPS, 40.0)], 0, 2, id="target rule: 40 × 4 / 1 = 160 → 2 is safe"),
        pytest.param(4, 0, [(CPU, 10.0)], 1, 0, id="safe at the floor: left for the clamp"),
        pytest.param(4, 2, [], 0, 2, id="no metric values: nothing to project"),
    ],
)
def test_flapping_guard(
    current: int,
    proposed: int,
    rules: list[tuple[ThresholdSpec | TargetSpec, float]],
    floor: int,
    result: int,
) -> None:
    new, hit = flapping_guard(current, proposed, rules, floor)
    assert new == result
    assert (hit is not None) == (result != proposed)
    if hit is not None:
        assert (hit.code, hit.before, hit.after) == (FLAPPING_GUARD, proposed, result)


@pytest.mark.parametrize(
    ("kw", "current", "proposed", "result"),
    [
        pytest.param({"out_max_step": 2}, 3, 9, 5, id="out: at most 2"),
        pytest.param({"out_max_step": 2}, 3, 5, 5, id="out: exactly 2 passes"),
        pytest.param({"in_max_step": 1}, 5, 2, 4, id="in: at most 1"),
        pytest.param({"in_max_step": 1}, 5, 9, 9, id="in step does not limit scale-out"),
        pytest.param({}, 3, 9, 9, id="no max step"),
    ],
)
def test_max_step(kw: dict[str, int], current: int, proposed: int, result: int) -> None:
    new, hit = max_step(limits(**kw), current, proposed)
    assert new == result
    assert (hit.code if hit else None) == (MAX_STEP if result != proposed else None)


@pytest.mark.parametrize(
    ("current", "proposed", "now", "last_change", "deploy", "result", "code"),
    [
        pytest.param(3, 4, 129.0, 100.0, None, 3, COOLDOWN, id="out: 29 s after a change is held (30 s)"),
        pytest.param(3, 4, 130.0, 100.0, None, 4, None, id="out: exactly at the limit is allowed"),
        pytest.param(3, 2, 130.0, 100.0, None, 3, COOLDOWN, id="in: 30 s is not the 300 s in cooldown"),
        pytest.param(3, 2, 399.0, 100.0, None, 3, COOLDOWN, id="in: 299 s held"),
        pytest.param(3, 2, 400.0, 100.0, None, 2, None, id="in: exactly 300 s allowed"),
        pytest.param(3, 4, 0.0, None, None, 4, None, id="never changed: no cooldown"),
        pytest.param(3, 3, 101.0, 100.0, None, 3, None, id="no change: nothing to hold"),
        pytest.param(3, 4, 1000.0, None, 500.0, 3, DEPLOYMENT_IN_PROGRESS, id="deployment running: hold"),
        pytest.param(3, 4, 1100.0, None, 500.0, 4, None, id="deployment past its 600 s timeout: go"),
        pytest.param(3, 2, 1099.0, None, 500.0, 3, DEPLOYMENT_IN_PROGRESS, id="holds scale-in too"),
    ],
)
def test_cooldown(
    current: int,
    proposed: int,
    now: float,
    last_change: float | None,
    deploy: float | None,
    result: int,
    code: str | None,
) -> None:
    new, hit = cooldown(limits(), current, proposed, now, last_change, deploy)
    assert new == result
    assert (hit.code if hit else None) == code


def W(lo: int | None, hi: int | None) -> Window:
    return Window("w", 0.0, 1.0, lo, hi)


@pytest.mark.parametrize(
    ("windows", "bounds"),
    [
        pytest.param([], (1, 10), id="the job's own"),
        pytest.param([W(3, None)], (3, 10), id="a window raises min"),
        pytest.param([W(None, 4)], (1, 4), id="a window caps max"),
        pytest.param([W(0, 20)], (0, 20), id="a window may loosen both"),
        pytest.param([W(3, None), W(5, 8)], (5, 8), id="overlapping: the largest min, the largest max"),
        pytest.param([W(None, 4), W(None, 20)], (1, 20), id="overlapping caps: the largest"),
        pytest.param([W(12, None)], (12, 12), id="window min above the job's max: the window wins"),
        pytest.param([W(None, 0)], (0, 0), id="window max below the job's min: the window wins"),
        pytest.param([W(6, None), W(None, 4)], (6, 6), id="two windows inverted: min wins"),
    ],
)
def test_effective_bounds(windows: list[Window], bounds: tuple[int, int]) -> None:
    assert effective_bounds(limits(), windows) == bounds


@pytest.mark.parametrize(
    ("proposed", "result", "code"),
    [
        pytest.param(11, 10, MAX_INSTANCES, id="above max"),
        pytest.param(0, 1, MIN_INSTANCES, id="below min"),
        pytest.param(5, 5, None, id="inside"),
    ],
)
def test_clamp(proposed: int, result: int, code: str | None) -> None:
    new, hit = clamp(1, 10, proposed)
    assert new == result and (hit.code if hit else None) == code
