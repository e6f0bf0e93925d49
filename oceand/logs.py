"""Structured logs (PRODUCT §7): one JSON object per line on stderr (journald keeps it), or text.

A JSON line holds `ts` (UTC, ISO 8601 with milliseconds), `level`, `logger`, `msg`, every field
passed as `extra={"event": "...", ...}`, and `exc` with the traceback when there is one:

    {"ts":"2024-05-01T08:00:00.123Z","level":"info","logger":"oceand.engine","msg":"...","event":"..."}

`log_decision` writes exactly one line per decision (event "decision").
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import orjson

from policies.types import Decision

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
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _ts(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in _extras(record).items():
            line.setdefault(k, v)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return orjson.dumps(line, default=str, option=_OPTS).decode("utf-8")


class TextFormatter(logging.Formatter):
    """`ts LEVEL logger: msg key=value ...`, values JSON-quoted when they hold spaces or quotes."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_ts(record.created), record.levelname, f"{record.name}:", record.getMessage()]
        for k, v in _extras(record).items():
            parts.append(f"{k}={_text_value(v)}")
        text = " ".join(parts)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _text_value(v: Any) -> str:
    if isinstance(v, str) and v and not any(c.isspace() or c in '"=' for c in v):
        return v
    return orjson.dumps(v, default=str, option=_OPTS).decode("utf-8")


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
    logging.captureWarnings(True)


_DECISION_FIELDS = ("job", "trigger", "current", "desired", "reasons", "status", "id", "mode", "at", "result")


def log_decision(logger: logging.Logger, decision: Mapping[str, Any] | Decision) -> None:
    """One line for one decision: job, trigger, current, desired, reasons, status, id (+ mode, at,
    and error when the actuation failed). Failed decisions log at WARNING, others at INFO."""
    if isinstance(decision, Decision):  # read the fields; to_json() would deep-copy every proposal
        d: Mapping[str, Any] = {k: getattr(decision, k) for k in _DECISION_FIELDS}
    else:
        d = decision
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
    failed = fields["status"] == "failed"
    msg = (
        f"decision {fields['job']}: {fields['current']} -> {fields['desired']} "
        f"({','.join(map(str, fields['reasons'])) or '-'}) {fields['status']}"
    )
    logger.log(logging.WARNING if failed else logging.INFO, msg, extra=fields)
