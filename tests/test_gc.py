"""The daemon's garbage-collector settings (`oceand.daemon.configure_gc`, applied once it has started;
docs/operations.md §12): garbage collected first, what is alive frozen, the youngest generation's
threshold raised, the older generations' ratios kept."""

from __future__ import annotations

import gc
import weakref

from oceand.daemon import GC_GEN0_THRESHOLD, configure_gc


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_configure_gc_collects_then_freezes_and_raises_the_youngest_threshold() -> None:
    before = gc.get_threshold()
    garbage = Node()
    gone = weakref.ref(garbage)
    del garbage
    try:
        configure_gc()
        assert gone() is None  # collected before the freeze (frozen garbage would never be freed)
        assert gc.get_freeze_count() > 0  # what is alive now is out of the collector's view
        assert gc.get_threshold() == (GC_GEN0_THRESHOLD, before[1], before[2])
        assert before[0] < GC_GEN0_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
