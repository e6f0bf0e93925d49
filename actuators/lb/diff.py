"""Desired backends vs what a balancer reports now → the operations that make them equal (PRODUCT §4.2).

Pure: no I/O, no clock (time arrives as `now`). Every load-balancer driver (ipvsadm, keepalived, nginx,
HAProxy) reads its balancer into `Backend`s, and the reconciler calls `diff` and hands the `Op`s to the
driver. `apply_ops` is the same transition as a model, for drivers that render a whole file (nginx,
keepalived) and for the tests.

Rules (one backend = one (host, port)):
- desired and absent → `add` (active, with the desired weight);
- desired and draining or in maintenance → `enable` (a task that comes back during its drain is put
  back, not duplicated);
- desired, active, other weight → `set_weight`;
- not desired and active → `drain` (weight 0 / HAProxy drain / nginx `down`); its drain clock starts
  (again, if it was draining before and something made it active);
- not desired and draining → `delete` once `drain_seconds` have passed since the drain started
  (a draining backend with no known start — e.g. after a restart — starts its clock now);
- not desired and in maintenance (no traffic already) → `delete`;
- `drain_seconds <= 0` → not-desired backends are deleted at once;
- a second entry for the same (host, port) → `delete` of that entry.
Applying the ops and diffing again at the same `now` yields no ops (idempotent).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

Key = tuple[str, int]
State = Literal["active", "draining", "maint"]
OpKind = Literal["add", "set_weight", "drain", "delete", "enable"]


@dataclass(frozen=True, slots=True)
class Backend:
    """One server as a balancer reports it. `name` is the driver's own id (HAProxy server name)."""

    host: str
    port: int
    weight: int
    state: State = "active"
    name: str | None = None

    @property
    def key(self) -> Key:
        return (self.host, self.port)

    @property
    def address(self) -> str:
        return format_hostport(self.host, self.port)


@dataclass(frozen=True, slots=True)
class Op:
    kind: OpKind
    host: str
    port: int
    weight: int = 0  # the weight to set (add, set_weight, enable); 0 for drain and delete
    name: str | None = None  # the existing backend's driver id, when it has one

    @property
    def key(self) -> Key:
        return (self.host, self.port)

    @property
    def address(self) -> str:
        return format_hostport(self.host, self.port)

    def __str__(self) -> str:
        w = f" weight={self.weight}" if self.kind in ("add", "set_weight", "enable") else ""
        return f"{self.kind} {self.address}{w}"


@dataclass(frozen=True, slots=True)
class DiffResult:
    ops: list[Op]
    drains: dict[Key, float] = field(default_factory=dict)  # key -> drain start, for the next call


def diff(
    desired: Mapping[Key, int],
    current: Sequence[Backend],
    drains: Mapping[Key, float],
    now: float,
    drain_seconds: float,
) -> DiffResult:
    """The ops that turn `current` into `desired` (see the module doc), and the next drains map."""
    duplicates: list[Op] = []  # applied first, while each key's primary entry is still what we chose
    ops: list[Op] = []
    next_drains: dict[Key, float] = {}
    seen: set[Key] = set()
    for b in _primary_first(current):
        key = b.key
        if key in seen:
            duplicates.append(Op("delete", b.host, b.port, 0, b.name))
            continue
        seen.add(key)
        want = desired.get(key)
        if want is not None:
            if b.state != "active":
                ops.append(Op("enable", b.host, b.port, want, b.name))
            elif b.weight != want:
                ops.append(Op("set_weight", b.host, b.port, want, b.name))
            continue
        if drain_seconds <= 0 or b.state == "maint":
            ops.append(Op("delete", b.host, b.port, 0, b.name))
        elif b.state == "active":
            ops.append(Op("drain", b.host, b.port, 0, b.name))
            next_drains[key] = now  # it took traffic until now: the full drain starts now
        else:  # draining
            started = drains.get(key, now)
            if now - started >= drain_seconds:
                ops.append(Op("delete", b.host, b.port, 0, b.name))
            else:
                next_drains[key] = started
    for key, weight in sorted(desired.items()):
        if key not in seen:
            ops.append(Op("add", key[0], key[1], weight))
    return DiffResult(duplicates + ops, next_drains)


def apply_ops(current: Sequence[Backend], ops: Sequence[Op]) -> list[Backend]:
    """The balancer after `ops` (the model every driver implements). Tolerant like the drivers:
    adding an existing backend sets it active with the weight, editing a missing one adds it, deleting
    a missing one does nothing."""
    out: list[Backend] = list(current)
    for op in ops:
        idx = _target(out, op)
        if op.kind == "delete":
            if idx is not None:
                del out[idx]
        elif op.kind == "drain":
            if idx is not None:
                out[idx] = replace(out[idx], state="draining")
        elif idx is None:  # add / set_weight / enable of a backend that is not there
            out.append(Backend(op.host, op.port, op.weight, "active", op.name))
        else:
            out[idx] = replace(out[idx], weight=op.weight, state="active")
    return out


def _target(backends: Sequence[Backend], op: Op) -> int | None:
    """The entry an op acts on: by name when it has one; else the primary entry of its key (see
    `_primary_first`), except that a nameless delete of a duplicated key removes a non-primary one."""
    if op.name is not None:
        return next((i for i, b in enumerate(backends) if b.key == op.key and b.name == op.name), None)
    matches = [i for i, b in enumerate(backends) if b.key == op.key]
    if not matches:
        return None
    primary = next((i for i in matches if backends[i].state == "active"), matches[0])
    if op.kind == "delete" and len(matches) > 1:
        return max(i for i in matches if i != primary)
    return primary


def _primary_first(current: Sequence[Backend]) -> list[Backend]:
    """Entries sorted by key; within a key the primary entry (the first active one, else the first)
    comes first, and any others are deleted by `diff`."""
    rank = {"active": 0, "draining": 1, "maint": 1}
    order = sorted(range(len(current)), key=lambda i: (current[i].key, rank[current[i].state], i))
    return [current[i] for i in order]


def format_hostport(host: str, port: int) -> str:
    """`10.0.0.1:80`, `[::1]:80` (IPv6 literals in brackets, as ipvsadm, nginx and HAProxy accept)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_hostport(text: str, default_port: int | None = None) -> Key:
    """`host:port` / `[v6]:port` / (with a default port) a bare host → (host, port); ValueError if bad."""
    s = text.strip()
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: missing ']' after an IPv6 address")
        host, rest = s[1:end], s[end + 1 :]
        if not rest and default_port is not None:
            return host, default_port
        if not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected ':port' after ']'")
        port_text = rest[1:]
    elif s.count(":") == 1:
        host, port_text = s.split(":")
    elif default_port is not None and (":" not in s or _is_ip(s)):
        return s, default_port  # a bare host name, IPv4 or IPv6 address
    else:
        raise ValueError(f"{text!r}: expected host:port")
    if not host:
        raise ValueError(f"{text!r}: empty host")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r}: port must be a number from 1 to 65535")
    return host, int(port_text)


def parse_vip(text: str) -> Key:
    """An LVS virtual service `ip:port` / `[ip6]:port` → (canonical IP, port), as `ipvsadm -Sn` prints
    it. ValueError when the host is not an IP address (IPVS takes addresses, not names)."""
    host, port = parse_hostport(text)
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        raise ValueError(f"{text!r}: the virtual address must be an IP address, not a host name") from None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
