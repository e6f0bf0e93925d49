"""Series bounds (issue 18 item 4): per-job and total caps on routed series, expiry of series not seen for
a while, and a bounded cache of series that route nowhere. Sizes are counted in entries, not bytes."""

from __future__ import annotations

from typing import Any

import pytest

from oceand.buckets import JobBuckets
from oceand.ingest import IngestLimits, Ingestor, PushResult
from policies.document import JobDocument

NOW = 1_700_000_005.0
T = 1_700_000_001


def doc(job: str) -> JobDocument:
    return JobDocument.model_validate(
        {
            "job": job,
            "target": {"cluster": "lg", "app": "/" + job},
            "rules": [{"name": "cpu", "type": "threshold", "metric": "cpu.used", "scale_out": {"above": 80}}],
        }
    )


def ingestor(jobs: tuple[str, ...] = ("job.a",), **limits: Any) -> Ingestor:
    ing = Ingestor(limits=IngestLimits(**limits))
    pairs = []
    for job in jobs:
        jb = JobBuckets(job, 10, 5.0, [("cpu", "avg")])
        jb.start(NOW)
        pairs.append((doc(job), jb))
    ing.set_jobs(pairs)
    return ing


def items(job: str, hosts: range, ts: int = T, metric: str = "cpu.idle") -> list[dict[str, Any]]:
    return [
        {
            "endpoint": f"host-{i}",
            "metric": metric,
            "timestamp": ts,
            "step": 10,
            "value": float(i),
            "counterType": "GAUGE",
            "tags": f"job={job}",
        }
        for i in hosts
    ]


def sizes(ing: Ingestor) -> dict[str, int]:
    """Every structure that holds something per series."""
    return {
        "routes": len(ing._routes),
        "slots": len(ing._slots),
        "last seen": len(ing._seen),
    }


@pytest.mark.parametrize(
    ("limits", "jobs", "accepted", "bound"),
    [
        pytest.param({"max_series_per_job": 3}, ("job.a",), 3, "series_per_job", id="per job"),
        pytest.param({"max_series": 4}, ("job.a", "job.b"), 4, "series_total", id="in total"),
    ],
)
def test_new_series_beyond_a_cap_are_rejected_item_by_item(
    limits: dict[str, int], jobs: tuple[str, ...], accepted: int, bound: str
) -> None:
    ing = ingestor(jobs, **limits)
    body = [x for job in jobs for x in items(job, range(5))]
    res = ing.ingest(body, NOW)
    assert res.total - res.invalid == accepted
    assert res.limited == {bound: len(body) - accepted}
    assert res.reasons[0].startswith(f"[{accepted}] series:") and "limit" in res.reasons[0], res.reasons
    assert ing.series == accepted
    again = ing.ingest(body, NOW)  # the same series again: the same answer, from the route cache
    assert (again.invalid, again.limited) == (res.invalid, res.limited)


def test_series_not_seen_for_a_while_expire_and_their_memory_comes_back() -> None:
    ing = ingestor(max_series_per_job=150)
    ing.ingest(items("job.a", range(100)), NOW)
    later = NOW + 3 * 600 + 20  # three windows of the job (60 periods of 10 s) and a bit
    ing.ingest(items("job.a", range(100, 110), ts=int(later)), later)
    assert sizes(ing) == {"routes": 110, "slots": 110, "last seen": 110}
    assert ing.expire(later) == 100
    assert sizes(ing) == {"routes": 10, "slots": 10, "last seen": 10}
    assert ing.series == 10 and ing.series_of("job.a") == 10
    # the series that stayed kept their last-seen time (moved to the freed slots)
    for i in range(100, 110):
        slot = ing._slots[(f"host-{i}", "cpu.idle", "job=job.a")]
        assert ing._seen[slot] == int(later) // 10
    # and go on being written where they now are
    ing.ingest(items("job.a", range(100, 110), ts=int(later) + 10), later + 10)
    slot = ing._slots[("host-105", "cpu.idle", "job=job.a")]
    assert ing._seen[slot] == int(later) // 10 + 1
    assert ing.expire(later + 1800) == 0 and ing.expire(later + 1830) == 10


def test_a_routed_series_holds_no_values_of_its_own() -> None:
    """Series windows nothing read are gone: a series costs its route, its slot and one last-seen number."""
    ing = ingestor()
    ing.ingest(items("job.a", range(100)), NOW)
    assert not hasattr(ing, "windows")
    assert len(ing._seen) == ing.series == 100 and ing._seen.itemsize == 8


def test_a_series_refused_by_the_cap_is_taken_once_there_is_room() -> None:
    ing = ingestor(max_series_per_job=2)
    ing.ingest(items("job.a", range(2)), NOW)
    assert ing.ingest(items("job.a", range(2, 3)), NOW).limited == {"series_per_job": 1}
    later = NOW + 1820
    assert ing.expire(later) == 2
    res = ing.ingest(items("job.a", range(2, 3), ts=int(later)), later)
    assert (res.invalid, res.limited) == (0, {})


def test_a_recent_series_is_not_expired() -> None:
    ing = ingestor()
    ing.ingest(items("job.a", range(3)), NOW)
    assert ing.expire(NOW + 600) == 0 and ing.series == 3


def test_series_that_route_nowhere_are_cached_within_a_bound() -> None:
    ing = ingestor(max_unrouted=50)
    ing.ingest(items("job.a", range(5)), NOW)
    purged = False
    for k in range(10):  # 1,000 series of a watched metric that no job's selector takes
        res: PushResult = ing.ingest(items(f"job.other{k}", range(100)), NOW)
        assert res.invalid == 0
        purged |= res.purged
    assert purged
    assert len(ing._routes) <= 5 + 50
    assert ing.series == 5  # the routed series kept their routes and windows
    assert all(ing._routes[(f"host-{i}", "cpu.idle", "job=job.a")] for i in range(5))
