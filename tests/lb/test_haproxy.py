"""HAProxy driver, reconciler and `show stat` rates against a real HAProxy 2.6 on 127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from actuators.lb import LBError
from actuators.lb.diff import Backend, Op
from actuators.lb.haproxy import (
    HaproxyDriver,
    haproxy_command,
    parse_servers_state,
    render_backend,
    server_name,
)
from actuators.lb.reconcile import Reconciler
from collectors.albstats import HaproxyStats, parse_show_stat
from policies.document import HaproxyLB
from tests.lb.conftest import Haproxy, HttpBackend, make_app, wait_until


def driver(h: Haproxy, **kw: object) -> HaproxyDriver:
    return HaproxyDriver(h.socket, "be_app", servers_file=h.servers_file, **kw)  # type: ignore[arg-type]


def lb(drain: float = 10.0) -> HaproxyLB:
    return HaproxyLB(type="haproxy", backend="be_app", drain=drain)


async def get(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as resp:
        return f"{resp.status} {await resp.text()}"


async def answers(http: aiohttp.ClientSession, h: Haproxy, n: int = 20) -> set[str]:
    return {await get(http, h.url + "/") for _ in range(n)}


async def test_follows_instances_drains_and_deletes(
    haproxy: Haproxy, backends: list[HttpBackend], http: aiohttp.ClientSession
) -> None:
    b1, b2, _ = backends
    rec = Reconciler("job", lb(drain=10), driver(haproxy))
    r = await rec.reconcile(make_app(b1.key), now=100.0)
    assert r.ok, r.error
    assert await answers(http, haproxy) == {f"200 backend-{b1.port}"}

    slow = asyncio.create_task(get(http, haproxy.url + "/slow"))  # in flight on b1
    await asyncio.wait_for(b1.slow_started.wait(), 5)

    r = await rec.reconcile(make_app(b2.key), now=101.0)
    assert r.ok, r.error
    assert [str(op) for op in r.ops] == [f"drain 127.0.0.1:{b1.port}", f"add 127.0.0.1:{b2.port} weight=10"]
    hits = b1.hits
    assert await answers(http, haproxy) == {f"200 backend-{b2.port}"}  # new requests reach the new instance
    assert b1.hits == hits  # and none the drained one
    state = {b.name: b.state for b in await driver(haproxy).read()}
    assert state == {server_name(*b1.key): "draining", server_name(*b2.key): "active"}

    b1.release.set()
    assert await asyncio.wait_for(slow, 5) == f"200 slow-{b1.port}"  # its in-flight request completes

    assert (await rec.reconcile(make_app(b2.key), now=105.0)).ops == []
    r = await rec.reconcile(make_app(b2.key), now=111.0)
    assert r.ok, r.error
    assert [str(op) for op in r.ops] == [f"delete 127.0.0.1:{b1.port}"]
    assert await driver(haproxy).read() == [Backend("127.0.0.1", b2.port, 10, "active", server_name(*b2.key))]
    text = haproxy.servers_file.read_text()
    assert f"server {server_name(*b2.key)} 127.0.0.1:{b2.port} weight 10\n" in text
    assert server_name(*b1.key) not in text


async def test_a_reload_keeps_the_servers(
    haproxy: Haproxy, backends: list[HttpBackend], http: aiohttp.ClientSession
) -> None:
    b1, b2, b3 = backends
    rec = Reconciler("job", lb(drain=10), driver(haproxy))
    assert (await rec.reconcile(make_app(b1.key, b2.key, b3.key), now=1.0)).ok
    assert (await rec.reconcile(make_app(b1.key, b2.key), now=2.0)).ok  # b3 draining
    haproxy.reload()  # a new HAProxy process from the config files only

    async def new_process_answers() -> bool:
        try:
            return await answers(http, haproxy, 6) == {f"200 backend-{b1.port}", f"200 backend-{b2.port}"}
        except aiohttp.ClientError:
            return False

    await wait_until(new_process_answers, "the reloaded HAProxy to serve b1 and b2")
    after = {b.name: (b.weight, b.state) for b in await driver(haproxy).read()}
    assert after == {
        server_name(*b1.key): (10, "active"),
        server_name(*b2.key): (10, "active"),
        server_name(*b3.key): (0, "active"),  # the config has no drain state: weight 0 takes no new requests
    }
    r = await rec.reconcile(make_app(b1.key, b2.key), now=3.0)
    assert [str(op) for op in r.ops] == [f"drain 127.0.0.1:{b3.port}"]  # drained again, its clock restarts
    r = await rec.reconcile(make_app(b1.key, b2.key), now=13.0)
    assert [str(op) for op in r.ops] == [f"delete 127.0.0.1:{b3.port}"]


class Interrupted(HaproxyDriver):
    """Blocks forever on the n-th runtime command, so that a test can cancel mid-apply."""

    def __init__(self, h: Haproxy, block_at: int):
        super().__init__(h.socket, "be_app", servers_file=h.servers_file)
        self.block_at = block_at
        self.count = 0
        self.blocked = asyncio.Event()

    async def _cmd(self, command: str) -> str:
        self.count += 1
        if self.count == self.block_at:
            self.blocked.set()
            await asyncio.Event().wait()
        return await super()._cmd(command)


async def test_twice_concurrently_and_killed_half_way(
    haproxy: Haproxy, backends: list[HttpBackend], http: aiohttp.ClientSession
) -> None:
    b1, b2, b3 = backends
    rec = Reconciler("job", lb(), driver(haproxy))
    assert (await rec.reconcile(make_app(b1.key), now=1.0)).ok
    again = await rec.reconcile(make_app(b1.key), now=2.0)
    assert again.ok and again.ops == []
    x, y = await asyncio.gather(
        rec.reconcile(make_app(b1.key, b2.key), now=3.0), rec.reconcile(make_app(b1.key, b2.key), now=3.0)
    )
    assert x.ok and y.ok and len(x.ops) == 1 and y.ops == []
    assert await answers(http, haproxy) == {f"200 backend-{b1.port}", f"200 backend-{b2.port}"}

    # read (1), add b3 (2), set ready (3) <- killed here: b3 exists but is still in maintenance
    broken = Interrupted(haproxy, block_at=3)
    task = asyncio.create_task(
        Reconciler("job", lb(), broken).reconcile(make_app(b1.key, b2.key, b3.key), now=4.0)
    )
    await asyncio.wait_for(broken.blocked.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert {b.name: b.state for b in await driver(haproxy).read()}[server_name(*b3.key)] == "maint"
    r = await rec.reconcile(make_app(b1.key, b2.key, b3.key), now=5.0)
    assert r.ok and [str(op) for op in r.ops] == [f"enable 127.0.0.1:{b3.port} weight=10"]
    assert await answers(http, haproxy, 30) == {f"200 backend-{b.port}" for b in (b1, b2, b3)}
    assert server_name(*b3.key) in haproxy.servers_file.read_text()


async def test_servers_with_health_checks(
    haproxy: Haproxy, backends: list[HttpBackend], http: aiohttp.ClientSession
) -> None:
    d = driver(haproxy, server_options="check inter 100ms")
    r = await Reconciler("job", lb(), d).reconcile(make_app(backends[0].key), now=1.0)
    assert r.ok, r.error
    assert await answers(http, haproxy) == {f"200 backend-{backends[0].port}"}
    assert "weight 10 check inter 100ms" in haproxy.servers_file.read_text()

    async def checked() -> bool:  # `enable health` made HAProxy check the added server
        return ",L4OK," in await haproxy_command(haproxy.socket, "show stat be_app 4 -1")

    await wait_until(checked, "a passed health check on the added server")


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        pytest.param([Op("add", "127.0.0.1", 9, 300)], "not within 0 and 256", id="weight out of range"),
        pytest.param([Op("set_weight", "127.0.0.1", 9, 5)], "No such server", id="edit a missing server"),
    ],
)
async def test_haproxy_refusals_carry_its_text(haproxy: Haproxy, ops: list[Op], message: str) -> None:
    with pytest.raises(LBError, match=message):
        await driver(haproxy).apply(ops)


async def test_missing_backend_and_socket_are_reported(haproxy: Haproxy, tmp_path: Path) -> None:
    with pytest.raises(LBError, match="Can't find backend"):
        await HaproxyDriver(haproxy.socket, "nosuch").read()
    rec = Reconciler("job", lb(), HaproxyDriver(tmp_path / "nosuch.sock", "be_app"))
    r = await rec.reconcile(make_app(("127.0.0.1", 9)), now=1.0)
    assert not r.ok and "cannot reach the HAProxy runtime API" in (r.error or "")
    with pytest.raises(LBError, match="newline"):
        await haproxy_command(haproxy.socket, "show info\nshutdown sessions")


def test_bad_names_are_refused() -> None:
    with pytest.raises(LBError, match="backend name"):
        HaproxyDriver(Path("/x"), "be app;shutdown")
    with pytest.raises(LBError, match="server options"):
        HaproxyDriver(Path("/x"), "be", server_options="check; shutdown")


async def test_show_stat_rate_under_load(
    haproxy: Haproxy, backends: list[HttpBackend], http: aiohttp.ClientSession
) -> None:
    await Reconciler("job", lb(), driver(haproxy)).reconcile(
        make_app(backends[0].key, backends[1].key), now=0.0
    )
    stats = HaproxyStats(haproxy.socket, "be_app")
    assert await stats.sample(100.0) is None  # first sample: no rate yet
    results = await asyncio.gather(*(get(http, haproxy.url + "/") for _ in range(200)))
    assert all(r.startswith("200 ") for r in results)
    assert await stats.sample(110.0) == pytest.approx(20.0)  # 200 requests in 10 s
    assert await stats.sample(110.0) is None  # no time passed
    missing = HaproxyStats(haproxy.socket, "nosuch")
    assert await missing.sample(1.0) is None and missing.last_error is not None


STAT_HEADER = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,status,req_tot,mode,"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            STAT_HEADER + "\nbe,s1,0,0,0,0,,5,UP,5,http,\nbe,BACKEND,0,0,0,0,,9,UP,42,http,\n",
            42.0,
            id="http",
        ),
        pytest.param(STAT_HEADER + "\nbe,BACKEND,0,0,0,0,,17,UP,,tcp,\n", 17.0, id="tcp: stot"),
    ],
)
def test_parse_show_stat(text: str, expected: float) -> None:
    assert parse_show_stat(text, "be") == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("Can't find backend.\n", "Can't find backend", id="error reply"),
        pytest.param(
            STAT_HEADER + "\nother,BACKEND,0,0,0,0,,9,UP,42,http,\n", "no BACKEND row", id="other backend"
        ),
    ],
)
def test_parse_show_stat_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_show_stat(text, "be")


STATE_HEADER = (
    "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
    "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
    "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord\n"
)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        pytest.param("3 be 1 a 10.0.0.1 2 0 10 10 1 1 0 2 0 0 0 0 - 8080 -", Backend("10.0.0.1", 8080, 10, "active", "a"), id="ready"),
        pytest.param("3 be 1 a 10.0.0.1 2 8 10 10 1 1 0 2 0 0 0 0 - 8080 -", Backend("10.0.0.1", 8080, 10, "draining", "a"), id="drain"),
        pytest.param("3 be 1 a 10.0.0.1 0 1 3 3 1 1 0 2 0 0 0 0 - 8080 -", Backend("10.0.0.1", 8080, 3, "maint", "a"), id="new: maint"),
        pytest.param("3 be 1 a ::1 0 5 3 3 1 1 0 2 0 0 0 0 - 80 -", Backend("::1", 80, 3, "maint", "a"), id="config disabled"),
    ],
)  # fmt: skip
def test_parse_servers_state(row: str, expected: Backend) -> None:
    assert parse_servers_state(STATE_HEADER + row + "\n", "be") == [expected]


def test_render_backend() -> None:
    text = render_backend(
        "be",
        [
            Backend("10.0.0.2", 2, 5, "draining"),
            Backend("10.0.0.1", 1, 7, "maint", "s1"),
            Backend("::1", 3, 1),
        ],
        backend_lines=("balance leastconn",),
        server_options="check inter 2s",
    )
    assert text.splitlines()[2:] == [
        "backend be",
        "    balance leastconn",
        "    server s1 10.0.0.1:1 weight 7 disabled check inter 2s",
        "    server t_10_0_0_2_2 10.0.0.2:2 weight 0 check inter 2s",
        "    server t___1_3 [::1]:3 weight 1 check inter 2s",
    ]
