"""Go `net/rpc` with the JSON codec, as falcon-plus transfer serves it (PRODUCT §9, PROTOCOLS.md B.2).

What a falcon-agent (`transfer.addrs`) and a transfer's `transfer` backend send, from falcon-plus's
source: `jsonrpc.NewClientCodec` writes one request per call, `{"method": "Transfer.Update", "params":
[[MetricValue, ...]], "id": N}`, as Go's json.Encoder does (one line, ended by a newline; Go never writes
a raw newline inside a JSON value). The server (`modules/transfer/receiver/rpc`) answers each with
`{"id": N, "result": TransferResponse, "error": null}` or `{"id": N, "result": null, "error": "text"}`,
many calls per connection. `Transfer.Ping` answers `SimpleRpcResponse` `{"code": 0}`.

A `MetricValue` is `{endpoint, metric, value, step, counterType, tags, timestamp}` (common/model/metric.go),
the push item of §2.1: `value` is a number (agent: float/int, transfer: float64) or a numeric string.
Go's decoder fills a missing field with its zero value and matches keys case-insensitively; `update_items`
does the same before the item rules (collectors.falcon) see the items.

Everything here is pure: bytes in, frames / requests / items / reply bytes out.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec
import orjson

from collectors.falcon_items import FalconItem, decode_items

UPDATE: Final = "Transfer.Update"
PING: Final = "Transfer.Ping"
METHODS: Final = frozenset({UPDATE, PING})

# MetricValue's JSON names; Go's decoder takes them in any letter case
_FIELDS: Final = {
    k.lower(): k for k in ("endpoint", "metric", "value", "step", "counterType", "tags", "timestamp")
}


class RpcError(ValueError):
    """A frame or call that cannot be served. `code` is the counter label, the message the reply's `error`."""

    def __init__(self, code: str, message: str, request_id: bytes = b"null") -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id  # the raw id to answer with (a frame read leniently for it)


class Request(msgspec.Struct):
    """The request envelope; `params` and `id` stay raw (the id is echoed back byte for byte, as Go does)."""

    method: str
    params: msgspec.Raw = msgspec.Raw(b"null")
    id: msgspec.Raw = msgspec.Raw(b"null")


_request = msgspec.json.Decoder(Request)


class UpdateCall(msgspec.Struct):
    """The usual frame, `Transfer.Update` with every item of the agent's shape, decoded in one pass straight
    into FalconItems (anything else goes through `decode_request` and the tolerant path)."""

    method: Literal["Transfer.Update"]
    params: tuple[list[FalconItem]]
    id: msgspec.Raw = msgspec.Raw(b"null")


_update_call = msgspec.json.Decoder(UpdateCall)


def decode_update(frame: bytes) -> UpdateCall | None:
    """The usual frame as an UpdateCall; None for any other frame (`decode_request` reads it)."""
    try:
        return _update_call.decode(frame)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None


class FrameBuffer:
    """Splits a byte stream into request frames: one per line (Go's encoder ends each with a newline).

    A client that writes a request without its newline is served too: when what is buffered is one whole
    JSON object, it is a frame. At most `max_frame` bytes are buffered: a longer request sets `too_large`
    and the buffer is dropped (the caller closes the connection: the stream cannot be trusted any more);
    the frames before it are still returned.
    """

    __slots__ = ("_buf", "_scanned", "max_frame", "too_large")

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf known to hold no newline
        self.too_large = False

    def __len__(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        if self.too_large:
            return []
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        start = 0
        pos = self._scanned
        while (end := buf.find(b"\n", pos)) >= 0:
            if end - start > self.max_frame:
                return self._overflow(frames)
            frame = bytes(buf[start:end]).strip()
            if frame:
                frames.append(frame)
            start = pos = end + 1
        if start:
            del buf[:start]
        if len(buf) > self.max_frame:
            return self._overflow(frames)
        self._scanned = len(buf)
        if buf and buf[-1] in b"} \t\r":
            tail = bytes(buf).strip()
            if tail[:1] == b"{" and tail[-1:] == b"}" and _is_request(tail):
                frames.append(tail)
                buf.clear()
                self._scanned = 0
        return frames

    def _overflow(self, frames: list[bytes]) -> list[bytes]:
        self.too_large = True
        self._buf = bytearray()
        self._scanned = 0
        return frames


def _is_request(frame: bytes) -> bool:
    try:
        _request.decode(frame)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return False
    return True


def decode_request(frame: bytes) -> Request:
    """One frame -> its envelope. RpcError(not_utf8 | bad_json | bad_request) when it is not one; for a
    frame with invalid UTF-8 the error carries the id (read leniently) to answer with."""
    if not frame.isascii():  # params stay raw while the envelope is decoded: check the whole frame here
        try:
            frame.decode("utf-8")
        except UnicodeDecodeError as u:
            msg = f"request is not UTF-8 (byte {u.start}): refused, as a whole"
            raise RpcError("not_utf8", msg, _lenient_id(frame)) from None
    try:
        return _request.decode(frame)
    except msgspec.DecodeError as e:
        try:
            orjson.loads(frame)
        except orjson.JSONDecodeError as j:
            raise RpcError("bad_json", f"request is not JSON: {j}") from None
        raise RpcError("bad_request", f"not a JSON-RPC request {{method, params, id}}: {e}") from None


def _lenient_id(frame: bytes) -> bytes:
    try:
        return bytes(_request.decode(frame.decode("utf-8", "replace").encode()).id)
    except msgspec.DecodeError:
        return b"null"


def method_error(method: str) -> str | None:
    """Go net/rpc's text for a method this server does not have (None: it has it)."""
    if method in METHODS:
        return None
    service, dot, name = method.rpartition(".")
    if not dot or not service or not name:
        return f"rpc: service/method request ill-formed: {method[:200]}"
    if service != "Transfer":
        return f"rpc: can't find service {method[:200]}"
    return f"rpc: can't find method {method[:200]}"


def update_list(params: bytes) -> bytes | None:
    """The raw JSON array of MetricValues inside `params` ([[...]]), for a typed decoder; None when params
    has another shape (the tolerant `update_items` reads it)."""
    p = params.strip()
    if p[:1] != b"[" or p[-1:] != b"]":
        return None
    inner = p[1:-1].strip()
    return inner if inner[:1] == b"[" else None


def update_typed(params: bytes) -> list[FalconItem] | None:
    """`Transfer.Update`'s params as FalconItems when every item has the agent's shape (the fast decoder);
    None (or an empty list) otherwise: `update_items` reads them for the tolerant path."""
    inner = update_list(params)
    return decode_items(inner) if inner is not None else None


def update_items(params: bytes) -> list[Any]:
    """`Transfer.Update`'s params -> the push items (dicts), as Go's decoder fills `[]*MetricValue`:
    keys matched in any letter case, a missing timestamp 0 (the item rules then use now) and tags "".
    Other fields missing stay missing: the item rules reject such an item with its reason."""
    try:
        decoded = orjson.loads(params)
    except orjson.JSONDecodeError as e:
        raise RpcError("bad_params", f"params are not JSON: {e}") from None
    if not isinstance(decoded, list) or not decoded:
        raise RpcError("bad_params", "params must be [[MetricValue, ...]]")
    first = decoded[0]
    if first is None:
        return []
    if not isinstance(first, list):
        raise RpcError("bad_params", f"params[0] must be a list of MetricValue, not {type(first).__name__}")
    out: list[Any] = []
    for item in first:
        if type(item) is dict:
            if any(k not in _FIELDS.values() for k in item):
                item = {_FIELDS.get(k.lower(), k): v for k, v in item.items()}
            item.setdefault("timestamp", 0)
            item.setdefault("tags", "")
        out.append(item)
    return out


def transfer_response(total: int, invalid: int, latency_ms: int) -> dict[str, Any]:
    """transfer's `TransferResponse` (common/model/transfer.go): exported Go fields, no json tags."""
    return {"Message": "ok", "Total": total, "Invalid": invalid, "Latency": latency_ms}


PING_RESULT: Final = {"code": 0}  # SimpleRpcResponse


def encode_reply(request_id: bytes, result: Any = None, error: str | None = None) -> bytes:
    """One response line, `{"id", "result", "error"}` as Go's jsonrpc server codec writes it."""
    body = orjson.dumps(None if error is not None else result)
    err = orjson.dumps(error)
    return b'{"id":' + (request_id or b"null") + b',"result":' + body + b',"error":' + err + b"}\n"


def encode_request(method: str, params: Any, request_id: int) -> bytes:
    """What Go's jsonrpc client codec writes for `client.Call(method, params, &reply)` (tests, bench)."""
    return orjson.dumps({"method": method, "params": [params], "id": request_id}) + b"\n"
