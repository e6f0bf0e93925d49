"""The engine gate in cluster mode (issue 14 item 4, HA.md §6.6/§6.7), with daemons in this process on
the real MariaDB and the in-process fake Marathon (real Marathon actuator):

- a write goes out only after its intent row is inserted fenced by the lease epoch, and carries it;
- a daemon whose local clock over-trusts its lease (its view says held, the database says another
  epoch) is fenced by the database: nothing reaches Marathon;
- a job owned by another daemon is not acted on here;
- a takeover adopts the former owner's write that landed (not sent twice: one PUT per decision)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from actuators.marathon.model import parse_time
from oceand.cluster import assign
from oceand.cluster.forward import FORWARDED_HEADER
from oceand.cluster.lease import CoordError
from oceand.config import validate_config
from oceand.daemon import Daemon
from oceand.store.base import FencedWrite, MySQLURL
from tests.cluster.test_lease import sql
from tests.conftest import Client
from tests.fakes.marathon import FakeMarathon
from tests.marathon.conftest import until
from tests.marathon.test_actuation import APP, JOB, job_doc, marathon

pytestmark = pytest.mark.mysql
_ports = itertools.count(30001)
# Deadlines of the waits on a condition (normally met in well under a second): generous, for a machine
# loaded by parallel test runs; a wait that holds returns at once.
WAIT = 30.0
# Two daemons, the test and MariaDB share this machine's 2 cores with other test runs: under that load a
# renewal round trip takes 150-330 ms (2-25 ms when idle), so a 250 ms store_timeout with a 300 ms renewal
# and 1 s stop_acting_after lost the leases (issue 14). Three renewals of 500 ms fit in stop_acting_after.
CLUSTER = {
    "enabled": True,
    "name": "gate",
    "token": "gate-cluster-token-0123",
    "shards": 16,
    "lease_ttl": "3s",
    "renew_interval": "600ms",
    "stop_acting_after": "2s",
    "acquire_poll": "100ms",
    "intent_margin": "500ms",
    "actuation_budget": "1s",
    "takeover_grace": "500ms",
    "member_min_age": "0s",
    "store_timeout": "500ms",
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeMarathon]:
    f = FakeMarathon(heartbeat=0.5, deploy_time=0.05)
    f.add_app(APP, 2)
    await f.start()
    yield f
    await f.stop()


class Cluster:
    def __init__(self, tmp: Path, db: MySQLURL, fake: FakeMarathon) -> None:
        self.tmp, self.db, self.fake = tmp, db, fake
        self.daemons: list[Daemon] = []
        self.sessions: list[aiohttp.ClientSession] = []

    async def start(self, **over: Any) -> tuple[Daemon, Client]:
        data = {
            "server": {"listen": "127.0.0.1:0"},
            "store": {"url": f"mysql://root@127.0.0.1:3306/{self.db.database}?timeout=10"},
            "marathon": marathon(self.fake.url),
            "cluster": dict(CLUSTER, advertise=f"127.0.0.1:{next(_ports)}", **over),
        }
        d = Daemon(validate_config(data, file=str(self.tmp / "oceand.toml"), base_dir=self.tmp, path=None))
        await d.start()
        self.daemons.append(d)
        s = aiohttp.ClientSession()
        self.sessions.append(s)
        assert d.url is not None
        return d, Client(s, d.url)

    async def start_owning_the_job(self) -> tuple[Daemon, Client]:
        """A daemon (the only one yet) acting on JOB's shard, with JOB added and its app known."""
        d, c = await self.start()
        await until(lambda: owns(d), WAIT)
        await add_job(d, c)
        return d, c

    async def close(self) -> None:
        for s in self.sessions:
            await s.close()
        for d in reversed(self.daemons):
            if not d.stop_event.is_set():
                await d.stop()


@pytest.fixture
async def cluster(tmp_path: Path, migrated: MySQLURL, fake: FakeMarathon) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path, migrated, fake)
    yield c
    await c.close()


def owns(d: Daemon, job: str = JOB) -> bool:
    return d.engine.ownership is not None and d.engine.ownership.gate(job) is None


def settled(a: Daemon, b: Daemon, job: str = JOB) -> bool:
    """The job's shard is acted on by its rendezvous owner among a and b only. (Not just "one of them
    owns it": right after b joins, a still holds every shard, and releases b's share a poll later.)"""
    if a.leases is None or b.leases is None:
        return False
    want = assign.desired_owners({a.leases.stable_id, b.leases.stable_id}, a.leases.s.shards)
    owner = a if want[a.leases.shard_of(job)] == a.leases.stable_id else b
    return owns(owner, job) and not owns(b if owner is a else a, job)


def puts(fake: FakeMarathon) -> list[dict[str, str]]:
    return [
        {k: v for k, v in r.headers.items() if k.lower().startswith("x-oceand-")}
        | {"instances": r.body[13:-1].decode()}
        for r in fake.requests
        if r.method == "PUT"
    ]


def metric(d: Daemon, name: str, **labels: str) -> float:
    return d.metrics.registry.get_sample_value(name, labels) or 0.0


async def taken_by_another(cluster: Cluster, shard: int) -> None:
    """Another daemon holds `shard` now, under a newer epoch, for a minute (behind this daemon's back)."""
    await sql(
        cluster.db,
        "UPDATE shard_lease SET owner = 'other:1:ffff', epoch = epoch + 1,"
        " expires_at = NOW(6) + INTERVAL 60 SECOND WHERE shard = %s",
        (shard,),
    )


async def add_job(d: Daemon, c: Client) -> None:
    assert (await c.call("POST", "/api/v1/jobs", job_doc()))[0] == 201
    await until(lambda: d.engine.status(JOB)["app_known"], WAIT)


async def test_a_write_is_fenced_by_the_lease_epoch_and_carries_it(cluster: Cluster) -> None:
    d, c = await cluster.start_owning_the_job()
    status, body = await c.call("POST", f"/api/v1/jobs/{JOB}/scale", {"instances": 3})
    assert status == 200 and body["decision"]["status"] == "applied", body
    did = body["decision"]["id"]
    assert d.leases is not None
    shard = d.leases.shard_of(JOB)
    epoch = d.leases.held[shard].epoch
    assert [(p["X-Oceand-Decision"], p["X-Oceand-Epoch"], p["instances"]) for p in puts(cluster.fake)] == [
        (str(did), str(epoch), "3")
    ]
    rows = await sql(
        cluster.db,
        "SELECT decision_id, shard, epoch, owner, decision_key, status FROM actuation_attempts",
    )
    assert rows == [(did, shard, epoch, d.leases.me, f"m:{did}", "applied")]
    await until(lambda: metric(d, "oceand_intents_total", status="applied") == 1, WAIT)
    assert metric(d, "oceand_intents_total", status="pending") == 1
    _, st = await c.call("GET", f"/api/v1/jobs/{JOB}/status")
    assert st["cluster"] == {
        "shard": shard,
        "owner": d.leases.me,
        "epoch": epoch,
        "this_daemon": True,
        "acting": True,
        "not_acting": None,
    }


async def test_a_daemon_that_over_trusts_its_lease_is_fenced_by_the_database(cluster: Cluster) -> None:
    """Its clock runs slow (faketime x0.5 in HA.md §5.2): it believes it may act, but another daemon
    holds the shard with a newer epoch. The intent insert finds 0 rows; Marathon sees nothing."""
    d, c = await cluster.start_owning_the_job()
    assert d.leases is not None
    for t in d.leases._tasks:  # frozen loops: nothing corrects its view
        t.cancel()
    shard = d.leases.shard_of(JOB)
    d.leases.held[shard].valid_until = time.monotonic() + 60
    await taken_by_another(cluster, shard)
    status, body = await c.call("POST", f"/api/v1/jobs/{JOB}/scale", {"instances": 3})
    assert status == 200 and body["decision"]["status"] == "pending", body
    assert "lease is not ours" in body["decision"]["result"]["error"]
    await asyncio.sleep(0.3)
    assert puts(cluster.fake) == []
    assert await sql(cluster.db, "SELECT COUNT(*) FROM actuation_attempts") == [(0,)]
    assert not owns(d)  # the fenced insert dropped the shard: it stops acting on it
    assert d.metrics.intent_fenced._value.get() == 1


async def test_a_job_owned_by_another_daemon_is_not_acted_on_here(cluster: Cluster) -> None:
    a, ca = await cluster.start()
    await add_job(a, ca)
    b, cb = await cluster.start()
    await until(lambda: settled(a, b) and JOB in b.engine.jobs, WAIT)
    (owner, co), (_other, cother) = ((a, ca), (b, cb)) if owns(a) else ((b, cb), (a, ca))
    # as a call forwarded to it sees it (not forwarded again: X-Oceand-Forwarded), the engine refuses
    assert cother.session is not None
    async with cother.session.post(
        f"{cother.base}/api/v1/jobs/{JOB}/scale", json={"instances": 4}, headers={FORWARDED_HEADER: "test"}
    ) as r:
        status, body = r.status, await r.json()
    assert status == 409 and "not acted on by this daemon" in str(body), body
    await until(lambda: owner.engine.status(JOB)["app_known"], WAIT)
    status, body = await co.call("POST", f"/api/v1/jobs/{JOB}/scale", {"instances": 4})
    assert status == 200 and body["decision"]["status"] == "applied", body
    assert [p["instances"] for p in puts(cluster.fake)] == ["4"]


async def test_a_takeover_adopts_a_write_that_landed_instead_of_sending_it_again(cluster: Cluster) -> None:
    """The owner's PUT lands late (its reply lost); the owner then stops (its lease lapses, like a
    SIGSTOP). The new owner takes the shard with a higher epoch, waits out the quiet period
    (takeover_grace after the write's deadline), finds the decision pending and its write in Marathon:
    applied, not sent again. One PUT for the decision."""
    cluster.fake.set_put_delay(1.5)
    a, ca = await cluster.start_owning_the_job()
    status, body = await ca.call("POST", f"/api/v1/jobs/{JOB}/scale", {"instances": 3})
    assert status == 200 and body["decision"]["status"] == "pending", body
    did = body["decision"]["id"]
    assert a.leases is not None
    old_epoch = a.leases.held[a.leases.shard_of(JOB)].epoch
    for t in a.leases._tasks:  # A stops: no renewals, and its engine no longer acts
        t.cancel()
    a.leases.held.clear()
    cluster.fake.set_put_delay(0)
    b, cb = await cluster.start(takeover_grace="3s")
    await until(lambda: owns(b), WAIT)
    assert b.leases is not None
    new_epoch = b.leases.held[b.leases.shard_of(JOB)].epoch
    assert new_epoch > old_epoch

    async def decision_status() -> str:
        _, got = await cb.call("GET", f"/api/v1/jobs/{JOB}/decisions")
        return str(next(x for x in got["decisions"] if x["id"] == did)["status"])

    async with asyncio.timeout(WAIT):
        while await decision_status() == "pending":
            await asyncio.sleep(0.05)
    resolved = time.time()
    assert await decision_status() == "applied"
    ((deadline,),) = await sql(
        cluster.db, "SELECT deadline FROM actuation_attempts WHERE decision_id = %s", (did,)
    )
    assert resolved >= float(deadline) + 3.0  # the quiet period: not reconciled before deadline + grace
    assert [p["instances"] for p in puts(cluster.fake)] == ["3"]  # one PUT for the decision
    assert cluster.fake.apps[APP].instances == 3


async def test_get_cluster_lists_members_shards_and_epochs(cluster: Cluster) -> None:
    a, ca = await cluster.start()
    b, _ = await cluster.start()
    assert a.leases is not None and b.leases is not None
    await until(
        lambda: len(a.leases.held) + len(b.leases.held) == 16 and a.leases.held and b.leases.held, WAIT
    )
    await a.leases.poll_once()  # a fresh view of B's leases
    status, body = await ca.call("GET", "/api/v1/cluster")
    assert status == 200
    assert (body["enabled"], body["name"], body["shards"], body["this_daemon"]) == (
        True,
        "gate",
        16,
        a.leases.me,
    )
    members = {m["instance_id"]: m["shards_held"] for m in body["members"]}
    assert members == {a.leases.me: len(a.leases.held), b.leases.me: len(b.leases.held)}
    assert body["unowned"] == 0
    mine = {r["shard"]: r["epoch"] for r in body["leases"] if r["owner"] == a.leases.me}
    assert mine == {s: h.epoch for s, h in a.leases.held.items()}


async def test_get_cluster_alone(start_daemon: Any) -> None:
    _, c = await start_daemon()
    assert await c.call("GET", "/api/v1/cluster") == (200, {"enabled": False})


async def attempts_until(cluster: Cluster, did: int, want: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The decision's attempt rows (attempt, status) once they are `want`, or as they are after WAIT: the
    write's outcome is recorded after the PUT's answer, a moment after the worker is done with its retry."""
    rows: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        rows = await sql(
            cluster.db,
            "SELECT attempt, status FROM actuation_attempts WHERE decision_id = %s ORDER BY attempt",
            (did,),
        )
        if rows == want:
            break
        await asyncio.sleep(0.05)
    return rows


async def scale_with_a_faulty_first_intent(
    cluster: Cluster, fault: Callable[[], Awaitable[None]]
) -> tuple[Daemon, dict[str, Any]]:
    """A daemon owning JOB whose first fenced intent insert is done (the row is in), then `fault()` (a
    stall, a lost answer); scales JOB to 3 and returns the daemon and the decision, which is pending:
    nothing was sent for that attempt."""
    d, c = await cluster.start_owning_the_job()
    assert d.leases is not None
    real = d.leases.fenced_attempt
    calls = 0

    async def faulty_once(*args: Any) -> None:
        nonlocal calls
        calls += 1
        await real(*args)
        if calls == 1:
            await fault()

    d.leases.fenced_attempt = faulty_once  # type: ignore[method-assign]
    status, body = await c.call("POST", f"/api/v1/jobs/{JOB}/scale", {"instances": 3})
    assert status == 200 and body["decision"]["status"] == "pending", body
    assert puts(cluster.fake) == []
    return d, body["decision"]


async def the_retry_is_attempt_2_and_applied(cluster: Cluster, d: Daemon, did: int) -> None:
    """After a faulty first attempt: one PUT, attempt 2; the rows say attempt 1 abandoned, 2 applied."""
    await until(lambda: len(puts(cluster.fake)) == 1, WAIT)  # the retry
    assert [(p["X-Oceand-Attempt"], p["instances"]) for p in puts(cluster.fake)] == [("2", "3")]
    await until(lambda: d.engine.jobs[JOB].retry is None, WAIT)
    assert await attempts_until(cluster, did, [(1, "abandoned"), (2, "applied")]) == [
        (1, "abandoned"),
        (2, "applied"),
    ]


async def test_a_write_not_sent_within_the_budget_of_its_intent_is_abandoned(cluster: Cluster) -> None:
    """The intent insert took longer than actuation_budget (a stall between the insert and the write):
    the attempt is marked abandoned and nothing is sent; the retry is the next attempt, and is sent."""

    async def stall() -> None:
        await asyncio.sleep(1.0)  # = actuation_budget: past it by the time the write would go

    d, decision = await scale_with_a_faulty_first_intent(cluster, stall)
    assert "actuation_budget" in decision["result"]["error"]
    await the_retry_is_attempt_2_and_applied(cluster, d, decision["id"])
    assert d.metrics.intent_abandoned.labels("budget")._value.get() == 1
    assert metric(d, "oceand_intents_total", status="abandoned") == 1
    assert metric(d, "oceand_intents_total", status="pending") == 2


async def test_a_daemon_that_lost_a_job_does_not_write_its_state_over_the_owners(cluster: Cluster) -> None:
    d, _ = await cluster.start_owning_the_job()
    await d.engine.flush()
    ((stored,),) = await sql(cluster.db, "SELECT state FROM job_state WHERE job = %s", (JOB,))
    assert d.leases is not None
    for t in d.leases._tasks:
        t.cancel()
    d.leases.held.clear()  # lost (another daemon owns it now)
    rt = d.engine.jobs[JOB]
    rt.state.streaks.clear()
    rt.state.count = 9  # what this daemon believed before it lost the job
    d.engine._dirty.add(JOB)
    await d.engine.flush()
    assert await sql(cluster.db, "SELECT state FROM job_state WHERE job = %s", (JOB,)) == [(stored,)]


async def test_a_status_says_whether_the_daemon_acts_on_the_job_not_only_whose_lease_it_last_read(
    cluster: Cluster,
) -> None:
    """Found by the chaos suite (tests/ha, mysql_pause): a daemon cut from MySQL stops acting by its own
    clock, but its status kept naming itself the owner (`this_daemon`, from the last lease it read), so
    a client routing samples to 'the owner' picked a daemon that acts on nothing. `acting` says it."""
    d, c = await cluster.start_owning_the_job()
    _, st = await c.call("GET", f"/api/v1/jobs/{JOB}/status")
    assert (st["cluster"]["this_daemon"], st["cluster"]["acting"]) == (True, True)
    assert d.leases is not None
    for t in d.leases._tasks:  # no more renewals, as when MySQL does not answer
        t.cancel()
    await until(lambda: not owns(d), WAIT)
    _, st = await c.call("GET", f"/api/v1/jobs/{JOB}/status")
    assert st["cluster"]["acting"] is False


async def test_an_intent_insert_of_unknown_outcome_is_abandoned_not_left_pending(cluster: Cluster) -> None:
    """The chaos soak's seed 15: the fenced insert got no answer within store_timeout, yet the row was
    inserted. Nothing is sent for it; the daemon writes it abandoned at once (no orphan pending row),
    and the retry is the next attempt, which is sent."""

    async def lost_reply() -> None:  # inserted, but the answer never came
        raise CoordError("cluster store: no answer within 0.25s")

    d, decision = await scale_with_a_faulty_first_intent(cluster, lost_reply)
    await the_retry_is_attempt_2_and_applied(cluster, d, decision["id"])


async def scaled_then_crashed(cluster: Cluster) -> tuple[Daemon, int]:
    """Daemon A owns the job and scales it to 3 (applied), then stops like a crash: no renewals, and its
    engine no longer acts. Returns A and the decision's id."""
    a, ca = await cluster.start_owning_the_job()
    status, body = await ca.call("POST", f"/api/v1/jobs/{JOB}/scale", {"instances": 3})
    assert status == 200 and body["decision"]["status"] == "applied", body
    assert a.leases is not None
    for t in a.leases._tasks:
        t.cancel()
    a.leases.held.clear()
    return a, int(body["decision"]["id"])


@pytest.mark.parametrize("outcome", ["failed", "superseded"])
async def test_a_takeover_settles_a_pending_write_of_a_decision_no_longer_pending(
    cluster: Cluster, outcome: str
) -> None:
    """HA.md §6.7: the new owner reads the pending intents of its shards, not only the decisions whose
    outcome is pending. The state a crash leaves: the decision was recorded `failed` (its intent's
    insert had no answer) or `superseded` (its write of unknown outcome kept only in the old owner's
    memory), its write still `pending` in the store, and the write in fact landed. The new owner adopts
    it (the decision is applied, the write applied) and sends nothing."""
    _, did = await scaled_then_crashed(cluster)
    await sql(cluster.db, "UPDATE actuation_attempts SET status = 'pending' WHERE decision_id = %s", (did,))
    await sql(
        cluster.db,
        "UPDATE actuation_outcomes SET status = %s, outcome = JSON_SET(outcome, '$.status', %s)"
        " WHERE decision_id = %s",
        (outcome, outcome, did),
    )
    b, cb = await cluster.start()
    await until(lambda: owns(b), WAIT)

    async def attempt_status() -> str:
        rows = await sql(cluster.db, "SELECT status FROM actuation_attempts WHERE decision_id = %s", (did,))
        return str(rows[0][0])

    async with asyncio.timeout(WAIT):
        while await attempt_status() == "pending":
            await asyncio.sleep(0.05)
    assert await attempt_status() == "applied"

    async def decision_status() -> str:
        _, got = await cb.call("GET", f"/api/v1/jobs/{JOB}/decisions")
        return str(next(x for x in got["decisions"] if x["id"] == did)["status"])

    # the write is settled first and the decision's outcome recorded after it (Engine._settle_older): a
    # read between the two saw the decision not yet applied (a -n 2 run on a loaded host)
    async with asyncio.timeout(WAIT):
        while await decision_status() != "applied":
            await asyncio.sleep(0.05)
    assert [p["instances"] for p in puts(cluster.fake)] == ["3"]  # not sent again


@pytest.mark.parametrize("landed", [True, False], ids=["adopted", "abandoned"])
async def test_a_takeover_counts_its_reconciliation_and_a_foreign_write(
    cluster: Cluster, landed: bool
) -> None:
    """HA.md §6.11 metrics where a takeover happens: the former owner's write left pending (as a crash
    leaves it) is reconciled by the new owner (oceand_reconcile_total adopted / abandoned, its intent
    resolved in oceand_intents_total); an app someone else scaled meanwhile (to 7: neither the decision's
    2 nor its 3) is a foreign write; every shard taken from the former owner is a takeover, timed from
    its lease's expiry (oceand_takeover_seconds)."""
    a, did = await scaled_then_crashed(cluster)
    app = cluster.fake.apps[APP]
    await until(lambda: app.deployment is None, WAIT)
    if landed:  # the write shows in Marathon, and someone else scales the app after it
        cluster.fake.scale_now(APP, 7)
        await until(lambda: app.deployment is None, WAIT)
        baseline = None
    else:  # nothing shows the write: Marathon's last scaling is the one known before it, the count is 2
        app.instances = 2
        baseline = parse_time(app.last_scaling_at)
    await sql(
        cluster.db,
        "UPDATE actuation_attempts SET status = 'pending', baseline = %s WHERE decision_id = %s",
        (baseline, did),
    )
    await sql(
        cluster.db,
        "UPDATE actuation_outcomes SET status = 'failed', outcome = JSON_SET(outcome, '$.status', 'failed')"
        " WHERE decision_id = %s",
        (did,),
    )
    b, _ = await cluster.start()
    await until(lambda: owns(b), WAIT)
    result = "adopted" if landed else "abandoned"
    await until(lambda: metric(b, "oceand_reconcile_total", result=result) == 1, WAIT)
    rows = await sql(cluster.db, "SELECT status FROM actuation_attempts WHERE decision_id = %s", (did,))
    assert rows == [("applied" if landed else "abandoned",)]
    assert metric(b, "oceand_intents_total", status="applied" if landed else "abandoned") == 1
    assert metric(b, "oceand_foreign_writes_total") == (1 if landed else 0)
    assert metric(a, "oceand_takeover_seconds_count") == 0  # shards never held before: no takeover
    assert metric(b, "oceand_takeover_seconds_count") == 16  # every shard, from A's expired lease
    assert 0 < metric(b, "oceand_takeover_seconds_sum") / 16 < 30
    assert [p["instances"] for p in puts(cluster.fake)] == ["3"]  # not sent again


@pytest.mark.parametrize("key", ["", "a b", "x" * 65, "a/b"])
async def test_a_malformed_idempotency_key_is_refused_with_400(start_daemon: Any, key: str) -> None:
    _, c = await start_daemon()
    status, body = await c.call(
        "POST", f"/api/v1/jobs/{JOB}/scale", {"instances": 3}, headers={"Idempotency-Key": key}
    )
    assert status == 400 and body["error"]["code"] == "bad_idempotency_key", body


async def test_an_outcome_write_refused_by_the_fence_is_counted(cluster: Cluster) -> None:
    """Another daemon takes the shard between the write and the outcome's record: FencedWrite, nothing
    recorded, counted in oceand_outcome_writes_fenced_total (before: only the `outcome_fenced` log line)."""
    d, c = await cluster.start()
    await until(lambda: owns(d), 5)
    await add_job(d, c)
    assert d.leases is not None
    shard = d.leases.shard_of(JOB)
    real = d.store.record_outcome
    refused = 0

    async def taken_meanwhile(*args: Any, **kw: Any) -> None:
        nonlocal refused
        await taken_by_another(cluster, shard)
        try:
            await real(*args, **kw)
        except FencedWrite:
            refused += 1
            raise

    d.store.record_outcome = taken_meanwhile  # type: ignore[method-assign]
    assert metric(d, "oceand_outcome_writes_fenced_total") == 0
    await c.call("POST", f"/api/v1/jobs/{JOB}/scale", {"instances": 3})
    await until(lambda: refused >= 1, 5)
    assert metric(d, "oceand_outcome_writes_fenced_total") == refused
