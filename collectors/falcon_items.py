"""Falcon push items, bytes -> typed items, purely (PROTOCOLS.md B.1/B.2; PRODUCT §2.1).

Any ingest listener (HTTP push, transfer RPC) turns what it received into `FalconItem`s here, then hands
them to routing (oceand.ingest). Two paths give the same items:

- `decode_items`: the usual body (every item of the agent's shape) decoded by msgspec straight into
  FalconItems whose fields were type- and range-checked in C; None for any other body;
- `check_items`: any decoded body (a list) checked item by item with transfer's rules (collectors.falcon's
  `check_key`, `check_value`, `check_timestamp`); the valid items become FalconItems, each refused one is
  reported with its position and reason.

`split_body` cuts a large JSON array body into pieces at item boundaries, so a caller can decode and
route it piece by piece. Nothing here does I/O or reads a clock: `now` is an argument.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import pairwise
from typing import Annotated, Any, Literal

import msgspec

from collectors.falcon import MAX_METRIC_TAGS_LEN, check_key, check_timestamp, check_value

REQUIRED = ("endpoint", "metric", "timestamp", "step", "value", "counterType")

# The fast decoder takes metric names up to METRIC_MAX characters and tags up to the rest of transfer's
# metric+tags limit, so every item it returns meets that limit; an item past either bound takes the
# tolerant path, which applies the limit to the sum exactly.
METRIC_MAX = 128


class FalconItem(msgspec.Struct, gc=False):
    """One push item with every field of the right type (msgspec checks them in C while decoding)."""

    endpoint: Annotated[str, msgspec.Meta(min_length=1)]
    metric: Annotated[str, msgspec.Meta(min_length=1, max_length=METRIC_MAX)]
    timestamp: int
    step: Annotated[int, msgspec.Meta(gt=0)]
    value: float  # msgspec refuses NaN, Infinity and numbers out of float range
    counterType: Literal["GAUGE", "COUNTER", "DERIVE"]
    tags: Annotated[str, msgspec.Meta(max_length=MAX_METRIC_TAGS_LEN - METRIC_MAX)] = ""


_decoder = msgspec.json.Decoder(list[FalconItem])


def decode_items(body: bytes) -> list[FalconItem] | None:
    """A push body whose every item has the usual shape, decoded straight into FalconItems; None for
    anything else (bad JSON, another shape, one odd item), which takes the tolerant path."""
    try:
        return _decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError):  # the latter: invalid UTF-8 in a string
        return None


def check_items(
    items: list[Any], now: float, reject: Callable[[int, str], None], offset: int = 0
) -> tuple[list[FalconItem], list[int]]:
    """The tolerant path: the valid items of a decoded body as FalconItems, with their positions in the
    body (`offset`: the position of items[0]); `reject(position, reason)` for each of the others."""
    typed: list[FalconItem] = []
    index: list[int] = []
    inow = int(now)
    for i, item in enumerate(items, offset):
        if type(item) is not dict:
            reject(i, "item is not an object")
            continue
        missing = [k for k in REQUIRED if k not in item]
        if missing:
            reject(i, f"{missing[0]}: missing")
            continue
        endpoint, metric, ctype, step = item["endpoint"], item["metric"], item["counterType"], item["step"]
        tags = item.get("tags", "")  # absent: no tags, as Falcon's agent does for ""
        reason = check_key(endpoint, metric, tags, ctype, step)
        if reason is not None:
            reject(i, reason)
            continue
        value = check_value(item["value"])
        if value is None:
            reject(i, f"value: {str(item['value'])[:40]!r} is not a finite number")
            continue
        ts = check_timestamp(item["timestamp"], now)
        typed.append(FalconItem(endpoint, metric, ts if ts > 0 else inow, step, value, ctype, tags))
        index.append(i)
    return typed, index


SLICE_BYTES = 256 * 1024  # a larger body is decoded piece by piece, each piece about this size
# Where a JSON array body may be cut: a comma between two objects (items of an agent body; a comma between
# two members of an object is followed by a key, never by '{'), else any comma between two values.
_CUT_OBJECTS = re.compile(rb"}\s*,\s*{")
_CUT = re.compile(rb'[}\]"0-9el]\s*,\s*[{\["0-9tfn-]')


def split_body(body: bytes, size: int = SLICE_BYTES) -> list[bytes]:
    """A JSON array body cut at commas into pieces of about `size` bytes, each made an array of its own
    (`[a,b,c,d]` -> `[a,b]`, `[c,d]`); the body itself when it has no place to cut.

    A cut between two top-level items gives pieces whose items, in order, are the body's. A cut anywhere
    else makes a piece invalid JSON: inside a string, the piece ends in an unterminated string; inside a
    nested value, it ends with a container open. Every piece holds at least one value (a cut is between
    two values). So when every piece decodes, the body decodes to the pieces' items put end to end; when
    one does not, the body must be decoded whole."""
    cuts: list[int] = []
    pos = size
    objects = True  # objects left to cut between
    while pos < len(body):
        m = _CUT_OBJECTS.search(body, pos) if objects else None
        if m is None:
            objects = False
            m = _CUT.search(body, pos)
        if m is None:
            break
        cuts.append(body.index(b",", m.start()))
        pos = cuts[-1] + size
    if not cuts:
        return [body]
    pieces = [body[: cuts[0]] + b"]"]
    pieces.extend(b"[" + body[a + 1 : b] + b"]" for a, b in pairwise(cuts))
    pieces.append(b"[" + body[cuts[-1] + 1 :])
    return pieces
