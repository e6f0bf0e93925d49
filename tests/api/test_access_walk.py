"""Issue 13's Show, as an operator would walk it from a fresh clone (docs/security.md): the example config
(conf/oceand.toml and its conf/jobs/) with `[auth] enabled`, the root token made on the host by the CLI,
`oceand run` as its own process, a read-only token for one product line made through the API; it lists
its product line's jobs, gets 403 on another product line's job and on a scale; it is rotated, and the old
secret works within the grace and not after. No secret reaches the daemon's log."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.common import free_port
from tests.e2e.harness import ROOT, wait_for

pytestmark = pytest.mark.slow

PDL = "_pdl.ocean_owt.inf_cop.xiaomi"  # the product line of conf/jobs/
OTHER = "job.web_pdl.other_owt.inf_cop.xiaomi"


def call(url: str, method: str, path: str, token: str | None, body: Any = None) -> tuple[int, Any]:
    req = urllib.request.Request(url + path, data=None if body is None else orjson.dumps(body), method=method)
    req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            data = r.read()
            return r.status, orjson.loads(data) if data else None
    except urllib.error.HTTPError as e:
        return e.code, orjson.loads(e.read())


def test_the_issue_13_walk_from_the_example_config(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)  # what a clone has; the store goes to ../var/ as in the clone
    (tmp_path / "var").mkdir()
    port = free_port()
    toml = (conf / "oceand.toml").read_text()
    assert 'listen = "127.0.0.1:8080"' in toml
    toml = toml.replace('listen = "127.0.0.1:8080"', f'listen = "127.0.0.1:{port}"')
    (conf / "oceand.toml").write_text(toml + "\n[auth]\nenabled = true\n")
    config = str(conf / "oceand.toml")
    cli = [sys.executable, "-m", "oceand"]

    # 1. the root token, on the host: the secret is the last line the CLI prints
    made = subprocess.run(
        [*cli, "token", "create", "--config", config, "--name", "root", "--scope", "admin"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    root = made.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"ocd_[A-Za-z0-9_-]{43}", root), made.stdout

    log = tmp_path / "daemon.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [*cli, "run", "--config", config],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=dict(os.environ),
        )
    url = f"http://127.0.0.1:{port}"
    secrets = [root]
    try:
        wait_for(lambda: _ready(url), 30, "the daemon to be ready")
        assert call(url, "GET", "/api/v1/jobs", None)[0] == 401
        status, body = call(url, "GET", "/api/v1/jobs", root)
        mine = sorted(j["job"] for j in body["jobs"])
        assert status == 200 and len(mine) == 3 and all(j.endswith(PDL) for j in mine)  # conf/jobs/
        other = orjson.loads((conf / "jobs" / "example.json").read_bytes()) | {"job": OTHER}
        status, body = call(url, "POST", "/api/v1/jobs", root, other)
        assert status == 201, body

        # 2. a read-only token limited to one product line, through the API
        want = {"name": "owt-reader", "scopes": ["read"], "jobs": [f"*{PDL}"], "expires": "90d"}
        status, body = call(url, "POST", "/api/v1/tokens", root, want)
        assert status == 201 and body["scopes"] == ["read"] and body["jobs"] == [f"*{PDL}"], body
        reader = body["secret"]
        secrets.append(reader)
        status, body = call(url, "GET", "/api/v1/jobs", reader)
        assert status == 200 and sorted(j["job"] for j in body["jobs"]) == mine  # its product line only
        status, body = call(url, "GET", f"/api/v1/jobs/{OTHER}", reader)
        assert status == 403 and body["error"]["code"] == "job_outside_token", body
        status, body = call(url, "POST", f"/api/v1/jobs/{mine[0]}/scale", reader, {"instances": 3})
        assert (
            status == 403
            and body["error"]["code"] == "missing_scope"
            and "'operate'" in body["error"]["message"]
        )

        # 3. rotated with a short grace: both secrets work, then only the new one
        status, body = call(url, "POST", "/api/v1/tokens/owt-reader/rotate", root, {"grace": "3s"})
        assert status == 200, body
        new = body["secret"]
        secrets.append(new)
        until = body["old_secret_valid_until"]
        assert call(url, "GET", "/api/v1/jobs", reader)[0] == 200 and time.time() < until  # within grace
        assert call(url, "GET", "/api/v1/jobs", new)[0] == 200
        wait_for(lambda: call(url, "GET", "/api/v1/jobs", reader)[0] == 401, 10, "the grace to end")
        assert time.time() >= until
        status, body = call(url, "GET", "/api/v1/jobs", reader)
        assert "grace period is over" in body["error"]["message"]
        assert call(url, "GET", "/api/v1/jobs", new)[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log.read_text()
    assert '"event": "ready"' in text or "oceand ready" in text
    for s in secrets:
        assert s not in text


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False
