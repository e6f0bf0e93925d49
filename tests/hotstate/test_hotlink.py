"""The joins of oceand/cluster/hotlink.py without I/O (no Redis call, no MySQL statement): which epoch a
snapshot is written under, which wake-ups the lease loop's events queue, and a fenced write dropping the
shard. The same joins against real MariaDB and Redis: tests/cluster/test_hot_takeover.py."""

from __future__ import annotations

from typing import Any

import pytest

from oceand.cluster.hotlink import HotLink
from oceand.cluster.hotstate import Event, HotState
from oceand.cluster.lease import Coordinator, Held, LeaseManager, LeaseSettings
from oceand.cluster.ownership import Ownership
from oceand.store.base import MySQLURL

JOB = "job.a.b"


class Mono:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def link(mono: Mono) -> tuple[HotLink, LeaseManager, int]:
    url = MySQLURL(host="127.0.0.1", user="root", database="unused", port=1, timeout=1.0)
    leases = LeaseManager(
        Coordinator(url, 0.5), LeaseSettings(shards=16), instance_id="me:1:0", stable_id="me", mono=mono
    )
    hot = HotState("redis://127.0.0.1:1/0", "c")  # never connected here
    own = Ownership(leases, store=None, mono=mono)  # type: ignore[arg-type]
    return HotLink(hot, own), leases, leases.shard_of(JOB)


@pytest.mark.parametrize(
    ("held", "want"),
    [
        pytest.param(None, None, id="shard not held here: not written"),
        pytest.param(Held(7, 101.0, 0.0), (None, 7), id="held and renewed in time: its epoch"),
        pytest.param(Held(7, 101.0, 0.0, draining=True), (None, 7), id="draining: still its epoch"),
        pytest.param(Held(7, 100.0, 0.0), None, id="not renewed within stop_acting_after: not written"),
    ],
)
def test_the_epoch_a_snapshot_is_written_under(held: Held | None, want: tuple[Any, int] | None) -> None:
    hl, leases, shard = link(Mono())
    if held is not None:
        leases.held[shard] = held
    assert hl.owner(JOB) == (None if want is None else (shard, want[1]))


def test_acquisitions_releases_and_membership_queue_wake_ups() -> None:
    hl, leases, _ = link(Mono())
    hl.joined()
    leases.held[3] = Held(9, 101.0, 0.0)
    hl._acquired(3, leases.held[3])
    hl._acquired(4, Held(10, 101.0, 0.0))
    hl._lost(3, "released")
    hl._lost(4, "taken")  # lost, not released: another daemon's acquisition announces it
    assert hl._queue == [
        Event("joined", member="me:1:0"),
        Event("acquired", shard=3, epoch=9),
        Event("acquired", shard=4, epoch=10),
        Event("released", shard=3, epoch=9),
    ]


def test_a_wake_up_kicks_the_lease_poll() -> None:
    hl, leases, _ = link(Mono())
    assert not leases._kick.is_set()
    hl._received(Event("released", shard=1, epoch=2))
    assert leases._kick.is_set()
    leases._kick.clear()
    hl._received(None)  # resubscribed: wake-ups may have been missed
    assert leases._kick.is_set()


def test_a_fenced_snapshot_drops_the_shard() -> None:
    hl, leases, shard = link(Mono())
    leases.held[shard] = Held(7, 101.0, 0.0)
    lost: list[tuple[int, str]] = []
    leases.on_lost.append(lambda s, why: lost.append((s, why)))
    hl.fenced(JOB, 7)
    hl.fenced(JOB, 7)  # the shard's other jobs fenced in the same flush: dropped once
    assert shard not in leases.held and lost == [(shard, "hotstate_fenced")]


def test_a_fenced_snapshot_of_an_older_epoch_leaves_the_shard_held_again_since() -> None:
    """The flush wrote under epoch 7; meanwhile the shard went to another daemon and came back here under
    epoch 9: the refusal of the epoch-7 write must not drop the epoch-9 lease."""
    hl, leases, shard = link(Mono())
    leases.held[shard] = Held(9, 101.0, 0.0)
    lost: list[tuple[int, str]] = []
    leases.on_lost.append(lambda s, why: lost.append((s, why)))
    hl.fenced(JOB, 7)
    assert shard in leases.held and lost == []


async def test_a_jobs_wake_up_that_could_not_go_out_is_kept_for_the_next_try() -> None:
    """Redis degraded (a call timed out): the `jobs` wake-up is kept, once, and goes out at a later send;
    lease wake-ups are not kept (the lease polls are frequent)."""
    hl, _, _ = link(Mono())
    hl.joined()
    hl.jobs_changed()
    assert await hl.send() == 0  # never connected: nothing goes out
    assert hl._queue == [Event("jobs", member="me:1:0")]
    hl.jobs_changed()  # another change meanwhile: still one
    assert hl._queue == [Event("jobs", member="me:1:0")]
    sent: list[Event] = []

    async def publish(event: Event) -> bool:
        sent.append(event)
        return True

    hl.hot.publish = publish  # type: ignore[method-assign]
    assert await hl.send() == 1 and sent == [Event("jobs", member="me:1:0")] and hl._queue == []
