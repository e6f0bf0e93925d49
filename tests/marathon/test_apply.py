"""set_instances: retries, 409 waits, force, idempotency; on a fake clock against the fake Marathon."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from actuators.marathon import (
    AppNotFound,
    Attempt,
    AttemptLog,
    Locked,
    MarathonClient,
    Permanent,
    Transient,
    set_instances,
)
from actuators.marathon.apply import landing_evidence, poll_deployments
from actuators.marathon.model import AppState, parse_time
from tests.fakes.marathon import FakeMarathon
from tests.marathon.conftest import FakeClock, config, free_port


def _puts(fake: FakeMarathon) -> list[tuple[int, str]]:
    return [(r.status, r.query.get("force", [""])[0]) for r in fake.requests if r.method == "PUT"]


async def test_503_twice_then_one_applied_put(
    fake: FakeMarathon, client: MarathonClient, clock: FakeClock
) -> None:
    fake.add_app("/a", 1)
    fake.fail_next(2, 503, "/v2/apps/a")
    result = await set_instances(
        client,
        "/a",
        3,
        force=False,
        wait_deployment=None,
        deadline=clock() + 30,
        sleep=clock.sleep,
        clock=clock,
    )
    assert [s for s, _ in _puts(fake)] == [503, 200]
    # after the failed PUT: sleep, re-read (also 503, retried), then PUT
    assert len(clock.sleeps) == 2 and clock.sleeps[1] > clock.sleeps[0] * 0.99
    assert [(app, n, force) for _, app, n, force in fake.scale_requests] == [("/a", 3, False)]
    assert result.deployment_id is not None and not result.already_applied


async def test_lost_reply_is_applied_once(
    fake: FakeMarathon, client: MarathonClient, clock: FakeClock
) -> None:
    """The PUT lands but its reply is lost: neither aiohttp (which would resend an idempotent request
    on a dropped connection) nor the loop sends it again; the loop re-reads the app instead."""
    fake.add_app("/a", 1)
    fake.set_deploy_time(0)
    fake.lose_reply_next(1, "/v2/apps/a")
    result = await set_instances(
        client,
        "/a",
        4,
        force=False,
        wait_deployment=None,
        deadline=clock() + 30,
        sleep=clock.sleep,
        clock=clock,
    )
    assert result.already_applied and result.landed == "lastScalingAt"
    assert len(fake.scale_requests) == 1
    assert [(r.method, r.path, r.status) for r in fake.requests] == [
        ("PUT", "/v2/apps/a", -1),
        ("GET", "/v2/deployments", 200),
        ("GET", "/v2/apps/a", 200),
    ]
    assert fake.apps["/a"].instances == 4


async def test_all_urls_down_until_deadline_then_back(clock: FakeClock) -> None:
    ports = [free_port(), free_port()]
    client = MarathonClient(config(*(f"http://127.0.0.1:{p}" for p in ports)))
    try:
        with pytest.raises(Transient, match="no URL answered"):
            await set_instances(
                client,
                "/a",
                2,
                force=False,
                wait_deployment=None,
                deadline=clock() + 20,
                sleep=clock.sleep,
                clock=clock,
            )
        assert clock.now == pytest.approx(1020.0)  # the last sleep ends exactly at the deadline
        assert sum(clock.sleeps) == pytest.approx(20.0)
        assert all(0 < s <= 10 for s in clock.sleeps)

        # The second master comes back while the next call is retrying.
        fake = FakeMarathon(deploy_time=0)
        fake.add_app("/a", 1)
        clock.sleeps.clear()

        async def revive(n: int) -> None:
            if n == 2:
                await fake.start(port=ports[1])

        clock.on_sleep = revive
        try:
            result = await set_instances(
                client,
                "/a",
                2,
                force=False,
                wait_deployment=None,
                deadline=clock() + 60,
                sleep=clock.sleep,
                clock=clock,
            )
            assert result.url.startswith(fake.url)
            assert len(fake.scale_requests) == 1
            assert client.active_url == fake.url
        finally:
            await fake.stop()
    finally:
        await client.close()


async def test_locked_waits_for_the_deployment_then_applies_once(
    fake: FakeMarathon, client: MarathonClient, clock: FakeClock
) -> None:
    fake.add_app("/a", 1)
    fake.set_deploy_time(None)
    blocking = fake.scale_now("/a", 2)
    waits: list[tuple[str, float]] = []

    async def wait_deployment(app_id: str, timeout: float) -> None:
        waits.append((app_id, timeout))
        assert fake.apps["/a"].deployment == blocking
        fake.finish_deployments()
        while fake.apps["/a"].deployment is not None:
            await asyncio.sleep(0)

    result = await set_instances(
        client,
        "/a",
        5,
        force=False,
        wait_deployment=wait_deployment,
        deadline=clock() + 30,
        sleep=clock.sleep,
        clock=clock,
    )
    assert waits == [("/a", 30.0)]
    assert _puts(fake) == [(409, "false"), (200, "false")]
    assert [(app, n, force) for _, app, n, force in fake.scale_requests] == [("/a", 5, False)]
    assert result.deployment_id == fake.apps["/a"].deployment
    assert clock.sleeps == []


async def test_locked_without_a_watcher_polls_deployments(
    fake: FakeMarathon, client: MarathonClient, clock: FakeClock
) -> None:
    fake.add_app("/a", 1)
    fake.set_deploy_time(None)
    fake.scale_now("/a", 2)
    clock.on_sleep = lambda n: fake.finish_deployments() if n == 3 else None
    await set_instances(
        client,
        "/a",
        5,
        force=False,
        wait_deployment=None,
        deadline=clock() + 30,
        sleep=clock.sleep,
        clock=clock,
    )
    assert [r.path for r in fake.requests].count("/v2/deployments") >= 3
    assert [s for s, _ in _puts(fake)] == [409, 200]
    assert len(fake.scale_requests) == 1


async def test_force_puts_once_with_force_true(
    fake: FakeMarathon, client: MarathonClient, clock: FakeClock
) -> None:
    fake.add_app("/a", 1)
    fake.set_deploy_time(None)
    blocking = fake.scale_now("/a", 2)

    async def never(app_id: str, timeout: float) -> None:
        raise AssertionError("force does not wait")

    result = await set_instances(
        client,
        "/a",
        5,
        force=True,
        wait_deployment=never,
        deadline=clock() + 30,
        sleep=clock.sleep,
        clock=clock,
    )
    assert _puts(fake) == [(409, "false"), (200, "true")]
    assert [(n, force) for _, _, n, force in fake.scale_requests] == [(5, True)]
    assert ("deployment_failed", blocking) in [(e, d.get("id")) for e, d in fake.events_sent]
    assert result.deployment_id == fake.apps["/a"].deployment != blocking


async def test_locked_past_the_deadline_raises_locked(
    fake: FakeMarathon, client: MarathonClient, clock: FakeClock
) -> None:
    fake.add_app("/a", 1)
    fake.set_deploy_time(None)
    fake.scale_now("/a", 2)

    async def too_slow(app_id: str, timeout: float) -> None:
        clock.now += timeout
        raise TimeoutError

    with pytest.raises(Locked, match="still locked at the deadline"):
        await set_instances(
            client,
            "/a",
            5,
            force=False,
            wait_deployment=too_slow,
            deadline=clock() + 30,
            sleep=clock.sleep,
            clock=clock,
        )
    assert fake.scale_requests == []


async def test_a_wait_that_returns_early_does_not_spin(
    fake: FakeMarathon, client: MarathonClient, clock: FakeClock
) -> None:
    fake.add_app("/a", 1)
    fake.set_deploy_time(None)
    fake.scale_now("/a", 2)

    async def useless(app_id: str, timeout: float) -> None:
        return None

    with pytest.raises(Locked):
        await set_instances(
            client,
            "/a",
            5,
            force=False,
            wait_deployment=useless,
            deadline=clock() + 5,
            sleep=clock.sleep,
            clock=clock,
        )
    puts = len(_puts(fake))
    assert 2 <= puts <= 12  # backoff between the tries, not hundreds of PUTs
    assert clock.now >= 1005


@pytest.mark.parametrize(
    ("setup", "error", "status"),
    [
        pytest.param("missing", Permanent, 422, id="missing app: 422"),
        pytest.param("auth", Permanent, 401, id="wrong credentials: 401"),
    ],
)
async def test_permanent_errors_raise_at_once(
    setup: str, error: type[Exception], status: int, clock: FakeClock
) -> None:
    fake = FakeMarathon(token="t" if setup == "auth" else None)
    await fake.start()
    fake.add_app("/a", 1)
    client = MarathonClient(config(fake.url, token="wrong") if setup == "auth" else config(fake.url))
    try:
        with pytest.raises(error) as e:
            await set_instances(
                client,
                "/ghost" if setup == "missing" else "/a",
                2,
                force=False,
                wait_deployment=None,
                deadline=clock() + 30,
                sleep=clock.sleep,
                clock=clock,
            )
        assert isinstance(e.value, Permanent) and e.value.status == status
        assert len(fake.requests) == 1 and clock.sleeps == []
    finally:
        await client.close()
        await fake.stop()


async def test_app_deleted_between_retries_is_app_not_found(
    fake: FakeMarathon, client: MarathonClient, clock: FakeClock
) -> None:
    fake.add_app("/a", 1)
    fake.fail_next(1, 503, "/v2/apps/a")
    clock.on_sleep = lambda n: fake.apps.pop("/a")
    with pytest.raises(AppNotFound):
        await set_instances(
            client,
            "/a",
            2,
            force=False,
            wait_deployment=None,
            deadline=clock() + 30,
            sleep=clock.sleep,
            clock=clock,
        )


async def test_poll_deployments_times_out(
    fake: FakeMarathon, client: MarathonClient, clock: FakeClock
) -> None:
    fake.add_app("/a", 1)
    fake.set_deploy_time(None)
    fake.scale_now("/a", 2)
    with pytest.raises(TimeoutError):
        await poll_deployments(client, "/a", 3.0, interval=1.0, sleep=clock.sleep, clock=clock)
    assert clock.sleeps == [1.0, 1.0, 1.0]


# ---- one write per decision: attempts recorded before the PUT, settled before any other --------------

T = 1_800_000_000.0  # the daemon's wall clock at the first PUT


def _app(instances: int = 2, scaled: float | None = T - 3600, deployments: tuple[str, ...] = ()) -> AppState:
    return AppState("/a", instances, deployments=list(deployments), last_scaling_at=scaled)


def _dep(dep_id: str, version: float) -> dict[str, object]:
    iso = datetime.fromtimestamp(version, UTC).isoformat().replace("+00:00", "Z")
    return {"id": dep_id, "version": iso, "affectedApps": ["/a"]}


def _tried(baseline: float | None = T - 3600, to: int = 3) -> list[Attempt]:
    return [Attempt(1, to, T, T + 5, baseline)]


@pytest.mark.parametrize(
    ("app", "deployments", "attempts", "evidence"),
    [
        pytest.param(_app(), [], _tried(), None, id="nothing changed since long before"),
        pytest.param(_app(scaled=T + 0.2), [], _tried(), "lastScalingAt", id="scaled after the send"),
        pytest.param(_app(scaled=T - 1.5), [], _tried(), "lastScalingAt", id="within the clock skew"),
        pytest.param(_app(scaled=T - 2.5), [], _tried(), None, id="before the skew allowance"),
        pytest.param(
            _app(scaled=T - 0.5), [], _tried(baseline=T - 0.5), None, id="the scaling known before the send"
        ),
        pytest.param(
            _app(scaled=T - 0.5), [], _tried(baseline=None), "lastScalingAt", id="no baseline: skew only"
        ),
        pytest.param(
            _app(deployments=("d1",)), [_dep("d1", T + 0.1)], _tried(), "deployment", id="new deployment"
        ),
        pytest.param(
            _app(deployments=("d0",)), [_dep("d0", T - 60)], _tried(), None, id="older foreign deployment"
        ),
        pytest.param(
            _app(deployments=("d2",)), [], _tried(), "deployment", id="deployment started after the read"
        ),
        pytest.param(_app(instances=3), [], _tried(), "instances", id="the app has the count"),
        pytest.param(
            _app(scaled=None),
            [_dep("x", T + 1) | {"affectedApps": ["/b"]}],
            _tried(),
            None,
            id="another app's deployment",
        ),
    ],
)
def test_landing_evidence(
    app: AppState, deployments: list[dict[str, object]], attempts: list[Attempt], evidence: str | None
) -> None:
    assert landing_evidence(app, deployments, attempts, skew=2.0) == evidence


def _known(fake: FakeMarathon, app_id: str = "/a") -> float | None:
    """The app's lastScalingAt as the daemon knows it before it sends (the watcher's copy)."""
    return parse_time(fake.apps[app_id].to_json()["versionInfo"]["lastScalingAt"])


async def test_every_put_is_recorded_before_it_is_sent(fake: FakeMarathon) -> None:
    # a timeout far beyond the fake's instant 503: at the fixture's 1 s a loaded CI host once had the
    # first PUT time out, the retry's GET take the 503 and find the PUT landed (attempt 1 "applied")
    client = MarathonClient(config(fake.url, timeout=5.0))
    fake.add_app("/a", 1)
    fake.fail_next(1, 503, "/v2/apps/a")
    seen: list[tuple[int, str, int]] = []

    async def record(a: Attempt) -> None:
        seen.append((a.n, a.status, len(fake.scale_requests) + len(fake.requests)))

    log = AttemptLog(record=record, decision=7)
    try:
        await set_instances(
            client, "/a", 3, force=False, wait_deployment=None, deadline=time.monotonic() + 10, log=log
        )
    finally:
        await client.close()
    # attempt 1 recorded before any request, failed for sure (503: not taken), attempt 2 applied
    assert [(n, st) for n, st, _ in seen] == [(1, "pending"), (1, "failed"), (2, "pending"), (2, "applied")]
    assert seen[0][2] == 0
    heads = [
        (r.headers["X-Oceand-Decision"], r.headers["X-Oceand-Attempt"])
        for r in fake.requests
        if r.method == "PUT"
    ]
    assert heads == [("7", "1"), ("7", "2")]


async def test_a_put_that_times_out_and_lands_late_is_not_sent_again(fake: FakeMarathon) -> None:
    """Marathon takes the PUT 1 s after it arrives; the client gives up at 0.5 s. The retry waits for
    the write to show in lastScalingAt instead of sending it again."""
    fake.add_app("/a", 1)
    fake.set_put_delay(1.0)
    client = MarathonClient(config(fake.url, timeout=0.5))
    try:
        log = AttemptLog()
        result = await set_instances(
            client, "/a", 3, force=False, wait_deployment=None, deadline=time.monotonic() + 10,
            log=log, grace=2.0, poll=0.05, baseline=_known(fake),
        )  # fmt: skip
    finally:
        await client.close()
    assert result.already_applied and result.landed in ("lastScalingAt", "deployment")
    assert len(fake.scale_requests) == 1
    assert [(a.n, a.status) for a in log.attempts] == [(1, "applied")]


async def test_a_put_that_never_lands_is_sent_again_once_its_window_passed(fake: FakeMarathon) -> None:
    """A 500 (Marathon may or may not have taken it) and no sign of the write: the second PUT goes out
    only after the first one's reply + grace, and the first attempt is recorded as abandoned."""
    fake.add_app("/a", 1)
    fake.fail_next(1, 500, "/v2/apps/a")  # the PUT, not taken
    client = MarathonClient(config(fake.url, timeout=0.3))
    try:
        log = AttemptLog()
        result = await set_instances(
            client, "/a", 3, force=False, wait_deployment=None, deadline=time.monotonic() + 10,
            log=log, grace=0.5, poll=0.05, baseline=_known(fake),
        )  # fmt: skip
    finally:
        await client.close()
    assert not result.already_applied
    first, second = log.attempts
    assert (first.status, second.status) == ("abandoned", "applied")
    assert second.sent_at >= first.deadline + 0.5
    assert len(fake.scale_requests) == 1


async def test_settling_past_the_apply_deadline_leaves_the_attempt_pending(fake: FakeMarathon) -> None:
    fake.add_app("/a", 1)
    client = MarathonClient(config(fake.url))
    try:
        now = time.time()
        log = AttemptLog([Attempt(1, 3, now, now + 5, _known(fake))])
        with pytest.raises(Transient, match="not known before the apply deadline") as e:
            await set_instances(
                client, "/a", 3 - 1, force=False, wait_deployment=None, deadline=time.monotonic() + 0.2,
                log=log, poll=0.05,
            )  # fmt: skip
        assert e.value.maybe_applied
    finally:
        await client.close()
    assert [a.status for a in log.attempts] == ["pending"] and fake.scale_requests == []


@pytest.mark.parametrize(
    ("record_delay", "sent"),
    [
        pytest.param(0.3, True, id="a slow record shortens the PUT's timeout to what is left"),
        pytest.param(0.6, False, id="a record slower than the window: not sent, abandoned"),
    ],
)
async def test_a_put_is_never_in_flight_past_its_attempts_deadline(
    fake: FakeMarathon, record_delay: float, sent: bool
) -> None:
    """The attempt's deadline (sent_at + timeout, taken before its record) is when the client has given
    up on the PUT, and where a new owner's quiet period starts (HA.md §6.6-6.7). A slow record (the
    cluster's fenced intent insert) must not push the PUT past it: the PUT's budget is the deadline less
    now less a margin, and no time left means it is not sent at all."""
    fake.add_app("/a", 1)
    fake.set_put_delay(2.0)  # Marathon holds every PUT longer than the client waits
    client = MarathonClient(config(fake.url, timeout=0.5))
    deadlines: list[float] = []
    ended: list[float] = []

    async def slow_record(a: Attempt) -> None:
        if a.status == "pending":
            deadlines.append(a.deadline)
            await asyncio.sleep(record_delay)

    real = client.scale

    async def timed(*args: Any, **kw: Any) -> Any:
        try:
            return await real(*args, **kw)
        finally:
            ended.append(time.time())

    client.scale = timed  # type: ignore[method-assign]
    log = AttemptLog(record=slow_record)
    try:
        with pytest.raises(Transient):
            await set_instances(
                client, "/a", 3, force=False, wait_deployment=None, deadline=time.monotonic() + 0.2,
                log=log, grace=0.1, poll=0.05, baseline=_known(fake),
            )  # fmt: skip
    finally:
        await client.close()
    first = log.attempts[0]
    if sent:
        assert ended and ended[0] <= deadlines[0], ended[0] - deadlines[0]  # not in flight past it
        assert "no reply within 0.1" in str(first.detail) or first.status == "pending", first
        assert [r.method for r in fake.requests if r.path == "/v2/apps/a" and r.method == "PUT"][:1] == [
            "PUT"
        ]
    else:
        assert ended == [] and [r for r in fake.requests if r.method == "PUT"] == []
        assert (first.status, first.detail["error"]) == (
            "abandoned",
            "not sent: no time left before its deadline",
        )
