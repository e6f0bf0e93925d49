"""`oceanctl scale` sends an Idempotency-Key (docs/cli.md): a fresh one per command, or `--key`'s, so a
retried command is not applied twice (with several daemons). Against a stub HTTP server of the test's own
that records each call's headers (what reaches the daemon is the point; the daemon's handling of the key
is tested in tests/cluster/test_engine_gate.py and tests/api)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from click.testing import CliRunner, Result

from oceand.ctl.main import cli

JOB = "job.web_cop.xiaomi"
KEY_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")  # what the daemon accepts (oceand/api/internal.py)
DECISION = {"decision": {"id": 1, "status": "applied", "from": 1, "to": 3, "reasons": ["Manual"]}}


class Stub:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.calls: list[tuple[str, str, dict[str, str]]] = []


@pytest.fixture
def stub() -> Iterator[tuple[Stub, str]]:
    s = Stub()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            s.calls.append(("POST", self.path, dict(self.headers.items())))
            body = json.dumps(
                DECISION if s.status == 200 else {"error": {"code": "unavailable", "message": "try again"}}
            ).encode()
            self.send_response(s.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield s, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run(url: str, *args: str) -> Result:
    env = {"OCEAND_URL": url, "OCEAND_TOKEN": None, "OCEANCTL_CONFIG": None, "NO_COLOR": "1"}
    return CliRunner().invoke(cli, list(args), env=env, prog_name="oceanctl", catch_exceptions=False)


def keys(s: Stub) -> list[str | None]:
    return [h.get("Idempotency-Key") for _, _, h in s.calls]


def test_each_scale_command_sends_a_fresh_valid_key(stub: tuple[Stub, str]) -> None:
    s, url = stub
    for _ in range(2):
        r = run(url, "scale", JOB, "3")
        assert r.exit_code == 0, r.output
    first, second = keys(s)
    assert first is not None and second is not None and first != second
    assert KEY_RE.fullmatch(first) and KEY_RE.fullmatch(second)
    assert [p for _, p, _ in s.calls] == [f"/api/v1/jobs/{JOB}/scale"] * 2


def test_key_sets_the_key_so_a_retry_sends_the_same(stub: tuple[Stub, str]) -> None:
    s, url = stub
    for _ in range(2):
        assert run(url, "scale", JOB, "3", "--key", "deploy-42.retry:1").exit_code == 0
    assert keys(s) == ["deploy-42.retry:1", "deploy-42.retry:1"]


def test_a_failed_call_names_its_key_and_how_to_retry_it(stub: tuple[Stub, str]) -> None:
    s, url = stub
    s.status = 503
    r = run(url, "scale", JOB, "3")
    assert r.exit_code == 5, r.output
    (key,) = keys(s)
    assert f"retry with --key {key}" in r.output
