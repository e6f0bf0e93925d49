"""Schedule rules (PRODUCT §3.2): validation and fire times, as pure functions of time given as data.

Fire times come from APScheduler 3.x trigger classes (CronTrigger, IntervalTrigger), whose
`get_next_fire_time(previous, now)` is a pure computation; nothing here reads a clock.
"""

from __future__ import annotations

import re
from datetime import datetime

from apscheduler.triggers.cron import CronTrigger

from policies.document import ScheduleRule

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
    earlier of the two."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(
            f"bad cron {expr!r}: expected 5 fields (minute hour day month day_of_week), got {len(fields)}"
        )
    minute, hour, day, month, dow = fields
    try:
        apdow = crontab_dow(dow)
        if not day.startswith("*") and not dow.startswith("*"):
            return [
                CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week="*", timezone=tz),
                CronTrigger(minute=minute, hour=hour, day="*", month=month, day_of_week=apdow, timezone=tz),
            ]
        return [CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=apdow, timezone=tz)]
    except ValueError as e:
        raise ValueError(f"bad cron {expr!r}: {e}") from None


def validate_schedule(rule: ScheduleRule) -> list[tuple[str, str]]:
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
