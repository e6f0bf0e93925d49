"""ClusterWatcher against the fake Marathon: tasks follow events, reconnects re-read, deployment waits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from actuators.marathon import MarathonClient, Transient
from actuators.marathon.model import AppState, Task
from actuators.marathon.watcher import ClusterWatcher
from tests.fakes.marathon import FakeMarathon
from tests.marathon.conftest import config, dead_url, until


class Running:
    """A watcher running in the background, stopped at the end of the test."""

    def __init__(self, watcher: ClusterWatcher) -> None:
        self.watcher = watcher
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(watcher.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 2)


@pytest.fixture
async def changes() -> list[str]:
    return []


@pytest.fixture
async def watcher(client: MarathonClient, changes: list[str]) -> AsyncIterator[ClusterWatcher]:
    w = ClusterWatcher(
        client, on_change=changes.append, backoff_initial=0.005, backoff_max=0.02, poll_interval=0.01
    )
    r = Running(w)
    yield w
    await r.close()
    assert w.state == "disconnected"


def view(w: ClusterWatcher, app_id: str) -> AppState:
    """The cached app, or a stand-in with no tasks and instances -1 while it is not loaded."""
    return w.app(app_id) or AppState(app_id, -1)


def same_tasks(w: ClusterWatcher, fake: FakeMarathon, app_id: str) -> bool:
    st = w.app(app_id)
    return st is not None and sorted(st.tasks) == sorted(fake.task_ids(app_id))


async def test_tasks_follow_scale_out_and_in(
    fake: FakeMarathon, client: MarathonClient, watcher: ClusterWatcher, changes: list[str]
) -> None:
    fake.add_app("/a", 1)
    original = fake.task_ids("/a")
    watcher.watch("/a")
    await until(lambda: watcher.state == "connected" and watcher.app("/a") is not None)
    await client.scale("/a", 3)
    await until(lambda: view(watcher, "/a").deployments == [] and view(watcher, "/a").running == 3)
    assert same_tasks(watcher, fake, "/a") and view(watcher, "/a").instances == 3
    assert "/a" in changes
    await client.scale("/a", 1)
    await until(lambda: not view(watcher, "/a").deployments and len(view(watcher, "/a").tasks) == 1)
    assert list(view(watcher, "/a").tasks) == original  # youngest killed first
    assert watcher.info()["events_applied"] > 0


async def test_health_events_make_tasks_ready(
    fake: FakeMarathon, client: MarathonClient, watcher: ClusterWatcher
) -> None:
    fake.add_app("/hc", 1, health_checks=True)
    fake.health_delay = 0.01
    watcher.watch("/hc")
    await until(lambda: watcher.state == "connected" and watcher.app("/hc") is not None)
    assert view(watcher, "/hc").ready == 1
    await client.scale("/hc", 2)
    await until(lambda: view(watcher, "/hc").running == 2)
    await until(lambda: view(watcher, "/hc").ready == 2)
    tid = fake.task_ids("/hc")[0]
    fake.set_task_health(tid, False)
    await until(lambda: view(watcher, "/hc").ready == 1)
    assert view(watcher, "/hc").tasks[tid].healthy is False


async def test_drop_reconnects_rereads_and_loses_nothing(fake: FakeMarathon, watcher: ClusterWatcher) -> None:
    fake.add_app("/a", 3)
    watcher.watch("/a")
    await until(lambda: watcher.state == "connected" and watcher.app("/a") is not None)
    victim = fake.task_ids("/a")[0]
    fake.drop_event_streams()
    assert fake.stream_count == 0
    fake.kill_task(victim, relaunch=False)  # emitted while nobody listens
    dep = fake.scale_now("/a", 2)  # ... and so is this deployment's start
    assert fake.stream_count == 0
    await until(lambda: watcher.reconnects == 1 and watcher.state == "connected")
    st = watcher.app("/a")
    assert st is not None and victim not in st.tasks
    assert st.instances == 2
    await until(lambda: dep not in view(watcher, "/a").deployments)
    assert same_tasks(watcher, fake, "/a")
    assert watcher.info()["reconnects"] == 1


async def test_watch_while_connected_reads_the_app(
    fake: FakeMarathon, watcher: ClusterWatcher, changes: list[str]
) -> None:
    fake.add_app("/late", 2)
    await until(lambda: watcher.state == "connected")
    watcher.watch("/late")
    await until(lambda: watcher.app("/late") is not None)
    assert view(watcher, "/late").running == 2
    assert changes == ["/late"]
    watcher.unwatch("/late")
    assert watcher.app("/late") is None and watcher.watched() == []


async def test_many_watched_apps_are_reread_with_one_list(fake: FakeMarathon, client: MarathonClient) -> None:
    for i in range(5):
        fake.add_app(f"/g/app{i}", i)
    w = ClusterWatcher(client, on_change=lambda _: None, list_threshold=3, backoff_initial=0.005)
    for i in range(5):
        w.watch(f"/g/app{i}")
    w.watch("/g/gone")
    r = Running(w)
    try:
        await until(lambda: w.state == "connected")
        assert [view(w, f"/g/app{i}").running for i in range(5)] == list(range(5))
        assert w.app("/g/gone") is None
        assert [r.path for r in fake.requests if r.method == "GET"] == ["/v2/events", "/v2/apps"]
    finally:
        await r.close()


async def test_standby_redirect_is_followed() -> None:
    leader = FakeMarathon(username="u", password="p", deploy_time=0.01)
    await leader.start()
    standby = FakeMarathon(username="u", password="p", standby=True, leader_url=leader.url)
    await standby.start()
    leader.add_app("/a", 1)
    client = MarathonClient(config(standby.url, leader.url, username="u", password="p"))
    w = ClusterWatcher(client, on_change=lambda _: None, backoff_initial=0.005)
    w.watch("/a")
    r = Running(w)
    try:
        await until(lambda: w.state == "connected")
        assert w.info()["leader"] == leader.url
        assert leader.stream_count == 1 and standby.stream_count == 0
        await client.scale("/a", 2)  # straight to the leader, which the redirect named
        await until(lambda: w.app("/a") is not None and view(w, "/a").running == 2)
    finally:
        await r.close()
        await client.close()
        await standby.stop()
        await leader.stop()


async def test_wait_deployment_returns_when_it_ends(fake: FakeMarathon, watcher: ClusterWatcher) -> None:
    fake.add_app("/a", 1)
    fake.set_deploy_time(None)
    watcher.watch("/a")
    await until(lambda: watcher.state == "connected")
    dep = fake.scale_now("/a", 2)
    waiting = asyncio.create_task(watcher.wait_deployment("/a", 5))
    await until(lambda: watcher.app("/a") is not None and view(watcher, "/a").deployments == [dep])
    assert watcher.deployment_started_at("/a") is not None
    reads = sum(r.path == "/v2/apps/a" for r in fake.requests)
    await until(lambda: sum(r.path == "/v2/apps/a" for r in fake.requests) >= reads + 1)
    assert not waiting.done()  # a periodic check has read the app again, still deploying: it waits
    fake.finish_deployments()
    await asyncio.wait_for(waiting, 1)
    assert view(watcher, "/a").deployments == []
    assert watcher.deployment_started_at("/a") is None


async def test_wait_deployment_times_out(fake: FakeMarathon, watcher: ClusterWatcher) -> None:
    fake.add_app("/a", 1)
    fake.set_deploy_time(None)
    watcher.watch("/a")
    fake.scale_now("/a", 2)
    with pytest.raises(TimeoutError, match="still running"):
        await watcher.wait_deployment("/a", 0.05)


async def test_wait_deployment_polls_while_disconnected(fake: FakeMarathon, client: MarathonClient) -> None:
    fake.add_app("/a", 1)
    fake.set_deploy_time(None)
    fake.scale_now("/a", 2)
    w = ClusterWatcher(client, on_change=lambda _: None, poll_interval=0.01)  # not running: no stream
    waiting = asyncio.create_task(w.wait_deployment("/a", 5))
    await until(lambda: sum(r.path == "/v2/apps/a" for r in fake.requests) >= 3)
    assert not waiting.done()
    fake.finish_deployments()
    await asyncio.wait_for(waiting, 1)


async def test_wait_deployment_of_a_missing_app_returns(fake: FakeMarathon, client: MarathonClient) -> None:
    w = ClusterWatcher(client, on_change=lambda _: None)
    assert await w.wait_deployment("/nope", 1) is None  # no TimeoutError: gone counts as done
    assert [(r.method, r.path) for r in fake.requests] == [("GET", "/v2/apps/nope")]  # one read, no wait


async def test_failing_cluster_logs_once_and_keeps_trying(caplog: pytest.LogCaptureFixture) -> None:
    client = MarathonClient(config(dead_url()))
    w = ClusterWatcher(client, on_change=lambda _: None, backoff_initial=0.001, backoff_max=0.002)
    caplog.set_level(logging.INFO, logger="actuators.marathon.watcher")
    opened = 0
    events = client.events

    def counting(*args: Any, **kw: Any) -> Any:
        nonlocal opened
        opened += 1
        return events(*args, **kw)

    client.events = counting  # type: ignore[method-assign]
    r = Running(w)
    try:
        await until(lambda: opened >= 4)  # it kept trying: three failures after the first
        assert w.state == "connecting" and w.reconnects == 0
        assert "cannot connect" in (w.info()["last_error"] or "")
        msgs = [rec.getMessage() for rec in caplog.records if rec.name == "actuators.marathon.watcher"]
        assert len(msgs) == 1 and "cannot open the event stream" in msgs[0]
    finally:
        await r.close()
        await client.close()


@pytest.mark.looptime
async def test_stop_interrupts_the_backoff() -> None:
    """On the loop's fake clock (looptime): the backoff would take 15-30 s of it."""
    loop = asyncio.get_running_loop()
    client = MarathonClient(config(dead_url()))
    w = ClusterWatcher(client, on_change=lambda _: None, backoff_initial=30, backoff_max=30)
    r = Running(w)
    try:
        await until(lambda: w.info()["last_error"] is not None)
        failed_at = loop.time()
    finally:
        await r.close()
        await client.close()
    assert r.task.done() and not r.task.cancelled()  # it ended by itself, not cut by close's 2 s
    assert w.state == "disconnected"
    assert loop.time() - failed_at < 15  # the stop did not wait out the backoff


# ---- applying events to the cache (no server) ---------------------------------------------------
class _StubClient:
    """Just enough of MarathonClient for a watcher whose stream is fed by hand."""

    def __init__(self) -> None:
        self.reply: asyncio.Future[AppState] | None = None
        self.cfg = config("http://127.0.0.1:1")
        self.active_url = "http://127.0.0.1:1"
        self.leader = None

    async def get_app(self, app_id: str) -> AppState:
        assert self.reply is not None
        return await self.reply

    def url_state(self) -> list[dict[str, Any]]:
        return []


def _app() -> AppState:
    return AppState(
        "/a",
        2,
        tasks={
            "a.instance-1.1": Task("a.instance-1.1", "/a", "h1", [31000], healthy=True),
            "a.instance-2.1": Task("a.instance-2.1", "/a", "h2", [31001], state="TASK_STAGING"),
        },
        deployments=["d1"],
        has_health_checks=True,
    )


def _status(tid: str, status: str, app: str = "/a") -> dict[str, Any]:
    return {
        "appId": app,
        "taskId": tid,
        "taskStatus": status,
        "host": "h9",
        "ports": [31009],
        "ipAddresses": [{"ipAddress": "10.0.0.9", "protocol": "IPv4"}],
    }


@pytest.mark.parametrize(
    ("event", "data", "check", "changed"),
    [
        pytest.param(
            "status_update_event",
            _status("a.instance-3.1", "TASK_STAGING"),
            lambda s: (
                s.tasks["a.instance-3.1"].state == "TASK_STAGING"
                and s.tasks["a.instance-3.1"].ports == [31009]
                and s.tasks["a.instance-3.1"].ip_addresses == ["10.0.0.9"]
            ),
            True,
            id="new task added",
        ),
        pytest.param(
            "status_update_event",
            _status("a.instance-2.1", "TASK_RUNNING"),
            lambda s: s.running == 2 and s.ready == 1,
            True,
            id="staging task runs, not yet healthy",
        ),
        pytest.param(
            "status_update_event",
            _status("a.instance-1.1", "TASK_KILLED"),
            lambda s: "a.instance-1.1" not in s.tasks,
            True,
            id="terminal state removes",
        ),
        pytest.param(
            "status_update_event",
            _status("a.instance-1.1", "TASK_KILLING"),
            lambda s: s.tasks["a.instance-1.1"].state == "TASK_KILLING" and s.ready == 0,
            True,
            id="killing is not serving",
        ),
        pytest.param(
            "status_update_event",
            _status("a.instance-1.1", "TASK_RUNNING"),
            lambda s: s.running == 1,
            False,
            id="same state: no change",
        ),
        pytest.param(
            "status_update_event",
            _status("x.instance-1.1", "TASK_RUNNING", app="/other"),
            lambda s: len(s.tasks) == 2,
            False,
            id="unwatched app ignored",
        ),
        pytest.param(
            "status_update_event",
            {"appId": "/a", "taskStatus": "TASK_RUNNING"},
            lambda s: len(s.tasks) == 2,
            False,
            id="no task id ignored",
        ),
        pytest.param(
            "health_status_changed_event",
            {"appId": "/a", "instanceId": "a.instance-1", "alive": False},
            lambda s: s.tasks["a.instance-1.1"].healthy is False,
            True,
            id="health check failed",
        ),
        pytest.param(
            "instance_health_changed_event",
            {"runSpecId": "/a", "instanceId": "a.instance-2", "healthy": True},
            lambda s: s.tasks["a.instance-2.1"].healthy is True,
            True,
            id="instance healthy",
        ),
        pytest.param(
            "health_status_changed_event",
            {"appId": "/a", "instanceId": "a.instance-1", "alive": "yes"},
            lambda s: s.tasks["a.instance-1.1"].healthy is True,
            False,
            id="non-bool health ignored",
        ),
        pytest.param(
            "health_status_changed_event",
            {"appId": "/a", "instanceId": "a.instance-9", "alive": False},
            lambda s: s.ready == 1,
            False,
            id="unknown instance ignored",
        ),
        pytest.param(
            "deployment_info",
            {"plan": {"id": "d2", "steps": [{"actions": [{"action": "ScaleApplication", "app": "/a"}]}]}},
            lambda s: s.deployments == ["d1", "d2"],
            True,
            id="deployment_info adds",
        ),
        pytest.param(
            "deployment_info",
            {"plan": {"id": "d3", "steps": [{"action": "ScaleApplication", "app": "/a"}]}},
            lambda s: s.deployments == ["d1", "d3"],
            True,
            id="deployment_info, old step format",
        ),
        pytest.param(
            "deployment_info",
            {"plan": {"id": "d1", "affectedApps": ["/a"]}},
            lambda s: s.deployments == ["d1"],
            False,
            id="known deployment: no change",
        ),
        pytest.param(
            "deployment_success", {"id": "d1"}, lambda s: s.deployments == [], True, id="success removes"
        ),
        pytest.param(
            "deployment_failed",
            {"id": "d1", "plan": {"id": "d1"}},
            lambda s: s.deployments == [],
            True,
            id="failed removes",
        ),
        pytest.param(
            "deployment_success",
            {"id": "zz"},
            lambda s: s.deployments == ["d1"],
            False,
            id="other deployment: no change",
        ),
        pytest.param(
            "api_post_event",
            {"appDefinition": {"id": "/a", "instances": 7}},
            lambda s: s.instances == 7,
            True,
            id="api post sets instances",
        ),
        pytest.param(
            "api_post_event",
            {"appDefinition": "garbage"},
            lambda s: s.instances == 2,
            False,
            id="garbage api post ignored",
        ),
        pytest.param(
            "event_stream_attached",
            {"remoteAddress": "x"},
            lambda s: s.instances == 2,
            False,
            id="other events ignored",
        ),
    ],
)
def test_apply_event(event: str, data: dict[str, Any], check: Any, changed: bool) -> None:
    seen: list[str] = []
    w = ClusterWatcher(cast(MarathonClient, _StubClient()), on_change=seen.append)
    w.watch("/a")
    w._store("/a", _app())
    seen.clear()
    w._apply(event, data)
    st = w.app("/a")
    assert st is not None and check(st)
    assert seen == (["/a"] if changed else [])


def test_app_terminated_clears_the_app() -> None:
    seen: list[str] = []
    w = ClusterWatcher(cast(MarathonClient, _StubClient()), on_change=seen.append)
    w.watch("/a")
    w._store("/a", _app())
    w._apply("app_terminated_event", {"appId": "/a"})
    assert w.app("/a") is None and seen == ["/a", "/a"]


def test_a_failing_on_change_does_not_break_the_watcher(caplog: pytest.LogCaptureFixture) -> None:
    def boom(app_id: str) -> None:
        raise RuntimeError("engine bug")

    w = ClusterWatcher(cast(MarathonClient, _StubClient()), on_change=boom)
    w.watch("/a")
    w._store("/a", _app())
    w._apply("deployment_success", {"id": "d1"})
    assert view(w, "/a").deployments == []
    assert "on_change(/a) failed" in caplog.text


async def test_events_during_a_refresh_are_applied_on_top_of_the_snapshot() -> None:
    stub = _StubClient()
    w = ClusterWatcher(cast(MarathonClient, stub), on_change=lambda _: None)
    w.watch("/a")
    stub.reply = asyncio.get_running_loop().create_future()
    refreshing = asyncio.create_task(w.refresh("/a"))
    await asyncio.sleep(0)
    # While the GET is in flight: a task dies and the deployment ends (the cache is still empty).
    w._apply("status_update_event", _status("a.instance-1.1", "TASK_FAILED"))
    w._apply("deployment_success", {"id": "d1"})
    w._apply("status_update_event", _status("b.instance-1.1", "TASK_FAILED", app="/b"))
    stub.reply.set_result(_app())  # ... and the snapshot was taken before both
    await refreshing
    st = w.app("/a")
    assert st is not None and sorted(st.tasks) == ["a.instance-2.1"] and st.deployments == []
    assert w._recording == {}


async def test_refresh_failure_leaves_the_cache(client: MarathonClient, fake: FakeMarathon) -> None:
    fake.add_app("/a", 1)
    w = ClusterWatcher(client, on_change=lambda _: None)
    w.watch("/a")
    await w.refresh("/a")
    fake.fail_next(1, 500, "/v2/apps/a")
    with pytest.raises(Transient):
        await w.refresh("/a")
    assert w.app("/a") is not None and w._recording == {}


async def test_failed_reread_closes_the_stream_and_retries(
    fake: FakeMarathon, client: MarathonClient
) -> None:
    fake.add_app("/a", 2)
    fake.fail_next(1, 500, "/v2/apps/a")  # the re-read after the first connect fails
    w = ClusterWatcher(client, on_change=lambda _: None, backoff_initial=0.005, backoff_max=0.01)
    w.watch("/a")
    r = Running(w)
    try:
        await until(lambda: w.state == "connected")
        assert [q.path for q in fake.requests] == ["/v2/events", "/v2/apps/a", "/v2/events", "/v2/apps/a"]
        assert view(w, "/a").running == 2 and w.reconnects == 0
        await until(lambda: fake.stream_count == 1)  # the first stream is closed
        assert "500" in (w.info()["last_error"] or "")
    finally:
        await r.close()


@pytest.mark.parametrize(
    ("checks", "marathon_says", "healthy"),
    [
        pytest.param(1, None, True, id="one check: its alive event is the task's health"),
        pytest.param(2, False, False, id="two checks: one alive, Marathon still reports a failing one"),
        pytest.param(2, True, True, id="two checks: Marathon reports both alive"),
    ],
)
async def test_an_alive_event_of_one_check_among_several_is_checked_with_marathon(
    checks: int, marathon_says: bool | None, healthy: bool
) -> None:
    """health_status_changed_event names no check: with several, one alive check must not make a task
    that fails another one healthy (it would join the balancers while its HTTP check still fails)."""
    stub = _StubClient()
    w = ClusterWatcher(cast(MarathonClient, stub), on_change=lambda app_id: None)
    w.watch("/a")
    st = _app()
    st.health_checks, st.tasks["a.instance-1.1"].healthy = checks, False
    w._store("/a", st)
    fresh = _app()
    fresh.health_checks, fresh.tasks["a.instance-1.1"].healthy = checks, marathon_says
    stub.reply = asyncio.get_running_loop().create_future()
    stub.reply.set_result(fresh)
    w._apply("health_status_changed_event", {"appId": "/a", "instanceId": "a.instance-1", "alive": True})
    if checks > 1:
        assert view(w, "/a").tasks["a.instance-1.1"].healthy is False  # not from the event alone
        assert w._background, "the watcher asks Marathon for the results per check"
        await asyncio.gather(*w._background)
    assert view(w, "/a").tasks["a.instance-1.1"].healthy is healthy


def test_the_app_model_counts_health_checks() -> None:
    app = {"id": "/a", "instances": 1, "healthChecks": [{"protocol": "HTTP"}, {"protocol": "TCP"}]}
    assert AppState.from_marathon(app).health_checks == 2
    assert AppState.from_marathon({"id": "/a"}).health_checks == 0
