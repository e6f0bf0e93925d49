"""The daemon's garbage-collector settings (`oceand.daemon.configure_gc`, applied once it has started;
docs/operations.md §12): the garbage left by the start collected first, then what is alive frozen."""

from __future__ import annotations

import gc
import weakref

from oceand.daemon import configure_gc


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_configure_gc_collects_then_freezes() -> None:
    garbage = Node()
    gone = weakref.ref(garbage)
    del garbage
    kept = Node()
    try:
        configure_gc()
        assert gone() is None  # collected before the freeze (frozen garbage would never be freed)
        assert gc.get_freeze_count() > 0  # what is alive now is out of the collector's view
        assert gc.is_tracked(kept) and not any(kept is o for g in range(3) for o in gc.get_objects(g))
    finally:
        gc.unfreeze()
