"""Tokens, scopes, job globs, expiry, rotation, the host CLI, the start refusal and the audit trail
(PRODUCT §10, issue 13), against a daemon on 127.0.0.1 with its SQLite store and a controlled clock."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from oceand import cli
from oceand.auth import glob_matches, hash_secret
from oceand.config import ConfigError, validate_config
from oceand.daemon import Daemon
from tests.api.test_admin import doc
from tests.conftest import DaemonFactory

PDL = "_pdl.ocean_owt.inf_cop.xiaomi"
MINE = f"job.web{PDL}"
OTHER = "job.web_pdl.other_owt.inf_cop.xiaomi"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Api:
    """Calls with an optional bearer token; returns (status, JSON body or text, headers)."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base

    async def __call__(
        self, method: str, path: str, token: str | None = None, json: Any = None
    ) -> tuple[int, Any]:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        async with self.session.request(method, self.base + path, json=json, headers=headers) as r:
            body = await r.read()
            if r.content_type == "application/json" and body:
                return r.status, orjson.loads(body)
            return r.status, body.decode()


def host_token_sync(tmp_path: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> str:
    """`oceand token create` on the host against the test daemon's store; returns the printed secret."""
    conf = tmp_path / "oceand.toml"
    conf.write_text('[server]\nlisten = "127.0.0.1:0"\n[store]\nurl = "sqlite:///oceand.db"\n')
    assert cli.main(["token", "create", "--config", str(conf), *args]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    return out[-1]


async def host_token(tmp_path: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> str:
    """host_token_sync from a test's event loop (the CLI runs its own loop, as a separate process would)."""
    return await asyncio.to_thread(host_token_sync, tmp_path, *args, capsys=capsys)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def secured(
    start_daemon: DaemonFactory, session: aiohttp.ClientSession, clock: Clock | None = None, **auth: Any
) -> tuple[Daemon, Api]:
    d, _ = await start_daemon(clock=clock or Clock(), auth={"enabled": True, **auth})
    assert d.url is not None
    return d, Api(session, d.url)


async def with_root(
    start_daemon: DaemonFactory,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    clock: Clock | None = None,
    **auth: Any,
) -> tuple[Api, str]:
    """A daemon with auth on, and the secret of an admin token `root` made on the host before it started."""
    root = await host_token(tmp_path, "--name", "root", "--scope", "admin", capsys=capsys)
    _, api = await secured(start_daemon, session, clock, **auth)
    return api, root


# ---- globs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("glob", "job", "expected"),
    [
        pytest.param("*", "anything.at_all", True, id="star matches all"),
        pytest.param(f"*{PDL}", MINE, True, id="product line suffix"),
        pytest.param(f"*{PDL}", OTHER, False, id="other product line"),
        pytest.param("job.web", "job.web", True, id="literal"),
        pytest.param("job.web", "job.webx", False, id="literal is whole-name"),
        pytest.param("job.?eb", "job.web", True, id="question mark one char"),
        pytest.param("job.?eb", "job.eb", False, id="question mark not zero chars"),
        pytest.param("job.w*b", "job.w.x.b", True, id="star crosses dots"),
        pytest.param("Job.*", "job.web", False, id="case-sensitive"),
        pytest.param("job.[ab]", "job.a", False, id="brackets are literal characters, not a class"),
    ],
)
def test_glob_rules(glob: str, job: str, expected: bool) -> None:
    assert glob_matches(glob, job) is expected


# ---- the start refusal ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "auth", "refused"),
    [
        pytest.param("0.0.0.0:8080", False, True, id="every interface without auth"),
        pytest.param("10.1.2.3:8080", False, True, id="a LAN address without auth"),
        pytest.param("[::]:8080", False, True, id="ipv6 any without auth"),
        pytest.param("oceand.example.com:8080", False, True, id="a host name without auth"),
        pytest.param("0.0.0.0:8080", True, False, id="every interface with auth"),
        pytest.param("127.0.0.1:8080", False, False, id="loopback without auth"),
        pytest.param("127.0.0.2:8080", False, False, id="other loopback address"),
        pytest.param("[::1]:8080", False, False, id="ipv6 loopback"),
        pytest.param("localhost:8080", False, False, id="localhost"),
    ],
)
def test_admin_beyond_loopback_needs_auth(tmp_path: Path, listen: str, auth: bool, refused: bool) -> None:
    data = {"server": {"listen": listen}, "auth": {"enabled": auth}, "ingest": {"allow": ["10.0.0.0/8"]}}
    if not refused:
        validate_config(data, file="oceand.toml", base_dir=tmp_path, path=None)
        return
    with pytest.raises(ConfigError) as e:
        validate_config(data, file="oceand.toml", base_dir=tmp_path, path=None)
    assert e.value.key == "auth.enabled" and listen in e.value.message


def test_check_config_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "oceand.toml"
    conf.write_text('[server]\nlisten = "0.0.0.0:8080"\n')
    assert cli.main(["check-config", "--config", str(conf)]) == 2
    assert f"{conf}: auth.enabled: server.listen '0.0.0.0:8080'" in capsys.readouterr().err


# ---- tokens --------------------------------------------------------------------------------------


async def test_auth_off_keeps_loopback_open(start_daemon: DaemonFactory) -> None:
    _, c = await start_daemon()
    status, body = await c.call("POST", "/api/v1/jobs", doc(MINE))
    assert status == 201, body
    status, body = await c.call("GET", "/api/v1/audit")
    assert status == 200 and body["entries"][0]["actor"] == "local"


async def test_host_token_then_scoped_token_through_the_api(
    start_daemon: DaemonFactory,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = await host_token(tmp_path, "--name", "root", "--scope", "admin", capsys=capsys)
    assert root.startswith("ocd_") and len(root) >= 4 + 43  # 32 random bytes, URL-safe base64
    _, api = await secured(start_daemon, session)
    assert (await api("GET", "/api/v1/jobs"))[0] == 401
    for name in (MINE, OTHER):
        status, body = await api("POST", "/api/v1/jobs", root, doc(name))
        assert status == 201, body
    status, body = await api(
        "POST", "/api/v1/tokens", root, {"name": "pdl-reader", "scopes": ["read"], "jobs": [f"*{PDL}"]}
    )
    assert status == 201, body
    reader = body["secret"]
    assert body["scopes"] == ["read"] and body["jobs"] == [f"*{PDL}"] and body["expires_at"] is None

    status, body = await api("GET", "/api/v1/jobs", reader)
    assert status == 200 and [j["job"] for j in body["jobs"]] == [MINE]  # only its product line
    assert (await api("GET", f"/api/v1/jobs/{MINE}/status", reader))[0] == 200
    status, body = await api("GET", f"/api/v1/jobs/{OTHER}", reader)
    assert (
        status == 403 and body["error"]["code"] == "job_outside_token" and OTHER in body["error"]["message"]
    )
    status, body = await api("POST", f"/api/v1/jobs/{MINE}/scale", reader, {"instances": 2})
    assert (
        status == 403 and body["error"]["code"] == "missing_scope" and "'operate'" in body["error"]["message"]
    )

    # listed without secrets; stored only as hashes
    status, body = await api("GET", "/api/v1/tokens", root)
    assert status == 200 and [t["name"] for t in body["tokens"]] == ["pdl-reader", "root"]
    assert reader not in str(body) and hash_secret(reader) not in str(body)
    db = sqlite3.connect(tmp_path / "oceand.db")
    dump = "\n".join(db.iterdump())
    assert reader not in dump and root not in dump and hash_secret(reader) in dump


async def test_rotation_grace_expiry_and_revocation(
    start_daemon: DaemonFactory,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = Clock()
    api, root = await with_root(start_daemon, session, tmp_path, capsys, clock)
    _, body = await api("POST", "/api/v1/tokens", root, {"name": "ci", "scopes": ["read"], "expires": "1d"})
    old = body["secret"]
    assert body["expires_at"] == clock.now + 86400
    status, body = await api("POST", "/api/v1/tokens/ci/rotate", root)
    assert status == 200 and body["old_secret_valid_until"] == clock.now + 3600  # [auth] grace default 1h
    new = body["secret"]
    assert new != old
    clock.now += 3599
    assert (await api("GET", "/api/v1/jobs", old))[0] == 200  # old secret within grace
    assert (await api("GET", "/api/v1/jobs", new))[0] == 200
    clock.now += 1
    status, body = await api("GET", "/api/v1/jobs", old)
    assert status == 401 and "grace period is over" in body["error"]["message"]
    assert (await api("GET", "/api/v1/jobs", new))[0] == 200
    clock.now += 86400
    status, body = await api("GET", "/api/v1/jobs", new)
    assert status == 401 and "expired" in body["error"]["message"]
    assert (await api("DELETE", "/api/v1/tokens/ci", root))[0] == 204
    status, body = await api("GET", "/api/v1/jobs", new)
    assert status == 401 and body["error"]["code"] == "bad_token"
    assert (await api("DELETE", "/api/v1/tokens/ci", root))[0] == 404


async def test_rotate_with_a_grace_of_zero_cuts_the_old_secret_at_once(
    start_daemon: DaemonFactory,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    api, root = await with_root(start_daemon, session, tmp_path, capsys)
    _, body = await api("POST", "/api/v1/tokens", root, {"name": "leaked", "scopes": ["read"]})
    leaked = body["secret"]
    status, _ = await api("POST", "/api/v1/tokens/leaked/rotate", root, {"grace": 0})
    assert status == 200
    assert (await api("GET", "/api/v1/jobs", leaked))[0] == 401


@pytest.mark.parametrize(
    ("payload", "status", "fragment"),
    [
        pytest.param({"name": "x", "scopes": ["root"]}, 422, "'root' is not one of", id="unknown scope"),
        pytest.param({"name": "x", "scopes": []}, 422, "scopes: a non-empty list", id="no scopes"),
        pytest.param({"name": "a b", "scopes": ["read"]}, 422, "name: 1-64", id="bad name"),
        pytest.param({"name": "x", "scopes": ["read"], "jobs": ["a/b"]}, 422, "is not a glob", id="bad glob"),
        pytest.param({"name": "x", "scopes": ["read"], "jobs": []}, 422, "a list of 1-64", id="no globs"),
        pytest.param(
            {"name": "x", "scopes": ["admin"], "jobs": ["job.*"]}, 422, "covers every job", id="admin limited"
        ),
        pytest.param({"name": "x", "scopes": ["read"], "expires": "soon"}, 422, "expires:", id="bad expires"),
        pytest.param({"name": "x", "scopes": ["read"], "expires": 0}, 422, "more than 0", id="zero expires"),
        pytest.param(
            {"name": "x", "scopes": ["read"], "secret": "mine"}, 422, "unknown field", id="own secret"
        ),
        pytest.param({"name": "root", "scopes": ["read"]}, 409, "exists", id="name taken"),
        pytest.param([1], 400, "JSON object", id="not an object"),
    ],
)
async def test_token_requests_refused(
    start_daemon: DaemonFactory,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    payload: Any,
    status: int,
    fragment: str,
) -> None:
    api, root = await with_root(start_daemon, session, tmp_path, capsys)
    got, body = await api("POST", "/api/v1/tokens", root, payload)
    assert got == status and fragment in body["error"]["message"], body


async def test_bad_authorization_headers(start_daemon: DaemonFactory, session: aiohttp.ClientSession) -> None:
    d, _ = await secured(start_daemon, session)
    for header in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer ocd_nothing", "ocd_nothing"):
        async with session.get(f"{d.url}/api/v1/jobs", headers={"Authorization": header}) as r:
            body = await r.json()
            assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer"), header
            assert body["error"]["code"] == "bad_token"
    assert 'oceand_auth_denied_total{reason="bad_token"} 4.0' in d.metrics.render().decode()


def test_cli_token_lifecycle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = host_token_sync(
        tmp_path, "--name", "ops", "--scope", "read", "--scope", "operate", "--jobs", "job.*", "--expires", "30d",
        capsys=capsys,
    )  # fmt: skip
    conf = str(tmp_path / "oceand.toml")
    assert cli.main(["token", "list", "--config", conf]) == 0
    listed = capsys.readouterr().out
    assert "ops\tscopes=read,operate\tjobs=job.*" in listed and secret not in listed
    assert cli.main(["token", "create", "--config", conf, "--name", "ops", "--scope", "read"]) == 1
    assert "exists" in capsys.readouterr().err
    assert cli.main(["token", "rotate", "--config", conf, "--name", "ops", "--grace", "10m"]) == 0
    rotated = capsys.readouterr().out.strip().splitlines()[-1]
    assert rotated.startswith("ocd_") and rotated != secret
    assert cli.main(["token", "delete", "--config", conf, "--name", "ops"]) == 0
    assert cli.main(["token", "delete", "--config", conf, "--name", "ops"]) == 1


# ---- audit ---------------------------------------------------------------------------------------


async def test_every_change_is_audited_once(
    start_daemon: DaemonFactory,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    api, root = await with_root(start_daemon, session, tmp_path, capsys, clock)
    caplog.set_level("INFO", logger="oceand.audit")
    calls: list[tuple[str, str, Any, int]] = [
        ("POST", "/api/v1/jobs", doc(MINE), 201),
        ("PUT", f"/api/v1/jobs/{MINE}", doc(MINE, max_instances=8), 200),
        ("PUT", f"/api/v1/jobs/{MINE}", doc(MINE, max_instances=8), 200),  # the same document: no change
        ("POST", f"/api/v1/jobs/{MINE}/mode", {"mode": "paused"}, 200),
        ("POST", f"/api/v1/jobs/{MINE}/scale", {"instances": 3, "reason": "drill"}, 200),
        ("DELETE", f"/api/v1/jobs/{MINE}", None, 204),
    ]
    for method, path, payload, expected in calls:
        assert (await api(method, path, root, payload))[0] == expected, (method, path)
    _, body = await api("POST", "/api/v1/tokens", root, {"name": "t", "scopes": ["read"]})
    assert (await api("POST", "/api/v1/tokens/t/rotate", root))[0] == 200
    assert (await api("DELETE", "/api/v1/tokens/t", root))[0] == 204
    status, body = await api("GET", "/api/v1/audit?limit=1000", root)
    assert status == 200
    got = [
        (e["actor"], e["action"], e["job"], e["before_version"], e["after_version"]) for e in body["entries"]
    ]
    expected_jobs = [
        ("root", "job.create", MINE, None, 1),
        ("root", "job.replace", MINE, 1, 2),
        ("root", "job.mode", MINE, 2, 3),
    ]
    scale = [("root", "job.scale", MINE, 3, 3)]
    tail = [("root", "job.delete", MINE, 3, None), ("root", "token.create", None, None, None)]
    tail += [("root", "token.rotate", None, None, None), ("root", "token.delete", None, None, None)]
    host = [("local", "token.create", None, None, None)]
    assert list(reversed(got)) == host + expected_jobs + scale + tail
    assert all(e["source"] == "127.0.0.1" for e in body["entries"] if e["actor"] == "root")
    assert all(e["time"] == clock.now for e in body["entries"] if e["actor"] == "root")
    lines = [r for r in caplog.records if getattr(r, "event", None) == "audit"]
    assert len(lines) == len(got) - 1  # the host CLI's entry was logged by its own process
    status, body = await api("GET", f"/api/v1/audit?job={MINE}&limit=2", root)
    assert [e["action"] for e in body["entries"]] == ["job.delete", "job.scale"]
    status, body = await api("GET", f"/api/v1/audit?since={clock.now + 1}", root)
    assert body["entries"] == []
    assert (await api("GET", "/api/v1/audit?limit=0", root))[0] == 400
    assert (await api("GET", "/api/v1/audit?job=a/b", root))[0] == 400


async def test_job_files_applied_at_start_are_audited(start_daemon: DaemonFactory, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "web.json").write_bytes(orjson.dumps(doc(MINE)))
    d, c = await start_daemon(jobs={"dir": str(jobs)})
    status, body = await c.call("GET", "/api/v1/audit")
    assert status == 200
    [e] = body["entries"]
    assert (e["actor"], e["action"], e["job"], e["before_version"], e["after_version"]) == (
        "local",
        "job.create",
        MINE,
        None,
        1,
    )
    assert e["source"] == f"file:{jobs / 'web.json'}"
    await d.stop()
    _, c2 = await start_daemon(jobs={"dir": str(jobs)})  # unchanged file: nothing new
    assert len((await c2.call("GET", "/api/v1/audit"))[1]["entries"]) == 1


async def test_secrets_are_never_logged_nor_cached(
    start_daemon: DaemonFactory,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    api, root = await with_root(start_daemon, session, tmp_path, capsys)
    secrets = [root]
    base = api.base
    async with session.post(
        f"{base}/api/v1/tokens",
        json={"name": "t", "scopes": ["read"]},
        headers={"Authorization": f"Bearer {root}"},
    ) as r:
        assert r.status == 201 and r.headers["Cache-Control"] == "no-store"
        secrets.append((await r.json())["secret"])
    async with session.post(
        f"{base}/api/v1/tokens/t/rotate", headers={"Authorization": f"Bearer {root}"}
    ) as r:
        assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
        secrets.append((await r.json())["secret"])
    for s in secrets:
        await api("GET", f"/api/v1/jobs/{MINE}", s)
        await api("GET", "/api/v1/audit", s + "x")
    _, audit_body = await api("GET", "/api/v1/audit", root)
    _, tokens_body = await api("GET", "/api/v1/tokens", root)
    logged = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    assert "audit: token.rotate" in logged
    for s in secrets:
        assert s not in logged and s not in str(audit_body) and s not in str(tokens_body)
        # oceand's own lines never show a hash either (aiosqlite's DEBUG lines echo SQL parameters)
        ours = [r for r in caplog.records if r.name.startswith("oceand")]
        assert not [r.getMessage() for r in ours if hash_secret(s) in r.getMessage() + str(r.__dict__)]
        assert hash_secret(s) not in str(tokens_body)


async def test_a_store_outage_keeps_the_last_tokens_and_never_answers_5xx_unexplained(
    start_daemon: DaemonFactory,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = await host_token(tmp_path, "--name", "root", "--scope", "admin", capsys=capsys)
    d, api = await secured(start_daemon, session)
    assert (await api("GET", "/api/v1/clusters", root))[0] == 200  # tokens read once
    d.authority.refresh = 0.0  # every request re-reads: each one meets the outage
    await d.store.close()
    assert (await api("GET", "/api/v1/clusters", root))[0] == 200  # the last tokens stay in force
    assert (await api("GET", "/api/v1/clusters", "ocd_unknown"))[0] == 401
    d2, api2 = await secured(start_daemon, session)  # another daemon, its store down before any read
    await d2.store.close()
    status, body = await api2("GET", "/api/v1/clusters", root)
    assert status == 503 and body["error"]["code"] == "store_unavailable"
