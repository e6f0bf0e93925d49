"""LVS: the ipvsadm driver against tests/fakes/ipvsadm (this kernel has no IPVS), the keepalived
driver against the real `keepalived -t`, and the reconciler's re-entrancy on both."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from actuators.lb import LBError, run_command, split_lines
from actuators.lb.diff import Backend, Op
from actuators.lb.ipvsadm import IpvsadmDriver, parse_save
from actuators.lb.keepalived import PARKED, PARKED_NOTE, KeepalivedDriver, KeepalivedInstance, merge, parse
from actuators.lb.reconcile import Reconciler
from policies.document import LvsLB
from tests.lb.conftest import FAKES, KEEPALIVED, make_app, wait_until

VIP = "10.0.0.10:80"
R1, R2, R3 = ("10.0.1.1", 31001), ("10.0.1.2", 31002), ("10.0.1.3", 31003)


class FakeIpvs:
    def __init__(self, tmp: Path):
        self.state = tmp / "ipvs.json"
        self.env = {
            **os.environ,
            "FAKE_IPVSADM_STATE": str(self.state),
            "FAKE_IPVSADM_LOG": str(tmp / "ipvs.log"),
        }
        self.binary = str(FAKES / "ipvsadm")
        self.log = tmp / "ipvs.log"

    def driver(self, **kw: object) -> IpvsadmDriver:
        return IpvsadmDriver(VIP, binary=self.binary, env=self.env, timeout=10, **kw)  # type: ignore[arg-type]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.binary, *args], env=self.env, capture_output=True, text=True, check=False)

    def table(self) -> list[tuple[str, int, int]]:
        services = parse_save(self.run("-S", "-n").stdout)
        svc = services.get(("-t", VIP))
        return sorted((b.host, b.port, b.weight) for b in svc.dests) if svc else []

    def commands(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def ipvs(tmp_path: Path) -> FakeIpvs:
    return FakeIpvs(tmp_path)


def lvs(**kw: object) -> LvsLB:
    return LvsLB.model_validate({"type": "lvs", "vip": VIP, "weight": 100, "drain": 30, **kw})


# --- the fake speaks ipvsadm ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "args", "code", "text"),
    [
        pytest.param([["-A", "-t", VIP]], ["-A", "-t", VIP], 255, "Service already exists", id="A twice"),
        pytest.param([], ["-E", "-t", VIP, "-s", "rr"], 255, "No such service", id="E missing"),
        pytest.param([], ["-D", "-t", VIP], 255, "No such service", id="D missing"),
        pytest.param(
            [], ["-a", "-t", VIP, "-r", "10.0.1.1:1"], 255, "Service not defined", id="a without service"
        ),
        pytest.param(
            [["-A", "-t", VIP], ["-a", "-t", VIP, "-r", "10.0.1.1:1", "-m"]],
            ["-a", "-t", VIP, "-r", "10.0.1.1:1", "-m"],
            255,
            "Destination already exists",
            id="a twice",
        ),
        pytest.param(
            [["-A", "-t", VIP]],
            ["-e", "-t", VIP, "-r", "10.0.1.1:1", "-m"],
            255,
            "No such destination",
            id="e missing",
        ),
        pytest.param(
            [["-A", "-t", VIP]], ["-d", "-t", VIP, "-r", "10.0.1.1:1"], 255, "No such destination", id="d"
        ),
        pytest.param(
            [], ["-A", "-t", VIP, "-s", "bogus"], 255, "Scheduler or persistence engine", id="scheduler"
        ),
        pytest.param(
            [], ["-A", "-t", VIP, "-w", "3"], 2, "Illegal 'weight' option with the 'add-service'", id="opt"
        ),
        pytest.param(
            [], ["-a", "-t", VIP], 2, "You need to supply the 'real-server' option", id="missing -r"
        ),
        pytest.param(
            [], ["-A", "-t", "nohost:80"], 2, "illegal virtual server address[:port]", id="bad address"
        ),
        pytest.param([], ["-A", "-E", "-t", VIP], 2, "multiple commands specified", id="two commands"),
    ],
)
def test_fake_ipvsadm_error_texts(
    ipvs: FakeIpvs, setup: list[list[str]], args: list[str], code: int, text: str
) -> None:
    for cmd in setup:
        assert ipvs.run(*cmd).returncode == 0
    result = ipvs.run(*args)
    assert result.returncode == code and text in result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", {}, id="empty table"),
        pytest.param(
            f"-A -t {VIP} -s wrr\n-a -t {VIP} -r 10.0.1.1:31001 -m -w 100\n-a -t {VIP} -r 10.0.1.2:31002 -m -w 0\n",
            {("-t", VIP): [Backend(*R1, 100), Backend(*R2, 0, "draining")]},
            id="weight 0 is draining",
        ),
        pytest.param(
            "-A -u [::1]:53 -s rr -p 300\n-a -u [::1]:53 -r [::2]:53 -g -w 1\n",
            {("-u", "[::1]:53"): [Backend("::2", 53, 1)]},
            id="udp ipv6 persistent",
        ),
    ],
)
def test_parse_save(text: str, expected: dict[tuple[str, str], list[Backend]]) -> None:
    assert {k: v.dests for k, v in parse_save(text).items()} == expected


def test_parse_save_rejects_garbage() -> None:
    with pytest.raises(LBError, match="cannot read"):
        parse_save("-X what is this\n")


# --- ipvsadm driver ---------------------------------------------------------------------------


async def test_ipvsadm_creates_service_and_applies_ops(ipvs: FakeIpvs) -> None:
    d = ipvs.driver(scheduler="wrr", forward="nat")
    assert await d.read() == []
    await d.apply([Op("add", *R1, 100), Op("add", *R2, 100)])
    assert ipvs.table() == [(*R1, 100), (*R2, 100)]
    assert f"-A -t {VIP} -s wrr" in ipvs.commands()
    await d.read()
    await d.apply([Op("drain", *R1), Op("set_weight", *R2, 50)])
    assert await d.read() == [Backend(*R1, 0, "draining"), Backend(*R2, 50)]
    await d.apply([Op("delete", *R1)])
    assert ipvs.table() == [(*R2, 50)]
    assert f"-a -t {VIP} -r 10.0.1.1:31001 -m -w 100" in ipvs.commands()


@pytest.mark.parametrize(
    ("before", "op", "after"),
    [
        pytest.param(
            [(*R1, 7)], Op("add", *R1, 100), [(*R1, 100)], id="add existing: Destination already exists"
        ),
        pytest.param([], Op("set_weight", *R1, 100), [(*R1, 100)], id="edit missing: No such destination"),
        pytest.param([], Op("enable", *R1, 100), [(*R1, 100)], id="enable missing"),
        pytest.param([], Op("delete", *R1), [], id="delete missing"),
        pytest.param([], Op("drain", *R1), [], id="drain missing"),
    ],
)
async def test_ipvsadm_stale_ops_are_reentrant(
    ipvs: FakeIpvs, before: list[tuple[str, int, int]], op: Op, after: list[tuple[str, int, int]]
) -> None:
    assert ipvs.run("-A", "-t", VIP, "-s", "wrr").returncode == 0
    for host, port, w in before:
        assert ipvs.run("-a", "-t", VIP, "-r", f"{host}:{port}", "-m", "-w", str(w)).returncode == 0
    d = ipvs.driver()
    await d.read()
    await d.apply([op])
    assert ipvs.table() == after


async def test_ipvsadm_recreates_a_service_deleted_behind_its_back(ipvs: FakeIpvs) -> None:
    d = ipvs.driver()
    await d.apply([Op("add", *R1, 100)])
    await d.read()
    assert ipvs.run("-D", "-t", VIP).returncode == 0
    await d.apply([Op("add", *R2, 100)])  # -a → "Service not defined" → -A, then -a again
    assert ipvs.table() == [(*R2, 100)]


async def test_ipvsadm_fixes_the_scheduler_and_dr_uses_the_virtual_port(ipvs: FakeIpvs) -> None:
    assert ipvs.run("-A", "-t", VIP, "-s", "rr").returncode == 0
    d = ipvs.driver(scheduler="wlc", forward="dr")
    await d.read()
    await d.apply([Op("add", "10.0.1.1", 80, 100)])
    assert f"-E -t {VIP} -s wlc" in ipvs.commands()
    assert "-a -t 10.0.0.10:80 -r 10.0.1.1:80 -g -w 100" in ipvs.run("-S", "-n").stdout


async def test_ipvsadm_errors_carry_ipvsadm_text(ipvs: FakeIpvs, tmp_path: Path) -> None:
    with pytest.raises(LBError, match="Scheduler or persistence engine not found"):
        await ipvs.driver(scheduler="bogus").apply([Op("add", *R1, 1)])
    no_state = IpvsadmDriver(VIP, binary=ipvs.binary, env={"PATH": os.environ["PATH"]})
    with pytest.raises(LBError, match="Can't initialize ipvs"):
        await no_state.read()
    with pytest.raises(LBError, match="cannot run"):
        await IpvsadmDriver(VIP, binary=str(tmp_path / "missing")).read()


async def test_run_command_times_out_and_kills() -> None:
    with pytest.raises(LBError, match=r"no answer within 0\.2 s"):
        await run_command([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.2)


# --- reconciler on ipvsadm: drain lifecycle, twice, concurrently, killed half-way ---------------


async def test_reconcile_drains_then_deletes_and_reenables(ipvs: FakeIpvs) -> None:
    rec = Reconciler("job", lvs(), ipvs.driver())
    r = await rec.reconcile(make_app(R1, R2), now=100.0)
    assert r.ok and ipvs.table() == [(*R1, 100), (*R2, 100)]
    r = await rec.reconcile(make_app(R1), now=101.0)
    assert [str(op) for op in r.ops] == ["drain 10.0.1.2:31002"]
    assert ipvs.table() == [(*R1, 100), (*R2, 0)]
    r = await rec.reconcile(make_app(R1), now=120.0)
    assert r.ops == [] and ipvs.table() == [(*R1, 100), (*R2, 0)]  # still draining
    r = await rec.reconcile(make_app(R1), now=131.0)
    assert [str(op) for op in r.ops] == ["delete 10.0.1.2:31002"] and ipvs.table() == [(*R1, 100)]
    await rec.reconcile(make_app(), now=140.0)
    r = await rec.reconcile(make_app(R1), now=150.0)  # back during its drain: enabled, not duplicated
    assert [str(op) for op in r.ops] == ["enable 10.0.1.1:31001 weight=100"]
    assert ipvs.table() == [(*R1, 100)]
    status = rec.status()
    assert status["backends"] == [
        {
            "address": "10.0.1.1:31001",
            "weight": 100,
            "state": "active",
            "desired": True,
            "drain_started": None,
        }
    ]
    assert status["last_error"] is None and status["last_apply"] == 150.0


async def test_reconcile_skips_tasks_without_the_port(ipvs: FakeIpvs) -> None:
    app = make_app(R1)
    app.tasks["web.0"].ports = []
    r = await Reconciler("job", lvs(), ipvs.driver()).reconcile(app, now=1.0)
    assert r.ok and r.desired == {} and "port_index 0" in r.skipped[0]


async def test_reconcile_with_dr_uses_the_vip_port(ipvs: FakeIpvs) -> None:
    rec = Reconciler("job", lvs(forward="dr"), ipvs.driver(forward="dr"))
    r = await rec.reconcile(make_app(R1), now=1.0)
    assert r.ok and ipvs.table() == [("10.0.1.1", 80, 100)]
    assert (await rec.reconcile(make_app(R1), now=2.0)).ops == []


async def test_reconcile_twice_and_concurrently_converge(ipvs: FakeIpvs) -> None:
    rec = Reconciler("job", lvs(), ipvs.driver())
    assert (await rec.reconcile(make_app(R1, R2, R3), now=1.0)).ok
    again = await rec.reconcile(make_app(R1, R2, R3), now=2.0)
    assert again.ok and again.ops == []
    a, b = await asyncio.gather(rec.reconcile(make_app(R1), now=3.0), rec.reconcile(make_app(R1), now=3.0))
    assert a.ok and b.ok and len(a.ops) == 2 and b.ops == []
    assert ipvs.table() == [(*R1, 100), (*R2, 0), (*R3, 0)]
    # two reconcilers (e.g. after a restart) for the same balancer, sharing its lock
    lock = asyncio.Lock()
    r1 = Reconciler("job", lvs(), ipvs.driver(), lock=lock)
    r2 = Reconciler("job", lvs(), ipvs.driver(), lock=lock)
    x, y = await asyncio.gather(r1.reconcile(make_app(R2), now=4.0), r2.reconcile(make_app(R2), now=4.0))
    assert x.ok and y.ok
    assert ipvs.table() == [(*R1, 0), (*R2, 100), (*R3, 0)]


async def test_reconcile_killed_half_way_then_rerun_converges(ipvs: FakeIpvs) -> None:
    ipvs.env["FAKE_IPVSADM_HANG_AT"] = "3"  # -A, -a R1, then the -a of R2 hangs
    rec = Reconciler("job", lvs(), ipvs.driver())
    task = asyncio.create_task(rec.reconcile(make_app(R1, R2, R3), now=1.0))
    hung = Path(str(ipvs.state) + ".hung")

    async def is_hung() -> bool:
        return hung.exists() and hung.read_text() != ""

    await wait_until(is_hung, "the fake ipvsadm to hang mid-apply")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pid = int(hung.read_text())
    with pytest.raises(ProcessLookupError):  # the hung command was killed and reaped
        os.kill(pid, 0)
    assert ipvs.table() == [(*R1, 100)]  # half applied
    r = await rec.reconcile(make_app(R1, R2, R3), now=2.0)
    assert r.ok and [str(op) for op in r.ops] == [
        "add 10.0.1.2:31002 weight=100",
        "add 10.0.1.3:31003 weight=100",
    ]
    assert ipvs.table() == [(*R1, 100), (*R2, 100), (*R3, 100)]
    assert json.loads(ipvs.state.read_text())["changes"] == 5  # -A, -a R1, (hung), -a R2, -a R3


async def test_ipv6_vip_written_any_way_matches_what_ipvsadm_prints(ipvs: FakeIpvs) -> None:
    lb6 = lvs(vip="[fe80:0::10]:80")
    rec = Reconciler("job", lb6, IpvsadmDriver(lb6.vip, binary=ipvs.binary, env=ipvs.env))
    assert (await rec.reconcile(make_app(("fe80::2", 8080)), now=1.0)).ok
    assert "-a -t [fe80::10]:80 -r [fe80::2]:8080 -m -w 100" in ipvs.run("-S", "-n").stdout
    assert (await rec.reconcile(make_app(("fe80::2", 8080)), now=2.0)).ops == []


@pytest.mark.parametrize("driver", ["ipvsadm", "keepalived"])
async def test_a_vip_host_name_is_a_recorded_error(ipvs: FakeIpvs, tmp_path: Path, driver: str) -> None:
    bad = lvs(vip="lvs.example.org:80", driver=driver)
    d: IpvsadmDriver | KeepalivedDriver
    if driver == "ipvsadm":
        d = IpvsadmDriver(bad.vip, binary=ipvs.binary, env=ipvs.env)
    else:
        inst = KeepalivedInstance(tmp_path / "k.conf", pid_file=None)
        d = KeepalivedDriver(bad.vip, include_file=tmp_path / "vs.conf", keepalived=inst)
    r = await Reconciler("job", bad, d).reconcile(make_app(R1), now=1.0)
    assert not r.ok and "must be an IP address" in (r.error or "")


async def test_reconcile_records_failures(ipvs: FakeIpvs) -> None:
    rec = Reconciler("job", lvs(scheduler="wrr"), ipvs.driver(scheduler="bogus"))
    r = await rec.reconcile(make_app(R1), now=5.0)
    assert not r.ok and "Scheduler or persistence engine not found" in (r.error or "")
    assert rec.status()["last_error"] == r.error and rec.status()["last_error_at"] == 5.0


# --- keepalived: rendering checked by the real keepalived -t ---------------------------------

needs_keepalived = pytest.mark.skipif(KEEPALIVED is None, reason="keepalived is not installed")


class Hupper:
    """A stand-in for the keepalived process: counts the SIGHUPs it receives."""

    def __init__(self, tmp: Path):
        self.marker = tmp / "hups"
        code = (
            "import signal, sys, time\n"
            f"signal.signal(signal.SIGHUP, lambda *a: open({str(self.marker)!r}, 'a').write('hup\\n'))\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n"
        )
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        assert self.proc.stdout is not None and self.proc.stdout.readline() == b"ready\n"
        self.pid_file = tmp / "keepalived.pid"
        self.pid_file.write_text(f"{self.proc.pid}\n")

    def count(self) -> int:
        return len(self.marker.read_text().splitlines()) if self.marker.exists() else 0


@pytest.fixture
def hupper(tmp_path: Path) -> Iterator[Hupper]:
    h = Hupper(tmp_path)
    yield h
    h.proc.kill()
    h.proc.wait()


def keepalived_setup(tmp: Path, hupper: Hupper | None, **kw: object) -> tuple[KeepalivedDriver, Path]:
    include_dir = tmp / "keepalived.d"
    main = tmp / "keepalived.conf"
    main.write_text(f"global_defs {{\n    router_id oceand_test\n}}\ninclude {include_dir}/*.conf\n")
    inst = KeepalivedInstance(
        main, binary=KEEPALIVED or "keepalived", pid_file=hupper.pid_file if hupper else None
    )
    include = include_dir / "tcp_10_0_0_10_80.conf"
    return KeepalivedDriver(VIP, include_file=include, keepalived=inst, **kw), include  # type: ignore[arg-type]


@needs_keepalived
@pytest.mark.parametrize(
    ("kw", "backends"),
    [
        pytest.param({}, [], id="no backends"),
        pytest.param({}, [Backend(*R1, 100)], id="one"),
        pytest.param({}, [Backend(*R1, 100), Backend(*R2, 100, "draining")], id="one draining (weight 0)"),
        pytest.param(
            {"forward": "dr", "protocol": "udp", "scheduler": "sh"}, [Backend("10.0.1.1", 80, 5)], id="dr udp"
        ),
        pytest.param({"forward": "tun"}, [Backend("fe80::2", 80, 5)], id="tun ipv6"),
        pytest.param(
            {"real_server_lines": ["inhibit_on_failure", "TCP_CHECK {", "    connect_timeout 3", "}"]},
            [Backend(*R1, 100), Backend(*R3, 1)],
            id="with a health check",
        ),
    ],
)
async def test_keepalived_renders_what_keepalived_accepts(
    tmp_path: Path, kw: dict[str, object], backends: list[Backend]
) -> None:
    driver, include = keepalived_setup(tmp_path, None, **kw)
    ops = [Op("add", b.host, b.port, b.weight) for b in backends]
    ops += [Op("drain", b.host, b.port) for b in backends if b.state == "draining"]
    await driver.apply(ops)  # raises LBError if `keepalived -t` refuses the file
    assert include.exists()
    assert sorted(await driver.read(), key=lambda b: b.key) == sorted(
        [Backend(b.host, b.port, 0 if b.state == "draining" else b.weight, b.state) for b in backends],
        key=lambda b: b.key,
    )


@needs_keepalived
async def test_keepalived_reconcile_reloads_with_sighup(tmp_path: Path, hupper: Hupper) -> None:
    driver, include = keepalived_setup(tmp_path, hupper)
    rec = Reconciler("job", lvs(driver="keepalived"), driver)
    assert (await rec.reconcile(make_app(R1, R2), now=1.0)).ok
    assert "real_server 10.0.1.2 31002 {\n        weight 100" in include.read_text()

    async def hups(n: int) -> bool:
        return hupper.count() >= n

    await wait_until(lambda: hups(1), "keepalived's SIGHUP")
    r = await rec.reconcile(make_app(R1), now=2.0)
    assert r.ok and "real_server 10.0.1.2 31002 {\n        weight 0" in include.read_text()
    await wait_until(lambda: hups(2), "the second SIGHUP")
    r = await rec.reconcile(make_app(R1), now=3.0)
    assert r.ok and r.ops == [] and hupper.count() == 2  # nothing changed: no reload
    r = await rec.reconcile(make_app(R1), now=40.0)
    assert r.ok and "31002" not in include.read_text()


@needs_keepalived
@pytest.mark.parametrize(
    ("kw", "message"),
    [
        pytest.param({"scheduler": "bogus"}, "Invalid lvs_scheduler 'bogus'", id="bad scheduler"),
        pytest.param({"real_server_lines": ["wieght 5"]}, "Unknown keyword 'wieght'", id="bad keyword"),
    ],
)
async def test_keepalived_failed_check_keeps_the_old_file(
    tmp_path: Path, hupper: Hupper, kw: dict[str, object], message: str
) -> None:
    good, include = keepalived_setup(tmp_path, hupper)
    await good.apply([Op("add", *R1, 100)])

    async def reloaded() -> bool:
        return hupper.count() == 1

    await wait_until(reloaded, "the first SIGHUP")
    before = include.read_text()
    bad, _ = keepalived_setup(tmp_path, hupper, **kw)
    bad._pending = False  # only the failing change is under test
    rec = Reconciler("job", lvs(driver="keepalived"), bad)
    r = await rec.reconcile(make_app(R1, R2), now=1.0)
    assert not r.ok and message in (r.error or "") and "keepalived -t" in (r.error or "")
    assert include.read_text() == before  # the old file is back
    assert hupper.count() == 1  # and keepalived was not told to reload
    assert rec.status()["last_error"] == r.error
    assert not list(include.parent.glob(".*tmp"))  # no temp files left behind


@needs_keepalived
async def test_keepalived_port_outside_range_is_refused_before_writing(tmp_path: Path) -> None:
    driver, include = keepalived_setup(tmp_path, None)
    with pytest.raises(LBError, match="port must be from 1 to 65535"):
        await driver.apply([Op("add", "10.0.1.1", 0, 1)])
    assert not include.exists()


async def test_keepalived_not_running_is_reported(tmp_path: Path) -> None:
    if KEEPALIVED is None:
        pytest.skip("keepalived is not installed")
    driver, _ = keepalived_setup(tmp_path, None)
    driver.keepalived.pid_file = tmp_path / "missing.pid"
    with pytest.raises(LBError, match="keepalived is not running"):
        await driver.apply([Op("add", *R1, 1)])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(None, [], id="no file"),
        pytest.param("# nothing\n", [], id="comment only"),
        pytest.param(
            "virtual_server 10.0.0.10 80 {\n  lvs_sched wrr\n  real_server 10.0.1.1 31001 {\n    weight 3\n"
            "    TCP_CHECK { connect_timeout 3 }\n  }\n  real_server 10.0.1.2 31002 {\n  }\n}\n",
            [Backend(*R1, 3), Backend(*R2, 1)],
            id="nested check block, default weight",
        ),
    ],
)
def test_keepalived_parse(text: str | None, expected: list[Backend]) -> None:
    assert parse(text) == expected


OPERATOR_VIRTUAL_SERVER = """# VIP 10.0.0.10:80, written by the operator
virtual_server 10.0.0.10 80 {
    delay_loop 10
    lb_algo rr
    lvs_method NAT
    protocol TCP

    # sessions stick for a minute; a sorry server when nothing is up
    persistence_timeout 60
    sorry_server 10.0.9.9 80
}
"""


def operator_lines(text: str) -> str:
    """The file without oceand's parts: parked lines put back, real_server blocks and the lines that
    come from the job document (scheduler, method, protocol) left out."""
    out: list[str] = []
    depth = 0
    for line in text.replace(PARKED_NOTE, "").splitlines():
        line = line.removeprefix(PARKED)
        words = line.split("#", 1)[0].split()
        if (
            depth == 1
            and words[:1]
            and words[0] in ("lb_algo", "lvs_sched", "lvs_method", "lb_kind", "protocol")
        ):
            continue
        if depth >= 2 or (depth == 1 and words[:1] == ["real_server"]):
            depth += line.count("{") - line.count("}")
            continue
        depth += line.count("{") - line.count("}")
        out.append(line)
    return "\n".join(out)


@needs_keepalived
async def test_the_operators_virtual_server_lines_survive_adds_drains_and_removals(
    tmp_path: Path, hupper: Hupper
) -> None:
    driver, include = keepalived_setup(tmp_path, hupper, scheduler="wlc")
    include.parent.mkdir()
    include.write_text(OPERATOR_VIRTUAL_SERVER)
    rec = Reconciler("job", lvs(driver="keepalived", scheduler="wlc", drain=10), driver)
    steps: list[tuple[list[tuple[str, int]], float, list[str]]] = [
        ([R1, R2], 1.0, ["add 10.0.1.1:31001 weight=100", "add 10.0.1.2:31002 weight=100"]),
        ([R1], 2.0, ["drain 10.0.1.2:31002"]),
        ([R1], 12.0, ["delete 10.0.1.2:31002"]),
        ([], 13.0, ["drain 10.0.1.1:31001"]),
        ([], 23.0, ["delete 10.0.1.1:31001"]),  # no real server left: the block is parked
        ([R3], 24.0, ["add 10.0.1.3:31003 weight=100"]),  # and comes back
    ]
    for backends, now, ops in steps:
        r = await rec.reconcile(make_app(*backends), now=now)
        assert r.ok, r.error  # keepalived -t accepted the file
        assert [str(op) for op in r.ops] == ops
        text = include.read_text()
        assert operator_lines(text) == operator_lines(OPERATOR_VIRTUAL_SERVER)
        assert "    lb_algo wlc\n" in text  # the job's scheduler, in the operator's keyword
        assert sorted(await driver.read(), key=lambda b: b.key) == [
            Backend(*b.key, b.weight if b.state == "active" else 0, b.state) for b in r.backends
        ]
    text = include.read_text()
    assert (
        "    sorry_server 10.0.9.9 80\n    real_server 10.0.1.3 31003 {\n        weight 100\n    }\n}\n"
        in text
    )


@needs_keepalived
async def test_keepalived_drains_and_deletes_the_last_real_server(tmp_path: Path, hupper: Hupper) -> None:
    """All real servers at weight 0 make `keepalived -t` warn (quorum 1 > total weight 0) and exit 5;
    the driver accepts exactly that warning, so a job scaled to zero still drains and empties its VIP."""
    driver, _ = keepalived_setup(tmp_path, hupper)
    rec = Reconciler("job", lvs(driver="keepalived", drain=10), driver)
    assert (await rec.reconcile(make_app(R1), now=1.0)).ok
    r = await rec.reconcile(make_app(), now=2.0)
    assert r.ok, r.error
    assert [str(op) for op in r.ops] == ["drain 10.0.1.1:31001"]
    assert await driver.read() == [Backend(*R1, 0, "draining")]
    r = await rec.reconcile(make_app(), now=12.0)
    assert r.ok and [str(op) for op in r.ops] == ["delete 10.0.1.1:31001"]
    assert await driver.read() == []


def kmerge(text: str | None, backends: list[Backend]) -> str:
    return merge(text, backends, protocol="tcp", scheduler="wlc", forward="nat", fresh=lambda: "FRESH\n")


RS1 = "    real_server 10.0.1.1 31001 {\n        weight 5\n    }\n"


@pytest.mark.parametrize(
    ("text", "backends", "expected"),
    [
        pytest.param(
            "# mine\nvirtual_server 10.0.0.10 80 {\n    lb_algo rr\n    persistence_timeout 9\n}\n# after\n",
            [Backend(*R1, 5)],
            "# mine\nvirtual_server 10.0.0.10 80 {\n    lvs_method NAT\n    protocol TCP\n    lb_algo wlc\n"
            "    persistence_timeout 9\n" + RS1 + "}\n# after\n",
            id="settings replaced in place or added; real servers before the closing brace",
        ),
        pytest.param(
            "virtual_server 10.0.0.10 80 {\n  lvs_sched wlc\n  lvs_method NAT\n  protocol TCP\n"
            "  real_server 10.0.1.2 31002 {\n    weight 1\n    TCP_CHECK {\n      connect_timeout 3\n    }\n  }\n"
            "  # between\n  real_server 10.0.1.3 31003 { weight 2 }\n  quorum 1\n}",
            [Backend(*R1, 5)],
            "virtual_server 10.0.0.10 80 {\n  lvs_sched wlc\n  lvs_method NAT\n  protocol TCP\n" + RS1
            + "  # between\n  quorum 1\n}\n",
            id="real_server blocks replaced where the first was, nested and one-line ones too",
        ),
        pytest.param(
            "virtual_server 10.0.0.10 80 {\n    lvs_sched wlc\n    lvs_method NAT\n    protocol TCP\n" + RS1 + "}\n",
            [],
            PARKED_NOTE + "".join(PARKED + ln for ln in split_lines(
                "virtual_server 10.0.0.10 80 {\n    lvs_sched wlc\n    lvs_method NAT\n    protocol TCP\n}\n"
            )),
            id="no backends: the block is parked",
        ),
        pytest.param("# only a comment\n", [Backend(*R1, 5)], "FRESH\n", id="no block: a new file"),
    ],
)  # fmt: skip
def test_keepalived_merge(text: str, backends: list[Backend], expected: str) -> None:
    assert kmerge(text, backends) == expected
    assert expected == "FRESH\n" or parse(expected) == [Backend(b.host, b.port, b.weight) for b in backends]


def test_keepalived_parked_block_comes_back_as_it_was() -> None:
    text = (
        "virtual_server 10.0.0.10 80 {\n    lvs_sched wlc\n    lvs_method NAT\n    protocol TCP\n    # note\n"
        + RS1
        + "}\n"
    )
    parked = kmerge(text, [])
    assert parse(parked) == []
    assert kmerge(parked, [Backend(*R1, 5)]) == text


async def test_ipvsadm_keeps_the_services_other_options_when_it_fixes_the_scheduler(ipvs: FakeIpvs) -> None:
    """`ipvsadm -E` sets every option of the service; oceand passes back the ones it does not own."""
    assert ipvs.run("-A", "-t", VIP, "-s", "rr", "-p", "120").returncode == 0
    rec = Reconciler("job", lvs(scheduler="wrr"), ipvs.driver(scheduler="wrr"))
    assert (await rec.reconcile(make_app(R1), now=1.0)).ok
    saved = ipvs.run("-S", "-n").stdout.splitlines()
    assert saved[0] == f"-A -t {VIP} -s wrr -p 120"
    assert ipvs.table() == [("10.0.1.1", 31001, 100)]


def test_keepalived_merge_updates_the_header_of_earlier_versions(tmp_path: Path) -> None:
    driver, _ = keepalived_setup(tmp_path, None)
    new = driver.render([Backend(*R1, 5)])
    old = new.replace(
        new.splitlines()[0],
        "# Managed by oceand: LVS virtual server 10.0.0.10 80 tcp. Rewritten on every change.",
    )
    assert old != new
    assert (
        merge(old, [Backend(*R1, 5)], protocol="tcp", scheduler="wrr", forward="nat", fresh=lambda: "") == new
    )
