"""Which daemon should own which shard, and what this daemon does about it (HA.md §4.2, §4.4). Pure.

Rendezvous (highest random weight) hashing: shard s belongs to the live member m with the highest
`blake2b(m || ":" || s)`. A member joining takes only shards that become its own (nothing moves between
the others); a member leaving gives up only its own shards, which spread over the survivors.

Assignment is a wish; the lease is the fact. `plan` never takes a lease that is still valid: it acquires
a shard when this daemon is the desired owner and the lease is free or expired, and releases a held shard
when another live member is desired for it, at most `budget` shards per call (the caller's token bucket,
`[cluster] release_rate`), so a join moves shards in steps instead of all at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b


def weight(member: str, shard: int) -> int:
    return int.from_bytes(blake2b(f"{member}:{shard}".encode(), digest_size=8).digest(), "big")


def desired_owners(members: Iterable[str], shards: int) -> list[str | None]:
    """The desired owner of each shard 0..shards-1 (None for all when there is no member). Ties (never
    seen with 64-bit weights) go to the smaller member id, so every daemon computes the same list."""
    ms = sorted(set(members))
    if not ms:
        return [None] * shards
    return [max(ms, key=lambda m: (weight(m, s), _neg(m))) for s in range(shards)]


def _neg(member: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in member)


def load(owners: Sequence[str | None]) -> dict[str, int]:
    """Shards per member."""
    out: dict[str, int] = {}
    for o in owners:
        if o is not None:
            out[o] = out.get(o, 0) + 1
    return out


@dataclass(frozen=True, slots=True)
class LeaseView:
    """A shard's lease as last read: its owner (an instance id) and whether it is still valid by the
    database clock (`expires_at > NOW(6)`)."""

    owner: str | None
    valid: bool


@dataclass(slots=True)
class Plan:
    release: list[int] = field(default_factory=list)
    acquire: list[int] = field(default_factory=list)
    deferred: int = 0  # releases wanted but over the budget (done in a later call)


def plan(
    me: str,
    held: Iterable[int],
    desired: Sequence[str | None],
    leases: Sequence[LeaseView],
    owner_of: dict[str, str],
    budget: int,
) -> Plan:
    """What this daemon (`me`, its stable id) should release and acquire now.

    `held`: the shards it holds; `desired`: desired owners by stable id (`desired_owners` over the live
    members); `leases`: every shard's lease; `owner_of`: instance id -> stable id of the live members.
    A held shard is released only when its desired owner is another *live* member; a shard is acquired
    only when desired for `me` and its lease is free or expired (never stolen)."""
    held_set = set(held)
    live_stable = set(owner_of.values())
    out = Plan()
    for s in sorted(held_set):
        want = desired[s]
        if want is not None and want != me and want in live_stable:
            if len(out.release) < max(0, budget):
                out.release.append(s)
            else:
                out.deferred += 1
    for s, want in enumerate(desired):
        if want == me and s not in held_set:
            lease = leases[s]
            if lease.owner is None or not lease.valid:
                out.acquire.append(s)
    return out


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; `take(now, n)` says how many of n it grants."""

    rate: float
    burst: float
    tokens: float = -1.0
    at: float | None = None

    def take(self, now: float, n: int) -> int:
        if self.at is None:
            self.tokens, self.at = self.burst, now
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = now
        granted = min(n, int(self.tokens))
        self.tokens -= granted
        return granted
