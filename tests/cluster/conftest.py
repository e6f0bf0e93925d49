"""Fixtures for the cluster tests that need MariaDB (127.0.0.1:3306, root): a database of their own,
`oceand_ha_core_<pid>_<n>`, migrated by a MySQLStore, dropped after the test; skipped without MariaDB."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from oceand.cluster.lease import Coordinator, LeaseManager, LeaseSettings
from oceand.store import MySQLStore
from oceand.store.base import MySQLURL
from tests.store.conftest import create_mysql_database, drop_mysql_database, mysql_server  # noqa: F401

_counter = itertools.count(1)
FAST = LeaseSettings(
    name="t",
    shards=16,
    lease_ttl=1.5,
    renew_interval=0.3,
    stop_acting_after=1.0,
    acquire_poll=0.1,
    intent_margin=0.5,
    actuation_budget=1.0,
    takeover_grace=0.5,
    release_rate=64,
    member_min_age=0.0,
    store_timeout=0.25,
)


@pytest.fixture
def mysql_db(request: pytest.FixtureRequest) -> Iterator[MySQLURL]:
    request.getfixturevalue("mysql_server")  # skips without MariaDB
    name = f"oceand_ha_core_{os.getpid()}_{next(_counter)}"
    create_mysql_database(name)
    try:
        yield MySQLURL(host="127.0.0.1", user="root", database=name, port=3306, timeout=10.0)
    finally:
        drop_mysql_database(name)


@pytest.fixture
async def migrated(mysql_db: MySQLURL) -> MySQLURL:
    store = MySQLStore(mysql_db)
    await store.open()
    await store.close()
    return mysql_db


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


Make = Callable[..., Awaitable[LeaseManager]]


@pytest.fixture
async def make(migrated: MySQLURL) -> AsyncIterator[Make]:
    """await make("A") -> a LeaseManager on its own coordination pool (instance id A:1:0000, stable id A)."""
    made: list[tuple[Coordinator, LeaseManager]] = []

    async def factory(
        stable: str, settings: LeaseSettings = FAST, pool_size: int = 3, **kw: Any
    ) -> LeaseManager:
        coord = Coordinator(migrated, settings.store_timeout, pool_size=pool_size)
        await coord.open()
        m = LeaseManager(coord, settings, instance_id=f"{stable}:1:0000", stable_id=stable, **kw)
        made.append((coord, m))
        return m

    yield factory
    for coord, m in made:
        for t in m._tasks:
            t.cancel()
        await coord.close()
