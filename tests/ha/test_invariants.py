"""Table tests of the invariant checkers (tests/ha/invariants.py): each holds on a clean log and fails on
the log of the fault it exists to catch."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.ha.invariants import (
    Intent,
    Outcome,
    Write,
    i1_epochs_never_decrease,
    i2_one_actuation_per_decision,
    i3_no_unrecorded_writes,
    i4_writes_within_budget,
    i5_no_double_scale,
    i6_no_lost_decisions,
    i7_failover_time,
    i8_fencing,
    writes_from_fake,
)

APP, JOB = "/a", "job.a"


def w(
    wall: float,
    decision: int | None,
    epoch: int | None,
    instances: int = 3,
    status: int = 200,
    attempt: int = 1,
) -> Write:
    return Write(APP, wall, status, instances, decision, attempt if decision is not None else None, epoch)


def i(
    decision: int,
    epoch: int,
    sent: float,
    status: str = "applied",
    updated: float | None = None,
    attempt: int = 1,
    shard: int = 7,
    deadline: float | None = None,
) -> Intent:
    return Intent(
        decision,
        attempt,
        JOB,
        3,
        sent,
        sent + 1.0 if deadline is None else deadline,
        status,
        sent + 0.1 if updated is None else updated,
        shard,
        epoch,
    )


Check = Callable[[], list[str]]

CASES: list[tuple[str, Check, bool]] = [
    ("I1 rising epochs hold", lambda: i1_epochs_never_decrease([w(1, 1, 3), w(2, 2, 3), w(3, 3, 4)]), True),
    ("I1 a decreasing epoch fails", lambda: i1_epochs_never_decrease([w(1, 1, 4), w(2, 2, 3)]), False),
    (
        "I1 epochs of other apps do not mix",
        lambda: i1_epochs_never_decrease([w(1, 1, 4), Write("/b", 2, 200, 2, 2, 1, 3)]),
        True,
    ),
    (
        "I2 one taken write per decision holds",
        lambda: i2_one_actuation_per_decision([w(1, 1, 3), w(2, 2, 3)], []),
        True,
    ),
    (
        "I2 a refused write and its retry hold",
        lambda: i2_one_actuation_per_decision([w(1, 1, 3, status=503), w(2, 1, 3, attempt=2)], []),
        True,
    ),
    (
        "I2 a decision taken twice fails",
        lambda: i2_one_actuation_per_decision([w(1, 1, 3), w(2, 1, 4, attempt=2)], []),
        False,
    ),
    (
        "I2 a lost reply counts as taken",
        lambda: i2_one_actuation_per_decision([w(1, 1, 3, status=-1), w(2, 1, 3, attempt=2)], []),
        False,
    ),
    (
        "I2 two applied attempts of one decision fail",
        lambda: i2_one_actuation_per_decision([], [i(1, 3, 0), i(1, 3, 1, attempt=2)]),
        False,
    ),
    ("I3 a write with its intent holds", lambda: i3_no_unrecorded_writes([w(1, 1, 3)], [i(1, 3, 0.9)]), True),
    ("I3 a write without intent fails", lambda: i3_no_unrecorded_writes([w(1, 1, 3)], [i(2, 3, 0.9)]), False),
    ("I3 a write naming no decision fails", lambda: i3_no_unrecorded_writes([w(1, None, None)], []), False),
    (
        "I3 a write with another epoch fails",
        lambda: i3_no_unrecorded_writes([w(1, 1, 4)], [i(1, 3, 0.9)]),
        False,
    ),
    (
        "I3 a write before its intent fails",
        lambda: i3_no_unrecorded_writes([w(1, 1, 3)], [i(1, 3, 1.5)]),
        False,
    ),
    (
        "I4 a write by its deadline holds",
        lambda: i4_writes_within_budget([w(1.5, 1, 3)], [i(1, 3, 1.0)]),
        True,
    ),
    (
        "I4 a write after its deadline fails",
        lambda: i4_writes_within_budget([w(2.2, 1, 3)], [i(1, 3, 1.0)]),
        False,
    ),
    (
        "I4 a new owner's write after the old intent's resolution holds",
        lambda: i4_writes_within_budget(
            [w(1.1, 1, 3), w(9, 2, 4)], [i(1, 3, 1.0, "applied", 8.0), i(2, 4, 8.9)]
        ),
        True,
    ),
    (
        "I4 a new owner's write while an old intent is unresolved fails",
        lambda: i4_writes_within_budget(
            [w(1.1, 1, 3), w(5, 2, 4)], [i(1, 3, 1.0, "applied", 8.0), i(2, 4, 4.9)]
        ),
        False,
    ),
    (
        "I4 an old intent left pending fails a newer write",
        lambda: i4_writes_within_budget([w(5, 2, 4)], [i(1, 3, 1.0, "pending"), i(2, 4, 4.9)]),
        False,
    ),
    (
        "I5 one step per cooldown holds",
        lambda: i5_no_double_scale([w(1, 1, 3, 3), w(4, 2, 3, 4), w(7, 3, 4, 5)], {}, {APP: 2}, 1, 3.0),
        True,
    ),
    (
        "I5 a double step fails",
        lambda: i5_no_double_scale([w(1, 1, 3, 3), w(4, 2, 3, 5)], {}, {APP: 2}, 1, 3.0),
        False,
    ),
    (
        "I5 a step within the cooldown fails",
        lambda: i5_no_double_scale([w(1, 1, 3, 3), w(2, 2, 4, 4)], {}, {APP: 2}, 1, 3.0),
        False,
    ),
    (
        "I5 the same count written twice fails",
        lambda: i5_no_double_scale([w(1, 1, 3, 3), w(5, 2, 4, 3)], {}, {APP: 2}, 1, 3.0),
        False,
    ),
    (
        "I5 refused writes do not count",
        lambda: i5_no_double_scale(
            [w(1, 1, 3, 3), w(1.5, 2, 3, 4, status=409), w(4, 3, 3, 4)], {}, {APP: 2}, 1, 3.0
        ),
        True,
    ),
    (
        "I5 a retry landing late is timed by its decision",
        lambda: i5_no_double_scale(
            [w(3.5, 1, 3, 3, attempt=2), w(4, 2, 3, 4)], {1: 1.0, 2: 4.0}, {APP: 2}, 1, 3.0
        ),
        True,
    ),
    (
        "I5 decisions within a cooldown fail even when their writes are spaced",
        lambda: i5_no_double_scale([w(1, 1, 3, 3), w(5, 2, 3, 4)], {1: 1.0, 2: 2.0}, {APP: 2}, 1, 3.0),
        False,
    ),
    (
        "I6 resolved intents and outcomes hold",
        lambda: i6_no_lost_decisions([i(1, 3, 0)], [Outcome(1, JOB, "applied")]),
        True,
    ),
    ("I6 a pending intent fails", lambda: i6_no_lost_decisions([i(1, 3, 0, "pending")], []), False),
    ("I6 a pending outcome fails", lambda: i6_no_lost_decisions([], [Outcome(1, JOB, "pending")]), False),
    ("I7 takeovers within the bound hold", lambda: i7_failover_time([1.2, 4.9], 5.0), True),
    ("I7 a slow takeover fails", lambda: i7_failover_time([1.2, 5.1], 5.0), False),
    (
        "I8 rising epochs per shard hold",
        lambda: i8_fencing([i(1, 3, 1), i(2, 4, 2), i(3, 2, 3, shard=8)]),
        True,
    ),
    (
        "I8 an old epoch's intent after a newer one fails",
        lambda: i8_fencing([i(1, 3, 1), i(2, 4, 2), i(3, 3, 3)]),
        False,
    ),
]


@pytest.mark.parametrize(("check", "holds"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invariant(check: Check, holds: bool) -> None:
    violations = check()
    assert (violations == []) is holds, violations


def test_writes_from_fake_reads_headers_and_body_and_keeps_app_writes_only() -> None:
    log = [
        {"method": "GET", "path": "/v2/apps/a", "wall": 0.5, "status": 200, "oceand": {}, "body": ""},
        {
            "method": "PUT",
            "path": "/v2/apps/a",
            "wall": 2.0,
            "status": 200,
            "body": '{"instances": 4}',
            "oceand": {"X-Oceand-Decision": "9", "X-Oceand-Attempt": "2", "X-Oceand-Epoch": "5"},
        },
        {
            "method": "PUT",
            "path": "/v2/apps/a",
            "wall": 1.0,
            "status": 409,
            "body": '{"instances": 3}',
            "oceand": {},
        },
    ]
    assert writes_from_fake(log) == [
        Write("/a", 1.0, 409, 3, None, None, None),
        Write("/a", 2.0, 200, 4, 9, 2, 5),
    ]
