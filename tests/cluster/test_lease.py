"""The lease loop against the real MariaDB (issue 14, HA.md §3.2–§3.4, §6.5): leases on the database
clock, never stolen, revoke-then-assign, takeover after expiry with a higher epoch, stop acting on the
local clock, the fenced intent insert, and the measured pitfalls (snapshot, lock waits, timeouts)."""

from __future__ import annotations

import asyncio
import dataclasses

import aiomysql
import pytest

from actuators.marathon import Attempt
from oceand.cluster.assign import desired_owners
from oceand.cluster.lease import (
    ClusterError,
    CoordError,
    DuplicateDecision,
    Fenced,
    LeaseManager,
    LeaseSettings,
)
from oceand.metrics import Metrics
from oceand.store import MySQLStore
from oceand.store.base import Fence, FencedWrite, MySQLURL, attempt_row
from policies.types import Decision
from tests.cluster.conftest import FAST, Clock, Make

pytestmark = pytest.mark.mysql


async def sql(url: MySQLURL, statement: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    conn = await aiomysql.connect(
        host=url.host, port=url.port, user=url.user, db=url.database, autocommit=True
    )
    try:
        async with conn.cursor() as cur:
            await cur.execute(statement, args or None)
            return [tuple(r) for r in await cur.fetchall()]
    finally:
        conn.close()


# for tests of the poll's sequencing, not of time: leases that cannot run out and store calls that do not
# time out while a loaded machine runs the test (a 0.25 s store timeout or a 1.5 s TTL can pass between two
# polls there, which turns a sequencing test into a takeover)
STEADY = dataclasses.replace(FAST, lease_ttl=60.0, stop_acting_after=30.0, store_timeout=10.0)


async def started(make: Make, *names: str, settings: LeaseSettings = FAST) -> list[LeaseManager]:
    ms = [await make(n, settings) for n in names]
    for m in ms:
        await m.ensure_cluster()
        await m.join()
    for _ in range(3):  # every member sees every other, then each takes what is free for it
        for m in ms:
            await m.poll_once()
    return ms


async def test_members_split_the_shards_as_rendezvous_says(make: Make) -> None:
    a, b, c = await started(make, "A", "B", "C", settings=STEADY)
    want = desired_owners(["A", "B", "C"], FAST.shards)
    for m in (a, b, c):
        assert sorted(m.held) == [s for s in range(FAST.shards) if want[s] == m.stable_id]
        assert all(m.may_act(s) for s in m.held)
    assert sorted([*a.held, *b.held, *c.held]) == list(range(FAST.shards))


async def test_a_valid_lease_is_never_taken(make: Make) -> None:
    (a,) = await started(make, "A")
    b = await make("B")
    assert await b.acquire(3) is None
    owner, epoch, valid = (await b.read_view()).leases[3]
    assert (owner, epoch, valid) == (a.me, a.held[3].epoch, True)


async def test_takeover_after_a_crash_comes_after_the_ttl_with_a_higher_epoch(
    make: Make, migrated: MySQLURL
) -> None:
    (a,) = await started(make, "A")
    old = a.held[5].epoch
    b = await make("B")
    assert await b.acquire(5) is None  # A "crashed" (no more renewals) but the lease is valid for the TTL
    await asyncio.sleep(FAST.lease_ttl + 0.1)
    h = await b.acquire(5)
    assert h is not None and h.epoch > old
    # A comes back (a long pause): its renewal finds shard 5 taken and drops it, keeping the others
    a_ok = await a.renew_once()
    assert not a_ok and 5 not in a.held
    assert (await sql(migrated, "SELECT owner, epoch FROM shard_lease WHERE shard = 5")) == [(b.me, h.epoch)]


async def test_a_clean_stop_hands_the_shards_over_at_once(make: Make) -> None:
    a, b = await started(make, "A", "B")
    a_shards = sorted(a.held)
    await a.stop()
    assert a.held == {}
    # B stops seeing A as a member and takes A's shards at its next poll, without waiting out a TTL
    await b.poll_once()
    assert sorted(b.held) == list(range(FAST.shards))
    assert set(a_shards) <= set(b.held)


async def test_a_join_moves_only_the_newcomers_shards_revoke_then_assign(make: Make) -> None:
    a, b = await started(make, "A", "B", settings=STEADY)
    before = {**{s: "A" for s in a.held}, **{s: "B" for s in b.held}}
    c = await make("C", STEADY)
    await c.ensure_cluster()
    await c.join()
    await c.poll_once()
    assert c.held == {}  # nothing is free yet: the current owners release first
    await a.poll_once()
    await b.poll_once()
    await c.poll_once()
    want = desired_owners(["A", "B", "C"], FAST.shards)
    assert sorted(c.held) == [s for s in range(FAST.shards) if want[s] == "C"]
    for s in a.held:
        assert before[s] == "A"
    for s in b.held:
        assert before[s] == "B"


async def test_releases_are_rate_limited(make: Make) -> None:
    slow = dataclasses.replace(FAST, release_rate=2)
    a = await make("A", slow)
    await a.ensure_cluster()
    await a.join()
    await a.poll_once()
    assert len(a.held) == FAST.shards
    b = await make("B", slow)
    await b.join()
    p = await a.poll_once()
    assert len(p.release) == 2 and p.deferred > 0


async def test_stop_acting_on_the_local_clock_without_a_store_round_trip(make: Make) -> None:
    clock = Clock()
    a = await make("A", mono=clock)
    await a.ensure_cluster()
    await a.join()
    await a.poll_once()
    assert a.may_act(0)
    clock.now += FAST.stop_acting_after - 0.01
    assert a.may_act(0)
    clock.now += 0.01
    assert not a.may_act(0)  # no renewal succeeded for stop_acting_after: stop, whatever the DB says
    a.expire_local()
    assert a.held == {}


async def test_a_failed_renewal_leaves_the_deadline_where_it_was(make: Make, migrated: MySQLURL) -> None:
    """Uncertainty counts as loss: a renewal that times out (here: blocked by a row lock held by another
    session) does not move valid_until; aiomysql has no query timeout, so store_timeout ends the wait."""
    clock = Clock()
    a = await make("A", mono=clock)
    await a.ensure_cluster()
    await a.join()
    await a.poll_once()
    until = a.held[0].valid_until
    conn = await aiomysql.connect(
        host=migrated.host, port=migrated.port, user=migrated.user, db=migrated.database
    )
    try:
        async with conn.cursor() as cur:
            await cur.execute("BEGIN")
            await cur.execute("SELECT * FROM shard_lease WHERE shard = 0 FOR UPDATE")
            clock.now += 0.5
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(CoordError, match="no answer within"):
                await a.renew_once()
            assert loop.time() - t0 < FAST.store_timeout + 0.5
        assert a.held[0].valid_until == until
    finally:
        await conn.rollback()
        conn.close()
    assert await a.renew_once()  # the coordination pool recovered (the cancelled connection was dropped)
    assert a.held[0].valid_until == clock.now + FAST.stop_acting_after


async def test_a_poller_sees_a_takeover_on_the_same_connection(make: Make) -> None:
    """HA.md §3.3 pitfall 1: with aiomysql's default (autocommit off, REPEATABLE READ) a poller keeps
    its first snapshot and never sees a takeover. The coordination pool is autocommit."""
    (a,) = await started(make, "A")
    b = await make("B", pool_size=1)  # one connection: every read below reuses it
    assert (await b.read_view()).leases[2][0] == a.me
    await a.release([2])
    assert (await b.read_view()).leases[2][0] is None
    h = await b.acquire(2)
    assert h is not None
    assert (await b.read_view()).leases[2][:2] == (b.me, h.epoch)


def row(job: str = "job.ha", n: int = 1) -> object:
    return attempt_row(7, job, Attempt(n, 4, 1_800_000_000.0, 1_800_000_002.0).to_json())


async def test_fenced_intent(make: Make, migrated: MySQLURL) -> None:
    metrics = Metrics()
    a = await make("A", metrics=metrics)
    await a.ensure_cluster()
    await a.join()
    await a.poll_once()
    e = a.held[1].epoch
    await a.fenced_attempt(1, e, 7, "job.ha", "b:100", row(), 1.0)  # valid lease: 1 row
    got = await sql(
        migrated, "SELECT job, decision_key, attempt, shard, epoch, owner, status FROM actuation_attempts"
    )
    assert got == [("job.ha", "b:100", 1, 1, e, a.me, "pending")]
    with pytest.raises(DuplicateDecision):  # the same decision again: 1062
        await a.fenced_attempt(1, e, 8, "job.ha", "b:100", row(), 1.0)
    with pytest.raises(Fenced):  # a wrong (older) epoch
        await a.fenced_attempt(1, e - 1, 7, "job.ha", "b:101", row(), 1.0)
    assert 1 not in a.held and metrics.intent_fenced._value.get() == 1
    # less than intent_margin left by the database clock
    h2 = a.held[2]
    await sql(
        migrated, "UPDATE shard_lease SET expires_at = NOW(6) + INTERVAL 200000 MICROSECOND WHERE shard = 2"
    )
    with pytest.raises(Fenced):
        await a.fenced_attempt(2, h2.epoch, 7, "job.ha", "b:102", row(), 1.0)
    assert len(await sql(migrated, "SELECT 1 FROM actuation_attempts")) == 1


async def test_a_stale_owner_cannot_insert_an_intent_after_a_takeover(make: Make) -> None:
    (a,) = await started(make, "A")
    e = a.held[4].epoch
    b = await make("B")
    await asyncio.sleep(FAST.lease_ttl + 0.1)
    assert await b.acquire(4) is not None
    with pytest.raises(Fenced):
        await a.fenced_attempt(4, e, 7, "job.ha", "b:100", row(), 1.0)
    await b.fenced_attempt(4, b.held[4].epoch, 9, "job.ha", "b:100", row(), 1.0)


async def test_another_shard_count_or_name_is_refused(make: Make) -> None:
    await started(make, "A")
    with pytest.raises(ClusterError, match="created with 16 shards"):
        await (await make("B", dataclasses.replace(FAST, shards=32))).ensure_cluster()
    with pytest.raises(ClusterError, match="belongs to cluster 't'"):
        await (await make("C", dataclasses.replace(FAST, name="other"))).ensure_cluster()


async def test_the_same_advertise_address_twice_is_refused(make: Make) -> None:
    a = await make("A")
    await a.start()  # renewing: its row stays live
    twin = await make("A")
    twin.me = "A:2:ffff"
    with pytest.raises(ClusterError, match="same advertise address"):
        await twin.join()


async def test_a_restart_after_a_kill_waits_out_the_old_row(make: Make) -> None:
    (a,) = await started(make, "A")
    a.held.clear()  # killed: nothing released, its daemon row lives until its TTL
    again = await make("A")
    again.me = "A:2:eeee"
    await again.join()
    await asyncio.sleep(FAST.lease_ttl)
    await again.renew_once()  # its own membership row (the loop would renew it)
    await again.poll_once()
    assert len(again.held) == FAST.shards


async def test_the_loops_renew_and_a_stop_releases(make: Make, migrated: MySQLURL) -> None:
    a = await make("A")
    await a.start()
    first = dict((s, h.epoch) for s, h in a.held.items())
    await asyncio.sleep(FAST.lease_ttl + 0.5)  # longer than the TTL: only renewals keep the leases
    assert {s: h.epoch for s, h in a.held.items()} == first
    assert all(a.may_act(s) for s in a.held)
    await a.stop()
    rows = await sql(migrated, "SELECT COUNT(*) FROM shard_lease WHERE owner IS NOT NULL")
    assert rows == [(0,)]
    assert await sql(migrated, "SELECT COUNT(*) FROM daemon") == [(0,)]


async def test_a_batch_acquire_takes_only_the_free_and_expired(make: Make, migrated: MySQLURL) -> None:
    (a,) = await started(make, "A")
    await a.release([0, 1])  # free
    await sql(
        migrated, "UPDATE shard_lease SET expires_at = NOW(6) - INTERVAL 1 SECOND WHERE shard = 2"
    )  # expired
    old = {s: a.held[s].epoch for s in (2, 3)}
    b = await make("B")
    taken = await b.acquire_many([0, 1, 2, 3])  # 3 is A's, valid
    assert sorted(taken) == [0, 1, 2] and sorted(b.held) == [0, 1, 2]
    assert taken[2].epoch > old[2]
    rows = await sql(migrated, "SELECT shard, owner, epoch FROM shard_lease WHERE shard < 4 ORDER BY shard")
    assert rows == [(s, b.me, taken[s].epoch) for s in (0, 1, 2)] + [(3, a.me, old[3])]
    assert await b.acquire_many([0, 1, 2, 3]) == {}  # held already, or valid elsewhere


async def test_after_a_pause_a_poll_counts_the_shards_it_held_too_long_as_lost_not_released(
    make: Make,
) -> None:
    """Found by the chaos suite (tests/ha, gc_pause): after SIGSTOP past the lease, the poll loop ran
    before the renewal loop and handed the stale shards back as a release (revoke: draining, then an
    UPDATE for epochs long gone), so oceand_lease_lost_total never told that the daemon had been a stale
    owner. The shards held past stop_acting_after are lost (not_renewed) before anything is planned."""
    clock, metrics = Clock(), Metrics()
    a = await make("A", mono=clock, metrics=metrics)
    await a.ensure_cluster()
    await a.join()
    await a.poll_once()
    b = await make("B")
    await b.join()
    clock.now += FAST.stop_acting_after + 5  # frozen: no renewal since
    p = await a.poll_once()
    assert p.release == [] and a.held == {}
    assert metrics.lease_lost.labels("not_renewed")._value.get() == FAST.shards


def _decision(job: str) -> dict[str, object]:
    return Decision(job, 1.0, "bucket", 2, 3, 100, mode="active").to_json()


def resolved(status: str, n: int = 1, did: int = 7, job: str = "job.ha") -> object:
    return attempt_row(did, job, Attempt(n, 4, 1_800_000_000.0, 1_800_000_002.0, status=status).to_json())


async def test_a_stale_owner_cannot_overwrite_an_outcome_after_a_takeover(
    make: Make, migrated: MySQLURL
) -> None:
    """HA.md §6.6 step 7: outcome updates fenced by the lease epoch. A's write (its intent pending, its
    decision pending) outlives A's lease: B takes the shard (epoch + 1). A's late reply must not write the
    attempt's or the decision's outcome — B reconciles them. B's own writes of them go through, also
    when they change nothing (affected rows 0: PyMySQL counts changed rows, HA.md §3.3 pitfall 5)."""
    store = MySQLStore(migrated)
    await store.open()
    try:
        job = "job.ha"
        (a,) = await started(make, "A")
        s = a.shard_of(job)
        old = a.held[s].epoch
        did = await store.commit(job, {}, _decision(job), {"status": "pending"})
        assert did is not None
        await a.fenced_attempt(s, old, did, job, "b:100", resolved("pending", did=did), 1.0)
        b = await make("B")
        await sql(
            migrated, "UPDATE shard_lease SET expires_at = NOW(6) WHERE shard = %s", (s,)
        )  # A's TTL ends
        hb = await b.acquire(s)
        assert hb is not None and hb.epoch > old
        attempts = "SELECT status, epoch, owner FROM actuation_attempts WHERE decision_id = %s"
        outcome = "SELECT status FROM actuation_outcomes WHERE decision_id = %s"

        with pytest.raises(Fenced):  # A's late reply: the attempt
            await a.fenced_resolve(s, old, did, job, "b:100", resolved("applied", did=did), 2.0)
        assert s not in a.held  # A stops acting on the shard
        with pytest.raises(FencedWrite):  # ... and the decision's outcome (with the job's state)
            await store.record_outcome(
                did, job, {"status": "applied"}, {"count": 9}, fence=Fence(s, old, a.me)
            )
        assert await sql(migrated, attempts, (did,)) == [("pending", old, a.me)]
        assert await sql(migrated, outcome, (did,)) == [("pending",)]
        assert await sql(migrated, "SELECT state FROM job_state WHERE job = %s", (job,)) == [("{}",)]

        # B, the owner now, reconciles A's intent (it keeps A's epoch and owner: whose write it was)
        await b.fenced_resolve(s, hb.epoch, did, job, "b:100", resolved("abandoned", did=did), 3.0)
        assert await sql(migrated, attempts, (did,)) == [("abandoned", old, a.me)]
        await b.fenced_resolve(
            s, hb.epoch, did, job, "b:100", resolved("abandoned", did=did), 3.0
        )  # unchanged
        await store.record_outcome(did, job, {"status": "failed"}, fence=Fence(s, hb.epoch, b.me))
        assert await sql(migrated, outcome, (did,)) == [("failed",)]
        # a released lease fences its former owner too
        await b.release([s])
        with pytest.raises(FencedWrite):
            await store.record_outcome(did, job, {"status": "applied"}, fence=Fence(s, hb.epoch, b.me))
    finally:
        await store.close()


async def test_an_outcome_never_overwrites_another_decisions_intent_with_the_same_key(
    make: Make, migrated: MySQLURL
) -> None:
    """An intent whose insert had no answer is written abandoned by an upsert: when the insert had in
    fact failed as a duplicate of another decision's intent (the same key), that intent stays as it was."""
    (a,) = await started(make, "A")
    e = a.held[1].epoch
    await a.fenced_attempt(1, e, 7, "job.ha", "m:op-1", row(), 1.0)
    await a.fenced_resolve(1, e, 7, "job.ha", "m:op-1", resolved("applied", did=7), 2.0)
    await a.fenced_resolve(1, e, 8, "job.ha", "m:op-1", resolved("abandoned", did=8), 3.0)
    assert await sql(migrated, "SELECT decision_id, status FROM actuation_attempts") == [(7, "applied")]
