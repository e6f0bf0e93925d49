"""HAProxy through its runtime API (stats socket, `level admin`), PROTOCOLS.md D.2 and D.4.

One command per connection; the reply is read until HAProxy closes. read: `show servers state <be>`
(admin state bits: maintenance 0x27, drain 0x18). apply:
- add: `add server <be>/<name> <addr:port> weight W [options]` (a new server starts in maintenance),
  `enable health` when the options hold `check`, then `set server … state ready`;
- set_weight: `set server … weight W`; enable: weight, then `state ready`;
- drain: `set server … state drain`; delete: `set server … state maint`, then `del server` (HAProxy
  refuses to delete a server that still has connections: the error is reported and the next
  reconcile retries).
Server names come from the address: `t_10_0_0_11_31001`.

Runtime changes are lost on reload, so after every change the driver also writes the backend section
with the same servers to `servers_file` (draining servers with weight 0, those in maintenance
`disabled`). The operator defines the backend only there and loads it after the main config:
`haproxy -f /etc/haproxy/haproxy.cfg -f /etc/haproxy/oceand/` (a folder loads every *.cfg in it). The
section's other lines (`balance roundrobin`, timeouts, …) come from `backend_lines`; HAProxy needs a
dynamic balance algorithm (not static-rr) to add servers at run time.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from pathlib import Path

from actuators.lb import LBError, atomic_write, read_text
from actuators.lb.diff import Backend, Op, State

MAINT_BITS = 0x01 | 0x02 | 0x04 | 0x20  # forced, inherited, config, resolution maintenance
DRAIN_BITS = 0x08 | 0x10  # forced, inherited drain
_SAFE = re.compile(r"^[A-Za-z0-9_.:-]+$")


async def haproxy_command(socket_path: Path, command: str, timeout: float = 5.0) -> str:
    """Send one command to the runtime API and return the whole reply. LBError if unreachable."""
    if "\n" in command or ";" in command:
        raise LBError(f"refusing a runtime API command with a newline or ';': {command!r}")
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(socket_path)), timeout)
    except (OSError, TimeoutError) as e:
        raise LBError(f"cannot reach the HAProxy runtime API at {socket_path}: {e}") from None
    try:
        writer.write(command.encode() + b"\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)
    except (OSError, TimeoutError) as e:
        raise LBError(f"HAProxy runtime API at {socket_path}: {command!r}: {e or 'timeout'}") from None
    finally:
        writer.close()
    return data.decode(errors="replace")


def server_name(host: str, port: int) -> str:
    return "t_" + re.sub(r"[^A-Za-z0-9]", "_", host) + f"_{port}"


def parse_servers_state(text: str, backend: str) -> list[Backend]:
    """`show servers state <be>` → backends with their HAProxy names."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    header = next((ln for ln in lines if ln.startswith("#")), None)
    if header is None:
        raise LBError(f"HAProxy show servers state {backend}: {text.strip() or 'empty reply'}")
    cols = header.lstrip("# ").split()
    try:
        ix = {c: cols.index(c) for c in ("be_name", "srv_name", "srv_addr", "srv_admin_state", "srv_uweight")}
        ix["srv_port"] = cols.index("srv_port")
    except ValueError:
        raise LBError(f"HAProxy show servers state: unexpected columns {header!r}") from None
    out: list[Backend] = []
    for ln in lines:
        if ln.startswith("#") or ln.strip() == "1":
            continue
        f = ln.split()
        try:
            if f[ix["be_name"]] != backend:
                continue
            admin = int(f[ix["srv_admin_state"]])
            state: State = "maint" if admin & MAINT_BITS else "draining" if admin & DRAIN_BITS else "active"
            out.append(
                Backend(
                    f[ix["srv_addr"]],
                    int(f[ix["srv_port"]]),
                    int(f[ix["srv_uweight"]]),
                    state,
                    f[ix["srv_name"]],
                )
            )
        except (IndexError, ValueError):
            raise LBError(f"HAProxy show servers state: cannot read {ln!r}") from None
    return out


def render_backend(
    backend: str,
    servers: Sequence[Backend],
    *,
    backend_lines: Sequence[str] = ("balance roundrobin",),
    server_options: str = "",
) -> str:
    """The backend section with its servers, for the config file HAProxy loads after a reload."""
    opts = f" {server_options}" if server_options else ""
    lines = [
        f"# Managed by oceand: HAProxy backend {backend} and its servers. Rewritten on every change.",
        "# Load it after the main config: haproxy -f haproxy.cfg -f <this file or its folder>",
        f"backend {backend}",
        *(f"    {ln}" for ln in backend_lines),
    ]
    for b in sorted(servers, key=lambda b: (b.key, b.name or "")):
        name = b.name or server_name(b.host, b.port)
        weight = 0 if b.state == "draining" else b.weight
        disabled = " disabled" if b.state == "maint" else ""
        lines.append(f"    server {name} {b.address} weight {weight}{disabled}{opts}")
    return "\n".join(lines) + "\n"


class HaproxyDriver:
    def __init__(
        self,
        socket_path: Path,
        backend: str,
        *,
        servers_file: Path | None = None,
        backend_lines: Sequence[str] = ("balance roundrobin",),
        server_options: str = "",
        timeout: float = 5.0,
    ):
        if not _SAFE.match(backend):
            raise LBError(f"HAProxy backend name {backend!r}: use letters, digits and _ . : -")
        if any(c in server_options for c in "\n;"):
            raise LBError(f"HAProxy server options {server_options!r} may not hold ';' or a newline")
        self.socket_path = socket_path
        self.backend = backend
        self.servers_file = servers_file
        self.backend_lines = tuple(backend_lines)
        self.server_options = server_options
        self.timeout = timeout
        self._file_synced = False

    def __repr__(self) -> str:
        return f"HaproxyDriver({self.socket_path} {self.backend})"

    async def read(self) -> list[Backend]:
        return parse_servers_state(await self._cmd(f"show servers state {self.backend}"), self.backend)

    async def apply(self, ops: list[Op]) -> None:
        errors: list[str] = []
        for op in ops:
            try:
                await self._apply_one(op)
            except LBError as e:
                errors.append(e.message)
        if self.servers_file is not None and (ops or not self._file_synced):
            self._file_synced = False
            servers = await self.read()
            text = render_backend(
                self.backend, servers, backend_lines=self.backend_lines, server_options=self.server_options
            )
            if read_text(self.servers_file) != text:
                atomic_write(self.servers_file, text)
            self._file_synced = True
        if errors:
            raise LBError("; ".join(errors))

    async def _apply_one(self, op: Op) -> None:
        srv = f"{self.backend}/{op.name or server_name(op.host, op.port)}"
        if op.kind == "add":
            opts = f" {self.server_options}" if self.server_options else ""
            reply = await self._cmd(f"add server {srv} {op.address} weight {op.weight}{opts}")
            if "Already exists a server with the same name" in reply:
                await self._expect(f"set server {srv} weight {op.weight}")
            elif "New server registered" not in reply:
                raise LBError(f"HAProxy add server {srv} {op.address}: {reply.strip()}")
            if re.search(r"(^|\s)check(\s|$)", self.server_options):
                await self._expect(f"enable health {srv}")
            await self._expect(f"set server {srv} state ready")
        elif op.kind in ("set_weight", "enable"):
            await self._expect(f"set server {srv} weight {op.weight}")
            if op.kind == "enable":
                await self._expect(f"set server {srv} state ready")
        elif op.kind == "drain":
            await self._expect(f"set server {srv} state drain", missing_ok=True)
        else:  # delete
            if await self._expect(f"set server {srv} state maint", missing_ok=True):
                await self._expect(f"del server {srv}", missing_ok=True, ok_text="Server deleted.")

    async def _expect(self, command: str, *, missing_ok: bool = False, ok_text: str = "") -> bool:
        """Run a command that answers nothing (or `ok_text`) on success; False if the server is gone
        and `missing_ok`; LBError with HAProxy's reply otherwise."""
        reply = (await self._cmd(command)).strip()
        if not reply or (ok_text and reply == ok_text):
            return True
        if missing_ok and reply == "No such server.":
            return False
        raise LBError(f"HAProxy {command!r}: {reply}")

    async def _cmd(self, command: str) -> str:
        return await haproxy_command(self.socket_path, command, self.timeout)
