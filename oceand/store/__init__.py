"""Durable state of the daemon: job documents, per-job state, decisions and schedule fires.

`open_store(url)` returns a `Store` for a `sqlite://` or `mysql://` URL (syntax in `base.parse_url`);
call `await store.open()` before use and `await store.close()` at shutdown. See `base` for the
interface and the error tree, `migrations` for the schema.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from oceand.store.base import (
    DECISION_STATUSES,
    FIRE_STATUSES,
    OUTCOME_STATUSES,
    DecisionNotFound,
    JobLink,
    JobWrite,
    MySQLURL,
    SQLiteURL,
    Store,
    StoreConfigError,
    StoredJob,
    StoredTemplate,
    StoreError,
    StoreURL,
    TemplateConflict,
    TemplateWrite,
    parse_url,
    redact,
)
from oceand.store.mysql import MySQLStore
from oceand.store.sqlite import SQLiteStore

__all__ = [
    "DECISION_STATUSES",
    "FIRE_STATUSES",
    "OUTCOME_STATUSES",
    "DecisionNotFound",
    "JobLink",
    "JobWrite",
    "MySQLStore",
    "MySQLURL",
    "SQLiteStore",
    "SQLiteURL",
    "Store",
    "StoreConfigError",
    "StoreError",
    "StoreURL",
    "StoredJob",
    "StoredTemplate",
    "TemplateConflict",
    "TemplateWrite",
    "open_store",
    "parse_url",
    "redact",
]


def open_store(url: str, *, clock: Callable[[], float] = time.time) -> Store:
    """The store for `url` (not yet connected: call `await store.open()`); StoreConfigError if bad."""
    parsed = parse_url(url)
    if isinstance(parsed, SQLiteURL):
        return SQLiteStore(parsed, clock=clock)
    return MySQLStore(parsed, clock=clock)
