"""Schedule rules (PRODUCT §3.2): fire times and windows, as pure functions of time given as data.

The syntax of a rule's fire times (cron fields, `start`) is read and checked in policies.crontab.

Fire times come from APScheduler 3.x trigger classes (CronTrigger, IntervalTrigger), whose
`get_next_fire_time(previous, now)` is a pure computation; nothing here reads a clock. Times are Unix
seconds (float); `start` and cron fields are wall-clock times in the rule's `timezone` (else the
daemon's, passed as `default_tz`).

Semantics, pinned down (and table-tested in tests/policies/test_schedule.py):
- cron is the 5-field crontab form `minute hour day month day_of_week`, with crontab's numbering
  (day of week 0 and 7 = Sunday; APScheduler 3.x would read 0 as Monday, so the field is rewritten with
  day names) and crontab's rule that when both day-of-month and day-of-week are restricted (neither
  starts with '*') a day matching *either* fires.
- start + every: when `every` is a whole number of days (1d, 24h, 7d...), the fires keep the start's
  wall-clock time in the time zone (a 07:00 schedule stays at 07:00 across DST); any other `every`
  (90m, 6h, 1.5d) is elapsed time from the start (IntervalTrigger), whatever the clock shows.
- DST, spring forward (the skipped hour, e.g. 02:00–03:00 America/New_York): a wall-clock fire time in
  the skipped hour runs once, shifted forward by the jump (02:00 → 03:00 EDT, 02:30 → 03:30 EDT), the
  same instant as PEP 495's fold=0 reading of that time; a fire that then coincides with another one
  (hourly cron at 02:00 and 03:00) runs once.
- DST, fall back (the repeated hour, 01:00–02:00 in New York): a wall-clock fire time in the repeated
  hour runs once, at its first occurrence (EDT), like Vixie cron's fixed-time jobs; a cron whose hour
  field is `*` runs by elapsed time and fires in both occurrences (hourly 01:00 EDT and 01:00 EST).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from policies.crontab import cron_triggers, parse_start
from policies.document import JobDocument, ScheduleRule
from policies.types import Fire, Window

DAY = 86400.0

# --- fire times ------------------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _zone(name: str) -> tzinfo:
    return ZoneInfo(name)


@lru_cache(maxsize=1024)
def _cron(expr: str, tz: str) -> tuple[tuple[CronTrigger, ...], bool]:
    """(triggers, hour field is '*'); memoised: building a CronTrigger costs ~40 µs."""
    return tuple(cron_triggers(expr, tz)), expr.split()[1] == "*"


@lru_cache(maxsize=1024)
def _interval(start: str, every: float, tz: str) -> IntervalTrigger:
    begin = parse_start(start).replace(tzinfo=_zone(tz))
    return IntervalTrigger(seconds=every, start_date=begin, timezone=_zone(tz))


def _second_occurrence(dt: datetime) -> bool:
    """True for the second reading of a repeated wall-clock time (DST fall back)."""
    return dt.fold == 1 and dt.replace(fold=0).utcoffset() != dt.utcoffset()


def _next_cron(rule_cron: str, tz: str, after: float) -> float | None:
    triggers, hour_star = _cron(rule_cron, tz)
    zone = _zone(tz)
    t = after
    for _ in range(3700):  # skips only second readings of one repeated hour: at most 3600 in a row
        best: datetime | None = None
        for trig in triggers:
            nx = trig.get_next_fire_time(None, datetime.fromtimestamp(t, zone))
            if nx is not None and nx.timestamp() <= t:
                nx = trig.get_next_fire_time(nx, nx)
            if nx is not None and (best is None or nx.timestamp() < best.timestamp()):
                best = nx
        if best is None:
            return None
        if not hour_star and _second_occurrence(best):
            t = best.timestamp()
            continue
        return best.timestamp()
    return None


def _next_calendar(start: str, days: int, tz: str, after: float) -> float:
    """Every `days` days at the start's wall-clock time (fold=0: see the module notes on DST)."""
    begin = parse_start(start)
    zone = _zone(tz)
    first = begin.replace(tzinfo=zone).timestamp()
    if after < first:
        return first
    after_day = datetime.fromtimestamp(after, zone).date()
    k = max(0, (after_day - begin.date()).days // days - 1)
    while True:
        ts = (begin + timedelta(days=k * days)).replace(tzinfo=zone).timestamp()
        if ts > after:
            return ts
        k += 1


def next_fire(rule: ScheduleRule, after: float, default_tz: str = "UTC") -> float | None:
    """The rule's first fire time strictly after `after`; None when it never fires again."""
    tz = rule.timezone or default_tz
    if rule.cron is not None:
        return _next_cron(rule.cron, tz, after)
    if rule.start is None or rule.every is None:  # unreachable for a validated document
        raise ValueError(f"schedule rule {rule.name!r} has neither cron nor start + every")
    every = rule.every
    if every % DAY == 0:
        return _next_calendar(rule.start, int(every // DAY), tz, after)
    trig = _interval(rule.start, every, tz)
    nx = trig.get_next_fire_time(None, datetime.fromtimestamp(after, _zone(tz)))
    if nx is None:
        return None
    ts = float(nx.timestamp())
    if ts <= after:
        ts += every
    return ts


def fires_between(
    rule: ScheduleRule, start: float, end: float, default_tz: str = "UTC", limit: int = 10000
) -> list[float]:
    """Fire times t with start < t <= end, in order (at most `limit` of them)."""
    out: list[float] = []
    t = start
    while len(out) < limit:
        nx = next_fire(rule, t, default_tz)
        if nx is None or nx > end:
            break
        out.append(nx)
        t = nx
    return out


def last_fire(rule: ScheduleRule, lo: float, hi: float, default_tz: str = "UTC") -> float | None:
    """The latest fire time t with lo < t <= hi, or None. Searches back from `hi` in growing windows, so
    a long gap (a daemon down for a week, a rule firing every minute) costs a few steps, not every fire."""
    first = next_fire(rule, lo, default_tz)
    if first is None or first > hi:
        return None
    width = max(rule.misfire_grace, 60.0)
    while True:
        a = max(lo, hi - width)
        nx = first if a == lo else next_fire(rule, a, default_tz)
        if nx is not None and nx <= hi:
            latest = nx
            while True:
                nx = next_fire(rule, latest, default_tz)
                if nx is None or nx > hi:
                    return latest
                latest = nx
        width *= 4


def due_fires(
    doc: JobDocument, last: Mapping[str, float], now: float, created_at: float, default_tz: str = "UTC"
) -> tuple[list[Fire], list[tuple[str, float]]]:
    """(fires to run now, fires missed beyond their misfire_grace as (rule, at)).

    For every schedule rule that sets `instances`: the latest fire time in (last[rule], now] — fire
    times before `created_at` never count — runs once if now − at <= misfire_grace, else it is reported
    missed. Earlier fire times in that span are superseded by the latest (run once, as APScheduler's
    coalescing). The caller records `at` as handled (JobState.fires) for both: `on_fire` does it for a
    run fire, `policies.engine.step` for a missed one (and for the fires it runs). Fires are sorted by time."""
    fires: list[Fire] = []
    missed: list[tuple[str, float]] = []
    floor = created_at - 1e-6  # a fire exactly at created_at counts
    for rule in _schedules(doc.rules):
        if rule.instances is None:
            continue
        prev = last.get(rule.name)
        lo = floor if prev is None else max(prev, floor)
        at = last_fire(rule, lo, now, default_tz)
        if at is None:
            continue
        if now - at <= rule.misfire_grace:
            fires.append(Fire(rule.name, at, now))
        else:
            missed.append((rule.name, at))
    fires.sort(key=lambda f: f.at)
    missed.sort(key=lambda m: m[1])
    return fires, missed


def active_windows(doc: JobDocument, now: float, default_tz: str = "UTC") -> list[Window]:
    """Windows [fire, fire + duration) of schedule rules with a duration that contain `now`; when one
    rule's windows overlap, the one that started last."""
    out: list[Window] = []
    for rule in _schedules(doc.rules):
        duration = rule.duration
        if duration is None:
            continue
        at = last_fire(rule, now - duration, now, default_tz)
        if at is not None:
            out.append(Window(rule.name, at, at + duration, rule.min_instances, rule.max_instances))
    return out


def _schedules(rules: Iterable[object]) -> list[ScheduleRule]:
    return [r for r in rules if isinstance(r, ScheduleRule)]
