"""The pure LB diff: named cases, then properties (idempotent, converges) with hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actuators.lb.diff import Backend, Key, Op, apply_ops, diff, format_hostport, parse_hostport, parse_vip

A, B, C = ("10.0.0.1", 31001), ("10.0.0.2", 31002), ("10.0.0.3", 31003)
NOW = 1000.0


def be(key: Key, weight: int = 10, state: str = "active", name: str | None = None) -> Backend:
    return Backend(key[0], key[1], weight, state, name)  # type: ignore[arg-type]


CASES = [
    pytest.param({A: 10}, [], {}, 30.0, [Op("add", *A, 10)], {}, id="new task is added"),
    pytest.param({A: 10}, [be(A)], {}, 30.0, [], {}, id="in sync: nothing to do"),
    pytest.param({A: 20}, [be(A, 10)], {}, 30.0, [Op("set_weight", *A, 20)], {}, id="weight changed"),
    pytest.param({}, [be(A)], {}, 30.0, [Op("drain", *A)], {A: NOW}, id="removed task starts draining"),
    pytest.param({}, [be(A, 0, "draining")], {A: NOW - 10}, 30.0, [], {A: NOW - 10}, id="drain not over yet"),
    pytest.param(
        {}, [be(A, 0, "draining")], {A: NOW - 30}, 30.0, [Op("delete", *A)], {}, id="drain over: deleted"
    ),
    pytest.param(
        {}, [be(A, 0, "draining")], {}, 30.0, [], {A: NOW}, id="draining with unknown start: clock starts now"
    ),
    pytest.param({}, [be(A)], {}, 0.0, [Op("delete", *A)], {}, id="drain 0: deleted at once"),
    pytest.param(
        {}, [be(A, 10, "maint")], {}, 30.0, [Op("delete", *A)], {}, id="maint and not wanted: deleted"
    ),
    pytest.param(
        {A: 10},
        [be(A, 10, "draining")],
        {A: NOW - 5},
        30.0,
        [Op("enable", *A, 10)],
        {},
        id="task back during its drain is re-enabled",
    ),
    pytest.param(
        {A: 10}, [be(A, 10, "maint")], {}, 30.0, [Op("enable", *A, 10)], {}, id="maint but wanted: enabled"
    ),
    pytest.param(
        {},
        [be(A, 0, "active")],
        {A: NOW - 12},
        30.0,
        [Op("drain", *A)],
        {A: NOW},
        id="active again (e.g. after a balancer reload): the drain starts over",
    ),
    pytest.param(
        {A: 10},
        [be(A, 10, "draining", "old"), be(A, 10, "active", "new")],
        {},
        30.0,
        [Op("delete", *A, 0, "old")],
        {},
        id="duplicate entry deleted, active one kept",
    ),
    pytest.param(
        {A: 10, C: 10},
        [be(B), be(A)],
        {},
        30.0,
        [Op("drain", *B), Op("add", *C, 10)],
        {B: NOW},
        id="mixed: keep, drain, add",
    ),
    pytest.param({}, [], {A: NOW - 100}, 30.0, [], {}, id="stale drain entries are dropped"),
]


@pytest.mark.parametrize(("desired", "current", "drains", "drain_s", "ops", "next_drains"), CASES)
def test_diff(
    desired: dict[Key, int],
    current: list[Backend],
    drains: dict[Key, float],
    drain_s: float,
    ops: list[Op],
    next_drains: dict[Key, float],
) -> None:
    result = diff(desired, current, drains, NOW, drain_s)
    assert result.ops == ops
    assert result.drains == next_drains


APPLY_CASES = [
    pytest.param([], [Op("add", *A, 5)], [be(A, 5)], id="add"),
    pytest.param([be(A, 5)], [Op("add", *A, 7)], [be(A, 7)], id="add existing sets weight"),
    pytest.param([be(A, 5)], [Op("drain", *A)], [be(A, 5, "draining")], id="drain keeps weight"),
    pytest.param([be(A, 5, "draining")], [Op("enable", *A, 5)], [be(A, 5)], id="enable"),
    pytest.param([], [Op("set_weight", *A, 3)], [be(A, 3)], id="edit missing adds"),
    pytest.param([], [Op("delete", *A)], [], id="delete missing is a no-op"),
    pytest.param([], [Op("drain", *A)], [], id="drain missing is a no-op"),
    pytest.param(
        [be(A, 5, "active"), be(A, 5, "draining")],
        [Op("delete", *A)],
        [be(A, 5, "active")],
        id="nameless delete of a duplicate keeps the primary",
    ),
    pytest.param(
        [be(A, 5, name="x"), be(A, 5, name="y")],
        [Op("delete", *A, 0, "y")],
        [be(A, 5, name="x")],
        id="by name",
    ),
]


@pytest.mark.parametrize(("current", "ops", "after"), APPLY_CASES)
def test_apply_ops(current: list[Backend], ops: list[Op], after: list[Backend]) -> None:
    assert apply_ops(current, ops) == after


@pytest.mark.parametrize(
    ("text", "default", "expected"),
    [
        pytest.param("10.0.0.1:80", None, ("10.0.0.1", 80), id="ipv4"),
        pytest.param("[::1]:8080", None, ("::1", 8080), id="ipv6 in brackets"),
        pytest.param("host.example:31001", None, ("host.example", 31001), id="name"),
        pytest.param("host.example", 80, ("host.example", 80), id="default port"),
        pytest.param("::1", 80, ("::1", 80), id="bare ipv6 with default port"),
    ],
)
def test_parse_hostport(text: str, default: int | None, expected: Key) -> None:
    assert parse_hostport(text, default) == expected
    assert parse_hostport(format_hostport(*expected)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("10.0.0.1:0", "port must be", id="port 0"),
        pytest.param("10.0.0.1:70000", "port must be", id="port too big"),
        pytest.param("10.0.0.1", "expected host:port", id="no port"),
        pytest.param("[::1:80", "missing ']'", id="unclosed bracket"),
        pytest.param(":80", "empty host", id="no host"),
    ],
)
def test_parse_hostport_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_hostport(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("10.0.0.10:80", ("10.0.0.10", 80), id="ipv4"),
        pytest.param("[fe80:0:0::1]:80", ("fe80::1", 80), id="ipv6 made canonical as ipvsadm prints it"),
    ],
)
def test_parse_vip(text: str, expected: Key) -> None:
    assert parse_vip(text) == expected


def test_parse_vip_wants_an_address() -> None:
    with pytest.raises(ValueError, match="must be an IP address"):
        parse_vip("lvs.example.org:80")


# --- properties -------------------------------------------------------------------------------

keys = st.tuples(st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3", "::1"]), st.integers(31000, 31003))
states = st.sampled_from(["active", "draining", "maint"])


@st.composite
def balancers(draw: st.DrawFn) -> list[Backend]:
    """A balancer's current list: nameless (files, ipvsadm) or with unique names (HAProxy)."""
    named = draw(st.booleans())
    entries = draw(st.lists(st.tuples(keys, st.integers(0, 20), states), max_size=8))
    return [
        Backend(k[0], k[1], w, s, f"s{i}" if named else None)  # type: ignore[arg-type]
        for i, (k, w, s) in enumerate(entries)
    ]


@settings(max_examples=400, deadline=None)
@given(
    desired=st.dictionaries(keys, st.integers(1, 20), max_size=6),
    current=balancers(),
    drains=st.dictionaries(keys, st.floats(0, NOW), max_size=6),
    drain_s=st.sampled_from([0.0, 5.0, 30.0]),
)
def test_diff_is_idempotent(
    desired: dict[Key, int], current: list[Backend], drains: dict[Key, float], drain_s: float
) -> None:
    first = diff(desired, current, drains, NOW, drain_s)
    after = apply_ops(current, first.ops)
    assert diff(desired, after, first.drains, NOW, drain_s).ops == []
    # every desired backend is there, once, active with its weight
    active = {b.key: b.weight for b in after if b.state == "active"}
    assert {k: active.get(k) for k in desired} == desired
    assert len({b.key for b in after}) == len(after)
    # nothing unwanted is still taking new traffic
    assert all(b.key in desired for b in after if b.state == "active")


@settings(max_examples=200, deadline=None)
@given(desired=st.dictionaries(keys, st.integers(1, 20), max_size=6), current=balancers())
def test_converges_after_the_drain(desired: dict[Key, int], current: list[Backend]) -> None:
    drains: dict[Key, float] = {}
    state = current
    for now in (NOW, NOW + 10, NOW + 31):
        result = diff(desired, state, drains, now, 30.0)
        state, drains = apply_ops(state, result.ops), result.drains
    assert sorted((b.key, b.weight, b.state) for b in state) == sorted(
        (k, w, "active") for k, w in desired.items()
    )
