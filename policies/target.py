"""Target rules (PRODUCT §3.2): the Kubernetes HPA algorithm on a per-instance aggregate.

    ratio   = value / target
    within  1 − tolerance_in <= ratio <= 1 + tolerance_out  (both default to `tolerance`; edges included,
            as HPA's |1 − ratio| <= tolerance)  → propose the current count (WithinTolerance)
    else    desired = ceil(ready × ratio)  (ready instances; the current count when none is ready)

HPA's example: 3 ready instances at 90 with target 60 → ceil(3 × 1.5) = 5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from policies.document import TargetRule
from policies.types import NO_DATA, SCALE_IN, SCALE_OUT, WITHIN_TOLERANCE, Proposal, TargetProposal

_EPS = 1e-9  # float noise: 3 × 80 / 60 must be 4, not 4.000000000000001 → 5

_new = tuple.__new__  # Proposal and Limit are NamedTuples: built as the tuples they are (hot path)


def tolerances(rule: TargetRule) -> tuple[float, float]:
    """(tolerance_out, tolerance_in) with the shared default applied."""
    t_out = rule.tolerance if rule.tolerance_out is None else rule.tolerance_out
    t_in = rule.tolerance if rule.tolerance_in is None else rule.tolerance_in
    return t_out, t_in


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """A target rule as plain values (`TargetSpec.of(rule)`), the tolerance band precomputed."""

    name: str
    target: float
    tolerance_out: float
    tolerance_in: float
    high: float  # ratios up to here are within tolerance (1 + tolerance_out)
    low: float  # ratios from here are within tolerance (1 − tolerance_in)

    @staticmethod
    def of(rule: TargetRule) -> TargetSpec:
        t_out, t_in = tolerances(rule)
        return TargetSpec(rule.name, rule.target, t_out, t_in, 1.0 + t_out + _EPS, 1.0 - t_in - _EPS)


def _ceil(x: float) -> int:
    return max(0, math.ceil(x - _EPS))


def propose_target(rule: TargetSpec, value: float | None, current: int, ready: int) -> Proposal:
    """The rule's proposal for a bucket value (ready: instances ready now; the current count if none)."""
    target = rule.target
    if value is None:
        return _new(Proposal, (rule.name, "target", None, NO_DATA, {"value": None, "target": target}))
    ratio = value / target
    base = ready if ready > 0 else current
    inputs = (value, target, ratio, base)  # {"value", "target", "ratio", "ready"}, built when read
    if rule.low <= ratio <= rule.high:
        return _new(TargetProposal, (rule.name, "target", current, WITHIN_TOLERANCE, inputs))
    desired = math.ceil(base * value / target - _EPS)  # _ceil, inlined: the hot path
    if desired < 0:
        desired = 0
    if desired > current:
        reason = SCALE_OUT
    elif desired < current:
        reason = SCALE_IN
    else:
        reason = WITHIN_TOLERANCE  # outside the tolerance, but the formula lands on the current count
    return _new(TargetProposal, (rule.name, "target", desired, reason, inputs))


def projected_scales_out(rule: TargetSpec, value: float, current: int, new: int) -> tuple[bool, float]:
    """Flapping guard: spread the load over `new` instances (value × current / new, all of them ready):
    would the rule then ask for more than `new`? Returns (unsafe, projected value)."""
    if new <= 0:
        return value > 0, (float("inf") if value > 0 else value)
    projected = value * current / new
    ratio = projected / rule.target
    if ratio <= rule.high:
        return False, projected
    return _ceil(new * ratio) > new, projected
