"""The syntax of a schedule rule's fire times (PRODUCT §3.2): crontab fields and `start`, read into
APScheduler triggers and checked. The document model (policies.document) checks a rule with
`validate_schedule`; the fire-time functions (policies.schedule) build their triggers here. This module
imports neither, so the two do not import each other.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Protocol

from apscheduler.triggers.cron import CronTrigger


class FireFields(Protocol):
    """What `validate_schedule` reads of a rule (policies.document.ScheduleRule has these)."""

    @property
    def cron(self) -> str | None: ...
    @property
    def start(self) -> str | None: ...
    @property
    def timezone(self) -> str | None: ...


# crontab day-of-week numbering: 0 (and 7) = Sunday. APScheduler 3.x numbers 0 = Monday, so the field is
# rewritten with day names before it reaches CronTrigger.
_CRON_DOW = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DOW_ITEM = re.compile(r"^(\*|[a-z0-9]+)(?:-([a-z0-9]+))?(?:/(\d+))?$")


def _dow_value(token: str) -> int:
    if token.isdigit():
        n = int(token)
        if n > 7:
            raise ValueError(f"day of week {token!r} is out of range (0-7, 0 and 7 = Sunday)")
        return n % 7
    if token[:3] in _CRON_DOW and len(token) == 3:
        return _CRON_DOW.index(token)
    raise ValueError(f"day of week {token!r}: use 0-7 (0 and 7 = Sunday) or sun..sat")


def crontab_dow(field: str) -> str:
    """A crontab day-of-week field as an APScheduler one (day names, so numbering cannot be confused)."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for item in field.lower().split(","):
        m = _DOW_ITEM.match(item)
        if not m:
            raise ValueError(f"bad day-of-week item {item!r}")
        first, last, step_s = m.group(1), m.group(2), m.group(3)
        step = int(step_s) if step_s else 1
        if step < 1:
            raise ValueError(f"bad step in day-of-week item {item!r}")
        if first == "*":
            if last is not None:
                raise ValueError(f"bad day-of-week item {item!r}")
            lo, hi = 0, 6
        else:
            lo = _dow_value(first)
            if last is not None:
                hi = 7 if last in ("7", "sun") else _dow_value(last)
                if first == "7":
                    lo = 7
                if hi < lo:
                    raise ValueError(f"day-of-week range {item!r} runs backwards")
            else:
                hi = 6 if step_s else lo
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return ",".join(_CRON_DOW[d] for d in sorted(days))


def parse_start(value: str) -> datetime:
    """A rule's `start`: an ISO local date-time without offset ("2016-10-01T07:00"), naive."""
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        msg = f"bad start {value!r}: use an ISO local date-time such as '2016-10-01T07:00'"
        raise ValueError(msg) from None
    if dt.tzinfo is not None:
        raise ValueError(f"start {value!r} has a UTC offset: give local time and set 'timezone' instead")
    return dt


def cron_triggers(expr: str, tz: str) -> list[CronTrigger]:
    """Triggers for a 5-field crontab expression. When both day-of-month and day-of-week are restricted
    (neither starts with '*'), crontab fires when *either* matches: that is two triggers, fired at the
    earlier of the two. A trigger that can never fire (day 30 of February) is left out; if none is
    left, the expression is an error. (Five cron fields repeat within the 400-year Gregorian cycle, so
    "no fire from 2000 to 9999", APScheduler's horizon, means never.)"""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(
            f"bad cron {expr!r}: expected 5 fields (minute hour day month day_of_week), got {len(fields)}"
        )
    minute, hour, day, month, dow = fields
    try:
        apdow = crontab_dow(dow)
        if not day.startswith("*") and not dow.startswith("*"):
            triggers = [
                CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week="*", timezone=tz),
                CronTrigger(minute=minute, hour=hour, day="*", month=month, day_of_week=apdow, timezone=tz),
            ]
        else:
            triggers = [
                CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=apdow, timezone=tz)
            ]
    except ValueError as e:
        raise ValueError(f"bad cron {expr!r}: {e}") from None
    live = [t for t in triggers if t.get_next_fire_time(None, _REFERENCE) is not None]
    if not live:
        raise ValueError(f"bad cron {expr!r}: it never fires (no such date)")
    return live


_REFERENCE = datetime(2000, 1, 1, tzinfo=UTC)


def validate_schedule(rule: FireFields) -> list[tuple[str, str]]:
    """Syntax problems of a schedule rule's fire times, as [(field, message)]; [] when it is fine."""
    errors: list[tuple[str, str]] = []
    if rule.cron is not None:
        try:
            cron_triggers(rule.cron, rule.timezone or "UTC")
        except ValueError as e:
            errors.append(("cron", str(e)))
    if rule.start is not None:
        try:
            parse_start(rule.start)
        except ValueError as e:
            errors.append(("start", str(e)))
    return errors
