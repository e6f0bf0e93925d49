"""The evaluation order after the rules have proposed (PRODUCT §3.3): combine (step 1), then the limits
stabilization (2), flapping guard (3), max step (4), cooldown and deployment (5), bounds (6).

`apply_limits` runs steps 2–6 in order; each limit that changes or holds the count appends a `Limit`
with its reason code. Pure functions of plain values; `Limits.of(doc)` precomputes what they need from
a job document once.

Semantics, pinned down:
- combine: scale out if any proposal is above current (the largest wins); scale in only if no metric rule
  lacks data (reason NoData), no proposal keeps the current count, and at least one proposal is below
  current (the largest of those wins: the smallest reduction). Proposals of None without NoData are "no
  opinion" (an alarm OK without step_in, a one-sided threshold rule) and neither cause nor block.
- stabilization: `recent` holds (time, combined proposal) of every evaluation within the longer window,
  in time order, a run of equal proposals kept as its latest (the same answers with a short list);
  an entry counts while time > now − window. Scale-in goes no lower than the largest proposal in the
  scale-in window (never above current); scale-out, when `scale_out.stabilization` > 0, no higher than
  the smallest in its window (never below current).
- flapping guard: the smallest count n in [max(proposed, min), current) at which no metric rule, given
  its value projected to n (value × current / n), would scale out; none → the scale-in is skipped.
  Projection is monotone in n, so this is a binary search. It looks no lower than the effective
  min_instances (the count never goes there; a proposal below it is clamped in step 6, MinInstances).
- cooldown: scale-out is held while now − last_change_at < out cooldown, scale-in while < in cooldown
  (a change exactly at the limit passes). Then, while a deployment started less than
  `deployment_timeout` ago is still running, any change is held (DeploymentInProgress).
- bounds: clamp to the effective [min, max] (schedule windows included). This also moves a job that is
  outside its bounds with no proposal at all (a window with min 3 lifts a job at 2 to 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from policies.document import JobDocument, PredictiveRule, TargetRule
from policies.target import TargetSpec
from policies.target import projected_scales_out as target_unsafe
from policies.threshold import ThresholdSpec
from policies.threshold import projected_scales_out as threshold_unsafe
from policies.types import (
    COOLDOWN,
    DEPLOYMENT_IN_PROGRESS,
    FLAPPING_GUARD,
    MAX_INSTANCES,
    MAX_STEP,
    MIN_INSTANCES,
    NO_DATA,
    STABILIZED,
    JobState,
    Limit,
    Proposal,
    Window,
)

MetricSpec = ThresholdSpec | TargetSpec

_new = tuple.__new__  # Proposal and Limit are NamedTuples: built as the tuples they are (hot path)


@dataclass(frozen=True, slots=True)
class Limits:
    """What steps 2–6 need from a job document, as plain values."""

    out_cooldown: float
    in_cooldown: float
    out_max_step: int | None
    in_max_step: int | None
    out_window: float
    in_window: float
    deployment_timeout: float
    min_instances: int
    max_instances: int
    in_window_default: bool = False  # in_window is the default of a job with a target/predictive rule
    # derived once per document (__post_init__), not at every bucket: the stabilization horizon and the
    # fixed parts of its details (a float's :g format is most of a held decision's cost)
    horizon: float = field(init=False, compare=False, repr=False)
    in_text: str = field(init=False, compare=False, repr=False)
    in_suffix: str = field(init=False, compare=False, repr=False)
    out_text: str = field(init=False, compare=False, repr=False)
    out_step_text: str = field(init=False, compare=False, repr=False)
    in_step_text: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        put = object.__setattr__  # frozen: set once, here
        put(self, "horizon", max(self.in_window, self.out_window))
        put(self, "in_text", f"largest proposal in the last {self.in_window:g}s was ")
        suffix = " (scale_in.stabilization: the default 5m of a job with a target or predictive rule)"
        put(self, "in_suffix", suffix if self.in_window_default else "")
        put(self, "out_text", f"smallest proposal in the last {self.out_window:g}s was ")
        put(self, "out_step_text", f"scale_out.max_step {self.out_max_step}")
        put(self, "in_step_text", f"scale_in.max_step {self.in_max_step}")

    @staticmethod
    def of(doc: JobDocument) -> Limits:
        b = doc.behavior
        sizing = any(isinstance(r, TargetRule | PredictiveRule) for r in doc.rules)
        return Limits(
            out_cooldown=b.out_cooldown(),
            in_cooldown=b.in_cooldown(),
            out_max_step=b.scale_out.max_step,
            in_max_step=b.scale_in.max_step,
            out_window=b.out_stabilization(),
            in_window=b.in_stabilization(sizing),
            deployment_timeout=doc.deployment_timeout,
            min_instances=doc.min_instances,
            max_instances=doc.max_instances,
            in_window_default=b.scale_in.stabilization is None and sizing,
        )


def combine(proposals: Sequence[Proposal], current: int) -> int:
    """Step 1: the combined proposal of every rule's proposal (see the module notes)."""
    best_out: int | None = None
    best_in: int | None = None
    blocked = False
    for p in proposals:
        d = p.desired
        if d is None:
            if p.reason == NO_DATA:
                blocked = True
        elif d > current:
            if best_out is None or d > best_out:
                best_out = d
        elif d < current:
            if best_in is None or d > best_in:
                best_in = d
        else:
            blocked = True
    if best_out is not None:
        return best_out
    if best_in is not None and not blocked:
        return best_in
    return current


def effective_bounds(lim: Limits, windows: Sequence[Window]) -> tuple[int, int]:
    """The job's [min, max] with schedule windows applied. A window's override replaces the job's own
    bound (stricter or looser); overlapping windows: the largest min and the largest max. If the result is
    inverted, a window's bound beats the job's own; between two windows' bounds, min wins."""
    lo, hi = lim.min_instances, lim.max_instances
    lo_w = hi_w = False
    for w in windows:
        if w.min_instances is not None:
            lo = w.min_instances if not lo_w else max(lo, w.min_instances)
            lo_w = True
        if w.max_instances is not None:
            hi = w.max_instances if not hi_w else max(hi, w.max_instances)
            hi_w = True
    if lo > hi:
        if hi_w and not lo_w:
            lo = hi
        else:
            hi = lo
    return lo, hi


def stabilize(
    lim: Limits, current: int, proposed: int, now: float, recent: Sequence[tuple[float, int]]
) -> tuple[int, list[tuple[float, int]], Limit | None]:
    """Step 2. Returns (count, the pruned history with this proposal appended, limit or None)."""
    horizon = lim.horizon
    if horizon <= 0:
        return proposed, [], None
    cut = now - horizon
    # entries are in time order (each evaluation appends at its `now`): drop the expired ones at the front
    i, n = 0, len(recent)
    while i < n and recent[i][0] <= cut:
        i += 1
    hist = recent[i:] if type(recent) is list else list(recent[i:])  # a copy (states are values)
    if hist and hist[-1][1] == proposed:
        hist[-1] = (
            now,
            proposed,
        )  # a repeat only moves the latest time of that count: same answers, short list
    else:
        hist.append((now, proposed))
    if proposed < current and lim.in_window > 0:
        cut_in = now - lim.in_window
        top = max(c for t, c in hist if t > cut_in)
        new = min(current, top)
        if new != proposed:
            return new, hist, _new(Limit, (STABILIZED, proposed, new, f"{lim.in_text}{top}{lim.in_suffix}"))
    elif proposed > current and lim.out_window > 0:
        cut_out = now - lim.out_window
        low = min(c for t, c in hist if t > cut_out)
        new = max(current, low)
        if new != proposed:
            return new, hist, _new(Limit, (STABILIZED, proposed, new, f"{lim.out_text}{low}"))
    return proposed, hist, None


def _unsafe_rule(rules: Sequence[tuple[MetricSpec, float]], current: int, n: int) -> tuple[str, float] | None:
    for rule, value in rules:
        if isinstance(rule, ThresholdSpec):
            bad, projected = threshold_unsafe(rule, value, current, n)
        else:
            bad, projected = target_unsafe(rule, value, current, n)
        if bad:
            return rule.name, projected
    return None


def flapping_guard(
    current: int, proposed: int, rules: Sequence[tuple[MetricSpec, float]], floor: int = 0
) -> tuple[int, Limit | None]:
    """Step 3 (scale-in only): shrink the reduction until no metric rule (with its bucket value) would
    scale out at the new count; skip the scale-in (count = current) when even current − 1 is unsafe.
    Counts below `floor` (the effective min_instances) are never reached, so the projection looks no
    lower than it: a proposal below the floor that is safe at the floor is left for step 6 to clamp."""
    if proposed >= current or not rules:
        return proposed, None
    start = max(proposed, floor)
    if start >= current:
        return proposed, None
    first = _unsafe_rule(rules, current, start)
    if first is None:
        return proposed, None
    lo, hi = start + 1, current  # find the smallest safe n in [lo, hi); hi means "skip"
    while lo < hi:
        mid = (lo + hi) // 2
        if _unsafe_rule(rules, current, mid) is None:
            hi = mid
        else:
            lo = mid + 1
    name, projected = first
    detail = f"rule {name}: value projected to {start} instances would be {projected:.6g} (scale-out)"
    return lo, _new(Limit, (FLAPPING_GUARD, proposed, lo, detail))


def max_step(lim: Limits, current: int, proposed: int) -> tuple[int, Limit | None]:
    """Step 4: at most max_step instances per action in each direction."""
    if proposed > current and lim.out_max_step is not None and proposed - current > lim.out_max_step:
        new = current + lim.out_max_step
        return new, _new(Limit, (MAX_STEP, proposed, new, lim.out_step_text))
    if proposed < current and lim.in_max_step is not None and current - proposed > lim.in_max_step:
        new = current - lim.in_max_step
        return new, _new(Limit, (MAX_STEP, proposed, new, lim.in_step_text))
    return proposed, None


_COOLDOWN_TEXT: dict[tuple[bool, float], str] = {}


def _cooldown_text(out: bool, wait: float) -> str:
    """The detail's start ('scale_out cooldown 30s: '): the same few per fleet, formatted once (a
    float's :g format is most of a held decision's cost)."""
    if len(_COOLDOWN_TEXT) >= 4096:
        _COOLDOWN_TEXT.clear()
    text = _COOLDOWN_TEXT[(out, wait)] = f"{'scale_out' if out else 'scale_in'} cooldown {wait:g}s: "
    return text


def cooldown(
    lim: Limits,
    current: int,
    proposed: int,
    now: float,
    last_change_at: float | None,
    deployment_started_at: float | None,
) -> tuple[int, Limit | None]:
    """Step 5: hold a change inside its direction's cooldown, or while a deployment runs."""
    if proposed == current:
        return proposed, None
    if last_change_at is not None:
        out = proposed > current
        wait = lim.out_cooldown if out else lim.in_cooldown
        since = now - last_change_at
        if since < wait:
            text = _COOLDOWN_TEXT.get((out, wait))
            if text is None:
                text = _cooldown_text(out, wait)
            detail = text + f"{wait - since:.6g}s left"
            return current, _new(Limit, (COOLDOWN, proposed, current, detail))
    if deployment_started_at is not None and now - deployment_started_at < lim.deployment_timeout:
        detail = (
            f"deployment running for {now - deployment_started_at:.6g}s (timeout {lim.deployment_timeout:g}s)"
        )
        return current, _new(Limit, (DEPLOYMENT_IN_PROGRESS, proposed, current, detail))
    return proposed, None


def clamp(lo: int, hi: int, proposed: int) -> tuple[int, Limit | None]:
    """Step 6: the effective bounds."""
    if proposed > hi:
        return hi, _new(Limit, (MAX_INSTANCES, proposed, hi, f"max_instances {hi}"))
    if proposed < lo:
        return lo, _new(Limit, (MIN_INSTANCES, proposed, lo, f"min_instances {lo}"))
    return proposed, None


def apply_limits(
    lim: Limits,
    current: int,
    proposed: int,
    now: float,
    state: JobState,
    deployment_started_at: float | None,
    windows: Sequence[Window],
    guard: Sequence[tuple[MetricSpec, float]] | None,
) -> tuple[int, list[Limit], list[tuple[float, int]]]:
    """Steps 2–6 on the combined proposal, in order: (final count, the limits that applied, the
    stabilization history to keep). `guard`: the metric rules with their bucket values for the flapping
    guard (None: no metric view, as for an alarm)."""
    limits: list[Limit] = []
    if windows:
        lo, hi = effective_bounds(lim, windows)
    else:
        lo, hi = lim.min_instances, lim.max_instances
    if lim.horizon > 0:
        d, recent, hit = stabilize(lim, current, proposed, now, state.recent)
        if hit is not None:
            limits.append(hit)
    else:
        d, recent = proposed, []
    if d != current:
        if guard is not None and d < current:
            d, hit = flapping_guard(current, d, guard, lo)
            if hit is not None:
                limits.append(hit)
        out_step, in_step = lim.out_max_step, lim.in_max_step
        if (out_step is not None and d - current > out_step) or (
            in_step is not None and current - d > in_step
        ):
            d, hit = max_step(lim, current, d)  # called only when it applies: this is the hot path
            if hit is not None:
                limits.append(hit)
        last = state.last_change_at
        if deployment_started_at is not None or (
            last is not None and now - last < (lim.out_cooldown if d > current else lim.in_cooldown)
        ):  # called only when it may hold the change, as max_step
            d, hit = cooldown(lim, current, d, now, last, deployment_started_at)
            if hit is not None:
                limits.append(hit)
    if d > hi or d < lo:
        d, hit = clamp(lo, hi, d)
        if hit is not None:
            limits.append(hit)
    return d, limits, recent
