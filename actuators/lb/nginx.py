"""nginx: an upstream's servers in an include file, checked with `nginx -t`, loaded by a reload
(PROTOCOLS.md D.1, D.4).

The operator's config holds `upstream NAME { include <dir>/NAME.upstream; }`. The driver renders that
file (`server host:port weight=W max_fails=2 fail_timeout=5s;`, a draining server gets `down`) to a temp
file in the same folder, renames it over the old one, runs `nginx -t -q -c <conf> [-p <prefix>]` and then
`nginx -s reload` (or SIGHUPs the master named by a pid file). A failed check puts the last good file
back, leaves nginx running on its old config and raises LBError with nginx's message. Old workers finish
their in-flight requests after a reload; a `down` server gets no new ones.

The driver owns the `server` lines of the include file and nothing else: `merge` replaces them (where
the first one was, else at the end) and keeps every other line as it was, so the operator may keep
directives of the upstream (`zone`, `least_conn`, `keepalive`, …) and comments in the file as well as
around the `include` in nginx.conf, which the driver never touches.

nginx refuses an upstream without servers, so an empty set renders one placeholder server marked `down`
(`read` does not report it). Reloads are debounced per nginx (at most one per `min_reload_interval`)
and coalesced: one reload serves every include file written before it started.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from actuators.lb import CheckedFile, LBError, read_text, run_command, signal_pidfile, split_lines
from actuators.lb.diff import Backend, Op, apply_ops, parse_hostport

PLACEHOLDER_MARK = "# oceand: placeholder, no backends"
HEADER = "# oceand writes the server lines of this upstream; every other line is kept as it is."
# What earlier versions wrote (they rewrote the whole file); `merge` updates it.
LEGACY_HEADER = "# Managed by oceand: the servers of one upstream. Rewritten on every change."
_SERVER = re.compile(r"^\s*server\s+(\S+)((?:\s+[^\s;]+)*)\s*;\s*(#.*)?$")


class NginxInstance:
    """One nginx (config, prefix, binary): the lock under which its include files are written and
    checked, and the debounced, coalescing reload."""

    def __init__(
        self,
        conf: Path,
        *,
        binary: str = "nginx",
        prefix: Path | None = None,
        pid_file: Path | None = None,
        timeout: float = 10.0,
        min_reload_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self.conf = conf
        self.binary = binary
        self.prefix = prefix
        self.pid_file = pid_file  # set: SIGHUP the master instead of running `nginx -s reload`
        self.timeout = timeout
        self.min_reload_interval = min_reload_interval
        self._clock = clock
        self._sleep = sleep
        self.lock = asyncio.Lock()
        self._reload_lock = asyncio.Lock()
        self._changes = 0  # generation of the include files (bumped after each checked write)
        self._loaded = 0  # generation the last reload started from
        self._last_reload: float | None = None
        self.reloads = 0

    def _args(self) -> list[str]:
        args = ["-c", str(self.conf)]
        return [*args, "-p", str(self.prefix)] if self.prefix is not None else args

    async def check(self) -> None:
        result = await run_command([self.binary, "-t", "-q", *self._args()], timeout=self.timeout)
        if result.returncode != 0:
            raise LBError(f"nginx -t failed (exit {result.returncode}): {_nginx_message(result.output)}")

    def changed(self) -> int:
        """Record a checked change (call with `lock` held); returns the generation to reload."""
        self._changes += 1
        return self._changes

    async def reload(self, generation: int) -> None:
        """Reload unless a reload that started after `generation` was written already did."""
        async with self._reload_lock:
            if self._loaded >= generation:
                return
            if self._last_reload is not None:
                wait = self._last_reload + self.min_reload_interval - self._clock()
                if wait > 0:
                    await self._sleep(wait)
            async with self.lock:  # no include file is being changed while nginx reads them
                self._loaded = self._changes
                self._last_reload = self._clock()
                await self._signal()
            self.reloads += 1

    async def _signal(self) -> None:
        if self.pid_file is not None:
            signal_pidfile(self.pid_file, signal.SIGHUP, "nginx")
            return
        result = await run_command([self.binary, "-s", "reload", *self._args()], timeout=self.timeout)
        if result.returncode != 0:
            raise LBError(
                f"nginx -s reload failed (exit {result.returncode}): {_nginx_message(result.output)}"
            )


def _nginx_message(output: str) -> str:
    """nginx's own complaint without its timestamp/pid prefix (`[emerg] invalid parameter …`)."""
    lines = [re.sub(r"^\S+ \S+ (\[\w+\]) \d+#\d+: ", r"\1 ", ln) for ln in output.splitlines()]
    important = [ln for ln in lines if ln.startswith("[")]
    return "; ".join(important or lines) or "(no output)"


def render(backends: Sequence[Backend], *, max_fails: int = 2, fail_timeout: str = "5s") -> str:
    """A new include file: a header comment and the server lines."""
    lines = [HEADER]
    for b in sorted(backends, key=lambda b: b.key):
        down = " down" if b.state != "active" else ""
        lines.append(
            f"server {b.address} weight={b.weight} max_fails={max_fails} fail_timeout={fail_timeout}{down};"
        )
    if not backends:
        lines.append(f"server 127.0.0.1:1 down;  {PLACEHOLDER_MARK}")
    return "\n".join(lines) + "\n"


def _is_server(line: str) -> bool:
    words = line.split("#", 1)[0].split()
    return bool(words) and words[0] == "server"


def merge(
    text: str | None, backends: Sequence[Backend], *, max_fails: int = 2, fail_timeout: str = "5s"
) -> str:
    """`text` (the include file, None: none yet) with its server lines replaced by `backends`; every
    other line stays as it was. The new lines go where the first server line was (with its
    indentation), else at the end."""
    fresh = render(backends, max_fails=max_fails, fail_timeout=fail_timeout)
    if text is None:
        return fresh
    kept: list[str] = []
    at: int | None = None
    indent = ""
    for line in split_lines(text.replace(LEGACY_HEADER, HEADER)):
        if _is_server(line):
            if at is None:
                at, indent = len(kept), line[: len(line) - len(line.lstrip())]
            continue
        kept.append(line)
    if at is None:
        at = len(kept)
    if at > 0 and not kept[at - 1].endswith("\n"):
        kept[at - 1] += "\n"
    new = [indent + line for line in split_lines(fresh)[1:]]  # without the header comment
    return "".join(kept[:at] + new + kept[at:])


def parse(text: str | None) -> list[Backend]:
    """The servers of an upstream include file (`down` → draining); other lines are the operator's.
    LBError on a server line it cannot read."""
    backends: list[Backend] = []
    for n, line in enumerate((text or "").splitlines(), 1):
        if not _is_server(line) or PLACEHOLDER_MARK in line:
            continue
        m = _SERVER.match(line)
        if not m:
            raise LBError(f"nginx upstream file line {n}: cannot read {line.strip()!r}")
        try:
            host, port = parse_hostport(m.group(1), default_port=80)
        except ValueError as e:
            raise LBError(f"nginx upstream file line {n}: {e}") from None
        params = m.group(2).split()
        weight = 1
        for p in params:
            if p.startswith("weight="):
                try:
                    weight = int(p.removeprefix("weight="))
                except ValueError:
                    raise LBError(f"nginx upstream file line {n}: bad {p!r}") from None
        backends.append(Backend(host, port, weight, "draining" if "down" in params else "active"))
    return backends


class NginxDriver:
    def __init__(
        self,
        include_file: Path,
        nginx: NginxInstance,
        *,
        max_fails: int = 2,
        fail_timeout: str = "5s",
    ):
        self.include_file = include_file
        self.nginx = nginx
        self.max_fails = max_fails
        self.fail_timeout = fail_timeout
        self._file = CheckedFile(include_file)

    def __repr__(self) -> str:
        return f"NginxDriver({self.include_file})"

    async def read(self) -> list[Backend]:
        return parse(read_text(self.include_file))

    async def apply(self, ops: list[Op]) -> None:
        if not ops and not self._file.pending:
            return
        async with self.nginx.lock:
            old = read_text(self.include_file)
            text = merge(
                old, apply_ops(parse(old), ops), max_fails=self.max_fails, fail_timeout=self.fail_timeout
            )
            if not await self._file.write(old, text, self.nginx.check):
                return
            generation = self.nginx.changed()
        await self.nginx.reload(generation)
        self._file.pending = False
