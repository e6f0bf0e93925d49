"""No configured secret in any reply or log line of a run (PRODUCT §10, issue 13: "test it by grepping every
response and log line of a run for the configured secrets").

A daemon with every kind of secret the config and the API hold: a Marathon cluster behind basic auth (the
fake checks it) and one with a bearer token (unreachable), the ingest token, the falcon-plus API tokens of
`[notify]` and `[history]` (the warm start asks an unreachable API), bearer tokens made on the host and
through the API, and a job webhook carrying a password and a token. The run reads every GET route, makes
every kind of change, sends good and bad pushes and alarm callbacks (the token in the query), and bad
requests; then every reply (status line, headers, body) and every log line is searched for each secret,
and for the basic-auth header built from the Marathon password. The log is the daemon's own output at
`[log] level = "debug"` (`setup_logging`, as `oceand run` sets it up), and the records of oceand's
loggers before formatting too (so the formatter's last-resort redaction is not what hides them)."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from oceand.logs import QUIET_DRIVERS, setup_logging
from tests.api.test_admin import doc
from tests.api.test_auth import PDL, host_token
from tests.conftest import DaemonFactory
from tests.fakes.marathon import FakeMarathon

JOB = f"job.web{PDL}"
MARATHON_PASSWORD = "marathon-pw-7c1f5a9e"
MARATHON_TOKEN = "marathon-token-2b8d4e6f"
INGEST_TOKEN = "ingest-secret-9d3a7f1c2e4b"
NOTIFY_TOKEN = "notify-sig-5e8c1a2d"
HISTORY_TOKEN = "history-sig-3f9b6d0e"
HOOK_PASSWORD = "hook-pw-8a2c4e6f"
HOOK_TOKEN = "hook-token-1d5f9b3a"
ALARM = "endpoint=h1&metric=cpu.idle&status=PROBLEM&step=1&priority=0&time=2026-11-28+10:00:00&stra_id=1&left_value=3"


async def test_no_configured_secret_in_any_reply_or_log_line(
    start_daemon: DaemonFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    out = io.StringIO()
    before = {name: logging.getLogger(name).level for name in QUIET_DRIVERS}
    setup_logging("debug", "json", out)
    fake = FakeMarathon(username="ocean", password=MARATHON_PASSWORD)
    await fake.start()
    fake.add_app("/ocean/monitor-job", 1)
    root = await host_token(tmp_path, "--name", "root", "--scope", "admin", capsys=capsys)
    secrets = [
        MARATHON_PASSWORD,
        base64.b64encode(f"ocean:{MARATHON_PASSWORD}".encode()).decode(),  # the Authorization header
        MARATHON_TOKEN,
        INGEST_TOKEN,
        NOTIFY_TOKEN,
        HISTORY_TOKEN,
        HOOK_PASSWORD,
        HOOK_TOKEN,
        root,
    ]
    seen: list[str] = []
    try:
        d, _ = await start_daemon(
            auth={"enabled": True},
            ingest={"token": INGEST_TOKEN},
            marathon={
                "lg": {"urls": [fake.url], "username": "ocean", "password": MARATHON_PASSWORD},
                "c2": {"urls": ["http://127.0.0.1:9"], "token": MARATHON_TOKEN, "connect_timeout": "0.2s"},
            },
            notify={
                "falcon_api": "http://127.0.0.1:9",
                "falcon_api_token": NOTIFY_TOKEN,
                "sms": "http://127.0.0.1:9/sms",
                "timeout": "0.2s",
            },
            history={
                "falcon_api": "http://127.0.0.1:9",
                "falcon_api_token": HISTORY_TOKEN,
                "warm_timeout": "0.5s",
            },
        )
        assert d.url is not None
        async with aiohttp.ClientSession() as s:

            async def call(
                method: str, path: str, token: str | None = root, body: Any = None
            ) -> tuple[int, Any]:
                headers = {} if token is None else {"Authorization": f"Bearer {token}"}
                async with s.request(method, d.url + path, json=body, headers=headers) as r:
                    text = await r.text()
                    seen.append(f"{r.status} {r.reason} {dict(r.headers)} {text}")  # the reply only
                    return r.status, await r.json() if r.content_type == "application/json" else text

            hook = f"http://hook:{HOOK_PASSWORD}@127.0.0.1:9/notify?token={HOOK_TOKEN}&team=sre"
            job = doc(JOB, mode="active", notify={"group": "sre_ocean", "webhook": hook})
            assert (await call("POST", "/api/v1/jobs", body=job))[0] == 201
            other = doc(f"job.c2{PDL}", target={"cluster": "c2", "app": "/x"})
            assert (await call("POST", "/api/v1/jobs", body=other))[0] == 201
            status, made = await call("POST", "/api/v1/tokens", body={"name": "reader", "scopes": ["read"]})
            assert status == 201
            reader = made.pop("secret")
            seen.pop()  # the create reply is the one place a new secret is shown
            status, rotated = await call("POST", "/api/v1/tokens/reader/rotate")
            assert status == 200
            new_reader = rotated.pop("secret")
            seen.pop()
            secrets += [reader, new_reader]
            await _until(lambda: d.engine.status(JOB)["app_known"])  # Marathon was asked, with basic auth
            assert any(r.headers.get("Authorization", "").startswith("Basic ") for r in fake.requests)

            push = [{"endpoint": "h1", "metric": "cpu.idle", "timestamp": int(time.time()), "step": 10, "value": 5,
                     "counterType": "GAUGE", "tags": f"job={JOB}"}]  # fmt: skip
            assert (await call("POST", f"/v1/push?token={INGEST_TOKEN}", None, push))[0] == 200
            assert (await call("POST", "/v1/push", INGEST_TOKEN, push))[0] == 200
            assert (await call("POST", f"/v1/push?token={INGEST_TOKEN}x", None, push))[0] == 401
            assert (await call("GET", f"/v1/falcon/alarm?token={INGEST_TOKEN}&{ALARM}", None))[0] == 200
            assert (await call("GET", f"/v1/falcon/alarm?token={INGEST_TOKEN}&endpoint=h1", None))[0] == 400
            assert (await call("POST", f"/api/v1/jobs/{JOB}/scale", body={"instances": 2}))[0] == 200
            assert (await call("POST", f"/api/v1/jobs/{JOB}/mode", body={"mode": "paused"}))[0] == 200
            bad_hook = {"group": "sre_ocean", "webhook": hook.replace("http:", "gopher:")}
            assert (await call("PUT", f"/api/v1/jobs/{JOB}", body=doc(JOB, notify=bad_hook, period=0)))[
                0
            ] == 422
            assert (await call("PUT", "/api/v1/templates/t", body={"notify": {"webhook": hook}}))[0] == 201
            for path in (
                "/healthz",
                "/readyz",
                "/metrics",
                "/api/v1/openapi.json",
                "/api/v1/jobs",
                f"/api/v1/jobs/{JOB}",
                f"/api/v1/jobs/{JOB}/status",
                f"/api/v1/jobs/{JOB}/decisions",
                f"/api/v1/jobs/{JOB}/history",
                f"/api/v1/jobs/job.c2{PDL}/status",
                "/api/v1/clusters",
                "/api/v1/cluster",
                "/api/v1/ingest/unmatched",
                "/api/v1/templates",
                "/api/v1/templates/t",
                "/api/v1/tokens",
                "/api/v1/audit?limit=1000",
            ):
                status, _ = await call("GET", path)
                assert status == 200, path
            for token in (reader, new_reader, reader + "x", INGEST_TOKEN, MARATHON_TOKEN):
                await call("GET", "/api/v1/audit", token)  # 403, 403, 401, 401, 401
            await d.history.flush()
        await d.stop()
    finally:
        await fake.stop()
        _restore_logging(before)
    lines = out.getvalue().splitlines()
    records = [f"{r.getMessage()} {r.__dict__}" for r in caplog.records if r.name.startswith("oceand")]
    assert any("token.rotate" in line for line in lines) and len(lines) > 10 and len(seen) > 30
    for secret in secrets:
        assert [x for x in seen if secret in x] == [], secret[:8]  # no reply shows it
        assert [x for x in lines if secret in x] == [], secret[:8]  # no log line
        assert [x for x in records if secret in x] == [], secret[:8]  # nor oceand's records unformatted


def _restore_logging(levels: dict[str, int]) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        if type(h).__name__ == "_OceandHandler":
            root.removeHandler(h)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


async def _until(cond: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)
