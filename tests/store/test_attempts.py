"""Actuation attempts in the store (issue 18 item 2), on every backend: one row per write of a decision,
inserted before the write goes out and updated with its outcome; bad records are refused by name."""

from __future__ import annotations

from typing import Any

import pytest

from actuators.marathon import Attempt
from oceand.store import MySQLStore, SQLiteStore
from tests.store.conftest import Backend

JOB = "job.attempts.xiaomi"


def attempt(n: int = 1, **over: Any) -> dict[str, Any]:
    a = Attempt(n, 3, 1_800_000_000.25, 1_800_000_005.25, 1_799_999_000.125).to_json()
    a.update(over)
    return a


async def test_recorded_then_resolved_in_attempt_order(store: SQLiteStore | MySQLStore) -> None:
    await store.record_attempt(7, JOB, attempt(2))
    await store.record_attempt(7, JOB, attempt(1, status="failed", detail={"error": "503"}))
    await store.record_attempt(8, JOB, attempt(1))
    assert await store.attempts(7) == [
        attempt(1, status="failed", detail={"error": "503"}),
        attempt(2),
    ]
    resolved = attempt(2, status="applied", deadline=1_800_000_001.5, detail={"deployment_id": "d1"})
    await store.record_attempt(7, JOB, resolved)
    assert (await store.attempts(7))[1] == resolved
    assert [Attempt.from_json(a).n for a in await store.attempts(8)] == [1]
    assert await store.attempts(9) == []


async def test_survives_a_reopen(backend: Backend) -> None:
    s = backend.make()
    await s.open()
    await s.record_attempt(1, JOB, attempt(baseline=None))
    await s.close()
    again = backend.make()
    await again.open()
    try:
        assert await again.attempts(1) == [attempt(baseline=None)]
    finally:
        await again.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param((True, JOB, attempt()), "decision id", id="bool decision id"),
        pytest.param((1, "a b", attempt()), "job name", id="bad job name"),
        pytest.param((1, JOB, [1]), "attempt must be a dict", id="not a dict"),
        pytest.param((1, JOB, attempt(0)), "attempt.attempt", id="attempt 0"),
        pytest.param((1, JOB, attempt(to_count=-1)), "attempt.to_count", id="negative count"),
        pytest.param((1, JOB, attempt(sent_at=float("nan"))), "attempt.sent_at", id="NaN time"),
        pytest.param((1, JOB, attempt(baseline="x")), "attempt.baseline", id="bad baseline"),
        pytest.param((1, JOB, attempt(status="sent")), "attempt.status", id="unknown status"),
    ],
)
async def test_bad_records_are_refused_by_name(
    store: SQLiteStore | MySQLStore, args: tuple[Any, Any, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await store.record_attempt(*args)
    assert await store.attempts(1) == []


def test_the_store_knows_every_attempt_status() -> None:
    from actuators.marathon import attempts
    from oceand.store import base

    assert base.ATTEMPT_STATUSES == attempts.ATTEMPT_STATUSES
