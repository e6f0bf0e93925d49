"""The job change log's reader (oceand/cluster/jobsync.py `ChangeCursor`, pure) and the log itself in both
stores (oceand/store/jobchanges.py): which rows a poll takes, which ranges it reads, when its low mark moves
past a gap (a lower seq committing late), and the rows every job write and delete adds."""

from __future__ import annotations

from typing import Any

import pytest

from oceand.cluster.jobsync import ChangeCursor
from oceand.store.base import JobChange, JobWrite, StoreError
from oceand.store.jobchanges import MAX_RANGES
from oceand.store.mysql import MySQLStore
from oceand.store.sqlite import SQLiteStore
from tests.store.conftest import Backend
from tests.store.conftest import backend as backend
from tests.store.conftest import store as store

LATE = 30.0


def rows(*seqs: int) -> list[JobChange]:
    return [JobChange(s, f"j{s}", {"job": f"j{s}"}, 1) for s in seqs]


def cursor(low: int, seen: dict[int, float]) -> ChangeCursor:
    c = ChangeCursor(low, LATE)
    c.seen = dict(seen)
    return c


# (name, low, seen {seq: first read}, expected ranges, expected complete_below)
RANGES = [
    ("nothing read yet: all above low", 5, {}, [(5, None)], None),
    ("contiguous: only above the highest", 5, {6: 0, 7: 0}, [(7, None)], None),
    ("a gap below the highest is read again", 5, {6: 0, 8: 0}, [(8, None), (6, 8)], None),
    ("a gap right above low", 5, {7: 0}, [(7, None), (5, 7)], None),
    ("a wide gap is one range", 0, {100_000: 0}, [(100_000, None), (0, 100_000)], None),
]


@pytest.mark.parametrize(("name", "low", "seen", "want", "complete"), RANGES, ids=[r[0] for r in RANGES])
def test_ranges(name: str, low: int, seen: dict[int, float], want: list[Any], complete: int | None) -> None:
    assert cursor(low, seen).ranges() == (want, complete)


def test_ranges_beyond_max_ranges_are_read_later_and_bound_the_advance() -> None:
    seen = {2 * i: 0.0 for i in range(1, MAX_RANGES + 5)}  # a gap below every even seq
    ranges, complete = cursor(0, seen).ranges()
    assert len(ranges) == MAX_RANGES and ranges[0] == (2 * (MAX_RANGES + 4), None)
    assert ranges[1:] == [(2 * i - 2 if i > 1 else 0, 2 * i) for i in range(1, MAX_RANGES)]
    assert complete == 2 * (MAX_RANGES - 1) + 1  # the first gap not read: seqs from there on wait


# (name, low, seen, rows read at 100, expected new seqs)
TAKES = [
    ("new rows", 5, {}, [6, 7], [6, 7]),
    ("rows read before are not taken again", 5, {6: 0}, [6, 7], [7]),
    ("a late commit in a gap is taken", 5, {6: 0, 8: 0}, [7, 9], [7, 9]),
    ("rows at or below low are ignored", 5, {}, [4, 5, 6], [6]),
]


@pytest.mark.parametrize(("name", "low", "seen", "read", "want"), TAKES, ids=[t[0] for t in TAKES])
def test_take(name: str, low: int, seen: dict[int, float], read: list[int], want: list[int]) -> None:
    c = cursor(low, seen)
    assert [r.seq for r in c.take(rows(*read), 100.0)] == want
    assert all(c.seen[s] == 100.0 for s in want)


# (name, low, seen, read_at, complete_below, expected low, expected seen seqs)
ADVANCES = [
    ("nothing ripe: low stays", 5, {6: 90, 7: 95}, 100, None, 5, [6, 7]),
    ("ripe seqs move low past a gap", 5, {6: 60, 8: 65, 9: 95}, 100, None, 8, [9]),
    ("a young gap's seq above a ripe one is kept", 5, {6: 60, 9: 95}, 100, None, 6, [9]),
    ("exactly LATE_COMMIT is ripe", 5, {6: 70}, 100, None, 6, []),
    ("a cut read bounds the move", 5, {6: 10, 8: 10, 12: 10}, 100, 10, 8, [12]),
    ("nothing read", 5, {}, 100, None, 5, []),
]


@pytest.mark.parametrize(
    ("name", "low", "seen", "read_at", "complete", "want_low", "want_seen"),
    ADVANCES,
    ids=[a[0] for a in ADVANCES],
)
def test_advance(
    name: str,
    low: int,
    seen: dict[int, float],
    read_at: float,
    complete: int | None,
    want_low: int,
    want_seen: list[int],
) -> None:
    c = cursor(low, seen)
    c.advance(read_at, complete)
    assert (c.low, sorted(c.seen)) == (want_low, want_seen)


def test_a_seq_committing_late_is_read_before_low_passes_it() -> None:
    """seq 7's transaction commits after 8 was read: the poll that reads it still covers the gap."""
    c = ChangeCursor(6, LATE)
    assert [r.seq for r in c.take(rows(8), 0.0)] == [8]
    c.advance(0.0, None)
    assert c.ranges() == ([(8, None), (6, 8)], None)
    assert [r.seq for r in c.take(rows(7), 5.0)] == [7]  # committed late, read through the gap range
    c.advance(31.0, None)
    assert (c.low, c.seen) == (8, {})


# ---- the log in both stores -------------------------------------------------------------------------


async def test_every_job_write_and_delete_is_logged(store: SQLiteStore | MySQLStore) -> None:
    assert await store.job_change_bounds() == (0, 0)
    await store.put_job("a", {"job": "a", "v": 1})
    await store.put_job("a", {"job": "a", "v": 2})
    await store.write_jobs([JobWrite("b", {"job": "b"}, None, None)])
    assert await store.delete_job("a")
    assert not await store.delete_job("a")  # nothing deleted: nothing logged
    oldest, newest = await store.job_change_bounds()
    got = await store.job_changes([(oldest - 1, None)], 100)
    assert [(c.job, c.version, c.doc) for c in got] == [
        ("a", None, None),  # every row of a job carries the job as stored now: gone
        ("a", None, None),
        ("b", 1, {"job": "b"}),
        ("a", None, None),
    ]
    assert [c.seq for c in got] == sorted(c.seq for c in got) and got[-1].seq == newest
    # ranges: a gap range and the open range, with a limit
    seqs = [c.seq for c in got]
    part = await store.job_changes([(seqs[2], None), (seqs[0], seqs[2])], 2)
    assert [c.seq for c in part] == seqs[1:2] + seqs[3:4]
    assert await store.job_changes([], 10) == []


async def test_old_changes_are_pruned(store: SQLiteStore | MySQLStore) -> None:
    await store.put_job("a", {"job": "a"})
    await store.put_job("b", {"job": "b"})
    _, newest = await store.job_change_bounds()
    assert await store.prune_job_changes(0.0, 10) == 0  # nothing before the epoch
    assert await store.prune_job_changes(4e9, 1) == 1  # the limit holds
    assert await store.job_change_bounds() == (newest, newest)
    assert await store.prune_job_changes(4e9, 10) == 1
    assert await store.job_change_bounds() == (0, 0)


# ---- JobSync over a real store, with a follower that records what it is given ----------------------------


class Recorder:
    """JobsService's side of JobSync: applies nothing, records (job, version) of every row given."""

    def __init__(self) -> None:
        self.applied: list[tuple[str, int | None]] = []

    async def follow(self, read: Any, counts: dict[str, int]) -> list[JobChange]:
        rows: list[JobChange] = await read()
        self.applied += [(r.job, r.version) for r in rows]
        counts["replaced"] = counts.get("replaced", 0) + len(rows)
        return rows

    async def resync(self, counts: dict[str, int]) -> None:
        counts["resync"] = 1


async def test_a_poll_pages_through_many_changes_and_reads_a_late_commit(
    store: SQLiteStore | MySQLStore, backend: Backend
) -> None:
    from oceand.cluster import jobsync

    ph = "?" if backend.kind == "sqlite" else "%s"

    rec = Recorder()
    applied: dict[str, int] = {}
    sync = jobsync.JobSync(
        store, rec, interval=1.0, on_applied=lambda op, n: applied.__setitem__(op, applied.get(op, 0) + n)
    )
    await store.put_job("before", {"job": "before"})
    await sync.start()  # changes from here on
    await store.write_jobs([JobWrite(f"j{i:04d}", {"job": f"j{i:04d}"}) for i in range(jobsync.PAGE + 500)])
    assert await sync.poll() == jobsync.PAGE + 500  # two pages in one poll
    assert [j for j, _ in rec.applied] == [f"j{i:04d}" for i in range(jobsync.PAGE + 500)]
    # a late commit: a seq below the highest read appears only now (deleted, then put back)
    await store.put_job("late", {"job": "late"})
    await store.put_job("next", {"job": "next"})
    _, newest = await store.job_change_bounds()
    late = newest - 1
    rows = await store.job_changes([(late - 1, late + 1)], 1)
    assert [r.job for r in rows] == ["late"]
    await backend.sql(f"DELETE FROM job_changes WHERE seq = {ph}", (late,))
    rec.applied.clear()
    assert await sync.poll() == 1 and rec.applied == [("next", 1)]
    await backend.sql(f"INSERT INTO job_changes (seq, job, at) VALUES ({ph}, {ph}, 1)", (late, "late"))
    rec.applied.clear()
    assert await sync.poll() == 1 and rec.applied == [("late", 1)]
    assert applied == {"replaced": jobsync.PAGE + 502}


class FailsOnce(Recorder):
    """Takes the page from the log, then fails before applying it (a store error in `load_state`)."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False
        self.resyncs = 0

    async def follow(self, read: Any, counts: dict[str, int]) -> list[JobChange]:
        if not self.failed:
            self.failed = True
            await read()  # the cursor takes the rows ...
            raise StoreError("load_state: lost connection")  # ... and none of them is applied
        return await super().follow(read, counts)

    async def resync(self, counts: dict[str, int]) -> None:
        self.resyncs += 1
        await super().resync(counts)


async def test_a_poll_that_fails_while_applying_is_followed_by_a_comparison_of_every_job(
    store: SQLiteStore | MySQLStore,
) -> None:
    """The rows a failed poll took are never read again (the cursor saw them): the next poll compares
    every stored job with the daemon's, so a change another daemon made is not lost."""
    from oceand.cluster import jobsync

    rec = FailsOnce()
    applied: dict[str, int] = {}
    sync = jobsync.JobSync(
        store, rec, interval=1.0, on_applied=lambda op, n: applied.__setitem__(op, applied.get(op, 0) + n)
    )
    await sync.start()
    await store.put_job("x", {"job": "x"})
    assert await sync._poll_once(False) is True  # failed, after taking x's row
    assert rec.applied == [] and rec.resyncs == 0
    assert await sync._poll_once(True) is False
    assert rec.resyncs == 1 and applied.get("resync") == 1
    await store.put_job("y", {"job": "y"})
    assert await sync._poll_once(False) is False and rec.applied == [("y", 1)]  # and the log goes on
