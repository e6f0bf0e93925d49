"""Open-Falcon inputs, parsed purely: agent push items (PROTOCOLS.md B.1/B.2) and alarm callbacks (B.3).

`check_item` applies the transfer's item rules (`RecvMetricValues`): an invalid item is dropped and
counted, the rest of the body is kept. `parse_alarm` turns the alarm module's callback query into an
`AlarmEvent`. Nothing here does I/O or reads a clock: `now` is an argument.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from policies.types import AlarmEvent

COUNTER_TYPES: Final = frozenset({"GAUGE", "COUNTER", "DERIVE"})
MAX_METRIC_TAGS_LEN: Final = 510  # len(metric) + len(tags), transfer's limit


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """The validated, routing-relevant part of a push item (everything except timestamp and value)."""

    endpoint: str
    metric: str
    tags: str  # as pushed, "k=v,k2=v2"
    counter_type: str
    step: int


def parse_tags(tags: str) -> dict[str, str]:
    """Falcon's DictedTagstring: spaces removed, split on ',', each 'k=v' split at the first '='.

    Pieces without '=' are ignored, as in falcon-plus common/utils/tags.go.
    """
    out: dict[str, str] = {}
    if not tags:
        return out
    for piece in tags.replace(" ", "").split(","):
        k, sep, v = piece.partition("=")
        if sep and k:
            out[k] = v
    return out


def check_key(endpoint: Any, metric: Any, tags: Any, counter_type: Any, step: Any) -> str | None:
    """The reason an item's identity fields are invalid (transfer's rules), or None when they are fine."""
    if not isinstance(metric, str) or not metric:
        return "metric: empty or not a string"
    if metric == "kernel.hostname":
        return "metric: kernel.hostname is not accepted"
    if not isinstance(endpoint, str) or not endpoint:
        return "endpoint: empty or not a string"
    if not isinstance(tags, str):
        return "tags: not a string"
    if not isinstance(counter_type, str) or counter_type not in COUNTER_TYPES:
        return f"counterType: {str(counter_type)[:40]!r} is not GAUGE, COUNTER or DERIVE"
    if isinstance(step, bool) or not isinstance(step, int) or step <= 0:
        return "step: must be an integer > 0"
    if len(metric) + len(tags) > MAX_METRIC_TAGS_LEN:
        return f"metric+tags: longer than {MAX_METRIC_TAGS_LEN} characters"
    return None


def check_value(value: Any) -> float | None:
    """A finite float from a number or numeric string; None when the value is not acceptable."""
    t = type(value)
    if t is float:
        return float(value) if math.isfinite(value) else None
    if t is int:
        return float(value)
    if t is str:
        try:
            f = float(value)
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


def check_timestamp(ts: Any, now: float) -> int:
    """Transfer's rule: timestamp <= 0 or > 2*now is replaced by now. Non-numbers too."""
    if type(ts) is int:
        return ts if 0 < ts <= 2 * now else int(now)
    if type(ts) is float and math.isfinite(ts):
        return int(ts) if 0 < ts <= 2 * now else int(now)
    return int(now)


class AlarmError(ValueError):
    """A callback that cannot be used; the message names the parameter."""


def _int_param(params: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        if default is None:
            raise AlarmError(f"{name}: missing")
        return default
    try:
        return int(raw)
    except ValueError:
        raise AlarmError(f"{name}: {raw[:40]!r} is not an integer") from None


def parse_alarm_tags(tags: str) -> dict[str, str]:
    """The alarm callback's tags: 'k1:v1,k2:v2' (colon, comma-joined)."""
    out: dict[str, str] = {}
    for piece in tags.split(","):
        k, sep, v = piece.strip().partition(":")
        if sep and k:
            out[k] = v
    return out


def parse_alarm(params: Mapping[str, str], now: float) -> AlarmEvent:
    """A falcon-plus alarm callback's query parameters -> AlarmEvent (raises AlarmError)."""
    endpoint = params.get("endpoint", "")
    metric = params.get("metric", "")
    status = params.get("status", "")
    if not endpoint:
        raise AlarmError("endpoint: missing")
    if not metric:
        raise AlarmError("metric: missing")
    if status not in ("PROBLEM", "OK"):
        raise AlarmError(f"status: {status[:40]!r} is not PROBLEM or OK")
    stra_id = _int_param(params, "stra_id", 0)
    exp_id = _int_param(params, "exp_id", 0)
    if stra_id <= 0 and exp_id <= 0:
        raise AlarmError("stra_id / exp_id: one of them must be set")
    left_raw = params.get("left_value", "")
    left = check_value(left_raw) if left_raw else None
    return AlarmEvent(
        now=now,
        endpoint=endpoint,
        metric=metric,
        status="PROBLEM" if status == "PROBLEM" else "OK",
        step=_int_param(params, "step", 1),
        priority=_int_param(params, "priority", 0),
        time=params.get("time", ""),
        tpl_id=_int_param(params, "tpl_id", 0),
        exp_id=exp_id,
        stra_id=stra_id,
        left_value=left,
        tags=parse_alarm_tags(params.get("tags", "")),
    )
