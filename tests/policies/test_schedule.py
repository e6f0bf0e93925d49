"""Schedule rules: validation, fire times (cron / start + every, DST-aware), misfires, windows."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from policies.crontab import crontab_dow, validate_schedule
from policies.document import DocumentError, ScheduleRule
from policies.schedule import active_windows, due_fires, fires_between, next_fire
from policies.types import Fire
from tests.policies.build import job

SH, NY = "Asia/Shanghai", "America/New_York"


def ts(local: str, tz: str) -> float:
    """A local wall-clock time as Unix seconds (fold=0: the first reading of a repeated time)."""
    return datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(tz)).timestamp()


def iso(t: float, tz: str) -> str:
    return datetime.fromtimestamp(t, ZoneInfo(tz)).isoformat(timespec="minutes")


def sched(**kw: Any) -> ScheduleRule:
    data: dict[str, Any] = {"name": "s", "type": "schedule", "instances": 3, **kw}
    return ScheduleRule.model_validate(data)


# --- validation (through parse_job: errors carry the rule's path) ------------------------------------------


@pytest.mark.parametrize(
    ("rule", "path", "message"),
    [
        pytest.param({"cron": "0 2 * *"}, "rules[0].cron", "expected 5 fields", id="4 cron fields"),
        pytest.param({"cron": "61 2 * * *"}, "rules[0].cron", "higher than the maximum", id="minute 61"),
        pytest.param({"cron": "0 2 * * 8"}, "rules[0].cron", "out of range (0-7", id="day of week 8"),
        pytest.param({"cron": "0 2 * * 5-1"}, "rules[0].cron", "runs backwards", id="backwards weekday range"),
        pytest.param({"cron": "0 2 * * funday"}, "rules[0].cron", "day of week 'funday'", id="bad weekday name"),
        pytest.param({"cron": "0 25 * * *"}, "rules[0].cron", "bad cron", id="hour 25"),
        pytest.param({"cron": "0 0 31 2 *"}, "rules[0].cron", "never fires", id="31 February"),
        pytest.param({"start": "2016-13-01T07:00", "every": "1d"}, "rules[0].start", "bad start", id="month 13"),
        pytest.param({"start": "tomorrow", "every": "1d"}, "rules[0].start", "ISO local date-time", id="not ISO"),
        pytest.param({"start": "2016-10-01T07:00+08:00", "every": "1d"}, "rules[0].start", "UTC offset",
                     id="offset instead of timezone"),
    ],
)  # fmt: skip
def test_bad_schedules_are_rejected_with_their_path(rule: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(DocumentError) as e:
        job([{"name": "s", "type": "schedule", "instances": 2, **rule}])
    assert [err["path"] for err in e.value.errors] == [path]
    assert message in e.value.errors[0]["message"]


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param({"cron": "0 2 * * *"}, id="daily cron"),
        pytest.param({"cron": "*/15 9-17 * * mon-fri"}, id="ranges, steps and names"),
        pytest.param({"cron": "0 0 1,15 jan,jul 0,7"}, id="lists, month names, both Sundays"),
        pytest.param({"start": "2016-10-01T07:00", "every": "1d"}, id="start + every"),
        pytest.param({"start": "2016-10-01", "every": "90m"}, id="date-only start"),
    ],
)
def test_good_schedules_pass(rule: dict[str, Any]) -> None:
    assert validate_schedule(sched(**rule)) == []


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        pytest.param("*", "*", id="star kept"),
        pytest.param("0", "sun", id="crontab 0 is Sunday (APScheduler 3 would say Monday)"),
        pytest.param("7", "sun", id="7 is Sunday too"),
        pytest.param("1-5", "mon,tue,wed,thu,fri", id="weekdays"),
        pytest.param("5-7", "sun,fri,sat", id="range up to 7"),
        pytest.param("*/2", "sun,tue,thu,sat", id="every other day from Sunday"),
        pytest.param("1-5/2", "mon,wed,fri", id="stepped range"),
        pytest.param("sat-sun", "sun,sat", id="name range ending on Sunday"),
        pytest.param("MON,wed", "mon,wed", id="names, any case"),
    ],
)
def test_crontab_day_of_week(field: str, expected: str) -> None:
    assert crontab_dow(field) == expected


# --- fire times ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "tz", "start", "end", "fires"),
    [
        pytest.param(
            {"start": "2016-10-01T07:00", "every": "1d", "timezone": SH}, SH, "2024-01-01T00:00", "2024-01-03T23:00",
            ["2024-01-01T07:00+08:00", "2024-01-02T07:00+08:00", "2024-01-03T07:00+08:00"],
            id="daily at 07:00 Shanghai from a 2016 start",
        ),
        pytest.param(
            {"cron": "0 2 * * *", "timezone": SH}, SH, "2024-01-01T00:00", "2024-01-03T12:00",
            ["2024-01-01T02:00+08:00", "2024-01-02T02:00+08:00", "2024-01-03T02:00+08:00"],
            id="cron 0 2 * * * in Shanghai",
        ),
        pytest.param(
            {"start": "2024-01-01T00:00", "every": "90m"}, "UTC", "2024-05-31T23:59", "2024-06-01T04:30",
            ["2024-06-01T00:00+00:00", "2024-06-01T01:30+00:00", "2024-06-01T03:00+00:00", "2024-06-01T04:30+00:00"],
            id="every 90 minutes from a start in the past",
        ),
        pytest.param(
            {"start": "2030-01-01T00:00", "every": "1h"}, "UTC", "2024-01-01T00:00", "2030-01-01T01:00",
            ["2030-01-01T00:00+00:00", "2030-01-01T01:00+00:00"], id="nothing before a start in the future",
        ),
        pytest.param(
            {"cron": "0 9 * * 1-5"}, "UTC", "2024-06-01T00:00", "2024-06-10T10:00",  # Sat 1 June
            ["2024-06-03T09:00+00:00", "2024-06-04T09:00+00:00", "2024-06-05T09:00+00:00",
             "2024-06-06T09:00+00:00", "2024-06-07T09:00+00:00", "2024-06-10T09:00+00:00"],
            id="cron on weekdays (1-5 = Mon-Fri)",
        ),
        pytest.param(
            {"cron": "0 9 * * 0"}, "UTC", "2024-06-01T00:00", "2024-06-09T09:00", ["2024-06-02T09:00+00:00", "2024-06-09T09:00+00:00"],
            id="cron day of week 0 is Sunday",
        ),
        pytest.param(
            {"cron": "0 0 13 * 5"}, "UTC", "2024-09-01T00:00", "2024-09-21T00:00",
            ["2024-09-06T00:00+00:00", "2024-09-13T00:00+00:00", "2024-09-20T00:00+00:00"],
            id="day of month and day of week both set: either fires (crontab)",
        ),
        pytest.param(
            {"cron": "0 0 14 * 5"}, "UTC", "2024-09-01T00:00", "2024-09-15T00:00",
            ["2024-09-06T00:00+00:00", "2024-09-13T00:00+00:00", "2024-09-14T00:00+00:00"],
            id="the 14th, a Saturday, fires too",
        ),
        pytest.param(
            {"cron": "0 0 30 2 1"}, "UTC", "2024-02-01T00:00", "2024-02-13T00:00",
            ["2024-02-05T00:00+00:00", "2024-02-12T00:00+00:00"],
            id="30 February or a Monday: the Mondays",
        ),
        pytest.param(
            {"cron": "30 2 * * *", "timezone": NY}, NY, "2024-03-09T00:00", "2024-03-11T12:00",
            ["2024-03-09T02:30-05:00", "2024-03-10T03:30-04:00", "2024-03-11T02:30-04:00"],
            id="DST spring forward: 02:30 does not exist, runs once at 03:30 EDT",
        ),
        pytest.param(
            {"cron": "0 * * * *", "timezone": NY}, NY, "2024-03-10T00:30", "2024-03-10T04:00",
            ["2024-03-10T01:00-05:00", "2024-03-10T03:00-04:00", "2024-03-10T04:00-04:00"],
            id="DST spring forward: hourly cron skips to 03:00 EDT, one hour later",
        ),
        pytest.param(
            {"cron": "30 1 * * *", "timezone": NY}, NY, "2024-11-02T12:00", "2024-11-04T12:00",
            ["2024-11-03T01:30-04:00", "2024-11-04T01:30-05:00"],
            id="DST fall back: 01:30 happens twice, runs once (first, EDT)",
        ),
        pytest.param(
            {"cron": "*/15 1 * * *", "timezone": NY}, NY, "2024-11-03T00:30", "2024-11-04T01:00",
            ["2024-11-03T01:00-04:00", "2024-11-03T01:15-04:00", "2024-11-03T01:30-04:00", "2024-11-03T01:45-04:00",
             "2024-11-04T01:00-05:00"],
            id="DST fall back: every 15 min in hour 1 runs in the first reading only",
        ),
        pytest.param(
            {"cron": "0 * * * *", "timezone": NY}, NY, "2024-11-03T00:30", "2024-11-03T02:00",
            ["2024-11-03T01:00-04:00", "2024-11-03T01:00-05:00", "2024-11-03T02:00-05:00"],
            id="DST fall back: hourly cron (hour *) runs in both 01:00s",
        ),
        pytest.param(
            {"start": "2024-03-08T02:30", "every": "1d", "timezone": NY}, NY, "2024-03-09T00:00", "2024-03-11T12:00",
            ["2024-03-09T02:30-05:00", "2024-03-10T03:30-04:00", "2024-03-11T02:30-04:00"],
            id="start + every 1d keeps the wall clock; skipped 02:30 → 03:30 EDT",
        ),
        pytest.param(
            {"start": "2024-11-01T01:30", "every": "1d", "timezone": NY}, NY, "2024-11-02T12:00", "2024-11-04T12:00",
            ["2024-11-03T01:30-04:00", "2024-11-04T01:30-05:00"],
            id="start + every 1d in the repeated hour: once, first reading",
        ),
        pytest.param(
            {"start": "2024-03-09T00:00", "every": "6h", "timezone": NY}, NY, "2024-03-09T12:00", "2024-03-10T08:00",
            ["2024-03-09T18:00-05:00", "2024-03-10T00:00-05:00", "2024-03-10T07:00-04:00"],
            id="every 6h is elapsed time: after spring forward it shows 07:00",
        ),
    ],
)  # fmt: skip
def test_fire_times(rule: dict[str, Any], tz: str, start: str, end: str, fires: list[str]) -> None:
    r = sched(**rule)
    got = fires_between(r, ts(start, tz), ts(end, tz))
    assert [iso(t, tz) for t in got] == fires


def test_default_timezone_is_the_daemons() -> None:
    r = sched(cron="0 7 * * *")
    after = ts("2023-12-31T12:00", "UTC")  # 20:00 in Shanghai
    assert iso(next_fire(r, after) or 0, "UTC") == "2024-01-01T07:00+00:00"
    assert iso(next_fire(r, after, SH) or 0, SH) == "2024-01-01T07:00+08:00"


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param({"cron": "0 7 * * *"}, id="cron"),
        pytest.param({"start": "2024-01-01T07:00", "every": "1d"}, id="calendar days"),
        pytest.param({"start": "2024-01-01T07:00", "every": "90m"}, id="elapsed interval"),
    ],
)
def test_next_fire_is_strictly_after(rule: dict[str, Any]) -> None:
    r = sched(**rule)
    fire = ts("2024-03-01T07:00", "UTC")
    assert next_fire(r, fire - 0.5) == fire
    nxt = next_fire(r, fire)
    assert nxt is not None and nxt > fire
    assert next_fire(r, fire + 0.25) == nxt


def test_fires_between_is_bounded() -> None:
    r = sched(start="2024-01-01T00:00", every="1s")
    assert len(fires_between(r, ts("2024-01-01T00:00", "UTC"), ts("2024-02-01T00:00", "UTC"), limit=50)) == 50


# --- due fires: misfires and rules created later ------------------------------------------------------------

DAILY_7 = {"name": "morning", "type": "schedule", "cron": "0 7 * * *", "instances": 4, "misfire_grace": "5m"}
FIRE = ts("2024-06-03T07:00", "UTC")


@pytest.mark.parametrize(
    ("now", "last", "created", "fires", "missed"),
    [
        pytest.param(FIRE + 10, {}, FIRE - 86400, [FIRE], [], id="due 10 s ago: run"),
        pytest.param(FIRE + 300, {}, FIRE - 86400, [FIRE], [], id="exactly at the 5 min grace: run"),
        pytest.param(FIRE + 301, {}, FIRE - 86400, [], [FIRE], id="beyond the grace: missed"),
        pytest.param(FIRE + 10, {"morning": FIRE}, FIRE - 86400, [], [], id="already handled"),
        pytest.param(FIRE + 10, {}, FIRE + 5, [], [], id="fire before the rule existed: never run"),
        pytest.param(FIRE + 10, {}, FIRE, [FIRE], [], id="fire exactly at creation: run"),
        pytest.param(FIRE + 10, {"morning": FIRE - 3 * 86400}, FIRE - 9 * 86400, [FIRE], [],
                     id="down three days: only the latest runs, once"),
        pytest.param(FIRE + 7200, {"morning": FIRE - 3 * 86400}, FIRE - 9 * 86400, [], [FIRE],
                     id="down three days, back 2 h after: the latest is missed"),
        pytest.param(FIRE - 10, {}, FIRE - 3600, [], [], id="not yet"),
        pytest.param(FIRE - 10, {}, FIRE - 86400, [], [FIRE - 86400], id="not yet, yesterday's missed"),
    ],
)  # fmt: skip
def test_due_fires(
    now: float, last: dict[str, float], created: float, fires: list[float], missed: list[float]
) -> None:
    doc = job([DAILY_7])
    got, lost = due_fires(doc, last, now, created)
    assert got == [Fire("morning", at, now) for at in fires]
    assert lost == [("morning", at) for at in missed]


def test_due_fires_sorted_and_window_rules_never_fire() -> None:
    rules = [
        {**DAILY_7, "name": "late", "cron": "5 7 * * *"},
        DAILY_7,
        {"name": "win", "type": "schedule", "cron": "0 7 * * *", "duration": "1h", "min_instances": 3},
    ]
    got, lost = due_fires(job(rules), {}, FIRE + 310, FIRE - 3600)
    assert [(f.rule, f.at) for f in got] == [("late", FIRE + 300)]
    assert lost == [("morning", FIRE)]  # 310 s late
    got, lost = due_fires(job(rules), {}, FIRE + 299, FIRE - 3600)
    assert [f.rule for f in got] == ["morning"] and lost == []


def test_due_fires_after_a_long_outage_of_a_frequent_rule_is_cheap() -> None:
    rule = {**DAILY_7, "cron": "* * * * *"}  # every minute, a month down
    got, _ = due_fires(job([rule]), {}, FIRE + 30, FIRE - 30 * 86400)
    assert got == [Fire("morning", FIRE, FIRE + 30)]


# --- windows (schedule rules with a duration) -------------------------------------------------------------

NIGHT = {"name": "night", "type": "schedule", "cron": "0 22 * * *", "timezone": SH, "duration": "8h",
         "min_instances": 2, "max_instances": 3}  # fmt: skip


@pytest.mark.parametrize(
    ("now", "start"),
    [
        pytest.param("2024-06-03T21:59", None, id="before: inactive"),
        pytest.param("2024-06-03T22:00", "2024-06-03T22:00", id="at the start: active"),
        pytest.param("2024-06-03T23:30", "2024-06-03T22:00", id="before midnight"),
        pytest.param("2024-06-04T02:00", "2024-06-03T22:00", id="after midnight: yesterday's window"),
        pytest.param("2024-06-04T05:59", "2024-06-03T22:00", id="just before the end"),
        pytest.param("2024-06-04T06:00", None, id="at the end: over"),
    ],
)
def test_window_crossing_midnight(now: str, start: str | None) -> None:
    doc = job([NIGHT, {**DAILY_7, "name": "x"}])
    got = active_windows(doc, ts(now, SH))
    if start is None:
        assert got == []
    else:
        (w,) = got
        assert (w.rule, w.start, w.end, w.min_instances, w.max_instances) == (
            "night", ts(start, SH), ts(start, SH) + 8 * 3600, 2, 3,
        )  # fmt: skip


def test_window_from_start_and_every() -> None:
    rule = {"name": "w", "type": "schedule", "start": "2024-01-01T09:00", "every": "7d", "duration": "2h",
            "min_instances": 4}  # fmt: skip
    doc = job([rule])
    assert [w.start for w in active_windows(doc, ts("2024-01-15T10:00", "UTC"))] == [
        ts("2024-01-15T09:00", "UTC")
    ]
    assert active_windows(doc, ts("2024-01-16T10:00", "UTC")) == []
