"""Decisions are immutable; what became of them is an outcome of their own, and a job's pending retry and
its block are part of its persisted state (issue 11): a new Engine on the same store still retries the
decision at the time the old one set, with its tries counted on, and still refuses to apply for a job
blocked by a permanent failure until its document changes. The engine on a real store (SQLite, and
MariaDB at 127.0.0.1:3306 when it answers), a controlled clock and an in-memory actuator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from actuators.marathon import Outcome, RecordingActuator
from oceand.engine import Engine
from oceand.store import MySQLStore, SQLiteStore
from policies.document import JobDocument, parse_job
from policies.types import ACTUATION_FAILED, ActuationOutcome, Decision
from tests.store.conftest import Backend

AnyStore = SQLiteStore | MySQLStore

JOB = "job.outcome_web_cop.xiaomi"
T0 = 1_800_000_000.0
RETRY = 30.0  # the engine's only retry delay here


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def doc(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "job": JOB,
        "target": {"cluster": "lg", "app": "/outcome/web"},
        "mode": "active",
        "period": 10,
        "min_instances": 1,
        "max_instances": 6,
        "rules": [{"name": "falcon", "type": "alarm", "match": {"stra_id": 1042}, "step": 1}],
    }
    d.update(over)
    return d


class Scripted(RecordingActuator):
    """Answers its applies from a script (an Outcome to fail with, or None to apply), then applies."""

    def __init__(self, *script: Outcome | None) -> None:
        super().__init__()
        self.script = list(script)
        self.tried: list[int] = []  # every apply's count, failed or not

    async def apply(self, doc: JobDocument, decision: Decision, attempts: Any = None) -> Outcome:
        self.tried.append(decision.desired)
        failure = self.script.pop(0) if self.script else None
        if failure is not None:
            return failure
        return await super().apply(doc, decision, attempts)


TRANSIENT = Outcome("failed", {"error": "Marathon answered 503", "url": "http://m/v2/apps/outcome/web"})
REFUSED = Outcome("failed", {"error": "Marathon answered 403: forbidden", "status": 403}, permanent=True)


class Daemon:
    """Engines one after the other on one store (SQLite file, MariaDB database): each `start` is a restart."""

    def __init__(self, backend: Backend, act: Scripted, clock: Clock) -> None:
        self.backend = backend
        self.act, self.clock = act, clock
        self.engine: Engine | None = None
        self.store: AnyStore | None = None

    async def start(self) -> Engine:
        await self.stop()
        self.store = self.backend.make()
        await self.store.open()
        self.engine = Engine(self.store, lambda d: self.act, clock=self.clock, retry_delays=(RETRY,))
        await self.engine.load()
        return self.engine

    async def stop(self) -> None:
        if self.engine is not None:
            await self.engine.stop(timeout=1.0)
        if self.store is not None:
            await self.store.close()
        self.engine = self.store = None

    async def put_job(self, body: dict[str, Any]) -> int:
        """Store a job document while no engine runs (another daemon, an operator)."""
        store = self.backend.make()
        await store.open()
        try:
            return await store.put_job(JOB, body)
        finally:
            await store.close()

    async def rows(self) -> list[dict[str, Any]]:
        """The job's decisions as the API shows them (status and result derived from the outcome)."""
        assert self.store is not None
        return [ActuationOutcome.from_json(r["outcome"]).view(r) for r in await self.store.decisions(JOB)]

    async def bodies(self) -> list[tuple[Any, ...]]:
        """The decisions table as stored (id, status, body, result): a committed row never changes."""
        return await self.backend.sql("SELECT id, status, body, result FROM decisions ORDER BY id")


@pytest.fixture
async def run(backend: Backend) -> AsyncIterator[Callable[..., Any]]:
    made: list[Daemon] = []

    async def make(*script: Outcome | None) -> Daemon:
        d = Daemon(backend, Scripted(*script), Clock(T0))
        made.append(d)
        await d.put_job(doc())
        await d.start()
        return d

    yield make
    for d in made:
        await d.stop()


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.005)


async def test_a_restart_keeps_a_pending_retry_its_time_and_its_tries(run: Callable[..., Any]) -> None:
    d = await run(TRANSIENT)
    assert d.engine is not None
    decision, outcome = await d.engine.manual(JOB, 4, "launch")
    assert (outcome.status, outcome.error, outcome.tries, outcome.retry_at) == (
        "pending",
        "Marathon answered 503",
        1,
        T0 + RETRY,
    )
    assert outcome.reason == ACTUATION_FAILED and list(decision.reasons) == ["Manual"]
    committed = await d.bodies()
    await d.stop()

    d.clock.t = T0 + 5  # restarted before the retry is due
    engine = await d.start()
    assert d.store is not None
    state = await d.store.load_state(JOB)
    assert state is not None and state["actuation"] == {"retry": decision.id, "retry_at": T0 + RETRY}
    rt = engine.jobs[JOB]
    assert rt.retry == decision and rt.retry_at == T0 + RETRY  # not "at once": the time it was given
    assert engine.status(JOB)["retry_at"] == T0 + RETRY

    d.clock.t = T0 + RETRY + 1
    rt.wake.set()  # what the job's timer does at retry_at
    await until(lambda: rt.retry is None and rt.last_decision is not None)
    assert d.act.tried == [4, 4] and d.act.instances[JOB] == 4
    (row,) = await d.rows()
    assert row["outcome"]["status"] == "applied" and row["outcome"]["tries"] == 2  # counted on
    assert row["outcome"]["error"] is None and row["status"] == "applied"
    assert Decision.from_json(row) == decision  # the decision as it was made
    assert await d.bodies() == committed  # its row was never written again
    assert "actuation" not in (await d.store.load_state(JOB) or {})  # the retry is done


async def test_a_restart_keeps_a_block_until_the_document_changes(run: Callable[..., Any]) -> None:
    d = await run(REFUSED)
    assert d.engine is not None
    _, outcome = await d.engine.manual(JOB, 4, "launch")
    assert (outcome.status, outcome.reason) == ("failed", ACTUATION_FAILED)
    assert d.engine.jobs[JOB].blocked == "Marathon answered 403: forbidden"
    await d.stop()

    engine = await d.start()
    assert engine.status(JOB)["blocked"] == "Marathon answered 403: forbidden"
    _, held = await engine.manual(JOB, 5, "again")
    assert (held.status, held.error, held.detail) == (
        "failed",
        "Marathon answered 403: forbidden",
        {"blocked": True},
    )
    assert d.act.tried == [4]  # blocked: nothing sent after the restart either
    view = engine.jobs[JOB].last_decision
    assert view is not None and (view["status"], view["reasons"]) == ("failed", ["Manual"])
    assert view["outcome"]["reason"] == ACTUATION_FAILED

    await engine.upsert(parse_job(doc(max_instances=7)), 2)  # a changed document may be applied again
    assert engine.status(JOB)["blocked"] is None
    await engine.flush()
    await d.stop()
    engine = await d.start()  # the unblock was written with the state: kept
    assert engine.jobs[JOB].blocked is None


async def test_a_block_is_dropped_when_the_document_changed_while_the_daemon_was_down(
    run: Callable[..., Any],
) -> None:
    d = await run(REFUSED)
    assert d.engine is not None
    await d.engine.manual(JOB, 4, "launch")
    await d.stop()
    assert await d.put_job(doc(max_instances=7)) == 2  # edited by another daemon, say
    engine = await d.start()
    assert engine.jobs[JOB].blocked is None
    _, outcome = await engine.manual(JOB, 5, "again")
    assert outcome.status == "applied" and d.act.tried == [4, 5]


async def test_a_superseded_retry_is_its_outcome_and_the_restart_does_not_retry_it(
    run: Callable[..., Any],
) -> None:
    d = await run(TRANSIENT)
    assert d.engine is not None
    first, _ = await d.engine.manual(JOB, 4, "launch")
    second, applied = await d.engine.manual(JOB, 2, "back")
    assert applied.status == "applied"
    rows = {r["id"]: r for r in await d.rows()}
    old = rows[first.id]
    assert (old["outcome"]["status"], old["outcome"]["superseded_by"]) == ("superseded", second.id)
    assert (old["status"], old["result"]["superseded_by"]) == ("failed", second.id)
    assert old["reasons"] == ["Manual"]
    await d.stop()
    engine = await d.start()
    assert engine.jobs[JOB].retry is None and engine.jobs[JOB].retry_at is None
    assert d.act.tried == [4, 2]


async def test_setting_a_jobs_retry_sets_its_persisted_actuation_state(run: Callable[..., Any]) -> None:
    d = await run(TRANSIENT)
    assert d.engine is not None
    decision, _ = await d.engine.manual(JOB, 4, "launch")
    rt = d.engine.jobs[JOB]
    rt.retry, rt.retry_at = None, None  # as code that drops a job's retry writes it
    assert (rt.actuation.retry, rt.actuation.retry_at, rt.retry_at) == (None, None, None)
    rt.retry, rt.retry_at = decision, T0 + 99
    assert (rt.actuation.retry, rt.actuation.retry_at, rt.retry_at) == (decision.id, T0 + 99, T0 + 99)
