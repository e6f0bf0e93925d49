"""Open-Falcon inputs, parsed purely: agent push items (PROTOCOLS.md B.1/B.2) and alarm callbacks (B.3).

`check_item` applies the transfer's item rules (`RecvMetricValues`): an invalid item is dropped and
counted, the rest of the body is kept. `parse_alarm` turns the alarm module's callback query into an
`AlarmEvent`; `alarm_params` and `parse_alarm_body` read the query and an optional POST body (form,
multipart form, JSON object) into those parameters. Every alarm parser is total: any input either parses
or raises AlarmError with a reason (never another exception). Nothing here does I/O or reads a clock: `now` is an argument.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson

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
    """A callback that cannot be used; the message names the parameter (or what is wrong with the body).

    `status`/`code`: the HTTP answer (400 bad_alarm unless the body's type or size is the problem)."""

    def __init__(self, message: str, status: int = 400, code: str = "bad_alarm") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


ALARM_PARAMS: Final = frozenset(
    {"endpoint", "metric", "status", "step", "priority", "time"}
    | {"tpl_id", "exp_id", "stra_id", "left_value", "tags"}
)
MAX_ALARM_FIELDS: Final = 64  # parameters in a query or a body (Falcon sends 11)
MAX_ALARM_VALUE: Final = 1024  # characters in one callback parameter (Falcon: metric + tags <= 510)
_INT64: Final = 2**63


def _int_param(params: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        if default is None:
            raise AlarmError(f"{name}: missing")
        return default
    try:
        n = int(raw)
    except ValueError:
        raise AlarmError(f"{name}: {raw[:40]!r} is not an integer") from None
    if not -_INT64 <= n < _INT64:
        raise AlarmError(f"{name}: {raw[:40]!r}... is out of the 64-bit integer range")
    return n


def alarm_params(pairs: Iterable[tuple[str, str]], source: str) -> dict[str, str]:
    """(name, value) pairs of one source ("query", "body") -> the callback parameters.

    A callback parameter given twice, more than MAX_ALARM_FIELDS pairs or a callback parameter longer than
    MAX_ALARM_VALUE characters raise AlarmError; names oceand does not use are ignored."""
    out: dict[str, str] = {}
    for n, (name, value) in enumerate(pairs, 1):
        if n > MAX_ALARM_FIELDS:
            raise AlarmError(f"{source}: more than {MAX_ALARM_FIELDS} parameters")
        if name not in ALARM_PARAMS:
            continue
        if name in out:
            raise AlarmError(f"{name}: given more than once in the {source}")
        if len(value) > MAX_ALARM_VALUE:
            raise AlarmError(f"{name}: longer than {MAX_ALARM_VALUE} characters")
        out[name] = value
    return out


# A header value's parameters (RFC 9110 §5.6.6): `; name=token` or `; name="quoted \" string"`.
_HEADER_PARAM = re.compile(r""";\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)""")
_QUOTED_PAIR = re.compile(r"\\(.)")
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")  # RFC 2046 §5.1.1
_UTF8: Final = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})


def header_params(value: str) -> tuple[str, dict[str, str]]:
    """`type/sub; a=b; c="d"` -> ("type/sub", {"a": "b", "c": "d"}); names lower-cased. Never raises."""
    head, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for m in _HEADER_PARAM.finditer(";" + rest):
        v = m.group(2)
        if len(v) >= 2 and v[0] == v[-1] == '"':
            v = _QUOTED_PAIR.sub(r"\1", v[1:-1])
        params.setdefault(m.group(1).lower(), v)
    return head.strip().lower(), params


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise AlarmError(f"{what}: not UTF-8 (byte {e.start})") from None


def _check_charset(params: Mapping[str, str], what: str) -> None:
    charset = params.get("charset")
    if charset is not None and charset.lower() not in _UTF8:
        raise AlarmError(f"{what}: charset {charset[:40]!r} is not supported, only UTF-8", 415, "bad_charset")


def parse_alarm_body(content_type: str, body: bytes) -> list[tuple[str, str]]:
    """A POST body's (name, value) pairs: an urlencoded or multipart form, or a JSON object.

    Total: any other body raises AlarmError naming the problem (an empty body has no pairs)."""
    if not body:
        return []
    ctype, params = header_params(content_type)
    if ctype == "application/x-www-form-urlencoded":
        _check_charset(params, "form body")
        text = _utf8(body, "form body")
        try:
            return parse_qsl(
                text,
                keep_blank_values=True,
                encoding="utf-8",
                errors="strict",
                max_num_fields=MAX_ALARM_FIELDS,
            )
        except UnicodeDecodeError:
            raise AlarmError("form body: a %-escaped value is not UTF-8") from None
        except ValueError:
            raise AlarmError(f"body: more than {MAX_ALARM_FIELDS} parameters") from None
    if ctype == "multipart/form-data":
        return _multipart(params.get("boundary"), body)
    if ctype == "application/json":
        return _json_pairs(body)
    shown = ctype[:60] if ctype else "none"
    raise AlarmError(
        f"body: content type {shown!r} is not accepted; send the parameters in the query, "
        "a form (application/x-www-form-urlencoded, multipart/form-data) or a JSON object",
        415,
        "unsupported_media_type",
    )


def _json_pairs(body: bytes) -> list[tuple[str, str]]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise AlarmError(f"body is not valid JSON: {e}", code="bad_json") from None
    if not isinstance(data, dict):
        raise AlarmError(f"a JSON alarm body is an object of callback parameters, not {type(data).__name__}")
    out: list[tuple[str, str]] = []
    for k, v in data.items():
        if k not in ALARM_PARAMS:
            continue
        if isinstance(v, str):
            out.append((k, v))
        elif type(v) is int or (type(v) is float and math.isfinite(v)):
            out.append((k, str(v)))
        else:
            raise AlarmError(f"{k}: must be a string or a number, not {type(v).__name__}")
    return out


def _multipart(boundary: str | None, body: bytes) -> list[tuple[str, str]]:
    """multipart/form-data (RFC 7578) with text fields only, parsed in one linear pass."""
    if boundary is None or not _BOUNDARY.fullmatch(boundary):
        raise AlarmError("multipart body: the Content-Type has no valid boundary parameter")
    delim = b"--" + boundary.encode("ascii")
    sep = b"\r\n" + delim
    if body.startswith(delim):
        pos = len(delim)
    else:
        first = body.find(sep)
        if first < 0:
            raise AlarmError("multipart body: the boundary does not occur in it")
        pos = first + len(sep)
    out: list[tuple[str, str]] = []
    while not body.startswith(b"--", pos):  # "--" after a delimiter closes the body
        eol = body.find(b"\r\n", pos)
        if eol < 0 or body[pos:eol].strip(b" \t"):
            raise AlarmError("multipart body: a boundary line is malformed or the body is truncated")
        end = body.find(sep, eol)
        if end < 0:
            raise AlarmError("multipart body is truncated: the closing boundary is missing")
        if len(out) >= MAX_ALARM_FIELDS:
            raise AlarmError(f"body: more than {MAX_ALARM_FIELDS} parameters")
        out.append(_form_part(body[eol + 2 : end], len(out) + 1))
        pos = end + len(sep)
    return out


def _form_part(raw: bytes, n: int) -> tuple[str, str]:
    head, sep, value = raw.partition(b"\r\n\r\n")
    if not sep:
        if not raw.startswith(b"\r\n"):
            raise AlarmError(f"multipart part {n}: its headers do not end with an empty line")
        head, value = b"", raw[2:]
    headers: dict[str, str] = {}
    for line in _utf8(head, f"multipart part {n} headers").split("\r\n") if head else []:
        name, colon, v = line.partition(":")
        if not colon or not name.strip():
            raise AlarmError(f"multipart part {n}: {line[:60]!r} is not a header line")
        headers[name.strip().lower()] = v.strip()
    disposition, params = header_params(headers.get("content-disposition", ""))
    if disposition != "form-data" or "name" not in params:
        raise AlarmError(f"multipart part {n}: no 'Content-Disposition: form-data; name=...' header")
    name = params["name"]
    if "filename" in params or "filename*" in params:
        raise AlarmError(f"multipart field {name[:40]!r} is a file; only text fields are accepted")
    cte = headers.get("content-transfer-encoding", "binary").lower()
    if cte not in ("7bit", "8bit", "binary"):
        raise AlarmError(
            f"multipart field {name[:40]!r}: Content-Transfer-Encoding {cte[:20]!r} is not supported"
        )
    _check_charset(header_params(headers.get("content-type", ""))[1], f"multipart field {name[:40]!r}")
    return name, _utf8(value, f"multipart field {name[:40]!r}")


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
