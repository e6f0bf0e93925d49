"""nginx driver and reconciler against a real nginx on 127.0.0.1 with aiohttp backends."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from actuators.lb import LBError, split_lines
from actuators.lb.albstats import NginxStubStatus, parse_stub_status
from actuators.lb.diff import Backend, Op
from actuators.lb.nginx import PLACEHOLDER_MARK, NginxDriver, NginxInstance, merge, parse, render
from actuators.lb.reconcile import Reconciler
from policies.document import NginxLB
from tests.lb.conftest import WAIT, HttpBackend, Nginx, make_app, running_nginx, wait_until


def setup(nginx: Nginx, *, binary: str | None = None, **kw: object) -> tuple[NginxDriver, NginxInstance]:
    inst = NginxInstance(
        nginx.conf, binary=binary or nginx.binary, prefix=nginx.prefix, min_reload_interval=0
    )
    return NginxDriver(nginx.upstream_file, inst, **kw), inst  # type: ignore[arg-type]


def lb(drain: float = 10.0) -> NginxLB:
    return NginxLB(type="nginx", upstream="app", drain=drain)


async def get(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as resp:
        return f"{resp.status} {await resp.text()}"


def serves_only(http: aiohttp.ClientSession, nginx: Nginx, *bs: HttpBackend) -> Callable[[], Awaitable[bool]]:
    """True once 6 requests in a row reached only these backends (the reload has taken effect)."""
    wanted = {f"200 backend-{b.port}" for b in bs}

    async def check() -> bool:
        seen = {await get(http, nginx.url + "/") for _ in range(6)}
        return seen <= wanted and len(seen) == len(wanted)

    return check


async def test_follows_instances_drains_and_deletes(
    nginx: Nginx, backends: list[HttpBackend], http: aiohttp.ClientSession
) -> None:
    b1, b2, _ = backends
    driver, _ = setup(nginx)
    rec = Reconciler("job", lb(drain=10), driver)
    r = await rec.reconcile(make_app(b1.key), now=100.0)
    assert r.ok, r.error
    await wait_until(serves_only(http, nginx, b1), "nginx to serve b1")

    slow = asyncio.create_task(get(http, nginx.url + "/slow"))  # in flight on b1
    await asyncio.wait_for(b1.slow_started.wait(), WAIT)

    r = await rec.reconcile(make_app(b2.key), now=101.0)
    assert r.ok, r.error
    assert [str(op) for op in r.ops] == [f"drain 127.0.0.1:{b1.port}", f"add 127.0.0.1:{b2.port} weight=1"]
    assert (
        f"server 127.0.0.1:{b1.port} weight=1 max_fails=2 fail_timeout=5s down;"
        in nginx.upstream_file.read_text()
    )
    await wait_until(serves_only(http, nginx, b2), "the new backend to take the traffic")
    hits = b1.hits
    for _ in range(20):
        assert await get(http, nginx.url + "/") == f"200 backend-{b2.port}"
    assert b1.hits == hits  # the drained backend gets no new requests

    b1.release.set()
    assert await asyncio.wait_for(slow, WAIT) == f"200 slow-{b1.port}"  # while its in-flight one completes

    r = await rec.reconcile(make_app(b2.key), now=105.0)
    assert r.ok and r.ops == []  # still draining
    r = await rec.reconcile(make_app(b2.key), now=111.0)
    assert [str(op) for op in r.ops] == [f"delete 127.0.0.1:{b1.port}"]
    assert parse(nginx.upstream_file.read_text()) == [Backend("127.0.0.1", b2.port, 1)]
    r = await rec.reconcile(make_app(), now=112.0)  # no instances left: placeholder keeps nginx -t happy
    r = await rec.reconcile(make_app(), now=130.0)
    assert r.ok and await driver.read() == []
    await wait_until(lambda: _status_is(http, nginx, 502), "nginx to answer 502 with no backends")
    assert rec.status()["backends"] == []


async def _status_is(http: aiohttp.ClientSession, nginx: Nginx, status: int) -> bool:
    async with http.get(nginx.url + "/") as resp:
        return resp.status == status


@pytest.mark.parametrize(
    ("kw", "op", "message"),
    [
        pytest.param({}, Op("add", "127.0.0.1", 0, 1), 'invalid port in upstream "127.0.0.1:0"', id="port 0"),
        pytest.param(
            {"fail_timeout": "5x"}, None, 'invalid parameter "fail_timeout=5x"', id="invalid parameter"
        ),
    ],
)
async def test_broken_render_is_caught_and_nginx_keeps_serving(
    nginx: Nginx,
    backends: list[HttpBackend],
    http: aiohttp.ClientSession,
    kw: dict[str, object],
    op: Op | None,
    message: str,
) -> None:
    b1, b2, _ = backends
    good, _ = setup(nginx)
    await good.apply([Op("add", *b1.key, 1)])
    await wait_until(serves_only(http, nginx, b1), "nginx to serve b1")
    before = nginx.upstream_file.read_text()

    bad, inst = setup(nginx, fail_timeout=str(kw.get("fail_timeout", "5s")))
    bad._pending = False  # only the failing change is under test
    rec = Reconciler("job", lb(), bad)
    app = make_app(b1.key, b2.key)
    if op is not None:  # a port the reconciler itself would skip: drive the driver directly
        with pytest.raises(LBError, match=message) as e:
            await bad.apply([op])
        error: str | None = e.value.message
    else:
        r = await rec.reconcile(app, now=1.0)
        assert not r.ok
        error = r.error
        assert rec.status()["last_error"] == error
    assert error is not None and "nginx -t failed" in error and message in error
    assert nginx.upstream_file.read_text() == before  # the old file is back
    assert inst.reloads == 0
    assert not list(nginx.upstream_file.parent.glob(".*tmp"))
    for _ in range(5):  # the running nginx is untouched
        assert await get(http, nginx.url + "/") == f"200 backend-{b1.port}"


async def test_twice_concurrently_and_killed_half_way(
    nginx: Nginx, backends: list[HttpBackend], http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    b1, b2, b3 = backends
    # an nginx wrapper whose `-t` hangs once, when the hang file exists
    hang, hung = tmp_path / "hang", tmp_path / "hung"
    wrapper = tmp_path / "nginx-wrapper"
    wrapper.write_text(
        f'#!/bin/sh\nif [ "$1" = "-t" ] && [ -e {hang} ]; then rm {hang}; echo $$ > {hung}; exec sleep 60; fi\n'
        f'exec {nginx.binary} "$@"\n'
    )
    wrapper.chmod(0o755)
    driver, inst = setup(nginx, binary=str(wrapper))
    rec = Reconciler("job", lb(), driver)

    assert (await rec.reconcile(make_app(b1.key), now=1.0)).ok
    again = await rec.reconcile(make_app(b1.key), now=2.0)
    assert again.ok and again.ops == [] and inst.reloads == 1  # nothing to do: no reload

    x, y = await asyncio.gather(
        rec.reconcile(make_app(b1.key, b2.key), now=3.0), rec.reconcile(make_app(b1.key, b2.key), now=3.0)
    )
    assert x.ok and y.ok and len(x.ops) == 1 and y.ops == [] and inst.reloads == 2
    await wait_until(serves_only(http, nginx, b1, b2), "nginx to serve b1 and b2")

    hang.touch()
    task = asyncio.create_task(rec.reconcile(make_app(b3.key), now=4.0))

    async def is_hung() -> bool:
        return hung.exists() and hung.read_text().strip() != ""

    await wait_until(is_hung, "nginx -t to hang mid-apply")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ProcessLookupError):  # the hung check was killed and reaped
        os.kill(int(hung.read_text()), 0)
    # the file was written but never checked nor loaded: the rerun finds nothing to diff, yet loads it
    r = await rec.reconcile(make_app(b3.key), now=5.0)
    assert r.ok and r.ops == [] and inst.reloads == 3
    await wait_until(serves_only(http, nginx, b3), "nginx to serve b3 after the rerun")


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.t += seconds
        await asyncio.sleep(0)


async def test_reloads_are_debounced_and_coalesced(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    fake = tmp_path / "nginx"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)
    clock = FakeClock()
    inst = NginxInstance(tmp_path / "nginx.conf", binary=str(fake), clock=clock, sleep=clock.sleep)
    async with inst.lock:
        g1 = inst.changed()
    await inst.reload(g1)
    assert clock.slept == []  # the first reload goes at once
    clock.t += 0.25
    async with inst.lock:
        g2, g3 = inst.changed(), inst.changed()
    await asyncio.gather(inst.reload(g2), inst.reload(g3), inst.reload(g2))
    assert clock.slept == [0.75]  # waited out the rest of the second
    assert inst.reloads == 2  # one reload served all three requests
    assert calls.read_text().splitlines() == [f"-s reload -c {tmp_path / 'nginx.conf'}"] * 2
    clock.t += 5
    await inst.reload(g3)  # already loaded
    assert inst.reloads == 2


async def test_reload_failure_is_an_lberror(tmp_path: Path, nginx: Nginx) -> None:
    inst = NginxInstance(tmp_path / "missing.conf", binary=nginx.binary, min_reload_interval=0)
    async with inst.lock:
        g = inst.changed()
    with pytest.raises(LBError, match="nginx -s reload failed"):
        await inst.reload(g)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(render([]), [], id="placeholder only"),
        pytest.param(
            "server 10.0.0.1:31001 weight=3 max_fails=2 fail_timeout=5s;\nserver [::1]:8080 down;\n"
            "# a comment\nserver example.org backup;  # trailing\n",
            [
                Backend("10.0.0.1", 31001, 3),
                Backend("::1", 8080, 1, "draining"),
                Backend("example.org", 80, 1),
            ],
            id="weights, down, default port",
        ),
    ],
)
def test_parse_upstream_file(text: str, expected: list[Backend]) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("server 10.0.0.1:31001 weight=3\n", "cannot read", id="missing semicolon"),
        pytest.param("server 10.0.0.1:99999;\n", "port must be", id="bad port"),
        pytest.param("server 10.0.0.1:1 weight=x;\n", "bad 'weight=x'", id="bad weight"),
    ],
)
def test_parse_upstream_file_errors(text: str, message: str) -> None:
    with pytest.raises(LBError, match=message):
        parse(text)


async def test_stub_status_rate(
    nginx: Nginx, backends: list[HttpBackend], http: aiohttp.ClientSession
) -> None:
    driver, _ = setup(nginx)
    await driver.apply([Op("add", *backends[0].key, 1)])
    await wait_until(serves_only(http, nginx, backends[0]), "nginx to serve b1")
    stats = NginxStubStatus(nginx.url + "/nginx_status", session=http)
    assert await stats.sample(0.0) is None  # first sample: no rate yet
    await asyncio.gather(*(get(http, nginx.url + "/") for _ in range(200)))
    rate = await stats.sample(10.0)
    assert rate == pytest.approx(20.1)  # 200 requests + the second status request, over 10 s
    # not a stub_status page: the backend's own page, asked directly (through nginx, the 200 requests above
    # may have left the upstream marked failed for fail_timeout, and nginx answers 502: a CI flake)
    bad = NginxStubStatus(f"http://127.0.0.1:{backends[0].port}/")
    assert await bad.sample(0.0) is None and "not an nginx stub_status page" in (bad.last_error or "")
    await bad.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "Active connections: 1 \nserver accepts handled requests\n 7 7 12 \nReading: 0 Writing: 1 Waiting: 0 \n",
            12.0,
            id="stub_status",
        ),
    ],
)
def test_parse_stub_status(text: str, expected: float) -> None:
    assert parse_stub_status(text) == expected


def test_parse_stub_status_rejects_other_pages() -> None:
    with pytest.raises(ValueError, match="not an nginx stub_status page"):
        parse_stub_status("<html>hello</html>")


OPERATOR_UPSTREAM_FILE = """# app: the operator's lines; oceand writes only the server lines
zone app_zone 64k;
least_conn;

server 127.0.0.1:1 down;  # oceand: placeholder, no backends

keepalive 16;
keepalive_timeout 30s;
"""

OPERATOR_UPSTREAM_BLOCK = """
        zone app_zone 64k;
        least_conn;  # before keepalive, as nginx wants
        include {include};
        keepalive 16;
        keepalive_requests 1000;
    """


def without_servers(text: str) -> str:
    return "".join(ln for ln in split_lines(text) if not ln.lstrip().startswith("server "))


@pytest.mark.parametrize(
    ("upstream_block", "upstream_text"),
    [
        pytest.param(None, OPERATOR_UPSTREAM_FILE, id="directives in the include file"),
        pytest.param(OPERATOR_UPSTREAM_BLOCK, None, id="directives in nginx.conf around the include"),
    ],
)
async def test_the_operators_upstream_lines_survive_adds_drains_and_removals(
    tmp_path: Path,
    backends: list[HttpBackend],
    http: aiohttp.ClientSession,
    upstream_block: str | None,
    upstream_text: str | None,
) -> None:
    b1, b2, _ = backends
    with running_nginx(tmp_path, upstream_block=upstream_block, upstream_text=upstream_text) as ngx:
        conf, original = ngx.conf.read_text(), ngx.upstream_file.read_text()
        rec = Reconciler("job", lb(drain=10), setup(ngx)[0])

        async def step(app_backends: list[HttpBackend], now: float, ops: list[str]) -> str:
            r = await rec.reconcile(make_app(*(b.key for b in app_backends)), now=now)
            assert r.ok, r.error
            assert sorted(str(op) for op in r.ops) == sorted(ops)
            text = ngx.upstream_file.read_text()
            assert without_servers(text) == without_servers(original)  # every other line, in place
            assert ngx.conf.read_text() == conf
            checked = ngx.check()
            assert checked.returncode == 0, checked.stderr
            return text

        text = await step(
            [b1, b2], 1.0, [f"add 127.0.0.1:{b1.port} weight=1", f"add 127.0.0.1:{b2.port} weight=1"]
        )
        await wait_until(serves_only(http, ngx, b1, b2), "nginx to serve b1 and b2")
        if upstream_text is not None:  # the servers are where the placeholder was
            first = min(b1.port, b2.port)
            assert f"least_conn;\n\nserver 127.0.0.1:{first} weight=1" in text
            assert "fail_timeout=5s;\n\nkeepalive 16;\n" in text
        await step([b2], 2.0, [f"drain 127.0.0.1:{b1.port}"])
        await wait_until(serves_only(http, ngx, b2), "nginx to serve b2 only")
        await step([b2], 12.0, [f"delete 127.0.0.1:{b1.port}"])
        await step([], 13.0, [f"drain 127.0.0.1:{b2.port}"])
        assert await step([], 23.0, [f"delete 127.0.0.1:{b2.port}"]) == original  # the placeholder is back


@pytest.mark.parametrize(
    ("text", "backends", "expected"),
    [
        pytest.param(
            "keepalive 8;\nserver 10.0.0.9:80 weight=1;\n# note\nserver 10.0.0.8:80 down;\nleast_conn;\n",
            [Backend("10.0.0.1", 1, 2)],
            "keepalive 8;\nserver 10.0.0.1:1 weight=2 max_fails=2 fail_timeout=5s;\n# note\nleast_conn;\n",
            id="server lines replaced where the first one was",
        ),
        pytest.param(
            "\tzone z 64k;\n\tserver 10.0.0.9:80;",
            [Backend("10.0.0.1", 1, 2, "draining")],
            "\tzone z 64k;\n\tserver 10.0.0.1:1 weight=2 max_fails=2 fail_timeout=5s down;\n",
            id="indentation kept, no final newline",
        ),
        pytest.param(
            "zone z 64k;\n",
            [],
            "zone z 64k;\nserver 127.0.0.1:1 down;  " + PLACEHOLDER_MARK + "\n",
            id="no servers: the placeholder at the end",
        ),
        pytest.param(None, [Backend("10.0.0.1", 1, 2)], render([Backend("10.0.0.1", 1, 2)]), id="no file yet"),
    ],
)  # fmt: skip
def test_merge_upstream_file(text: str | None, backends: list[Backend], expected: str) -> None:
    assert merge(text, backends) == expected
    assert parse(expected) == backends


def test_merge_updates_the_header_of_earlier_versions() -> None:
    old = "# Managed by oceand: the servers of one upstream. Rewritten on every change.\nserver 10.0.0.1:1 weight=2;\n"
    assert merge(old, [Backend("10.0.0.1", 1, 2)]) == render([Backend("10.0.0.1", 1, 2)])
