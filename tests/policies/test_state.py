"""State is a value: JobState survives JSON (the store persists it with every decision)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from policies.engine import evaluate
from policies.types import JobState, Streak
from tests.policies.build import cpu_rule, job, obs, qps_rule

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=12)
times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
counts = st.integers(min_value=0, max_value=100_000)

states = st.builds(
    JobState,
    count=st.none() | counts,
    last_change_at=st.none() | times,
    last_bucket=st.none() | st.integers(min_value=0, max_value=4_000_000_000),
    streaks=st.dictionaries(names, st.builds(Streak, counts, counts), max_size=5),
    recent=st.lists(st.tuples(times, counts), max_size=20),
    alarms=st.dictionaries(st.text(max_size=40), times, max_size=5),
    fires=st.dictionaries(names, times, max_size=5),
    created_at=st.none() | times,
)


@given(states)
def test_state_round_trips_through_json(state: JobState) -> None:
    text = json.dumps(state.to_json())
    assert JobState.from_json(json.loads(text)) == state


@given(
    st.lists(st.one_of(st.none(), st.floats(min_value=0, max_value=200)), min_size=1, max_size=12),
    st.lists(st.one_of(st.none(), st.floats(min_value=0, max_value=300)), min_size=12, max_size=12),
    st.integers(min_value=1, max_value=5),
    st.sampled_from(["active", "dry-run"]),
)
def test_any_run_keeps_state_and_decisions_json_ready_and_in_bounds(
    cpu: list[float | None], qps: list[float | None], start: int, mode: str
) -> None:
    doc = job([cpu_rule(), qps_rule()], behavior={"scale_in": {"stabilization": 30}}, out_cooldown=20)
    state = JobState()
    current = start
    for i, (c, q) in enumerate(zip(cpu, qps, strict=False)):
        d, state = evaluate(doc, obs(i, current, {"cpu": c, "qps": q}), state, mode=mode)
        assert 1 <= d.desired <= 5
        assert json.loads(json.dumps(d.to_json()))["desired"] == d.desired
        state = JobState.from_json(json.loads(json.dumps(state.to_json())))  # a restart between every bucket
        assert state.count == d.desired
        current = d.desired if mode == "active" else current
