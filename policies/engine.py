"""The policy engine (PRODUCT §3.3, §3.4): one pure entry point, `step`, for every event of a job.

    step(doc, state, event, now, mode=..., default_tz=...) -> (Decision | None, JobState)

    event  Observation   a closed bucket (trigger "bucket"): always a Decision
           FireTime      a schedule fire time (trigger "schedule"): the earliest due fire, or None
           AlarmCall     a Falcon callback (trigger "alarm"): None when no alarm rule matches
           ManualScale   an operator's request (trigger "manual")

The live daemon (oceand/engine.py) and `oceand replay` (oceand/replay.py) call `step` and nothing else
decides: it finds the schedule windows in force at `now` (min/max overrides), the schedule fires due or
missed (from the state's fire history), and runs the evaluation order of §3.3 through the per-trigger
functions below (`evaluate`, `on_alarm`, `on_fire`, `on_manual`, kept public for the policy tests).
Nothing here reads a clock or mutates its inputs: time is `now`, and each call returns the next JobState
(a new object, except when nothing at all changed: no matching alarm rule, no fire due, an alarm while
paused). Treat states as values: never change one in place.

A fire time, pinned down: `step` marks handled (in the returned state's `fires`) every fire missed beyond
its `misfire_grace` and every fire in `event.lost` (its at-most-once claim in the store went to an
earlier run: the shell claims each fire it is given before it commits the decision), then runs the
earliest remaining due fire (ties: document order), marking it handled. Several fires due at once take
one step each: the shell steps again until it gets None. With the count unknown (`current` None) a due
fire is neither run nor marked: it waits for a later step within its grace. In paused mode a due fire
is marked handled with a Paused decision (the shell stores none), so it does not run when the job is
resumed. `fire_of`, `newly_handled` and `fires_due` read what a step did or will do.

State rules, pinned down:
- A change (desired != current) sets last_change_at = now, count = desired and resets every threshold
  streak. In dry-run the same is done: the daemon simulates the change, so streaks and cooldowns behave
  as if it had been applied (a dry-run job proposes its action once per cooldown, not every bucket).
  The next bucket then sees obs.current != state.count (nothing was applied) and resets the streaks
  again; they are zero already, so this changes nothing.
- A count that differs from the state's (someone scaled by hand, a deployment finished, dry-run above)
  resets every streak, then the bucket is counted: a hot bucket right after a manual scale is streak 1.
  It does not touch last_change_at (only oceand's own changes start a cooldown).
- Always: last_bucket = obs.bucket (evaluate), count = the final count, `recent` pruned to the longest
  stabilization window. In paused mode evaluate returns desired = current with reason Paused and the
  state unchanged except last_bucket; on_alarm / on_fire return Paused too (a fire is still marked
  handled, so it does not run when the job is resumed); on_manual acts in every mode (the operator's
  explicit order; in dry-run it is recorded with DryRun like everything else).
- A schedule fire and a manual scale skip steps 2–5 (no stabilization, flapping guard, max step,
  cooldown, deployment wait); bounds apply. When they change the count it is a change like any other.
- on_alarm has no metric view: metric rules give no opinion there, the flapping guard does not run, and
  the alarm's proposal goes through stabilization (which remembers the metric proposals), max step,
  cooldown, deployment and bounds.

Documents are compiled once (`compile_job`, memoised per document object through a weak reference), so an
evaluation does no pydantic work. A compiled job also memoises its schedule answers (the windows in force
and until when; the earliest time a fire can be due for a given fire history): the same answers as
computing them again, asked of APScheduler only when they can change, which keeps replay's per-period
step cheap.
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

from policies.alarm import alarm_matches, alarm_times, propose_alarm
from policies.behavior import (
    Limits,
    apply_limits,
    clamp,
    combine,
    effective_bounds,
    flapping_guard,
    stabilize,
)
from policies.document import (
    AlarmRule,
    JobDocument,
    PredictiveRule,
    ScheduleRule,
    TargetRule,
    ThresholdRule,
    step_count,
)
from policies.predictive import PredictiveSpec, propose_predictive
from policies.schedule import active_windows, due_fires, next_fire
from policies.target import _EPS, TargetSpec, propose_target
from policies.threshold import _ZERO, ThresholdSpec, propose_threshold
from policies.types import (
    COOLDOWN,
    DEPLOYMENT_IN_PROGRESS,
    DRY_RUN,
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
    AlarmCall,
    AlarmEvent,
    Decision,
    Event,
    Fire,
    FireTime,
    JobState,
    Limit,
    ManualScale,
    Observation,
    PredictiveState,
    Proposal,
    QuietThresholdProposal,
    Streak,
    TargetProposal,
    Trigger,
    Window,
)

MODES = ("active", "dry-run", "paused")


def _load_native() -> Any:
    """policies._faststep's `bucket` (a closed bucket's step in C for the usual job), set up with what it
    builds and calls; None when it was not built (no C compiler where oceand was installed) or
    OCEAND_NATIVE=0: then every bucket takes the Python code below, with the same results."""
    if os.environ.get("OCEAND_NATIVE", "1") == "0":
        return None
    try:
        from policies import _faststep  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None
    _faststep.setup(
        Observation,
        JobState,
        Decision,
        Proposal,
        QuietThresholdProposal,
        TargetProposal,
        Limit,
        Streak,
        _ZERO,
        (
            SCALE_OUT,
            SCALE_IN,
            WITHIN_TOLERANCE,
            NO_DATA,
            STABILIZED,
            DRY_RUN,
            MAX_STEP,
            COOLDOWN,
            DEPLOYMENT_IN_PROGRESS,
            MAX_INSTANCES,
            MIN_INSTANCES,
        ),
        (flapping_guard, step_count),
        _EPS,
    )
    return _faststep.bucket


_native = _load_native()
NATIVE = _native is not None  # whether closed buckets take the C step (status, tests)
_new = tuple.__new__  # a Decision built as the tuple it is: its NamedTuple __new__ is a Python function
_alloc = object.__new__  # a JobState without its __init__ (step sets every slot)


class _ScheduleMemo:
    """A compiled job's last schedule answers (see the module notes): mutable, but only a cache."""

    __slots__ = ("due_at", "due_key", "w_from", "w_tz", "w_until", "windows")

    def __init__(self) -> None:
        self.w_tz = ""
        self.w_from = math.inf  # windows holds the answer for every now in [w_from, w_until)
        self.w_until = -math.inf
        self.windows: tuple[Window, ...] = ()
        self.due_key: tuple[Any, ...] | None = None
        self.due_at = math.inf  # no fire is due before this, for the fire history `due_key`


@dataclass(frozen=True, slots=True)
class CompiledJob:
    """A job document's rules and limits, sorted out once."""

    job: str
    metric: tuple[ThresholdSpec | TargetSpec | PredictiveSpec, ...]
    alarms: tuple[AlarmRule, ...]
    schedules: Mapping[str, ScheduleRule]
    limits: Limits
    fire_rules: tuple[ScheduleRule, ...]  # schedule rules that set `instances` at their fire times
    window_rules: tuple[ScheduleRule, ...]  # schedule rules that hold min/max for a `duration`
    memo: _ScheduleMemo
    fast: tuple[Any, ...] | None = None  # the C step's plan (`_fast_plan`); None: the Python step only


def _fast_plan(
    job: str,
    metric: Sequence[ThresholdSpec | TargetSpec | PredictiveSpec],
    lim: Limits,
    window_rules: Sequence[ScheduleRule],
) -> tuple[Any, ...] | None:
    """What policies._faststep reads, for a job it can step: threshold rules without bands and target
    rules, float bounds and targets, no schedule window. None for any other job (the Python step)."""
    if window_rules:
        return None
    specs: list[tuple[Any, ...]] = []
    for s in metric:
        if type(s) is ThresholdSpec:
            if (
                s.out_bands
                or s.in_bands
                or type(s.out_consecutive) is not int
                or type(s.in_consecutive) is not int
            ):
                return None
            if not all(x is None or type(x) is float for x in (s.above, s.below)):
                return None
            specs.append(
                (0, s.name, s.above, s.below, s.out_consecutive, s.in_consecutive, s.out_step, s.in_step, s)
            )
        elif type(s) is TargetSpec:
            if not all(type(x) is float for x in (s.target, s.low, s.high)) or s.target == 0:
                return None
            specs.append((1, s.name, s.target, s.low, s.high, s))
        else:
            return None
    counts = (lim.min_instances, lim.max_instances, lim.out_max_step, lim.in_max_step)
    if not all(type(x) is int for x in counts[:2]) or not all(
        x is None or type(x) is int for x in counts[2:]
    ):
        return None
    times = (
        lim.horizon,
        lim.in_window,
        lim.out_window,
        lim.out_cooldown,
        lim.in_cooldown,
        lim.deployment_timeout,
    )
    if not all(type(x) in (int, float) for x in times):
        return None
    horizon, in_window, out_window, out_cd, in_cd, timeout = (float(x) for x in times)
    return (
        job,
        tuple(specs),
        lim,
        horizon,
        in_window,
        out_window,
        lim.in_text,
        lim.in_suffix,
        lim.out_text,
        lim.out_max_step,
        lim.in_max_step,
        out_cd,
        in_cd,
        lim.min_instances,
        lim.max_instances,
        # the limits' texts, as behavior formats them (max_step, cooldown, clamp)
        lim.out_step_text,
        lim.in_step_text,
        f"scale_out cooldown {lim.out_cooldown:g}s: ",
        f"scale_in cooldown {lim.in_cooldown:g}s: ",
        timeout,
        f" (timeout {lim.deployment_timeout:g}s)",
        f"max_instances {lim.max_instances}",
        f"min_instances {lim.min_instances}",
    )


_COMPILED: dict[int, tuple[weakref.ref[JobDocument], CompiledJob]] = {}


def compile_job(doc: JobDocument) -> CompiledJob:
    """The document's CompiledJob, memoised while the document object lives (documents are frozen)."""
    key = id(doc)
    hit = _COMPILED.get(key)
    if hit is not None and hit[0]() is doc:
        return hit[1]
    metric: list[ThresholdSpec | TargetSpec | PredictiveSpec] = []
    for r in doc.rules:
        if isinstance(r, ThresholdRule):
            metric.append(ThresholdSpec.of(r))
        elif isinstance(r, TargetRule):
            metric.append(TargetSpec.of(r))
        elif isinstance(r, PredictiveRule):
            metric.append(PredictiveSpec.of(r, doc.job))
    limits = Limits.of(doc)
    window_rules = tuple(r for r in doc.rules if isinstance(r, ScheduleRule) and r.duration is not None)
    compiled = CompiledJob(
        job=doc.job,
        metric=tuple(metric),
        alarms=tuple(r for r in doc.rules if isinstance(r, AlarmRule)),
        schedules={r.name: r for r in doc.rules if isinstance(r, ScheduleRule)},
        limits=limits,
        fire_rules=tuple(r for r in doc.rules if isinstance(r, ScheduleRule) and r.instances is not None),
        window_rules=window_rules,
        memo=_ScheduleMemo(),
        fast=_fast_plan(doc.job, metric, limits, window_rules) if _native is not None else None,
    )

    def _forget(ref: weakref.ref[JobDocument], key: int = key) -> None:
        entry = _COMPILED.get(key)
        if entry is not None and entry[0] is ref:
            del _COMPILED[key]

    _COMPILED[key] = (weakref.ref(doc, _forget), compiled)
    return compiled


@overload
def step(
    doc: JobDocument,
    state: JobState,
    event: Observation,
    now: float,
    *,
    mode: str,
    default_tz: str = "UTC",
    windows: Sequence[Window] | None = None,
) -> tuple[Decision, JobState]: ...


@overload
def step(
    doc: JobDocument,
    state: JobState,
    event: FireTime | AlarmCall | ManualScale,
    now: float,
    *,
    mode: str,
    default_tz: str = "UTC",
    windows: Sequence[Window] | None = None,
) -> tuple[Decision | None, JobState]: ...


def step(
    doc: JobDocument,
    state: JobState,
    event: Event,
    now: float,
    *,
    mode: str,
    default_tz: str = "UTC",
    windows: Sequence[Window] | None = None,
) -> tuple[Decision | None, JobState]:
    """One event of a job at time `now` (see the module notes): (decision or None, next state).
    `default_tz`: the daemon's time zone, for schedule rules without their own. `windows`: the schedule
    windows in force, when the caller sets them (the per-trigger functions' tests); None, as the daemon
    and replay call it: the step finds them."""
    hit = _COMPILED.get(id(doc))  # compile_job's cache hit, inlined: a closed bucket is the hot path
    c = hit[1] if hit is not None and hit[0]() is doc else compile_job(doc)
    fast = c.fast
    if fast is not None and not windows and _native is not None:
        # the usual job's closed bucket: the same step in C (None: not the usual case, stepped below)
        done = _native(fast, state, event, now, mode)
        if done is not None:
            return done  # type: ignore[no-any-return]
    if type(event) is not Observation:
        return _event(c, doc, state, event, now, mode, default_tz, windows)
    # A closed bucket (trigger "bucket"), inline: this is the daemon's hot path. Every metric rule
    # proposes, then steps 1–6 (PRODUCT §3.3); always a Decision.
    # its fields in one unpacking (an exact Observation, checked above): a NamedTuple field read by name
    # is a generic attribute lookup, seven of them cost more than this
    obs_now, bucket, current, ready, values, _, deployment_started_at, startup = event
    if obs_now != now:
        raise ValueError(f"a closed bucket is evaluated at its own time: obs.now {obs_now} != now {now}")
    if windows is None:
        windows = _windows(c, doc, now, default_tz) if c.window_rules else ()
    if current < 0 or mode not in MODES:
        _check(mode, current)
    if mode == "paused":
        d = _decision(c, now, "bucket", current, current, bucket, [], [], [PAUSED], mode)
        return d, _with(state, last_bucket=bucket)
    # a count changed behind our back (or by our own dry-run simulation) restarts every streak first
    old = state.streaks if state.count is None or state.count == current else {}
    proposals: list[Proposal] = []
    streaks: dict[str, Streak] = {}
    predictive: dict[str, PredictiveState] | None = None
    for spec in c.metric:
        name = spec.name
        v = values.get(name)
        if v is not None and v - v != 0:  # not isfinite(v), without the call: inf - inf and NaN are NaN
            v = None  # NaN / inf from upstream is no data, never a decision
        if type(spec) is ThresholdSpec:
            p, streaks[name] = propose_threshold(spec, v, current, old.get(name))
        elif type(spec) is TargetSpec:
            p = propose_target(spec, v, current, ready)
        else:
            if predictive is None:
                predictive = {}
            p, predictive[name] = propose_predictive(
                spec,  # type: ignore[arg-type]
                v,
                current,
                ready,
                now,
                startup,
                state.predictive.get(name),
            )
        proposals.append(p)
    combined = combine(proposals, current)
    guard = _guard(c, values) if combined < current else None
    desired, limits, recent = apply_limits(
        c.limits, current, combined, now, state, deployment_started_at, windows, guard
    )
    reasons = _reasons(proposals, limits, mode)
    # in field order (see _decision), without NamedTuple's Python-level __new__: half the cost
    decision: Decision = _new(
        Decision, (c.job, now, "bucket", current, desired, bucket, proposals, limits, reasons, mode, None)
    )
    # the next state, its slots set here: JobState's dataclass __init__ (a frame, and a default-factory
    # test per container field) is a tenth of a quiet bucket's cost
    nxt: JobState = _alloc(JobState)
    nxt.count = desired
    nxt.last_bucket = bucket
    nxt.recent = recent
    nxt.alarms = dict(state.alarms) if state.alarms else {}  # a new dict either way (states are values)
    nxt.fires = dict(state.fires) if state.fires else {}
    nxt.created_at = now if state.created_at is None else state.created_at
    nxt.predictive = predictive if predictive is not None else {}
    if desired != current:
        nxt.last_change_at = now
        nxt.streaks = {}
    else:
        nxt.last_change_at = state.last_change_at
        nxt.streaks = streaks
    return decision, nxt


def _event(
    c: CompiledJob,
    doc: JobDocument,
    state: JobState,
    event: Event,
    now: float,
    mode: str,
    tz: str,
    windows: Sequence[Window] | None,
) -> tuple[Decision | None, JobState]:
    """`step` for a fire time, an alarm callback or a manual scale."""
    if isinstance(event, FireTime):
        return _fire_time(c, doc, state, event, now, mode, tz, windows)
    if windows is None:
        windows = _windows(c, doc, now, tz) if c.window_rules else ()
    if isinstance(event, AlarmCall):
        return on_alarm(
            doc,
            event.alarm,
            event.current,
            event.ready,
            state,
            mode=mode,
            deployment_started_at=event.deployment_started_at,
            windows=windows,
        )
    if isinstance(event, ManualScale):
        return on_manual(
            doc,
            now,
            event.current,
            event.instances,
            event.reason,
            state,
            mode=mode,
            windows=windows,
            op=event.op,
        )
    raise TypeError(f"step takes an Observation, FireTime, AlarmCall or ManualScale event, not {event!r}")


def _fire_time(
    c: CompiledJob,
    doc: JobDocument,
    state: JobState,
    ev: FireTime,
    now: float,
    mode: str,
    tz: str,
    windows: Sequence[Window] | None,
) -> tuple[Decision | None, JobState]:
    if not c.fire_rules:
        return None, state
    created = state.created_at if state.created_at is not None else now
    if now < _due_at(c, state.fires, created, tz):
        return None, state
    fires, missed = due_fires(doc, state.fires, now, created, tz)
    handled = list(missed)
    run: Fire | None = None
    for f in fires:
        if (f.rule, f.at) in ev.lost:
            handled.append((f.rule, f.at))
        elif run is None and ev.current is not None:
            run = f
    if handled:
        state = mark_fires(state, handled)
    if run is None or ev.current is None:
        return None, state
    if windows is None:
        windows = _windows(c, doc, now, tz) if c.window_rules else ()
    return on_fire(doc, run, ev.current, state, mode=mode, windows=windows)


def _windows(c: CompiledJob, doc: JobDocument, now: float, tz: str) -> tuple[Window, ...]:
    """`active_windows(doc, now, tz)`, memoised: the answer holds until a window rule's next start or the
    end of an active window, whichever comes first."""
    m = c.memo
    if m.w_tz == tz and m.w_from <= now < m.w_until:
        return m.windows
    ws = tuple(active_windows(doc, now, tz))
    starts = [t for t in (next_fire(r, now, tz) for r in c.window_rules) if t is not None]
    m.w_tz, m.w_from, m.w_until, m.windows = (
        tz,
        now,
        min([*starts, *(w.end for w in ws)], default=math.inf),
        ws,
    )
    return ws


def _due_at(c: CompiledJob, fires: Mapping[str, float], created: float, tz: str) -> float:
    """The earliest time a fire rule's fire is due (or missed) after the fire history `fires`, memoised
    for the last history asked about."""
    m = c.memo
    key = (tz, created, *fires.items())
    if m.due_key == key:
        return m.due_at
    floor = created - 1e-6  # as due_fires: a fire exactly at created_at counts
    times = [next_fire(r, max(fires.get(r.name, floor), floor), tz) for r in c.fire_rules]
    m.due_key, m.due_at = key, min((t for t in times if t is not None), default=math.inf)
    return m.due_at


def fires_due(doc: JobDocument, state: JobState, now: float, default_tz: str = "UTC") -> bool:
    """Whether a schedule fire is due or missed at `now` (a FireTime step would run or mark one)."""
    c = compile_job(doc)
    if not c.fire_rules:
        return False
    created = state.created_at if state.created_at is not None else now
    return now >= _due_at(c, state.fires, created, default_tz)


def fire_of(decision: Decision | None) -> tuple[str, float] | None:
    """(rule, fire time) of a schedule decision that a FireTime step returned; None for any other."""
    if decision is None or decision.trigger != "schedule" or not decision.proposals:
        return None
    p = decision.proposals[0]
    return p.rule, float(p.inputs["at"])


def newly_handled(before: JobState, after: JobState) -> list[tuple[str, float]]:
    """The (rule, fire time) a step marked handled: `after`'s fire history where it differs from
    `before`'s."""
    return [(r, t) for r, t in after.fires.items() if before.fires.get(r) != t]


def windows_at(doc: JobDocument, now: float, default_tz: str = "UTC") -> tuple[Window, ...]:
    """The schedule windows in force at `now` (what `step` applies; for status pages)."""
    c = compile_job(doc)
    return _windows(c, doc, now, default_tz) if c.window_rules else ()


def held_recent(
    doc: JobDocument, recent: Sequence[tuple[float, int]], count: int, now: float
) -> list[tuple[float, int]]:
    """The stabilization history a step at `now` leaves when nothing proposes a change (the count held at
    `count`, as for an empty bucket): expired entries dropped, `count` recorded at `now` (a run of equal
    proposals keeps its latest time). The engine's idle close moves a job's history with it, so an idle
    job's state is the one a step of every empty bucket gives (replay's)."""
    lim = compile_job(doc).limits
    if lim.horizon <= 0:
        return []
    return stabilize(lim, count, count, now, recent)[1]


def bounds(doc: JobDocument, windows: Sequence[Window]) -> tuple[int, int]:
    """The effective [min_instances, max_instances] now, schedule windows included."""
    return effective_bounds(compile_job(doc).limits, windows)


def _check(mode: str, current: int) -> None:
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: use one of {', '.join(MODES)}")
    if current < 0:
        raise ValueError(f"current instance count {current} is negative")


def _reasons(proposals: Sequence[Proposal], limits: Sequence[Limit], mode: str) -> list[str]:
    if not limits and mode == "active":  # the usual bucket: one or two rules, nothing held
        n = len(proposals)
        if n == 1:
            return [proposals[0].reason]
        if n == 2:
            first, second = proposals[0].reason, proposals[1].reason
            return [first] if first == second else [first, second]
    out: list[str] = []
    for p in proposals:
        if p.reason not in out:
            out.append(p.reason)
    for lim in limits:
        if lim.code not in out:
            out.append(lim.code)
    if mode == "dry-run":
        out.append(DRY_RUN)
    return out


def _next_state(
    state: JobState,
    current: int,
    desired: int,
    now: float,
    *,
    streaks: dict[str, Streak] | None = None,
    recent: list[tuple[float, int]] | None = None,
    last_bucket: int | None = None,
    alarms: dict[str, float] | None = None,
    fires: dict[str, float] | None = None,
) -> JobState:
    changed = desired != current
    if changed or (state.count is not None and state.count != current):
        new_streaks: dict[str, Streak] = {}
    elif streaks is not None:
        new_streaks = streaks
    else:
        new_streaks = {k: Streak(s.out, s.in_) for k, s in state.streaks.items()}
    # positional, in JobState's field order: keyword calls cost twice as much on this hot path
    return JobState(
        desired,
        now if changed else state.last_change_at,
        state.last_bucket if last_bucket is None else last_bucket,
        new_streaks,
        list(state.recent) if recent is None else recent,
        dict(state.alarms) if alarms is None else alarms,
        dict(state.fires) if fires is None else fires,
        now if state.created_at is None else state.created_at,
        dict(state.predictive) if state.predictive else {},
    )


def _decision(
    c: CompiledJob,
    now: float,
    trigger: Trigger,
    current: int,
    desired: int,
    bucket: int | None,
    proposals: list[Proposal],
    limits: list[Limit],
    reasons: list[str],
    mode: str,
) -> Decision:
    # positional, in Decision's field order (job, at, trigger, current, desired, bucket, proposals, limits,
    # reasons, mode, id): keyword calls cost twice as much on this hot path
    return Decision(c.job, now, trigger, current, desired, bucket, proposals, limits, reasons, mode, None)


def _with(state: JobState, **changes: Any) -> JobState:
    """A copy of the state with some fields replaced (off the hot path: paused, mark_fires)."""
    d = state.to_json()
    d.update(changes)
    return JobState.from_json(d)


def evaluate(
    doc: JobDocument, obs: Observation, state: JobState, *, mode: str, windows: Sequence[Window] = ()
) -> tuple[Decision, JobState]:
    """One closed bucket (trigger "bucket"): every metric rule proposes, then steps 1–6 (PRODUCT §3.3).
    Always returns a Decision; `decision.changes` tells whether it proposes a change."""
    return step(doc, state, obs, obs.now, mode=mode, windows=windows)


def _guard(
    c: CompiledJob, values: Mapping[str, float | None]
) -> list[tuple[ThresholdSpec | TargetSpec, float]]:
    """The metric rules with a (finite) value in this bucket, for the flapping guard (a predictive rule
    as the target rule it never goes below)."""
    out: list[tuple[ThresholdSpec | TargetSpec, float]] = []
    for rule in c.metric:
        v = values.get(rule.name)
        if v is not None and math.isfinite(v):
            out.append((rule.fallback if isinstance(rule, PredictiveSpec) else rule, v))
    return out


def on_alarm(
    doc: JobDocument,
    event: AlarmEvent,
    current: int,
    ready: int,
    state: JobState,
    *,
    mode: str,
    deployment_started_at: float | None = None,
    windows: Sequence[Window] = (),
) -> tuple[Decision | None, JobState]:
    """A Falcon callback (trigger "alarm"); (None, state) when no alarm rule of the job matches it.
    `ready` is accepted for symmetry with evaluate; alarm rules do not use it."""
    c = compile_job(doc)
    _check(mode, current)
    matching = [r for r in c.alarms if alarm_matches(r, event)]
    if not matching:
        return None, state
    now = event.now
    if mode == "paused":
        return Decision(c.job, now, "alarm", current, current, reasons=[PAUSED], mode=mode), state
    key = event.key()
    out_cd = c.limits.out_cooldown
    last_acted = state.alarms.get(key)
    proposals = [propose_alarm(r, event, current, last_acted, out_cd) for r in matching]
    combined = combine(proposals, current)
    desired, limits, recent = apply_limits(
        c.limits, current, combined, now, state, deployment_started_at, windows, None
    )
    alarms = {k: t for k, t in state.alarms.items() if now - t < out_cd}
    if event.status == "OK":
        alarms.pop(key, None)
    elif desired > current:
        alarms[key] = now
    decision = _decision(
        c, now, "alarm", current, desired, None, proposals, limits, _reasons(proposals, limits, mode), mode
    )
    return decision, _next_state(state, current, desired, now, recent=recent, alarms=alarms)


def on_fire(
    doc: JobDocument, fire: Fire, current: int, state: JobState, *, mode: str, windows: Sequence[Window] = ()
) -> tuple[Decision, JobState]:
    """A schedule rule's fire time (trigger "schedule"): the count becomes the rule's `instances`, within
    the bounds; steps 2–5 do not apply. Marks the fire handled (state.fires)."""
    c = compile_job(doc)
    _check(mode, current)
    rule = c.schedules.get(fire.rule)
    if rule is None:
        raise ValueError(f"job {c.job!r} has no schedule rule {fire.rule!r}")
    if rule.instances is None:
        raise ValueError(f"schedule rule {fire.rule!r} holds a min/max window and sets no instances")
    now = fire.now
    fires = dict(state.fires)
    fires[rule.name] = max(fire.at, fires.get(rule.name, fire.at))
    inputs: dict[str, Any] = {"at": fire.at, "instances": rule.instances, "late": now - fire.at}
    proposal = Proposal(rule.name, "schedule", rule.instances, SCHEDULE, inputs)
    if mode == "paused":  # not run; the proposal says which fire it was
        d = Decision(
            c.job, now, "schedule", current, current, proposals=[proposal], reasons=[PAUSED], mode=mode
        )
        return d, _with(state, fires=fires)
    return _direct(c, proposal, rule.instances, current, now, state, mode, windows, "schedule", fires)


def on_manual(
    doc: JobDocument,
    now: float,
    current: int,
    instances: int,
    reason: str,
    state: JobState,
    *,
    mode: str,
    windows: Sequence[Window] = (),
    op: str | None = None,
) -> tuple[Decision, JobState]:
    """An operator's scale to `instances` (trigger "manual"): bounds apply, cooldowns do not. `op`: the
    call's idempotency key, kept in the proposal's inputs (the decision key of its writes)."""
    c = compile_job(doc)
    _check(mode, current)
    if isinstance(instances, bool) or not isinstance(instances, int) or instances < 0:
        raise ValueError(f"instances must be a whole number >= 0, got {instances!r}")
    inputs: dict[str, object] = {"instances": instances, "reason": reason}
    if op is not None:
        inputs["op"] = op
    proposal = Proposal("manual", "manual", instances, MANUAL, inputs)
    return _direct(c, proposal, instances, current, now, state, mode, windows, "manual", None)


def _direct(
    c: CompiledJob,
    proposal: Proposal,
    wanted: int,
    current: int,
    now: float,
    state: JobState,
    mode: str,
    windows: Sequence[Window],
    trigger: Trigger,
    fires: dict[str, float] | None,
) -> tuple[Decision, JobState]:
    lo, hi = effective_bounds(c.limits, windows)
    desired, hit = clamp(lo, hi, wanted)
    limits = [hit] if hit is not None else []
    reasons = _reasons([proposal], limits, mode)
    decision = _decision(c, now, trigger, current, desired, None, [proposal], limits, reasons, mode)
    return decision, _next_state(state, current, desired, now, fires=fires)


def mark_fires(state: JobState, handled: Iterable[tuple[str, float]]) -> JobState:
    """The state with these (rule, fire time) recorded as handled: for the fires `due_fires` reports
    missed beyond their grace (run fires are marked by on_fire)."""
    fires = dict(state.fires)
    for rule, at in handled:
        fires[rule] = max(at, fires.get(rule, at))
    return _with(state, fires=fires)


def status(doc: JobDocument, state: JobState, now: float, *, default_tz: str = "UTC") -> dict[str, Any]:
    """JSON-ready view of a job's policy state: per rule by name (threshold streaks, the last times an
    alarm of an alarm rule acted, a schedule's last handled and next fire), and the cooldown left."""
    c = compile_job(doc)
    rules: dict[str, dict[str, Any]] = {}
    for r in doc.rules:
        if isinstance(r, ThresholdRule):
            s = state.streaks.get(r.name) or Streak()
            rules[r.name] = {
                "type": "threshold",
                "streak_out": s.out,
                "streak_in": s.in_,
                "consecutive_out": r.scale_out.consecutive if r.scale_out else None,
                "consecutive_in": r.scale_in.consecutive if r.scale_in else None,
            }
        elif isinstance(r, TargetRule):
            rules[r.name] = {"type": "target", "target": r.target}
        elif isinstance(r, PredictiveRule):
            ps = state.predictive.get(r.name) or PredictiveState()
            rules[r.name] = {
                "type": "predictive",
                "target": r.target,
                "level": ps.level,
                "margin": ps.margin,
                "season": ps.season,
                "checked_forecasts": ps.checked,
                "history_slots": len(ps.ring),
                "hourly": ps.hourly,
            }
        elif isinstance(r, AlarmRule):
            rules[r.name] = {"type": "alarm", "alarms": alarm_times(r, state.alarms)}
        else:
            last = state.fires.get(r.name)
            rules[r.name] = {
                "type": "schedule",
                "last_fire": last,
                "next_fire": next_fire(r, now, default_tz),
            }
    lim = c.limits
    since = None if state.last_change_at is None else now - state.last_change_at
    return {
        "job": c.job,
        "count": state.count,
        "last_change_at": state.last_change_at,
        "last_bucket": state.last_bucket,
        "rules": rules,
        "cooldown_left": {
            "scale_out": 0.0 if since is None else max(0.0, lim.out_cooldown - since),
            "scale_in": 0.0 if since is None else max(0.0, lim.in_cooldown - since),
        },
    }
