"""Period buckets (PRODUCT §3.1): alignment, last-sample-per-instance, aggregates, early and deadline close."""

from __future__ import annotations

import pytest

from oceand.ingest import MAX_OPEN, JobBuckets, aggregate

T0 = 1_700_000_000  # a multiple of 10


def make(expected: int | None = None, rules: tuple[tuple[str, str], ...] = (("cpu", "avg"),)) -> JobBuckets:
    jb = JobBuckets("job.a", 10, 5.0, list(rules), expected=expected)
    jb.start(T0)
    return jb


@pytest.mark.parametrize(
    ("kind", "values", "want"),
    [
        pytest.param("avg", [1.0, 2.0, 6.0], 3.0, id="avg"),
        pytest.param("max", [1.0, 9.0, 6.0], 9.0, id="max"),
        pytest.param("min", [4.0, 2.0, 6.0], 2.0, id="min"),
        pytest.param("sum", [1.0, 2.0, 6.0], 9.0, id="sum"),
        pytest.param("p50", [1.0, 2.0, 3.0, 4.0], 2.5, id="p50 interpolates"),
        pytest.param("p90", [float(i) for i in range(11)], 9.0, id="p90"),
        pytest.param("p99", [0.0, 100.0], 99.0, id="p99 of two"),
        pytest.param("avg", [], None, id="no instances is no data"),
    ],
)
def test_aggregate(kind: str, values: list[float], want: float | None) -> None:
    assert (
        aggregate(kind, values) == pytest.approx(want)
        if want is not None
        else aggregate(kind, values) is None
    )


def test_last_sample_of_an_instance_wins_and_buckets_align() -> None:
    jb = make()
    jb.add(0, "h1", T0 + 1, 10.0)
    jb.add(0, "h1", T0 + 7, 30.0)  # later sample in the same bucket replaces
    jb.add(0, "h1", T0 + 3, 99.0)  # an older one does not
    jb.add(0, "h2", T0 + 9, 50.0)
    jb.add(0, "h2", T0 + 10, 70.0)  # next bucket
    closed = jb.due(T0 + 10 + 5)
    assert [c.start for c in closed] == [T0]
    assert closed[0].values == {"cpu": 40.0}
    assert closed[0].reporters == 2
    assert not closed[0].early


def test_closes_early_when_every_running_instance_reported() -> None:
    jb = make(expected=2)
    assert jb.add(0, "h1", T0 + 1, 10.0) is False
    assert jb.add(0, "h2", T0 + 2, 20.0) is True
    closed = jb.due(T0 + 2.001)
    assert len(closed) == 1 and closed[0].early and closed[0].values["cpu"] == 15.0
    # a straggler for the closed bucket is counted and dropped
    assert jb.add(0, "h3", T0 + 4, 99.0) is False
    assert jb.late == 1


def test_every_metric_rule_must_hear_from_every_instance() -> None:
    jb = make(expected=1, rules=(("cpu", "avg"), ("qps", "sum")))
    assert jb.add(0, "h1", T0 + 1, 10.0) is False
    assert jb.add(1, "h1", T0 + 1, 5.0) is True


def test_unknown_expected_uses_previous_bucket_reporters() -> None:
    jb = make(expected=None)
    jb.add(0, "h1", T0 + 1, 1.0)
    jb.add(0, "h2", T0 + 1, 1.0)
    assert jb.add(0, "h1", T0 + 11, 1.0) is False  # first bucket still open: no previous count
    jb.due(T0 + 15)  # deadline closes the first bucket with 2 reporters
    assert jb.last_reporters == 2
    assert jb.add(0, "h2", T0 + 12, 1.0) is True


def test_empty_bucket_is_no_data_and_long_gaps_collapse() -> None:
    jb = make()
    closed = jb.due(T0 + 15)
    assert [(c.start, c.values["cpu"]) for c in closed] == [(T0, None)]
    closed = jb.due(T0 + 1000)  # the daemon was away: one no-data bucket, not a hundred
    assert len(closed) == 1 and closed[0].values["cpu"] is None
    assert jb.closed_upto == T0 + 990


def test_closing_a_later_complete_bucket_closes_earlier_ones_first() -> None:
    jb = make(expected=1)
    jb.add(0, "h1", T0 + 11, 5.0)  # bucket T0+10 complete while T0 never heard from anyone
    closed = jb.due(T0 + 12)
    assert [c.start for c in closed] == [T0, T0 + 10]
    assert closed[0].values["cpu"] is None and closed[1].values["cpu"] == 5.0


def test_a_rule_nobody_reports_does_not_hold_the_bucket_open() -> None:
    jb = make(expected=2, rules=(("cpu", "avg"), ("qps", "sum")))
    jb.add(0, "h1", T0 + 1, 1.0)
    assert jb.add(0, "h2", T0 + 1, 1.0) is False  # first bucket: every rule counts
    jb.due(T0 + 15)  # closes at its deadline; qps had no data
    jb.add(0, "h1", T0 + 11, 1.0)
    assert jb.add(0, "h2", T0 + 11, 1.0) is True  # now qps (silent) does not hold it open


def test_a_rule_that_reported_before_must_be_complete_again() -> None:
    jb = make(expected=1, rules=(("cpu", "avg"), ("qps", "sum")))
    jb.add(0, "h1", T0 + 1, 1.0)
    assert jb.add(1, "h1", T0 + 1, 1.0) is True
    jb.due(T0 + 2)
    assert jb.add(0, "h1", T0 + 11, 1.0) is False  # qps reported last bucket: wait for it
    assert jb.add(1, "h1", T0 + 12, 1.0) is True


# ---- hostile timestamps (issue 18 item 1): the daemon's clock decides what closes --------------------------


@pytest.mark.parametrize(
    "ts",
    [
        pytest.param(T0 + 1_000_000, id="11.6 days ahead: 100,000 buckets"),
        pytest.param(2 * T0 - 100, id="2 x now: 170 million buckets, MemoryError"),
    ],
)
def test_a_complete_bucket_far_in_the_future_does_not_close_every_bucket_up_to_it(ts: int) -> None:
    """One sample stamped ahead used to close every empty bucket up to it at once."""
    jb = make(expected=1)
    assert jb.add(0, "h1", ts - ts % 10, 1.0) is True
    closed = jb.due(T0 + 1)
    assert closed == []
    assert jb.closed_upto <= T0 + 10  # the bucket clock did not jump with the data


def test_a_future_sample_does_not_freeze_the_job() -> None:
    """After a future-stamped complete bucket, the next real sample is not "late": scaling goes on."""
    jb = make(expected=1)
    jb.add(0, "h1", T0 + 1_000_000, 1.0)
    jb.due(T0 + 1)
    assert jb.add(0, "h1", T0 + 11, 5.0) is True
    assert jb.late == 0
    closed = jb.due(T0 + 12)
    assert [(c.start, c.values["cpu"]) for c in closed] == [(T0, None), (T0 + 10, 5.0)]


def test_complete_future_buckets_wait_for_the_clock() -> None:
    """Three future buckets made complete at once used to close at once: three hot buckets, a scale-out."""
    jb = make(expected=1)
    for k in (1, 2, 3):
        assert jb.add(0, "h1", T0 + 10 * k, 0.0) is True
    assert jb.due(T0 + 1) == []
    assert jb.deadline() == T0 + 10  # the worker wakes when the first of them begins
    assert [c.start for c in jb.due(T0 + 10)] == [T0, T0 + 10]
    assert [c.start for c in jb.due(T0 + 20)] == [T0 + 20]


def test_a_worker_late_by_a_long_time_closes_a_bounded_number_of_buckets() -> None:
    """Empty buckets before a complete one collapse into one no-data close, as they do at a deadline."""
    jb = make(expected=1)
    jb.add(0, "h1", T0 + 1_000_000, 1.0)
    closed = jb.due(T0 + 1_000_001)
    assert len(closed) <= 3
    assert closed[-1].start == T0 + 1_000_000 and closed[-1].values["cpu"] == 1.0
    assert all(c.values["cpu"] is None for c in closed[:-1])


def test_open_buckets_are_bounded() -> None:
    jb = make()
    for k in range(MAX_OPEN + 50):
        jb.add(0, "h1", T0 + 10 * k, 1.0)
    assert len(jb.open) == MAX_OPEN
    assert jb.overflow == 50


@pytest.mark.parametrize(
    ("sent", "now", "want"),
    [
        pytest.param([], T0 + 29, None, id="never-within-3-periods"),
        pytest.param([], T0 + 30, T0, id="never-for-3-periods"),
        pytest.param([T0 + 1], T0 + 39, None, id="stopped-within-3-periods"),
        pytest.param([T0 + 1], T0 + 40, T0 + 10, id="stopped-for-3-periods"),
        pytest.param([T0 + 1, T0 + 41], T0 + 79, None, id="came-back"),
        pytest.param([T0 + 1, T0 + 41], T0 + 80, T0 + 50, id="came-back-and-stopped"),
    ],
)
def test_a_rule_without_samples_for_3_periods_is_silent(sent: list[int], now: int, want: int | None) -> None:
    jb = make(rules=(("cpu", "avg"), ("mem", "avg")))
    for ts in sent:
        jb.add(0, "h1", ts, 1.0)
    jb.due(now)
    assert jb.silent_since("cpu", now) == want
    assert jb.silent_since("mem", now) == (T0 if now >= T0 + 30 else None)  # nobody sends mem


# ---- a handoff: another daemon's open buckets merged (oceand/cluster/hotlink.py) ---------------------

Sample = tuple[str, str, int, float]


@pytest.mark.parametrize(
    ("mine", "closed_upto", "handed", "want_closed", "want_open", "added"),
    [
        pytest.param(
            [],
            T0,
            [("cpu", "h0", T0 + 1, 90.0)],
            T0,
            {T0: {"h0": (T0 + 1, 90.0)}},
            1,
            id="the old owner's open bucket: its sample joins",
        ),
        pytest.param(
            [("h1", T0 + 2, 70.0)],
            T0,
            [("cpu", "h0", T0 + 1, 90.0)],
            T0,
            {T0: {"h1": (T0 + 2, 70.0), "h0": (T0 + 1, 90.0)}},
            1,
            id="both daemons' samples of one bucket",
        ),
        pytest.param(
            [("h0", T0 + 5, 60.0)],
            T0,
            [("cpu", "h0", T0 + 1, 90.0)],
            T0,
            {T0: {"h0": (T0 + 5, 60.0)}},
            1,
            id="the later sample of an instance wins (here's)",
        ),
        pytest.param(
            [("h0", T0 + 2, 50.0)],
            T0 + 10,
            [("cpu", "h0", T0 + 11, 90.0)],
            T0 + 10,
            {T0 + 10: {"h0": (T0 + 11, 90.0)}},
            1,
            id="a bucket closed there is closed here: not evaluated twice",
        ),
        pytest.param(
            [],
            T0 - 10,
            [("cpu", "h0", T0 - 9, 90.0)],
            T0,
            {},
            0,
            id="a bucket closed here meanwhile: its sample dropped",
        ),
        pytest.param(
            [], T0, [("mem", "h0", T0 + 1, 90.0)], T0, {}, 0, id="a rule the job no longer has: dropped"
        ),
    ],
)
def test_merge_of_a_handoff(
    mine: list[tuple[str, int, float]],
    closed_upto: int,
    handed: list[Sample],
    want_closed: int,
    want_open: dict[int, dict[str, tuple[int, float]]],
    added: int,
) -> None:
    jb = make(expected=3)
    for instance, ts, value in mine:
        jb.add(0, instance, ts, value)
    assert jb.merge(closed_upto, handed) == added
    assert jb.closed_upto == want_closed
    assert {start: b.values[0] for start, b in jb.open.items()} == want_open


def test_open_samples_are_what_a_merge_takes() -> None:
    there, here = make(expected=3), make(expected=3)
    for instance, ts in (("h0", T0 + 1), ("h1", T0 + 3), ("h0", T0 + 12)):
        there.add(0, instance, ts, 80.0)
    assert sorted(there.open_samples()) == [
        ("cpu", "h0", T0 + 1, 80.0),
        ("cpu", "h0", T0 + 12, 80.0),
        ("cpu", "h1", T0 + 3, 80.0),
    ]
    assert here.merge(there.closed_upto, there.open_samples()) == 3
    assert {s: b.values for s, b in here.open.items()} == {s: b.values for s, b in there.open.items()}
