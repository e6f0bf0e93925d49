"""The transfer listeners in a daemon on 127.0.0.1 (PRODUCT §9): `[ingest] rpc_listen` served as falcon-plus
transfer serves `Transfer.Update` / `Transfer.Ping`, `[ingest] tsdb_listen` taking transfer's `put` lines;
both into the same item rules, routing and counters as `/v1/push`, and every kind of bad input refused or
closed with a reason and counted while the other connections keep being served.

The daemon's clock is fixed (buckets stay open: the test reads what reached them) and each listener's idle
clock is a variable the test moves.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from oceand.config import ConfigError, validate_config
from oceand.daemon import Daemon
from oceand.listeners import Listener
from tests.conftest import Client, DaemonFactory
from tests.e2e.test_marathon_loop import JOB, job_doc
from tests.fakes.transfer import RpcClient, TsdbClient, agent_item, transfer_item

NOW = 1_700_000_030.0
T = 1_700_000_000  # in the open bucket [..._980, ..._040) of a 60 s period
IDLE = 300.0


class Env:
    def __init__(self, d: Daemon, c: Client) -> None:
        self.d = d
        self.c = c
        self.idle_now = 0.0
        for ln in d.listeners.by_name.values():
            ln.clock = lambda: self.idle_now

    def ln(self, name: str) -> Listener:
        return self.d.listeners[name]

    async def rpc(self) -> RpcClient:
        return await RpcClient.connect(*self.ln("rpc").address)

    async def tsdb(self) -> TsdbClient:
        return await TsdbClient.connect(*self.ln("tsdb").address)

    def bucket(self) -> dict[str, float]:
        """instance -> the cpu.used value in the job's open bucket."""
        jb = self.d.engine.jobs[JOB].buckets
        out: dict[str, float] = {}
        for b in jb.open.values():
            out.update({inst: v for inst, (_, v) in b.values[0].items()})
        return out

    async def metric(self, name: str, **labels: str) -> float:
        _, text = await self.c.call("GET", "/metrics")
        sel = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))  # as rendered: sorted
        m = re.search(rf"^{name}\{{{re.escape(sel)}\}} (\S+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    async def event(self, listener: str, event: str) -> float:
        return await self.metric("oceand_listener_events_total", listener=listener, event=event)


Setup = Callable[..., Awaitable[Env]]


@pytest.fixture
def setup(start_daemon: DaemonFactory) -> Setup:
    async def make(**ingest: Any) -> Env:
        conf = {"rpc_listen": "127.0.0.1:0", "tsdb_listen": "127.0.0.1:0", **ingest}
        d, c = await start_daemon(clock=lambda: NOW, ingest=conf)
        assert (await c.call("POST", "/api/v1/jobs", job_doc(period="60s")))[0] == 201
        return Env(d, c)

    return make


async def until(cond: Callable[[], Any], what: str, timeout: float = 5.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        v = cond()
        if v:
            return v
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def hosts(n: int, value: float = 10.0, start: int = 0) -> list[dict[str, Any]]:
    return [agent_item(f"h{i}", "cpu.idle", T, value, f"job={JOB}") for i in range(start, start + n)]


# ---- Transfer.Update / Transfer.Ping ----------------------------------------------------------------


async def test_update_answers_transfer_response_and_feeds_the_job(setup: Setup) -> None:
    env = await setup()
    cl = await env.rpc()
    assert await cl.call("Transfer.Ping", {}) == {"code": 0}
    bad = agent_item("h9", "cpu.idle", T, 1.0, f"job={JOB}", step=0)
    r1 = await cl.update([*hosts(2), bad])
    assert (r1["Message"], r1["Total"], r1["Invalid"]) == ("ok", 3, 1)
    assert isinstance(r1["Latency"], int)
    # the same connection, a transfer's forwarded item (value float64, tags sorted) and an odd-shaped one
    r2 = await cl.update(
        [
            transfer_item("h2", "cpu.idle", T, 30, {"job": JOB, "cpu": "all"}),
            {**hosts(1, start=3)[0], "value": "40"},
        ]
    )
    assert (r2["Total"], r2["Invalid"]) == (2, 0)
    assert env.bucket() == {"h0": 90.0, "h1": 90.0, "h2": 70.0, "h3": 60.0}
    assert await env.metric("oceand_listener_samples_total", listener="rpc", result="accepted") == 4
    assert await env.metric("oceand_listener_samples_total", listener="rpc", result="rejected") == 1
    assert await env.metric("oceand_samples_total", result="accepted") == 4
    assert await env.event("rpc", "update") == 2 and await env.event("rpc", "ping") == 1
    await cl.close()


async def test_pipelined_calls_are_answered_in_order_with_their_ids(setup: Setup) -> None:
    env = await setup()
    cl = await env.rpc()
    reqs = [cl.request("Transfer.Update", hosts(1, start=i)) for i in range(3)]
    await cl.send_raw(b"".join(data for _, data in reqs))
    replies = [await cl.reply() for _ in reqs]
    assert [r["id"] for r in replies] == [0, 1, 2]
    assert all(r["error"] is None and r["result"]["Total"] == 1 for r in replies)
    assert set(env.bucket()) == {"h0", "h1", "h2"}
    await cl.close()


async def test_many_connections_many_calls(setup: Setup) -> None:
    env = await setup()
    clients = [await env.rpc() for _ in range(20)]

    async def agent(i: int, cl: RpcClient) -> list[int]:
        return [(await cl.update(hosts(1, value=float(k), start=i)))["Total"] for k in range(5)]

    totals = await asyncio.gather(*(agent(i, cl) for i, cl in enumerate(clients)))
    assert totals == [[1] * 5] * 20
    assert env.bucket() == {f"h{i}": 96.0 for i in range(20)}  # each host's last sample: cpu.idle 4
    for cl in clients:
        await cl.close()


async def test_request_without_its_newline_is_served(setup: Setup) -> None:
    env = await setup()
    cl = await env.rpc()
    _, data = cl.request("Transfer.Ping", {})
    await cl.send_raw(data.rstrip(b"\n"))
    assert (await cl.reply())["result"] == {"code": 0}
    await cl.close()


# ---- bad input on the RPC listener ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "event", "error"),
    [
        pytest.param(
            b'{"method":"Transfer.Query","params":[{}],"id":0}\n',
            "unknown_method",
            "can't find method",
            id="unknown-method",
        ),
        pytest.param(b"GET / HTTP/1.1\r\n", "bad_json", "not JSON", id="not-json"),
        pytest.param(
            b'{"method":"Transfer.Update","params":[[{"endpoint":"h\xff","metric":"cpu.idle"}]],"id":0}\n',
            "not_utf8",
            "not UTF-8",
            id="non-utf8",
        ),
        pytest.param(
            b'{"method":"Transfer.Update","params":{"a":1},"id":0}\n',
            "bad_params",
            "params",
            id="params-not-a-list",
        ),
    ],
)
async def test_a_bad_call_is_answered_with_a_reason_and_the_connection_kept(
    setup: Setup, frame: bytes, event: str, error: str
) -> None:
    env = await setup()
    cl = await env.rpc()
    await cl.send_raw(frame)
    rep = await cl.reply()
    assert rep["result"] is None and error in rep["error"]
    cl.seq = 1
    assert (await cl.update(hosts(1)))["Total"] == 1  # the same connection goes on
    assert env.bucket() == {"h0": 90.0}
    assert await env.event("rpc", event) == 1
    await cl.close()


async def test_half_a_frame_then_silence_is_closed_when_idle(setup: Setup) -> None:
    env = await setup()
    half = await env.rpc()
    await half.send_raw(b'{"method":"Transfer.Update","params":[[{"endpoint":"h0",')
    good = await env.rpc()
    assert (await good.update(hosts(1)))["Total"] == 1
    env.idle_now = IDLE + 1  # the good connection makes a call at this time, the half frame never ends
    assert (await good.update(hosts(1, start=1)))["Total"] == 1
    assert env.ln("rpc").sweep() == 1
    goodbye = await half.closed()
    assert b"no complete request for 300 s" in goodbye
    assert (await good.update(hosts(1, start=2)))["Total"] == 1
    assert await env.event("rpc", "closed_idle") == 1
    assert set(env.bucket()) == {"h0", "h1", "h2"}
    await good.close()


async def test_a_100_mb_frame_closes_that_connection_only_with_bounded_memory(setup: Setup) -> None:
    env = await setup(rpc_max_frame="1MiB")
    good = await env.rpc()
    big = await env.rpc()
    chunk = b"[" * (1024 * 1024)
    sent = 0
    with pytest.raises((ConnectionError, OSError)):
        for _ in range(100):
            await big.send_raw(chunk)
            sent += len(chunk)
        await big.reply()
    assert sent < 100 * len(chunk)  # the server stopped reading long before the end
    await until(lambda: len(env.ln("rpc").conns) == 1, "the big one closed, the good one open")
    assert env.ln("rpc").max_buffered <= 1024 * 1024 + 256 * 1024
    assert await env.event("rpc", "closed_frame_too_large") == 1
    assert (await good.update(hosts(1)))["Total"] == 1
    await good.close()


async def test_connection_cap_refuses_the_extra_ones_and_idle_ones_are_closed(setup: Setup) -> None:
    env = await setup(listen_max_connections=500)
    idle = [await env.rpc() for _ in range(500)]
    await until(lambda: len(env.ln("rpc").conns) == 500, "500 connections")
    extra = [await env.rpc() for _ in range(100)]
    for cl in extra:
        assert b"too many connections (at most 500)" in await cl.closed()
    assert await env.event("rpc", "refused_max_connections") == 100
    assert (await idle[0].update(hosts(1)))["Total"] == 1  # an open one is still served
    env.idle_now = IDLE + 1
    assert env.ln("rpc").sweep() == 500
    await until(lambda: not env.ln("rpc").conns, "every idle connection closed")
    assert await env.metric("oceand_listener_connections", listener="rpc") == 0
    fresh = await env.rpc()
    assert (await fresh.update(hosts(1, start=1)))["Total"] == 1
    assert set(env.bucket()) == {"h0", "h1"}
    for cl in [*idle, *extra, fresh]:
        await cl.close()


@pytest.mark.parametrize(
    ("allow", "admitted"),
    [
        pytest.param(["10.0.0.0/8"], False, id="sender outside allow: closed with the reason"),
        pytest.param(["10.0.0.0/8", "127.0.0.0/8"], True, id="sender inside allow: served"),
    ],
)
async def test_ingest_allow_names_the_senders_of_both_listeners(
    setup: Setup, allow: list[str], admitted: bool
) -> None:
    """Go net/rpc and put lines carry no token: `[ingest] allow` is these listeners' guard."""
    env = await setup(allow=allow, token="t" * 16)  # the token does not open them
    rpc, tsdb = await env.rpc(), await env.tsdb()
    if admitted:
        assert (await rpc.update(hosts(1)))["Total"] == 1
        await tsdb.put([("h1", "cpu.idle", T, 20.0, {"job": JOB})])
        await until(lambda: set(env.bucket()) == {"h0", "h1"}, "both samples in the bucket")
        assert await env.event("rpc", "refused_not_allowed") == 0
    else:
        assert b"sender 127.0.0.1 is not in [ingest] allow" in await rpc.closed()
        assert (
            await asyncio.wait_for(tsdb.reader.read(), 5)
            == b"error: sender 127.0.0.1 is not in [ingest] allow\n"
        )
        assert await env.event("rpc", "refused_not_allowed") == 1
        assert await env.event("tsdb", "refused_not_allowed") == 1
        assert await env.metric("oceand_auth_denied_total", reason="ingest_not_allowed") == 2
        assert not env.ln("rpc").conns and not env.bucket()
    await rpc.close()
    await tsdb.close()


@pytest.mark.parametrize(
    ("allow", "remote", "admitted"),
    [
        pytest.param(["10.0.0.0/8"], "10.1.2.3", True, id="v4 in v4 net"),
        pytest.param(["10.0.0.0/8"], "11.1.2.3", False, id="v4 outside"),
        pytest.param(["10.0.0.0/8"], "::ffff:10.1.2.3", True, id="v4-mapped sender counts as its v4"),
        pytest.param(["fd00::/8"], "fd00::1%eth0", True, id="v6 with a zone"),
        pytest.param(["fd00::/8"], "10.1.2.3", False, id="v4 against a v6 net"),
        pytest.param(["10.0.0.0/8"], None, False, id="no peer address (a unix socket)"),
        pytest.param(["10.0.0.0/8"], "not-an-ip", False, id="garbage"),
    ],
)
def test_allow_table(allow: list[str], remote: str | None, admitted: bool) -> None:
    s = validate_config({"ingest": {"allow": allow}}, file="f", base_dir=Path("."), path=None).ingest
    assert s.allows(remote) is admitted


@pytest.mark.parametrize("key", ["rpc_listen", "tsdb_listen"])
def test_transfer_listeners_beyond_loopback_need_allow_a_token_is_not_enough(key: str) -> None:
    with pytest.raises(ConfigError) as e:
        validate_config(
            {"ingest": {key: "0.0.0.0:8433", "token": "t" * 16}}, file="f", base_dir=Path("."), path=None
        )
    assert e.value.key == "ingest.allow" and f"ingest.{key} '0.0.0.0:8433'" in e.value.message
    assert "carries no token" in e.value.message
    ok = {"ingest": {key: "0.0.0.0:8433", "allow": ["10.0.0.0/8"]}}
    assert getattr(validate_config(ok, file="f", base_dir=Path("."), path=None).ingest, key) == "0.0.0.0:8433"


# ---- OpenTSDB put lines -----------------------------------------------------------------------------


async def test_put_lines_feed_the_job_and_bad_lines_are_answered_and_counted(setup: Setup) -> None:
    env = await setup()
    cl = await env.tsdb()
    await cl.put([(f"h{i}", "cpu.idle", T, 20.0 + i, {"job": JOB}) for i in range(3)])
    await until(lambda: len(env.bucket()) == 3, "3 hosts")
    assert env.bucket() == {"h0": 80.0, "h1": 79.0, "h2": 78.0}
    tags300 = b" ".join(b"t%d=v" % i for i in range(300))
    bad = [
        (b"put cpu.idle 1700000000 abc endpoint=h5 job=" + JOB.encode(), "bad_value"),
        (b"put cpu.idle 1700000000 1 endpoint=h5 " + tags300, "too_many_tags"),
        (b"put cpu.idle 1700000000 1 endpoint=h\xff job=" + JOB.encode(), "not_utf8"),
        (b"put cpu.idle 1700000000 1 job=" + JOB.encode(), "no_endpoint"),
        (b"stats", "unknown_command"),
    ]
    for line, _ in bad:
        await cl.send_raw(line + b"\n")
        assert (await cl.line()).startswith(b"error: ")
    for _, event in bad:
        assert await env.event("tsdb", event) == 1, event
    await cl.put([("h3", "cpu.idle", T, 50.0, {"job": JOB})])  # the same connection goes on
    await until(lambda: "h3" in env.bucket(), "h3")
    assert await env.metric("oceand_listener_samples_total", listener="tsdb", result="accepted") == 4
    assert await env.event("tsdb", "put") == 4
    await cl.close()


async def test_item_rules_apply_to_put_lines(setup: Setup) -> None:
    env = await setup()
    cl = await env.tsdb()
    long_metric = "m" * 600  # past transfer's metric+tags limit: the item rules refuse it
    await cl.send_raw(f"put {long_metric} {T} 1 endpoint=h1\n".encode())
    assert (await cl.line()).startswith(b"error: put mmmm")
    await cl.send_raw(f"put cpu.idle {T} 1 endpoint=h1\nput {long_metric} {T} 1 endpoint=h2\n".encode())
    line = await cl.line()
    assert line.endswith(b" endpoint=h2: metric+tags: longer than 510 characters\n"), line
    assert await env.metric("oceand_listener_samples_total", listener="tsdb", result="rejected") == 2
    await cl.close()


async def test_a_100_mb_line_is_skipped_and_the_next_line_is_served(setup: Setup) -> None:
    env = await setup(tsdb_max_line="64KiB")
    cl = await env.tsdb()
    chunk = b"x" * (1024 * 1024)
    for _ in range(100):
        await cl.send_raw(chunk)
    await cl.send_raw(b"\n")
    await cl.put([("h1", "cpu.idle", T, 10.0, {"job": JOB})])
    await until(lambda: "h1" in env.bucket(), "the line after the long one")
    assert b"longer than 65536 bytes" in await cl.line()
    assert env.ln("tsdb").max_buffered <= 64 * 1024 + 256 * 1024
    assert await env.event("tsdb", "line_too_long") == 1
    await cl.close()


async def test_a_line_never_finished_is_closed_when_idle(setup: Setup) -> None:
    env = await setup()
    slow = await env.tsdb()
    await slow.send_raw(b"put cpu.idle 1700000000 1 endpo")
    good = await env.tsdb()
    env.idle_now = IDLE + 1
    await good.put([("h1", "cpu.idle", T, 10.0, {"job": JOB})])
    await until(lambda: "h1" in env.bucket(), "h1")
    assert env.ln("tsdb").sweep() == 1
    assert b"error: no complete request for 300 s" in await slow.reader.read()
    assert await env.event("tsdb", "closed_idle") == 1
    await good.put([("h2", "cpu.idle", T, 10.0, {"job": JOB})])
    await until(lambda: "h2" in env.bucket(), "h2 on the connection that is still open")
    await good.close()


async def test_no_listener_unless_configured(start_daemon: DaemonFactory) -> None:
    d, _ = await start_daemon()
    assert d.listeners.by_name == {}


async def test_a_client_that_never_reads_is_not_read_either_and_is_closed_when_idle(setup: Setup) -> None:
    env = await setup()
    ln = env.ln("rpc")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(ln.address)
    sock.setblocking(False)
    _, writer = await asyncio.open_connection(sock=sock)
    conn = await until(lambda: next(iter(ln.conns), None), "the connection")
    assert conn.transport is not None
    conn.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ping = RpcClient(None, None).request("Transfer.Ping", {})[1]  # type: ignore[arg-type]
    writer.write(ping * 200_000)  # 9.6 MB of calls whose replies are never read
    await until(lambda: not conn.transport.is_reading(), "the server to stop reading", timeout=30)
    backlog = conn.transport.get_write_buffer_size()
    assert backlog < 2 * 1024 * 1024  # the high-water mark plus the replies of one read
    assert 0 < await env.event("rpc", "ping") < 200_000  # the rest waits in the socket, unread
    env.idle_now = IDLE + 1
    assert ln.sweep() == 1
    await until(lambda: not ln.conns, "the connection aborted")
    assert await env.event("rpc", "closed_idle") == 1
    writer.transport.abort()


async def test_an_idle_connection_holding_nothing_is_kept_while_the_listener_has_room(setup: Setup) -> None:
    """transfer's pools keep idle connections, and its tsdb backend never reads: closing one loses the
    batch transfer writes next on it. So a clean idle connection stays until the listener is half full."""
    env = await setup(listen_max_connections=4)
    pooled = await env.tsdb()
    await pooled.put([("h1", "cpu.idle", T, 10.0, {"job": JOB})])
    await until(lambda: "h1" in env.bucket(), "h1")
    partial = await env.tsdb()
    await partial.send_raw(b"put cpu.idle")
    await until(lambda: any(c.pending() for c in env.ln("tsdb").conns), "the partial line buffered")
    env.idle_now = 10 * IDLE
    assert env.ln("tsdb").sweep() == 1  # the partial line only: 2 of 4 is not more than half
    await pooled.put([("h2", "cpu.idle", T, 10.0, {"job": JOB})])
    await until(lambda: "h2" in env.bucket(), "h2 on the pooled connection, hours later")
    crowd = [await env.tsdb() for _ in range(2)]
    await until(lambda: len(env.ln("tsdb").conns) == 3, "3 open")
    env.idle_now = 20 * IDLE
    assert env.ln("tsdb").sweep() == 3  # 3 of 4 is more than half: every idle one goes
    for cl in [pooled, partial, *crowd]:
        await cl.close()


async def test_stop_closes_open_connections_with_a_reason(setup: Setup) -> None:
    env = await setup()
    rpc, tsdb = await env.rpc(), await env.tsdb()
    assert (await rpc.update(hosts(1)))["Total"] == 1
    await until(lambda: len(env.ln("tsdb").conns) == 1, "the tsdb connection")
    await env.d.stop()
    assert b"the daemon is stopping" in await rpc.closed()
    assert b"error: the daemon is stopping" in await tsdb.reader.read()
    with pytest.raises(OSError):
        await env.rpc()
