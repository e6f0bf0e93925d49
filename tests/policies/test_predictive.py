"""Predictive rules (PRODUCT §14) in the policy engine: the document, the state, the no-history case."""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from typing import Any

import pytest

from policies.document import DocumentError, JobDocument, parse_job
from policies.engine import evaluate, status
from policies.predictive import (
    DEFAULT_LEAD,
    HISTORY_SLOTS,
    LEVEL_TIME,
    MAX_ERRORS,
    MAX_PENDING,
    MIN_ERRORS,
    PredictiveSpec,
    forecast,
    quantile,
)
from policies.types import SCALE_OUT, JobState, Observation
from tests.policies.build import job, qps_rule, run


def pred(**kw: Any) -> dict[str, Any]:
    return {"name": "p", "type": "predictive", "metric": "proc.qps", "target": 60, **kw}


def doc_with(rule: dict[str, Any]) -> dict[str, Any]:
    return {"job": "web", "target": {"cluster": "lg", "app": "/ocean/web"}, "rules": [rule]}


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        pytest.param(pred(target=0), "rules[0].target", id="target must be > 0"),
        pytest.param(pred(quantile=1), "rules[0].quantile", id="quantile < 1"),
        pytest.param(pred(quantile=0), "rules[0].quantile", id="quantile > 0"),
        pytest.param(pred(season="2d"), "rules[0].season", id="season: auto, 1d, 7d or off"),
        pytest.param(pred(startup="2d"), "rules[0].startup", id="startup at most 1d"),
        pytest.param(pred(startup="soon"), "rules[0].startup", id="startup is a duration"),
        pytest.param(pred(horizon="1h"), "rules[0].horizon", id="unknown field"),
        pytest.param(
            {k: v for k, v in pred().items() if k != "target"}, "rules[0].target", id="target required"
        ),
    ],
)
def test_refused(rule: dict[str, Any], path: str) -> None:
    with pytest.raises(DocumentError) as e:
        parse_job(doc_with(rule))
    assert [err["path"] for err in e.value.errors] == [path]


def test_accepted_with_defaults() -> None:
    d = parse_job(doc_with(pred(startup="90s", season="1d")))
    (r,) = d.rules
    assert (r.type, r.startup, r.season, r.quantile, r.tolerance) == ("predictive", 90.0, "1d", 0.9, 0.1)  # type: ignore[union-attr]
    assert d.metric_rules() == [r]  # the live daemon aggregates its metric like any metric rule's
    schema = JobDocument.model_json_schema()
    assert "PredictiveRule" in schema["$defs"]


def test_without_history_it_is_a_target_rule() -> None:
    p_doc = job([pred()], max_instances=20)
    t_doc = job([qps_rule(target=60, name="p")], max_instances=20)
    values = [{"p": v} for v in (60, 90, 30, 200, 61, 10, None, 120)]
    rp = run(p_doc, values, 4)
    rt = run(t_doc, values, 4)
    assert rp.desired == rt.desired
    assert [d.reasons for d in rp.decisions] == [d.reasons for d in rt.decisions]
    assert all(d.proposals[0].inputs.get("mode") in ("target", None) for d in rp.decisions)
    assert rp.decisions[1].proposals[0].kind == "predictive"


def obs(k: int, current: int, value: float | None, startup: float | None = None) -> Observation:
    t = 1_700_000_000.0 + 10 * k
    return Observation(t, int(t), current, current, {"p": value}, current, None, startup)


def feed(doc: JobDocument, loads: list[float], state: JobState | None = None, first: int = 0, **kw: Any) -> tuple[list[Any], JobState]:  # fmt: skip
    """Evaluate a load per 10-s bucket at a fixed count of 4 (load = per-instance value × 4)."""
    st = state or JobState()
    out = []
    for k, load in enumerate(loads):
        d, st = evaluate(doc, obs(first + k, 4, load / 4, **kw), st, mode="active")
        out.append(d)
    return out, st


def test_it_forecasts_a_ramp_one_lead_ahead_once_it_has_checked_forecasts() -> None:
    doc = job([pred(startup="60s", season="off")], max_instances=100)
    ramp = [100.0 + 10 * k for k in range(60)]  # +1 load unit a second
    decisions, _ = feed(doc, ramp)
    early = decisions[MIN_ERRORS - 2].proposals[0]
    assert early.inputs["mode"] == "target"
    late = decisions[-1].proposals[0]
    assert late.inputs["mode"] == "forecast" and late.reason == SCALE_OUT
    assert late.inputs["lead"] == 60.0
    # the level lags the load by LEVEL_TIME leads of the slope (1 a second); the errors at the lead are
    # slope × (lead + lag), so the margin carries the forecast one lead ahead of the load
    lag = LEVEL_TIME * 60
    assert late.inputs["forecast"] == pytest.approx(ramp[-1] - lag, abs=10)
    assert late.inputs["forecast"] + late.inputs["margin"] == pytest.approx(ramp[-1] + 60, abs=10)
    assert late.desired >= late.inputs["target_proposal"]


@pytest.mark.parametrize(
    ("rule_startup", "obs_startup", "lead"),
    [
        pytest.param(None, None, DEFAULT_LEAD, id="nothing known: 60 s"),
        pytest.param(None, 120.0, 120.0, id="the daemon's start-up time"),
        pytest.param("30s", 120.0, 30.0, id="the rule's startup overrides"),
    ],
)
def test_lead(rule_startup: str | None, obs_startup: float | None, lead: float) -> None:
    kw = {} if rule_startup is None else {"startup": rule_startup}
    doc = job([pred(**kw)], max_instances=100)
    decisions, _ = feed(doc, [400.0] * 40, startup=obs_startup)
    assert decisions[-1].proposals[0].inputs["lead"] == lead


def test_state_is_a_bounded_json_value_and_a_restart_changes_nothing() -> None:
    doc = job([pred(startup="60s", season="1d")], max_instances=100)
    loads = [300 + 200 * math.sin(k / 500) + (k * 7919 % 13) for k in range(22_000)]  # 2.5 days of 10 s
    _, st = feed(doc, loads[:20_000])
    ps = st.predictive["p"]
    assert len(ps.ring) == HISTORY_SLOTS and len(ps.errors) <= MAX_ERRORS and len(ps.pending) <= MAX_PENDING
    assert ps.season == 86400.0
    text = json.dumps(st.to_json())
    assert len(text) < 16_000
    restored = JobState.from_json(json.loads(text))
    a, _ = feed(doc, loads[20_000:], st, first=20_000)
    b, _ = feed(doc, loads[20_000:], restored, first=20_000)
    assert [d.to_json() for d in a] == [d.to_json() for d in b]
    view = status(doc, st, 1_700_200_000.0)["rules"]["p"]
    assert view["type"] == "predictive" and view["history_slots"] == HISTORY_SLOTS


def test_the_state_is_not_modified_in_place() -> None:
    doc = job([pred(startup="60s")], max_instances=100)
    _, st = feed(doc, [100.0] * 30)
    before = json.dumps(st.to_json())
    feed(doc, [500.0] * 5, st, first=30)
    assert json.dumps(st.to_json()) == before


def test_no_data_keeps_the_state_and_blocks_scale_in() -> None:
    doc = job([pred()], max_instances=100)
    _, st = feed(doc, [100.0] * 30)
    d, st2 = evaluate(doc, obs(30, 4, None), st, mode="active")
    assert (d.desired, d.reasons) == (4, ["NoData"])
    assert st2.predictive["p"] == st.predictive["p"]


def test_quantile_matches_numpy() -> None:
    import numpy as np

    xs = (3.0, -1.0, 7.5, 2.0, 2.0, 10.0, 0.5)
    for q in (0.1, 0.5, 0.9, 0.99):
        assert quantile(xs, q) == pytest.approx(float(np.quantile(xs, q)))


@pytest.mark.parametrize(
    ("level", "trend", "expected"),
    [
        pytest.param(5.0, 0.0, 5.0, id="the level"),
        pytest.param(5.0, -1.0, 5.0, id="a trend in a state stored by an earlier version is not used"),
        pytest.param(-2.0, 0.0, 0.0, id="never negative"),
    ],
)
def test_forecast_without_a_cycle_is_the_level(level: float, trend: float, expected: float) -> None:
    spec = PredictiveSpec.of(parse_job(doc_with(pred(season="off"))).rules[0])  # type: ignore[arg-type]
    from policies.types import PredictiveState

    assert forecast(spec, PredictiveState(t=0.0, level=level, trend=trend), 0.0, 60.0) == expected


@pytest.mark.parametrize(
    ("season", "ring_after", "season_after"),
    [
        pytest.param("7d", 2, 604800.0, id="15-minute history, now hourly: starts again"),
        pytest.param("off", 0, 0.0, id="now off: no history, no cycle"),
        pytest.param("auto", 97, 86400.0, id="same slot size: kept"),
    ],
)
def test_changing_the_season_of_a_rule_with_history(
    season: str, ring_after: int, season_after: float
) -> None:
    """The state outlives a document change (same rule name): a history of another slot size is dropped."""
    daily = [300 + 200 * math.sin(2 * math.pi * k / 8640) for k in range(8640 * 2 + 360)]  # 2 days + 1 h
    _, st = feed(job([pred(season="1d")], max_instances=100), daily)
    assert len(st.predictive["p"].ring) == 192 and st.predictive["p"].season == 86400.0
    later = [300.0] * 720  # 2 more hours
    _, st2 = feed(job([pred(season=season)], max_instances=100), later, st, first=len(daily))
    ps = st2.predictive["p"]
    assert ps.season == season_after
    if ring_after == 97:
        assert len(ps.ring) == 192  # kept, still rolling
    else:
        assert len(ps.ring) <= ring_after  # the 2 hours since the change, at most


def test_packed_quantile_is_quantile() -> None:
    from policies.predictive import packed_quantile
    from policies.types import pack_floats

    xs = (3.0, -1.0, 7.5, 2.0, 2.0, 10.0, 0.5, -4.25)
    for q in (0.1, 0.5, 0.9, 0.95):
        assert packed_quantile(pack_floats(xs), q) == quantile(xs, q)


def test_one_forecast_per_lead_is_checked() -> None:
    """The margin's errors are of forecasts one lead apart: their horizons do not overlap."""
    doc = job([pred(startup="60s", season="off")], max_instances=100)
    _, st = feed(doc, [100.0] * 200)  # 10-s buckets: 0 … 1,990 s
    ps = st.predictive["p"]
    # forecasts made at 0, 60, …, 1,980 s; those due by 1,990 s (made by 1,930 s) have been checked
    assert ps.checked == 1930 // 60 + 1
    assert len(ps.pending) == 1


@pytest.mark.parametrize("cycle", ["1d", "1h"])
@pytest.mark.parametrize(
    ("rise", "margin", "expected"),
    [
        pytest.param(0.0, 5.0, 50.0, id="no rise a cycle ago: the level"),
        pytest.param(-30.0, 5.0, 50.0, id="a fall a cycle ago: the level"),
        pytest.param(4.0, 5.0, 50.0, id="a rise the margin covers: the level"),
        pytest.param(30.0, 5.0, 75.0, id="a bigger rise: the part beyond the margin"),
        pytest.param(30.0, 0.0, 80.0, id="no margin yet: the whole rise"),
    ],
)
def test_the_cycle_and_the_margin_are_not_stacked(
    cycle: str, rise: float, margin: float, expected: float
) -> None:
    """Forecast + margin covers level + max(margin, the rise one cycle ago), not level + rise + margin: the
    daily cycle from 15-minute slots, the hourly one (season auto) from 1-minute slots."""
    from policies.predictive import HOUR_SLOTS
    from policies.types import PredictiveState, pack_floats

    spec = PredictiveSpec.of(parse_job(doc_with(pred(season="1d" if cycle == "1d" else "auto"))).rules[0])  # type: ignore[arg-type]
    size, kept, per_cycle = (spec.slot, HISTORY_SLOTS, 96) if cycle == "1d" else (60.0, HOUR_SLOTS, 60)
    slot = 30_000_000  # the slot being filled; ring[-1] is slot - 1
    ring = [20.0] * kept
    ring[kept - per_cycle] = 100.0  # the slot of now, one cycle ago
    ring[kept - per_cycle + 1] = 100.0 + rise  # the slot of now + lead, one cycle ago
    now = slot * size + size - 30  # 30 s before the slot ends: now + 60 s is in the next one
    if cycle == "1d":
        st = PredictiveState(t=now, level=50.0, slot=slot, ring=tuple(ring), season=86400.0, margin=margin)
    else:
        packed = pack_floats(ring)
        st = PredictiveState(t=now, level=50.0, hslot=slot, hring_packed=packed, hourly=3600.0, margin=margin)
        assert forecast(spec, dataclasses.replace(st, hourly=0.0), now, 60.0) == 50.0  # no cycle: the level
    assert forecast(spec, st, now, 60.0) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("load", "expected_base", "expected"),
    [
        pytest.param(50.0, None, 2, id="the level: base is the forecast"),
        pytest.param(75.0, None, 2, id="within the margin: base is the forecast"),
        pytest.param(95.0, 95.0, 2, id="a jump beyond the margin: the load plus 3/4 of the margin at once"),
        pytest.param(100.0, 100.0, 3, id="a bigger jump: 100 + 22.5 needs 3"),
    ],
)
def test_a_jump_beyond_the_margin_is_provisioned_from_the_load(
    load: float, expected_base: float | None, expected: int
) -> None:
    """base = load when load > forecast + margin: a jump is covered with its margin at the bucket it comes
    in, not by the level that lags it (issue 17). Target 60, margin 30: at load 100 the level moves
    50 → ≈ 55, so level + margin would ask ceil(85 / 60) = 2 and the target rule ceil(100 / 60) = 2;
    load + ¾ margin asks ceil(122.5 / 60) = 3. At load 95, load + ¾ margin = 117.5 asks 2: the whole
    margin (125, 3 instances) would be held by the 5-minute scale-in window after a spike that reverts."""
    from policies.predictive import ERROR_BATCH, propose_predictive
    from policies.types import PredictiveState

    spec = PredictiveSpec.of(parse_job(doc_with(pred(season="off", startup="60s"))).rules[0])  # type: ignore[arg-type]
    errors = b"".join(struct.pack("d", 30.0) for _ in range(4 * ERROR_BATCH))  # a steady margin of 30
    now = 1_000_000.0
    st = PredictiveState(t=now - 10, level=50.0, errors_packed=errors, margin=30.0, last_pending=now - 10)
    p, _ = propose_predictive(spec, load, 1, 1, now, None, st)
    assert p.inputs["mode"] == "forecast" and p.inputs["margin"] == 30.0
    assert p.inputs["forecast"] < 60.0  # the level lags the jump
    assert p.inputs["base"] == (expected_base if expected_base is not None else p.inputs["forecast"])
    assert p.desired == expected


@pytest.mark.parametrize(
    ("shape", "cycle"),
    [
        pytest.param(lambda i: 50 + 30 * math.sin(2 * math.pi * i / 96), True, id="a daily sine: a cycle"),
        pytest.param(
            lambda i: 50 + (40 if i % 4 == 0 else 0) + (i % 7), False, id="an hourly spike: no daily cycle"
        ),
        pytest.param(lambda i: 20 + 0.3 * i + 3 * math.sin(i), False, id="a ramp over two days: no cycle"),
    ],
)
def test_a_daily_cycle_is_told_from_a_trend_and_a_shorter_cycle(shape: Any, cycle: bool) -> None:
    """`season: "auto"` follows a daily cycle only when the history correlates better with itself one day
    earlier than half a day earlier: a ramp, or an hourly pattern (the CPU trace of ../shared/traces: a
    saturation at :09 of every hour), correlates as well at every lag, and a 15-minute slot's daily
    forecast cannot follow it (issue 17)."""
    from policies.predictive import DETECT_MIN_CORRELATION, daily_correlation

    ring = tuple(float(shape(i)) for i in range(HISTORY_SLOTS))
    assert (daily_correlation(ring, 900.0) >= DETECT_MIN_CORRELATION) is cycle


def _minutes(shape: Any, n: int = 240) -> tuple[float, ...]:
    return tuple(float(shape(i)) for i in range(n))


_NOISE = [math.sin(i * 12.9898) * 43758.5453 % 1.0 for i in range(240)]  # deterministic noise in [0, 1)


@pytest.mark.parametrize(
    ("ring", "cycle"),
    [
        pytest.param(
            _minutes(lambda i: 200 + (700 if 9 <= i % 60 < 14 else 0)),
            True,
            id="a spike at :09 of every hour",
        ),
        pytest.param(
            _minutes(lambda i: 45 + 40 * (i % 60 == 9) + 5 * _NOISE[i]),
            True,
            id="a noisy 1-minute spike every hour",
        ),
        pytest.param(
            _minutes(lambda i: 200 + (700 if 9 <= i % 60 < 14 else 0), 119),
            False,
            id="under two hours: not yet",
        ),
        pytest.param(
            _minutes(lambda i: 500 + 400 * math.sin(2 * math.pi * i / 1440)),
            False,
            id="a daily sine: no hourly cycle",
        ),
        pytest.param(
            _minutes(
                lambda i: 300 + 200 * math.sin(2 * math.pi * i / 1440) + 200 * (i % 60 == 9) + 10 * _NOISE[i]
            ),
            True,
            id="a spike every hour on a daily cycle's slope",
        ),
        pytest.param(
            _minutes(lambda i: math.nan if i % 37 == 5 else 200 + (700 if 9 <= i % 60 < 14 else 0)),
            True,
            id="minutes without data: the pairs with data in both",
        ),
        pytest.param(_minutes(lambda i: 20 + 0.3 * i + 3 * math.sin(i)), False, id="a ramp: no cycle"),
        pytest.param(_minutes(lambda i: 100 * _NOISE[i]), False, id="noise: no cycle"),
        pytest.param(_minutes(lambda i: 100 + 50 * (i % 30 < 5)), False, id="every half hour: not followed"),
    ],
)
def test_an_hourly_cycle_is_told_from_a_trend_noise_and_a_daily_cycle(ring: tuple[float, ...], cycle: bool) -> None:  # fmt: skip
    """`season: "auto"` also follows an hourly cycle (a cron job's load at the same minute of every hour:
    the CPU trace of ../shared/traces saturates at :09), with the daily cycle's test on the changes of the
    1-minute history: their correlation one hour earlier ≥ HOURLY_MIN_CORRELATION above their correlation
    half an hour earlier (issue 17; on the means themselves the daily cycle's slope hides the spike:
    0.24 < 0.5)."""
    from policies.predictive import HOURLY_MIN_CORRELATION, hourly_correlation

    assert (hourly_correlation(ring) >= HOURLY_MIN_CORRELATION) is cycle


def test_the_hourly_history_is_bounded_and_a_restart_changes_nothing() -> None:
    """Five hours of a spike at :09 of every hour: the rule follows the hourly cycle, its 1-minute history
    stays at HOUR_SLOTS, and the state round-trips through JSON."""
    from policies.predictive import HOUR_SLOTS

    doc = job([pred(startup="60s")], max_instances=100)
    t0 = 1_700_000_000
    loads = [400.0 if 9 <= (t0 + 10 * k) % 3600 // 60 < 14 else 100.0 for k in range(6 * 360)]
    _, st = feed(doc, loads[: 5 * 360])
    ps = st.predictive["p"]
    assert ps.hourly == 3600.0 and len(ps.hring) == HOUR_SLOTS and ps.season == 0.0
    text = json.dumps(st.to_json())
    assert len(text) < 24_000
    restored = JobState.from_json(json.loads(text))
    assert restored == st
    a, _ = feed(doc, loads[5 * 360 :], st, first=5 * 360)
    b, _ = feed(doc, loads[5 * 360 :], restored, first=5 * 360)
    assert [d.to_json() for d in a] == [d.to_json() for d in b]
    # the minute before the spike forecasts it (the load is still 100), the minute before that does not
    by_minute = {m: [d.proposals[0].inputs["forecast"] for d in a if d.at % 3600 // 60 == m] for m in (7, 8)}
    assert by_minute[7] and max(by_minute[7]) < 200
    assert by_minute[8] and min(by_minute[8]) > 300
    assert status(doc, st, t0 + 18_000.0)["rules"]["p"]["hourly"] == 3600.0


@pytest.mark.parametrize(
    "ids",
    [
        pytest.param([f"web-{i}" for i in range(10_000)], id="web-0 .. web-9999"),
        pytest.param([f"svc{i}.prod" for i in range(10_000)], id="svc0.prod .. svc9999.prod"),
        pytest.param([f"job_{i}" for i in range(10_000)], id="job_0 .. job_9999"),
        pytest.param([str(i) for i in range(10_000)], id="0 .. 9999"),
        pytest.param([f"team{i % 37}-app{i // 37}" for i in range(10_000)], id="team-app pairs"),
    ],
)
@pytest.mark.parametrize("width", [60, 10], ids=["per minute", "per 10-s round"])
def test_the_phases_of_many_jobs_spread_over_the_quarter_hour(ids: list[str], width: int) -> None:
    """10,000 jobs' cycle tests are spread over the 15 minutes (every job's buckets end at the same wall
    times, so one phase for all ran 10,000 tests in one evaluation round): no minute, and no round of a
    10-s period, holds more than twice its share of the phases, and none is empty."""
    from collections import Counter

    from policies.predictive import CHECK_EVERY, job_phase

    phases = [job_phase(j) for j in ids]
    assert all(0.0 <= p < CHECK_EVERY and p == int(p) for p in phases)
    per = Counter(int(p) // width for p in phases)
    share = len(ids) / (CHECK_EVERY / width)
    assert len(per) == CHECK_EVERY / width
    assert max(per.values()) <= 2 * share


@pytest.mark.parametrize(
    ("job_id", "phase"),
    [
        pytest.param("web", 689.0, id="web"),
        pytest.param("quality", 224.0, id="quality"),
        pytest.param("a", 207.0, id="a"),
        pytest.param("ocean.web-2", 602.0, id="ocean.web-2"),
    ],
)
def test_a_jobs_phase_is_stable(job_id: str, phase: float) -> None:
    """The phase is a CRC-32 of the id (not Python's per-process salted hash): the same in every process,
    so live, a restart and replay test at the same times; compile_job and warm start give the rule the
    phase of the document's job."""
    from policies.engine import compile_job
    from policies.predictive import job_phase

    assert job_phase(job_id) == phase == job_phase(job_id)
    d = parse_job({**doc_with(pred()), "job": job_id})
    spec = compile_job(d).metric[0]
    assert isinstance(spec, PredictiveSpec) and spec.phase == phase and spec.detect
    assert PredictiveSpec.of(d.rules[0]).phase == 0.0  # type: ignore[arg-type]


def _cycles(t: float) -> float:
    """A load with a daily sine and a 5-minute rise at :09 of every hour (what both tests find)."""
    return 300 + 200 * math.sin(2 * math.pi * t / 86400) + (500 if 9 <= t % 3600 // 60 < 14 else 0)


def _mean(start: float, size: float) -> float:
    return sum(_cycles(start + k) for k in range(0, int(size), 10)) / (size // 10)


@pytest.mark.parametrize(
    ("phase", "daily_at", "hourly_at"),
    [
        pytest.param(
            0.0, 0, 420, id="phase 0: the daily test at the quarter hour, the hourly one 7 min later"
        ),
        pytest.param(5.0, 10, 430, id="phase 5 s: the first bucket at or after it"),
        pytest.param(123.0, 130, 550, id="phase 123 s"),
        pytest.param(480.0, 480, 0, id="phase 8 min: the hourly test at the next quarter hour"),
        pytest.param(689.0, 690, 210, id="phase 689 s (job web)"),
        pytest.param(899.0, 0, 420, id="phase 899 s: 1 s before the quarter hour, so in its bucket"),
    ],
)
def test_the_cycle_tests_run_at_the_jobs_phase(phase: float, daily_at: int, hourly_at: int) -> None:
    """A state whose histories show a daily and an hourly cycle neither of which it follows yet: fed a
    10-s bucket at a time over a quarter hour Q, it finds the daily cycle at the first bucket at or after
    Q + phase and the hourly one at the first at or after Q + phase + 7 min (mod 15 min), and not before;
    the history slots close at wall times (every 15 minutes and every minute) whatever the phase."""
    from policies.predictive import DAY, HOUR, HOUR_SLOTS, propose_predictive
    from policies.types import PredictiveState, pack_floats

    spec = dataclasses.replace(
        PredictiveSpec.of(parse_job(doc_with(pred(startup="60s"))).rules[0]), phase=phase
    )  # type: ignore[arg-type]
    assert spec.detect and spec.hourly
    q = 1_700_000_100.0  # a quarter hour
    s, m = int(q // 900), int(q // 60)
    st = PredictiveState(
        t=q - 10,
        level=_cycles(q - 10),
        slot=s - 1,
        acc=_mean(q - 900, 900) * 90,
        n=90,
        ring=tuple(_mean(j * 900.0, 900) for j in range(s - 1 - HISTORY_SLOTS, s - 1)),
        hslot=m - 1,
        hacc=_mean(q - 60, 60) * 6,
        hn=6,
        hring_packed=pack_floats([_mean(j * 60.0, 60) for j in range(m - 1 - HOUR_SLOTS, m - 1)]),
    )
    for k in range(91):
        now = q + 10 * k
        _, st = propose_predictive(spec, _cycles(now), 1, 1, now, None, st)
        assert st.slot == now // 900 and st.hslot == now // 60, now - q
        assert st.season == (DAY if 10 * k >= daily_at else 0.0), now - q
        assert st.hourly == (HOUR if 10 * k >= hourly_at else 0.0), now - q
