"""`oceand replay` (PRODUCT §6): a job document run against a recorded load on a simulated clock.

The decisions come from `policies.engine.step` — the one entry point the live daemon's workers call —
with an Observation built from a simulated cluster once per period, then a FireTime for the schedules. This module only simulates the cluster and the metrics:

- every ready instance serves `capacity` load units and reports the same metric values, so every
  aggregate of a per-instance metric is that one value (`sum` = value × ready);
  `cpu.used = min(100, 100 ρ)`, `proc.qps = load / ready`, `proc.delay = 10 ms / max(0.05, 1 − ρ)`
  (200 ms when ρ ≥ 1) with ρ = load / (ready × capacity); `alb.qps` = load (one job-level series);
  any other metric is "no data" (so a rule on it blocks scale-in and never causes a change);
- with 0 ready instances the load falls on nobody: cpu.used = 100, proc.qps = load (also for `sum`),
  proc.delay = 200 ms;
- per period t_k: (1) instances launched at or before t_k − startup become ready; (2) observe and
  evaluate at t_k, then run the schedule fires due at t_k on top of that decision (`engine_step`);
  (3) record the row;
  (4) apply: a scale-out launches instances at t_k, a scale-in removes starting instances first
  (youngest first), then ready ones.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from oceand.ingest import ALB_QPS
from oceand.trace import FloatArray, Trace
from policies import engine as policy
from policies.document import JobDocument, PredictiveRule, ScheduleRule, TargetRule, ThresholdRule
from policies.types import Decision, FireTime, JobState, Observation

IntArray = npt.NDArray[np.int64]

# A step of the policy: (observation, state) -> (decided count, next state). The default is the engine.
Step = Callable[[Observation, JobState], tuple[int, JobState]]

PER_INSTANCE_METRICS = ("cpu.used", "proc.qps", "proc.delay")
JOB_METRICS = (ALB_QPS,)
BASE_DELAY_MS = 10.0
MAX_DELAY_MS = 200.0


class ReplayError(ValueError):
    """Bad replay options (the message names the option)."""


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    capacity: float = 100.0  # load units one ready instance serves
    startup: float = 60.0  # seconds from launch to ready
    initial: int = 1  # ready instances at t0
    # Beyond §6 (off by default): while instances are starting, the job's last Marathon deployment is
    # running (Observation.deployment_started_at = the last action), so the next action waits for it.
    deployments: bool = False

    def check(self) -> None:
        if not (math.isfinite(self.capacity) and self.capacity > 0):
            raise ReplayError(f"--capacity must be a finite number > 0, not {self.capacity!r}")
        if not (math.isfinite(self.startup) and self.startup >= 0):
            raise ReplayError(f"--startup must be a finite duration >= 0, not {self.startup!r}")
        if self.initial < 0:
            raise ReplayError(f"--initial must be >= 0, not {self.initial!r}")


@dataclass(frozen=True, slots=True)
class Timeline:
    """One row per period (PRODUCT §6 `--timeline`)."""

    t: FloatArray
    load: FloatArray
    ready: IntArray
    starting: IntArray
    desired: IntArray
    cpu_used: FloatArray
    unserved: FloatArray


@dataclass(frozen=True, slots=True)
class ReplayResult:
    doc: JobDocument
    trace: Trace
    options: ReplayOptions
    timeline: Timeline

    @property
    def period(self) -> float:
        return float(self.doc.period)

    def summary(self) -> dict[str, Any]:
        """PRODUCT §6 summary fields first (in the spec's order), then facts that help read them."""
        tl, period, cap = self.timeline, self.period, self.options.capacity
        capacity = tl.ready * cap
        total_load = float(tl.load.sum())
        instance_s = period * float((tl.ready + tl.starting).sum())
        oracle_s = period * float(oracle_instances(tl.load, cap).sum())
        before = tl.ready + tl.starting
        return {
            "unserved_fraction": float(tl.unserved.sum()) / total_load if total_load > 0 else 0.0,
            "overload_seconds": period * int(np.count_nonzero(tl.load > capacity)),
            "instance_seconds": instance_s,
            "oracle_instance_seconds": oracle_s,
            "cost_ratio": instance_s / oracle_s,
            "actions": int(np.count_nonzero(tl.desired != before)),
            "periods": len(tl.t),
            "scale_outs": int(np.count_nonzero(tl.desired > before)),
            "scale_ins": int(np.count_nonzero(tl.desired < before)),
            "max_instances_used": int(before.max(initial=0)),
            "load_total": total_load,
            "unserved_total": float(tl.unserved.sum()),
        }


def oracle_instances(load: FloatArray, capacity: float) -> IntArray:
    """max(1, ceil(load / capacity)) per period — the least any policy could run. A relative 1e-9 slack
    keeps float noise (0.3 / 0.1 = 3.0000000000000004) from adding an instance."""
    need = np.ceil(load / capacity * (1 - 1e-9))
    return np.maximum(1, need).astype(np.int64)


MAX_PERIODS = 10_000_000  # ~3 years at 10 s; more is almost surely a misread trace (milliseconds?)


def period_times(trace: Trace, period: float) -> FloatArray:
    """t_k = t0 + k × period for every t_k before the last row stops holding (at least one period)."""
    n = max(1, math.ceil((trace.end - trace.start) / period - 1e-9))
    if n > MAX_PERIODS:
        raise ReplayError(
            f"{trace.path}: the trace spans {trace.end - trace.start:.0f} s = {n:,} periods of {period:g} s, "
            f"more than {MAX_PERIODS:,}; are its Unix timestamps in milliseconds rather than seconds?"
        )
    return trace.start + np.arange(n, dtype=np.float64) * period


def _metric_kind(metric: str) -> int:
    """0 cpu.used, 1 proc.qps, 2 proc.delay, 3 alb.qps, -1 unknown (no data)."""
    names = (*PER_INSTANCE_METRICS, *JOB_METRICS)
    return names.index(metric) if metric in names else -1


def metric_plan(doc: JobDocument) -> list[tuple[str, int, bool]]:
    """(rule name, metric kind, aggregate is sum) for each metric rule, in document order."""
    return [
        (r.name, _metric_kind(r.metric), r.aggregate == "sum")
        for r in doc.rules
        if isinstance(r, ThresholdRule | TargetRule | PredictiveRule)
    ]


def observe(
    plan: list[tuple[str, int, bool]], load: float, ready: int, capacity: float
) -> dict[str, float | None]:
    """The bucket value of every metric rule for one period (see the module doc for the model)."""
    if ready > 0:
        rho = load / (ready * capacity)
        cpu = 100.0 if rho >= 1.0 else 100.0 * rho
        qps = load / ready
        delay = MAX_DELAY_MS if rho >= 1.0 else BASE_DELAY_MS / max(0.05, 1.0 - rho)
        n = ready
    else:
        cpu, qps, delay, n = 100.0, load, MAX_DELAY_MS, 1
    per = (cpu, qps, delay)
    values: dict[str, float | None] = {}
    for name, kind, is_sum in plan:
        if kind < 0:
            values[name] = None
        elif kind == 3:
            values[name] = load
        else:
            values[name] = per[kind] * n if is_sum else per[kind]
    return values


def engine_step(
    doc: JobDocument, created_at: float | None = None, *, decisions: list[Decision] | None = None
) -> Step:
    """The per-period policy step on the shared engine, in mode "active" on the simulated clock: the
    closed bucket (`step` with the Observation), then the schedule fires due at the period on top of that
    decision (`step` with a FireTime, until none is left), each with the schedule windows in force then.
    Fire times before the state's `created_at` (the trace's start, set by `simulate`) never run.
    `created_at` is accepted for callers of the earlier signature; the state carries it. `decisions`:
    a list that gets every decision, in order (to compare replay with the live daemon)."""
    fires = any(isinstance(r, ScheduleRule) and r.instances is not None for r in doc.rules)

    def decide(obs: Observation, state: JobState) -> tuple[int, JobState]:
        now = obs.now
        decision, state = policy.step(doc, state, obs, now, mode="active")
        if decisions is not None:
            decisions.append(decision)
        desired = decision.desired
        while fires:
            fired, state = policy.step(doc, state, FireTime(desired), now, mode="active")
            if fired is None:
                break
            if decisions is not None:
                decisions.append(fired)
            desired = fired.desired
        return desired, state

    return decide


def simulate(
    doc: JobDocument, trace: Trace, options: ReplayOptions = ReplayOptions(), *, step: Step | None = None
) -> ReplayResult:
    """Replay `trace` through `doc`. `step` replaces the engine (tests of the simulated cluster only)."""
    options.check()
    times = period_times(trace, float(doc.period))
    loads = trace.load_at(times)
    t0 = float(times[0])
    decide = step if step is not None else engine_step(doc, t0)
    plan = metric_plan(doc)
    cap, startup = options.capacity, options.startup
    ready = options.initial
    launched: deque[float] = deque()  # launch times of starting instances, oldest first
    deployments = options.deployments
    last_action: float | None = None
    state = JobState(created_at=t0)
    n = len(times)
    ready_col = [0] * n
    starting_col = [0] * n
    desired_col = [0] * n
    t_list: list[float] = times.tolist()
    load_list: list[float] = loads.tolist()
    seen_load, seen_ready = math.nan, -1
    values: dict[str, float | None] = {}
    for k in range(n):
        t = t_list[k]
        load = load_list[k]
        cutoff = t - startup
        while launched and launched[0] <= cutoff:
            launched.popleft()
            ready += 1
        starting = len(launched)
        current = ready + starting
        if load != seen_load or ready != seen_ready:  # a trace row holds for several periods
            values = observe(plan, load, ready, cap)
            seen_load, seen_ready = load, ready
        obs = Observation(
            now=t,
            bucket=int(t),
            current=current,
            ready=ready,
            values=values,  # shared between equal periods: the engine never mutates its inputs
            reporters=ready,
            deployment_started_at=last_action if deployments and launched else None,
            startup=startup,  # what the live daemon learns from Marathon: the simulated start-up time
        )
        desired, state = decide(obs, state)
        ready_col[k] = ready
        starting_col[k] = starting
        desired_col[k] = desired
        if desired != current:
            last_action = t
        if desired > current:
            launched.extend([t] * (desired - current))
        elif desired < current:
            drop = current - desired
            while drop and launched:
                launched.pop()
                drop -= 1
            ready -= drop
    return ReplayResult(
        doc, trace, options, _timeline(times, loads, ready_col, starting_col, desired_col, cap)
    )


def _timeline(
    times: FloatArray,
    loads: FloatArray,
    ready: list[int],
    starting: list[int],
    desired: list[int],
    cap: float,
) -> Timeline:
    r = np.asarray(ready, dtype=np.int64)
    capacity = r * cap
    with np.errstate(divide="ignore", invalid="ignore"):
        cpu = np.where(r > 0, np.minimum(100.0, 100.0 * loads / np.where(r > 0, capacity, 1.0)), 100.0)
    return Timeline(
        t=times,
        load=loads,
        ready=r,
        starting=np.asarray(starting, dtype=np.int64),
        desired=np.asarray(desired, dtype=np.int64),
        cpu_used=cpu,
        unserved=np.maximum(0.0, loads - capacity),
    )
