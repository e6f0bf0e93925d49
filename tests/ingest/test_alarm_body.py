"""The alarm callback's query and POST body parsers are total (issue 18 item 3): every input either parses
or raises AlarmError with a reason, never another exception."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.falcon import (
    MAX_ALARM_FIELDS,
    MAX_ALARM_VALUE,
    AlarmError,
    alarm_params,
    header_params,
    parse_alarm,
    parse_alarm_body,
)

MP = "multipart/form-data; boundary=xx"
FORM = "application/x-www-form-urlencoded"


def part(name: str, value: bytes, extra: bytes = b"") -> bytes:
    return (
        b'--xx\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n' + extra + b"\r\n" + value
    )


GOOD_MP = part("endpoint", b"h1") + b"\r\n" + part("status", b"OK") + b"\r\n--xx--\r\n"


@pytest.mark.parametrize(
    ("ctype", "body", "pairs"),
    [
        pytest.param(
            FORM,
            b"endpoint=h1&status=OK&tags=a%3Ab",
            [("endpoint", "h1"), ("status", "OK"), ("tags", "a:b")],
            id="form",
        ),
        pytest.param(
            FORM + "; charset=UTF-8", b"metric=m&x=", [("metric", "m"), ("x", "")], id="form utf-8 charset"
        ),
        pytest.param(MP, GOOD_MP, [("endpoint", "h1"), ("status", "OK")], id="multipart"),
        pytest.param(
            'multipart/form-data; boundary="xx"',
            b"preamble\r\n" + GOOD_MP + b"epilogue",
            [("endpoint", "h1"), ("status", "OK")],
            id="multipart quoted boundary, preamble",
        ),
        pytest.param(MP, b"--xx--\r\n", [], id="multipart without parts"),
        pytest.param(
            "application/json",
            b'{"endpoint": "h", "stra_id": 5, "x": null}',
            [("endpoint", "h"), ("stra_id", "5")],
            id="json",
        ),
        pytest.param("text/plain", b"", [], id="empty body, any type"),
    ],
)
def test_bodies_that_parse(ctype: str, body: bytes, pairs: list[tuple[str, str]]) -> None:
    assert parse_alarm_body(ctype, body) == pairs


@pytest.mark.parametrize(
    ("ctype", "body", "status", "reason"),
    [
        # the five shapes that answered 500 with a traceback before (aiohttp's request.post())
        pytest.param(
            MP, part("endpoint", b"h1"), 400, "closing boundary is missing", id="truncated multipart"
        ),
        pytest.param(
            "multipart/form-data", b"garbage", 400, "no valid boundary", id="multipart without boundary"
        ),
        pytest.param(MP, b"garbage", 400, "boundary does not occur", id="multipart, boundary absent"),
        pytest.param(FORM, b"endpoint=\xff\xfe", 400, "form body: not UTF-8 (byte 9)", id="non-UTF-8 form"),
        pytest.param(
            FORM + "; charset=bogus", b"endpoint=a", 415, "charset 'bogus'", id="unknown form charset"
        ),
        pytest.param(
            MP, part("a", b"\xff") + b"\r\n--xx--", 400, "multipart field 'a': not UTF-8", id="non-UTF-8 part"
        ),
        pytest.param(
            MP,
            part("a", b"v", b"Content-Type: text/plain; charset=bogus\r\n") + b"\r\n--xx--",
            415,
            "charset 'bogus'",
            id="unknown part charset",
        ),
        # and the rest of the family
        pytest.param(FORM, b"endpoint=%ff", 400, "%-escaped value is not UTF-8", id="form, bad %-escape"),
        pytest.param(
            FORM,
            b"&".join(b"k%d=v" % i for i in range(MAX_ALARM_FIELDS + 1)),
            400,
            "more than 64",
            id="form, too many fields",
        ),
        pytest.param(
            MP,
            b"".join(part("k", b"v") + b"\r\n" for _ in range(MAX_ALARM_FIELDS + 1)) + b"--xx--",
            400,
            "more than 64",
            id="multipart, too many parts",
        ),
        pytest.param(
            MP,
            part("endpoint", b"h", b'Content-Disposition: form-data; name="f"; filename="x"\r\n')
            + b"\r\n--xx--",
            400,
            "is a file",
            id="multipart file field",
        ),
        pytest.param(
            MP,
            b'--xx\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n\r\nv\r\n--xx--',
            400,
            "is a file",
            id="multipart file upload",
        ),
        pytest.param(
            MP,
            b"--xx\r\nContent-Type: text/plain\r\n\r\nv\r\n--xx--",
            400,
            "no 'Content-Disposition",
            id="part without disposition",
        ),
        pytest.param(
            MP,
            b"--xx\r\nContent-Disposition: form-data\r\n\r\nv\r\n--xx--",
            400,
            "no 'Content-Disposition",
            id="part without name",
        ),
        pytest.param(
            MP,
            b"--xx\r\nnot a header\r\n\r\nv\r\n--xx--",
            400,
            "is not a header line",
            id="part with a bad header",
        ),
        pytest.param(
            MP,
            b"--xx\r\nContent-Disposition: form-data; name=a\r\nv\r\n--xx--",
            400,
            "do not end with an empty line",
            id="part headers without end",
        ),
        pytest.param(
            MP, b"--xx\r\n\xff: x\r\n\r\nv\r\n--xx--", 400, "headers: not UTF-8", id="part headers not UTF-8"
        ),
        pytest.param(
            MP,
            b"--xxjunk\r\n\r\nv\r\n--xx--",
            400,
            "boundary line is malformed",
            id="boundary line with junk",
        ),
        pytest.param(
            MP, b"--xx", 400, "malformed or the body is truncated", id="multipart cut after the boundary"
        ),
        pytest.param(
            MP,
            part("a", b"v", b"Content-Transfer-Encoding: base64\r\n") + b"\r\n--xx--",
            400,
            "base64",
            id="part in base64",
        ),
        pytest.param(
            "multipart/form-data; boundary=" + "b" * 71,
            b"x",
            400,
            "no valid boundary",
            id="boundary too long",
        ),
        pytest.param(
            "application/json", b'{"endpoint": "\xff"}', 400, "not valid JSON", id="JSON with non-UTF-8"
        ),
        pytest.param("application/json", b"[1]", 400, "not list", id="JSON array"),
        pytest.param(
            "application/json",
            b'{"endpoint": ["h"]}',
            400,
            "endpoint: must be a string or a number",
            id="JSON list value",
        ),
        pytest.param(
            "application/json",
            b'{"stra_id": true}',
            400,
            "stra_id: must be a string or a number",
            id="JSON bool value",
        ),
        pytest.param("text/plain", b"endpoint=h", 415, "'text/plain' is not accepted", id="unsupported type"),
        pytest.param("", b"endpoint=h", 415, "'none' is not accepted", id="no content type"),
    ],
)
def test_bodies_that_are_rejected(ctype: str, body: bytes, status: int, reason: str) -> None:
    with pytest.raises(AlarmError) as e:
        parse_alarm_body(ctype, body)
    assert reason in str(e.value)
    assert e.value.status == status


@pytest.mark.parametrize(
    ("pairs", "reason"),
    [
        pytest.param(
            [("status", "OK"), ("status", "PROBLEM")],
            "status: given more than once in the query",
            id="repeated",
        ),
        pytest.param(
            [("endpoint", "h" * (MAX_ALARM_VALUE + 1))], "endpoint: longer than 1024", id="huge field"
        ),
        pytest.param([("x", "")] * (MAX_ALARM_FIELDS + 1), "query: more than 64", id="too many fields"),
    ],
)
def test_bad_parameter_lists(pairs: list[tuple[str, str]], reason: str) -> None:
    with pytest.raises(AlarmError, match=reason):
        alarm_params(pairs, "query")


def test_unknown_parameters_may_repeat_and_are_dropped() -> None:
    assert alarm_params([("token", "a"), ("token", "b"), ("metric", "m")], "query") == {"metric": "m"}


def test_integers_beyond_64_bits_are_rejected() -> None:
    params = {"endpoint": "h", "metric": "m", "status": "OK", "stra_id": "9" * 30}
    with pytest.raises(AlarmError, match=r"stra_id: .* out of the 64-bit integer range"):
        parse_alarm(params, 1.0)


def test_header_params() -> None:
    assert header_params('Multipart/Form-Data; Boundary="a\\"b"; x=1;bad') == (
        "multipart/form-data",
        {"boundary": 'a"b', "x": "1"},
    )


_ctypes = st.one_of(
    st.sampled_from(
        [
            MP,
            'multipart/form-data; boundary="xx"',
            "multipart/form-data",
            FORM,
            FORM + "; charset=latin-1",
            "application/json",
            "text/plain",
            "",
        ]
    ),
    st.text(max_size=80),
)


def _mutations(base: bytes) -> st.SearchStrategy[bytes]:
    """`base` cut at a random point, with a byte changed, or with random bytes inserted."""
    return st.one_of(
        st.integers(0, len(base)).map(lambda i: base[:i]),
        st.tuples(st.integers(0, len(base) - 1), st.integers(0, 255)).map(
            lambda t: base[: t[0]] + bytes([t[1]]) + base[t[0] + 1 :]
        ),
        st.tuples(st.integers(0, len(base)), st.binary(max_size=20)).map(
            lambda t: base[: t[0]] + t[1] + base[t[0] :]
        ),
    )


_bodies = st.one_of(
    st.binary(max_size=300),
    _mutations(GOOD_MP),
    _mutations(b"endpoint=h1&metric=m&status=PROBLEM&stra_id=3&tags=a%3Ab"),
    _mutations(b'{"endpoint": "h1", "metric": "m", "status": "OK", "stra_id": 3}'),
)


@settings(max_examples=500, deadline=None)
@given(_ctypes, _bodies)
def test_any_body_parses_or_is_rejected_with_a_reason(ctype: str, body: bytes) -> None:
    try:
        pairs = parse_alarm_body(ctype, body)
    except AlarmError as e:
        assert str(e) and 400 <= e.status < 500
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in pairs)
