"""Warm start from past bucket values (policies/warm.py): what is filled, what never is."""

from __future__ import annotations

from typing import Any

import pytest

from policies.engine import evaluate
from policies.predictive import MIN_ERRORS
from policies.types import JobState, Observation, PredictiveState, Streak
from policies.warm import BucketValue, warm_state
from tests.policies.build import PERIOD, T0, cpu_rule, job, qps_rule


def pred(**kw: Any) -> dict[str, Any]:
    return {"name": "p", "type": "predictive", "metric": "proc.qps", "target": 100, "startup": "60s", **kw}


def flat(value: float | None, reporters: int, n: int = 360) -> list[BucketValue]:
    """An hour of 10 s buckets before T0 with the same value."""
    return [(T0 - (n - i) * PERIOD, value, reporters) for i in range(n)]


KEPT = PredictiveState(t=float(T0 - 10), level=42.0)


@pytest.mark.parametrize(
    ("rules", "state", "history", "taken", "level"),
    [
        pytest.param(
            [pred()], JobState(), {"p": flat(150.0, 4)}, {"p": 360}, 600.0, id="load = value x reporters"
        ),
        pytest.param(
            [pred(aggregate="sum")], JobState(), {"p": flat(600.0, 4)}, {"p": 360}, 600.0, id="sum: the value"
        ),
        pytest.param(
            [pred()],
            JobState(),
            {"p": flat(None, 0, 100) + flat(150.0, 4, 10)},
            {"p": 10},
            600.0,
            id="no-data buckets skipped",
        ),
        pytest.param([pred()], JobState(), {}, {}, None, id="no history: nothing"),
        pytest.param(
            [pred()],
            JobState(predictive={"p": KEPT}),
            {"p": flat(150.0, 4)},
            {},
            42.0,
            id="a kept state is not overwritten",
        ),
        pytest.param(
            [cpu_rule()],
            JobState(streaks={"cpu": Streak(1, 0)}),
            {"cpu": flat(95.0, 2)},
            {},
            None,
            id="threshold streaks are not invented",
        ),
        pytest.param(
            [qps_rule()], JobState(), {"qps": flat(95.0, 2)}, {}, None, id="target: nothing to fill"
        ),
    ],
)
def test_warm_state(
    rules: list[dict[str, Any]],
    state: JobState,
    history: dict[str, list[BucketValue]],
    taken: dict[str, int],
    level: float | None,
) -> None:
    doc = job(rules, period=PERIOD)
    new, got = warm_state(doc, state, history)
    assert got == taken
    if not taken:
        assert new is state  # nothing changed: the very same value
        if level is not None:
            assert new.predictive["p"].level == level
        return
    assert new is not state and state.predictive.get("p") is None  # a new value, the old one untouched
    st = new.predictive["p"]
    assert st.level == pytest.approx(level) and st.t == float(T0)  # the last bucket ends at T0
    assert new.streaks == state.streaks and new.recent == state.recent and new.count == state.count


def test_a_warmed_rule_forecasts_from_its_first_live_bucket() -> None:
    """Cold, a predictive rule acts as a target rule until MIN_ERRORS forecasts were checked; warmed from
    an hour of history it forecasts (with a margin learned from that hour) at the first live bucket."""
    doc = job([pred()], period=PERIOD, max_instances=20)
    o = Observation(now=T0 + PERIOD, bucket=T0, current=4, ready=4, values={"p": 150.0}, reporters=4)
    cold, _ = evaluate(doc, o, JobState(), mode="active")
    warm, taken = warm_state(doc, JobState(), {"p": flat(150.0, 4)})
    assert taken == {"p": 360} and warm.predictive["p"].checked >= MIN_ERRORS
    hot, _ = evaluate(doc, o, warm, mode="active")
    assert cold.proposals[0].inputs["mode"] == "target"
    assert hot.proposals[0].inputs["mode"] == "forecast"
    assert hot.proposals[0].inputs["forecast"] == pytest.approx(600.0)


def test_a_warmed_rule_runs_its_cycle_tests_at_its_jobs_phase() -> None:
    """Warm start feeds the rule with the phase of the document's job (policies.predictive.job_phase), so
    a warmed state is the one live evaluation of the same buckets would have made. 2 h 10 min of a rise
    at :09 of every hour ending at T0 (13:20 past a quarter hour): the hourly test needs two hours of
    history, which the job's test at 3:30 past the quarter hour (job "web": phase 689 s + 7 min) did not
    have yet; a test at minute 7 (phase 0) would have found the cycle."""
    from policies.predictive import EMPTY, PredictiveSpec, propose_predictive

    doc = job([pred()], period=PERIOD, max_instances=20)
    n = 780
    history = [(T0 - (n - i) * PERIOD, 100.0 * (4 if 9 <= (T0 - (n - i) * PERIOD) % 3600 // 60 < 14 else 1), 4) for i in range(n)]  # fmt: skip
    warm, taken = warm_state(doc, JobState(), {"p": history})
    assert taken == {"p": n}
    live = JobState()
    at_zero = EMPTY
    phase_zero = PredictiveSpec.of(doc.rules[0])  # type: ignore[arg-type]
    for start, value, reporters in history:
        o = Observation(now=start + PERIOD, bucket=start, current=4, ready=4, values={"p": value}, reporters=reporters)  # fmt: skip
        _, live = evaluate(doc, o, live, mode="active")
        _, at_zero = propose_predictive(phase_zero, value, 4, 4, float(start + PERIOD), None, at_zero)
    assert warm.predictive["p"] == live.predictive["p"]
    assert warm.predictive["p"].hourly == 0.0 and at_zero.hourly == 3600.0
