"""Load-balancer drivers: LVS (ipvsadm, keepalived), nginx and HAProxy follow a job's instances (§4.2).

Every driver implements `Driver`: `read()` what the balancer has now, `apply(ops)` the operations the
pure `diff` computed (actuators.lb.diff). The reconciler (actuators.lb.reconcile) runs read → diff →
apply per balancer. Errors from a balancer are `LBError` carrying the tool's own text.

This module also holds what the drivers share: running a command with a timeout, writing a file
atomically, and signalling a process named by a pid file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from actuators.lb.diff import Backend, Op

__all__ = [
    "Backend",
    "CommandResult",
    "Driver",
    "LBError",
    "Op",
    "atomic_write",
    "read_text",
    "restore",
    "run_command",
    "signal_pidfile",
    "split_lines",
]


class LBError(Exception):
    """A balancer refused or failed an operation; the message holds the tool's own text."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Driver(Protocol):
    async def read(self) -> list[Backend]:
        """The backends the balancer has now."""
        ...

    async def apply(self, ops: list[Op]) -> None:
        """Apply `ops` (from `diff` against a recent `read`). `apply([])` is cheap: it only finishes
        work an interrupted earlier apply left pending (a written but not yet loaded config)."""
        ...


@dataclass(frozen=True, slots=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stderr and stdout, stripped, for error messages."""
        return "\n".join(s for s in (self.stderr.strip(), self.stdout.strip()) if s)


async def run_command(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
) -> CommandResult:
    """Run a command, capture its output. A missing binary or a timeout is an `LBError`; a non-zero
    exit is returned (callers decide which failures are success, e.g. ipvsadm re-entrancy). A cancelled
    caller kills the command before the cancellation goes on."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=None if env is None else dict(env),
        )
    except OSError as e:
        raise LBError(f"cannot run {argv[0]}: {e.strerror or e}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except BaseException as e:  # timeout or cancellation: never leave the child running
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(Exception):
            await asyncio.shield(proc.wait())
        if isinstance(e, TimeoutError):
            raise LBError(f"{' '.join(argv)}: no answer within {timeout:g} s (killed)") from None
        raise
    assert proc.returncode is not None
    return CommandResult(
        tuple(argv), proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    )


def read_text(path: Path) -> str | None:
    """The file's text, or None when it does not exist."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise LBError(f"cannot read {path}: {e.strerror or e}") from None


def split_lines(text: str) -> list[str]:
    """The lines of `text`, each with its `\n` (the last one may lack it). Only `\n` ends a line, so
    joining them gives back `text` byte for byte (`str.splitlines` also splits at form feeds and
    other separators)."""
    return re.findall(r"[^\n]*\n|[^\n]+\Z", text)


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to a temp file in the same folder, fsync, rename over `path` (readers see the old
    or the new file, never a half-written one)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise LBError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise LBError(f"cannot write {path}: {e.strerror or e}") from None
        raise


class CheckedFile:
    """An include file that a server's config check must accept (nginx, keepalived).

    `write` puts the new text in place atomically and runs the check; on a failed check it puts back the
    last text that passed (or what was there before) and raises. `pending` is True while a written file
    has not been loaded by a reload yet — also at start, since an earlier process may have written one.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pending = True
        self.last_good: str | None = None

    async def write(self, old: str | None, text: str, check: Callable[[], Awaitable[None]]) -> bool:
        """True when the caller must reload (the file changed, or an earlier write was never loaded)."""
        was_pending = self.pending
        if text != old:
            atomic_write(self.path, text)
            self.pending = True
        if not self.pending:
            return False
        try:
            await check()
        except LBError:
            restore(self.path, self.last_good if self.last_good is not None else old)
            self.pending = was_pending
            raise
        self.last_good = text
        return True


def restore(path: Path, old: str | None) -> None:
    """Put back what `read_text` returned before a change (None: the file did not exist)."""
    if old is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    else:
        atomic_write(path, old)


def signal_pidfile(pid_file: Path, sig: signal.Signals, what: str) -> int:
    """Send `sig` to the pid in `pid_file`; LBError naming `what` when it is missing, bad or stale."""
    text = read_text(pid_file)
    if text is None:
        raise LBError(f"{what} is not running: pid file {pid_file} does not exist")
    try:
        pid = int(text.split()[0])
    except (ValueError, IndexError):
        raise LBError(f"pid file {pid_file} of {what} does not hold a pid: {text[:40]!r}") from None
    if pid <= 1:
        raise LBError(f"pid file {pid_file} of {what} holds an invalid pid {pid}")
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        raise LBError(f"{what} is not running: no process {pid} (pid file {pid_file})") from None
    except PermissionError:
        raise LBError(f"not allowed to signal {what} (pid {pid})") from None
    return pid
