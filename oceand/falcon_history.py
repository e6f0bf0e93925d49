"""Falcon graph history for a warm start (PRODUCT §9; PROTOCOLS.md B.4): the client (oceand/warm.py uses it).

`POST {api}/api/v1/graph/history` (falcon-plus `modules/api/app/controller/graph/graph_controller.go`
`QueryGraphDrawData`, behind the same `Apitoken` auth as the team endpoint) with `hostnames`,
`counters`, `consol_fun`, `start_time`, `end_time` and `step`. The answer is a JSON array of
`GraphQueryResponse` (`common/model/graph.go`): `endpoint`, `counter`, `dstype`, `step` and `Values`
(capital V) of `{timestamp, value}`, value `null` for NaN/Inf. What the API does on a graph error is
kept in mind: an element may be `null` (a timed-out query), or an empty response (`"endpoint":""`,
`"Values":null`); a series the graph does not know has `dstype` `""` and no values. Each is skipped.

`GET {api}/api/v1/graph/endpoint?q=&tags=&limit=` (`EndpointRegexpQuery`) finds the endpoints of a
selector that names no hosts: `q` terms are MySQL `REGEXP` searches on the endpoint name, `tags` terms
`LIKE %term%` on one of its counters.

`bucket_values` turns the series into the per-period job values the live buckets would have produced
(oceand/ingest.py): per instance (the endpoint, or the value of the job's `instance_tag`) the last value
in each period, then the rule's aggregate over the instances that reported. What the rules take from them
is policies/warm.py's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from oceand.falcon_notify import Outcome, apitoken, request
from oceand.ingest import aggregate
from policies.redact import REDACTED, redact_url


@dataclass(frozen=True, slots=True)
class Series:
    endpoint: str
    counter: str
    step: int
    points: list[tuple[int, float]]  # (timestamp, value), nulls left out


class HistoryError(Exception):
    pass


def counter(metric: str, tags: dict[str, str]) -> str:
    """The graph's counter name: `metric`, or `metric/k1=v1,k2=v2` with the keys sorted (B.2)."""
    if not tags:
        return metric
    return metric + "/" + ",".join(f"{k}={tags[k]}" for k in sorted(tags))


def history_body(
    hostnames: list[str], counters: list[str], start: int, end: int, step: int = 0, cf: str = "AVERAGE"
) -> dict[str, Any]:
    """`APIQueryGraphDrawData`; `step` 0 lets the API look it up per series (unknown ones are skipped).
    Every field but `step` is `binding:"required"`: a zero `start` or an empty list is a 400."""
    return {
        "hostnames": hostnames,
        "counters": counters,
        "consol_fun": cf,
        "start_time": start,
        "end_time": end,
        "step": step,
    }


def parse_history(body: bytes) -> list[Series]:
    """The API's answer, without the nulls, the empty responses and the unknown series."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise HistoryError(f"not JSON: {e}") from None
    if not isinstance(data, list):
        raise HistoryError("not a JSON array of graph responses")
    out: list[Series] = []
    for item in data:
        if not isinstance(item, dict) or not item.get("endpoint") or not item.get("dstype"):
            continue
        values = item.get("Values") or []
        points: list[tuple[int, float]] = []
        for v in values if isinstance(values, list) else []:
            if not isinstance(v, dict):
                continue
            ts, value = v.get("timestamp"), v.get("value")
            if isinstance(value, bool) or not isinstance(value, int | float) or not isinstance(ts, int):
                continue
            if math.isfinite(value):
                points.append((ts, float(value)))
        step = item.get("step")
        out.append(
            Series(
                str(item["endpoint"]),
                str(item.get("counter", "")),
                step if isinstance(step, int) else 0,
                points,
            )
        )
    return out


def bucket_values(
    series: list[Series], period: int, agg: str, start: int, end: int
) -> list[tuple[int, float | None, int]]:
    """(bucket start, aggregate, reporters) for every period-aligned bucket in [start, end): per
    instance its last value in the bucket, then `agg` over the instances (None: nobody reported). A
    series' instance is its `endpoint` field: the graph endpoint, or for a job with `instance_tag` the
    value of that tag, which oceand/warm.py puts there, as the live buckets key their samples."""
    first = start - start % period
    last: dict[int, dict[str, tuple[int, float]]] = {}
    for s in series:
        for ts, value in s.points:
            if start <= ts < end:
                b = last.setdefault(ts - ts % period, {})
                prev = b.get(s.endpoint)
                if prev is None or prev[0] <= ts:
                    b[s.endpoint] = (ts, value)
    out: list[tuple[int, float | None, int]] = []
    for b_start in range(first, end, period):
        per = last.get(b_start, {})
        out.append((b_start, aggregate(agg, [v for _, v in per.values()]), len(per)))
    return out


POINT_BYTES = 64  # room per point in an answer (`{"timestamp":1700000040,"value":1210.000000},` is 45)


async def fetch_history(
    session: aiohttp.ClientSession,
    api: str,
    user: str,
    token: str,
    body: dict[str, Any],
    max_points: int = 65536,
) -> list[Series]:
    """One history query (one try: a warm start that fails starts cold); an answer longer than
    `max_points` points would take (plus 1 MiB) is refused unread."""
    url = f"{api}/api/v1/graph/history"
    headers = {"Apitoken": apitoken(user, token)}
    limit = max_points * POINT_BYTES + 1024**2
    out: Outcome = await request(session, "POST", url, max_answer=limit, json=body, headers=headers)
    if not out.ok:
        error = out.error.replace(token, REDACTED) if token else out.error
        raise HistoryError(f"POST {redact_url(url)} {error}")
    return parse_history(out.body)


def endpoint_regex(pattern: str) -> str:
    """A selector's endpoint (exact, or a glob with `*`, `?`, `[...]`) as an anchored MySQL regular
    expression (what `EndpointRegexpQuery`'s `q` takes; it splits on spaces, so a space is `[[:space:]]`)."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end]
            out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
            i = end
        elif c == " ":
            out.append("[[:space:]]")
        else:
            out.append(re.escape(c) if not c.isalnum() else c)
        i += 1
    return "^" + "".join(out) + "$"


def counter_tags(name: str) -> dict[str, str]:
    """The tags of a graph counter (`metric/k=v,...`; none for a bare `metric`)."""
    rest = name.partition("/")[2]
    return dict(kv.split("=", 1) for kv in rest.split(",") if "=" in kv) if rest else {}


def counter_matches(
    name: str, metrics: tuple[str, ...], tags: dict[str, str], instance_tag: str | None = None
) -> str | None:
    """The metric of a graph counter (`metric` or `metric/k=v,...`) when it is one of `metrics` and carries
    every `k=v` of `tags` (it may carry more, as a selector allows) and, with `instance_tag`, a non-empty
    value of that tag (a live sample without it is not the job's: oceand/ingest.py); else None."""
    metric = name.partition("/")[0]
    if metric not in metrics:
        return None
    have = counter_tags(name)
    if instance_tag is not None and not have.get(instance_tag):
        return None
    return metric if all(have.get(k) == v for k, v in tags.items()) else None


async def _get_json(
    session: aiohttp.ClientSession, api: str, user: str, token: str, path: str, params: Any
) -> list[Any]:
    url = f"{api}{path}"
    out: Outcome = await request(
        session, "GET", url, params=params, headers={"Apitoken": apitoken(user, token)}
    )
    if not out.ok:
        error = out.error.replace(token, REDACTED) if token else out.error
        raise HistoryError(f"GET {redact_url(url)} {error}")
    try:
        data = orjson.loads(out.body)
    except orjson.JSONDecodeError as e:
        raise HistoryError(f"GET {path}: not JSON: {e}") from None
    if not isinstance(data, list):
        raise HistoryError(f"GET {path}: not a JSON array")
    return data


def _endpoints(data: list[Any]) -> dict[int, str]:
    return {
        e["id"]: e["endpoint"]
        for e in data
        if isinstance(e, dict) and isinstance(e.get("id"), int) and isinstance(e.get("endpoint"), str)
    }


async def fetch_endpoints(
    session: aiohttp.ClientSession,
    api: str,
    user: str,
    token: str,
    q: str,
    tags: dict[str, str],
    limit: int,
) -> dict[int, str]:
    """`EndpointRegexpQuery`: the graph's endpoints (id -> name) whose name matches `q` (a regex; "" for
    any) and that have a counter with every `k=v` of `tags`; at most `limit`."""
    params = {"limit": str(limit)}
    if q:
        params["q"] = q
    if tags:
        params["tags"] = ",".join(f"{k}={v}" for k, v in sorted(tags.items()))
    found = _endpoints(await _get_json(session, api, user, token, "/api/v1/graph/endpoint", params))
    return dict(list(found.items())[:limit])


async def fetch_endpoint_ids(
    session: aiohttp.ClientSession, api: str, user: str, token: str, names: list[str]
) -> dict[int, str]:
    """`EndpointObjGet`: the graph's ids of these endpoint names (those it does not know are left out)."""
    params = [("endpoints", n) for n in names]
    return _endpoints(await _get_json(session, api, user, token, "/api/v1/graph/endpointobj", params))


async def fetch_counters(
    session: aiohttp.ClientSession,
    api: str,
    user: str,
    token: str,
    ids: list[int],
    metrics: tuple[str, ...],
    limit: int,
) -> list[tuple[int, str]]:
    """`EndpointCounterRegexpQuery`: (endpoint id, counter) of these endpoints whose metric is one of
    `metrics` (a MySQL regexp on the counter: `^(m1|m2)(/|$)`), at most `limit`."""
    pattern = "^(" + "|".join(re.escape(m) for m in metrics) + ")(/|$)"
    params = {"eid": ",".join(map(str, ids)), "metricQuery": pattern, "limit": str(limit)}
    data = await _get_json(session, api, user, token, "/api/v1/graph/endpoint_counter", params)
    return [
        (c["endpoint_id"], c["counter"])
        for c in data
        if isinstance(c, dict) and isinstance(c.get("endpoint_id"), int) and isinstance(c.get("counter"), str)
    ]
