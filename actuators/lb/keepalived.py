"""LVS through keepalived: one `virtual_server` block per include file (PROTOCOLS.md C.2, C.3).

The driver renders the whole block (lvs_sched, lvs_method, protocol, one real_server per backend with
its weight; a draining backend has weight 0) into its include file atomically, checks the whole
configuration with the real `keepalived -t -f <main config>`, then SIGHUPs keepalived (pid file). A
failed check puts the last good file back, leaves keepalived alone and raises LBError with
keepalived's text. keepalived refuses a virtual_server without real servers, so an empty set renders
a file with no block (keepalived then removes the virtual service).

The operator's main config includes the folder: `include /etc/keepalived/oceand/*.conf`. Never edit
the same virtual service with ipvsadm as well: keepalived does not restore manual changes on reload.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from actuators.lb import CheckedFile, LBError, read_text, run_command, signal_pidfile
from actuators.lb.diff import Backend, Op, apply_ops, parse_vip

_METHODS = {"nat": "NAT", "dr": "DR", "tun": "TUN"}
_REAL_SERVER = re.compile(r"^\s*real_server\s+(\S+)\s+(\d+)\s*\{\s*$")
_WEIGHT = re.compile(r"^\s*weight\s+(-?\d+)\s*$")
MAX_WEIGHT = 2147483647


class KeepalivedInstance:
    """One keepalived process: its main config, binary, pid file. Its lock makes the drivers of its
    virtual servers write, check and reload one at a time."""

    def __init__(
        self,
        main_config: Path,
        *,
        binary: str = "keepalived",
        pid_file: Path | None = Path("/run/keepalived.pid"),
        timeout: float = 10.0,
    ):
        self.main_config = main_config
        self.binary = binary
        self.pid_file = pid_file
        self.timeout = timeout
        self.lock = asyncio.Lock()
        self.reloads = 0

    async def check(self) -> None:
        result = await run_command([self.binary, "-t", "-f", str(self.main_config)], timeout=self.timeout)
        if result.returncode != 0:
            raise LBError(
                f"keepalived -t -f {self.main_config} failed (exit {result.returncode}): {result.output}"
            )

    def reload(self) -> None:
        """SIGHUP keepalived (no pid file configured: nothing runs yet; the file is read at start)."""
        if self.pid_file is not None:
            signal_pidfile(self.pid_file, signal.SIGHUP, "keepalived")
        self.reloads += 1


def render(
    vip_host: str,
    vip_port: int,
    backends: Sequence[Backend],
    *,
    protocol: str,
    scheduler: str,
    forward: str,
    delay_loop: int = 6,
    virtual_server_lines: Sequence[str] = (),
    real_server_lines: Sequence[str] = (),
) -> str:
    head = f"# Managed by oceand: LVS virtual server {vip_host} {vip_port} {protocol}. Rewritten on every change.\n"
    if not backends:
        return head + "# No backends: keepalived refuses a virtual_server without real servers.\n"
    lines = [
        f"virtual_server {vip_host} {vip_port} {{",
        f"    delay_loop {delay_loop}",
        f"    lvs_sched {scheduler}",
        f"    lvs_method {_METHODS[forward]}",
        f"    protocol {protocol.upper()}",
        *(f"    {extra}" for extra in virtual_server_lines),
    ]
    for b in sorted(backends, key=lambda b: b.key):
        weight = 0 if b.state != "active" else b.weight
        if not 0 < b.port < 65536:
            raise LBError(f"real server {b.address}: port must be from 1 to 65535")
        if not 0 <= weight <= MAX_WEIGHT:
            raise LBError(f"real server {b.address}: weight {weight} outside 0..{MAX_WEIGHT}")
        lines += [f"    real_server {b.host} {b.port} {{", f"        weight {weight}"]
        lines += [f"        {extra}" for extra in real_server_lines]
        lines.append("    }")
    lines.append("}")
    return head + "\n".join(lines) + "\n"


def parse(text: str | None) -> list[Backend]:
    """The real servers of a rendered include file (weight 0 → draining)."""
    backends: list[Backend] = []
    host_port: tuple[str, int] | None = None
    weight = 1
    depth = 0
    for n, line in enumerate((text or "").splitlines(), 1):
        code = line.split("#", 1)[0]
        m = _REAL_SERVER.match(code)
        if m and depth == 1:
            host_port, weight = (m.group(1), int(m.group(2))), 1
        elif host_port is not None and depth == 2 and (w := _WEIGHT.match(code)):
            weight = int(w.group(1))
        depth += code.count("{") - code.count("}")
        if host_port is not None and depth == 1:
            backends.append(
                Backend(host_port[0], host_port[1], weight, "active" if weight > 0 else "draining")
            )
            host_port = None
        if depth < 0:
            raise LBError(f"keepalived include line {n}: unbalanced '}}'")
    return backends


class KeepalivedDriver:
    def __init__(
        self,
        vip: str,
        *,
        include_file: Path,
        keepalived: KeepalivedInstance,
        protocol: Literal["tcp", "udp"] = "tcp",
        scheduler: str = "wrr",
        forward: Literal["nat", "dr", "tun"] = "nat",
        delay_loop: int = 6,
        virtual_server_lines: Sequence[str] = (),
        real_server_lines: Sequence[str] = (),
    ):
        self._vip_error: LBError | None = None
        try:
            self.vip_host, self.vip_port = parse_vip(vip)
        except ValueError as e:  # reported by read/apply, so that the reconciler records it
            self._vip_error, self.vip_host, self.vip_port = LBError(f"LVS vip: {e}"), vip, 0
        self.include_file = include_file
        self.keepalived = keepalived
        self.protocol = protocol
        self.scheduler = scheduler
        self.forward = forward
        self.delay_loop = delay_loop
        self.virtual_server_lines = tuple(virtual_server_lines)
        self.real_server_lines = tuple(real_server_lines)
        self._file = CheckedFile(include_file)

    def __repr__(self) -> str:
        return f"KeepalivedDriver({self.include_file})"

    async def read(self) -> list[Backend]:
        if self._vip_error is not None:
            raise self._vip_error
        return parse(read_text(self.include_file))

    def render(self, backends: Sequence[Backend]) -> str:
        return render(
            self.vip_host,
            self.vip_port,
            backends,
            protocol=self.protocol,
            scheduler=self.scheduler,
            forward=self.forward,
            delay_loop=self.delay_loop,
            virtual_server_lines=self.virtual_server_lines,
            real_server_lines=self.real_server_lines,
        )

    async def apply(self, ops: list[Op]) -> None:
        if self._vip_error is not None:
            raise self._vip_error
        if not ops and not self._file.pending:
            return
        async with self.keepalived.lock:
            old = read_text(self.include_file)
            if await self._file.write(old, self.render(apply_ops(parse(old), ops)), self.keepalived.check):
                self.keepalived.reload()
                self._file.pending = False
