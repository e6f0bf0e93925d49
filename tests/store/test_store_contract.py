"""The store contract, run against every backend (SQLite file, MariaDB on 127.0.0.1:3306)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import orjson
import pytest

from oceand.store import DecisionNotFound, MySQLStore, SQLiteStore, StoreError
from oceand.store.migrations import MIGRATIONS, Migration
from policies.document import dump_job, parse_job
from policies.types import ActuationOutcome, Decision, JobState, Limit, Proposal, Streak
from tests.store.conftest import Backend

AnyStore = SQLiteStore | MySQLStore
JOB = "job.ocean-monitor-job_service.ocean-monitor-job_cluster.production-lg_pdl.ocean_owt.inf_cop.xiaomi"

EXAMPLE_DOC: dict[str, Any] = {
    "job": JOB,
    "target": {"cluster": "lg", "app": "/ocean/monitor-job"},
    "mode": "active",
    "period": "10s",
    "min_instances": 1,
    "max_instances": 5,
    "rules": [
        {
            "name": "cpu",
            "type": "threshold",
            "metric": "cpu.used",
            "aggregate": "avg",
            "scale_out": {"above": 80, "consecutive": 3, "step": 1},
            "scale_in": {"below": 60, "consecutive": 3, "step": 1},
        },
        {
            "name": "night",
            "type": "schedule",
            "cron": "0 2 * * *",
            "timezone": "Asia/Shanghai",
            "instances": 2,
        },
    ],
    "notify": {"group": "sre_ocean", "webhook": "http://127.0.0.1:9000/hook"},
}


def outcome(status: str = "pending", **kw: Any) -> dict[str, Any]:
    return ActuationOutcome(status, **kw).to_json()  # type: ignore[arg-type]


def decision(job: str = JOB, at: float = 1_700_000_000.5, **kw: Any) -> dict[str, Any]:
    d = Decision(
        job=job,
        at=at,
        trigger="bucket",
        current=2,
        desired=3,
        bucket=int(at // 10 * 10) if math.isfinite(at) else None,
        proposals=[Proposal("cpu", "threshold", 3, "ScaleOut", {"value": 91.25, "streak": 3})],
        limits=[Limit("MaxStep", 5, 3, "max_step=1")],
        reasons=["ScaleOut", "MaxStep"],
        mode="active",
        **kw,
    )
    return d.to_json()


# ---------------------------------------------------------------- job documents


async def test_put_creates_then_replaces_with_increasing_versions(store: AnyStore, backend: Backend) -> None:
    doc = dump_job(parse_job(EXAMPLE_DOC))
    assert await store.get_job(JOB) is None
    backend.clock.now = 1_700_000_001.25
    assert await store.put_job(JOB, doc) == 1
    got = await store.get_job(JOB)
    assert got is not None
    assert (got.name, got.doc, got.version, got.updated_at) == (JOB, doc, 1, 1_700_000_001.25)
    assert parse_job(got.doc) == parse_job(EXAMPLE_DOC)  # a stored document still passes validation

    backend.clock.now = 1_700_000_002.5
    changed = {**doc, "max_instances": 9}
    assert await store.put_job(JOB, changed) == 2
    assert await store.put_job(JOB, changed) == 3
    got = await store.get_job(JOB)
    assert got is not None
    assert (got.doc["max_instances"], got.version, got.updated_at) == (9, 3, 1_700_000_002.5)


async def test_list_jobs_by_name_and_names_are_case_sensitive(store: AnyStore) -> None:
    assert await store.list_jobs() == []
    for name in ["b.job", "Job", "a-job", "job"]:
        await store.put_job(name, {"job": name})
    await store.put_job("job", {"job": "job", "again": True})
    jobs = await store.list_jobs()
    assert [j.name for j in jobs] == sorted(["b.job", "Job", "a-job", "job"])
    assert {j.name: j.version for j in jobs} == {"b.job": 1, "Job": 1, "a-job": 1, "job": 2}
    assert {j.name: j.doc for j in jobs}["Job"] == {"job": "Job"}


async def test_unicode_and_large_documents_round_trip(store: AnyStore) -> None:
    doc = {
        "job": "u",
        "notify": {"group": "运维组 sre", "note": "🚀 scale — «ok» \u0000 \\ \" '"},
        "big": ["x" * 1000] * 200,  # ~200 KB: more than a MySQL TEXT column holds
        "nested": {"ключ": [1, 2.5, None, True, {"ü": "ß"}]},
    }
    await store.put_job("u", doc)
    got = await store.get_job("u")
    assert got is not None and got.doc == doc


async def test_longest_job_name_is_stored(store: AnyStore) -> None:
    name = "j" * 200
    assert await store.put_job(name, {}) == 1
    assert await store.commit(name, {"count": 1}, decision(job=name)) is not None
    assert await store.claim_fire(name, "r", 1.0, "fired") is True
    assert [j.name for j in await store.list_jobs()] == [name]


async def test_delete_removes_document_and_state_but_keeps_decisions_and_fires(store: AnyStore) -> None:
    await store.put_job(JOB, {"job": JOB})
    await store.put_job("other", {"job": "other"})
    did = await store.commit(JOB, {"count": 2}, decision())
    await store.commit("other", {"count": 7}, None)
    await store.claim_fire(JOB, "night", 1_700_000_000.0, "fired")

    assert await store.delete_job(JOB) is True
    assert await store.get_job(JOB) is None
    assert await store.load_state(JOB) is None
    assert [d["id"] for d in await store.decisions(JOB)] == [did]
    assert len(await store.fires(JOB)) == 1
    assert await store.delete_job(JOB) is False
    assert await store.load_state("other") == {"count": 7}  # other jobs untouched
    assert [j.name for j in await store.list_jobs()] == ["other"]
    assert await store.put_job(JOB, {"job": JOB}) == 1  # a re-created job starts again at version 1


# ---------------------------------------------------------------- state and decisions


async def test_state_round_trips_exactly(store: AnyStore) -> None:
    state = JobState(
        count=3,
        last_change_at=1_700_000_123.456789,
        last_bucket=1_700_000_120,
        streaks={"cpu": Streak(2, 0)},
        recent=[(1_700_000_100.1, 3), (1_700_000_110.7, 2)],
        alarms={"s1042/e7/host-1/cpu.idle/": 1_700_000_050.000001},
        fires={"night": 1_699_999_200.0},
        created_at=0.1 + 0.2,
    )
    assert await store.load_state(JOB) is None
    assert await store.commit(JOB, state.to_json(), None) is None
    loaded = await store.load_state(JOB)
    assert loaded == state.to_json()
    assert JobState.from_json(loaded) == state
    await store.commit(JOB, {"count": 4}, None)
    assert await store.load_state(JOB) == {"count": 4}


async def test_every_state_read_at_once_equals_each_read_alone(store: AnyStore) -> None:
    """load_states (the engine's start) against load_state job by job; a job without a state is absent."""
    assert await store.load_states() == {}
    other = "job.other_pdl.ocean_owt.inf_cop.xiaomi"
    await store.put_job(JOB, {"job": JOB})
    await store.put_job(other, {"job": other})
    await store.put_job("job.nostate", {"job": "job.nostate"})
    await store.commit(JOB, JobState(count=3, recent=[(1.5, 3)]).to_json(), None)
    await store.commit(other, {"count": 7}, None)
    states = await store.load_states()
    assert states == {JOB: await store.load_state(JOB), other: {"count": 7}}
    assert JobState.from_json(states[JOB]).count == 3


async def test_decision_round_trips_with_its_id(store: AnyStore) -> None:
    at = 1_700_000_000.123456789  # needs all 17 significant digits
    original = decision(at=at)
    applied = outcome("applied", deployment_id="5ed4c0c5", latency_ms=12.5, detail={"url": "http://m"})
    did = await store.commit(JOB, {"count": 3}, original, applied)
    assert isinstance(did, int)
    (stored,) = await store.decisions(JOB)
    assert stored == {**original, "id": did, "outcome": applied}
    assert stored["at"] == at
    assert Decision.from_json(stored) == Decision.from_json({**original, "id": did})
    second = await store.commit(JOB, {"count": 3}, decision(at=at + 1))
    assert second is not None and second > did
    assert (await store.decisions(JOB))[0]["outcome"] == outcome("none")  # no outcome given: none


async def test_failure_inside_the_transaction_leaves_neither_state_nor_decision(
    store: AnyStore, backend: Backend
) -> None:
    before = {"count": 2, "last_change_at": 1.0}
    first = await store.commit(JOB, before, decision(at=10.0))
    await backend.sql(backend.fail_decision_inserts())

    with pytest.raises(StoreError, match="injected failure"):
        await store.commit(JOB, {"count": 3, "last_change_at": 20.0}, decision(at=20.0))
    assert await store.load_state(JOB) == before
    assert [d["id"] for d in await store.decisions(JOB)] == [first]

    await backend.sql("DROP TRIGGER fail_decision")
    after = {"count": 3, "last_change_at": 30.0}
    third = await store.commit(JOB, after, decision(at=30.0))
    assert await store.load_state(JOB) == after
    assert [d["id"] for d in await store.decisions(JOB)] == [third, first]


@pytest.mark.parametrize(
    ("limit", "since", "expected_ats"),
    [
        pytest.param(50, None, [40.0, 30.5, 30.5, 20.0, 10.0], id="all, newest first, ties by id"),
        pytest.param(2, None, [40.0, 30.5], id="limit keeps the newest"),
        pytest.param(0, None, [], id="limit 0"),
        pytest.param(50, 30.5, [40.0, 30.5, 30.5], id="since is inclusive"),
        pytest.param(50, math.nextafter(30.5, math.inf), [40.0], id="since one ulp above excludes"),
        pytest.param(1, 20.0, [40.0], id="since and limit"),
        pytest.param(50, 41.0, [], id="since after the newest"),
    ],
)
async def test_decisions_order_limit_since(
    store: AnyStore, limit: int, since: float | None, expected_ats: list[float]
) -> None:
    inserted = []
    for at in [20.0, 10.0, 30.5, 40.0, 30.5]:  # inserted out of order
        inserted.append((at, await store.commit(JOB, {}, decision(at=at))))
    await store.commit("other.job", {}, decision(job="other.job", at=35.0))
    got = await store.decisions(JOB, limit=limit, since=since)
    assert [d["at"] for d in got] == expected_ats
    newest_first = sorted(inserted, key=lambda p: (-p[0], -(p[1] or 0)))
    assert [d["id"] for d in got] == [i for at, i in newest_first if since is None or at >= since][:limit]
    assert all(d["job"] == JOB for d in got)


async def test_record_outcome_replaces_the_outcome_and_never_the_decision(
    store: AnyStore, backend: Backend
) -> None:
    original = decision()
    did = await store.commit(JOB, {"count": 3}, original, outcome("pending"))
    assert did is not None
    select = "SELECT body, status, result FROM decisions WHERE id = " + (
        "%s" if backend.kind == "mysql" else "?"
    )
    row = await backend.sql(select, (did,))
    retry = outcome("pending", error="Marathon answered 503", tries=1, retry_at=1_700_000_001.0)
    await store.record_outcome(did, JOB, retry, {"count": 3, "actuation": {"retry": did}})
    assert await store.load_state(JOB) == {"count": 3, "actuation": {"retry": did}}
    failed = outcome("failed", error="Marathon 422: app is locked 🔒", tries=2, attempts=1)
    await store.record_outcome(did, JOB, failed)  # without a state: the state stays
    await store.record_outcome(did, JOB, failed)  # the same again
    (got,) = await store.decisions(JOB)
    assert got == {**original, "id": did, "outcome": failed}
    assert await store.load_state(JOB) == {"count": 3, "actuation": {"retry": did}}
    assert await backend.sql(select, (did,)) == row  # the decision's row as it was committed
    with pytest.raises(DecisionNotFound, match=f"decision {did + 1000} of job '{JOB}' does not exist"):
        await store.record_outcome(did + 1000, JOB, outcome("applied"), {"count": 9})
    with pytest.raises(DecisionNotFound, match=f"decision {did} of job 'other' does not exist"):
        await store.record_outcome(did, "other", outcome("applied"))
    assert await store.load_state(JOB) == {"count": 3, "actuation": {"retry": did}}  # nothing written


async def test_pending_decisions_are_every_jobs_pending_oldest_first(store: AnyStore) -> None:
    a = await store.commit("a", {}, decision(job="a", at=30.0), outcome("pending"))
    b = await store.commit("b", {}, decision(job="b", at=10.0), outcome("pending"))
    await store.commit("a", {}, decision(job="a", at=5.0), outcome("dry-run"))
    c = await store.commit("c", {}, decision(job="c", at=20.0), outcome("pending"))
    assert [d["id"] for d in await store.pending_decisions()] == [b, c, a]
    assert c is not None
    await store.record_outcome(c, "c", outcome("applied", deployment_id="d1"))
    pending = await store.pending_decisions()
    assert [(d["id"], d["job"], d["outcome"]["status"]) for d in pending] == [
        (b, "b", "pending"),
        (a, "a", "pending"),
    ]


async def test_a_decision_stored_before_outcomes_reads_its_row_as_its_outcome(backend: Backend) -> None:
    """A store migrated from version 4 keeps its decisions: their status and result become outcomes."""
    old = backend.make(MIGRATIONS[:4])
    await old.open()
    await old.close()
    mark = "%s" if backend.kind == "mysql" else "?"
    body = dict(decision(), reasons=["ScaleOut", "ActuationFailed"])
    del body["id"]  # as that version wrote a decision: without id, status and result
    rows = [
        ("pending", {"error": "503", "tries": 2, "attempts": 1}),
        ("applied", {"deployment_id": "d-1", "version": "v1", "latency_ms": 3.5, "url": "http://m"}),
        ("failed", {"error": "gone", "superseded_by": 9}),
    ]
    for i, (status, result) in enumerate(rows):
        await backend.sql(
            f"INSERT INTO decisions (job, at, status, body, result) VALUES ({', '.join([mark] * 5)})",
            (
                JOB,
                10.0 + i,
                status,
                orjson.dumps(dict(body, at=10.0 + i)).decode(),
                orjson.dumps(result).decode(),
            ),
        )
    new = backend.make()
    await new.open()
    try:
        got = {d["at"]: d for d in await new.decisions(JOB)}
        assert got[10.0]["outcome"] == outcome("pending", error="503", tries=2, attempts=1)
        assert got[11.0]["outcome"] == outcome(
            "applied", deployment_id="d-1", version="v1", latency_ms=3.5, detail={"url": "http://m"}
        )
        assert got[12.0]["outcome"] == outcome("failed", error="gone", superseded_by=9)
        assert got[10.0]["reasons"] == ["ScaleOut", "ActuationFailed"]  # as that version wrote it
        assert [d["at"] for d in await new.pending_decisions()] == [10.0]
        did = got[10.0]["id"]
        await new.record_outcome(did, JOB, outcome("applied"))  # an outcome of its own from now on
        assert await new.pending_decisions() == []
        assert (await new.decisions(JOB))[-1]["outcome"] == outcome("applied")
    finally:
        await new.close()


# ---------------------------------------------------------------- schedule fires


async def test_claim_fire_at_most_once(store: AnyStore, backend: Backend) -> None:
    at = 1_700_006_400.0
    backend.clock.now = at + 0.25
    assert await store.claim_fire(JOB, "night", at, "fired") is True
    assert await store.claim_fire(JOB, "night", at, "missed") is False
    assert await store.claim_fire(JOB, "night", at + 86_400, "fired") is True
    assert await store.claim_fire(JOB, "morning", at, "missed") is True
    assert await store.claim_fire("other", "night", at, "fired") is True
    assert await store.fires(JOB) == [
        {"rule": "night", "at": at + 86_400, "status": "fired", "recorded_at": at + 0.25},
        {"rule": "morning", "at": at, "status": "missed", "recorded_at": at + 0.25},
        {"rule": "night", "at": at, "status": "fired", "recorded_at": at + 0.25},
    ]
    assert len(await store.fires(JOB, limit=1)) == 1


async def test_concurrent_claims_from_two_daemons_give_exactly_one_true(
    store: AnyStore, backend: Backend
) -> None:
    other = backend.make()
    await other.open()
    try:
        times = [1_700_000_000.0 + 60 * i + 0.001 for i in range(20)]
        results = await asyncio.gather(
            *(s.claim_fire(JOB, "every-minute", t, "fired") for t in times for s in (store, other, store))
        )
        per_time = [results[3 * i : 3 * i + 3] for i in range(len(times))]
        assert all(sorted(r) == [False, False, True] for r in per_time), per_time
        assert sorted(f["at"] for f in await other.fires(JOB, limit=100)) == times
    finally:
        await other.close()


# ---------------------------------------------------------------- migrations and reopening


async def test_reopen_keeps_data_and_rerunning_migrations_is_a_no_op(
    store: AnyStore, backend: Backend
) -> None:
    await store.put_job(JOB, EXAMPLE_DOC)
    did = await store.commit(JOB, {"count": 2}, decision())
    await store.close()
    backend.clock.now += 100

    again = backend.make()
    await again.open()
    await again.open()  # a second open on an open store does nothing
    try:
        got = await again.get_job(JOB)
        assert got is not None and got.doc == EXAMPLE_DOC
        assert await again.load_state(JOB) == {"count": 2}
        assert [d["id"] for d in await again.decisions(JOB)] == [did]
    finally:
        await again.close()
    rows = await backend.sql("SELECT version, name, applied_at FROM schema_version ORDER BY version")
    assert [(v, n) for v, n, _ in rows] == [(m[0], m[1]) for m in MIGRATIONS]
    assert rows[-1][2] == 1_700_000_000.0  # applied once, at the first open


async def test_daemons_migrating_a_fresh_store_at_once(backend: Backend) -> None:
    for _ in range(5):  # the race is not won the same way every time
        await backend.reset()
        daemons = [backend.make() for _ in range(4)]
        opened = await asyncio.gather(*(d.open() for d in daemons), return_exceptions=True)
        try:
            assert opened == [None] * len(daemons)
            for version, daemon in enumerate(daemons, start=1):
                assert await daemon.put_job("a", {}) == version
        finally:
            await asyncio.gather(*(d.close() for d in daemons))
        rows = await backend.sql("SELECT version FROM schema_version")
        assert sorted(r[0] for r in rows) == [m[0] for m in MIGRATIONS]


def _extra_migration(backend: Backend) -> Migration:
    sql = "CREATE TABLE IF NOT EXISTS extra_table (k INTEGER PRIMARY KEY)"
    return (len(MIGRATIONS) + 1, "test: extra table", {"sqlite": [sql], "mysql": [sql]})


async def test_a_new_migration_is_applied_once_and_older_code_refuses_the_newer_store(
    store: AnyStore, backend: Backend
) -> None:
    await store.put_job(JOB, {"job": JOB})
    await store.close()
    newer = [*MIGRATIONS, _extra_migration(backend)]
    for _ in range(2):
        upgraded = backend.make(migrations=newer)
        await upgraded.open()
        await upgraded.close()
    assert await backend.sql("SELECT COUNT(*) FROM extra_table") == [(0,)]
    versions = await backend.sql("SELECT version FROM schema_version ORDER BY version")
    assert [v for (v,) in versions] == [m[0] for m in newer]

    older = backend.make()
    with pytest.raises(StoreError, match=r"newer than this oceand knows"):
        await older.open()
    assert await older.ping() is False
    with pytest.raises(StoreError, match="not open"):
        await older.get_job(JOB)


# ---------------------------------------------------------------- bad input and health


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(lambda s: s.put_job("", {}), "job name must be 1-200", id="empty job name"),
        pytest.param(lambda s: s.put_job("a b", {}), "job name must be 1-200", id="space in job name"),
        pytest.param(lambda s: s.put_job("j" * 201, {}), "job name must be 1-200", id="job name too long"),
        pytest.param(lambda s: s.put_job("ok", []), "job document must be a JSON object", id="doc a list"),
        pytest.param(lambda s: s.put_job("ok", {"t": {1, 2}}), "not JSON-serialisable", id="doc with a set"),
        pytest.param(lambda s: s.get_job(None), "job name must be 1-200", id="job name None"),
        pytest.param(
            lambda s: s.commit("ok", {}, decision(job="ok", at=math.nan)), "decision.at", id="at is NaN"
        ),
        pytest.param(lambda s: s.commit("ok", {}, {"job": "ok"}), "decision.at", id="decision without at"),
        pytest.param(
            lambda s: s.commit("ok", {}, decision(job="other")),
            "decision is for job 'other'",
            id="job mismatch",
        ),
        pytest.param(
            lambda s: s.commit("ok", {}, decision(job="ok"), {"status": "done"}),
            "outcome.status must be one of",
            id="bad status",
        ),
        pytest.param(
            lambda s: s.commit("ok", {}, dict(decision(job="ok"), status="applied")),
            "decision.status: what became of a decision is its outcome",
            id="status in the decision",
        ),
        pytest.param(lambda s: s.commit("ok", {1: 2}, None), "state is not JSON-serialisable", id="int keys"),
        pytest.param(
            lambda s: s.decisions("ok", limit=-1), "limit must be an integer >= 0", id="negative limit"
        ),
        pytest.param(lambda s: s.decisions("ok", since=math.inf), "since must be a finite", id="since inf"),
        pytest.param(
            lambda s: s.record_outcome(1, "ok", {"status": "weird"}),
            "outcome.status must be one of",
            id="outcome status",
        ),
        pytest.param(
            lambda s: s.record_outcome("1", "ok", {"status": "applied"}),
            "decision id must be",
            id="id a string",
        ),
        pytest.param(lambda s: s.record_outcome(1, "ok", []), "outcome must be a dict", id="outcome a list"),
        pytest.param(lambda s: s.claim_fire("ok", "r", 1.0, "pending"), "fire status", id="fire status"),
        pytest.param(lambda s: s.claim_fire("ok", "", 1.0, "fired"), "rule name", id="empty rule name"),
        pytest.param(lambda s: s.claim_fire("ok", "r", True, "fired"), "at must be a finite", id="at a bool"),
    ],
)
async def test_bad_arguments_raise_value_error_and_write_nothing(
    store: AnyStore, call: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await call(store)
    assert await store.list_jobs() == []
    assert await store.load_state("ok") is None
    assert await store.decisions("ok") == []
    assert await store.fires("ok") == []


async def test_ping_reports_open_and_closed(store: AnyStore) -> None:
    assert await store.ping() is True
    await store.close()
    assert await store.ping() is False
    with pytest.raises(StoreError, match="not open"):
        await store.list_jobs()


async def test_pending_attempt_decisions_are_those_with_a_pending_write_whatever_their_outcome(
    store: AnyStore,
) -> None:
    """HA.md §6.7: a takeover or a restart settles every pending write; a decision already failed or
    superseded may still have one (its outcome unknown when it was recorded)."""
    write = {"attempt": 1, "to_count": 3, "sent_at": 1.0, "deadline": 6.0, "status": "pending"}
    failed = await store.commit("a", {}, decision(job="a", at=30.0), outcome("failed"))
    superseded = await store.commit("b", {}, decision(job="b", at=10.0), outcome("superseded"))
    pending = await store.commit("c", {}, decision(job="c", at=20.0), outcome("pending"))
    settled = await store.commit("d", {}, decision(job="d", at=5.0), outcome("failed"))
    unsent = await store.commit("e", {}, decision(job="e", at=1.0), outcome("failed"))
    assert failed and superseded and pending and settled and unsent
    for did, job in ((failed, "a"), (superseded, "b"), (pending, "c"), (settled, "d")):
        await store.record_attempt(did, job, write)
    await store.record_attempt(settled, "d", dict(write, status="abandoned"))
    got = await store.pending_attempt_decisions()
    assert [(d["id"], d["job"], d["outcome"]["status"]) for d in got] == [
        (superseded, "b", "superseded"),
        (pending, "c", "pending"),
        (failed, "a", "failed"),
    ]
