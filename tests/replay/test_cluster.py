"""The simulated cluster and metrics of `oceand replay`, driven by scripted decisions (no policy rules).

The policy engine is replaced by a script of counts per period, so these tests pin the simulation
model of PRODUCT §6 alone: start-up delay, the order within a period, scale-in of starting instances
first (youngest first), the metric formulas and the summary formulas.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from oceand.replay import (
    ReplayError,
    ReplayOptions,
    metric_plan,
    observe,
    oracle_instances,
    period_times,
    simulate,
)
from oceand.trace import Trace
from policies.document import JobDocument, parse_job
from policies.types import JobState, Observation


def job(rules: list[dict[str, Any]] | None = None, period: int = 10) -> JobDocument:
    return parse_job(
        {
            "job": "replay-test",
            "target": {"cluster": "lg", "app": "/replay/test"},
            "period": period,
            "min_instances": 0,
            "max_instances": 100,
            "rules": rules or [],
        }
    )


def trace(values: list[float], interval: float = 10.0, t0: float = 1_000_000.0) -> Trace:
    times = t0 + np.arange(len(values), dtype=np.float64) * interval
    return Trace("mem.csv", times, np.asarray(values, dtype=np.float64), interval, "t", "v")


class Script:
    """A stand-in for the engine: the count to decide at period k (otherwise keep the current count)."""

    def __init__(self, t0: float, period: float, counts: dict[int, int]):
        self.t0, self.period, self.counts = t0, period, counts
        self.seen: list[Observation] = []

    def __call__(self, obs: Observation, state: JobState) -> tuple[int, JobState]:
        self.seen.append(obs)
        k = round((obs.now - self.t0) / self.period)
        return self.counts.get(k, obs.current), state


def rule(name: str, metric: str, aggregate: str = "avg") -> dict[str, Any]:
    return {"name": name, "type": "target", "metric": metric, "aggregate": aggregate, "target": 50}


@pytest.mark.parametrize(
    ("metric", "aggregate", "load", "ready", "expected"),
    [
        pytest.param("cpu.used", "avg", 150.0, 3, 50.0, id="cpu half loaded"),
        pytest.param("cpu.used", "max", 150.0, 3, 50.0, id="every aggregate of one value is that value"),
        pytest.param("cpu.used", "p99", 150.0, 3, 50.0, id="p99 too"),
        pytest.param("cpu.used", "avg", 600.0, 3, 100.0, id="cpu saturates at 100"),
        pytest.param("cpu.used", "sum", 150.0, 3, 150.0, id="sum is value x ready"),
        pytest.param("proc.qps", "avg", 150.0, 3, 50.0, id="qps per instance"),
        pytest.param("proc.qps", "sum", 150.0, 3, 150.0, id="qps sum is the load"),
        pytest.param("proc.qps", "avg", 1000.0, 3, 1000.0 / 3, id="qps is not capped by capacity"),
        pytest.param("proc.delay", "avg", 0.0, 2, 10.0, id="delay idle is 10 ms"),
        pytest.param("proc.delay", "avg", 100.0, 2, 20.0, id="delay at rho 0.5 is 20 ms"),
        pytest.param("proc.delay", "avg", 190.0, 2, 200.0, id="delay at rho 0.95 reaches 200 ms"),
        pytest.param("proc.delay", "avg", 198.0, 2, 200.0, id="delay floor max(0.05, 1-rho)"),
        pytest.param("proc.delay", "avg", 500.0, 2, 200.0, id="delay overloaded is 200 ms"),
        pytest.param("alb.qps", "avg", 321.0, 4, 321.0, id="alb.qps is the job load"),
        pytest.param("alb.qps", "sum", 321.0, 4, 321.0, id="alb.qps sum is one series"),
        pytest.param("cpu.used", "avg", 50.0, 0, 100.0, id="no ready: cpu 100"),
        pytest.param("proc.qps", "avg", 50.0, 0, 50.0, id="no ready: qps is the load"),
        pytest.param("proc.qps", "sum", 50.0, 0, 50.0, id="no ready: qps sum is the load"),
        pytest.param("proc.delay", "avg", 0.0, 0, 200.0, id="no ready: delay 200 ms"),
        pytest.param("mem.used.percent", "avg", 50.0, 2, None, id="unknown metric is no data"),
    ],
)
def test_observe(metric: str, aggregate: str, load: float, ready: int, expected: float | None) -> None:
    values = observe(metric_plan(job([rule("r", metric, aggregate)])), load, ready, 100.0)
    if expected is None:
        assert values == {"r": None}
    else:
        assert values["r"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("rows", "interval", "period", "expected"),
    [
        pytest.param(3, 60.0, 10, 18, id="3 rows of 60 s, last row holds 60 s"),
        pytest.param(2, 10.0, 10, 2, id="one period per row"),
        pytest.param(2, 15.0, 10, 3, id="partial last period still runs"),
        pytest.param(2, 3.0, 10, 1, id="trace shorter than a period"),
    ],
)
def test_period_times(rows: int, interval: float, period: int, expected: int) -> None:
    times = period_times(trace([1.0] * rows, interval), period)
    assert len(times) == expected
    assert times[0] == 1_000_000.0
    assert np.all(np.diff(times) == period)


def test_a_trace_spanning_too_many_periods_is_an_error() -> None:
    tr = trace([1.0, 2.0], interval=1_500_000_000.0)  # e.g. Unix milliseconds read as seconds
    with pytest.raises(ReplayError, match=r"mem\.csv: the trace spans .* periods .* in milliseconds"):
        simulate(job(), tr, step=Script(tr.start, 10, {}))


def test_startup_delay_and_rows_follow_previous_desired() -> None:
    tr = trace([100.0] * 10)
    script = Script(tr.start, 10, {0: 3})
    tl = simulate(job(), tr, ReplayOptions(capacity=100, startup=60, initial=1), step=script).timeline
    assert tl.ready.tolist() == [1, 1, 1, 1, 1, 1, 3, 3, 3, 3]  # launched at t0, ready at t0 + 60
    assert tl.starting.tolist() == [0, 2, 2, 2, 2, 2, 0, 0, 0, 0]
    assert tl.desired.tolist() == [3] * 10
    before = tl.ready + tl.starting
    assert before[1:].tolist() == tl.desired[:-1].tolist()
    assert [o.current for o in script.seen] == before.tolist()
    assert [o.ready for o in script.seen] == tl.ready.tolist()


def test_zero_startup_is_ready_next_period() -> None:
    tr = trace([100.0] * 3)
    script = Script(tr.start, 10, {0: 2})
    tl = simulate(job(), tr, ReplayOptions(startup=0, initial=1), step=script).timeline
    assert tl.ready.tolist() == [1, 2, 2]
    assert tl.starting.tolist() == [0, 0, 0]


def test_scale_in_removes_starting_youngest_first_then_ready() -> None:
    tr = trace([100.0] * 12)
    # k0: 1 -> 3 (two launched at k0); k2: 3 -> 5 (two launched at k2); k3: 5 -> 2 drops the two from k2
    # and one from k0, leaving one starting from k0 that is ready at k6; k8: 3 -> 1 drops ready ones.
    script = Script(tr.start, 10, {0: 3, 2: 5, 3: 2, 8: 1})
    tl = simulate(job(), tr, ReplayOptions(startup=60, initial=1), step=script).timeline
    assert tl.ready.tolist() == [1, 1, 1, 1, 1, 1, 2, 2, 2, 1, 1, 1]
    assert tl.starting.tolist() == [0, 2, 2, 4, 1, 1, 0, 0, 0, 0, 0, 0]
    assert tl.desired.tolist() == [3, 3, 5, 2, 2, 2, 2, 2, 1, 1, 1, 1]


def test_observations_carry_the_simulated_clock_and_metrics() -> None:
    tr = trace([0.0, 250.0, 250.0])
    doc = job([rule("cpu", "cpu.used"), rule("qps", "proc.qps", "sum"), rule("other", "disk.io")])
    script = Script(tr.start, 10, {})
    simulate(doc, tr, ReplayOptions(capacity=100, initial=2), step=script)
    assert [o.now for o in script.seen] == [1_000_000.0, 1_000_010.0, 1_000_020.0]
    assert [o.bucket for o in script.seen] == [1_000_000, 1_000_010, 1_000_020]
    assert script.seen[0].values == {"cpu": 0.0, "qps": 0.0, "other": None}
    assert script.seen[1].values == {"cpu": 100.0, "qps": 250.0, "other": None}
    assert script.seen[1].reporters == 2


def test_timeline_columns_and_summary_formulas() -> None:
    # capacity 10, one instance all along; loads 5, 25, 10, 0 for one 10 s period each.
    tr = trace([5.0, 25.0, 10.0, 0.0])
    result = simulate(job(), tr, ReplayOptions(capacity=10, initial=1), step=Script(tr.start, 10, {2: 2}))
    tl = result.timeline
    assert tl.load.tolist() == [5.0, 25.0, 10.0, 0.0]
    assert tl.unserved.tolist() == [0.0, 15.0, 0.0, 0.0]
    assert tl.cpu_used.tolist() == [50.0, 100.0, 100.0, 0.0]
    s = result.summary()
    assert s["unserved_fraction"] == 15.0 / 40.0
    assert s["overload_seconds"] == 10.0  # only the 25 row is > 1 x 10; 10 is not > 10
    assert s["instance_seconds"] == 10.0 * (1 + 1 + 1 + 2)
    assert s["oracle_instance_seconds"] == 10.0 * (1 + 3 + 1 + 1)  # max(1, ceil(load / 10))
    assert s["cost_ratio"] == pytest.approx(5 / 6)
    assert (s["actions"], s["periods"], s["scale_outs"], s["scale_ins"]) == (1, 4, 1, 0)
    assert list(s)[:7] == [
        "unserved_fraction", "overload_seconds", "instance_seconds", "oracle_instance_seconds",
        "cost_ratio", "actions", "periods",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("load", "capacity", "expected"),
    [
        pytest.param(0.0, 10.0, 1, id="idle still needs one"),
        pytest.param(10.0, 10.0, 1, id="exactly one"),
        pytest.param(10.5, 10.0, 2, id="a bit over"),
        pytest.param(0.3, 0.1, 3, id="float noise does not add one"),
        pytest.param(1.0, 0.1, 10, id="1 / 0.1"),
        pytest.param(195 / 60, 0.5, 7, id="NASA peak per second at capacity 0.5"),
    ],
)
def test_oracle_instances(load: float, capacity: float, expected: int) -> None:
    assert oracle_instances(np.array([load]), capacity).tolist() == [expected]
    assert expected == max(1, math.ceil(round(load / capacity, 9)))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(ReplayOptions(capacity=0), "--capacity must be", id="zero capacity"),
        pytest.param(ReplayOptions(capacity=math.inf), "--capacity must be", id="infinite capacity"),
        pytest.param(ReplayOptions(startup=-1), "--startup must be", id="negative startup"),
        pytest.param(ReplayOptions(initial=-1), "--initial must be", id="negative initial"),
    ],
)
def test_bad_options(options: ReplayOptions, message: str) -> None:
    with pytest.raises(ReplayError, match=message):
        simulate(job(), trace([1.0, 1.0]), options, step=Script(0, 10, {}))
