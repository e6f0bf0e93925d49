"""oceand._fastroute (the ingest hot loop's usual sample in C) against the same routing in Python.

Every body goes through two Ingestors with the same jobs, one routing with the extension and one without
(`oceand.ingest._native` set to None around its calls): the answers, the counters, every open bucket's
values, the buckets handed to the jobs and the unmatched list must be the same. The bodies mix what the C
loop takes itself (GAUGE samples of known series into open buckets) with everything it hands to Python:
new series, counters, inverted metrics, timestamps out of bounds or unusable, refused series, several
targets, first samples of an instance, late samples, metrics nobody watches."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oceand.ingest as ingest
from collectors.falcon_items import FalconItem
from oceand.ingest import IngestLimits, Ingestor, JobBuckets, PushResult
from policies.document import JobDocument

NOW = 1_700_000_005.0
T = 1_700_000_000

pytestmark = pytest.mark.skipif(
    os.environ.get("OCEAND_NATIVE") == "0", reason="OCEAND_NATIVE=0: the extension is switched off"
)


def test_the_extension_is_built() -> None:
    """CI builds it (gcc is on every machine): a missing extension is a build problem, not a pass."""
    assert ingest.NATIVE, (
        "oceand._fastroute is not built: run `scripts/setup test` (pip install -e . compiles "
        "oceand/_fastroute.c with the C compiler); without it oceand routes in Python"
    )


def docs() -> list[JobDocument]:
    def doc(job: str, rules: list[dict[str, Any]], **extra: Any) -> JobDocument:
        return JobDocument.model_validate(
            {"job": job, "target": {"cluster": "lg", "app": "/" + job}, "rules": rules, **extra}
        )

    thr = {"type": "threshold", "scale_out": {"above": 80}}
    return [
        doc(
            "job.a",
            [{"name": "cpu", "metric": "cpu.used", **thr}, {"name": "qps", "metric": "proc.qps", **thr}],
        ),
        doc("job.b", [{"name": "qps", "metric": "proc.qps", "aggregate": "max", **thr}]),
        # no tag selector: every series of the metric, from any job tag (a second target for job.a's)
        doc("job.c", [{"name": "reqs", "metric": "proc.qps", "selector": {"tags": {}}, **thr}]),
        doc("job.d", [{"name": "mem", "metric": "mem.used.percent", **thr}]),
    ]


def make(clock: list[float] | None = None) -> tuple[Ingestor, list[JobBuckets], list[list[Any]]]:
    """An Ingestor with the jobs; its clock reads `clock[0]` (NOW when not given)."""
    at = clock if clock is not None else [NOW]
    ing = Ingestor(limits=IngestLimits(max_series_per_job=12), clock=lambda: at[0])
    handed: list[list[Any]] = []
    jbs = []
    pairs = []
    for d in docs():
        jb = JobBuckets(d.job, 10, 5.0, [(r.name, r.aggregate) for r in d.metric_rules()], expected=3)
        jb.start(NOW - 30)
        jb.hand = lambda closed, job=d.job: handed.append([job, closed])  # type: ignore[misc]
        jbs.append(jb)
        pairs.append((d, jb))
    ing.set_jobs(pairs)
    return ing, jbs, handed


def state(ing: Ingestor, jbs: list[JobBuckets], handed: list[list[Any]]) -> Any:
    return (
        ing.accepted,
        ing.rejected,
        ing.series,
        ing._negatives,
        list(ing._seen),
        [(jb.late, jb.overflow, jb.closed_upto, {s: b.values for s, b in jb.open.items()}) for jb in jbs],
        handed,
        ing.unmatched.listing(),
        ing.unmatched.total,
    )


def answer(res: PushResult) -> Any:
    return (
        res.total,
        res.invalid,
        res.reasons,
        sorted(res.completed),
        res.too_new,
        res.too_old,
        res.limited,
        res.unmatched,
        res.purged,
    )


item = st.builds(
    FalconItem,
    endpoint=st.sampled_from(["h1", "h2", "h3", "h4"]),
    metric=st.sampled_from(
        ["cpu.idle", "cpu.used", "proc.qps", "mem.memfree.percent", "disk.io", "kernel.hostname"]
    ),
    timestamp=st.one_of(
        st.integers(T - 40, T + 12),  # the usual: the buckets around the clock, some late, some ahead
        st.sampled_from([0, -5, T - 100_000, T + 3_000, 2**62, 2**64 - 1]),  # out of bounds or unusable
    ),
    step=st.just(10),
    value=st.floats(-1e6, 1e6, allow_nan=False),
    counterType=st.sampled_from(["GAUGE", "GAUGE", "GAUGE", "COUNTER", "DERIVE"]),
    tags=st.sampled_from(["job=job.a", "job=job.b", "job=job.d", "job=job.a,x=1", "", "job=job.zz"]),
)


# what the C loop takes itself: GAUGE samples of one job's rule (cpu.idle -> job.a's cpu.used, inverted;
# mem.memfree.percent -> job.d's), stamped within the jobs' bounds, a few hosts so buckets fill up
usual = st.builds(
    FalconItem,
    endpoint=st.sampled_from(["h1", "h2", "h3"]),
    metric=st.sampled_from(["cpu.idle", "mem.memfree.percent"]),
    timestamp=st.integers(T - 25, T + 60),  # the clock moves 10 s a body: later bodies take later stamps
    step=st.just(10),
    value=st.floats(0, 100, allow_nan=False),
    counterType=st.just("GAUGE"),
    tags=st.sampled_from(["job=job.a", "job=job.d"]),
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    bodies=st.lists(st.lists(st.one_of(usual, usual, item), min_size=1, max_size=60), min_size=1, max_size=8)
)
def test_the_extension_routes_as_python_does(bodies: list[list[FalconItem]]) -> None:
    clock = [NOW]
    native, py = make(clock), make(clock)
    for n, body in enumerate(bodies):
        clock[0] = NOW + 10 * n
        a = native[0].push(list(body), typed=True)
        saved, ingest._native = ingest._native, None
        try:
            b = py[0].push(list(body), typed=True)
        finally:
            ingest._native = saved
        assert answer(a) == answer(b), f"body {n}"
        assert state(*native) == state(*py), f"after body {n}"


def test_the_usual_sample_is_written_in_place_of_its_last() -> None:
    """A known series' newer sample replaces its instance's value; an older one does not; a value someone
    else still holds is left as it was (the C loop reuses the pair only when the bucket alone holds it)."""
    ing, jbs, _ = make()

    def push(ts: int, value: float) -> None:
        it = FalconItem("h1", "mem.memfree.percent", ts, 10, value, "GAUGE", "job=job.d")
        res = ing.push([it], typed=True)
        assert (res.invalid, res.unmatched) == (0, 0)

    push(T + 1, 1.0)  # the series' first sample: its route, its slot, the instance's first value
    push(T + 2, 2.0)
    per = jbs[3].open[T].values[0]  # job.d's mem.used.percent = 100 - mem.memfree.percent
    assert per == {"h1": (T + 2, 98.0)}
    push(T + 3, 3.0)
    assert per == {"h1": (T + 3, 97.0)}
    push(T + 1, 9.0)  # older than the value held: kept
    assert per == {"h1": (T + 3, 97.0)}
    held = per["h1"]
    push(T + 4, 4.0)
    assert held == (T + 3, 97.0), "a pair someone else holds was changed"
    assert per == {"h1": (T + 4, 96.0)}


def test_last_seen_and_completion_follow_the_samples_as_in_python() -> None:
    """Three hosts of job.d (3 instances expected) push mem.memfree.percent, the clock moving on:
    after each body both ways hold the same last-seen periods, `fresh` marks and buckets, and the bucket
    completes at its third host in both (the C loop writes the last-seen period and checks completion
    itself when the bucket is already open)."""
    clock = [NOW]
    native, py = make(clock), make(clock)

    def body(ts: int, hosts: list[str]) -> list[FalconItem]:
        return [
            FalconItem(h, "mem.memfree.percent", ts, 10, 50.0 + i, "GAUGE", "job=job.d")
            for i, h in enumerate(hosts)
        ]

    for n, (ts, hosts) in enumerate(
        [(T + 1, ["h1", "h2"]), (T + 12, ["h2", "h1"]), (T + 13, ["h3"]), (T + 22, ["h2", "h1", "h3"])]
    ):
        clock[0] = NOW + 10 * n
        a = native[0].push(body(ts, hosts), typed=True)
        saved, ingest._native = ingest._native, None
        try:
            b = py[0].push(body(ts, hosts), typed=True)
        finally:
            ingest._native = saved
        assert answer(a) == answer(b), f"body {n}"
        assert state(*native) == state(*py), f"after body {n}"
        fresh = {k: r.fresh for k, r in native[0]._routes.items() if r}
        assert fresh == {k: r.fresh for k, r in py[0]._routes.items() if r}, f"after body {n}"
        if n == 2:
            assert a.completed == {"job.d"}  # the third host of the bucket at T + 10
    assert list(native[0]._seen) == [170_000_002] * 3
