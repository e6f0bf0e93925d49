"""Identities in a cluster of daemons and the shard of a job (HA.md §4.1, §6.1).

- instance id `host:pid:rand4`: one run of a daemon (a restart is a new instance);
- stable id: the `[cluster] advertise` address `host:port`, the same across restarts, so rendezvous gives
  a restarted daemon its shards back;
- `shard_of(job, shards)`: blake2b of the job name modulo the cluster's shard count. Python's `hash()` is
  salted per process (PYTHONHASHSEED), so two daemons would disagree; blake2b never does.
"""

from __future__ import annotations

import os
import secrets
import socket
from hashlib import blake2b

DEFAULT_SHARDS = 1024
MAX_SHARDS = 65535  # shard_lease.shard is a SMALLINT UNSIGNED
MAX_ID = 64  # daemon.instance_id / shard_lease.owner are VARCHAR(64)


def shard_of(job: str, shards: int = DEFAULT_SHARDS) -> int:
    """The shard (0..shards-1) a job belongs to, the same on every daemon and every run."""
    if not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"shards must be 1..{MAX_SHARDS}, got {shards}")
    digest = blake2b(job.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def instance_id(host: str | None = None, pid: int | None = None, rand: str | None = None) -> str:
    """`host:pid:rand4`, at most 64 characters (the host name is cut, never the pid or the suffix)."""
    h = host if host is not None else socket.gethostname()
    p = pid if pid is not None else os.getpid()
    r = rand if rand is not None else secrets.token_hex(2)
    tail = f":{p}:{r}"
    return h[: MAX_ID - len(tail)] + tail
