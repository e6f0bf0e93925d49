"""LVS through keepalived: one `virtual_server` block per include file (PROTOCOLS.md C.2, C.3).

The driver owns, in that block, the `real_server` blocks (one per backend with its weight; a draining
backend has weight 0, plus the configured `real_server_lines`) and the lines the job document sets
(`lvs_sched`/`lb_algo`, `lvs_method`/`lb_kind`, `protocol`). `merge` replaces only those and keeps
every other line of the file (delay_loop, persistence_timeout, sorry_server, comments, …) as it was;
a file without a block gets a new one (`render`). It writes the file atomically, checks the whole
configuration with the real `keepalived -t -f <main config>`, then SIGHUPs keepalived (pid file). A
failed check puts the last good file back, leaves keepalived alone and raises LBError with
keepalived's text. keepalived refuses a virtual_server without real servers, so with no backends the
block is parked: its lines stay in the file behind `#oceand-parked# ` (keepalived then removes the
virtual service) and come back with the next backend.

The operator's main config includes the folder: `include /etc/keepalived/oceand/*.conf`. Never edit
the same virtual service with ipvsadm as well: keepalived does not restore manual changes on reload.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from actuators.lb import CheckedFile, LBError, read_text, run_command, signal_pidfile, split_lines
from actuators.lb.diff import Backend, Op, apply_ops, parse_vip

_METHODS = {"nat": "NAT", "dr": "DR", "tun": "TUN"}
_REAL_SERVER = re.compile(r"^\s*real_server\s+(\S+)\s+(\d+)\s*\{\s*$")
_WEIGHT = re.compile(r"^\s*weight\s+(-?\d+)\s*$")
MAX_WEIGHT = 2147483647
# What `keepalived -t` (2.2) prints, exiting 5, for a virtual server whose real servers all have weight 0.
_ALL_WEIGHTS_ZERO = re.compile(
    r"^(Warning - quorum \d+ for \S+ exceeds total weight of real servers 0, reducing quorum to 0"
    r"|Virtual server \S+: hysteresis \d+ >= quorum 0; setting hysteresis to \d+)$"
)


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
        """`keepalived -t`; LBError unless it passes. Exit 5 with only the warnings that every real
        server of a virtual server has weight 0 (all draining) passes: keepalived loads that config
        (it lowers the quorum), and it is how the last backends of a job drain."""
        result = await run_command([self.binary, "-t", "-f", str(self.main_config)], timeout=self.timeout)
        lines = result.output.splitlines()
        if result.returncode == 5 and lines and all(_ALL_WEIGHTS_ZERO.match(ln.strip()) for ln in lines):
            return
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
    """A new include file: a header comment and the whole block (parked when there are no backends)."""
    head = _header(vip_host, vip_port, protocol)
    settings = _settings(protocol, scheduler, forward)
    lines = [
        f"virtual_server {vip_host} {vip_port} {{\n",
        f"    delay_loop {delay_loop}\n",
        *(f"    {key} {value}\n" for key, value in settings.items()),
        *(f"    {extra}\n" for extra in virtual_server_lines),
        *_real_servers(backends, real_server_lines),
        "}\n",
    ]
    return head + "".join(lines if backends else _park(lines))


def _header(vip_host: str, vip_port: int, protocol: str) -> str:
    return (
        f"# LVS virtual server {vip_host} {vip_port} {protocol}. oceand writes its real_server blocks and"
        " lvs_sched, lvs_method, protocol; every other line is kept as it is.\n"
    )


# The header earlier versions wrote (they rewrote the whole file); `merge` updates it.
_LEGACY_HEADER = re.compile(
    r"^# Managed by oceand: LVS virtual server (\S+) (\d+) (\w+)\. Rewritten on every change\.\n", re.M
)


def _settings(protocol: str, scheduler: str, forward: str) -> dict[str, str]:
    """The block's settings that come from the job document, by their keepalived keyword."""
    return {"lvs_sched": scheduler, "lvs_method": _METHODS[forward], "protocol": protocol.upper()}


def _real_servers(backends: Sequence[Backend], real_server_lines: Sequence[str]) -> list[str]:
    lines: list[str] = []
    for b in sorted(backends, key=lambda b: b.key):
        weight = 0 if b.state != "active" else b.weight
        if not 0 < b.port < 65536:
            raise LBError(f"real server {b.address}: port must be from 1 to 65535")
        if not 0 <= weight <= MAX_WEIGHT:
            raise LBError(f"real server {b.address}: weight {weight} outside 0..{MAX_WEIGHT}")
        lines += [f"    real_server {b.host} {b.port} {{\n", f"        weight {weight}\n"]
        lines += [f"        {extra}\n" for extra in real_server_lines]
        lines.append("    }\n")
    return lines


PARKED = "#oceand-parked# "
PARKED_NOTE = (
    "# oceand: no backends; keepalived refuses a virtual_server without real servers, so it is parked:\n"
)
# Keywords of the settings that come from the job document, and their synonyms (keepalived accepts both).
_OWNED_SETTINGS = {
    "lvs_sched": "lvs_sched",
    "lb_algo": "lvs_sched",
    "lvs_method": "lvs_method",
    "lb_kind": "lvs_method",
    "protocol": "protocol",
}


def _park(lines: list[str]) -> list[str]:
    return [PARKED_NOTE, *(PARKED + ln for ln in lines)]


def _code(line: str) -> str:
    return line.split("#", 1)[0]


def merge(
    text: str | None,
    backends: Sequence[Backend],
    *,
    protocol: str,
    scheduler: str,
    forward: str,
    real_server_lines: Sequence[str] = (),
    fresh: Callable[[], str],
) -> str:
    """`text` (the include file) with the block's real_server blocks and job settings replaced and
    every other line kept. The real servers go where the first one was, else before the block's
    closing brace; a missing setting is added after the `virtual_server` line. No block in `text`:
    `fresh()`. No backends: the block is parked (see the module doc)."""
    text = _LEGACY_HEADER.sub(lambda m: _header(m[1], int(m[2]), m[3]), text or "")
    lines = [ln.removeprefix(PARKED) for ln in split_lines(text) if ln != PARKED_NOTE]
    start = next((i for i, ln in enumerate(lines) if _code(ln).split()[:1] == ["virtual_server"]), None)
    if start is None:
        return fresh()
    depth, end = 0, len(lines)  # end: the line that closes the block (len(lines): never closed)
    for i in range(start, len(lines)):
        depth += _code(lines[i]).count("{") - _code(lines[i]).count("}")
        if i > start and depth <= 0:
            end = i
            break
    settings = _settings(protocol, scheduler, forward)
    body: list[str] = []
    at: int | None = None
    depth = 1
    skipping = False
    for ln in lines[start + 1 : end]:
        words = _code(ln).split()
        if depth == 1 and words[:1] == ["real_server"]:
            at = len(body) if at is None else at
            skipping = True
        elif depth == 1 and not skipping and words[:1] and words[0] in _OWNED_SETTINGS:
            key = _OWNED_SETTINGS[words[0]]
            indent = ln[: len(ln) - len(ln.lstrip())]
            body.append(f"{indent}{words[0]} {settings.pop(key)}\n" if key in settings else "")
        elif not skipping:
            body.append(ln)
        depth += _code(ln).count("{") - _code(ln).count("}")
        if skipping and depth == 1:
            skipping = False
    if at is None:
        at = len(body)
    if at > 0 and not body[at - 1].endswith("\n"):
        body[at - 1] += "\n"
    missing = [f"    {key} {value}\n" for key, value in settings.items()]
    block = [lines[start], *missing, *body[:at], *_real_servers(backends, real_server_lines), *body[at:]]
    closing = lines[end] if end < len(lines) else "}"
    block.append(closing if closing.endswith("\n") else closing + "\n")
    if not backends:
        block = _park(block)
    return "".join(lines[:start] + block + lines[end + 1 :])


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
            backends = apply_ops(parse(old), ops)
            text = merge(
                old,
                backends,
                protocol=self.protocol,
                scheduler=self.scheduler,
                forward=self.forward,
                real_server_lines=self.real_server_lines,
                fresh=lambda: self.render(backends),
            )
            if await self._file.write(old, text, self.keepalived.check):
                self.keepalived.reload()
                self._file.pending = False
