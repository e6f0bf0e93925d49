"""Threshold rules (PRODUCT §3.2): streaks of consecutive closed buckets above / below a bound.

Pure functions of (rule, bucket value, current count, previous streak). The engine owns the streaks'
lifetime: it resets them after every change of the job's count (PRODUCT §3.2).

Semantics, pinned down:
- a bucket value strictly above `scale_out.above` lengthens the out streak, anything else ends it;
  strictly below `scale_in.below` lengthens the in streak, anything else ends it; no data ends both;
- when the out streak reaches `consecutive` the rule proposes current + step, where step is the step of
  the largest band whose `above` the bucket's value exceeds, else the side's step (percentages of the
  current count, rounded up, at least 1: `policies.document.step_count`); the same for scale-in with
  `below`, never proposing fewer than 0 instances;
- a streak keeps growing while a proposal is held back (by a cooldown or a bound), so the action comes at
  the first bucket that allows it;
- otherwise the rule proposes the current count (WithinTolerance). A rule without a `scale_in` side has
  no opinion on scale-in: while it does not propose a scale-out it proposes None ("no opinion", reason
  WithinTolerance), so it neither causes nor blocks another rule's scale-in (only a rule *with data*
  that keeps the count, or one *without data*, blocks it).
"""

from __future__ import annotations

from dataclasses import dataclass

from policies.document import Band, ThresholdRule, step_count
from policies.types import (
    NO_DATA,
    SCALE_IN,
    SCALE_OUT,
    WITHIN_TOLERANCE,
    Proposal,
    QuietThresholdProposal,
    Streak,
)

_ZERO = Streak(0, 0)
BandStep = tuple[float, int | str]  # (edge, step)

_new = tuple.__new__  # Proposal and Limit are NamedTuples: built as the tuples they are (hot path)


@dataclass(frozen=True, slots=True)
class ThresholdSpec:
    """A threshold rule as plain values (`ThresholdSpec.of(rule)`): what the functions below read."""

    name: str
    above: float | None  # None: no scale_out side
    out_consecutive: int
    out_step: int | str
    out_bands: tuple[BandStep, ...]
    below: float | None  # None: no scale_in side
    in_consecutive: int
    in_step: int | str
    in_bands: tuple[BandStep, ...]

    @staticmethod
    def of(rule: ThresholdRule) -> ThresholdSpec:
        so, si = rule.scale_out, rule.scale_in
        return ThresholdSpec(
            name=rule.name,
            above=None if so is None else so.above,
            out_consecutive=1 if so is None else so.consecutive,
            out_step=1 if so is None else so.step,
            out_bands=() if so is None else _bands(so.bands, "above"),
            below=None if si is None else si.below,
            in_consecutive=1 if si is None else si.consecutive,
            in_step=1 if si is None else si.step,
            in_bands=() if si is None else _bands(si.bands, "below"),
        )


def _bands(bands: list[Band], edge: str) -> tuple[BandStep, ...]:
    out: list[BandStep] = []
    for b in bands:
        value = b.above if edge == "above" else b.below
        if value is not None:
            out.append((value, b.step))
    return tuple(out)


def next_streak(rule: ThresholdSpec, value: float | None, streak: Streak | None) -> Streak:
    """The rule's streaks after one more closed bucket (a new object; `streak` is not modified)."""
    if value is None:
        return Streak(0, 0)
    prev = streak or _ZERO
    above, below = rule.above, rule.below
    out = prev.out + 1 if above is not None and value > above else 0
    in_ = prev.in_ + 1 if below is not None and value < below else 0
    return Streak(out, in_)


def _out_band(bands: tuple[BandStep, ...], value: float) -> BandStep | None:
    """The band with the largest `above` that the value exceeds."""
    best: BandStep | None = None
    for b in bands:
        if value > b[0] and (best is None or b[0] > best[0]):
            best = b
    return best


def _in_band(bands: tuple[BandStep, ...], value: float) -> BandStep | None:
    """The band with the smallest `below` that the value is under."""
    best: BandStep | None = None
    for b in bands:
        if value < b[0] and (best is None or b[0] < best[0]):
            best = b
    return best


def propose_threshold(
    rule: ThresholdSpec, value: float | None, current: int, streak: Streak | None
) -> tuple[Proposal, Streak]:
    """Count this bucket into the streaks and propose a count; returns (proposal, new streak)."""
    if value is None:
        inputs_nd: dict[str, object] = {"value": None, "streak_out": 0, "streak_in": 0}
        return _new(Proposal, (rule.name, "threshold", None, NO_DATA, inputs_nd)), _ZERO
    # next_streak, inlined: this is the daemon's hot path (the previous counts in one unpacking: a
    # NamedTuple field read by name is a generic attribute lookup)
    prev_out, prev_in = streak or _ZERO
    above, below = rule.above, rule.below
    out = prev_out + 1 if above is not None and value > above else 0
    in_ = prev_in + 1 if below is not None and value < below else 0
    # an unchanged streak is the same object (states are values: nothing changes one in place)
    st = streak if streak is not None and out == prev_out and in_ == prev_in else _new(Streak, (out, in_))
    if above is not None and out >= rule.out_consecutive:
        band = _out_band(rule.out_bands, value) if rule.out_bands else None
        step = band[1] if band is not None else rule.out_step
        n = step_count(step, current)
        inputs: dict[str, object] = {
            "value": value,
            "streak_out": out,
            "streak_in": in_,
            "above": above,
            "consecutive": rule.out_consecutive,
            "step": step,
            "band": band[0] if band else None,
        }
        return _new(Proposal, (rule.name, "threshold", current + n, SCALE_OUT, inputs)), st
    if below is not None and in_ >= rule.in_consecutive:
        band = _in_band(rule.in_bands, value) if rule.in_bands else None
        step = band[1] if band is not None else rule.in_step
        n = step_count(step, current)
        inputs = {
            "value": value,
            "streak_out": out,
            "streak_in": in_,
            "below": below,
            "consecutive": rule.in_consecutive,
            "step": step,
            "band": band[0] if band else None,
        }
        return _new(Proposal, (rule.name, "threshold", max(0, current - n), SCALE_IN, inputs)), st
    # the inputs {"value", "streak_out", "streak_in"}, built when read (most buckets are never shown)
    desired = current if below is not None else None
    return _new(
        QuietThresholdProposal, (rule.name, "threshold", desired, WITHIN_TOLERANCE, (value, out, in_))
    ), st


def projected_scales_out(rule: ThresholdSpec, value: float, current: int, new: int) -> tuple[bool, float]:
    """Flapping guard (Azure's rule): would this rule's value, spread over `new` instances instead of
    `current` (value × current / new), be above its scale-out bound? Returns (unsafe, projected value)."""
    projected = _project(value, current, new)
    return (rule.above is not None and projected > rule.above), projected


def _project(value: float, current: int, new: int) -> float:
    if new <= 0:
        return float("inf") if value > 0 else value
    return value * current / new
