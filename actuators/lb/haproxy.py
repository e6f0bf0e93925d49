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

Runtime changes are lost on reload, so after every change the driver also writes the servers to
`servers_file` (draining servers with weight 0, those in maintenance `disabled`). The operator defines
the backend there and loads it after the main config: `haproxy -f /etc/haproxy/haproxy.cfg -f
/etc/haproxy/oceand/` (a folder loads every *.cfg in it).

The driver owns only the servers it names (`t_…`, see `owns`): `read` reports only those, so the diff
never drains or deletes a server the operator wrote, and the file is rewritten by `merge_backend`,
which replaces the driver's `server t_…` lines of the backend section and keeps every other line of
the file (mode, balance, options, timeouts, default-server, the operator's own servers, comments,
blank lines, other sections) byte for byte. Only a missing file or section is rendered from
`backend_lines`. HAProxy needs a dynamic balance algorithm (not static-rr) to add servers at run time,
and it does not apply a backend's `default-server` line to servers added at run time (only after a
reload): options those servers need at once go in `server_options`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from pathlib import Path

from actuators.lb import LBError, atomic_write, read_text, split_lines
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


OWNED_PREFIX = "t_"
# Keywords that open a section of an HAProxy config file: a backend section ends at the next one.
SECTIONS = frozenset(
    [
        "global",
        "defaults",
        "frontend",
        "backend",
        "listen",
        "peers",
        "resolvers",
        "userlist",
        "mailers",
        "program",
        "http-errors",
        "ring",
        "cache",
        "fcgi-app",
        "log-forward",
        "crt-store",
        "traces",
        "acme",
    ]
)


def owns(name: str) -> bool:
    """Whether a server belongs to oceand: the names it gives (`server_name`) start with `t_`."""
    return name.startswith(OWNED_PREFIX)


def server_line(b: Backend, server_options: str = "") -> str:
    """One `server` line (without indentation) as the driver writes it."""
    name = b.name or server_name(b.host, b.port)
    weight = 0 if b.state == "draining" else b.weight
    disabled = " disabled" if b.state == "maint" else ""
    opts = f" {server_options}" if server_options else ""
    return f"server {name} {b.address} weight {weight}{disabled}{opts}"


def _words(line: str) -> list[str]:
    return line.split("#", 1)[0].split()


def _header(backend: str) -> list[str]:
    return [
        f"# HAProxy backend {backend}. oceand rewrites only its own `server t_...` lines in it; every",
        "# other line is yours and is kept as it is. Load it after the main config:",
        "# haproxy -f haproxy.cfg -f <this file or its folder>",
    ]


def _legacy_header(backend: str) -> str:
    """The header earlier versions wrote (they rewrote the whole file); `merge_backend` updates it."""
    return (
        f"# Managed by oceand: HAProxy backend {backend} and its servers. Rewritten on every change.\n"
        "# Load it after the main config: haproxy -f haproxy.cfg -f <this file or its folder>\n"
    )


def render_backend(
    backend: str,
    servers: Sequence[Backend],
    *,
    backend_lines: Sequence[str] = ("balance roundrobin",),
    server_options: str = "",
) -> str:
    """A new backend section with its servers (when the file or the section does not exist yet)."""
    lines = [
        *_header(backend),
        f"backend {backend}",
        *(f"    {ln}" for ln in backend_lines),
    ]
    lines += [f"    {server_line(b, server_options)}" for b in _sorted(servers)]
    return "\n".join(lines) + "\n"


def merge_backend(
    text: str | None,
    backend: str,
    servers: Sequence[Backend],
    *,
    backend_lines: Sequence[str] = ("balance roundrobin",),
    server_options: str = "",
) -> str:
    """`text` (a config file) with the owned server lines of section `backend` (or `listen`) replaced
    by `servers`; every other line stays as it was. The new lines go where the first owned server line
    was, else after the section's last `server` line, else after its last setting. A file without
    the section gets a new one at its end (`render_backend`)."""
    text = (text or "").replace(_legacy_header(backend), "".join(f"{ln}\n" for ln in _header(backend)))
    lines = split_lines(text)
    start = next(
        (i for i, ln in enumerate(lines) if _words(ln)[:2] in (["backend", backend], ["listen", backend])),
        None,
    )
    if start is None:
        fresh = render_backend(backend, servers, backend_lines=backend_lines, server_options=server_options)
        if not lines:
            return fresh
        head = "".join(lines)
        return head + ("" if head.endswith("\n") else "\n") + "\n" + fresh
    end = next(
        (i for i in range(start + 1, len(lines)) if _words(lines[i])[:1] and _words(lines[i])[0] in SECTIONS),
        len(lines),
    )
    body = lines[start + 1 : end]
    kept: list[str] = []
    at: int | None = None
    last_server: int | None = None
    last_setting: int | None = None
    indent: str | None = None
    for ln in body:
        w = _words(ln)
        if len(w) >= 2 and w[0] == "server" and owns(w[1]):
            if at is None:
                at = len(kept)
            indent = indent or ln[: len(ln) - len(ln.lstrip())]
            continue
        kept.append(ln)
        if w:
            last_setting = len(kept)
            if w[0] in ("server", "server-template"):
                last_server = len(kept)
            if indent is None:
                indent = ln[: len(ln) - len(ln.lstrip())]
    if at is None:
        at = last_server if last_server is not None else last_setting if last_setting is not None else 0
    if at > 0 and not kept[at - 1].endswith("\n"):
        kept[at - 1] += "\n"
    new = [f"{indent or '    '}{server_line(b, server_options)}\n" for b in _sorted(servers)]
    return "".join(lines[: start + 1] + kept[:at] + new + kept[at:] + lines[end:])


def _sorted(servers: Sequence[Backend]) -> list[Backend]:
    return sorted(servers, key=lambda b: (b.key, b.name or ""))


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
        """The backend's servers that oceand owns (`owns`); the operator's other servers are not reported,
        so they are never drained or deleted."""
        servers = parse_servers_state(await self._cmd(f"show servers state {self.backend}"), self.backend)
        return [b for b in servers if b.name is None or owns(b.name)]

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
            old = read_text(self.servers_file)
            text = merge_backend(
                old,
                self.backend,
                servers,
                backend_lines=self.backend_lines,
                server_options=self.server_options,
            )
            if old != text:
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
