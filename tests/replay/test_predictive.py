"""The predictive rule (PRODUCT §14) in replay on synthetic loads that recur every day: it scales before
the load arrives by about the start-up time, and never below what a target rule would keep; and on a load
that recurs every hour (a cron job's spike), from its third hour on."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from oceand.replay import ReplayOptions, ReplayResult, simulate
from oceand.trace import Trace
from policies.document import JobDocument, PredictiveRule, parse_job
from policies.engine import evaluate
from policies.predictive import PredictiveSpec
from policies.target import propose_target
from policies.types import JobState, Observation

DAY = 86400.0
T0 = math.floor(1_700_000_000 / DAY) * DAY  # a UTC midnight
PERIOD, STARTUP, CAPACITY, TARGET = 30.0, 90.0, 100.0, 70.0
DAYS = 3  # "auto" sees the daily cycle once it has two days of history: day 3 is forecast


def load(kind: str) -> tuple[Trace, float | None]:
    """A 3-day trace of one row a minute, and the time on day 3 when the day's rise arrives."""
    t = T0 + np.arange(0, DAYS * DAY, 60.0)
    h = (t - T0) % DAY / 3600.0
    if kind == "step":  # 200 → 900 at 09:00 until 17:00
        v, at = np.where((h >= 9) & (h < 17), 900.0, 200.0), 9.0
    elif kind == "ramp":  # 200 → 1400 from 09:00 to 09:10
        v, at = np.clip(200 + 1200 * (h - 9) * 6, 200, 1400) * (h < 17) + 200 * (h >= 17), 9.0
    elif kind == "hourly":  # 200, 900 from :09 to :14 of every hour (a cron job); forecast at 09:09
        minute = (t - T0) % 3600 / 60.0
        v, at = np.where((minute >= 9) & (minute < 14), 900.0, 200.0), 9 + 9 / 60
    elif kind == "flash":  # 200, 1500 for 10 minutes at 20:00
        v, at = np.where((h >= 20) & (h < 20 + 1 / 6), 1500.0, 200.0), 20.0
    else:  # a daily sine 100..900 with noise
        rng = np.random.default_rng(7)
        v, at = np.maximum(0, 500 + 400 * np.sin(2 * np.pi * (h - 9) / 24) + rng.normal(0, 30, len(t))), None
    arrival = None if at is None else T0 + (DAYS - 1) * DAY + at * 3600
    return Trace(f"synthetic-{kind}", t, v.astype(np.float64), 60.0, "t", "load"), arrival


def job(rule: dict[str, Any]) -> JobDocument:
    return parse_job({
        "job": "synthetic", "target": {"cluster": "lg", "app": "/synthetic"}, "mode": "active",
        "period": f"{PERIOD:g}s", "min_instances": 1, "max_instances": 40, "rules": [rule],
    })  # fmt: skip


PREDICTIVE = {"name": "q", "type": "predictive", "metric": "proc.qps", "target": TARGET}
TARGET_RULE = {"name": "q", "type": "target", "metric": "proc.qps", "target": TARGET}
OPTIONS = ReplayOptions(capacity=CAPACITY, startup=STARTUP, initial=3)


def replay(rule: dict[str, Any], trace: Trace) -> tuple[ReplayResult, list[tuple[int, int]]]:
    """The replay, and per period (the rule's proposal, what a target rule proposes on the same bucket)."""
    doc = job(rule)
    pairs: list[tuple[int, int]] = []
    spec = PredictiveSpec.of(doc.rules[0]) if isinstance(doc.rules[0], PredictiveRule) else None

    def step(obs: Observation, state: JobState) -> tuple[int, JobState]:
        decision, state = evaluate(doc, obs, state, mode="active")
        if spec is not None:
            v = obs.values["q"]
            tp = propose_target(spec.fallback, v, obs.current, obs.ready).desired
            pairs.append((decision.proposals[0].desired or 0, obs.current if tp is None else tp))
        return decision.desired, state

    return simulate(doc, trace, OPTIONS, step=step), pairs


def unserved(r: ReplayResult, since: float) -> float:
    w = r.timeline.t >= since
    return float(r.timeline.unserved[w].sum())


@pytest.mark.parametrize("kind", ["step", "ramp", "flash", "sine", "hourly"])
def test_predictive_scales_ahead_by_the_startup_time(kind: str) -> None:
    trace, arrival = load(kind)
    pred, pairs = replay(PREDICTIVE, trace)
    target, _ = replay(TARGET_RULE, trace)
    day3 = T0 + (DAYS - 1) * DAY
    # never below what the target rule would keep, at every period
    assert all(p >= t for p, t in pairs)
    # on the forecast day it serves what the target rule cannot
    assert unserved(pred, day3) < unserved(target, day3) or unserved(target, day3) == 0
    assert unserved(pred, day3) <= 0.001 * float(trace.values.sum())
    if arrival is None:
        return
    tl = pred.timeline
    i = int(np.searchsorted(tl.t, arrival))
    assert tl.ready[i] * CAPACITY >= tl.load[i]  # ready when the load arrives
    assert unserved(target, day3) > 0  # the target rule is not
    # from an hour before (half an hour for the hourly load: an hour before is the last hour's spike)
    w = (tl.t >= arrival - (1800 if kind == "hourly" else 3600)) & (tl.t <= arrival)
    before = tl.desired[w][0]  # the count then
    launched = tl.t[w][tl.desired[w] > before][0]  # the first scale-out for the day's rise
    assert arrival - STARTUP - PERIOD <= launched <= arrival - STARTUP  # by about the start-up time
