"""Alarm rules (PRODUCT §3.2): Falcon judges, oceand acts on its PROBLEM / OK callbacks.

- A rule matches an event when every field its `match` sets agrees: stra_id, exp_id, metric, endpoint
  equal; `tags` a subset of the event's tags.
- PROBLEM proposes current + step. A repeated callback for the same alarm (AlarmEvent.key()) less than
  the scale-out cooldown after that alarm last changed the count proposes the current count (reason
  Cooldown, input `repeat_of`): Falcon re-sends a PROBLEM every few minutes while it lasts, and those
  repeats are not cumulative.
- OK proposes current − step_in when the rule sets `step_in` (a scale-in, through every scale-in limit);
  otherwise it has no opinion (desired None). OK forgets the alarm, so a later PROBLEM is a new alarm.
"""

from __future__ import annotations

from collections.abc import Mapping

from policies.document import AlarmRule, step_count
from policies.types import COOLDOWN, SCALE_IN, SCALE_OUT, WITHIN_TOLERANCE, AlarmEvent, Proposal


def alarm_matches(rule: AlarmRule, event: AlarmEvent) -> bool:
    m = rule.match
    if m.stra_id is not None and m.stra_id != event.stra_id:
        return False
    if m.exp_id is not None and m.exp_id != event.exp_id:
        return False
    if m.metric is not None and m.metric != event.metric:
        return False
    if m.endpoint is not None and m.endpoint != event.endpoint:
        return False
    tags = event.tags
    return all(tags.get(k) == v for k, v in m.tags.items())


def propose_alarm(
    rule: AlarmRule, event: AlarmEvent, current: int, last_acted: float | None, out_cooldown: float
) -> Proposal:
    """The rule's proposal for a matching event. `last_acted`: when this alarm key last changed the count."""
    inputs: dict[str, object] = {
        "status": event.status,
        "key": event.key(),
        "time": event.time,  # Falcon's event time: with the key, the callback's identity on every daemon
        "left_value": event.left_value,
        "endpoint": event.endpoint,
        "metric": event.metric,
    }
    if event.status == "PROBLEM":
        if last_acted is not None and event.now - last_acted < out_cooldown:
            inputs.update(repeat_of=last_acted, cooldown=out_cooldown)
            return Proposal(rule.name, "alarm", current, COOLDOWN, inputs)
        n = step_count(rule.step, current)
        inputs["step"] = rule.step
        return Proposal(rule.name, "alarm", current + n, SCALE_OUT, inputs)
    if rule.step_in is None:
        return Proposal(rule.name, "alarm", None, WITHIN_TOLERANCE, inputs)
    n = step_count(rule.step_in, current)
    inputs["step_in"] = rule.step_in
    return Proposal(rule.name, "alarm", max(0, current - n), SCALE_IN, inputs)


def alarm_times(rule: AlarmRule, alarms: Mapping[str, float]) -> dict[str, float]:
    """Alarm keys (AlarmEvent.key(): "s{stra}/e{exp}/{endpoint}/{metric}/{tags}") this rule could have
    matched, with the time each last changed the count. Best effort: the key does not hold every field."""
    m = rule.match
    out: dict[str, float] = {}
    for key, t in alarms.items():
        if m.stra_id is not None and not key.startswith(f"s{m.stra_id}/"):
            continue
        if m.exp_id is not None and f"/e{m.exp_id}/" not in key:
            continue
        if m.metric is not None and f"/{m.metric}/" not in key:
            continue
        out[key] = t
    return out
