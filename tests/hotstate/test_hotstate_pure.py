"""The pure parts of the Redis hot state (HA.md §6.4, §6.7 step 3): key names and their Redis Cluster slots,
wake-up messages, and which state a new owner starts from."""

from __future__ import annotations

from typing import Any

import pytest
from redis.crc import key_slot

from oceand.cluster.hotstate import (
    Event,
    Snapshot,
    events_channel,
    handoff_key,
    parse_event,
    pick_state,
    state_key,
)


@pytest.mark.parametrize(
    ("got", "want"),
    [
        pytest.param(state_key("lg", 7, "web.api"), "oceand:{lg:s7}:st:web.api", id="state"),
        pytest.param(handoff_key("lg", 1023), "oceand:{lg:s1023}:handoff", id="handoff"),
        pytest.param(events_channel("lg"), "oceand:{lg}:events", id="events channel"),
    ],
)
def test_names(got: str, want: str) -> None:
    assert got == want


def test_a_shards_keys_share_a_slot_and_shards_spread() -> None:
    """The hash tag is the first {...}: one shard's state and handoff keys land in one Redis Cluster slot,
    and the 1024 shards of a cluster spread over many slots (one tag per cluster would give 1)."""
    for shard in (0, 5, 1023):
        slots = {key_slot(state_key("lg", shard, j).encode()) for j in ("a", "b", "web.api-2")}
        slots.add(key_slot(handoff_key("lg", shard).encode()))
        assert len(slots) == 1, shard
    spread = {key_slot(state_key("lg", s, "a").encode()) for s in range(1024)}
    assert len(spread) > 900
    assert key_slot(state_key("lg", 3, "a").encode()) != key_slot(state_key("other", 3, "a").encode())


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        pytest.param(b"joined:host-a:812:x1y2", Event("joined", member="host-a:812:x1y2"), id="joined"),
        pytest.param("leaving:h:1:abcd", Event("leaving", member="h:1:abcd"), id="leaving, str"),
        pytest.param(b"released:17:42", Event("released", shard=17, epoch=42), id="released"),
        pytest.param(
            b"acquired:0:1733000000000", Event("acquired", shard=0, epoch=1733000000000), id="acquired"
        ),
        pytest.param(b"acquired:17", None, id="acquired without epoch"),
        pytest.param(b"released:x:1", None, id="shard not a number"),
        pytest.param(b"released:-1:1", None, id="negative shard"),
        pytest.param(b"joined:", None, id="joined without id"),
        pytest.param(b"jobs:h:1:abcd", Event("jobs", member="h:1:abcd"), id="jobs"),
        pytest.param(b"jobs:", None, id="jobs without id"),
        pytest.param(b"stolen:1:2", None, id="unknown kind"),
        pytest.param(b"", None, id="empty"),
        pytest.param(b"\xff\xfe", None, id="not utf-8"),
    ],
)
def test_parse_event(raw: bytes | str, want: Event | None) -> None:
    assert parse_event(raw) == want


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(Event("joined", member="h:1:ab"), id="joined"),
        pytest.param(Event("leaving", member="h:1:ab"), id="leaving"),
        pytest.param(Event("released", shard=3, epoch=9), id="released"),
        pytest.param(Event("acquired", shard=3, epoch=10), id="acquired"),
    ],
)
def test_event_round_trip(event: Event) -> None:
    assert parse_event(event.encode()) == event


REDIS_110 = Snapshot(epoch=5, bucket_ts=110, state={"count": 4, "last_bucket": 110})
REDIS_NONE = Snapshot(epoch=5, bucket_ts=None, state={"count": 4})
STORE_100: dict[str, Any] = {"count": 3, "last_bucket": 100}
STORE_110: dict[str, Any] = {"count": 3, "last_bucket": 110}
STORE_120: dict[str, Any] = {"count": 3, "last_bucket": 120}
STORE_NONE: dict[str, Any] = {"count": 3, "last_bucket": None}


@pytest.mark.parametrize(
    ("snapshot", "stored", "source", "state"),
    [
        pytest.param(REDIS_110, STORE_100, "redis", REDIS_110.state, id="redis newer"),
        pytest.param(REDIS_110, STORE_120, "store", STORE_120, id="store newer"),
        pytest.param(REDIS_110, STORE_110, "store", STORE_110, id="tie goes to the store"),
        pytest.param(None, STORE_100, "store", STORE_100, id="no snapshot (Redis down or lost)"),
        pytest.param(None, None, "store", None, id="neither"),
        pytest.param(REDIS_110, None, "redis", REDIS_110.state, id="no stored state"),
        pytest.param(REDIS_110, STORE_NONE, "redis", REDIS_110.state, id="stored state never evaluated"),
        pytest.param(REDIS_NONE, STORE_100, "store", STORE_100, id="snapshot never evaluated"),
        pytest.param(REDIS_NONE, STORE_NONE, "store", STORE_NONE, id="neither evaluated: tie"),
    ],
)
def test_pick_state(
    snapshot: Snapshot | None, stored: dict[str, Any] | None, source: str, state: dict[str, Any] | None
) -> None:
    assert pick_state(snapshot, stored) == (source, state)
