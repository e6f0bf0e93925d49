"""HAProxy driver, reconciler and `show stat` rates against a real HAProxy 2.6 on 127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from actuators.lb import LBError, split_lines
from actuators.lb.albstats import HaproxyStats, parse_show_stat
from actuators.lb.diff import Backend, Op
from actuators.lb.haproxy import (
    HaproxyDriver,
    haproxy_command,
    merge_backend,
    parse_servers_state,
    render_backend,
    server_name,
)
from actuators.lb.reconcile import Reconciler
from policies.document import HaproxyLB
from tests.lb.conftest import WAIT, Haproxy, HttpBackend, make_app, running_haproxy, wait_until


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
    await asyncio.wait_for(b1.slow_started.wait(), WAIT)

    r = await rec.reconcile(make_app(b2.key), now=101.0)
    assert r.ok, r.error
    assert [str(op) for op in r.ops] == [f"drain 127.0.0.1:{b1.port}", f"add 127.0.0.1:{b2.port} weight=10"]
    hits = b1.hits
    assert await answers(http, haproxy) == {f"200 backend-{b2.port}"}  # new requests reach the new instance
    assert b1.hits == hits  # and none the drained one
    state = {b.name: b.state for b in await driver(haproxy).read()}
    assert state == {server_name(*b1.key): "draining", server_name(*b2.key): "active"}

    b1.release.set()
    assert await asyncio.wait_for(slow, WAIT) == f"200 slow-{b1.port}"  # its in-flight request completes

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
    await asyncio.wait_for(broken.blocked.wait(), WAIT)
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
    assert [ln for ln in text.splitlines() if not ln.startswith("#")] == [
        "backend be",
        "    balance leastconn",
        "    server s1 10.0.0.1:1 weight 7 disabled check inter 2s",
        "    server t_10_0_0_2_2 10.0.0.2:2 weight 0 check inter 2s",
        "    server t___1_3 [::1]:3 weight 1 check inter 2s",
    ]


def operator_backend(sorry_port: int) -> str:
    """A backend as an operator writes it: settings oceand knows nothing of, and a server of their own."""
    return f"""# be_app: written by the operator
backend be_app
    mode http
    balance leastconn
    option httpchk GET /health
    http-check expect status 200
    timeout server 7s
    option http-server-close
    default-server inter 100ms fall 2 rise 1

    # my own sorry server: oceand must leave it alone
    server sorry 127.0.0.1:{sorry_port} backup check

    retries 2
"""


def without_owned(text: str) -> str:
    return "".join(ln for ln in split_lines(text) if not ln.lstrip().startswith("server t_"))


async def test_the_operators_backend_lines_and_servers_survive_adds_drains_and_removals(
    tmp_path: Path, backends: list[HttpBackend], http: aiohttp.ClientSession
) -> None:
    b1, b2, sorry = backends
    original = operator_backend(sorry.port)
    with running_haproxy(tmp_path, original) as h:
        rec = Reconciler("job", lb(drain=10), driver(h, server_options="check"))

        async def step(app_backends: list[HttpBackend], now: float, ops: list[str]) -> str:
            r = await rec.reconcile(make_app(*(b.key for b in app_backends)), now=now)
            assert r.ok, r.error
            assert sorted(str(op) for op in r.ops) == sorted(ops)
            text = h.servers_file.read_text()
            assert without_owned(text) == original  # every other line, byte for byte
            checked = h.check()
            assert checked.returncode == 0, checked.stdout + checked.stderr
            return text

        text = await step(
            [b1, b2], 1.0, [f"add 127.0.0.1:{b1.port} weight=10", f"add 127.0.0.1:{b2.port} weight=10"]
        )
        first = server_name("127.0.0.1", min(b1.port, b2.port))  # the servers go after the operator's
        assert f"    server sorry 127.0.0.1:{sorry.port} backup check\n    server {first} " in text
        assert await answers(http, h) == {f"200 backend-{b1.port}", f"200 backend-{b2.port}"}

        async def http_checked() -> bool:  # the added servers run the backend's `option httpchk`
            rows = (await haproxy_command(h.socket, "show stat be_app 4 -1")).splitlines()
            ok = {r.split(",")[1] for r in rows if ",L7OK," in r}
            return {server_name(*b1.key), server_name(*b2.key)} <= ok

        await wait_until(http_checked, "HTTP health checks (L7OK) on the added servers")
        h.reload()  # the merged file is what a new HAProxy process loads; the runtime API works on it

        async def reloaded() -> bool:
            try:
                return await answers(http, h, 6) == {f"200 backend-{b1.port}", f"200 backend-{b2.port}"}
            except aiohttp.ClientError:
                return False

        await wait_until(reloaded, "the reloaded HAProxy to serve b1 and b2")
        await step([b2], 2.0, [f"drain 127.0.0.1:{b1.port}"])
        await step([b2], 12.0, [f"delete 127.0.0.1:{b1.port}"])
        await step([], 13.0, [f"drain 127.0.0.1:{b2.port}"])
        text = await step([], 23.0, [f"delete 127.0.0.1:{b2.port}"])
        assert text == original

        state = parse_servers_state(await haproxy_command(h.socket, "show servers state be_app"), "be_app")
        assert state == [Backend("127.0.0.1", sorry.port, 1, "active", "sorry")]  # never drained
        assert await answers(http, h) == {f"200 backend-{sorry.port}"}  # the backup serves
        assert await driver(h).read() == []


SECTION = "backend be\n    balance leastconn\n    timeout server 5s\n"
T1 = Backend("10.0.0.1", 1, 5, "active", "t_10_0_0_1_1")
T2 = Backend("10.0.0.2", 2, 5, "draining")
T1_LINE = "server t_10_0_0_1_1 10.0.0.1:1 weight 5"
T2_LINE = "server t_10_0_0_2_2 10.0.0.2:2 weight 0"


@pytest.mark.parametrize(
    ("text", "servers", "expected"),
    [
        pytest.param(SECTION, [T1], SECTION + f"    {T1_LINE}\n", id="no servers: after the last setting"),
        pytest.param(
            SECTION + "\n# next: the frontend\n\nfrontend fe\n    bind :80\n",
            [T1, T2],
            SECTION + f"    {T1_LINE}\n    {T2_LINE}\n\n# next: the frontend\n\nfrontend fe\n    bind :80\n",
            id="before trailing comments; the next section untouched",
        ),
        pytest.param(
            "backend be\n    server mine 10.9.9.9:80 backup\n    # comment\n    option httpchk\n",
            [T1],
            f"backend be\n    server mine 10.9.9.9:80 backup\n    {T1_LINE}\n    # comment\n    option httpchk\n",
            id="after the operator's last server",
        ),
        pytest.param(
            f"backend be\n\tmode http\n\t{T2_LINE} check\n\tserver mine 10.9.9.9:80\n\t{T1_LINE}\n\tretries 3\n",
            [T1],
            f"backend be\n\tmode http\n\t{T1_LINE}\n\tserver mine 10.9.9.9:80\n\tretries 3\n",
            id="owned lines replaced where the first one was, indentation kept",
        ),
        pytest.param("backend be\n    mode http", [T1], f"backend be\n    mode http\n    {T1_LINE}\n", id="no final newline"),
        pytest.param("listen be\n    bind :80\n", [T1], f"listen be\n    bind :80\n    {T1_LINE}\n", id="listen section"),
        pytest.param(
            "backend be_other\n    mode tcp\n" + SECTION + "backend be2\n    mode tcp\n",
            [T1],
            "backend be_other\n    mode tcp\n" + SECTION + f"    {T1_LINE}\nbackend be2\n    mode tcp\n",
            id="only its own section",
        ),
        pytest.param(SECTION + f"    {T1_LINE}\n", [], SECTION, id="last server removed"),
    ],
)  # fmt: skip
def test_merge_backend(text: str, servers: list[Backend], expected: str) -> None:
    assert merge_backend(text, "be", servers) == expected


def test_merge_backend_without_the_section_adds_it() -> None:
    assert merge_backend(None, "be", [T1]) == render_backend("be", [T1])
    other = "# the operator's file\nbackend be_other\n    mode tcp"
    assert merge_backend(other, "be", [T1]) == other + "\n\n" + render_backend("be", [T1])


async def test_read_reports_only_owned_servers(tmp_path: Path) -> None:
    with running_haproxy(
        tmp_path, "backend be_app\n    balance roundrobin\n    server mine 127.0.0.1:9 weight 3\n"
    ) as h:
        assert await driver(h).read() == []
        await driver(h).apply([Op("add", "127.0.0.1", 10, 4)])
        assert await driver(h).read() == [Backend("127.0.0.1", 10, 4, "active", "t_127_0_0_1_10")]
        assert (
            "    server mine 127.0.0.1:9 weight 3\n    server t_127_0_0_1_10 " in h.servers_file.read_text()
        )


def test_merge_backend_updates_the_header_of_earlier_versions() -> None:
    old = (
        "# Managed by oceand: HAProxy backend be and its servers. Rewritten on every change.\n"
        "# Load it after the main config: haproxy -f haproxy.cfg -f <this file or its folder>\n"
        f"backend be\n    balance roundrobin\n    {T1_LINE}\n"
    )
    assert merge_backend(old, "be", [T1]) == render_backend("be", [T1])
