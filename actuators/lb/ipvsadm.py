"""LVS through the `ipvsadm` command (PROTOCOLS.md C.1).

read: `ipvsadm -S -n`, the lines of one virtual service (`-A -t|-u vip -s sched`, `-a … -r rs -m|-g|-i
-w W`); a real server of weight 0 is draining (quiescent). apply: `-A` (service missing), `-E`
(scheduler differs; -E resets what it is not given, so the service's other saved options such as
`-p` persistence are passed back), `-a` / `-e` / `-d` with the forward method. ipvsadm's commands are not
idempotent, so its own refusals are success when the wanted state then holds:
"Service already exists" on -A, "Destination already exists" on -a (then -e sets the weight),
"No such destination" on -e (then -a) and on -d.

Real servers must be IP addresses (the reconciler resolves host names); with direct routing (-g) and
tunnelling (-i) IPVS uses the virtual port as the real server's port.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from actuators.lb import CommandResult, LBError, run_command
from actuators.lb.diff import Backend, Op, format_hostport, parse_hostport, parse_vip

Forward = Literal["nat", "dr", "tun"]
FORWARD_FLAGS: dict[str, str] = {"nat": "-m", "dr": "-g", "tun": "-i"}
_PROTO_FLAGS = {"tcp": "-t", "udp": "-u"}


@dataclass(slots=True)
class Service:
    """One virtual service as `ipvsadm -S -n` shows it."""

    flag: str  # -t / -u
    address: str  # host:port as ipvsadm prints it
    scheduler: str
    dests: list[Backend] = field(default_factory=list)
    options: tuple[str, ...] = ()  # the service's other options as saved (-p 300, -M …), in order
    forward: dict[tuple[str, int], str] = field(default_factory=dict)  # key -> -m/-g/-i


def parse_save(text: str) -> dict[tuple[str, str], Service]:
    """`ipvsadm -S -n` output → {(flag, address): Service}. Raises LBError on a line it cannot read."""
    services: dict[tuple[str, str], Service] = {}
    for n, line in enumerate(text.splitlines(), 1):
        words = shlex.split(line)
        if not words:
            continue
        if words[0] == "ipvsadm":
            words = words[1:]
        opts = _options(words)
        svc_flag = next((f for f in ("-t", "-u", "-f") if f in opts), None)
        if svc_flag is None or words[0] not in ("-A", "-a"):
            raise LBError(f"ipvsadm -S line {n}: cannot read {line!r}")
        key = (svc_flag, opts[svc_flag])
        if words[0] == "-A":
            services[key] = Service(svc_flag, opts[svc_flag], opts.get("-s", "wlc"), options=_others(words))
            continue
        svc = services.get(key)
        if svc is None or "-r" not in opts:
            raise LBError(f"ipvsadm -S line {n}: real server without its service: {line!r}")
        try:
            host, port = parse_hostport(opts["-r"])
            weight = int(opts.get("-w", "1"))
        except ValueError as e:
            raise LBError(f"ipvsadm -S line {n}: {e}") from None
        svc.dests.append(Backend(host, port, weight, "active" if weight > 0 else "draining"))
        svc.forward[(host, port)] = next((f for f in ("-m", "-g", "-i") if f in opts), "-g")
    return services


def _options(words: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    i = 0
    while i < len(words):
        w = words[i]
        if w.startswith("-") and i + 1 < len(words) and not words[i + 1].startswith("-"):
            out[w] = words[i + 1]
            i += 2
        else:
            out[w] = ""
            i += 1
    return out


def _others(words: list[str]) -> tuple[str, ...]:
    """The words of a saved `-A` line other than -A, the service and the scheduler (with their values)."""
    out: list[str] = []
    i = 1
    while i < len(words):
        if words[i] in ("-t", "-u", "-f", "-s"):
            i += 2
        else:
            out.append(words[i])
            i += 1
    return tuple(out)


class IpvsadmDriver:
    def __init__(
        self,
        vip: str,
        *,
        protocol: Literal["tcp", "udp"] = "tcp",
        scheduler: str = "wrr",
        forward: Forward = "nat",
        binary: str = "ipvsadm",
        timeout: float = 10.0,
        env: Mapping[str, str] | None = None,
    ):
        self._vip_error: LBError | None = None
        try:
            host, port = parse_vip(vip)
        except ValueError as e:  # reported by read/apply, so that the reconciler records it
            self._vip_error, host, port = LBError(f"LVS vip: {e}"), vip, 0
        self.vip = format_hostport(host, port)
        self.flag = _PROTO_FLAGS[protocol]
        self.scheduler = scheduler
        self.forward_flag = FORWARD_FLAGS[forward]
        self.binary = binary
        self.timeout = timeout
        self.env = env
        self._service: Service | None = None
        self._read_once = False

    def __repr__(self) -> str:
        return f"IpvsadmDriver({self.flag} {self.vip})"

    async def read(self) -> list[Backend]:
        if self._vip_error is not None:
            raise self._vip_error
        result = await self._run("-S", "-n")
        if result.returncode != 0:
            raise LBError(f"ipvsadm -S -n failed (exit {result.returncode}): {result.output}")
        self._service = parse_save(result.stdout).get((self.flag, self.vip))
        self._read_once = True
        return list(self._service.dests) if self._service else []

    async def apply(self, ops: list[Op]) -> None:
        if self._vip_error is not None:
            raise self._vip_error
        if not self._read_once:
            await self.read()
        if ops and self._service is None:
            await self._ensure_service()
        elif self._service is not None and self._service.scheduler != self.scheduler:
            # -E sets every option of the service: pass back the ones oceand does not own (-p, -M, …)
            await self._must("-E", self.flag, self.vip, "-s", self.scheduler, *self._service.options)
            self._service.scheduler = self.scheduler
        for op in ops:
            await self._apply_one(op)
        self._read_once = False  # the next apply re-reads unless a read comes first

    async def _ensure_service(self) -> None:
        result = await self._run("-A", self.flag, self.vip, "-s", self.scheduler)
        if result.returncode != 0 and "Service already exists" not in result.output:
            raise LBError(f"ipvsadm -A {self.flag} {self.vip}: {result.output}")
        self._service = Service(self.flag, self.vip, self.scheduler)

    async def _apply_one(self, op: Op) -> None:
        rs = ("-r", op.address)
        if op.kind == "delete":
            result = await self._run("-d", self.flag, self.vip, *rs)
            if result.returncode != 0 and "No such destination" not in result.output:
                raise LBError(f"ipvsadm -d {self.vip} {op.address}: {result.output}")
            return
        weight = 0 if op.kind == "drain" else op.weight
        edit = ("-e", self.flag, self.vip, *rs, self.forward_flag, "-w", str(weight))
        add = ("-a", *edit[1:])
        first, second = (add, edit) if op.kind == "add" else (edit, add)
        result = await self._run(*first)
        if result.returncode == 0:
            return
        out = result.output
        if "Service not defined" in out:  # removed behind our back: create it, then retry
            await self._ensure_service()
            result = await self._run(*first)
            if result.returncode == 0:
                return
            out = result.output
        if op.kind == "drain" and "No such destination" in out:
            return  # already gone: no traffic either way
        if ("Destination already exists" in out and first is add) or (
            "No such destination" in out and first is edit
        ):
            await self._must(*second)
            return
        raise LBError(f"ipvsadm {' '.join(first)}: {out}")

    async def _must(self, *args: str) -> None:
        result = await self._run(*args)
        if result.returncode != 0:
            raise LBError(f"ipvsadm {' '.join(args)}: {result.output}")

    async def _run(self, *args: str) -> CommandResult:
        return await run_command([self.binary, *args], timeout=self.timeout, env=self.env)
