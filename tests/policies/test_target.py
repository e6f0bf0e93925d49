"""Target rules: the Kubernetes HPA algorithm (desired = ceil(ready × value / target), with tolerance)."""

from __future__ import annotations

from typing import Any

import pytest

from policies.document import TargetRule
from policies.target import TargetSpec, projected_scales_out, propose_target, tolerances
from policies.types import NO_DATA, SCALE_IN, SCALE_OUT, WITHIN_TOLERANCE
from tests.policies.build import job, qps_rule, run


def rule(**kw: Any) -> TargetRule:
    return TargetRule.model_validate(qps_rule(**kw))


def spec(**kw: Any) -> TargetSpec:
    return TargetSpec.of(rule(**kw))


@pytest.mark.parametrize(
    ("kw", "value", "current", "ready", "desired", "reason"),
    [
        pytest.param({}, 90, 3, 3, 5, SCALE_OUT, id="HPA: 3 ready at 90, target 60 → 5"),
        pytest.param({}, 65, 3, 3, 3, WITHIN_TOLERANCE, id="ratio 1.083 within ±10%"),
        pytest.param({}, 66, 3, 3, 3, WITHIN_TOLERANCE, id="ratio exactly 1.1 is within"),
        pytest.param({}, 67, 3, 3, 4, SCALE_OUT, id="ratio 1.117 outside → ceil(3.35) = 4"),
        pytest.param({}, 54, 3, 3, 3, WITHIN_TOLERANCE, id="ratio exactly 0.9 is within"),
        pytest.param({}, 30, 4, 4, 2, SCALE_IN, id="half the target on 4 → 2"),
        pytest.param({}, 80, 3, 3, 4, SCALE_OUT, id="3 × 80 / 60 is exactly 4, not 5"),
        pytest.param({}, 90, 5, 3, 5, WITHIN_TOLERANCE, id="uses ready: 3 ready at 90 → 5 = current"),
        pytest.param({}, 90, 4, 0, 6, SCALE_OUT, id="no instance ready: uses current"),
        pytest.param({}, 0, 4, 4, 0, SCALE_IN, id="no load at all → 0 (bounds clamp later)"),
        pytest.param({}, None, 4, 4, None, NO_DATA, id="no data: no opinion, NoData"),
        pytest.param({"tolerance_out": 0.5}, 85, 3, 3, 3, WITHIN_TOLERANCE, id="tolerance_out 0.5: 1.417 within"),
        pytest.param({"tolerance_out": 0.5}, 48, 5, 5, 4, SCALE_IN, id="tolerance_out leaves the in side at 0.1"),
        pytest.param({"tolerance_in": 0.05}, 50, 6, 6, 5, SCALE_IN, id="tolerance_in 0.05: 0.833 outside"),
        pytest.param({"tolerance_in": 0.3}, 50, 6, 6, 6, WITHIN_TOLERANCE, id="tolerance_in 0.3: 0.833 within"),
        pytest.param({"tolerance": 0}, 61, 10, 10, 11, SCALE_OUT, id="tolerance 0: any excess scales"),
    ],
)  # fmt: skip
def test_proposal(
    kw: dict[str, Any], value: float | None, current: int, ready: int, desired: int | None, reason: str
) -> None:
    p = propose_target(spec(**kw), value, current, ready)
    assert (p.desired, p.reason) == (desired, reason)
    if value is not None:
        assert p.inputs["ratio"] == pytest.approx(value / 60)


def test_tolerances_default_per_direction() -> None:
    assert tolerances(rule()) == (0.1, 0.1)
    assert tolerances(rule(tolerance=0.2, tolerance_in=0.05)) == (0.2, 0.05)


@pytest.mark.parametrize(
    ("value", "current", "new", "unsafe"),
    [
        pytest.param(30, 4, 2, False, id="30 on 4 → 60 on 2: on target"),
        pytest.param(30, 4, 1, True, id="30 on 4 → 120 on 1: would ask for 2"),
        pytest.param(50, 4, 3, True, id="66.7 on 3: ratio 1.11 outside, ceil(3.33) = 4 > 3"),
        pytest.param(46, 4, 3, False, id="61.3 on 3: within 10%"),
        pytest.param(10, 4, 0, True, id="to zero: any load is unsafe"),
    ],
)
def test_projection(value: float, current: int, new: int, unsafe: bool) -> None:
    assert projected_scales_out(spec(), value, current, new)[0] is unsafe


def test_hpa_through_the_engine_with_max_step() -> None:
    doc = job([qps_rule()], max_instances=20, behavior={"scale_out": {"max_step": 1}})
    r = run(doc, [{"qps": 90}, {"qps": 90}], 3)
    assert r.desired == [4, 5]
    assert r.reasons[0] == ["ScaleOut", "MaxStep"]
    assert r.decisions[0].proposals[0].desired == 5
