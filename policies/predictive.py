"""Predictive rules (PRODUCT §14): forecast the load one start-up time ahead and size the job for it.

Every closed bucket, with load = per-instance value × ready instances (the value itself for `sum`):

    forecast = level                                          no cycle in the history
             = level + max(0, s[slot(now + lead − P)] − s[slot(now − P)] − margin)
                                                      with a cycle of period P (1 d or 7 d)
             = level + max(0, h[min(now + lead − 1 h)] − h[min(now − 1 h)] − margin)
                                                      with an hourly cycle (the larger of the two
                                                      when both are followed)
    margin   = the `quantile` of the rule's own recent errors at that lead (actual − forecast), ≥ 0:
               one forecast per lead is checked (their horizons do not overlap), the last MAX_ERRORS
    proposal = ceil((forecast + margin) / target)
             = ceil((load + ¾ margin) / target)   when load > forecast + margin (a jump beyond the margin)
               and never below what a target rule with the same target and tolerance proposes

- `lead` is the rule's `startup`, else the start-up time the daemon knows for the app
  (`Observation.startup`: live, the p90 of launch → healthy of the app's recent tasks learned from
  Marathon by actuators.marathon.startup.py; replay passes its `--startup`), else `DEFAULT_LEAD` (60 s).
- `level` follows the load with an exponential average of time constant 1.5 leads (`LEVEL_TIME`; 0.5
  before issue 17's jump rule). The errors at the lead are measured against it, so the margin covers
  both the next jump and how far the load strays from its recent average; a jump beyond the margin is
  provisioned at once from the load itself (`base`), so the slower level does not delay a scale-out.
  On ../shared/traces (unserved at HPA default's cost, geometric mean, fine sweep; days 1–7 / held-out
  8–14): before 0.560x / 0.545x; the jump rule alone (base = max(forecast, load)) 0.548x / 0.543x;
  with the 1.5-lead level 0.532x / 0.492x; the base only beyond the margin (kept) 0.523x / 0.492x.
  After such a jump the proposal adds ¾ of the margin to the load, not all of it (`JUMP_MARGIN`): the
  job's 5-minute scale-in window holds a jump's count for 5 minutes, also after a spike that reverts
  within the lead (with the cycle test below: 0.523x / 0.491x → 0.519x / 0.490x).
  The slower level alone with its margin but a fast base for the proposal: 0.549x / 0.531x (a slower
  level also holds capacity for a while after a fall, through a volatile period). No trend term: a
  persistent rise (a ramp) makes the errors at the lead persistently positive, so the margin grows to
  cover it (slope × (lead + lag)); a trend estimate over the last lead mostly follows noise, and on
  ../shared/traces every weight of it lost load at the same cost (issue 17: ½ of a one-lead trend
  0.588× HPA default's unserved, none 0.566×, days 1–7; days 8–14: 0.586× → 0.556×; a five-lead
  trend, ½: 0.569×, all of it: 0.592×). `PredictiveState.trend` stays 0 (read from stored states,
  unused). `s` is
  the rule's history of slot means (15 minutes; 1 hour for `season: "7d"`). The seasonal term adds the
  rise the load made one cycle ago between the slot of now and the slot of now + lead, so a load that
  rises at the same time every day is served one lead before it arrives (exactly for a rise at a slot
  boundary, up to one slot early within a slot). The margin and that rise are not stacked: the proposal
  covers level + max(margin, rise) — the margin already covers a rise of its size, and most rises
  between 15-minute means of real loads are that size (stacked, on ../shared/traces, 14 days: 0.490×
  HPA default's unserved at its cost over the four traces with a cycle; not stacked 0.484×;
  `season: "off"` 0.481×; issue 17).
- `season` "auto" follows a daily cycle when the correlation of the history with itself one day earlier
  is ≥ 0.3 above its correlation with itself half a day earlier (when that is positive; checked every
  15 minutes, see below; two days of history needed): a ramp, a level shift or a cycle shorter than a day
  (the CPU trace of ../shared/traces saturates at :09 of every hour) correlates as well at both lags,
  and its rise between 15-minute means one day ago was noise added on top of the margin (issue 17: the
  CPU trace 0.969x → 0.964x HPA default's unserved on days 1–7, 1.005x → 0.999x on days 8–14, the
  others unchanged); a daily cycle with one peak a day correlates less half a day apart (a sine: −1).
  A daily cycle of two alike peaks 12 hours apart is not followed either: set `"1d"`. "1d" / "7d"
  follow that cycle as soon as the history reaches back one cycle; "off" keeps no history. A weekly cycle is not detected
  from the rule's own window (8 days of 15-minute slots would be too big a state): set `"7d"`.
- `season` "auto" also keeps a 1-minute history `h` of the last 4 hours (`HOUR_SLOTS`) and follows an
  hourly cycle — a load that recurs at the same minute of every hour, as cron jobs make it — with the
  daily test on the history's minute-to-minute changes (on the means, a daily cycle's slope within the
  4 hours correlates at every lag and hides the hourly pattern): their correlation one hour earlier
  ≥ 0.5 (`HOURLY_MIN_CORRELATION`) above their correlation half an hour earlier (when that is
  positive), tested every 15 minutes (7 minutes after the daily test), two hours of history needed. The daily history's 15-minute slots are too coarse for it: a minute-long rise sits
  inside a slot, and a rise one lead ahead is seen only when now + lead crosses into the next slot. The
  CPU trace of ../shared/traces is such a load (it jumps at :04 and saturates at :09 of every hour from
  its 6th day): at HPA default's cost its unserved load falls from 0.964x HPA default's to 0.100x on
  days 1–7, 0.999x → 0.069x on the held-out days 8–14; the other four traces are unchanged (± 0.001x).
  On those four the test's statistic has a 99th percentile of 0.19–0.52 (5-minute rows: 48 rows in
  4 hours), so 0.5 keeps false detections at 0–1.3 % of the checks (0.3: up to 7 %); on the CPU trace
  its median is 0.99.
- Both tests run once every 15 minutes at the job's phase (`job_phase`: a CRC-32 of its id modulo
  900 s; `PredictiveSpec.phase`), not at the slot's close: every job's buckets end at the same wall
  times, so 10,000 rules all ran the hourly test in one evaluation round (206–248 ms every 15 minutes,
  `bench/predictive_ab.py`); the histories stay aligned to wall time, the state is the same.
- Until `MIN_ERRORS` forecasts have been checked against the load they forecast, the rule acts as a
  target rule (its proposal is the target proposal; inputs say `"mode": "target"`).
- Never below the target proposal, so the rule keeps what a target rule would keep: the forecast only
  adds instances ahead of the load, and a scale-in needs both the forecast and the load now to be below
  the current count (then steps 2–6 of §3.3, with the job's 5-minute scale-in window).

The rule's state is a `PredictiveState` value, bounded: at most `HISTORY_SLOTS` slot means and
`HOUR_SLOTS` minute means, at most
`MAX_PENDING` forecasts waiting for their time and `MAX_ERRORS` errors. Pure: time arrives as `now`,
nothing is mutated.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from policies.document import PredictiveRule, TargetRule
from policies.target import TargetSpec, propose_target
from policies.types import NO_DATA, SCALE_IN, SCALE_OUT, WITHIN_TOLERANCE, PredictiveState, Proposal

DAY, WEEK = 86400.0, 7 * 86400.0
SEASONS = {"1d": DAY, "7d": WEEK}
HISTORY_SLOTS = 192  # slots of history a rule keeps: 2 days of 15 minutes, or 8 days of 1 hour for "7d"
DETECT_MIN_CORRELATION = 0.3
HOUR = 3600.0
HOUR_SLOT = 60.0  # the hourly history's resolution: one minute, no coarser than a typical start-up time
HOUR_SLOTS = 240  # 4 hours of 1-minute means (season "auto" only); the test needs two hours of them
HOURLY = True  # season "auto" keeps the hourly history (False: the rule before the hourly term, for A/B)
HOURLY_MIN_CORRELATION = 0.5  # the noise traces' statistic: p99 0.19-0.52 (see the module notes)
# When the cycle tests run (season "auto"): every 15 minutes (CHECK_EVERY), at a per-job phase
# (`job_phase`: the job's id hashed to 0..899 s) past each quarter hour for the daily test, and
# HOURLY_CHECK_OFFSET later for the hourly one. Every job's buckets end at the same wall times, so
# without the phase all 10,000 rules ran a test (17 µs each) in one evaluation round every 15 minutes
# (206-248 ms, PRODUCT §8's budget 50 ms); with it a 10-second round holds about 1/90 of them.
CHECK_EVERY = 900.0
HOURLY_CHECK_OFFSET = 420.0  # 7 minutes: a job's hourly test does not run in the round of its daily one
MIN_ERRORS = 8  # checked forecasts before the rule trusts its margin (until then: a target rule)
MAX_ERRORS = 256  # recent errors kept for the margin: one per lead, about 4 hours at a 60-second lead
# One forecast per lead is kept for checking (FORECASTS_PER_LEAD): errors of forecasts whose horizons do
# not overlap. Tuned on ../shared/traces (first 7 days, unserved at HPA default's cost, geometric mean):
# 16 per lead 0.636x, 4: 0.616x, 2: 0.606x, 1: 0.588x, 1/2: 0.609x — the error window is longer at the
# same size and its errors less alike; and the bookkeeping runs once a lead, not once a bucket.
FORECASTS_PER_LEAD = 1
ERROR_BATCH = 16  # new errors are added (and the margin recomputed) this many at a time
MAX_PENDING = 64  # forecasts waiting for their time
# The level's time constant, in leads. Issue 17, ../shared/traces, unserved at HPA default's cost, geometric
# mean, days 1–7 / held-out days 8–14 (fine sweep; with the jump rule below): 1 lead 0.541x / 0.505x,
# 1.5: 0.523x / 0.492x, 2: 0.532x / 0.499x; 0.5 (before, without the jump rule) 0.560x / 0.545x.
LEVEL_TIME = 1.5
# After a jump beyond the margin the proposal covers the load plus this share of the margin (the next
# jump). The job's 5-minute scale-in window holds that count for 5 minutes, also after a spike that
# reverts within the lead. Issue 17, ../shared/traces, days 1–7 / held-out days 8–14 (geometric mean):
# the whole margin 0.523x / 0.491x, ¾: 0.519x / 0.490x, ½: 0.519x / 0.490x, ¼: 0.531x / 0.495x.
JUMP_MARGIN = 0.75
DEFAULT_LEAD = 60.0  # seconds, when neither the rule nor the daemon knows the start-up time
_EPS = 1e-9


def job_phase(job: str) -> float:
    """The job's phase in seconds within the quarter hour (0..899): when its cycle tests run. A hash of
    its id (CRC-32, not Python's salted `hash`), so the same job tests at the same times in every process
    and replay stays deterministic; the ids of many jobs spread evenly over the 900 seconds."""
    return float(zlib.crc32(job.encode("utf-8")) % int(CHECK_EVERY))


def lead_for(startup: float | None, known: float | None) -> tuple[float, str]:
    """The lead and where it comes from: the rule's `startup` ("document"), else the start-up time the
    daemon learned for the app ("marathon"; replay: its `--startup`), else `DEFAULT_LEAD` ("default")."""
    if startup is not None:
        return startup, "document"
    if known is not None:
        return known, "marathon"
    return DEFAULT_LEAD, "default"


def slot_seconds(season: str) -> float:
    """History resolution: 15 minutes (a day is 96 slots), 1 hour for a weekly cycle."""
    return 3600.0 if season == "7d" else 900.0


@dataclass(frozen=True, slots=True)
class PredictiveSpec:
    """A predictive rule as plain values (`PredictiveSpec.of(rule)`)."""

    name: str
    target: float
    startup: float | None
    season: str  # auto | 1d | 7d | off
    quantile: float
    is_sum: bool  # the aggregate is `sum`: the value is the load already
    fallback: TargetSpec  # the target rule it acts as without history, and never goes below
    slot: float  # seconds per history slot
    slots: int  # history slots kept (0: no history, season off)
    hourly: bool  # keep the hourly history (season auto)
    detect: bool = False  # season auto: test the history for a daily cycle
    phase: float = 0.0  # seconds past each quarter hour when the daily test runs (`job_phase`)

    @staticmethod
    def of(rule: PredictiveRule, job: str | None = None) -> PredictiveSpec:
        """The rule's spec; `job`: the id of the job it belongs to, which sets when its cycle tests run
        (`job_phase`; None: at each quarter hour, the daily test, and 7 minutes later the hourly one)."""
        as_target = TargetRule(
            name=rule.name, type="target", metric=rule.metric, target=rule.target, tolerance=rule.tolerance
        )
        return PredictiveSpec(
            rule.name,
            rule.target,
            rule.startup,
            rule.season,
            rule.quantile,
            rule.aggregate == "sum",
            TargetSpec.of(as_target),
            slot_seconds(rule.season),
            0 if rule.season == "off" else HISTORY_SLOTS,
            rule.season == "auto" and HOURLY,
            rule.season == "auto",
            0.0 if job is None else job_phase(job),
        )


EMPTY = PredictiveState()


def quantile(values: Iterable[float], q: float) -> float:
    """The q-quantile with linear interpolation (numpy's default), in pure Python for small inputs."""
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def packed_quantile(packed: bytes, q: float) -> float:
    """`quantile` of packed doubles, sorted by numpy (2 µs for 256 errors; sorted() on them: 10 µs)."""
    s = np.sort(np.frombuffer(packed, dtype=np.float64))
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return float(s[lo] + (s[hi] - s[lo]) * (pos - lo))


def daily_correlation(ring: tuple[float, ...], slot: float) -> float:
    """Correlation of the history with itself one day earlier, less its correlation with itself half a
    day earlier when that is positive (0 with less than two days of history). Computed at every slot's
    end (every 15 minutes) by every rule with `season: "auto"`: dot products on the one array instead of
    numpy's mean/std per half (a quarter of the time)."""
    lag = int(DAY / slot)
    if len(ring) < 2 * lag:
        return 0.0
    arr = np.array(ring, dtype=np.float64)
    return _lag_correlation(arr, lag) - max(0.0, _lag_correlation(arr, lag // 2))


def hourly_correlation(ring: tuple[float, ...] | bytes) -> float:
    """The same test for an hourly cycle on the 1-minute history, on its minute-to-minute changes: their
    correlation with themselves one hour earlier, less their correlation half an hour earlier when that
    is positive (0 with less than two hours of history). On the changes, not on the means: within 4
    hours a daily cycle's slope (or a ramp) makes the means correlate at every lag, and hid a spike at
    :09 of every hour from the test (a daily sine 100..500 with noise sd 5 and a 1-minute spike of 200
    every hour: found 25 % of the time on the means, 100 % on the changes)."""
    lag = int(HOUR / HOUR_SLOT)
    values = (
        np.frombuffer(ring, dtype=np.float64) if isinstance(ring, bytes) else np.array(ring, dtype=np.float64)
    )
    if len(values) <= 2 * lag:
        return 0.0
    arr = np.diff(values)
    clean = not math.isnan(float(arr.sum()))  # a slot without data makes the sum NaN
    return _lag_correlation(arr, lag, clean) - max(0.0, _lag_correlation(arr, lag // 2, clean))


def _lag_correlation(arr: Any, lag: int, clean: bool = False) -> float:
    """Correlation of arr with itself `lag` slots earlier, over the slots with data in both (`clean`:
    the caller knows arr has no NaN, so the mask is skipped: half the time of the hourly test)."""
    a, b = arr[lag:], arr[:-lag]
    kept = len(a)
    if not clean:
        ok = ~np.isnan(a + b)
        kept = int(np.count_nonzero(ok))
        if kept < lag // 2:
            return 0.0
        if kept < len(a):
            a, b = a[ok], b[ok]
    da = a - a.sum() / kept
    db = b - b.sum() / kept
    den = float(np.dot(da, da)) * float(np.dot(db, db))
    if den <= 0:
        return 0.0
    return float(np.dot(da, db)) / math.sqrt(den)


def _slot_value(ring: tuple[float, ...], slot: int, j: int) -> float:
    """The mean of absolute slot j (NaN when not in the history); ring[-1] is slot - 1."""
    i = len(ring) - (slot - j)
    return ring[i] if 0 <= i < len(ring) else math.nan


def _close_slots(spec: PredictiveSpec, st: PredictiveState, s: int) -> tuple[tuple[float, ...], float]:
    """The history once the slot being filled (and any empty ones before s) are complete; the season
    ("auto": the one found by the last daily test, which runs at the job's phase, not here)."""
    assert st.slot is not None
    missing = s - st.slot - 1
    if missing >= spec.slots:
        ring: tuple[float, ...] = ()
    else:
        ring = (*st.ring, st.acc / st.n if st.n else math.nan, *([math.nan] * missing))
        if len(ring) > spec.slots:
            ring = ring[len(ring) - spec.slots :]
    if spec.detect:
        return ring, st.season
    return ring, SEASONS.get(spec.season, 0.0)


def forecast(spec: PredictiveSpec, st: PredictiveState, now: float, lead: float) -> float:
    """The load forecast for now + lead from the state after this bucket (≥ 0): the recent level; with a
    cycle, the recent level plus the part beyond the margin of the rise the load made one cycle ago
    between the slot of now and the slot of now + lead (when the history reaches back that far); with
    both a daily and an hourly cycle, the larger of their rises."""
    f = _forecast(spec, st.level, st.season, st.ring, st.slot, now, lead, st.margin)
    if st.hourly > 0:
        f = max(f, _hourly_forecast(st.level, st.hring_packed, st.hslot, now, lead, st.margin))
    return f


def _hourly_forecast(
    level: float, ring: bytes, slot: int | None, now: float, lead: float, margin: float
) -> float:
    """The level plus the part beyond the margin of the rise the load made one hour ago between the
    minute of now and the minute of now + lead (`ring`: the minute means, packed doubles)."""
    if slot is not None:
        m = len(ring) >> 3
        i = m - slot + math.floor((now + lead - HOUR) / HOUR_SLOT)
        k = m - slot + math.floor((now - HOUR) / HOUR_SLOT)
        if 0 <= i < m and 0 <= k < m:
            rise: float = _ONE.unpack_from(ring, 8 * i)[0] - _ONE.unpack_from(ring, 8 * k)[0] - margin
            if rise > 0:  # False for NaN
                return level + rise
    return level if level > 0 else 0.0


def _close_hour_slots(st: PredictiveState, s: int) -> bytes:
    """The hourly history once the minute being filled (and any empty ones before s) are complete (the
    hourly test runs at the job's phase, not here). The minute means are packed doubles: a minute's close
    is a copy of 1,920 bytes, not of 240 references to floats."""
    assert st.hslot is not None
    missing = s - st.hslot - 1
    if missing >= HOUR_SLOTS:
        ring = b""
    else:
        closed = _ONE.pack(st.hacc / st.hn if st.hn else math.nan)
        ring = st.hring_packed + (closed if not missing else closed + _NANS * missing)
        if len(ring) > 8 * HOUR_SLOTS:
            ring = ring[len(ring) - 8 * HOUR_SLOTS :]
    return ring


def _forecast(
    spec: PredictiveSpec,
    level: float,
    season: float,
    ring: tuple[float, ...],
    slot: int | None,
    now: float,
    lead: float,
    margin: float,
) -> float:
    if season > 0 and slot is not None:
        # _slot_value of the slots of now + lead − season and now − season, inlined (every bucket)
        size, m = spec.slot, len(ring)
        i = m - slot + math.floor((now + lead - season) / size)
        k = m - slot + math.floor((now - season) / size)
        if 0 <= i < m and 0 <= k < m:
            ahead, back = ring[i], ring[k]
            if ahead == ahead and back == back:  # neither is NaN (a slot without data)
                rise = ahead - back - margin
                if rise > 0:
                    return level + rise
                return level if level > 0 else 0.0
    return level if level > 0 else 0.0


def _check_due(
    spec: PredictiveSpec, pending: bytes, errors: bytes, fresh: bytes, margin: float, load: float, now: float
) -> tuple[bytes, bytes, bytes, float]:
    """The forecasts that came due are checked against this load: their errors join `fresh`, and the fresh
    errors join the kept ones in batches of ERROR_BATCH (copying the kept ones and sorting them for the
    margin once a batch, not once a bucket); early on, every time, so that the margin learns fast.
    The sequences are packed doubles (PredictiveState)."""
    k = 0
    while k < len(pending) and _PAIR.unpack_from(pending, k)[0] <= now:
        fresh += _ONE.pack(load - _PAIR.unpack_from(pending, k)[1])
        k += 16
    pending = pending[k:]
    if len(fresh) >= 8 * ERROR_BATCH or len(errors) < 8 * 4 * ERROR_BATCH:
        errors += fresh
        if len(errors) > 8 * MAX_ERRORS:
            errors = errors[len(errors) - 8 * MAX_ERRORS :]
        fresh = b""
        margin = max(0.0, packed_quantile(errors, spec.quantile))
    return pending, errors, fresh, margin


_ONE, _PAIR = struct.Struct("d"), struct.Struct("dd")  # one packed double; a (due time, forecast) pair
_NANS = struct.pack("d", math.nan)  # a minute without data
_COEFFICIENTS: dict[tuple[float, float], float] = {}


def _coefficients(dt: float, lead: float) -> float:
    """The level's smoothing weight for a step of dt at this lead (memoized: a job's
    buckets are one period apart, so a handful of (dt, lead) pairs recur; bounded)."""
    hit = _COEFFICIENTS.get((dt, lead))
    if hit is None:
        hit = 1.0 - math.exp(-dt / (LEVEL_TIME * lead)) if lead > 0 else 1.0
        if len(_COEFFICIENTS) >= 4096:
            _COEFFICIENTS.clear()
        _COEFFICIENTS[(dt, lead)] = hit
    return hit


def propose_predictive(
    spec: PredictiveSpec,
    value: float | None,
    current: int,
    ready: int,
    now: float,
    lead: float | None,
    st: PredictiveState | None,
) -> tuple[Proposal, PredictiveState]:
    """The rule's proposal for a bucket value and its next state. `lead`: the start-up time the daemon
    knows for the app (None: unknown); the rule's own `startup` comes first, then `DEFAULT_LEAD`.

    The hot path of every bucket of every predictive rule (issue 17's cost: 10,000 jobs within PRODUCT
    §8's evaluation budget): one function on locals; the rare work — checking a batch of errors, closing
    a history slot, a cycle's forecast — in helpers."""
    if st is None:
        st = EMPTY
    if value is None:
        return Proposal(spec.name, "predictive", None, NO_DATA, {"value": None, "target": spec.target}), st
    if spec.startup is not None:
        lead = spec.startup
    elif lead is None:
        lead = DEFAULT_LEAD
    load = value if spec.is_sum else value * (ready if ready > 1 else 1)
    # 1. forecasts that came due are checked against this load
    pending, errors, fresh, margin = st.pending_packed, st.errors_packed, st.fresh_packed, st.margin
    if pending:
        due, due_forecast = _PAIR.unpack_from(pending)
        if due > now:
            pass
        elif (
            (len(pending) > 16 and _ONE.unpack_from(pending, 16)[0] <= now)
            or len(fresh) + 8 >= 8 * ERROR_BATCH
            or len(errors) < 8 * 4 * ERROR_BATCH
        ):
            pending, errors, fresh, margin = _check_due(spec, pending, errors, fresh, margin, load, now)
        else:  # one forecast came due, and its error waits for the batch (the common case)
            fresh += _ONE.pack(load - due_forecast)
            pending = pending[16:]
    # 2. the level
    t = st.t
    if t is None:
        level = load
    elif now <= t:
        level = st.level
    else:
        dt = now - t
        a = _COEFFICIENTS.get((dt, lead))
        if a is None:
            a = _coefficients(dt, lead)
        level = st.level + a * (load - st.level)
    # 3. the history of slot means
    slot, ring, season = st.slot, st.ring, st.season
    if spec.slots:
        size = spec.slot
        s = math.floor(now / size)
        if s == slot:  # the slot being filled (the common case)
            acc, n = st.acc + load, st.n + 1
        else:
            if slot is not None and t is not None and math.floor(t / size) != slot:
                slot, ring, season = None, (), 0.0  # kept at another slot size (the season changed)
            if slot is None:
                slot, acc, n = s, load, 1
            elif s > slot:
                ring, season = _close_slots(spec, st, s)
                slot, acc, n = s, load, 1
            else:
                acc, n = st.acc, st.n
    elif slot is not None:
        slot, acc, n, ring, season = None, 0.0, 0, (), 0.0  # season "off" now: no history
    else:
        acc, n = st.acc, st.n
    # 3b. the hourly history of 1-minute means ("auto")
    hslot, hring, hourly = st.hslot, st.hring_packed, st.hourly
    if spec.hourly:
        hs = math.floor(now / HOUR_SLOT)
        if hs == hslot:  # the minute being filled (the common case)
            hacc, hn = st.hacc + load, st.hn + 1
        elif hslot is None or hs > hslot:
            if hslot is not None:
                hring = _close_hour_slots(st, hs)
            hslot, hacc, hn = hs, load, 1
        else:
            hacc, hn = st.hacc, st.hn
    elif hslot is not None:
        hslot, hacc, hn, hring, hourly = None, 0.0, 0, b"", 0.0
    else:
        hacc, hn = st.hacc, st.hn
    # 3c. the cycle tests ("auto"), each once every 15 minutes: in the first bucket at or after the job's
    # phase past a quarter hour (the daily one) and HOURLY_CHECK_OFFSET later (the hourly one), i.e. when
    # such a time lies in (t, now]; the histories stay aligned to wall time, only the tests move, so
    # that 10,000 jobs do not all run them in the same evaluation round
    if spec.detect and t is not None and now > t:
        since = (now - spec.phase) % CHECK_EVERY  # seconds since the daily test's last time
        if now - t > since:
            season = DAY if daily_correlation(ring, spec.slot) >= DETECT_MIN_CORRELATION else 0.0
        if spec.hourly:
            since = (
                since - HOURLY_CHECK_OFFSET
                if since >= HOURLY_CHECK_OFFSET
                else since + (CHECK_EVERY - HOURLY_CHECK_OFFSET)
            )
            if now - t > since:
                hourly = HOUR if hourly_correlation(hring) >= HOURLY_MIN_CORRELATION else 0.0
    # 4. the forecast for now + lead, kept to be checked when its time comes (one per lead: see below)
    f = level if level > 0 else 0.0
    if season > 0:
        f = _forecast(spec, level, season, ring, slot, now, lead, margin)
    if hourly > 0:
        fh = _hourly_forecast(level, hring, hslot, now, lead, margin)
        if fh > f:
            f = fh
    last = st.last_pending
    if (last is None or now - last >= lead / FORECASTS_PER_LEAD) and len(pending) < 16 * MAX_PENDING:
        pending, last = pending + _PAIR.pack(now + lead, f), now
    nxt = PredictiveState(
        now,
        level,
        0.0,
        slot,
        acc,
        n,
        ring,
        season,
        pending,
        last,
        errors,
        margin,
        fresh,
        hslot,
        hacc,
        hn,
        hring,
        hourly,
    )
    checked = (len(errors) + len(fresh)) >> 3
    if checked < MIN_ERRORS:
        floor = propose_target(spec.fallback, value, current, ready)
        floor = floor._replace(kind="predictive")
        floor.inputs["mode"] = "target"
        floor.inputs["checked"] = checked
        floor.inputs["lead"] = lead
        return floor, nxt
    # 5. the proposal: the forecast's count, never below the target rule's (propose_target, inlined:
    # only its count is needed)
    fb = spec.fallback
    ratio = value / fb.target
    if fb.low <= ratio <= fb.high:
        floor_count = current
    else:
        floor_count = math.ceil((ready if ready > 0 else current) * ratio - _EPS)
        if floor_count < 0:
            floor_count = 0
    # a jump beyond the margin: the load now is above what the forecast covers, so the proposal covers it
    # plus the margin (the next jump) at once, instead of the lagging forecast plus the margin
    if load > f + margin:
        base = load
        predicted = math.ceil((load + JUMP_MARGIN * margin) / spec.target - _EPS)
    else:
        base = f
        predicted = math.ceil((f + margin) / spec.target - _EPS)
    if predicted < 0:
        predicted = 0
    desired = predicted if predicted > floor_count else floor_count
    if desired > current:
        reason = SCALE_OUT
    elif desired < current:
        reason = SCALE_IN
    else:
        reason = WITHIN_TOLERANCE
    inputs: dict[str, Any] = {
        "value": value,
        "target": spec.target,
        "load": load,
        "lead": lead,
        "forecast": f,
        "base": base,
        "margin": margin,
        "season": season,
        "hourly": hourly,
        "predicted": predicted,
        "target_proposal": floor_count,
        "mode": "forecast",
    }
    return Proposal(spec.name, "predictive", desired, reason, inputs), nxt
