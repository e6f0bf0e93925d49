"""The pure wire parsers: Go net/rpc JSON frames (collectors.falcon_rpc) and OpenTSDB put lines
(collectors.opentsdb), against what falcon-plus's own code writes (tests/fakes/transfer.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from collectors.falcon_items import decode_items
from collectors.falcon_rpc import (
    FrameBuffer,
    RpcError,
    decode_request,
    encode_reply,
    encode_request,
    method_error,
    transfer_response,
    update_items,
    update_list,
)
from collectors.opentsdb import MAX_TAGS, LineError, parse_put, put_line
from tests.fakes.transfer import RpcClient, agent_item, transfer_item

T = 1_700_000_000


def go_request(method: str, params: Any, seq: int = 0) -> bytes:
    _, data = RpcClient(None, None).request(method, params)  # type: ignore[arg-type]
    return data.replace(b'"id":0', f'"id":{seq}'.encode())


# ---- framing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "frames", "left"),
    [
        pytest.param([b'{"a":1}\n'], [b'{"a":1}'], 0, id="one-line"),
        pytest.param([b'{"a":1}\n{"b":2}\n'], [b'{"a":1}', b'{"b":2}'], 0, id="two-in-one-read"),
        pytest.param([b'{"a"', b":1}\n"], [b'{"a":1}'], 0, id="split-across-reads"),
        pytest.param([b'{"method":"x"', b',"id":1'], [], 20, id="half-a-frame-waits"),
        pytest.param(
            [b'{"method":"Transfer.Ping","params":[{}],"id":3}'],
            [b'{"method":"Transfer.Ping","params":[{}],"id":3}'],
            0,
            id="no-newline-whole-object",
        ),
        pytest.param([b"\r\n\n  \n"], [], 0, id="blank-lines"),
        pytest.param([b'{"a":1}\r\n'], [b'{"a":1}'], 0, id="crlf"),
    ],
)
def test_frames(chunks: list[bytes], frames: list[bytes], left: int) -> None:
    fb = FrameBuffer(1024)
    got: list[bytes] = []
    for c in chunks:
        got += fb.feed(c)
    assert got == frames
    assert len(fb) == left
    assert not fb.too_large


def test_a_frame_past_the_bound_sets_too_large_and_drops_the_buffer() -> None:
    fb = FrameBuffer(1024)
    assert fb.feed(b'{"ok":1}\n' + b"x" * 600) == [b'{"ok":1}']
    assert fb.feed(b"x" * 600) == []
    assert fb.too_large and len(fb) == 0
    assert fb.feed(b"more\n") == []  # nothing more is read from that stream


def test_a_long_line_with_its_newline_in_one_read_is_too_large_too() -> None:
    fb = FrameBuffer(100)
    assert fb.feed(b'{"a":1}\n' + b"y" * 200 + b"\n{}\n") == [b'{"a":1}']
    assert fb.too_large


def test_buffer_scans_each_byte_once() -> None:
    fb = FrameBuffer(10_000)
    for _ in range(50):
        assert fb.feed(b"z" * 100) == []
    assert fb._scanned == 5000
    assert fb.feed(b"\n") == [b"z" * 5000]


# ---- requests ----------------------------------------------------------------------------------


def test_go_client_request_decodes() -> None:
    frame = go_request("Transfer.Update", [agent_item("h", "cpu.idle", T, 3.5)], seq=7).strip()
    req = decode_request(frame)
    assert req.method == "Transfer.Update"
    assert bytes(req.id) == b"7"
    inner = update_list(bytes(req.params))
    assert inner is not None
    items = decode_items(inner)
    assert items is not None and items[0].endpoint == "h" and items[0].value == 3.5


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        pytest.param(b'{"method":"Transfer.Update","params":[[', "bad_json", id="half-a-frame"),
        pytest.param(b"GET / HTTP/1.1", "bad_json", id="not-json"),
        pytest.param(b"[1,2]", "bad_request", id="not-an-object"),
        pytest.param(b'{"params":[],"id":1}', "bad_request", id="no-method"),
        pytest.param(
            b'{"method":"Transfer.Update","params":[[{"endpoint":"h\xff"}]],"id":4}',
            "not_utf8",
            id="non-utf8",
        ),
    ],
)
def test_bad_requests(frame: bytes, code: str) -> None:
    with pytest.raises(RpcError) as e:
        decode_request(frame)
    assert e.value.code == code


def test_non_utf8_request_keeps_its_id_for_the_reply() -> None:
    with pytest.raises(RpcError) as e:
        decode_request(b'{"method":"Transfer.Update","params":[[{"endpoint":"h\xff"}]],"id":4}')
    assert e.value.request_id == b"4"
    assert "byte 53" in str(e.value)


@pytest.mark.parametrize(
    ("method", "error"),
    [
        pytest.param("Transfer.Update", None, id="update"),
        pytest.param("Transfer.Ping", None, id="ping"),
        pytest.param("Transfer.Query", "rpc: can't find method Transfer.Query", id="unknown-method"),
        pytest.param("Graph.Send", "rpc: can't find service Graph.Send", id="unknown-service"),
        pytest.param("Update", "rpc: service/method request ill-formed: Update", id="ill-formed"),
    ],
)
def test_method_errors_use_go_net_rpc_texts(method: str, error: str | None) -> None:
    assert method_error(method) == error


@pytest.mark.parametrize(
    ("params", "items"),
    [
        pytest.param(b"[null]", [], id="nil-slice"),
        pytest.param(b"[[]]", [], id="empty"),
        pytest.param(
            b'[[{"endpoint":"h","metric":"m","value":"1.5","step":60,"counterType":"GAUGE"}]]',
            [
                {
                    "endpoint": "h",
                    "metric": "m",
                    "value": "1.5",
                    "step": 60,
                    "counterType": "GAUGE",
                    "timestamp": 0,
                    "tags": "",
                }
            ],
            id="missing-timestamp-and-tags-get-go-zero-values",
        ),
        pytest.param(
            b'[[{"Endpoint":"h","METRIC":"m","value":1,"Step":60,"countertype":"GAUGE","tags":"","timestamp":5}]]',
            [
                {
                    "endpoint": "h",
                    "metric": "m",
                    "value": 1,
                    "step": 60,
                    "counterType": "GAUGE",
                    "tags": "",
                    "timestamp": 5,
                }
            ],
            id="keys-in-any-case-as-go",
        ),
        pytest.param(b"[[1, null]]", [1, None], id="odd-items-left-to-the-item-rules"),
        pytest.param(b"[[], [1]]", [], id="extra-params-ignored-as-go"),
    ],
)
def test_update_items(params: bytes, items: list[Any]) -> None:
    assert update_items(params) == items


@pytest.mark.parametrize(
    "params",
    [
        pytest.param(b"null", id="null"),
        pytest.param(b"[]", id="no-arg"),
        pytest.param(b'[{"endpoint":"h"}]', id="object-not-list"),
        pytest.param(b"[[", id="truncated"),
    ],
)
def test_update_params_of_another_shape_are_refused(params: bytes) -> None:
    with pytest.raises(RpcError) as e:
        update_items(params)
    assert e.value.code == "bad_params"


def test_reply_has_go_jsonrpc_shape() -> None:
    ok = orjson.loads(encode_reply(b"12", transfer_response(3, 1, 0)))
    assert ok == {
        "id": 12,
        "result": {"Message": "ok", "Total": 3, "Invalid": 1, "Latency": 0},
        "error": None,
    }
    err = orjson.loads(encode_reply(b'"abc"', {"x": 1}, error="boom"))
    assert err == {"id": "abc", "result": None, "error": "boom"}
    assert encode_reply(b"1", {}).endswith(b"}\n")


def test_encode_request_matches_the_fake_client() -> None:
    items = [transfer_item("h", "cpu.idle", T, 5, {"job": "j"})]
    assert encode_request("Transfer.Update", items, 0) == go_request("Transfer.Update", items)


# ---- OpenTSDB put lines ------------------------------------------------------------------------


def item(**over: Any) -> dict[str, Any]:
    base = {
        "endpoint": "h1",
        "metric": "cpu.idle",
        "timestamp": T,
        "step": 60,
        "value": 12.5,
        "counterType": "GAUGE",
        "tags": "",
    }
    return {**base, **over}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(put_line("h1", "cpu.idle", T, 12.5).rstrip(b"\n"), item(), id="transfer-line"),
        pytest.param(
            put_line("h1", "cpu.idle", T, 12.5, {"job": "j", "Core Id": "a b"}).rstrip(b"\n"),
            item(tags="core_id=a_b,job=j"),
            id="transfer-tags-lowercased-sorted",
        ),
        pytest.param(b"put cpu.idle 1700000000123 12.5 endpoint=h1", item(), id="milliseconds"),
        pytest.param(b"put cpu.idle 1700000000 -1e2 endpoint=h1", item(value=-100.0), id="exponent"),
        pytest.param(b"   ", None, id="blank"),
    ],
)
def test_put_lines(line: bytes, expected: dict[str, Any] | None) -> None:
    assert parse_put(line) == expected


def test_put_counter_metrics_are_named_in_the_config() -> None:
    got = parse_put(b"put net.if.in.bytes 1700000000 100 endpoint=h1", frozenset({"net.if.in.bytes"}))
    assert got is not None and got["counterType"] == "COUNTER"


@pytest.mark.parametrize(
    ("line", "code"),
    [
        pytest.param(b"put cpu.idle 1700000000 abc endpoint=h1", "bad_value", id="non-number-value"),
        pytest.param(b"put cpu.idle 1700000000 nan endpoint=h1", "bad_value", id="nan"),
        pytest.param(b"put cpu.idle 1700000000 inf endpoint=h1", "bad_value", id="inf"),
        pytest.param(b"put cpu.idle 17.5 1 endpoint=h1", "bad_timestamp", id="fractional-ts"),
        pytest.param(b"put cpu.idle -5 1 endpoint=h1", "bad_timestamp", id="negative-ts"),
        pytest.param(b"put cpu.idle 1700000000 1 job=j", "no_endpoint", id="no-endpoint"),
        pytest.param(b"put cpu.idle 1700000000 1", "bad_line", id="no-tags"),
        pytest.param(b"put cpu.idle 1700000000 1 endpoint=h1 loose", "bad_tag", id="tag-without-equals"),
        pytest.param(b"put cpu.idle 1700000000 1 endpoint=h1 k=", "bad_tag", id="tag-without-value"),
        pytest.param(b"put cpu.idle 1700000000 1 endpoint=h\xff", "not_utf8", id="non-utf8"),
        pytest.param(b"version", "unknown_command", id="other-command"),
        pytest.param(
            b"put m 1700000000 1 endpoint=h " + b" ".join(b"t%d=v" % i for i in range(300)),
            "too_many_tags",
            id="300-tags",
        ),
    ],
)
def test_bad_put_lines(line: bytes, code: str) -> None:
    with pytest.raises(LineError) as e:
        parse_put(line)
    assert e.value.code == code
    assert str(e.value)


def test_max_tags_is_inclusive() -> None:
    tags = b" ".join(b"t%d=v" % i for i in range(MAX_TAGS - 1))
    got = parse_put(b"put m 1700000000 1 endpoint=h " + tags)
    assert got is not None and got["tags"].count("=") == MAX_TAGS - 1
