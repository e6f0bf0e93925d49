"""Rendezvous assignment and the release/acquire plan (HA.md §4.2, §4.4; issue 14): pure, table tests
and properties over many member sets."""

from __future__ import annotations

import random
import statistics

import pytest

from oceand.cluster.assign import LeaseView, TokenBucket, desired_owners, load, plan
from oceand.cluster.ids import instance_id, shard_of

S = 1024
JOB_A, JOB_A16 = 217, 9  # blake2b(b"job.a", digest_size=8), big-endian, mod 1024 and mod 16


def members(n: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    return [f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(256)}:8080" for _ in range(n)]


@pytest.mark.parametrize(
    ("job", "shards", "expected"),
    [
        # fixed values: the same in every process and on every daemon (blake2b, not hash())
        pytest.param("", 1024, 0xE4A6A0577479B2B4 % 1024, id="empty name"),
        pytest.param("job.a", 1024, JOB_A, id="a job"),
        pytest.param("job.a", 16, JOB_A16, id="a job, 16 shards"),
        pytest.param("x", 1, 0, id="one shard"),
    ],
)
def test_shard_of(job: str, shards: int, expected: int) -> None:
    assert shard_of(job, shards) == expected


def test_shard_of_is_the_same_in_another_process() -> None:
    import subprocess
    import sys

    code = "from oceand.cluster.ids import shard_of; print(shard_of('job.lg.api', 1024))"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code], env={"PYTHONHASHSEED": seed}, capture_output=True, text=True
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert outs == {str(shard_of("job.lg.api", 1024))}


@pytest.mark.parametrize("shards", [pytest.param(0, id="zero"), pytest.param(65536, id="too many")])
def test_shard_of_refuses_bad_counts(shards: int) -> None:
    with pytest.raises(ValueError, match="shards"):
        shard_of("j", shards)


def test_shards_spread_over_100k_jobs() -> None:
    counts = [0] * S
    for i in range(100_000):
        counts[shard_of(f"job-{i}", S)] += 1
    assert min(counts) > 50 and max(counts) < 150


@pytest.mark.parametrize(
    ("host", "pid", "rand", "expected"),
    [
        pytest.param("h", 12, "ab12", "h:12:ab12", id="short"),
        pytest.param("h" * 80, 123, "cd34", "h" * 55 + ":123:cd34", id="long host cut to 64"),
    ],
)
def test_instance_id(host: str, pid: int, rand: str, expected: str) -> None:
    assert instance_id(host, pid, rand) == expected
    assert len(expected) <= 64


def test_instance_id_ends_in_a_random_suffix() -> None:
    host, pid, rand = instance_id("h", 7).split(":")
    assert (host, pid, len(rand)) == ("h", "7", 4)
    int(rand, 16)


@pytest.mark.parametrize(
    ("ms", "expected"),
    [
        pytest.param([], {}, id="no member: nobody"),
        pytest.param(["a:1"], {"a:1": S}, id="one member: everything"),
    ],
)
def test_desired_owners_edges(ms: list[str], expected: dict[str, int]) -> None:
    assert load(desired_owners(ms, S)) == expected


def test_desired_owners_do_not_depend_on_member_order() -> None:
    ms = members(4, 1)
    assert desired_owners(ms, S) == desired_owners(list(reversed(ms)), S)


def test_balance_over_200_member_sets() -> None:
    """HA.md §4.2: the most-loaded of 4 members holds ≤ 1.15× its fair share at p95."""
    ratios = []
    for seed in range(200):
        per = load(desired_owners(members(4, seed), S))
        ratios.append(max(per.values()) / (S / 4))
    ratios.sort()
    p95 = ratios[int(0.95 * len(ratios)) - 1]
    assert statistics.median(ratios) < 1.10
    assert p95 <= 1.15


@pytest.mark.parametrize("n", [pytest.param(n, id=f"{n} members") for n in (1, 2, 3, 4, 7)])
def test_a_join_moves_only_to_the_newcomer(n: int) -> None:
    for seed in range(20):
        ms = members(n + 1, 100 + seed)
        before, after = desired_owners(ms[:n], S), desired_owners(ms, S)
        moved = [s for s in range(S) if before[s] != after[s]]
        assert all(after[s] == ms[n] for s in moved)
        assert abs(len(moved) - S / (n + 1)) < 0.35 * S / (n + 1)  # about its fair share


@pytest.mark.parametrize("n", [pytest.param(n, id=f"{n} members") for n in (2, 3, 4, 7)])
def test_a_leave_moves_only_the_leavers_shards(n: int) -> None:
    for seed in range(20):
        ms = members(n, 200 + seed)
        leaver = ms[seed % n]
        before = desired_owners(ms, S)
        after = desired_owners([m for m in ms if m != leaver], S)
        moved = {s for s in range(S) if before[s] != after[s]}
        assert moved == {s for s in range(S) if before[s] == leaver}


FREE, HELD_A, HELD_B, EXPIRED_B = (
    LeaseView(None, False),
    LeaseView("a:1:x", True),
    LeaseView("b:2:y", True),
    LeaseView("b:2:y", False),
)
LIVE = {"a:1:x": "A", "b:2:y": "B"}


@pytest.mark.parametrize(
    ("held", "desired", "leases", "live", "budget", "release", "acquire", "deferred"),
    [
        pytest.param([], ["A"], [FREE], LIVE, 64, [], [0], 0, id="desired and free: acquire"),
        pytest.param([], ["A"], [EXPIRED_B], LIVE, 64, [], [0], 0, id="desired and expired: acquire"),
        pytest.param([], ["A"], [HELD_B], LIVE, 64, [], [], 0, id="desired but valid elsewhere: never steal"),
        pytest.param([], ["B"], [FREE], LIVE, 64, [], [], 0, id="free but not desired: leave it"),
        pytest.param([0], ["A"], [HELD_A], LIVE, 64, [], [], 0, id="held and desired: keep"),
        pytest.param([0], ["B"], [HELD_A], LIVE, 64, [0], [], 0, id="desired elsewhere, live: release"),
        pytest.param(
            [0], ["B"], [HELD_A], {"a:1:x": "A"}, 64, [], [], 0, id="desired elsewhere, not live: keep"
        ),
        pytest.param(
            [0, 1, 2], ["B", "B", "B"], [HELD_A] * 3, LIVE, 2, [0, 1], [], 1, id="release rate limited"
        ),
        pytest.param([0], ["B"], [HELD_A], LIVE, 0, [], [], 1, id="no budget: nothing released"),
        pytest.param([], [None], [FREE], {}, 64, [], [], 0, id="no live member: nothing"),
    ],
)
def test_plan(
    held: list[int],
    desired: list[str | None],
    leases: list[LeaseView],
    live: dict[str, str],
    budget: int,
    release: list[int],
    acquire: list[int],
    deferred: int,
) -> None:
    p = plan("A", held, desired, leases, live, budget)
    assert (p.release, p.acquire, p.deferred) == (release, acquire, deferred)


@pytest.mark.parametrize(
    ("steps", "granted"),
    [
        pytest.param([(0.0, 100)], [64], id="burst first"),
        pytest.param([(0.0, 64), (0.5, 64)], [64, 32], id="refills at the rate"),
        pytest.param([(0.0, 64), (10.0, 100)], [64, 64], id="never more than the burst"),
        pytest.param([(0.0, 10), (0.0, 10)], [10, 10], id="partial takes"),
    ],
)
def test_token_bucket(steps: list[tuple[float, int]], granted: list[int]) -> None:
    tb = TokenBucket(rate=64, burst=64)
    assert [tb.take(t, n) for t, n in steps] == granted
