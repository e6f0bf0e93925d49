"""Warm start from Falcon's graph history (PRODUCT §9): a daemon with `[history] falcon_api` fills a new
job's predictive rule from the falcon-plus API fake (tests/fakes/falcon_api.py, built from falcon-plus's
graph controller), and a graph that does not answer costs the job nothing but its warm start."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from policies.predictive import MIN_ERRORS
from tests.api.test_admin import JOB, doc
from tests.api.test_secrets import until
from tests.conftest import DaemonFactory
from tests.fakes.falcon_api import DEFAULT_TOKEN, FalconFake

COUNTER = f"proc.qps/job={JOB}"
PRED = {"name": "p", "type": "predictive", "metric": "proc.qps", "target": 100, "startup": "60s"}


@pytest.fixture
async def graph() -> AsyncIterator[FalconFake]:
    fake = FalconFake()
    now = int(time.time())
    last = now - now % 60 - 60
    # web-2's series carries one tag more than the selector asks for: it is the job's all the same
    for host, counter, value in (("web-1", COUNTER, 120.0), ("web-2", f"{COUNTER},port=8080", 180.0)):
        points: list[tuple[int, float | None]] = [(last - 60 * i, value) for i in range(240)]  # 4 hours
        points.append((last - 60 * 240, None))  # NaN in the graph: left out
        fake.graphs[(host, counter)] = ("GAUGE", 60, points)
    fake.graphs[("web-2", "proc.qps/job=other")] = ("GAUGE", 60, [(last, 1000.0)])  # another job's
    fake.graphs[("web-1", "proc.qpsx")] = ("GAUGE", 60, [(last, 1000.0)])  # another metric
    fake.graphs[("db-1", "proc.qps/job=other")] = ("GAUGE", 60, [(last, 1.0)])
    await fake.start()
    yield fake
    await fake.stop()


def history(fake: FalconFake, **over: Any) -> dict[str, Any]:
    return {"falcon_api": fake.url, "falcon_api_token": DEFAULT_TOKEN, "warm_timeout": "2s", **over}


async def test_a_new_job_is_warmed_from_the_graph(start_daemon: DaemonFactory, graph: FalconFake) -> None:
    d, c = await start_daemon(history=history(graph))
    status, body = await c.call("POST", "/api/v1/jobs", doc(period="60s", rules=[PRED]))
    assert status == 201, body

    def warm() -> Any:
        return d.warm.status(JOB) if d.warm is not None else None

    await until(lambda: warm() is not None)
    w = warm()
    assert w["result"] == "warmed" and w["error"] is None, w
    assert w["rules"] == {"p": 240} and w["points"] == 480
    # what was asked: the endpoints carrying the selector's tag, their counters of the rule's metric, then
    # one history query per group of hosts with the same counters, as falcon-plus takes them
    search, counters = graph.endpoint_queries
    assert search["tags"] == f"job={JOB}" and "q" not in search
    assert counters["eid"] == "2,3" and counters["metricQuery"] == r"^(proc\.qps)(/|$)"
    assert sorted((q["hostnames"], q["counters"]) for q in graph.history_queries) == [
        (["web-1"], [COUNTER]),
        (["web-2"], [f"{COUNTER},port=8080"]),
    ]
    for hq in graph.history_queries:
        assert hq["consol_fun"] == "AVERAGE" and hq["step"] == 0
        assert hq["end_time"] - hq["start_time"] == 2 * 86400 and hq["end_time"] % 60 == 0
    # the rule learnt the load: 120 + 180 per minute over two hosts, with its forecast errors checked
    st = d.engine.jobs[JOB].state.predictive["p"]
    assert st.level == pytest.approx(300.0) and st.checked >= MIN_ERRORS
    assert 'oceand_warm_starts_total{result="warmed"} 1.0' in d.metrics.render().decode()
    status, body = await c.call("GET", f"/api/v1/jobs/{JOB}/status")
    assert status == 200 and body["warm_start"]["result"] == "warmed"
    assert DEFAULT_TOKEN not in json.dumps(body)


async def test_a_graph_that_hangs_starts_the_job_cold(start_daemon: DaemonFactory, graph: FalconFake) -> None:
    graph.hang_history = True
    d, c = await start_daemon(history=history(graph, warm_timeout="0.3s"))
    status, body = await c.call("POST", "/api/v1/jobs", doc(period="60s", rules=[PRED]))
    assert status == 201, body
    await until(lambda: len(graph.history_queries) == 1)
    status, body = await c.call("GET", f"/api/v1/jobs/{JOB}/status")  # served while the graph hangs
    assert status == 200 and body["warm_start"] is None
    await until(lambda: d.warm is not None and d.warm.status(JOB) is not None)
    assert d.warm is not None
    w = d.warm.status(JOB)
    assert w is not None and w["result"] == "failed" and "warm_timeout" in w["error"]
    assert d.engine.jobs[JOB].state.predictive.get("p") is None  # cold: nothing invented
    assert 'oceand_warm_starts_total{result="failed"} 1.0' in d.metrics.render().decode()


async def test_only_jobs_with_something_to_learn_ask(start_daemon: DaemonFactory, graph: FalconFake) -> None:
    d, c = await start_daemon(history=history(graph))
    status, body = await c.call("POST", "/api/v1/jobs", doc(period="60s"))  # a threshold rule only
    assert status == 201, body
    other = doc(
        f"x{JOB}", period="60s", rules=[PRED | {"selector": {"endpoint": "web-1", "tags": {"job": JOB}}}]
    )
    status, body = await c.call("POST", "/api/v1/jobs", other)
    assert status == 201, body
    assert d.warm is not None
    await until(lambda: d.warm is not None and d.warm.status(f"x{JOB}") is not None)
    assert d.warm.status(f"x{JOB}")["result"] == "warmed"  # type: ignore[index]
    assert d.warm.status(JOB) is None
    assert graph.endpoint_queries[0] == {"endpoints": "web-1"}  # an exact endpoint: its id, no search
    assert [q["hostnames"] for q in graph.history_queries] == [["web-1"]]
    # a restart: the store kept the warmed state (written behind, and at stop), nothing is asked again
    warmed = d.engine.jobs[f"x{JOB}"].state.predictive["p"]
    await d.stop()
    d2, _ = await start_daemon(history=history(graph))
    assert d2.engine.jobs[f"x{JOB}"].state.predictive["p"] == warmed
    assert d2.warm is not None and d2.warm.status(f"x{JOB}") is None and len(graph.history_queries) == 1


@pytest.mark.parametrize(
    ("tasks", "result"),
    [
        pytest.param(frozenset({"web-1", "web-2", "10.0.0.9"}), "warmed", id="the job's Marathon tasks"),
        pytest.param(None, "failed", id="no task known within half the timeout"),
    ],
)
async def test_a_tasks_selector_asks_for_the_jobs_task_hosts(
    start_daemon: DaemonFactory, graph: FalconFake, tasks: frozenset[str] | None, result: str
) -> None:
    d, c = await start_daemon(history=history(graph, warm_timeout="1s"))
    rule = PRED | {"selector": {"tasks": True, "tags": {"job": JOB}}}
    status, body = await c.call("POST", "/api/v1/jobs", doc(period="60s", rules=[rule]))
    assert status == 201, body
    if tasks is not None:  # Marathon's answer arrives after the job was queued (the warm start waits)
        d.engine.set_tasks(JOB, tasks)
    assert d.warm is not None
    await until(lambda: d.warm is not None and d.warm.status(JOB) is not None)
    w = d.warm.status(JOB)
    assert w is not None and w["result"] == result, w
    if tasks is None:
        assert "no Marathon task" in w["error"] and graph.endpoint_queries == []
        return
    assert graph.endpoint_queries[0] == {"endpoints": "10.0.0.9,web-1,web-2"}  # the graph knows two
    assert w["rules"] == {"p": 240}


async def test_a_job_with_an_instance_tag_is_warmed_per_tag_value(
    start_daemon: DaemonFactory, graph: FalconFake
) -> None:
    """Several instances on one endpoint, told apart by `instance_tag`: each counter that carries the tag
    is an instance, named by its value, as live samples are; a counter without the tag is not the job's."""
    now = int(time.time())
    last = now - now % 60 - 60
    graph.graphs.clear()
    for host, container, value in (("web-1", "c1", 100.0), ("web-1", "c2", 140.0), ("web-2", "c3", 60.0)):
        points: list[tuple[int, float | None]] = [(last - 60 * i, value) for i in range(240)]
        graph.graphs[(host, f"{COUNTER},container={container}")] = ("GAUGE", 60, points)
    graph.graphs[("web-2", COUNTER)] = ("GAUGE", 60, [(last - 60 * i, 5000.0) for i in range(240)])
    graph.graphs[("web-2", f"{COUNTER},container=")] = ("GAUGE", 60, [(last, 5000.0)])  # empty: not one
    d, c = await start_daemon(history=history(graph))
    status, body = await c.call(
        "POST", "/api/v1/jobs", doc(period="60s", rules=[PRED], instance_tag="container")
    )
    assert status == 201, body
    await until(lambda: d.warm is not None and d.warm.status(JOB) is not None)
    assert d.warm is not None
    w = d.warm.status(JOB)
    assert w is not None and w["result"] == "warmed", w
    assert w["rules"] == {"p": 240} and w["points"] == 720  # the untagged series was not asked for
    assert sorted((q["hostnames"], q["counters"]) for q in graph.history_queries) == [
        (["web-1"], [f"{COUNTER},container=c1", f"{COUNTER},container=c2"]),
        (["web-2"], [f"{COUNTER},container=c3"]),
    ]
    # three instances of mean 100: load 300 (by endpoint it would be two reporters: 2 × 120 on web-1's
    # last value, or 5000 with the untagged series)
    st = d.engine.jobs[JOB].state.predictive["p"]
    assert st.level == pytest.approx(300.0) and st.checked >= MIN_ERRORS
