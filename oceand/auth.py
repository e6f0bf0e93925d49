"""Access tokens and the audit trail (PRODUCT §10): scopes, job-name globs, expiry, rotation with a grace.

A token has a name, scopes (`read`, `write`, `operate`, `admin`, `ingest`; `admin` includes the others,
since its holder can mint any token anyway), job-name globs (`*` any run of characters, `?` one
character; `["*"]` = every job) and an optional expiry. Its secret is `ocd_` + 43 URL-safe characters
from `secrets.token_urlsafe(32)` (256 bits of randomness), shown once and stored only as its SHA-256.
A fast unsalted hash is enough here: salts and slow hashes protect low-entropy passwords from guessing;
a 256-bit random secret cannot be guessed, and its hash cannot be inverted, whatever the hash costs.

A presented secret is hashed and compared with `hmac.compare_digest` against every stored hash (current
and, during a rotation's grace, the old one), without stopping at the first match, so the time taken
says nothing about which stored hash is near.

The tokens live in the store (table `tokens`); a daemon keeps them in memory and reads them again at
most every `[auth] refresh` seconds, and at once (at most once a second) when a secret matches nothing,
so a token made by `oceand token create` on the host, or by another daemon, works at once; a token
revoked elsewhere stops working within `refresh`.

`Authority` is that cache and the token operations; `Principal` is who a request acts as (`LOCAL` when
auth is off and for the host CLI).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from oceand.store.base import Store, StoreError

log = logging.getLogger("oceand.audit")

SCOPES: tuple[str, ...] = ("read", "write", "operate", "admin", "ingest")
TOKEN_NAME_RE = re.compile(r"\A[A-Za-z0-9._-]{1,64}\Z")
GLOB_RE = re.compile(r"\A[A-Za-z0-9._*?-]{1,200}\Z")
SECRET_PREFIX = "ocd_"
MAX_GLOBS = 64
MAX_GRACE = 7 * 86400.0
MAX_EXPIRES = 10 * 365 * 86400.0
LOCAL_ACTOR = "local"


class TokenError(ValueError):
    """A token request that cannot be honoured; `status` and `code` are the API's, `path` the field."""

    def __init__(self, status: int, code: str, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.path = path


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def _glob_regex(glob: str) -> re.Pattern[str]:
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob]
    return re.compile(r"\A" + "".join(parts) + r"\Z", re.DOTALL)


def glob_matches(glob: str, job: str) -> bool:
    """Whether `job` matches `glob` (`*`: any run of characters, `?`: one character; case-sensitive)."""
    return _glob_regex(glob).match(job) is not None


def jobs_match(globs: Iterable[str], job: str) -> bool:
    return any(glob_matches(g, job) for g in globs)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: a token's name, scopes and job globs."""

    name: str
    scopes: frozenset[str]
    jobs: tuple[str, ...]

    def has(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    def may_touch(self, job: str) -> bool:
        return jobs_match(self.jobs, job)


LOCAL = Principal(LOCAL_ACTOR, frozenset(SCOPES), ("*",))


@dataclass(frozen=True, slots=True)
class Token:
    name: str
    scopes: tuple[str, ...]
    jobs: tuple[str, ...]
    created_at: float
    expires_at: float | None
    secret_hash: str
    old_hash: str | None = None  # the secret before the last rotation, valid until old_until
    old_until: float | None = None
    rotated_at: float | None = None

    def record(self) -> dict[str, Any]:
        return {
            "scopes": list(self.scopes),
            "jobs": list(self.jobs),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "secret_hash": self.secret_hash,
            "old_hash": self.old_hash,
            "old_until": self.old_until,
            "rotated_at": self.rotated_at,
        }

    @classmethod
    def from_record(cls, name: str, r: dict[str, Any]) -> Token:
        return cls(
            name=name,
            scopes=tuple(r["scopes"]),
            jobs=tuple(r["jobs"]),
            created_at=float(r["created_at"]),
            expires_at=r.get("expires_at"),
            secret_hash=str(r["secret_hash"]),
            old_hash=r.get("old_hash"),
            old_until=r.get("old_until"),
            rotated_at=r.get("rotated_at"),
        )

    def public(self, now: float) -> dict[str, Any]:
        """What the API and the CLI show: never the secret or its hash."""
        in_grace = self.old_until is not None and now < self.old_until
        return {
            "name": self.name,
            "scopes": list(self.scopes),
            "jobs": list(self.jobs),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "expired": self.expires_at is not None and now >= self.expires_at,
            "rotated_at": self.rotated_at,
            "old_secret_valid_until": self.old_until if in_grace else None,
        }

    def principal(self) -> Principal:
        return Principal(self.name, frozenset(self.scopes), self.jobs)


# ---- validating what a client asks for -----------------------------------------------------------


def check_name(name: object) -> str:
    if not isinstance(name, str) or not TOKEN_NAME_RE.match(name):
        raise TokenError(422, "invalid_body", "name: 1-64 characters of [A-Za-z0-9._-]", "name")
    return name


def check_scopes(scopes: object) -> tuple[str, ...]:
    if not isinstance(scopes, list) or not scopes:
        raise TokenError(422, "invalid_body", f"scopes: a non-empty list of {', '.join(SCOPES)}", "scopes")
    for s in scopes:
        if s not in SCOPES:
            shown = repr(s)[:40]
            raise TokenError(
                422, "invalid_body", f"scopes: {shown} is not one of {', '.join(SCOPES)}", "scopes"
            )
    return tuple(sorted(set(scopes), key=SCOPES.index))


def check_globs(globs: object, scopes: tuple[str, ...]) -> tuple[str, ...]:
    if globs is None:
        globs = ["*"]
    if not isinstance(globs, list) or not globs or len(globs) > MAX_GLOBS:
        raise TokenError(422, "invalid_body", f"jobs: a list of 1-{MAX_GLOBS} job-name globs", "jobs")
    for g in globs:
        if not isinstance(g, str) or not GLOB_RE.match(g):
            raise TokenError(
                422,
                "invalid_body",
                f"jobs: {repr(g)[:60]} is not a glob of 1-200 characters of [A-Za-z0-9._-*?]",
                "jobs",
            )
    if "admin" in scopes and "*" not in globs:
        raise TokenError(
            422,
            "invalid_body",
            'jobs: an admin token manages every token, so it covers every job: use ["*"]',
            "jobs",
        )
    return tuple(dict.fromkeys(globs))


def check_duration(value: object, what: str, limit: float) -> float:
    from policies.document import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as e:
        raise TokenError(422, "invalid_body", f"{what}: {e}", what) from None
    if seconds > limit:
        raise TokenError(422, "invalid_body", f"{what}: at most {limit:g} seconds", what)
    return seconds


# ---- the daemon's view of the tokens -------------------------------------------------------------


class Unauthorized(Exception):
    """No usable token (401); the message says why without revealing anything about other tokens."""


@dataclass
class Authority:
    store: Store
    clock: Callable[[], float] = time.time
    refresh: float = 5.0
    grace: float = 3600.0
    max_tokens: int = 1000
    _tokens: dict[str, Token] = field(default_factory=dict)
    _loaded_at: float | None = None  # monotonic time of the last read; None: never read
    _monotonic: Callable[[], float] = time.monotonic

    async def load(self) -> None:
        rows = await self.store.list_tokens()
        self._tokens = {r["name"]: Token.from_record(r["name"], r["record"]) for r in rows}
        self._loaded_at = self._monotonic()

    async def _reload_if_older(self, age: float) -> None:
        """Read the tokens again when the last read is older than `age`. If the store fails, the tokens
        of the last read stay in force (an outage of the store does not lock everyone out; a token
        revoked meanwhile on another daemon works until the store answers again); with no read yet,
        the StoreError is raised."""
        now = self._monotonic()
        if self._loaded_at is not None and now - self._loaded_at < age:
            return
        try:
            await self.load()
        except StoreError as e:
            if self._loaded_at is None:
                raise
            self._loaded_at = now  # next try after `age` again, not on every request
            logging.getLogger("oceand.auth").warning(
                "tokens not re-read, the last ones stay in force: %s", e, extra={"event": "tokens_stale"}
            )

    async def tokens(self) -> list[Token]:
        await self.load()
        return sorted(self._tokens.values(), key=lambda t: t.name)

    def _match(self, secret: str) -> tuple[Token, bool] | None:
        """The token whose current (True) or old (False) secret is `secret`; every hash is compared."""
        h = hash_secret(secret)
        found: tuple[Token, bool] | None = None
        for t in self._tokens.values():
            if hmac.compare_digest(h, t.secret_hash):
                found = (t, True)
            if t.old_hash is not None and hmac.compare_digest(h, t.old_hash):
                found = found or (t, False)
        return found

    async def authenticate(self, secret: str) -> Principal:
        await self._reload_if_older(self.refresh)
        found = self._match(secret)
        if found is None:  # made elsewhere a moment ago? (one read a second at most)
            await self._reload_if_older(1.0)
            found = self._match(secret)
        if found is None:
            raise Unauthorized("the bearer token is not valid (unknown, revoked or mistyped)")
        token, current = found
        now = self.clock()
        if token.expires_at is not None and now >= token.expires_at:
            raise Unauthorized(f"token {token.name!r} expired")
        if not current and (token.old_until is None or now >= token.old_until):
            raise Unauthorized(f"token {token.name!r} was rotated: this secret's grace period is over")
        return token.principal()

    async def create(
        self, name: str, scopes: tuple[str, ...], jobs: tuple[str, ...], expires: float | None
    ) -> tuple[Token, str]:
        await self.load()
        if len(self._tokens) >= self.max_tokens and name not in self._tokens:
            raise TokenError(
                409,
                "too_many_tokens",
                f"{len(self._tokens)} tokens exist, the most [auth] max_tokens allows: delete unused ones",
            )
        now = self.clock()
        secret = new_secret()
        token = Token(
            name=name,
            scopes=scopes,
            jobs=jobs,
            created_at=now,
            expires_at=None if expires is None else now + expires,
            secret_hash=hash_secret(secret),
        )
        if not await self.store.create_token(name, token.record()):
            raise TokenError(409, "token_exists", f"a token named {name!r} exists: rotate or delete it")
        self._tokens[name] = token
        return token, secret

    async def rotate(self, name: str, grace: float | None) -> tuple[Token, str]:
        await self.load()
        old = self._tokens.get(name)
        if old is None:
            raise TokenError(404, "token_not_found", f"no token named {name!r}")
        now = self.clock()
        secret = new_secret()
        token = Token(
            name=name,
            scopes=old.scopes,
            jobs=old.jobs,
            created_at=old.created_at,
            expires_at=old.expires_at,
            secret_hash=hash_secret(secret),
            old_hash=old.secret_hash,
            old_until=now + (self.grace if grace is None else grace),
            rotated_at=now,
        )
        if not await self.store.update_token(name, token.record()):
            raise TokenError(404, "token_not_found", f"no token named {name!r}")
        self._tokens[name] = token
        return token, secret

    async def delete(self, name: str) -> None:
        if not await self.store.delete_token(name):
            raise TokenError(404, "token_not_found", f"no token named {name!r}")
        self._tokens.pop(name, None)


# ---- audit ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What `audit` stores: an action of `actor` (from `source`) on `job`, its versions and detail."""

    actor: str
    source: str
    action: str
    job: str | None = None
    before: int | None = None
    after: int | None = None
    detail: dict[str, Any] | None = None

    def stored(self, now: float) -> dict[str, Any]:
        return {
            "time": now,
            "actor": self.actor,
            "source": self.source,
            "action": self.action,
            "job": self.job,
            "before_version": self.before,
            "after_version": self.after,
            "detail": self.detail or {},
        }


async def audit(
    store: Store,
    now: float,
    actor: str,
    source: str,
    action: str,
    job: str | None = None,
    before: int | None = None,
    after: int | None = None,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Store one audit entry and write its log line; return it (with its id)."""
    return (await audit_many(store, now, [AuditEntry(actor, source, action, job, before, after, detail)]))[0]


async def audit_many(store: Store, now: float, entries: list[AuditEntry]) -> list[dict[str, Any]]:
    """`audit` for several entries: stored in one transaction, then a log line each."""
    stored = [e.stored(now) for e in entries]
    for entry, id_ in zip(stored, await store.add_audits(stored), strict=True):
        entry["id"] = id_
        job = entry["job"]
        log.info(
            "audit: %s%s by %s from %s",
            entry["action"],
            f" {job}" if job else "",
            entry["actor"],
            entry["source"],
            extra={"event": "audit", **{k: v for k, v in entry.items() if k != "time"}},
        )
    return stored


async def prune_audit(store: Store, before: float, batch: int = 1000) -> int:
    """Delete the audit entries older than `before`, `batch` at a time (each its own short transaction,
    the event loop free in between); return how many went."""
    total = 0
    while True:
        n = await store.prune_audit(before, batch)
        total += n
        if n < batch:
            return total
        await asyncio.sleep(0)


class WriteLimiter:
    """Per-key token buckets for admin writes (`[auth] write_rate` per second, `write_burst` at once).

    A key is a token name, or the source address when auth is off. `take` returns 0 when the write may
    go, else the seconds until it may. A clock that steps back refills nothing. At most `max_keys`
    buckets are kept: past that, the full ones (idle long enough to have refilled) are forgotten, and if
    none is full the oldest is."""

    def __init__(self, max_keys: int = 10_000) -> None:
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str, now: float, rate: float, burst: int) -> float:
        tokens, at = self._buckets.pop(key, (float(burst), now))
        tokens = min(float(burst), tokens + max(0.0, now - at) * rate)
        at = max(at, now)
        if tokens >= 1.0:
            self._store(key, (tokens - 1.0, at), now, rate, burst)
            return 0.0
        self._store(key, (tokens, at), now, rate, burst)
        return (1.0 - tokens) / rate

    def _store(self, key: str, bucket: tuple[float, float], now: float, rate: float, burst: int) -> None:
        if len(self._buckets) >= self.max_keys:
            full = [k for k, (t, at) in self._buckets.items() if t + max(0.0, now - at) * rate >= burst]
            for k in full or [next(iter(self._buckets))]:
                del self._buckets[k]
        self._buckets[key] = bucket  # re-inserted last: dict order is least recently used first

    def __len__(self) -> int:
        return len(self._buckets)
