"""The daemon's garbage-collector policy (oceand/gcpolicy.py, started by `oceand.daemon.configure_gc` once
the daemon serves; docs/operations.md §12): the start's garbage collected, the rest frozen; CPython starts
no full collection itself; what survives a full collection someone asks for frozen too; frozen cyclic
garbage freed by the next rebase; `gc_rebase = 0` leaves CPython's collector as it is. Each test stops its
policy (the collector is the process's)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from oceand.daemon import configure_gc
from oceand.gcpolicy import FULL_NEVER, GcPolicy
from oceand.metrics import Metrics


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


class Leaf:
    pass


def in_collector_view(obj: object) -> bool:
    return any(obj is o for g in range(3) for o in gc.get_objects(g))


@pytest.fixture
def policy() -> Iterator[GcPolicy]:
    p = configure_gc()
    try:
        yield p
    finally:
        p.stop()


def test_start_collects_then_freezes() -> None:
    garbage = Node()
    gone = weakref.ref(garbage)
    del garbage
    kept = Node()
    p = configure_gc()
    try:
        assert gone() is None  # collected before the freeze (frozen garbage waits for a rebase)
        assert gc.get_freeze_count() > 0 and p.frozen == gc.get_freeze_count()
        assert gc.is_tracked(kept) and not in_collector_view(kept)
    finally:
        p.stop()
    assert gc.get_freeze_count() == 0 and in_collector_view(kept)  # stop gives everything back


def test_what_survives_a_full_collection_is_frozen(policy: GcPolicy) -> None:
    survivor = Node()
    garbage = Node()
    gone = weakref.ref(garbage)
    del garbage
    assert in_collector_view(survivor)  # came after the start's freeze
    full = policy.collections[2]
    gc.collect()
    assert policy.collections[2] == full + 1
    assert gone() is None  # the collection still frees what is garbage when it runs
    assert not in_collector_view(survivor)  # and freezes what it kept


def test_a_young_collection_freezes_nothing(policy: GcPolicy) -> None:
    young = Node()
    gc.collect(0)
    assert in_collector_view(young)
    assert policy.collections[0] >= 1


def test_frozen_cyclic_garbage_waits_for_the_rebase(policy: GcPolicy) -> None:
    node = Node()
    ref = weakref.ref(node)
    gc.collect()  # alive here: frozen
    del node  # garbage now, but out of the collector's view
    gc.collect()
    assert ref() is not None  # what the freeze costs: kept until the next rebase
    rebases = policy.rebases
    assert policy.rebase() >= 1
    assert ref() is None and policy.rebases == rebases + 1


def test_frozen_objects_without_a_cycle_are_still_freed_by_reference_counting(policy: GcPolicy) -> None:
    holder = [Leaf()]
    ref = weakref.ref(holder[0])
    gc.collect()  # frozen
    assert ref() is not None and not in_collector_view(holder[0])
    holder.clear()  # its last reference
    assert ref() is None


def test_rebase_every_max_age(policy: GcPolicy) -> None:
    policy.max_age = 0.01

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.ensure_future(policy.run(stop))
        start = policy.rebases
        async with asyncio.timeout(10):
            while policy.rebases < start + 2:
                await asyncio.sleep(0.01)
        stop.set()
        await task

    asyncio.run(go())


def promote_many() -> int:
    """Full collections CPython started itself while 300,000 cyclic objects were allocated and kept (each
    survives into the oldest generation: the daemon's states and buckets of one period, in small)."""
    before = gc.get_stats()[2]["collections"]
    kept = [Node() for _ in range(300_000)]
    del kept
    return int(gc.get_stats()[2]["collections"]) - int(before)


def test_no_full_collection_starts_by_itself(policy: GcPolicy) -> None:
    young, middle, full = gc.get_threshold()
    assert full == FULL_NEVER and (young, middle) == (700, 10)  # the young generations as CPython's
    young_before = policy.collections[0]
    assert promote_many() == 0
    assert policy.collections[0] > young_before  # young ones still run (started by CPython) and are counted
    assert policy.collections[2] == 0


def test_stop_gives_the_thresholds_back() -> None:
    before = gc.get_threshold()
    p = configure_gc()
    p.stop()
    assert gc.get_threshold() == before


def test_zero_leaves_cpythons_collector_as_it_is() -> None:
    p = configure_gc(0)
    try:
        assert gc.get_threshold() == (700, 10, 10)
        assert promote_many() >= 1  # what the policy prevents (test_no_full_collection_starts_by_itself)
        kept = Node()
        gc.collect()
        assert in_collector_view(kept)  # no freeze after a full collection
        assert p.rebases == 1  # the start's collect-and-freeze only
        assert p.collections[2] >= 1  # collections are still counted (the baseline of bench/gc_soak.py)

        async def go() -> None:
            await asyncio.wait_for(p.run(asyncio.Event()), 1)  # returns at once: nothing to rebase

        asyncio.run(go())
    finally:
        p.stop()


def test_metrics(policy: GcPolicy) -> None:
    gc.collect(0)
    gc.collect()
    metrics = Metrics()
    metrics.watch_gc(policy)
    text = metrics.render().decode()
    got = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("oceand_gc_")
    }
    assert got['oceand_gc_collections_total{generation="0"}'] >= 1
    assert got['oceand_gc_collections_total{generation="2"}'] >= 1
    assert got['oceand_gc_pause_max_seconds{generation="2"}'] > 0
    assert (
        got['oceand_gc_pause_seconds_total{generation="2"}']
        >= got['oceand_gc_pause_max_seconds{generation="2"}']
    )
    assert got["oceand_gc_rebases_total"] == policy.rebases >= 1
    assert got["oceand_gc_frozen_objects"] == policy.frozen > 0


@pytest.mark.parametrize(
    ("young", "piled_up"),
    [
        pytest.param(False, True, id="cpython-alone-lets-replaced-states-pile-up-in-the-young-generation"),
        pytest.param(True, False, id="young-collections-on-a-clock-keep-it-small"),
    ],
)
async def test_replaced_states_do_not_pile_up_in_the_young_generation(
    policy: GcPolicy, young: bool, piled_up: bool
) -> None:
    """CPython starts a young collection when 700 more containers are alive than at the last one. Steps that
    replace states (a new one alive, the old one freed) barely move that count: 20,000 states replaced a
    thousand per loop turn, as jobs step, leave ~40,000 young objects for the next collection to walk at
    once. `GcPolicy.young` collects on a clock between the turns, and the young generation stays small."""
    states: list[dict[str, object]] = [{"n": [i]} for i in range(20_000)]
    gc.collect()
    stop = asyncio.Event()
    task = asyncio.create_task(policy.young(stop)) if young else None
    before = policy.collections[0] + policy.collections[1]
    try:
        for start in range(0, len(states), 1000):
            for i in range(start, start + 1000):
                states[i] = {"n": [i]}  # a step: the new state alive, the old one freed
            await asyncio.sleep(0.06)  # > YOUNG_MAX: the clock's collection runs in between
        pile = len(gc.get_objects(0))
    finally:
        stop.set()
        if task is not None:
            await asyncio.wait_for(task, 1)
    assert (pile > 30_000) is piled_up, pile
    if young:
        assert pile < 10_000, pile
        assert policy.collections[0] + policy.collections[1] - before >= 10  # counted by the hook


async def test_young_collects_the_middle_generation_with_every_second_one(policy: GcPolicy) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(policy.young(stop))
    g0, g1 = policy.collections[0], policy.collections[1]
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.wait_for(task, 1)
    young, middle = policy.collections[0] - g0, policy.collections[1] - g1
    assert young >= 4 and middle >= 4  # at least one a YOUNG_MAX (0.05 s): ~10 of each, give or take


async def test_young_does_nothing_without_the_policy() -> None:
    """`gc_rebase = 0`: CPython's collector as it is; `young` returns at once."""
    p = GcPolicy(max_age=0)
    await asyncio.wait_for(p.young(asyncio.Event()), 0.5)
    assert p.collections == [0, 0, 0]
