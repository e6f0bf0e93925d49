"""Series bounds (issue 18 item 4): per-job and total caps on routed series, expiry of series not seen for
a while, and a bounded cache of series that route nowhere. Sizes are counted in entries, not bytes."""

from __future__ import annotations

from typing import Any

import pytest

from oceand.ingest import UNMATCHED_KEEP, IngestLimits, Ingestor, JobBuckets, PushResult
from policies.document import JobDocument

NOW = 1_700_000_005.0
T = 1_700_000_001


def doc(job: str, **rule: Any) -> JobDocument:
    return JobDocument.model_validate(
        {
            "job": job,
            "target": {"cluster": "lg", "app": "/" + job},
            "rules": [
                {"name": "cpu", "type": "threshold", "metric": "cpu.used", "scale_out": {"above": 80}, **rule}
            ],
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


def test_the_last_seen_period_is_the_newest_samples_across_re_routing() -> None:
    """The hot loop writes a series' slot only for a sample of a later period than its route saw there;
    a route resolved afresh (the job set changed) starts from what the slot holds."""
    ing = ingestor()
    key = ("host-0", "cpu.idle", "job=job.a")

    def seen_after(ts: int) -> int:
        ing.ingest(items("job.a", range(1), ts=ts), ts + 4)
        return ing._seen[ing._slots[key]] - T // 10

    # an older sample never lowers it
    assert [seen_after(ts) for ts in (T, T + 20, T + 10, T + 29)] == [0, 2, 2, 3]
    ing.set_job(doc("job.a"), ing._buckets["job.a"])  # every route resolved again on its next sample
    assert [seen_after(ts) for ts in (T + 15, T + 31, T + 40)] == [3, 3, 4]


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


@pytest.mark.parametrize(
    ("pushed", "unmatched"),
    [
        pytest.param(items("job.a", range(3)), 0, id="all-taken"),
        pytest.param(items("job.other", range(3)), 3, id="watched-metric-no-job"),
        pytest.param(items("job.a", range(3), metric="disk.io.util"), 3, id="metric-no-job-watches"),
        pytest.param([*items("job.a", range(2)), *items("job.b", range(2))], 2, id="mixed"),
    ],
)
def test_items_no_job_takes_are_counted_unmatched(pushed: list[dict[str, Any]], unmatched: int) -> None:
    ing = ingestor()
    res = ing.ingest(pushed, NOW)
    assert (res.total, res.invalid, res.unmatched) == (len(pushed), 0, unmatched)
    assert (ing.accepted, ing.unmatched.total) == (len(pushed) - unmatched, unmatched)
    typed = ing.ingest_items(ing.check(pushed, NOW, PushResult())[0], NOW + 1)  # the typed path: the same
    assert typed.unmatched == unmatched and ing.unmatched.total == 2 * unmatched


def test_the_unmatched_list_is_bounded_and_turns_through_a_large_push() -> None:
    ing = ingestor()
    pushed = items("job.other", range(1000))
    for k in range(70):  # 70 pushes × 16 noted items, turning through the push: the list keeps 100 series
        ing.ingest(pushed, NOW + k)
    listed = ing.unmatched.listing()
    assert len(listed) == UNMATCHED_KEEP and ing.unmatched.total == 70_000
    assert len({x["endpoint"] for x in listed}) == UNMATCHED_KEEP  # deduplicated by series
    assert listed[0]["last_seen"] == NOW + 69  # newest first
    one = ingestor()
    for k in range(3):
        one.ingest(items("job.other", range(1)), NOW + k)
    assert [(x["endpoint"], x["count"], x["last_seen"]) for x in one.unmatched.listing()] == [
        ("host-0", 3, NOW + 2)
    ]


def tasks_ingestor() -> Ingestor:
    ing = Ingestor()
    d = doc("job.a", selector={"tasks": True})
    jb = JobBuckets("job.a", 10, 5.0, [("cpu", "avg")])
    jb.start(NOW)
    ing.set_jobs([(d, jb), (doc("job.b"), JobBuckets("job.b", 10, 5.0, [("cpu", "avg")]))])
    return ing


def agent(endpoints: list[str], ts: int = T) -> list[dict[str, Any]]:
    return [
        {**x, "endpoint": e, "tags": ""}
        for e, x in zip(endpoints, items("-", range(len(endpoints)), ts), strict=True)
    ]


@pytest.mark.parametrize(
    ("tasks", "then", "taken"),
    [
        pytest.param(set(), None, [], id="no-tasks-known"),
        pytest.param({"web-1", "10.0.0.1"}, None, ["web-1", "10.0.0.1"], id="host-and-ip"),
        pytest.param({"web-1"}, {"web-1", "web-2"}, ["web-1", "web-2"], id="task-added"),
        pytest.param({"web-1", "web-2"}, {"web-2"}, ["web-2"], id="task-gone"),
        pytest.param({"web-1"}, set(), [], id="app-gone"),
    ],
)
def test_tasks_selector_takes_the_endpoints_of_the_jobs_tasks(
    tasks: set[str], then: set[str] | None, taken: list[str]
) -> None:
    ing = tasks_ingestor()
    every = ["web-1", "web-2", "10.0.0.1", "db-1"]
    ing.set_tasks("job.a", frozenset(tasks))
    ing.ingest(agent(every), NOW)  # routes cached before the change
    if then is not None:
        ing.set_tasks("job.a", frozenset(then))
    jb = ing._buckets["job.a"]
    jb.open.clear()
    res = ing.ingest(agent(every, T + 10), NOW + 10)
    assert res.unmatched == len(every) - len(taken)
    got = sorted(jb.open[T + 10 - (T + 10) % 10].values[0]) if jb.open else []
    assert got == sorted(taken)


def test_a_task_change_drops_only_the_routes_of_the_endpoints_that_changed() -> None:
    ing = tasks_ingestor()
    ing.set_tasks("job.a", frozenset({"web-1", "web-2"}))
    ing.ingest(agent([f"h{i}" for i in range(1000)] + ["web-1", "web-2"]), NOW)
    assert len(ing._routes) == 1002
    ing.set_tasks("job.a", frozenset({"web-2", "web-3"}))
    assert len(ing._routes) == 1001 and ("web-1", "cpu.idle", "") not in ing._routes
    ing.remove_job("job.a")
    assert ing._tasks == {} and ing._task_watched == {}


def test_the_unmatched_list_takes_one_push_per_tenth_of_a_second_and_counts_all() -> None:
    ing = ingestor()
    for t in (NOW, NOW + 0.05, NOW + 0.25):
        ing.ingest(items("job.other", range(1)), t)
    listed = ing.unmatched.listing()
    assert [(x["count"], x["last_seen"]) for x in listed] == [(2, NOW + 0.25)] and ing.unmatched.total == 3
