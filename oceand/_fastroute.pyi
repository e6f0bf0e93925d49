"""Stub of the C extension oceand/_fastroute.c (the ingest hot loop's usual sample)."""

from collections.abc import Callable
from typing import Any

def setup(route: type, job_buckets: type, open_bucket: type, falcon_item: type) -> None: ...
def route(
    items: list[Any],
    found: list[Any],
    check_ts: bool,
    now: float,
    one: Callable[[int, Any, Any], None],
    completed: set[str],
    seen: Any,
    seen_step: int,
) -> None: ...
