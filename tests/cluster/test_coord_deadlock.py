"""Coordinator.run: a single statement InnoDB picked as a deadlock's victim (1213, rolled back whole) is run
again; a multi-statement `fn`, any other error, or a deadlock past DEADLOCK_RETRIES is a CoordError. A fake
pool stands in for aiomysql's (the deadlock between two starting daemons is timing, not reproducible on
demand: tests/ha/test_chaos.py met it once)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiomysql
import pytest

from oceand.cluster.lease import DEADLOCK_RETRIES, CoordError, Coordinator
from oceand.store.base import parse_url


class Cursor:
    def __init__(self, errors: list[BaseException], runs: list[str]) -> None:
        self.errors, self.runs, self.rowcount = errors, runs, 1

    async def execute(self, sql: str, args: Any = None) -> None:
        self.runs.append(sql)
        if self.errors:
            raise self.errors.pop(0)

    async def fetchall(self) -> list[tuple[Any, ...]]:
        return [(1,)]


class Pool:
    def __init__(self, errors: list[BaseException]) -> None:
        self.errors, self.runs = errors, []  # type: list[BaseException], list[str]

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        pool = self

        class Conn:
            @contextlib.asynccontextmanager
            async def cursor(self) -> AsyncIterator[Cursor]:
                yield Cursor(pool.errors, pool.runs)

        yield Conn()


def deadlock() -> aiomysql.OperationalError:
    return aiomysql.OperationalError(
        1213, "Deadlock found when trying to get lock; try restarting transaction"
    )


@pytest.mark.parametrize(
    ("errors", "how", "runs", "ok"),
    [
        pytest.param([deadlock()], "execute", 2, True, id="execute-after-one-deadlock-runs-again"),
        pytest.param([deadlock(), deadlock()], "fetch", 3, True, id="fetch-after-two-deadlocks-runs-again"),
        pytest.param(
            [deadlock()] * (DEADLOCK_RETRIES + 1), "execute", DEADLOCK_RETRIES + 1, False, id="too-many"
        ),
        pytest.param(
            [aiomysql.OperationalError(1205, "Lock wait timeout exceeded")],
            "execute",
            1,
            False,
            id="other-error",
        ),
        pytest.param([deadlock()], "run", 1, False, id="several-statements-are-not-run-again"),
    ],
)
async def test_a_statement_rolled_back_by_a_deadlock_is_run_again(
    errors: list[BaseException], how: str, runs: int, ok: bool
) -> None:
    coord = Coordinator(parse_url("mysql://root@127.0.0.1/test"), 5.0)  # type: ignore[arg-type]
    pool = coord._pool = Pool(list(errors))

    async def two(cur: Any) -> int:
        await cur.execute("UPDATE a")
        await cur.execute("UPDATE b")
        return 2

    call = {
        "execute": lambda: coord.execute("INSERT x"),
        "fetch": lambda: coord.fetch("SELECT x"),
        "run": lambda: coord.run(two),
    }[how]
    if ok:
        assert await call() in (1, [(1,)])
    else:
        with pytest.raises(CoordError):
            await call()
    assert len(pool.runs) == runs
