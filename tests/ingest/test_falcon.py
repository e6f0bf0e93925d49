"""Falcon push items and alarm callbacks: the transfer's rules, item by item (PROTOCOLS.md B.2, B.3)."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.falcon import AlarmError, check_timestamp, parse_alarm, parse_tags
from collectors.falcon_items import check_items, decode_items, split_body
from collectors.falcon_rpc import decode_update, update_typed
from oceand.ingest import ClosedBucket, Ingestor, JobBuckets, PushResult
from policies.document import JobDocument

NOW = 1_700_000_005.0
T = 1_700_000_001
JOB = "job.web_cop.xiaomi"


def item(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "endpoint": "host-1",
        "metric": "cpu.idle",
        "timestamp": T,
        "step": 10,
        "value": 30,
        "counterType": "GAUGE",
        "tags": f"job={JOB}",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not DROP}


DROP = object()


def push(ing: Ingestor, items: list[Any], now: float = NOW) -> PushResult:
    """The push endpoint's way in: the body as bytes, decoded by the fast decoder when every item has the
    usual shape, by orjson and checked item by item otherwise."""
    body = orjson.dumps(items)
    fast = decode_items(body)
    return ing.ingest_items(fast, now) if fast else ing.ingest(orjson.loads(body), now)


def tolerant(ing: Ingestor, items: list[Any], now: float = NOW) -> PushResult:
    return ing.ingest(items, now)


WAYS = [pytest.param(push, id="body"), pytest.param(tolerant, id="items")]


def job_doc(**doc_over: Any) -> JobDocument:
    return JobDocument.model_validate(
        {
            "job": JOB,
            "target": {"cluster": "lg", "app": "/web"},
            "rules": [
                {"name": "cpu", "type": "threshold", "metric": "cpu.used", "scale_out": {"above": 80}},
                {"name": "qps", "type": "target", "metric": "proc.qps", "target": 100, "aggregate": "sum"},
            ],
            **doc_over,
        }
    )


def ingestor(**doc_over: Any) -> tuple[Ingestor, JobBuckets]:
    doc = job_doc(**doc_over)
    jb = JobBuckets(JOB, int(doc.period), 5.0, [(r.name, r.aggregate) for r in doc.metric_rules()])
    jb.start(NOW)
    ing = Ingestor()
    ing.set_jobs([(doc, jb)])
    return ing, jb


@pytest.mark.parametrize(
    ("it", "reason"),
    [
        pytest.param(item(metric=""), "metric", id="empty metric"),
        pytest.param(item(metric="kernel.hostname"), "kernel.hostname", id="kernel.hostname"),
        pytest.param(item(endpoint=""), "endpoint", id="empty endpoint"),
        pytest.param(item(endpoint=12), "endpoint", id="endpoint not a string"),
        pytest.param(item(counterType="GAUGES"), "counterType", id="unknown counterType"),
        pytest.param(item(step=0), "step", id="step 0"),
        pytest.param(item(step=-10), "step", id="negative step"),
        pytest.param(item(step="10"), "step", id="step as a string"),
        pytest.param(item(step=True), "step", id="step as a bool"),
        pytest.param(item(value=""), "value", id="empty value"),
        pytest.param(item(value="abc"), "value", id="non-numeric value"),
        pytest.param(item(value="NaN"), "value", id="NaN string"),
        pytest.param(item(value="inf"), "value", id="Infinity string"),
        pytest.param(item(value=None), "value", id="null value"),
        pytest.param(item(value=[1]), "value", id="list value"),
        pytest.param(item(value=True), "value", id="bool value"),
        pytest.param(item(tags=["job=x"]), "tags: not a string", id="tags as a list"),
        pytest.param(item(tags=5), "tags", id="tags as a number"),
        pytest.param(item(metric="m" * 300, tags="k=" + "v" * 300), "510", id="metric+tags over 510"),
        pytest.param(item(metric="m" * 100, tags="k=" + "v" * 409), "510", id="metric+tags 511"),
        pytest.param(item(metric="m" * 10, tags=f"job={JOB}," + "v" * 600), "510", id="tags of 600"),
        pytest.param(item(endpoint=DROP), "endpoint: missing", id="missing endpoint"),
        pytest.param(item(value=DROP), "value: missing", id="missing value"),
        pytest.param("cpu.idle", "not an object", id="item is a string"),
        pytest.param(None, "not an object", id="item is null"),
    ],
)
@pytest.mark.parametrize("way", WAYS)
def test_invalid_items_are_rejected_and_the_rest_kept(it: Any, reason: str, way: Any) -> None:
    ing, jb = ingestor()
    res = way(ing, [item(value=10), it, item(endpoint="host-2", value=20)])
    assert (res.total, res.invalid) == (3, 1)
    assert reason in res.reasons[0] and res.reasons[0].startswith("[1]")
    closed = jb.due(NOW + 20)
    assert closed[0].values["cpu"] == pytest.approx(85.0)  # 100 - avg(10, 20): both valid items kept


@pytest.mark.parametrize(
    ("it", "cpu"),
    [
        pytest.param(item(value="25.5"), 74.5, id="numeric string value"),
        pytest.param(item(value=25), 75.0, id="integer value"),
        pytest.param(item(tags=DROP), None, id="missing tags: no job tag, not routed"),
        pytest.param(item(tags=f" job = {JOB} ,x=1"), 70.0, id="spaces in tags removed as Falcon does"),
        pytest.param(item(tags=f"junk,job={JOB}"), 70.0, id="tag pieces without = ignored"),
        pytest.param(item(tags="job=other"), None, id="another job's sample"),
        pytest.param(item(metric="cpu.used", value=61), 61.0, id="cpu.used pushed directly"),
        pytest.param(item(timestamp=0), 70.0, id="timestamp 0 replaced by now"),
        pytest.param(item(timestamp=10 * int(NOW)), 70.0, id="future timestamp replaced by now"),
        pytest.param(item(timestamp="x"), 70.0, id="timestamp not a number replaced by now"),
        pytest.param(item(timestamp=T + 0.7), 70.0, id="fractional timestamp"),
        pytest.param(item(tags=f"job={JOB}," + "k=" * 150), 70.0, id="metric+tags of 310"),
        pytest.param(item(tags=f"job={JOB},ünï=çødé"), 70.0, id="unicode in tags"),
    ],
)
@pytest.mark.parametrize("way", WAYS)
def test_accepted_items(it: dict[str, Any], cpu: float | None, way: Any) -> None:
    ing, jb = ingestor()
    res = way(ing, [it])
    assert res.invalid == 0, res.reasons
    assert jb.due(NOW + 20)[0].values["cpu"] == (pytest.approx(cpu) if cpu is not None else None)


def test_counter_becomes_a_rate_and_resets_are_dropped() -> None:
    ing, jb = ingestor()
    c = {"metric": "proc.qps", "counterType": "COUNTER"}
    ing.ingest([item(**c, timestamp=T - 20, value=1000)], NOW)  # first sample: no rate, too old anyway
    ing.ingest([item(**c, timestamp=T - 10, value=1500)], NOW)  # rate 50 into an old (closed) bucket
    ing.ingest([item(**c, timestamp=T, value=2500)], NOW)  # rate 100 in this bucket
    ing.ingest([item(**c, endpoint="host-2", timestamp=T - 10, value=100)], NOW)
    ing.ingest([item(**c, endpoint="host-2", timestamp=T, value=50)], NOW)  # counter reset: dropped
    closed = jb.due(NOW + 20)
    assert closed[0].values["qps"] == pytest.approx(100.0)
    assert closed[0].per_rule_reporters["qps"] == 1


def test_instance_tag_tells_tasks_on_one_host_apart() -> None:
    ing, jb = ingestor(instance_tag="container")
    ing.ingest(
        [
            item(value=10, tags=f"job={JOB},container=a"),
            item(value=30, tags=f"job={JOB},container=b"),
            item(value=50, tags=f"job={JOB}"),  # no container tag: cannot be placed
        ],
        NOW,
    )
    closed = jb.due(NOW + 20)[0]
    assert closed.reporters == 2 and closed.values["cpu"] == pytest.approx(80.0)


def test_selector_on_endpoint_glob_and_tags() -> None:
    ing, jb = ingestor(
        rules=[
            {
                "name": "cpu",
                "type": "threshold",
                "metric": "cpu.used",
                "scale_out": {"above": 80},
                "selector": {"endpoint": "web-*", "tags": {"idc": "lg"}},
            }
        ]
    )
    ing.ingest(
        [
            item(endpoint="web-1", tags="idc=lg", value=10),
            item(endpoint="db-1", tags="idc=lg", value=90),
            item(endpoint="web-2", tags="idc=c3", value=90),
        ],
        NOW,
    )
    assert jb.due(NOW + 20)[0].values["cpu"] == pytest.approx(90.0)


@pytest.mark.parametrize("way", WAYS)
def test_one_series_feeds_every_rule_and_job_that_watches_it(way: Any) -> None:
    """cpu.idle feeds a cpu.used rule (inverted) and a cpu.idle rule of one job, and another job's rule."""
    rules = [
        {"name": "used", "type": "threshold", "metric": "cpu.used", "scale_out": {"above": 80}},
        {"name": "idle", "type": "threshold", "metric": "cpu.idle", "scale_out": {"above": 80}},
    ]
    docs = [
        JobDocument.model_validate({"job": JOB, "target": {"cluster": "lg", "app": "/web"}, "rules": rules}),
        JobDocument.model_validate(
            {
                "job": "job.other",
                "target": {"cluster": "lg", "app": "/other"},
                "rules": [{**rules[1], "selector": {"tags": {"idc": "lg"}}}],
            }
        ),
    ]
    jbs = [JobBuckets(d.job, 10, 5.0, [(r.name, r.aggregate) for r in d.metric_rules()]) for d in docs]
    for jb in jbs:
        jb.start(NOW)
    ing = Ingestor()
    ing.set_jobs(zip(docs, jbs, strict=True))
    res = way(ing, [item(value=30, tags=f"job={JOB},idc=lg"), item(endpoint="host-2", value=50)])
    assert res.invalid == 0
    mine, other = (jb.due(NOW + 20)[0] for jb in jbs)
    assert mine.values == {"used": pytest.approx(60.0), "idle": pytest.approx(40.0)}
    assert other.values == {"idle": pytest.approx(30.0)}


def test_parse_tags() -> None:
    assert parse_tags("b=2, a = 1,c,=x,d=e=f") == {"b": "2", "a": "1", "d": "e=f"}
    assert parse_tags("") == {}


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=8)
    ),
    max_leaves=20,
)
_field = {
    "endpoint": st.one_of(st.text(max_size=30), _json),
    "metric": st.one_of(st.sampled_from(["cpu.idle", "proc.qps", "cpu.used", "", "kernel.hostname"]), _json),
    "timestamp": st.one_of(st.integers(min_value=-(2**40), max_value=2**40), _json),
    "step": st.one_of(st.integers(min_value=-5, max_value=100), _json),
    "value": st.one_of(
        st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=8), _json
    ),
    "counterType": st.one_of(st.sampled_from(["GAUGE", "COUNTER", "DERIVE", "gauge"]), _json),
    "tags": st.one_of(
        st.sampled_from([f"job={JOB}", "", f"job={JOB},container=c1"]), st.text(max_size=40), _json
    ),
}
_item = st.fixed_dictionaries({}, optional=_field)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_item, _json), min_size=1, max_size=30))
def test_any_body_is_counted_never_raises(items: list[Any]) -> None:
    ing, jb = ingestor()
    res = ing.ingest(items, NOW)
    assert res.total == len(items)
    assert 0 <= res.invalid <= res.total
    assert len(res.reasons) == min(res.invalid, 5)
    for closed in jb.due(NOW + 1000):
        for v in closed.values.values():
            assert v is None or math.isfinite(v)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_item, _item, _json), min_size=1, max_size=30))
def test_the_fast_decoder_and_the_tolerant_path_agree(items: list[Any]) -> None:
    """Whatever the body, the push endpoint's two ways through give the same counts, reasons and buckets."""
    try:
        body = orjson.dumps(items)
    except TypeError:  # integers past 64 bits: no client can send those as JSON numbers here
        return
    a_ing, a_jb = ingestor()
    b_ing, b_jb = ingestor()
    fast = decode_items(body)
    a = a_ing.ingest_items(fast, NOW) if fast else a_ing.ingest(orjson.loads(body), NOW)
    b = b_ing.ingest(orjson.loads(body), NOW)
    assert (a.total, a.invalid, a.reasons, a.completed) == (b.total, b.invalid, b.reasons, b.completed)
    assert a_jb.due(NOW + 1000) == b_jb.due(NOW + 1000)


@pytest.mark.parametrize(
    ("body", "fast"),
    [
        pytest.param(orjson.dumps([item(), item(value=1.5)]), True, id="agent body"),
        pytest.param(orjson.dumps([item(tags=DROP)]), True, id="no tags"),
        pytest.param(orjson.dumps([item(metric="kernel.hostname")]), True, id="refused metric: by its route"),
        pytest.param(orjson.dumps([item(), item(value="1")]), False, id="one numeric string value"),
        pytest.param(orjson.dumps([item(timestamp=1.5)]), False, id="fractional timestamp"),
        pytest.param(orjson.dumps([item(endpoint="")]), False, id="empty endpoint"),
        pytest.param(orjson.dumps([item(step=0)]), False, id="step 0"),
        pytest.param(orjson.dumps([item(counterType="gauge")]), False, id="lower-case counterType"),
        pytest.param(orjson.dumps([item(metric="m" * 129)]), False, id="metric past the fast bound"),
        pytest.param(orjson.dumps([item(value=True)]), False, id="bool value"),
        pytest.param(b'[{"value": 1e400}]', False, id="number out of range"),
        pytest.param(b"[NaN]", False, id="NaN literal"),
        pytest.param(b'[{"endpoint": "\xff"}]', False, id="invalid UTF-8"),
        pytest.param(b'{"a": 1}', False, id="an object"),
        pytest.param(b"", False, id="empty"),
    ],
)
def test_which_bodies_the_fast_decoder_takes(body: bytes, fast: bool) -> None:
    assert (decode_items(body) is not None) == fast


@pytest.mark.parametrize(
    ("params", "error"),
    [
        pytest.param(
            {"metric": "cpu.idle", "status": "PROBLEM", "stra_id": "1"}, "endpoint", id="no endpoint"
        ),
        pytest.param({"endpoint": "h", "status": "PROBLEM", "stra_id": "1"}, "metric", id="no metric"),
        pytest.param(
            {"endpoint": "h", "metric": "m", "status": "BAD", "stra_id": "1"}, "status", id="bad status"
        ),
        pytest.param(
            {"endpoint": "h", "metric": "m", "status": "OK"}, "stra_id", id="neither stra_id nor exp_id"
        ),
        pytest.param(
            {"endpoint": "h", "metric": "m", "status": "OK", "stra_id": "x"}, "stra_id", id="stra_id not int"
        ),
        pytest.param(
            {"endpoint": "h", "metric": "m", "status": "OK", "stra_id": "1", "step": "1.5"},
            "step",
            id="step not int",
        ),
    ],
)
def test_bad_alarm_callbacks(params: dict[str, str], error: str) -> None:
    with pytest.raises(AlarmError, match=error):
        parse_alarm(params, NOW)


def test_alarm_callback_as_falcon_sends_it() -> None:
    ev = parse_alarm(
        {
            "endpoint": "app-web-01",
            "metric": "app.qps",
            "status": "PROBLEM",
            "step": "1",
            "priority": "0",
            "time": "2023-11-14 22:13:20",
            "tpl_id": "12",
            "exp_id": "0",
            "stra_id": "345",
            "left_value": "1234.5",
            "tags": "app:web,group:prod",
        },
        NOW,
    )
    assert (ev.stra_id, ev.exp_id, ev.status, ev.left_value) == (345, 0, "PROBLEM", 1234.5)
    assert ev.tags == {"app": "web", "group": "prod"}


# ---- the timestamp window (issue 18 item 1) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "reason"),
    [
        pytest.param(2 * int(NOW) - 100, "ahead", id="just under 2 x now"),
        pytest.param(int(NOW) + 1_000_000, "ahead", id="11.6 days ahead"),
        pytest.param(int(NOW) + 20, "ahead", id="two periods ahead"),
        pytest.param(int(NOW) - 601, "old", id="older than the job's window"),
    ],
)
@pytest.mark.parametrize("way", WAYS)
def test_timestamps_outside_the_window_are_rejected_item_by_item(ts: int, reason: str, way: Any) -> None:
    ing, jb = ingestor()
    res = way(ing, [item(value=10), item(endpoint="host-2", timestamp=ts, value=20)])
    assert (res.total, res.invalid) == (2, 1)
    assert res.reasons[0].startswith("[1] timestamp:") and reason in res.reasons[0], res.reasons
    assert (res.too_new, res.too_old) == ((1, 0) if reason == "ahead" else (0, 1))
    assert list(jb.open) == [T - T % 10]  # nothing opened for the rejected item
    assert jb.due(NOW + 20)[0].values["cpu"] == pytest.approx(90.0)


@pytest.mark.parametrize(
    ("ts", "bucket"),
    [
        pytest.param(int(NOW) + 10, T - T % 10 + 10, id="one period ahead: the next bucket"),
        pytest.param(int(NOW) - 600, int(NOW) - 600, id="as old as the window: counted late"),
        pytest.param(1000 * int(NOW), T - T % 10, id="milliseconds: replaced by now as transfer does"),
    ],
)
def test_timestamps_inside_the_window_are_kept(ts: int, bucket: int) -> None:
    ing, jb = ingestor()
    res = push(ing, [item(timestamp=ts)])
    assert res.invalid == 0
    assert list(jb.open) == ([bucket] if bucket >= jb.closed_upto else []) and jb.late == (
        bucket < jb.closed_upto
    )


def test_a_future_counter_sample_does_not_stop_the_series_rates() -> None:
    ing, jb = ingestor()
    c = {"metric": "proc.qps", "counterType": "COUNTER"}
    ing.ingest([item(**c, timestamp=T - 10, value=1000)], NOW)
    assert ing.ingest([item(**c, timestamp=T + 1_000_000, value=0)], NOW).invalid == 1
    ing.ingest([item(**c, timestamp=T, value=1500)], NOW)
    assert jb.due(NOW + 20)[0].values["qps"] == pytest.approx(50.0)


def test_the_window_is_the_jobs_own() -> None:
    ing, jb = ingestor(period=60)
    assert (jb.max_ahead, jb.max_age) == (60.0, 3600.0)  # one period ahead, a window of 60 periods back
    jb.max_ahead, jb.max_age = 100.0, 50.0
    ing.set_job(job_doc(period=60), jb)  # routes resolved afresh see the job's bounds
    res = push(ing, [item(timestamp=int(NOW) + 90), item(timestamp=int(NOW) - 60)])
    assert res.invalid == 1 and "old" in res.reasons[0]


def _two_jobs(ahead_b: float) -> tuple[Ingestor, JobBuckets, JobBuckets]:
    """job A with the default bounds (10 s ahead), job B with `ahead_b`; each takes its own series."""
    ing = Ingestor()
    jbs = []
    for name, ahead in ((JOB, -1.0), (JOB + ".b", ahead_b)):
        rule = {"name": "cpu", "type": "threshold", "metric": "cpu.used", "scale_out": {"above": 80}}
        jb = JobBuckets(name, 10, 5.0, [("cpu", "avg")], max_ahead=ahead)
        jb.start(NOW)
        ing.set_job(job_doc(job=name, rules=[rule]), jb)
        jbs.append(jb)
    return ing, jbs[0], jbs[1]


@pytest.mark.parametrize(
    ("stamps", "taken"),
    [
        pytest.param([T, T], (1, 1), id="one time within every job's bounds: checked once for the body"),
        pytest.param([T + 20, T + 20], (0, 1), id="one time past A's bound, within B's"),
        pytest.param([T + 20, T], (0, 1), id="two times, A's past its bound"),
        pytest.param([0, T + 20], (1, 1), id="a zero timestamp: replaced by now, as transfer does"),
        pytest.param([T, int(NOW) - 601], (1, 0), id="B's older than the window"),
    ],
)
@pytest.mark.parametrize("way", WAYS)
def test_each_job_keeps_its_own_timestamp_bounds_in_a_shared_body(
    stamps: list[int], taken: tuple[int, int], way: Any
) -> None:
    """A body whose times all lie within the tightest bounds of the jobs is checked once; otherwise each
    item against its own jobs' bounds."""
    ing, a, b = _two_jobs(ahead_b=30.0)
    body = [item(timestamp=stamps[0], tags=f"job={JOB}"), item(timestamp=stamps[1], tags=f"job={JOB}.b")]
    res = way(ing, body)
    got = tuple(sum(len(bk.values[0]) for bk in jb.open.values()) + jb.late for jb in (a, b))
    assert got == taken, res.reasons
    assert res.invalid == 2 - sum(taken) and len(res.reasons) == res.invalid


# ---- large bodies in pieces (issue 18 item 4) --------------------------------------------------------------

_tricky = st.sampled_from(["},{", '"},{"', "1,2", '"a", 1', "],[", "} , {", '\\"},{\\"', "[{},{}]"])
_piece_value = st.one_of(_json, _item, st.lists(_tricky | _json, max_size=3), _tricky)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(_piece_value, min_size=1, max_size=30),
    st.integers(min_value=1, max_value=60),
    st.sampled_from([b"", b" ", b"\n  "]),
)
def test_a_body_cut_in_pieces_decodes_to_the_same_items_or_not_at_all(
    items: list[Any], size: int, space: bytes
) -> None:
    """Whenever every piece decodes, the pieces' items put end to end are the body's, for orjson and for
    the fast decoder: a cut inside a string or a nested value always makes its piece invalid."""
    try:
        body = orjson.dumps(items)
    except TypeError:  # integers past 64 bits
        return
    if space:  # white space around the commas and brackets, as other JSON writers put it
        body = body.replace(b",", space + b"," + space).replace(b"[", b"[" + space)
    pieces = split_body(body, size)
    try:
        parts = [orjson.loads(p) for p in pieces]
    except orjson.JSONDecodeError:
        parts = None
    if parts is not None:
        assert [x for p in parts for x in p] == orjson.loads(body)
    typed = [decode_items(p) for p in pieces]
    if all(typed):
        assert [x for p in typed for x in p or []] == decode_items(body)


@pytest.mark.parametrize(
    ("body", "pieces"),
    [
        pytest.param(b'[{"a":1},{"b":2},{"c":3}]', [b'[{"a":1}]', b'[{"b":2}]', b'[{"c":3}]'], id="items"),
        pytest.param(b'[{"a":"},{"},{"b":2}]', [b'[{"a":"}]', b'[{"}]', b'[{"b":2}]'], id="cut in a string"),
        pytest.param(b"[[1,2],[3]]", [b"[[1]", b"[2]]", b"[[3]]"], id="cut in a nested array"),
        pytest.param(b"[1 , 2]", [b"[1 ]", b"[ 2]"], id="white space"),
        pytest.param(b'["abc"]', [b'["abc"]'], id="nowhere to cut"),
    ],
)
def test_split_body(body: bytes, pieces: list[bytes]) -> None:
    assert split_body(body, 1) == pieces


def test_an_agent_body_is_cut_between_its_items() -> None:
    body = orjson.dumps([item(value=v) for v in range(1000)])
    pieces = split_body(body, 10_000)
    assert len(pieces) == len(body) // 10_000 + 1
    assert [x for p in pieces for x in decode_items(p) or []] == decode_items(body)


# ---- the parser alone (collectors.falcon_items): bytes -> items, no routing ------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_item, _item, _json), min_size=1, max_size=30))
def test_the_parsers_two_paths_give_the_same_items(items: list[Any]) -> None:
    """Any listener can call the pure parser: the fast decoder's items, when it takes the body, are exactly
    the tolerant checks' items (positions 0, 1, ... and no rejects); any body the fast decoder refuses is
    parsed by the tolerant checks alone."""
    try:
        body = orjson.dumps(items)
    except TypeError:  # integers past 64 bits
        return
    rejects: list[tuple[int, str]] = []
    checked, index = check_items(orjson.loads(body), NOW, lambda i, r: rejects.append((i, r)))
    assert sorted([*index, *(i for i, _ in rejects)]) == list(range(len(items)))
    fast = decode_items(body)
    if fast is not None:
        # the fast decoder keeps a timestamp transfer cannot use (<= 0, > 2 x now); the router replaces it by
        # now (Ingestor._route), as the tolerant checks do at once: compare them after that rule
        fast = [msgspec.structs.replace(x, timestamp=check_timestamp(x.timestamp, NOW)) for x in fast]
        ok = [i for i, x in enumerate(fast) if x.metric != "kernel.hostname"]  # refused by its route
        assert [fast[i] for i in ok] == [x for x in checked if x.metric != "kernel.hostname"]
        assert [i for i, _ in rejects] == [i for i, x in enumerate(fast) if x.metric == "kernel.hostname"]


def test_a_transfer_update_frame_decodes_to_the_same_items_as_the_push_body() -> None:
    body = orjson.dumps([item(), item(endpoint="host-2", value=1.5)])
    frame = b'{"method":"Transfer.Update","params":[' + body + b'],"id":3}\n'
    call = decode_update(frame)
    assert call is not None and bytes(call.id) == b"3"
    assert call.params[0] == decode_items(body) == update_typed(b"[" + body + b"]")
    assert decode_update(b'{"method":"Transfer.Ping","params":[null],"id":1}') is None


def _handed(ing: Ingestor, jb: JobBuckets) -> list[tuple[str, list[ClosedBucket]]]:
    handed: list[tuple[str, list[ClosedBucket]]] = []
    jb.hand = lambda closed: handed.append((jb.job, closed))
    return handed


def _pushed(ing: Ingestor, items: list[Any]) -> PushResult:
    """`Ingestor.push`, the way in of the push handler and the listeners (its own clock)."""
    ing.clock = lambda: NOW
    fast = decode_items(orjson.dumps(items))
    return ing.push(fast, typed=True) if fast else ing.push(items)


@pytest.mark.parametrize("way", [*WAYS, pytest.param(_pushed, id="Ingestor.push")])
@pytest.mark.parametrize(
    ("expected", "items", "closed"),
    [
        pytest.param(1, [item()], {"cpu": 70.0}, id="the last instance completes the bucket: it is handed"),
        pytest.param(2, [item()], None, id="an instance missing: nothing is handed"),
        pytest.param(
            2, [item(), item(endpoint="host-2", value=10)], {"cpu": 80.0}, id="two instances: handed once"
        ),
        pytest.param(1, [item(metric="disk.used")], None, id="a series no job watches: nothing is handed"),
        pytest.param(
            1,
            [item(), item(timestamp=T + 1, value=50)],
            {"cpu": 50.0},
            id="a newer sample of the completing instance later in the body wins (PRODUCT §3.1)",
        ),
        pytest.param(
            1,
            [item(), item(metric="proc.qps", value=7)],
            {"cpu": 70.0, "qps": 7.0},
            id="a rule not needed for completion, later in the body, lands in the bucket",
        ),
    ],
)
def test_routing_closes_the_completed_bucket_after_the_body_and_hands_it_to_the_job(
    way: Any, expected: int, items: list[Any], closed: dict[str, float] | None
) -> None:
    """The ingestor itself closes a bucket the body completed, once the whole body is routed (so a later
    sample of the same body still lands in it), and hands the closed bucket to the job's worker through
    the bucket set's `hand` hook: the worker evaluates it without going back to the buckets, and the
    push path does not go through the engine (issue 11 walk)."""
    ing, jb = ingestor()
    jb.expected = expected
    jb.reporting = [True, False]  # as after a close in which only cpu reported: qps does not hold a bucket
    calls = _handed(ing, jb)
    res = way(ing, items)
    if closed is None:
        assert (res.completed, calls, jb.closed_upto) == (set(), [], 1_700_000_000)
        return
    assert res.completed == {JOB}
    [(job, buckets)] = calls
    assert job == JOB and [(b.start, b.closed_at, b.early) for b in buckets] == [(1_700_000_000, NOW, True)]
    assert {k: v for k, v in buckets[0].values.items() if v is not None} == closed
    assert jb.open == {} and jb.closed_upto == 1_700_000_010 and jb.last is buckets[0]


@pytest.mark.parametrize("way", [*WAYS, pytest.param(_pushed, id="Ingestor.push")])
def test_a_completed_bucket_stays_open_while_the_job_may_not_close_it(way: Any) -> None:
    """While the job's takeover is pending (cluster: its stored state and the former owner's handed
    buckets decide where closing starts), a completing body only wakes the worker (an empty hand-over);
    the bucket stays open, with the sample in it, for the worker to close after the takeover."""
    ing, jb = ingestor()
    jb.expected = 1
    jb.reporting = [True, False]  # only cpu holds a bucket, as in the test above
    jb.may_close = lambda: False
    calls = _handed(ing, jb)
    res = way(ing, [item()])
    assert res.completed == {JOB} and calls == [(JOB, [])]
    assert jb.closed_upto == 1_700_000_000 and list(jb.open) == [1_700_000_000]
    jb.may_close = lambda: True
    [closed] = jb.due(NOW)  # the worker, once it may
    assert closed.values["cpu"] == 70.0
