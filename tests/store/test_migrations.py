"""The migration list: its shape, and which migrations a store at a given version still needs."""

from __future__ import annotations

import pytest

from oceand.store.migrations import (
    DIALECTS,
    MIGRATIONS,
    Migration,
    MigrationListError,
    check_migrations,
    pending,
)

ONE: Migration = (1, "one", {"sqlite": ["CREATE TABLE a (x INTEGER)"], "mysql": ["CREATE TABLE a (x INT)"]})
TWO: Migration = (2, "two", {"sqlite": ["CREATE TABLE b (x INTEGER)"], "mysql": ["CREATE TABLE b (x INT)"]})


def test_the_shipped_list_is_well_formed() -> None:
    check_migrations(MIGRATIONS)
    assert all(set(sql) == set(DIALECTS) for _, _, sql in MIGRATIONS)


@pytest.mark.parametrize(
    ("migrations", "message"),
    [
        pytest.param([TWO], "migration #0 has version 2, expected 1", id="does not start at 1"),
        pytest.param([ONE, ONE], "migration #1 has version 1, expected 2", id="repeated version"),
        pytest.param([TWO, ONE], "migration #0 has version 2", id="out of order"),
        pytest.param([(1, " ", ONE[2])], "migration 1 has no name", id="no name"),
        pytest.param(
            [(1, "x", {"sqlite": ["SELECT 1"]})], "migration 1 \\(x\\) has no mysql", id="missing dialect"
        ),
        pytest.param(
            [(1, "x", {"sqlite": [], "mysql": ["SELECT 1"]})], "has no sqlite", id="empty statements"
        ),
        pytest.param(
            [(1, "x", {"sqlite": [""], "mysql": ["SELECT 1"]})], "has no sqlite", id="blank statement"
        ),
    ],
)
def test_bad_lists_are_refused(migrations: list[Migration], message: str) -> None:
    with pytest.raises(MigrationListError, match=message):
        check_migrations(migrations)


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        pytest.param(0, [1, 2], id="empty store gets everything"),
        pytest.param(1, [2], id="store at 1 gets the rest"),
        pytest.param(2, [], id="up to date: nothing"),
    ],
)
def test_pending(current: int, expected: list[int]) -> None:
    assert [m[0] for m in pending([ONE, TWO], current)] == expected


def test_a_store_newer_than_the_list_is_refused() -> None:
    with pytest.raises(
        MigrationListError, match="schema is at version 3, newer than this oceand knows \\(2\\)"
    ):
        pending([ONE, TWO], 3)
