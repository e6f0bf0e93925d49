"""MarathonClient against the fake Marathon on 127.0.0.1: reads, scale, errors, auth, URL rotation."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import ssl
import subprocess
from typing import Any

import pytest

from actuators.marathon import (
    STREAM_OPENED,
    AppNotFound,
    ClusterConfig,
    Locked,
    MarathonClient,
    Permanent,
    Transient,
)
from tests.fakes.marathon import LOCKED_MESSAGE, FakeMarathon
from tests.marathon.conftest import config, dead_url


async def test_get_app_reads_tasks_and_deployments(fake: FakeMarathon, client: MarathonClient) -> None:
    fake.add_app("/prod/web", 3, health_checks=True)
    app = await client.get_app("/prod/web")
    assert (app.id, app.instances, app.running, app.ready, app.deployments) == ("/prod/web", 3, 3, 3, [])
    assert sorted(app.tasks) == sorted(fake.task_ids("/prod/web"))
    assert app.has_health_checks
    dep = fake.scale_now("/prod/web", 4)
    assert (await client.get_app("/prod/web")).deployments == [dep]


async def test_get_missing_app_is_app_not_found(client: MarathonClient) -> None:
    with pytest.raises(AppNotFound) as e:
        await client.get_app("/nope")
    assert (e.value.status, e.value.message) == (404, "App '/nope' does not exist")


async def test_scale_sends_exactly_the_absolute_count(fake: FakeMarathon, client: MarathonClient) -> None:
    fake.add_app("/prod/web", 2)
    result = await client.scale("/prod/web", 6)
    put = [r for r in fake.requests if r.method == "PUT"]
    assert len(put) == 1
    assert json.loads(put[0].body) == {"instances": 6}
    assert put[0].raw_path == "/v2/apps/prod/web"
    assert put[0].query == {"force": ["false"]}
    assert result.deployment_id is not None and result.deployment_id in fake.deployments
    assert result.url == fake.url + "/v2/apps/prod/web"
    assert fake.apps["/prod/web"].instances == 6


async def test_scale_missing_app_is_422_and_creates_nothing(
    fake: FakeMarathon, client: MarathonClient
) -> None:
    with pytest.raises(Permanent) as e:
        await client.scale("/ghost", 2)
    assert (e.value.status, e.value.message) == (422, "Object is not valid")
    assert e.value.details and "cmd" in e.value.details[0]["errors"][0]
    assert "/ghost" not in fake.apps


async def test_scale_locked_app_is_locked_with_deployment_ids(
    fake: FakeMarathon, client: MarathonClient
) -> None:
    fake.add_app("/a", 1)
    fake.set_deploy_time(None)
    dep = fake.scale_now("/a", 2)
    with pytest.raises(Locked) as e:
        await client.scale("/a", 3)
    assert e.value.deployments == [dep]
    assert LOCKED_MESSAGE in str(e.value)
    assert isinstance(e.value, Transient)


async def test_force_cancels_the_running_deployment(fake: FakeMarathon, client: MarathonClient) -> None:
    fake.add_app("/a", 1)
    fake.set_deploy_time(None)
    old = fake.scale_now("/a", 2)
    result = await client.scale("/a", 3, force=True)
    assert fake.apps["/a"].deployment == result.deployment_id != old
    assert ("deployment_failed", old) in [(e, d.get("id")) for e, d in fake.events_sent]


@pytest.mark.parametrize(
    "app_id",
    [
        pytest.param("prod/web", id="relative"),
        pytest.param("/Prod/web", id="upper case"),
        pytest.param("/prod/-web", id="segment starts with dash"),
        pytest.param("/prod//web", id="empty segment"),
        pytest.param("/prod/web/", id="trailing slash"),
        pytest.param("/prod%2Fweb", id="percent"),
        pytest.param("/a b", id="space"),
        pytest.param("", id="empty"),
    ],
)
async def test_bad_app_ids_are_refused_before_sending(
    fake: FakeMarathon, client: MarathonClient, app_id: str
) -> None:
    with pytest.raises(Permanent) as e:
        await client.get_app(app_id)
    assert e.value.status == 0 and "invalid Marathon app id" in e.value.message
    with pytest.raises(Permanent):
        await client.scale(app_id, 1)
    assert fake.requests == []


@pytest.mark.parametrize(
    "instances",
    [pytest.param(-1, id="negative"), pytest.param(True, id="bool"), pytest.param(1.5, id="float")],
)
async def test_bad_instance_counts_are_refused(
    fake: FakeMarathon, client: MarathonClient, instances: Any
) -> None:
    fake.add_app("/a", 1)
    with pytest.raises(Permanent, match="instances must be an integer"):
        await client.scale("/a", instances)
    assert fake.requests == []


async def test_app_ids_keep_their_slashes(fake: FakeMarathon, client: MarathonClient) -> None:
    fake.add_app("/ocean/monitor-job.v2/web", 1)
    await client.get_app("/ocean/monitor-job.v2/web")
    await client.scale("/ocean/monitor-job.v2/web", 2)
    assert [r.raw_path for r in fake.requests] == ["/v2/apps/ocean/monitor-job.v2/web"] * 2
    assert not any("%2f" in r.raw_path.lower() for r in fake.requests)


# ---- auth --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("server", "creds", "ok"),
    [
        pytest.param(
            {"username": "ocean", "password": "secret"},
            {"username": "ocean", "password": "secret"},
            True,
            id="basic ok",
        ),
        pytest.param(
            {"username": "ocean", "password": "secret"},
            {"username": "ocean", "password": "wrong"},
            False,
            id="basic wrong password",
        ),
        pytest.param({"username": "ocean", "password": "secret"}, {}, False, id="basic missing"),
        pytest.param({"token": "t0k"}, {"token": "t0k"}, True, id="token ok"),
        pytest.param({"token": "t0k"}, {"token": "nope"}, False, id="token wrong"),
        pytest.param(
            {"token": "t0k"}, {"username": "ocean", "password": "secret"}, False, id="basic to a token server"
        ),
    ],
)
async def test_auth(server: dict[str, str], creds: dict[str, str], ok: bool) -> None:
    fake = FakeMarathon(**server)  # type: ignore[arg-type]
    await fake.start()
    fake.add_app("/a", 1)
    client = MarathonClient(config(fake.url, **creds))
    try:
        if ok:
            assert (await client.get_app("/a")).instances == 1
            assert (await client.scale("/a", 2)).deployment_id
        else:
            with pytest.raises(Permanent) as e:
                await client.get_app("/a")
            assert e.value.status == 401
            assert fake.requests[-1].status == 401
            if "token" in server:
                assert e.value.message == "Invalid username or password."
        sent = fake.requests[0].headers.get("Authorization", "")
        assert sent.startswith("token=") if "token" in creds else True
    finally:
        await client.close()
        await fake.stop()


async def test_basic_auth_401_carries_www_authenticate() -> None:
    fake = FakeMarathon(username="u", password="p")
    await fake.start()
    client = MarathonClient(config(fake.url))
    try:
        with pytest.raises(Permanent):
            await client.deployments()
        assert fake.requests[0].status == 401
    finally:
        await client.close()
        await fake.stop()


# ---- URL rotation ------------------------------------------------------------------------------
async def test_rotates_past_a_dead_url_and_remembers_the_live_one(fake: FakeMarathon) -> None:
    fake.add_app("/a", 2)
    dead = dead_url()
    client = MarathonClient(config(dead, fake.url))
    try:
        assert client.active_url == dead
        assert (await client.get_app("/a")).instances == 2
        assert client.active_url == fake.url
        state = {s["url"]: s for s in client.url_state()}
        assert state[dead]["ok"] is False and "cannot connect" in state[dead]["last_error"]
        assert state[fake.url]["ok"] is True and state[fake.url]["active"]
        await client.scale("/a", 3)  # straight to the live URL
        assert len(fake.requests) == 2
    finally:
        await client.close()


@pytest.mark.parametrize(
    "status", [pytest.param(502, id="502"), pytest.param(503, id="503"), pytest.param(504, id="504")]
)
async def test_rotates_on_gateway_statuses_for_reads(fake: FakeMarathon, status: int) -> None:
    other = FakeMarathon()
    await other.start()
    other.fail_next(1, status)
    fake.add_app("/a", 1)
    client = MarathonClient(config(other.url, fake.url))
    try:
        assert (await client.get_app("/a")).id == "/a"
        assert [r.status for r in other.requests] == [status]
        assert client.active_url == fake.url
    finally:
        await client.close()
        await other.stop()


async def test_put_rotates_on_503_but_not_after_a_timeout(fake: FakeMarathon) -> None:
    other = FakeMarathon()
    await other.start()
    fake.add_app("/a", 1)
    other.add_app("/a", 1)
    client = MarathonClient(config(other.url, fake.url, timeout=0.2))
    try:
        other.fail_next(1, 503)
        await client.scale("/a", 2)  # 503: never applied, so the next URL may take it
        assert len(fake.scale_requests) == 1
        fake.delay_next(1, 0.5)  # now the active URL is `fake`: a timeout may have applied the PUT
        with pytest.raises(Transient, match="no reply within"):
            await client.scale("/a", 3)
        assert len(other.scale_requests) == 0
        assert client.active_url == other.url  # the next call starts elsewhere
    finally:
        await client.close()
        await other.stop()


async def test_all_urls_down_is_transient_naming_each(fake: FakeMarathon) -> None:
    a, b = dead_url(), dead_url()
    client = MarathonClient(config(a, b))
    try:
        with pytest.raises(Transient) as e:
            await client.get_app("/a")
        assert a in str(e.value) and b in str(e.value)
        assert not isinstance(e.value, Permanent)
    finally:
        await client.close()


async def test_follows_x_marathon_leader_among_configured_urls(fake: FakeMarathon) -> None:
    fake.add_app("/a", 1)
    standby = FakeMarathon(standby=True, leader_url=fake.url)
    await standby.start()
    client = MarathonClient(config(standby.url, fake.url))
    try:
        await client.get_app("/a")  # proxied by the standby, which names the leader
        assert [r.path for r in standby.requests] == ["/v2/apps/a"]
        assert client.active_url == fake.url and client.leader == fake.url
        await client.scale("/a", 2)
        assert len(standby.requests) == 1 and len(fake.scale_requests) == 1
    finally:
        await client.close()
        await standby.stop()


async def test_standby_without_leader_is_502_and_rotated(fake: FakeMarathon) -> None:
    fake.add_app("/a", 1)
    lost = FakeMarathon(standby=True, leader_url=None)
    await lost.start()
    client = MarathonClient(config(lost.url, fake.url))
    try:
        await client.get_app("/a")
        assert [r.status for r in lost.requests] == [502]
    finally:
        await client.close()
        await lost.stop()


async def test_deployments_lists_running_ones(fake: FakeMarathon, client: MarathonClient) -> None:
    fake.add_app("/a", 1)
    fake.set_deploy_time(None)
    dep = fake.scale_now("/a", 2)
    deps = await client.deployments()
    assert [(d["id"], d["affectedApps"]) for d in deps] == [(dep, ["/a"])]
    fake.finish_deployments()
    for _ in range(5):
        await asyncio.sleep(0)
    assert await client.deployments() == []


# ---- events ------------------------------------------------------------------------------------
async def test_events_filtered_and_decoded(fake: FakeMarathon, client: MarathonClient) -> None:
    fake.add_app("/a", 1)
    stream = client.events(["deployment_success"])
    first = await anext(stream)
    assert first == (STREAM_OPENED, {"url": fake.url + "/v2/events?event_type=deployment_success"})
    result = await client.scale("/a", 2)
    event, data = await anext(stream)
    assert event == "deployment_success" and data["eventType"] == "deployment_success"
    assert data["id"] == result.deployment_id
    await stream.aclose()
    req = next(r for r in fake.requests if r.path == "/v2/events")
    assert req.query == {"event_type": ["deployment_success"]}
    assert req.headers["Accept"] == "text/event-stream"


async def test_events_stream_end_is_transient(fake: FakeMarathon, client: MarathonClient) -> None:
    stream = client.events([])
    await anext(stream)
    await asyncio.sleep(0)
    fake.drop_event_streams()
    with pytest.raises(Transient, match="event stream closed"):
        async for _ in stream:
            pass


async def test_events_silent_stream_times_out(fake: FakeMarathon) -> None:
    fake.heartbeat = 5.0
    client = MarathonClient(config(fake.url, events_idle_timeout=0.1))
    try:
        stream = client.events(["deployment_success"])
        await anext(stream)
        with pytest.raises(Transient, match="silent"):
            await anext(stream)
    finally:
        await client.close()


async def test_events_follow_the_standby_redirect_with_credentials() -> None:
    """The leader is a configured URL: credentials go with the redirect (tests/marathon/test_redirects.py
    shows a leader outside the configured URLs gets none)."""
    leader = FakeMarathon(username="u", password="p")
    await leader.start()
    standby = FakeMarathon(username="u", password="p", standby=True, leader_url=leader.url)
    await standby.start()
    client = MarathonClient(config(standby.url, leader.url, username="u", password="p"))
    try:
        stream = client.events(["event_stream_attached"])
        event, data = await anext(stream)
        assert event == STREAM_OPENED and data["url"].startswith(leader.url + "/v2/events")
        assert [r.status for r in standby.requests] == [302]
        assert (await anext(stream))[0] == "event_stream_attached"
        assert client.leader == leader.url
        await stream.aclose()
    finally:
        await client.close()
        await standby.stop()
        await leader.stop()


async def test_events_refused_without_auth_is_permanent() -> None:
    fake = FakeMarathon(token="x")
    await fake.start()
    client = MarathonClient(config(fake.url))
    try:
        with pytest.raises(Permanent) as e:
            await anext(client.events([]))
        assert e.value.status == 401
    finally:
        await client.close()
        await fake.stop()


# ---- configuration -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kw", "message"),
    [
        pytest.param({"urls": []}, "urls is empty", id="no urls"),
        pytest.param({"urls": ["ftp://x"]}, "not an http(s) URL", id="scheme"),
        pytest.param({"urls": ["http://"]}, "not an http(s) URL", id="no host"),
        pytest.param(
            {"token": "t", "username": "u", "password": "p"}, "either token or", id="token and basic"
        ),
        pytest.param({"username": "u"}, "go together", id="username alone"),
        pytest.param({"timeout": 0}, "must be > 0", id="zero timeout"),
        pytest.param({"events_idle_timeout": -1}, "events_idle_timeout", id="negative idle timeout"),
    ],
)
def test_cluster_config_rejects(kw: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"urls": ["http://127.0.0.1:8080"], **kw}
    with pytest.raises(ValueError, match=re.escape(message)) as e:
        ClusterConfig("lg", **args)
    assert "'lg'" in str(e.value)


def test_cluster_config_normalises_urls_and_hides_secrets() -> None:
    cfg = ClusterConfig(
        "lg", ["http://m1:8080/", "https://m2/service/marathon/"], username="u", password="s3cret"
    )
    assert cfg.urls == ("http://m1:8080", "https://m2/service/marathon")
    assert "s3cret" not in repr(cfg)


def test_missing_ca_file_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=re.escape("ca_file '/nonexistent.pem'")):
        MarathonClient(ClusterConfig("lg", ["https://m1"], ca_file="/nonexistent.pem"))


async def test_base_url_path_prefix_is_kept(fake: FakeMarathon) -> None:
    """DC/OS serves Marathon under /service/marathon: the prefix stays in front of /v2."""
    fake.add_app("/a", 1)
    client = MarathonClient(config(fake.url + "/service/marathon"))
    try:
        with pytest.raises(Permanent):
            await client.get_app("/a")
        assert fake.requests[0].raw_path == "/service/marathon/v2/apps/a"
    finally:
        await client.close()


# ---- TLS ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            key,
            "-out",
            cert,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.mark.parametrize(
    ("settings", "ok"),
    [
        pytest.param({}, False, id="unknown CA refused"),
        pytest.param({"verify_tls": False}, True, id="verification off"),
        pytest.param({"ca_file": "CERT"}, True, id="own CA file"),
    ],
)
async def test_tls_settings(self_signed: tuple[str, str], settings: dict[str, Any], ok: bool) -> None:
    cert, key = self_signed
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    fake = FakeMarathon()
    await fake.start(ssl_context=ctx)
    fake.add_app("/a", 1)
    kw = {k: cert if v == "CERT" else v for k, v in settings.items()}
    client = MarathonClient(config(fake.url, **kw))
    try:
        assert fake.url.startswith("https://")
        if ok:
            assert (await client.get_app("/a")).instances == 1
        else:
            with pytest.raises(Transient, match="certificate verify failed"):
                await client.get_app("/a")
    finally:
        await client.close()
        await fake.stop()


async def test_a_closed_client_opens_no_new_session(fake: FakeMarathon) -> None:
    """A call still running on the client of a cluster a reload closed must not open a session that
    nobody closes (it leaked one per reload): it fails as Transient, and the retry uses the new client."""
    fake.add_app("/a", 1)
    c = MarathonClient(config(fake.url))
    assert (await c.get_app("/a")).instances == 1
    await c.close()
    with pytest.raises(Transient, match="closed"):
        await c.get_app("/a")
    assert c._session is None
