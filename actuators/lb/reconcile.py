"""Keep one balancer equal to a job's serving instances: read → diff → apply (PRODUCT §4.2).

A `Reconciler` exists per (job, `lb` entry). `reconcile(app, now)` is serialised by a lock per
balancer, so two concurrent calls converge, and a call killed half-way is repaired by the next one
(every apply is a diff against what the balancer reports now). It keeps the drain clocks (`drains`)
and what `status()` shows. The daemon calls it on task events and in a periodic full pass.

Backends are the tasks of `AppState.serving_tasks()`: `task.host` (or its first IP address with
`use_ip_address`) with `task.ports[port_index]`; host names are resolved to addresses (ipvsadm,
keepalived and HAProxy's `add server` take addresses only). With LVS direct routing or tunnelling the
real server's port is the virtual port (IPVS ignores any other). Tasks that cannot be backends are
skipped and listed.

`DriverFactory(LBSettings)` builds the driver of an `lb` entry and shares one lock per balancer and
one `NginxInstance` / `KeepalivedInstance` per config between the jobs.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actuators.lb import Driver, LBError
from actuators.lb.diff import Backend, Key, Op, apply_ops, diff, format_hostport, parse_vip
from actuators.lb.haproxy import HaproxyDriver
from actuators.lb.ipvsadm import IpvsadmDriver
from actuators.lb.keepalived import KeepalivedDriver, KeepalivedInstance
from actuators.lb.nginx import NginxDriver, NginxInstance
from actuators.marathon.model import AppState
from policies.document import HaproxyLB, LoadBalancer, LvsLB, NginxLB

log = logging.getLogger(__name__)
Resolver = Callable[[str], Awaitable[str]]


def balancer_key(lb: LoadBalancer) -> str:
    """What identifies the balancer an `lb` entry changes (one lock, one drain map per key)."""
    if isinstance(lb, LvsLB):
        return f"lvs:{lb.protocol}:{lb.vip}"
    if isinstance(lb, NginxLB):
        return f"nginx:{lb.upstream}"
    return f"haproxy:{lb.backend}"


async def resolve_host(host: str) -> str:
    """An IP literal as is; a host name → its first IPv4 address (else IPv6). LBError if unknown."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as e:
        raise LBError(f"cannot resolve host {host!r}: {e.strerror or e}") from None
    addrs = [str(i[4][0]) for i in infos]
    v4 = [a for a in addrs if ":" not in a]
    if not addrs:
        raise LBError(f"cannot resolve host {host!r}: no address")
    return (v4 or addrs)[0]


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    ok: bool
    ops: list[Op]
    backends: list[Backend]  # the balancer after the apply (as read, with the ops applied)
    desired: dict[Key, int]
    skipped: list[str] = field(default_factory=list)  # tasks that could not be backends, and why
    error: str | None = None


class Reconciler:
    def __init__(
        self,
        job: str,
        lb: LoadBalancer,
        driver: Driver,
        *,
        lock: asyncio.Lock | None = None,
        resolve: Resolver = resolve_host,
        use_ip_address: bool = False,
    ):
        self.job = job
        self.lb = lb
        self.driver = driver
        self.key = balancer_key(lb)
        self.lock = lock or asyncio.Lock()  # one per balancer (DriverFactory shares it)
        self._resolve = resolve
        self.use_ip_address = use_ip_address
        self.drains: dict[Key, float] = {}
        self._backends: list[Backend] = []
        self._desired: dict[Key, int] = {}
        self._skipped: list[str] = []
        self._last_reconcile: float | None = None
        self._last_apply: float | None = None
        self._last_ops: list[str] = []
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self.applies = 0
        self.errors = 0

    async def desired(self, app: AppState) -> tuple[dict[Key, int], list[str]]:
        """The backends the job's serving tasks make, and the tasks skipped (with the reason)."""
        out: dict[Key, int] = {}
        skipped: list[str] = []
        resolved: dict[str, str | LBError] = {}
        idx = self.lb.port_index
        vport = None
        if isinstance(self.lb, LvsLB) and self.lb.forward != "nat":
            try:
                vport = parse_vip(self.lb.vip)[1]
            except ValueError as e:
                raise LBError(f"LVS vip: {e}") from None
        for task in sorted(app.serving_tasks(), key=lambda t: t.id):
            if len(task.ports) <= idx:
                skipped.append(f"task {task.id}: has {len(task.ports)} port(s), port_index {idx} needs more")
                continue
            port = vport or task.ports[idx]
            if not 0 < port < 65536:
                skipped.append(f"task {task.id}: port {port} is not from 1 to 65535")
                continue
            if self.use_ip_address:
                if not task.ip_addresses:
                    skipped.append(f"task {task.id}: no IP address (use_ip_address is set)")
                    continue
                host = task.ip_addresses[0]
            else:
                host = task.host
            if host not in resolved:  # several tasks on one agent: one lookup
                try:
                    resolved[host] = await self._resolve(host)
                except LBError as e:
                    resolved[host] = e
            address = resolved[host]
            if isinstance(address, LBError):
                skipped.append(f"task {task.id}: {address.message}")
                continue
            out[(address, port)] = self.lb.weight
        return out, skipped

    async def reconcile(self, app: AppState, now: float) -> ReconcileResult:
        async with self.lock:
            self._last_reconcile = now
            desired: dict[Key, int] = {}
            skipped: list[str] = []
            ops: list[Op] = []
            try:
                desired, skipped = await self.desired(app)
                self._desired, self._skipped = desired, skipped
                current = await self.driver.read()
                self._backends = current
                result = diff(desired, current, self.drains, now, self.lb.drain)
                ops = result.ops
                await self.driver.apply(ops)
            except Exception as e:  # every failure is recorded, none stops the daemon
                message = e.message if isinstance(e, LBError) else f"internal error: {type(e).__name__}: {e}"
                if not isinstance(e, LBError):
                    log.exception("lb reconcile %s %s", self.job, self.key)
                self._last_error, self._last_error_at = message, now
                self.errors += 1
                return ReconcileResult(False, ops, self._backends, desired, skipped, message)
            self.drains = result.drains
            self._backends = apply_ops(current, ops)
            if ops:
                self._last_apply, self._last_ops = now, [str(op) for op in ops]
                self.applies += 1
            self._last_error = None
            return ReconcileResult(True, ops, self._backends, desired, skipped)

    def status(self) -> dict[str, Any]:
        return {
            "balancer": self.key,
            "type": self.lb.type,
            "name": self.lb.name,
            "backends": [
                {
                    "address": b.address,
                    "weight": b.weight,
                    "state": b.state,
                    "desired": b.key in self._desired,
                    "drain_started": self.drains.get(b.key),
                }
                for b in sorted(self._backends, key=lambda b: b.key)
            ],
            "desired": [format_hostport(*k) for k in sorted(self._desired)],
            "skipped": list(self._skipped),
            "last_reconcile": self._last_reconcile,
            "last_apply": self._last_apply,
            "last_ops": list(self._last_ops),
            "last_error": self._last_error,
            "last_error_at": self._last_error_at,
            "applies": self.applies,
            "errors": self.errors,
        }


@dataclass(frozen=True, slots=True)
class LBSettings:
    """Where the balancers live on this host (daemon config). Defaults are Debian's paths."""

    timeout: float = 10.0
    ipvsadm: str = "ipvsadm"
    keepalived: str = "keepalived"
    keepalived_config: Path = Path("/etc/keepalived/keepalived.conf")
    keepalived_include_dir: Path = Path("/etc/keepalived/oceand")  # main config: include <dir>/*.conf
    keepalived_pid_file: Path | None = Path("/run/keepalived.pid")
    keepalived_real_server_lines: tuple[str, ...] = ()  # e.g. ("TCP_CHECK { connect_timeout 3 }",)
    nginx: str = "nginx"
    nginx_conf: Path = Path("/etc/nginx/nginx.conf")
    nginx_prefix: Path | None = None
    nginx_pid_file: Path | None = None  # set: SIGHUP the master instead of `nginx -s reload`
    nginx_upstream_dir: Path = Path("/etc/nginx/oceand")  # upstream NAME { include <dir>/NAME.upstream; }
    nginx_min_reload_interval: float = 1.0
    nginx_max_fails: int = 2
    nginx_fail_timeout: str = "5s"
    haproxy_socket: Path = Path("/run/haproxy/admin.sock")
    haproxy_servers_dir: Path | None = Path("/etc/haproxy/oceand")  # haproxy -f main.cfg -f <dir>
    haproxy_backend_lines: tuple[str, ...] = ("balance roundrobin",)
    haproxy_server_options: str = ""  # e.g. "check inter 2s"
    use_ip_address: bool = False


class DriverFactory:
    def __init__(self, settings: LBSettings):
        self.settings = settings
        self._locks: dict[str, asyncio.Lock] = {}
        self._nginx: dict[Path, NginxInstance] = {}
        self._keepalived: dict[Path, KeepalivedInstance] = {}

    def driver(self, lb: LoadBalancer) -> Driver:
        s = self.settings
        if isinstance(lb, NginxLB):
            nginx = self._nginx.get(s.nginx_conf)
            if nginx is None:
                nginx = self._nginx[s.nginx_conf] = NginxInstance(
                    s.nginx_conf,
                    binary=s.nginx,
                    prefix=s.nginx_prefix,
                    pid_file=s.nginx_pid_file,
                    timeout=s.timeout,
                    min_reload_interval=s.nginx_min_reload_interval,
                )
            return NginxDriver(
                s.nginx_upstream_dir / f"{lb.upstream}.upstream",
                nginx,
                max_fails=s.nginx_max_fails,
                fail_timeout=s.nginx_fail_timeout,
            )
        if isinstance(lb, HaproxyLB):
            servers_file = (
                None if s.haproxy_servers_dir is None else s.haproxy_servers_dir / f"{lb.backend}.cfg"
            )
            return HaproxyDriver(
                s.haproxy_socket,
                lb.backend,
                servers_file=servers_file,
                backend_lines=s.haproxy_backend_lines,
                server_options=s.haproxy_server_options,
                timeout=s.timeout,
            )
        if lb.driver == "ipvsadm":
            return IpvsadmDriver(
                lb.vip,
                protocol=lb.protocol,
                scheduler=lb.scheduler,
                forward=lb.forward,
                binary=s.ipvsadm,
                timeout=s.timeout,
            )
        keepalived = self._keepalived.get(s.keepalived_config)
        if keepalived is None:
            keepalived = self._keepalived[s.keepalived_config] = KeepalivedInstance(
                s.keepalived_config, binary=s.keepalived, pid_file=s.keepalived_pid_file, timeout=s.timeout
            )
        name = re.sub(r"[^A-Za-z0-9]+", "_", lb.vip).strip("_")
        return KeepalivedDriver(
            lb.vip,
            include_file=s.keepalived_include_dir / f"{lb.protocol}_{name}.conf",
            keepalived=keepalived,
            protocol=lb.protocol,
            scheduler=lb.scheduler,
            forward=lb.forward,
            real_server_lines=s.keepalived_real_server_lines,
        )

    def reconciler(self, job: str, lb: LoadBalancer) -> Reconciler:
        key = balancer_key(lb)
        lock = self._locks.setdefault(key, asyncio.Lock())
        return Reconciler(job, lb, self.driver(lb), lock=lock, use_ip_address=self.settings.use_ip_address)
