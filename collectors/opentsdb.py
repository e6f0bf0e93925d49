"""OpenTSDB telnet `put` lines as falcon-plus transfer's `tsdb` backend writes them (PRODUCT §9).

transfer (modules/transfer/sender, common/model/tsdb.go `TsdbString`) writes, per item, one line
`put <metric> <timestamp> <value %.3f> k=v k=v ... \\n`: the item's tags plus `endpoint=<endpoint>`, tag keys
lower-cased, spaces in keys and values replaced by `_`, a trailing space before the newline; many lines per
write, many writes per connection, and it never reads what the server answers.

`parse_put` turns one line into the push item of §2.1 (a dict), so it meets the same item rules and
routing as `/v1/push`. The line has no counterType and no step: every item is a GAUGE with `step`
DEFAULT_STEP, unless its metric is in `counters` (then COUNTER: the daemon makes the per-second rate).
Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from typing import Any, Final

DEFAULT_STEP: Final = 60  # falcon-agent's default step; routing does not use it
MAX_TAGS: Final = 64  # tags on one line (OpenTSDB itself takes 8 by default)


class LineError(ValueError):
    """A line that is refused; `code` is the counter label, the message the reply line's text."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse_put(line: bytes, counters: frozenset[str] = frozenset()) -> dict[str, Any] | None:
    """One line (without its newline) -> a push item; None for a blank line. Raises LineError."""
    parts = line.split()
    if not parts:
        return None
    if parts[0] != b"put":
        cmd = parts[0][:40].decode("utf-8", "replace")
        raise LineError("unknown_command", f"unknown command: {cmd!r} (only 'put' is served)")
    if len(parts) - 4 > MAX_TAGS:
        raise LineError("too_many_tags", f"put: {len(parts) - 4} tags, at most {MAX_TAGS}")
    if len(parts) < 5:
        raise LineError(
            "bad_line", "put: expected 'put <metric> <timestamp> <value> endpoint=<host> [k=v ...]'"
        )
    try:
        words = [p.decode("utf-8") for p in parts[1:]]
    except UnicodeDecodeError as e:
        raise LineError("not_utf8", f"put: not UTF-8 (byte {e.start} of a field)") from None
    metric, ts_text, value_text = words[0], words[1], words[2]
    if not ts_text.isascii() or not ts_text.isdigit():
        raise LineError("bad_timestamp", f"put: timestamp {ts_text[:40]!r} is not a whole number of seconds")
    ts = int(ts_text)
    if len(ts_text) >= 13:  # OpenTSDB's millisecond form
        ts //= 1000
    try:
        value = float(value_text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise LineError("bad_value", f"put: value {value_text[:40]!r} is not a finite number")
    tags: dict[str, str] = {}
    for word in words[3:]:
        k, sep, v = word.partition("=")
        if not sep or not k or not v:
            raise LineError("bad_tag", f"put: tag {word[:60]!r} is not k=v")
        tags[k] = v
    endpoint = tags.pop("endpoint", "")
    if not endpoint:
        raise LineError("no_endpoint", "put: no endpoint=<host> tag (transfer adds one to every line)")
    return {
        "endpoint": endpoint,
        "metric": metric,
        "timestamp": ts,
        "step": DEFAULT_STEP,
        "value": value,
        "counterType": "COUNTER" if metric in counters else "GAUGE",
        "tags": ",".join(f"{k}={tags[k]}" for k in sorted(tags)),
    }


def put_line(endpoint: str, metric: str, ts: int, value: float, tags: dict[str, str] | None = None) -> bytes:
    """The line transfer's `TsdbItem.TsdbString` writes for an item (tests, bench)."""
    all_tags = {**(tags or {}), "endpoint": endpoint}
    s = f"put {metric} {ts} {value:.3f} "
    for k, v in all_tags.items():
        s += k.replace(" ", "_").lower() + "=" + v.replace(" ", "_") + " "
    return (s + "\n").encode()
