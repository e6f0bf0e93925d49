"""Structured logs (PRODUCT §7): one JSON object per line on stderr (journald keeps it), or text.

A JSON line holds `ts` (UTC, ISO 8601 with milliseconds), `level`, `logger`, `msg`, every field
passed as `extra={"event": "...", ...}`, and `exc` with the traceback when there is one:

    {"ts":"2024-05-01T08:00:00.123Z","level":"info","logger":"oceand.engine","msg":"...","event":"..."}

`log_decision` writes exactly one line per decision (event "decision"): at DEBUG when it holds the count.

No input can forge a line or leak a secret through a log record, whoever wrote the call:
- every string (the message, field values, the traceback) goes through `policies.redact.redact_text`
  (URL userinfo and secret-looking query parameters become `***`);
- text format: control characters (C0, DEL, C1, U+2028/U+2029, lone surrogates) in the message and
  in field values are written as escapes (`\\n`, `\\x1b`, `\\u2028`); a traceback follows on lines
  indented by two spaces, so only a record's first line starts at column 0;
- JSON format: orjson escapes C0; DEL, C1 and U+2028/U+2029 are escaped too (`\\u0085`), and a string
  that is not valid UTF-8 (lone surrogates) is written with backslash escapes instead of losing the line.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import orjson

from policies.redact import redact_text
from policies.types import ActuationOutcome, Decision

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
FORMATS = ("json", "text")

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _ts(created: float) -> str:
    t = dt.datetime.fromtimestamp(created, tz=dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: _redact(v) for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


def _redact(v: Any, depth: int = 0) -> Any:
    """Strings redacted, also inside lists, tuples and dicts (a few levels deep)."""
    if isinstance(v, str):
        return redact_text(v)
    if isinstance(v, int | float | None):
        return v
    if depth < 4:
        if isinstance(v, list | tuple):
            return [_redact(x, depth + 1) for x in v]
        if isinstance(v, dict):
            return {k: _redact(x, depth + 1) for k, x in v.items()}
    return v


# Written as escapes: C0, DEL, C1, the Unicode line/paragraph separators, and lone surrogates (text).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# What orjson leaves raw although a terminal or a line-splitting reader may act on it.
_JSON_RAW = re.compile("[\x7f-\x9f\u2028\u2029]")


def _escape_char(m: re.Match[str]) -> str:
    c = m.group(0)
    named = _NAMED.get(c)
    if named is not None:
        return named
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def escape_controls(text: str) -> str:
    """`text` with every control character written as an escape (`\\n`, `\\x1b`, `\\x85`, `\\u2028`)."""
    if text.isprintable():  # the usual case, one C-level pass: no control character in it
        return text
    return _CONTROL.sub(_escape_char, text)


def _json(value: Any) -> str:
    """orjson, with DEL/C1/U+2028/U+2029 escaped, and strings orjson refuses (lone surrogates) repaired."""
    try:
        text = orjson.dumps(value, default=str, option=_OPTS).decode("utf-8")
    except TypeError:  # orjson.JSONEncodeError: "str is not valid UTF-8: surrogates not allowed"
        text = orjson.dumps(_valid_utf8(value), default=str, option=_OPTS).decode("utf-8")
    if text.isascii() and "\x7f" not in text:
        return text
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def _valid_utf8(v: Any) -> Any:
    if isinstance(v, str):
        return v.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(v, list | tuple):
        return [_valid_utf8(x) for x in v]
    if isinstance(v, dict):
        return {_valid_utf8(k): _valid_utf8(x) for k, x in v.items()}
    return v


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _ts(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact_text(record.getMessage()),
        }
        for k, v in _extras(record).items():
            line.setdefault(k, v)
        if record.exc_info:
            line["exc"] = redact_text(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exc"] = redact_text(record.exc_text)
        if record.stack_info:
            line["stack"] = redact_text(record.stack_info)
        return _json(line)


class TextFormatter(logging.Formatter):
    """`ts LEVEL logger: msg key=value ...`, values JSON-quoted when they hold spaces, quotes or control
    characters; the message with control characters escaped; a traceback on lines indented by two spaces."""

    def format(self, record: logging.LogRecord) -> str:
        msg = escape_controls(redact_text(record.getMessage()))
        parts = [
            _ts(record.created),
            escape_controls(record.levelname),
            f"{escape_controls(record.name)}:",
            msg,
        ]
        for k, v in _extras(record).items():
            parts.append(f"{escape_controls(str(k))}={_text_value(v)}")
        text = " ".join(parts)
        exc = self.formatException(record.exc_info) if record.exc_info else record.exc_text
        if exc:
            text += "".join("\n  " + escape_controls(line) for line in redact_text(exc).splitlines())
        return text


_QUOTE = re.compile('[\\s"=\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]')


def _text_value(v: Any) -> str:
    if isinstance(v, str) and v and not _QUOTE.search(v):
        return v
    return _json(v)


# the store drivers' loggers stay at info and up whatever [log] level says (PRODUCT §10: no secret in a log)
QUIET_DRIVERS = ("aiosqlite", "aiomysql")


class _OceandHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler setup_logging installed, so a reload replaces it instead of adding one."""


def setup_logging(level: str, fmt: str, stream: TextIO | None = None) -> None:
    """Send every log record to `stream` (default stderr) as JSON lines or text, at `level` and up.
    Calling it again (SIGHUP reload) replaces the previous setup."""
    if level.lower() not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (use one of {', '.join(LEVELS)})")
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r} (use 'json' or 'text')")
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, _OceandHandler):
            root.removeHandler(h)
    handler = _OceandHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(LEVELS[level.lower()])
    for name in QUIET_DRIVERS:  # at debug they echo every SQL statement's parameters: stored webhook
        logging.getLogger(name).setLevel(max(logging.INFO, LEVELS[level.lower()]))  # secrets, hashes
    logging.captureWarnings(True)


_DECISION_FIELDS = ("job", "trigger", "current", "desired", "reasons", "id", "mode", "at")


def log_decision(
    logger: logging.Logger, decision: Mapping[str, Any] | Decision, outcome: ActuationOutcome | None = None
) -> None:
    """One line for one decision: job, trigger, current, desired, reasons, status, id (+ mode, at,
    and error when the actuation failed). Failed decisions log at WARNING; one that changes the count
    (applied, pending, or what a dry-run or paused job would have done) at INFO; one that holds the count
    (a stored decision whose proposals wanted a change that the stabilization window, a cooldown or a bound
    held back) at DEBUG: at 10,000 jobs those are hundreds a second, past journald's default rate limit
    (10,000 lines per 30 s per service), which then drops the daemon's other lines too (docs/operations.md
    §2, step 5). Every decision is in the store either way (`GET /api/v1/jobs/{job}/decisions`). A mapping is
    a decision as the API shows it (`status`, `result`); a Decision's status and error are `outcome`'s."""
    if isinstance(decision, Decision):  # read the fields; to_json() would deep-copy every proposal
        d: Mapping[str, Any] = {k: getattr(decision, k) for k in _DECISION_FIELDS}
        out = outcome if outcome is not None else ActuationOutcome()
        d = dict(d, status=out.api_status, result={"error": out.error})
    else:
        d = decision
    failed = d.get("status") == "failed"
    level = (
        logging.WARNING if failed else logging.INFO if d.get("current") != d.get("desired") else logging.DEBUG
    )
    if not logger.isEnabledFor(level):
        return
    result = d.get("result") or {}
    fields: dict[str, Any] = {
        "event": "decision",
        "job": d.get("job"),
        "trigger": d.get("trigger"),
        "current": d.get("current"),
        "desired": d.get("desired"),
        "reasons": list(d.get("reasons") or []),
        "status": d.get("status"),
        "id": d.get("id"),
        "mode": d.get("mode"),
        "at": d.get("at"),
    }
    if isinstance(result, Mapping) and result.get("error") is not None:
        fields["error"] = result["error"]
    msg = (
        f"decision {fields['job']}: {fields['current']} -> {fields['desired']} "
        f"({','.join(map(str, fields['reasons'])) or '-'}) {fields['status']}"
    )
    logger.log(level, msg, extra=fields)
