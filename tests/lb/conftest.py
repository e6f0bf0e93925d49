"""Shared pieces of the LB tests: app states, HTTP backends on 127.0.0.1, real nginx and HAProxy.

nginx and HAProxy run in the foreground as children of the test (`daemon off;` / `haproxy -db`) with
every path inside the test's tmp folder and ports chosen free at run time; the fixtures stop them (and
anything they started) whether the test passed or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from actuators.lb.haproxy import render_backend
from actuators.lb.nginx import render as render_upstream
from actuators.marathon.model import AppState, Task

FAKES = Path(__file__).resolve().parents[1] / "fakes"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)
KEEPALIVED = shutil.which("keepalived") or (
    "/usr/sbin/keepalived" if os.path.exists("/usr/sbin/keepalived") else None
)


def make_app(*backends: tuple[str, int], app_id: str = "/web", healthy: bool = True) -> AppState:
    """An app whose serving tasks are these (host, port) pairs."""
    tasks = {
        f"web.{i}": Task(id=f"web.{i}", app_id=app_id, host=h, ports=[p], healthy=healthy)
        for i, (h, p) in enumerate(backends)
    }
    return AppState(id=app_id, instances=len(tasks), tasks=tasks, has_health_checks=True)


# The deadline of a wait on a condition that normally holds within a second (a server started, a reload
# taken): generous, since nginx, HAProxy and the test share the cores with other test runs.
WAIT = 30.0


async def wait_until(predicate: Callable[[], Awaitable[bool]], what: str, timeout: float = WAIT) -> None:
    """Poll a condition (not a fixed sleep) until it holds; fail naming `what` after `timeout`. A request
    the server drops while it reloads (an old worker closing its keep-alive connection) is a "not yet"."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            if await predicate():
                return
        except (TimeoutError, aiohttp.ClientError):
            pass
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class HttpBackend:
    """An aiohttp server answering its own port; `/slow` waits for `release` (an in-flight request)."""

    port: int = 0
    hits: int = 0
    slow_started: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    runner: web.AppRunner | None = None

    @property
    def key(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/slow", self._slow)
        app.router.add_get("/{tail:.*}", self._fast)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self.runner, sock).start()

    async def _fast(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.Response(text=f"backend-{self.port}")

    async def _slow(self, request: web.Request) -> web.Response:
        self.hits += 1
        self.slow_started.set()
        await self.release.wait()
        return web.Response(text=f"slow-{self.port}")

    async def stop(self) -> None:
        self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def backends() -> AsyncIterator[list[HttpBackend]]:
    started = [HttpBackend() for _ in range(3)]
    for b in started:
        await b.start()
    yield started
    for b in started:
        await b.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


def _stop(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}: {log.read_text() if log.exists() else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return
        except OSError:
            time.sleep(0.02)  # polling a starting process for readiness
    pytest.fail(f"server did not listen on 127.0.0.1:{port}")


def _wait_socket(path: Path, proc: subprocess.Popen[bytes]) -> None:
    """HAProxy renames its runtime socket into place after it binds the frontends."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}")
        if path.is_socket():
            return
        time.sleep(0.02)  # polling a starting process for readiness
    pytest.fail(f"no socket at {path}")


@dataclass
class Nginx:
    prefix: Path
    conf: Path
    upstream_file: Path
    port: int
    proc: subprocess.Popen[bytes]
    binary: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def check(self) -> subprocess.CompletedProcess[str]:
        """`nginx -t` on the config files as they are now."""
        return subprocess.run(
            [self.binary, "-t", "-q", "-p", str(self.prefix), "-c", str(self.conf)],
            capture_output=True,
            text=True,
            timeout=10,
        )


def nginx_conf(prefix: Path, port: int, upstream_file: Path, upstream_block: str | None = None) -> str:
    """nginx.conf; `upstream_block` is the body of `upstream app { … }` ({include} names the file)."""
    body = (upstream_block or " include {include}; ").format(include=upstream_file)
    return f"""
worker_processes 1;
daemon off;
pid {prefix}/logs/nginx.pid;
error_log {prefix}/logs/error.log notice;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    upstream app {{{body}}}
    server {{
        listen 127.0.0.1:{port};
        location = /nginx_status {{ stub_status; }}
        location / {{ proxy_pass http://app; proxy_next_upstream off; }}
    }}
}}
"""


@contextlib.contextmanager
def running_nginx(
    tmp_path: Path, *, upstream_block: str | None = None, upstream_text: str | None = None
) -> Iterator[Nginx]:
    """A real nginx whose upstream `app` is `upstream_block` (default: only the include) and whose
    include file starts as `upstream_text` (default: oceand's placeholder)."""
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install -y nginx)")
    prefix = tmp_path / "nginx"
    for d in ("logs", "tmp", "upstreams"):
        (prefix / d).mkdir(parents=True)
    os.chmod(tmp_path, 0o755)
    upstream_file = prefix / "upstreams" / "app.upstream"
    upstream_file.write_text(render_upstream([]) if upstream_text is None else upstream_text)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_conf(prefix, port, upstream_file, upstream_block))
    proc = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        _wait_port(port, proc, prefix / "logs" / "error.log")
        yield Nginx(prefix, conf, upstream_file, port, proc, NGINX)
    finally:
        _stop(proc, signal.SIGQUIT)


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    with running_nginx(tmp_path) as n:
        yield n


@dataclass
class Haproxy:
    dir: Path
    main_cfg: Path
    servers_file: Path
    socket: Path
    port: int
    procs: list[subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reload(self) -> None:
        """Start a new HAProxy from the config files; the old one finishes softly (-sf)."""
        old = self.procs[-1]
        new = subprocess.Popen(
            [
                HAPROXY or "haproxy",
                "-db",
                "-f",
                str(self.main_cfg),
                "-f",
                str(self.servers_file),
                "-sf",
                str(old.pid),
            ],
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(new)
        old.wait(WAIT)  # it leaves once its connections are done

    def check(self) -> subprocess.CompletedProcess[str]:
        """`haproxy -c` on the config files as they are now (what a reload would load)."""
        return subprocess.run(
            [HAPROXY or "haproxy", "-c", "-f", str(self.main_cfg), "-f", str(self.servers_file)],
            capture_output=True,
            text=True,
            timeout=10,
        )


@contextlib.contextmanager
def running_haproxy(tmp_path: Path, servers_text: str | None = None) -> Iterator[Haproxy]:
    """A real HAProxy whose backend `be_app` is in its own file (`servers_text`, default: oceand's
    new section without servers), started with `-f main.cfg -f that file`."""
    if HAPROXY is None:
        pytest.skip("haproxy is not installed (apt-get install -y haproxy)")
    sock = tmp_path / "admin.sock"
    port = free_port()
    main_cfg = tmp_path / "haproxy.cfg"
    main_cfg.write_text(
        f"""global
    stats socket {sock} mode 600 level admin
    stats timeout 30s
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:{port}
    default_backend be_app
"""
    )
    servers_file = tmp_path / "oceand" / "be_app.cfg"
    servers_file.parent.mkdir()
    servers_file.write_text(render_backend("be_app", []) if servers_text is None else servers_text)
    proc = subprocess.Popen(
        [HAPROXY, "-db", "-f", str(main_cfg), "-f", str(servers_file)], stderr=subprocess.DEVNULL
    )
    h = Haproxy(tmp_path, main_cfg, servers_file, sock, port, [proc])
    try:
        _wait_port(port, proc, tmp_path / "none")
        _wait_socket(sock, proc)
        yield h
    finally:
        for p in h.procs:
            _stop(p, signal.SIGTERM)


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[Haproxy]:
    with running_haproxy(tmp_path) as h:
        yield h
