"""The reconciler's own logic (desired backends, resolution, failures) and the driver factory."""

from __future__ import annotations

from pathlib import Path

import pytest

from actuators.lb import LBError
from actuators.lb.diff import Backend, Key, Op, apply_ops
from actuators.lb.haproxy import HaproxyDriver
from actuators.lb.ipvsadm import IpvsadmDriver
from actuators.lb.keepalived import KeepalivedDriver
from actuators.lb.nginx import NginxDriver
from actuators.lb.reconcile import DriverFactory, LBSettings, Reconciler, balancer_key, resolve_host
from actuators.marathon.model import AppState, Task
from policies.document import HaproxyLB, LvsLB, NginxLB


class MemoryDriver:
    """A balancer in memory (the diff model), optionally failing."""

    def __init__(self, fail: Exception | None = None):
        self.backends: list[Backend] = []
        self.fail = fail
        self.applied: list[list[Op]] = []

    async def read(self) -> list[Backend]:
        return list(self.backends)

    async def apply(self, ops: list[Op]) -> None:
        if self.fail is not None:
            raise self.fail
        self.applied.append(ops)
        self.backends = apply_ops(self.backends, ops)


async def fake_resolve(host: str) -> str:
    table = {"agent-1": "10.0.0.1", "agent-2": "10.0.0.2", "10.9.9.9": "10.9.9.9"}
    if host not in table:
        raise LBError(f"cannot resolve host {host!r}: Name or service not known")
    return table[host]


def app_of(*tasks: Task, health_checks: bool = True) -> AppState:
    return AppState(
        id="/web", instances=len(tasks), tasks={t.id: t for t in tasks}, has_health_checks=health_checks
    )


NGINX = NginxLB(type="nginx", upstream="u", weight=3)


@pytest.mark.parametrize(
    ("lb", "tasks", "use_ip", "desired", "skipped"),
    [
        pytest.param(NGINX, [Task("a", "/web", "agent-1", [31001], healthy=True)], False, {("10.0.0.1", 31001): 3}, [], id="host resolved"),
        pytest.param(NGINX, [Task("a", "/web", "agent-1", [31001], healthy=False)], False, {}, [], id="unhealthy: not a backend"),
        pytest.param(NGINX, [Task("a", "/web", "agent-1", [31001], state="TASK_STAGING", healthy=True)], False, {}, [], id="not running"),
        pytest.param(NGINX, [Task("a", "/web", "ghost", [31001], healthy=True)], False, {}, ["task a: cannot resolve host 'ghost'"], id="unknown host"),
        pytest.param(NginxLB(type="nginx", upstream="u", port_index=1), [Task("a", "/web", "agent-1", [31001], healthy=True)], False, {}, ["task a: has 1 port(s), port_index 1"], id="too few ports"),
        pytest.param(NGINX, [Task("a", "/web", "agent-1", [8080], ["10.9.9.9"], healthy=True)], True, {("10.9.9.9", 8080): 3}, [], id="task ip address"),
        pytest.param(NGINX, [Task("a", "/web", "agent-1", [8080], healthy=True)], True, {}, ["task a: no IP address"], id="no ip address"),
        pytest.param(
            LvsLB(type="lvs", vip="10.0.0.10:80", forward="dr", weight=7),
            [Task("a", "/web", "agent-1", [31001], healthy=True), Task("b", "/web", "agent-2", [31002], healthy=True)],
            False,
            {("10.0.0.1", 80): 7, ("10.0.0.2", 80): 7},
            [],
            id="lvs dr: the vip port",
        ),
    ],
)  # fmt: skip
async def test_desired(
    lb: NginxLB | LvsLB, tasks: list[Task], use_ip: bool, desired: dict[Key, int], skipped: list[str]
) -> None:
    rec = Reconciler("job", lb, MemoryDriver(), resolve=fake_resolve, use_ip_address=use_ip)
    got, why = await rec.desired(app_of(*tasks))
    assert got == desired
    assert len(why) == len(skipped) and all(w.startswith(s) for w, s in zip(why, skipped, strict=True))


async def test_without_health_checks_running_tasks_serve() -> None:
    rec = Reconciler("job", NGINX, MemoryDriver(), resolve=fake_resolve)
    got, _ = await rec.desired(app_of(Task("a", "/web", "agent-1", [1]), health_checks=False))
    assert got == {("10.0.0.1", 1): 3}


async def test_resolve_host() -> None:
    assert await resolve_host("127.0.0.1") == "127.0.0.1"
    assert await resolve_host("::1") == "::1"
    assert await resolve_host("localhost") in ("127.0.0.1", "::1")
    with pytest.raises(LBError, match="cannot resolve host"):
        await resolve_host("no-such-host.invalid")


@pytest.mark.parametrize(
    ("error", "message"),
    [
        pytest.param(LBError("nginx -t failed: boom"), "nginx -t failed: boom", id="balancer error"),
        pytest.param(RuntimeError("bug"), "internal error: RuntimeError: bug", id="any other error"),
    ],
)
async def test_failures_are_recorded_not_raised(error: Exception, message: str) -> None:
    rec = Reconciler("job", NGINX, MemoryDriver(fail=error), resolve=fake_resolve)
    r = await rec.reconcile(app_of(Task("a", "/web", "agent-1", [1], healthy=True)), now=7.0)
    assert not r.ok and r.error == message and r.ops == [Op("add", "10.0.0.1", 1, 3)]
    status = rec.status()
    assert (status["last_error"], status["last_error_at"], status["errors"]) == (message, 7.0, 1)
    assert rec.drains == {}  # nothing committed from a failed apply


async def test_status_after_success() -> None:
    driver = MemoryDriver()
    rec = Reconciler("job", NGINX, driver, resolve=fake_resolve)
    a = Task("a", "/web", "agent-1", [1], healthy=True)
    b = Task("b", "/web", "agent-2", [2], healthy=True)
    await rec.reconcile(app_of(a, b), now=1.0)
    await rec.reconcile(app_of(a), now=2.0)
    status = rec.status()
    assert status["balancer"] == "nginx:u" and status["type"] == "nginx"
    assert status["desired"] == ["10.0.0.1:1"]
    assert status["backends"] == [
        {"address": "10.0.0.1:1", "weight": 3, "state": "active", "desired": True, "drain_started": None},
        {"address": "10.0.0.2:2", "weight": 3, "state": "draining", "desired": False, "drain_started": 2.0},
    ]
    assert (status["last_apply"], status["last_ops"], status["applies"]) == (2.0, ["drain 10.0.0.2:2"], 2)
    assert status["last_error"] is None


@pytest.mark.parametrize(
    ("lb", "key"),
    [
        pytest.param(LvsLB(type="lvs", vip="10.0.0.10:80", protocol="udp"), "lvs:udp:10.0.0.10:80", id="lvs"),
        pytest.param(NginxLB(type="nginx", upstream="weather_api"), "nginx:weather_api", id="nginx"),
        pytest.param(HaproxyLB(type="haproxy", backend="be"), "haproxy:be", id="haproxy"),
    ],
)
def test_balancer_key(lb: LvsLB | NginxLB | HaproxyLB, key: str) -> None:
    assert balancer_key(lb) == key


def test_factory_builds_and_shares(tmp_path: Path) -> None:
    settings = LBSettings(
        nginx_upstream_dir=tmp_path / "ups",
        keepalived_include_dir=tmp_path / "ka",
        haproxy_servers_dir=tmp_path / "hap",
        haproxy_socket=tmp_path / "admin.sock",
    )
    f = DriverFactory(settings)
    n1, n2 = f.driver(NginxLB(type="nginx", upstream="a")), f.driver(NginxLB(type="nginx", upstream="b"))
    assert isinstance(n1, NginxDriver) and isinstance(n2, NginxDriver)
    assert n1.include_file == tmp_path / "ups" / "a.upstream" and n1.nginx is n2.nginx  # one reload per nginx
    h = f.driver(HaproxyLB(type="haproxy", backend="be_x"))
    assert isinstance(h, HaproxyDriver) and h.servers_file == tmp_path / "hap" / "be_x.cfg"
    i = f.driver(LvsLB(type="lvs", vip="10.0.0.10:80"))
    assert isinstance(i, IpvsadmDriver) and i.vip == "10.0.0.10:80"
    k = f.driver(LvsLB(type="lvs", vip="[fe80::1]:80", driver="keepalived", protocol="udp"))
    assert isinstance(k, KeepalivedDriver) and k.include_file == tmp_path / "ka" / "udp_fe80_1_80.conf"
    r1 = f.reconciler("job1", NginxLB(type="nginx", upstream="a"))
    r2 = f.reconciler("job2", NginxLB(type="nginx", upstream="a"))
    assert r1.lock is r2.lock  # one lock per balancer


def marathon_app(health_checks: list[dict[str, object]], **task: object) -> AppState:
    """GET /v2/apps/{id} with one task on agent-1 (PROTOCOLS.md A.3, A.4)."""
    t = {"id": "web.1", "appId": "/web", "host": "agent-1", "ports": [31001], "state": "TASK_RUNNING"} | task
    return AppState.from_marathon({"id": "/web", "instances": 1, "healthChecks": health_checks, "tasks": [t]})


HTTP_CHECK = {"protocol": "HTTP", "path": "/health", "portIndex": 0}
TCP_CHECK = {"protocol": "TCP", "portIndex": 0}
ALIVE = {"alive": True, "consecutiveFailures": 0, "instanceId": "web.1"}
DEAD = {"alive": False, "consecutiveFailures": 3, "instanceId": "web.1"}


@pytest.mark.parametrize(
    ("health_checks", "task", "ready"),
    [
        pytest.param([], {}, True, id="no health checks: running counts"),
        pytest.param([], {"healthCheckResults": []}, True, id="no health checks, empty results: running counts"),
        pytest.param([], {"state": "TASK_STAGING"}, False, id="no health checks: staging does not count"),
        pytest.param([], {"state": "TASK_STARTING"}, False, id="no health checks: starting does not count"),
        pytest.param([], {"state": "TASK_KILLING"}, False, id="no health checks: killing does not count"),
        pytest.param([], {"state": "TASK_UNREACHABLE"}, False, id="no health checks: unreachable does not count"),
        pytest.param([HTTP_CHECK], {}, False, id="health checks, no result yet: does not count"),
        pytest.param([HTTP_CHECK], {"healthCheckResults": []}, False, id="health checks, empty results: does not count"),
        pytest.param([HTTP_CHECK], {"healthCheckResults": [ALIVE]}, True, id="health checks, alive: counts"),
        pytest.param([HTTP_CHECK], {"healthCheckResults": [DEAD]}, False, id="health checks, dead: does not count"),
        pytest.param([HTTP_CHECK, TCP_CHECK], {"healthCheckResults": [ALIVE, ALIVE]}, True, id="two checks, both alive: counts"),
        pytest.param([HTTP_CHECK, TCP_CHECK], {"healthCheckResults": [ALIVE, DEAD]}, False, id="two checks, one dead: does not count"),
        pytest.param([HTTP_CHECK], {"state": "TASK_KILLING", "healthCheckResults": [ALIVE]}, False, id="health checks, alive but killing: does not count"),
        pytest.param([HTTP_CHECK], {"state": "TASK_STAGING", "healthCheckResults": [ALIVE]}, False, id="health checks, alive but staging: does not count"),
    ],
)  # fmt: skip
async def test_which_tasks_are_backends(
    health_checks: list[dict[str, object]], task: dict[str, object], ready: bool
) -> None:
    """The rule docs/policy.md states: a task is a backend when it is TASK_RUNNING and, if the app
    defines health checks, it has health results and all of them are alive."""
    rec = Reconciler("job", NGINX, MemoryDriver(), resolve=fake_resolve)
    got, skipped = await rec.desired(marathon_app(health_checks, **task))
    assert got == ({("10.0.0.1", 31001): 3} if ready else {}) and skipped == []
