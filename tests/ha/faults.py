"""The faults of HA.md §5.2, each a function of a warmed-up rig (three members acting, load on): it
injects the fault, checks what that fault promises (takeover times, who stops acting), and returns once
the cluster acts on every job again. The scenarios (test_chaos.py) run one each and then check the
invariants; the soak (test_soak.py) runs them in random order and counts the violations."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from oceand.cluster.hotstate import state_key
from oceand.cluster.ids import shard_of
from tests.e2e.harness import wait_for
from tests.ha import invariants as inv
from tests.ha.rig import TIMINGS, Member, Rig, get

TTL = float(TIMINGS["lease_ttl"].removesuffix("s"))
STOP_ACTING = float(TIMINGS["stop_acting_after"].removesuffix("s"))
BUDGET = float(TIMINGS["actuation_budget"].removesuffix("s"))
TAKEOVER_BOUND = 4.0  # HA.md §5.2 "≤ 4 s" at TTL 3 s; at TTL 1.5 s a takeover takes ~1.5-2 s, kept loose
CLEAN_TAKEOVER_BOUND = 1.0  # SIGTERM: the leaver releases its shards (HA.md: < 0.5 s; slack for 2 cores)
# Marathon applies a PUT this long after it arrived: past the client's timeout (1 s), within the window
# its sender settles it in (timeout + settle_grace 1 s) and the new owner's (deadline + takeover_grace).
# A write Marathon applies later than that is retried and lands twice (same count): see docs/cluster.md.
LATE_APPLY = 1.3


def _owner_of_first(rig: Rig) -> tuple[str, Member]:
    job = random.choice(rig.names)
    own = wait_for(lambda: rig.owner(job), 30, f"an owner of {job}")
    return job, own


def _metric(m: Member, prefix: str) -> float:
    """The sum of the samples of `m`'s /metrics whose line starts with `prefix` (0 when it does not
    answer)."""
    text = ""
    try:
        with urllib.request.urlopen(m.daemon.url + "/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def _lost(m: Member) -> float:
    """oceand_lease_lost_total of `m`, all reasons."""
    return _metric(m, "oceand_lease_lost_total{")


def kill_9(rig: Rig) -> None:
    """kill -9 an owner: its jobs are taken over within TAKEOVER_BOUND; it restarts and rejoins."""
    job, victim = _owner_of_first(rig)
    rig.kill9(victim)
    rig.timed_takeover(job, rig.live(), time.monotonic(), TAKEOVER_BOUND + 5)
    rig.progress(1)
    victim.daemon.start()
    rig.wait_settled()


def gc_pause(rig: Rig, factor: float | None = None) -> None:
    """SIGSTOP an owner for 1-3 x TTL (+ a margin past the TTL), SIGCONT: the others take its shards
    meanwhile; the resumed daemon finds its leases lost (oceand_lease_lost_total rises) and sends nothing
    stale (I1, I4, I8 in the final check)."""
    job, victim = _owner_of_first(rig)
    lost = _lost(victim)
    t0 = time.monotonic()
    pause = TTL * (factor if factor is not None else random.uniform(1.0, 3.0)) + 0.5
    stopper = threading.Thread(target=rig.sigstop, args=(victim, pause))
    stopper.start()
    others = [m for m in rig.live() if m is not victim]
    rig.timed_takeover(job, others, t0, TAKEOVER_BOUND + pause)
    stopper.join()
    wait_for(lambda: _lost(victim) > lost, 30, "the resumed daemon counting its lost leases")
    rig.wait_settled()
    rig.progress(1)


def sigterm(rig: Rig) -> None:
    """SIGTERM an owner: it releases its shards, a survivor acts within CLEAN_TAKEOVER_BOUND; restart."""
    job, victim = _owner_of_first(rig)
    others = [m for m in rig.live() if m is not victim]
    assert victim.daemon.proc is not None
    victim.daemon.proc.terminate()
    t0 = time.monotonic()
    took = rig.timed_takeover(job, others, t0, 10)
    assert victim.daemon.proc.wait(30) == 0
    assert took <= CLEAN_TAKEOVER_BOUND, f"takeover after SIGTERM took {took}s"
    rig.progress(1)
    victim.daemon.start()
    rig.wait_settled()


def rolling_restart(rig: Rig) -> None:
    """SIGTERM + start each member in turn; after each the shards settle again and the jobs scale."""
    for m in list(rig.live()):
        assert m.daemon.stop() == 0
        rig.wait_settled()
        m.daemon.start()
        rig.wait_settled()
    rig.progress(1)


def mysql_cut(rig: Rig, how: str = "pause") -> None:
    """One owner cut from MySQL by its proxy (`pause`: black hole; `cut`: RST) for TTL + 2.5 s: it stops
    acting (its leases lost), the others take its shards within TAKEOVER_BOUND, it rejoins after."""
    job, victim = _owner_of_first(rig)
    lost = _lost(victim)
    others = [m for m in rig.live() if m is not victim]
    victim.mysql.command(how)
    t0 = time.monotonic()
    try:
        rig.timed_takeover(job, others, t0, TAKEOVER_BOUND + 5)
        wait_for(lambda: _lost(victim) > lost, 30, "the cut daemon counting its lost leases")
        status = get(victim.daemon, f"/api/v1/jobs/{job}/status", 2.0)
        assert status is None or not status["cluster"]["acting"], status["cluster"]
    finally:
        victim.mysql.command("resume")
    rig.wait_settled()
    rig.progress(1)


def mysql_stall(rig: Rig, seconds: float = 3.0) -> None:
    """MySQL-side stall: a transaction holds every lease and member row (FOR UPDATE) for `seconds`, so no
    renewal can finish; every daemon stops acting by its own clock; after the commit the leases are
    renewed or re-acquired and every job scales again."""
    c = rig.connect()
    try:
        with c.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT shard FROM shard_lease FOR UPDATE")
            cur.execute("SELECT instance_id FROM daemon FOR UPDATE")
            time.sleep(seconds)  # the fault: the locks are held this long
            c.commit()
    finally:
        c.close()
    rig.wait_settled()
    rig.progress(1)


def marathon_errors(rig: Rig) -> None:
    """Marathon answers 503, then 409, then is slow past the client timeout (the outcome is unknown until
    reconciled): every job still scales afterwards, and no decision is taken twice (I2 in the check)."""
    for rule in (
        {"n": 4, "status": 503},
        {"n": 4, "status": 409},
    ):
        before = _answered(rig, int(rule["status"]))
        rig.fake.control("POST", "fail_next", rule)
        wait_for(
            lambda r=rule, b=before: _answered(rig, int(r["status"])) >= b + int(r["n"]), 30, f"{rule} used"
        )
    # slow past the client's timeout, within LATE_APPLY's window (a delay past it is the known limit)
    rig.fake.control("POST", "delay_next", {"n": 2, "seconds": LATE_APPLY, "path_prefix": "/v2/apps/"})
    rig.progress(2)


def _answered(rig: Rig, status: int) -> int:
    """Requests (of any method) the fake answered with `status`."""
    return len([r for r in rig.fake.control("GET", "requests") if r["status"] == status])


def late_put(rig: Rig) -> None:
    """Marathon applies a PUT late (LATE_APPLY after it arrived: past the sender's 1 s timeout, within
    deadline + takeover_grace) and the sender is killed meanwhile: the new owner waits out deadline +
    grace, sees the write landed and adopts it (no second write for that decision, no extra step: I2,
    I5). The other owners' writes land late too and are settled by their own senders."""
    job, victim = _owner_of_first(rig)
    app = rig.apps[job]
    rig.fake.control("POST", "put_delay", {"seconds": LATE_APPLY})
    before = len(_app_writes(rig, app))
    try:
        wait_for(lambda: len(_app_writes(rig, app)) > before, 30, f"a PUT of {app} arriving")
        rig.kill9(victim)
        t0 = time.monotonic()
        rig.timed_takeover(job, rig.live(), t0, TAKEOVER_BOUND + 5)
    finally:
        rig.fake.control("POST", "put_delay", {"seconds": 0})
    rig.progress(1)
    victim.daemon.start()
    rig.wait_settled()


def _app_writes(rig: Rig, app: str) -> list[object]:
    return [
        r
        for r in rig.fake.control("GET", "requests")
        if r["method"] in ("PUT", "PATCH") and r["path"] == "/v2/apps" + app
    ]


def marathon_cut(rig: Rig, seconds: float = 3.0) -> None:
    """One owner cut from Marathon by its proxy (RST, refused) for `seconds`: its writes fail or stay
    unknown and are settled after; the jobs of the other daemons keep scaling meanwhile; once resumed,
    every job scales again."""
    _, victim = _owner_of_first(rig)
    others = [rig.apps[j] for j in rig.names if rig.owner(j) not in (None, victim)]
    victim.marathon.command("cut")
    try:
        if others:
            rig.progress(1, apps=others)
        else:
            time.sleep(seconds)  # the fault's length: every job is the victim's, nothing to watch meanwhile
    finally:
        victim.marathon.command("resume")
    rig.progress(1)


def churn(rig: Rig, rounds: int = 2) -> None:
    """Membership churn: a fourth daemon joins (takes its rendezvous share), then leaves by SIGTERM,
    `rounds` times; handoffs never overlap (I1, I8) and the jobs keep scaling."""
    extra: Member | None = None
    for _ in range(rounds):
        if extra is None:
            extra = rig.add()
        else:
            extra.daemon.start()
        rig.wait_settled()
        rig.progress(1)
        assert extra.daemon.stop() == 0
        rig.wait_settled()
    rig.progress(1)


def _redis(m: Member) -> str | None:
    """What /readyz of `m` says of Redis ("ok", "degraded"), None when it does not answer."""
    ready = get(m.daemon, "/readyz", 1.0)
    return None if ready is None else ready.get("redis")


def _all_redis(rig: Rig, want: str, what: str, among: list[Member] | None = None) -> None:
    wait_for(lambda: all(_redis(m) == want for m in (among if among is not None else rig.live())), 10, what)


def redis_restart(rig: Rig) -> None:
    """Redis restarted without persistence (HA.md §5.2), with a kill -9 while it is down: every daemon
    reports `"redis": "degraded"` in /readyz (still ready) and keeps acting (leases and intents are in
    MySQL); the owner killed meanwhile is taken over within TAKEOVER_BOUND from the store's state; once
    Redis is back (empty), every daemon says `ok` again and the snapshots are written again."""
    assert rig.redis is not None, "the rig needs with_redis()"
    server = rig.redis
    _all_redis(rig, "ok", "every daemon connected to Redis")
    wait_for(lambda: server.client().dbsize() > 0, 10, "hot-state snapshots in Redis")
    server.stop()  # SIGKILL: nothing saved
    _all_redis(rig, "degraded", "every daemon reporting Redis degraded")
    rig.progress(1)  # acting goes on without Redis
    job, victim = _owner_of_first(rig)
    rig.kill9(victim)
    rig.timed_takeover(job, rig.live(), time.monotonic(), TAKEOVER_BOUND + 5)
    rig.progress(1)
    server.start()  # same port, no keys
    victim.daemon.start()
    rig.wait_settled()
    _all_redis(rig, "ok", "every daemon reporting Redis ok again")
    wait_for(lambda: server.client().dbsize() > 0, 10, "snapshots written again after the restart")
    rig.progress(1)


def redis_restart_aof(rig: Rig) -> None:
    """Redis restarted with AOF on (SHUTDOWN, which fsyncs the file, then start on the same dir): hot
    state survives. An owner is cut from Redis (its proxy `cut`: it keeps its leases, writes no snapshot
    and cannot send its states again after the restart), so only the AOF can bring its snapshots back:
    each is there again, byte for byte. Once the others write to Redis again the owner is killed: its
    successors read those snapshots (oceand_hotstate_read_total: hits, never a miss; without persistence
    they would miss and start from the store)."""
    assert rig.redis is not None, "the rig needs with_redis()"
    server = rig.redis
    client = server.client()
    if not server.appendonly:  # the soak's Redis: AOF on for this fault (off again at its end)
        client.config_set("appendonly", "yes")
        server.appendonly = True
    try:
        wait_for(lambda: _aof_ready(server.client()), 10, "the AOF written")
        _all_redis(rig, "ok", "every daemon connected to Redis")
        job, victim = _owner_of_first(rig)
        key = _state_key(rig, job)
        wait_for(lambda: server.client().exists(key), 10, f"the snapshot of {job} in Redis")
        others = [m for m in rig.live() if m is not victim]
        assert victim.redis is not None
        victim.redis.command("cut")
        try:
            wait_for(lambda: _redis(victim) == "degraded", 10, "the owner cut from Redis")
            snapshot = server.client().hgetall(key)
            server.shutdown()
            server.start()  # same port and dir: the AOF is loaded
            assert server.client().hgetall(key) == snapshot, f"{key} not the same after a restart with AOF"
            # each of the others that owns a job has written a snapshot since: its connections from before the restart
            # failed once each meanwhile (no retry), so its takeover read does not land on a dead one
            ok = 'oceand_hotstate_write_total{result="ok"}'
            written = {m.name: _metric(m, ok) for m in others}
            owning = {m.name for m in others if any(rig.owner(j, [m]) for j in rig.names)}  # others idle
            wait_for(
                lambda: all(
                    _redis(m) == "ok" and (m.name not in owning or _metric(m, ok) > written[m.name])
                    for m in others
                ),
                10,
                "the others writing snapshots again",
            )
            reads = _reads(others)
            rig.kill9(victim)
        finally:
            victim.redis.command("resume")
        rig.timed_takeover(job, others, time.monotonic(), TAKEOVER_BOUND + 5)
        # the successors read the victim's snapshots: a hit, never a miss (lost). (Before the first failed
        # call dropped every idle pooled connection, a takeover's read often met one left from before the
        # restart and failed: `error` or `skipped`, never a hit.)
        wait_for(
            lambda: sum(_reads(others).values()) > sum(reads.values()), 10, "a successor reading a snapshot"
        )
        got = {r: n - reads[r] for r, n in _reads(others).items()}
        sources = {
            s: sum(_metric(m, f'oceand_hotstate_source_total{{source="{s}"}}') for m in others)
            for s in ("redis", "store")
        }
        print(
            f"\nredis_restart_aof: {len(snapshot)} fields of {key} the same after the restart; takeover "
            f"{rig.takeovers[-1]}s, the successors' snapshot reads {got}, sources {sources}"
        )
        assert got["miss"] == 0, f"a snapshot missing after a restart with AOF: {got}"
        assert got["hit"] >= 1, f"no successor read the snapshot: {got}"
        victim.daemon.start()
        rig.wait_settled()
        _all_redis(rig, "ok", "every daemon reporting Redis ok after the restart")
        rig.progress(1)
    finally:
        server.client().config_set("appendonly", "no")
        server.appendonly = False


def _reads(members: list[Member]) -> dict[str, float]:
    """oceand_hotstate_read_total by result, summed over `members`."""
    return {
        r: sum(_metric(m, f'oceand_hotstate_read_total{{result="{r}"}}') for m in members)
        for r in ("hit", "miss", "error", "skipped")
    }


def _aof_ready(client: object) -> bool:
    info = client.info("persistence")  # type: ignore[attr-defined]
    return bool(
        info["aof_enabled"] == 1
        and info["aof_rewrite_in_progress"] == 0
        and info["aof_rewrite_scheduled"] == 0
    )


def _state_key(rig: Rig, job: str) -> str:
    return state_key("chaos", shard_of(job, int(TIMINGS["shards"])), job)


def mysql_restart(rig: Rig, down: float = 2 * TTL + 0.5) -> None:
    """The rig's own MariaDB shut down (`mariadb-admin shutdown`) for `down` seconds and started again:
    nothing reaches Marathon while it is down (past the budget of the intents inserted before); every
    daemon stops acting; after the start, every shard is held again under a newer epoch (recorded as a
    takeover, from the start) and every job scales again; the intents are reconciled (I6 in the check)."""
    server = rig.own_mysql
    assert server is not None, "the rig needs with_mysql()"
    epochs = dict(rig._sql("SELECT shard, epoch FROM shard_lease"))
    down_at = time.time()
    server.shutdown()
    wait_for(
        lambda: all(rig.owner(j) is None for j in rig.names), STOP_ACTING + 5, "no daemon acting, MySQL down"
    )
    time.sleep(max(0.0, down_at + down - time.time()))  # the fault: MySQL stays down this long
    up_at = time.time()
    server.start()
    t0 = time.monotonic()
    late = [
        w
        for w in inv.writes_from_fake(rig.fake.control("GET", "requests"))
        if down_at + BUDGET + inv.EPS < w.wall < up_at
    ]
    assert late == [], f"writes reached Marathon while MySQL was down: {late}"

    def reacquired() -> bool:
        rows = rig._sql("SELECT shard, epoch, owner FROM shard_lease")
        return len(rows) == len(epochs) and all(o and e > epochs[s] for s, e, o in rows)

    wait_for(reacquired, 30, "every shard held again under a newer epoch")
    rig.takeovers.append(round(time.monotonic() - t0, 2))
    print(
        f"\nmysql_restart: down {up_at - down_at:.1f}s, no write after {BUDGET}s of it; every shard held "
        f"again under a newer epoch {rig.takeovers[-1]}s after the start"
    )
    rig.wait_settled()
    rig.progress(1)


SLOW_CLOCK = Path(__file__).parent / "slowclock"  # its sitecustomize.py slows time.monotonic


def clock_skew(rig: Rig, rate: float = 0.5) -> None:
    """One daemon's monotonic clock (and so its event loop: lease validity, renewals, stop acting) runs
    at `rate` (x0.5: it believes its leases valid twice as long as they are). It acts normally while it
    reaches MySQL; cut from MySQL (proxy `pause`), it goes on believing it acts past stop_acting_after by
    the real clock, while another daemon has taken its shards: only the database-side margin of the
    fenced intent insert keeps its writes out (I1, I4, I8 in the check). Restarted with a normal clock."""
    _, victim = _owner_of_first(rig)
    assert victim.daemon.stop() == 0
    normal = dict(victim.daemon.env)
    victim.daemon.env = {
        **normal,
        "PYTHONPATH": os.pathsep.join(p for p in (str(SLOW_CLOCK), os.environ.get("PYTHONPATH")) if p),
        "OCEAND_HA_CLOCK_RATE": str(rate),
    }
    try:
        victim.daemon.start()
        rig.wait_settled()
        rig.progress(1)  # the slowed daemon acts on its jobs too
        job = wait_for(
            lambda: next((j for j in rig.names if rig.owner(j, [victim])), None),
            10,
            "a job of the slowed daemon",
        )
        lost, fenced = _lost(victim), _metric(victim, "oceand_intent_fenced_total ")
        others = [m for m in rig.live() if m is not victim]
        shard = shard_of(job, int(TIMINGS["shards"]))
        victim.mysql.command("pause")
        t0 = time.monotonic()
        try:
            # its last renewal got through before the cut: the lease ends then by the database clock
            ((owner, expires),) = rig._sql(
                f"SELECT owner, UNIX_TIMESTAMP(expires_at) FROM shard_lease WHERE shard = {shard}"
            )
            # its shards as it counts them (/metrics: no store round trip, unlike a job's status), dropped
            # when its own clock says the leases were not renewed in time
            dropped: list[float] = []

            def watch() -> None:
                wait_for(lambda: _metric(victim, "oceand_shards_held ") == 0, 15, "the shards dropped")
                dropped.append(time.time())

            held = threading.Thread(target=watch)
            held.start()
            rig.timed_takeover(job, others, t0, TAKEOVER_BOUND + 5)
            held.join()
            assert dropped, "the slowed daemon kept its shards"
            wait_for(lambda: _lost(victim) > lost, 10, "the slowed daemon counting its lost leases")
        finally:
            victim.mysql.command("resume")
        past = dropped[0] - float(expires)
        print(
            f"\nclock_skew x{rate}: takeover {rig.takeovers[-1]}s after the cut; the slowed daemon held its "
            f"shards {past:+.2f}s past their end by the database clock; its intent inserts fenced by the "
            f"database +{_metric(victim, 'oceand_intent_fenced_total ') - fenced:.0f}"
        )
        # the proof the clock is slow: a daemon with a true clock drops its shards stop_acting_after (1 s)
        # after its last renewal, before the lease ends (TTL 1.5 s) by the database clock (x1.0: about
        # -0.5 s); the slowed one believes it holds them for 2 s and drops them about +0.5 s past the end
        assert past > 0, f"the slowed daemon dropped shard {shard} ({owner}) {past:.2f}s past its end"
        rig.wait_settled()
        rig.progress(1)
    finally:
        victim.daemon.stop()
        victim.daemon.env = normal
        victim.daemon.start()
    rig.wait_settled()


def redis_stall(rig: Rig, seconds: float = 3.0) -> None:
    """The redis-server frozen (SIGSTOP) for at least `seconds`, then SIGCONT: every daemon's calls time
    out, /readyz says `"redis": "degraded"` (still 200), and the jobs keep scaling meanwhile (leases and
    intents are in MySQL); after SIGCONT every daemon says `ok` again and the snapshots are written."""
    assert rig.redis is not None and rig.redis.proc is not None, "the rig needs with_redis()"
    server, pid = rig.redis, rig.redis.proc.pid
    _all_redis(rig, "ok", "every daemon connected to Redis")
    t0 = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    try:
        _all_redis(rig, "degraded", "every daemon reporting Redis degraded")
        rig.progress(1)  # acting goes on without Redis
        time.sleep(max(0.0, t0 + seconds - time.monotonic()))  # the fault's least length
    finally:
        os.kill(pid, signal.SIGCONT)
    _all_redis(rig, "ok", "every daemon reporting Redis ok again")
    wait_for(lambda: server.client().dbsize() > 0, 10, "snapshots in Redis after the stall")
    rig.progress(1)


def redis_cut(rig: Rig) -> None:
    """One owner's proxy to Redis `cut` (RST, refused) until the others' jobs and its own scaled again:
    it alone says `"redis": "degraded"` (still 200) and keeps its shards and acts; the others stay `ok`.
    After `resume` it reconnects and resubscribes and says `ok` again."""
    assert rig.redis is not None, "the rig needs with_redis()"
    job, victim = _owner_of_first(rig)
    assert victim.redis is not None
    _all_redis(rig, "ok", "every daemon connected to Redis")
    others = [m for m in rig.live() if m is not victim]
    lost = _lost(victim)
    victim.redis.command("cut")
    try:
        wait_for(lambda: _redis(victim) == "degraded", 10, "the cut daemon reporting Redis degraded")
        assert all(_redis(m) == "ok" for m in others), [_redis(m) for m in others]
        rig.progress(1)  # every job, the victim's too: it keeps acting without Redis
        assert rig.owner(job) is victim and _lost(victim) == lost, "the cut daemon lost shards"
    finally:
        victim.redis.command("resume")
    _all_redis(rig, "ok", "every daemon reporting Redis ok again")
    rig.progress(1)


# the rig starts a redis-server of its own for these (Rig.with_redis)
NEEDS_REDIS = {"redis_restart", "redis_restart_aof", "redis_stall", "redis_cut"}
NEEDS_MYSQL = {"mysql_restart"}  # the rig moves to a MariaDB of its own for these (Rig.with_mysql)

FAULTS: dict[str, Callable[[Rig], None]] = {
    "kill_9": kill_9,
    "gc_pause": gc_pause,
    "sigterm": sigterm,
    "rolling_restart": rolling_restart,
    "mysql_pause": mysql_cut,
    "mysql_cut_rst": lambda rig: mysql_cut(rig, "cut"),
    "mysql_stall": mysql_stall,
    "marathon_errors": marathon_errors,
    "marathon_cut": marathon_cut,
    "late_put": late_put,
    "churn": churn,
    "redis_restart": redis_restart,
    "redis_restart_aof": redis_restart_aof,
    "mysql_restart": mysql_restart,
    "clock_skew": clock_skew,
    "redis_stall": redis_stall,
    "redis_cut": redis_cut,
}
