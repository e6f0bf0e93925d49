"""The graph-history client for a warm start (PRODUCT §9, PROTOCOLS.md B.4), against the falcon-plus API
fake and the shipped example answer; the pure helpers the warm start (oceand/warm.py) uses to find a
selector's series in the graph."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from oceand.falcon_history import (
    HistoryError,
    Series,
    bucket_values,
    counter,
    counter_matches,
    endpoint_regex,
    fetch_history,
    history_body,
    parse_history,
)
from tests.fakes.falcon_api import DEFAULT_TOKEN, FalconFake

EXAMPLE = Path(__file__).parent / "data" / "falcon_api_graph_history_response.json"  # PROTOCOLS.md B.4


@pytest.mark.parametrize(
    ("metric", "tags", "want"),
    [
        pytest.param("cpu.idle", {}, "cpu.idle", id="no tags"),
        pytest.param(
            "app.qps", {"group": "prod", "app": "web"}, "app.qps/app=web,group=prod", id="keys sorted"
        ),
    ],
)
def test_counter_names_as_the_graph_stores_them(metric: str, tags: dict[str, str], want: str) -> None:
    assert counter(metric, tags) == want


def test_the_example_answer_parses_without_its_null_and_unknown_series() -> None:
    series = parse_history(EXAMPLE.read_bytes())
    assert series == [Series("app-web-01", "app.qps/app=web,group=prod", 60, [(1700000040, 1210.0)])]


PARSE = [
    pytest.param(b"[null]", [], id="a timed-out query (nil response)"),
    pytest.param(
        b'[{"endpoint":"","counter":"","dstype":"","step":0,"Values":null}]', [], id="empty response"
    ),
    pytest.param(
        b'[{"endpoint":"h","counter":"c","dstype":"GAUGE","step":60,"Values":[{"timestamp":60,"value":1.500000},'
        b'{"timestamp":120,"value":null},{"timestamp":"x","value":2},{"timestamp":180,"value":true}]}]',
        [Series("h", "c", 60, [(60, 1.5)])],
        id="nulls and odd points left out",
    ),
]


@pytest.mark.parametrize(("body", "want"), PARSE)
def test_parse_history(body: bytes, want: list[Series]) -> None:
    assert parse_history(body) == want


@pytest.mark.parametrize("body", [b"<html>", b'{"error":"x"}'], ids=["not JSON", "not an array"])
def test_parse_history_refuses_what_is_not_an_answer(body: bytes) -> None:
    with pytest.raises(HistoryError):
        parse_history(body)


def test_bucket_values_take_each_endpoints_last_value_then_the_aggregate() -> None:
    series = [
        Series("a", "cpu.idle", 10, [(100, 10.0), (105, 30.0), (110, 50.0)]),
        Series("b", "cpu.idle", 10, [(101, 20.0), (125, 70.0)]),
    ]
    assert bucket_values(series, 10, "avg", 100, 140) == [
        (100, 25.0, 2),  # a: 30 (its last), b: 20
        (110, 50.0, 1),
        (120, 70.0, 1),
        (130, None, 0),
    ]


async def test_fetch_history_from_the_falcon_plus_api(falcon: FalconFake) -> None:
    falcon.graphs[("h1", "cpu.idle")] = ("GAUGE", 60, [(60, 10.0), (120, None), (180, 30.0)])
    falcon.timeout.add(("h2", "cpu.idle"))
    body = history_body(["h1", "h2", "h3"], ["cpu.idle"], 30, 200, step=60)  # 0 fails "required"
    async with aiohttp.ClientSession() as s:
        got = await fetch_history(s, falcon.url, "oceand", DEFAULT_TOKEN, body)
        assert got == [Series("h1", "cpu.idle", 60, [(60, 10.0), (180, 30.0)])]  # h2 null, h3 unknown
        assert falcon.history_queries == [body]
        with pytest.raises(HistoryError) as info:
            await fetch_history(s, falcon.url, "oceand", "wrong-token-5b7", body)
        assert "401" in str(info.value) and "wrong-token-5b7" not in str(info.value)
        with pytest.raises(HistoryError) as info:
            await fetch_history(s, falcon.url, "oceand", DEFAULT_TOKEN, {**body, "hostnames": []})
        assert "400" in str(info.value) and "HostNames" in str(info.value)


@pytest.mark.parametrize(
    ("name", "tags", "want"),
    [
        pytest.param("cpu.idle", {}, "cpu.idle", id="bare counter, no tags wanted"),
        pytest.param("proc.qps/job=web", {"job": "web"}, "proc.qps", id="exact tags"),
        pytest.param("proc.qps/job=web,port=80", {"job": "web"}, "proc.qps", id="more tags than wanted"),
        pytest.param("proc.qps/job=webx", {"job": "web"}, None, id="another tag value"),
        pytest.param("proc.qps", {"job": "web"}, None, id="a wanted tag missing"),
        pytest.param("proc.qpsx/job=web", {"job": "web"}, None, id="another metric with the same prefix"),
        pytest.param("cpu.idle/core=1", {}, "cpu.idle", id="the raw metric of a derived one"),
        pytest.param("proc.qps/url=/a=b", {"url": "/a=b"}, "proc.qps", id="a value holding = and /"),
    ],
)
def test_counter_matches_as_a_selector_matches_a_sample(
    name: str, tags: dict[str, str], want: str | None
) -> None:
    assert counter_matches(name, ("proc.qps", "cpu.idle"), tags) == want


@pytest.mark.parametrize(
    ("name", "want"),
    [
        pytest.param("proc.qps/job=web,container=c1", "proc.qps", id="the instance tag and the selector's"),
        pytest.param("proc.qps/container=c1,job=web,port=80", "proc.qps", id="more tags, any order"),
        pytest.param("proc.qps/job=web", None, id="no instance tag: not the job's, as live"),
        pytest.param("proc.qps/job=web,container=", None, id="an empty instance tag"),
        pytest.param("proc.qps/job=other,container=c1", None, id="the instance tag on another job's"),
    ],
)
def test_counter_matches_with_an_instance_tag_needs_that_tag(name: str, want: str | None) -> None:
    assert counter_matches(name, ("proc.qps",), {"job": "web"}, "container") == want


@pytest.mark.parametrize(
    ("pattern", "want"),
    [
        pytest.param("web-1.example.com", r"^web\-1\.example\.com$", id="exact: anchored, dots literal"),
        pytest.param("web-*", r"^web\-.*$", id="star"),
        pytest.param("web-?", r"^web\-.$", id="question mark"),
        pytest.param("web-[12]", r"^web\-[12]$", id="class kept"),
        pytest.param("web-[!12]", r"^web\-[^12]$", id="negated class"),
        pytest.param("a b", "^a[[:space:]]b$", id="space: q is split on spaces"),
    ],
)
def test_endpoint_globs_become_mysql_regexps(pattern: str, want: str) -> None:
    assert endpoint_regex(pattern) == want
