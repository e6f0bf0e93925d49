"""policies._faststep (a closed bucket's step in C for the usual job) against the same step in Python.

Random documents (threshold rules with one or both sides, percentage steps, bands; target rules with
their tolerances; cooldowns, max steps, stabilization windows both ways, bounds, deployment timeouts)
run sequences of buckets twice, once with the extension and once without (`policies.engine._native` set
to None): every decision (its proposals' types included) and every next state must be the same. The
buckets mix what the C step takes itself with everything it hands back to Python: values that are ints,
NaN, infinite or missing, a count changed behind the job's back, deployments, paused and dry-run modes,
states read back from JSON with whole-number times."""

from __future__ import annotations

import math
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import policies.engine as engine
from bench.evaluate import make_doc
from policies.document import JobDocument, parse_job
from policies.types import Decision, JobState, Observation

T0 = 1_700_000_000.0

pytestmark = pytest.mark.skipif(
    os.environ.get("OCEAND_NATIVE") == "0", reason="OCEAND_NATIVE=0: the extension is switched off"
)


def test_the_extension_is_built_and_takes_the_usual_job() -> None:
    """CI builds it (gcc is on every machine): a missing extension is a build problem, not a pass. The
    benchmark's job (a threshold and a target rule) gets a plan; one with a band does not."""
    assert engine.NATIVE, (
        "policies._faststep is not built: run `scripts/setup test` (pip install -e . compiles "
        "policies/_faststep.c with the C compiler); without it every bucket is stepped in Python"
    )
    assert engine.compile_job(make_doc(1)).fast is not None
    banded = _doc([{"kind": "threshold", "above": 80.0, "below": None, "bands": True}], {})
    assert engine.compile_job(banded).fast is None


def _doc(rules: list[dict[str, Any]], beh: dict[str, Any], **over: Any) -> JobDocument:
    out: list[dict[str, Any]] = []
    for i, r in enumerate(rules):
        name = f"r{i}"
        if r["kind"] == "threshold":
            rule: dict[str, Any] = {"name": name, "type": "threshold", "metric": "cpu.used"}
            if r["above"] is not None:
                rule["scale_out"] = {"above": r["above"], "consecutive": r.get("consecutive", 1)}
                rule["scale_out"]["step"] = r.get("step", 1)
                if r.get("bands"):
                    rule["scale_out"]["bands"] = [{"above": r["above"] + 10, "step": 3}]
            if r["below"] is not None:
                rule["scale_in"] = {"below": r["below"], "consecutive": r.get("consecutive", 1)}
                rule["scale_in"]["step"] = r.get("step", 1)
            out.append(rule)
        else:
            out.append(
                {"name": name, "type": "target", "metric": "proc.qps", "target": r["target"], **r["tol"]}
            )
    data: dict[str, Any] = {
        "job": "web",
        "target": {"cluster": "lg", "app": "/ocean/web"},
        "mode": "active",
        "rules": out,
        "behavior": beh,
        **over,
    }
    return parse_job(data)


threshold_rules = st.builds(
    lambda above, gap, sides, consecutive, step, bands: {
        "kind": "threshold",
        "above": None if sides == "in" else above,
        "below": None if sides == "out" else above - gap,
        "consecutive": consecutive,
        "step": step,
        "bands": bands and sides != "in",
    },
    st.sampled_from([50.0, 70.0, 80.0]),
    st.sampled_from([0.0, 10.0, 30.0]),
    st.sampled_from(["both", "both", "out", "in"]),
    st.integers(1, 3),
    st.sampled_from([1, 1, 2, "50%", "10%"]),
    st.sampled_from([False, False, False, True]),
)
target_rules = st.builds(
    lambda target, tol: {"kind": "target", "target": target, "tol": tol},
    st.sampled_from([10.0, 50.0, 60.0, 100.0]),
    st.sampled_from(
        [{}, {"tolerance": 0.0}, {"tolerance": 0.2}, {"tolerance_out": 0.05, "tolerance_in": 0.3}]
    ),
)
sides = st.fixed_dictionaries(
    {},
    optional={
        "cooldown": st.sampled_from([0, 10, 30, 300]),
        "max_step": st.sampled_from([1, 2, 5]),
        "stabilization": st.sampled_from([0, 20, 60, 300]),
    },
)
documents = st.builds(
    lambda rules, out, in_, lo, span, timeout: _doc(
        rules,
        {"scale_out": out, "scale_in": in_},
        min_instances=lo,
        max_instances=lo + span,
        deployment_timeout=timeout,
    ),
    st.lists(st.one_of(threshold_rules, target_rules), min_size=1, max_size=3),
    sides,
    sides,
    st.integers(0, 3),
    st.integers(0, 20),
    st.sampled_from([60, 600]),
)
values = st.one_of(
    st.floats(0, 200, allow_nan=False),
    st.floats(0, 200, allow_nan=False),
    st.none(),
    st.just(math.nan),
    st.just(math.inf),
    st.just(-math.inf),
    st.integers(0, 200),
    st.just("missing"),
)
buckets = st.lists(
    st.fixed_dictionaries(
        {
            "values": st.lists(values, min_size=3, max_size=3),
            "moved": st.sampled_from([None, None, None, None, 0, 1, 7, 30]),  # a count set behind our back
            "ready": st.sampled_from(["all", "all", "all", 0, 1]),
            # seconds since a deployment started (60 and 600: exactly a deployment_timeout)
            "deployment": st.sampled_from([None, None, None, None, 5.0, 60.0, 600.0, 700.0, 12.3456789]),
            "jitter": st.sampled_from([0.0, 0.0, 0.123456789, 3.33333333]),  # times with many digits
            "mode": st.sampled_from(["active", "active", "active", "dry-run", "paused"]),
            "skip": st.sampled_from([0, 0, 0, 1, 40]),  # periods with no bucket (cooldowns and windows end)
        }
    ),
    min_size=1,
    max_size=25,
)
start_states = st.sampled_from(
    [
        JobState(),
        # as read back from JSON written by hand: whole-number times
        JobState.from_json({"count": 3, "last_change_at": 1_699_999_990, "recent": [[1_699_999_990, 4]]}),
        JobState.from_json(
            {"count": 2, "streaks": {"r0": [2, 0], "r1": [0, 5]}, "created_at": 1_699_999_000}
        ),
        # an alarm rule's and a schedule's memory: carried over (in new dicts) by every bucket
        JobState.from_json({"alarms": {"s1/e2/h/cpu/": T0 - 5}, "fires": {"nightly": T0 - 100}}),
    ]
)


def _run(doc: JobDocument, start: JobState, plan: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    state, current, now, out = start, 3, T0, []
    for b in plan:
        now += 10.0 * (1 + b["skip"]) + b["jitter"]
        if b["moved"] is not None:
            current = b["moved"]
        vals: dict[str, float | None] = {}
        for i, v in enumerate(b["values"]):
            if v != "missing":
                vals[f"r{i}"] = v
        ready = current if b["ready"] == "all" else min(current, b["ready"])
        dep = None if b["deployment"] is None else now - b["deployment"]
        obs = Observation(now, int(now) - 10, current, ready, vals, ready, dep)
        d, nxt = engine.step(doc, state, obs, now, mode=b["mode"])
        out.append(_view(d, nxt))
        state, current = nxt, d.desired
    return out


def _view(d: Decision, s: JobState) -> tuple[Any, ...]:
    """Everything a caller can see of a step's answer, types included."""
    kinds = [(type(p).__name__, type(p.inputs).__name__) for p in d.proposals]
    slots = [(k, type(getattr(s, k)).__name__) for k in JobState.__slots__]
    recent = [(type(t).__name__, type(c).__name__) for t, c in s.recent]
    return d.to_json(), kinds, [x._asdict() for x in d.limits], s.to_json(), slots, recent


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents, start=start_states, plan=buckets)
def test_the_c_step_decides_as_the_python_step(
    doc: JobDocument, start: JobState, plan: list[dict[str, Any]]
) -> None:
    native = engine._native
    assert native is not None
    with pytest.MonkeyPatch.context() as m:
        with_c = _run(doc, start, plan)
        m.setattr(engine, "_native", None)
        without = _run(doc, start, plan)
    assert with_c == without


def test_the_benchmark_jobs_are_stepped_in_c_with_the_same_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/evaluate.py's load (hot, cold and in-between jobs, cooldowns and max steps hit) on 300 jobs
    for 40 rounds, active and dry-run: every bucket is answered by the C step, each answer the Python
    step's."""
    from bench.evaluate import values_for

    docs = [make_doc(i) for i in range(300)]
    native = engine._native
    assert native is not None
    states = [JobState() for _ in docs]
    counts = [4] * len(docs)
    for r in range(40):
        now = T0 + 10.0 * (r + 1)
        for i, doc in enumerate(docs):
            cpu, qps = values_for(i, r)
            obs = Observation(now, int(now) - 10, counts[i], counts[i], {"cpu": cpu, "qps": qps}, counts[i])
            mode = "dry-run" if i % 3 == 0 else "active"
            got = native(engine.compile_job(doc).fast, states[i], obs, now, mode)
            assert got is not None
            monkeypatch.setattr(engine, "_native", None)
            want = engine.step(doc, states[i], obs, now, mode=mode)
            monkeypatch.setattr(engine, "_native", native)
            assert _view(*got) == _view(*want), (r, i)
            states[i], counts[i] = want[1], want[0].desired


@pytest.mark.parametrize(
    ("name", "values", "current", "mode", "dep", "last", "answered"),
    [
        ("usual bucket", {"cpu": 90.0, "qps": 700.0}, 4, "active", None, None, True),
        ("dry-run", {"cpu": 90.0, "qps": 700.0}, 4, "dry-run", None, None, True),
        ("no data", {}, 4, "active", None, None, True),
        ("NaN is no data", {"cpu": math.nan, "qps": 500.0}, 4, "active", None, None, True),
        ("held by a deployment", {"qps": 900.0}, 4, "active", 12.3456789, None, True),
        ("held by the cooldown", {"qps": 900.0}, 4, "active", None, 7.654321, True),
        ("max step then max_instances", {"qps": 1e6}, 48, "active", None, None, True),
        ("an int value: Python", {"cpu": 90, "qps": 700.0}, 4, "active", None, None, False),
        ("a count beyond 62 bits: Python", {"cpu": 90.0}, 2**70, "active", None, None, False),
        ("a negative count: Python (which refuses it)", {"cpu": 90.0}, -1, "active", None, None, False),
        ("paused: Python", {"cpu": 90.0}, 4, "paused", None, None, False),
        ("an unknown mode: Python (which refuses it)", {"cpu": 90.0}, 4, "sleepy", None, None, False),
    ],
)
def test_what_the_c_step_takes_and_what_it_hands_back(
    name: str,
    values: dict[str, Any],
    current: int,
    mode: str,
    dep: float | None,
    last: float | None,
    answered: bool,
) -> None:
    """`dep` / `last`: seconds since a deployment started / since the last change."""
    doc = make_doc(7)
    plan = engine.compile_job(doc).fast
    assert plan is not None and engine._native is not None
    obs = Observation(T0, int(T0) - 10, current, current, values, current, None if dep is None else T0 - dep)
    state = JobState(count=current, last_change_at=None if last is None else T0 - last)
    got = engine._native(plan, state, obs, T0, mode)
    assert (got is not None) == answered, name
    if got is not None:
        saved = engine._native
        try:
            engine._native = None
            want = engine.step(doc, state, obs, T0, mode=mode)
        finally:
            engine._native = saved
        assert _view(*got) == _view(*want), name
        assert got[0].limits or not (dep or last), name  # the holding cases do hold
