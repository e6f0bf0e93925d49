"""The store's interface, its URL syntax, its errors and the checks every backend shares.

Error tree (what a caller should do with each):

- `StoreConfigError(ValueError)`: the store URL is malformed; fix the configuration. Raised by
  `parse_url` / `open_store` before any connection is attempted.
- `StoreError(Exception)`: the store is unreachable or failed (connection refused or lost, a lock
  timeout, a broken or too-new schema). Transient as far as the daemon knows: retry with backoff.
  The message names the URL with its password replaced by `***`.
- `ValueError`: a caller passed a bad argument (a job name outside `[A-Za-z0-9._-]{1,200}`, a decision
  without a finite `at`, a document that is not JSON-serialisable...). A bug in the caller; retrying
  cannot help. Nothing is written.
- `DecisionNotFound(LookupError)`: `record_outcome` for a decision id the store does not hold (for that
  job).

Values cross the interface as plain JSON-ready dicts; the store encodes them with orjson.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, get_args
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson

from policies.document import JOB_NAME_RE, RULE_NAME_RE
from policies.types import ActuationOutcome, ApplyStatus, OutcomeStatus

DECISION_STATUSES: tuple[str, ...] = get_args(ApplyStatus)  # what a decision row held before migration 5
OUTCOME_STATUSES: tuple[str, ...] = get_args(OutcomeStatus)
FIRE_STATUSES = ("fired", "missed")
ATTEMPT_STATUSES = ("pending", "applied", "failed", "abandoned")
_RULE_NAME = re.compile(RULE_NAME_RE)
_TOKEN_NAME = re.compile(r"\A[A-Za-z0-9._-]{1,64}\Z")


log = logging.getLogger("oceand.store")

REPEAT_LOG_EVERY = 60.0  # seconds between "still failing" lines while the store stays unwritable


class WriteHealth:
    """Whether the store's writes succeed, from the outcome of every write (and of `probe_write`).

    A store that becomes unwritable logs one error (event `store_unwritable`) on the transition and
    then at most one reminder a minute; the first write that succeeds again logs `store_writable`.
    `on_failure` (the daemon's metric) is called once per failed write. Never raises.
    """

    def __init__(self, url: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.writable = True
        self.failures = 0  # failed writes since the process started
        self.last_error: str | None = None
        self.since: float | None = None  # when the store became unwritable (clock time)
        self.failed_in_row = 0
        self.on_failure: Callable[[], None] | None = None
        self._clock = clock
        self._logged = 0.0

    def ok(self) -> None:
        if self.writable:
            return
        lasted = self._clock() - (self.since or self._clock())
        log.warning(
            "store %s is writable again after %d failed writes in %.1fs",
            self.url,
            self.failed_in_row,
            lasted,
            extra={
                "event": "store_writable",
                "failed_writes": self.failed_in_row,
                "seconds": round(lasted, 3),
            },
        )
        self.writable, self.since, self.failed_in_row, self.last_error = True, None, 0, None

    def failed(self, error: object) -> None:
        self.failures += 1
        self.failed_in_row += 1
        self.last_error = str(error)
        if self.on_failure is not None:
            self.on_failure()
        now = self._clock()
        if self.writable:
            self.writable, self.since, self._logged = False, now, now
            log.error(
                "store writes fail, /readyz answers 503 until one succeeds: %s",
                error,
                extra={"event": "store_unwritable"},
            )
        elif now - self._logged >= REPEAT_LOG_EVERY:
            self._logged = now
            log.error(
                "store writes still fail (%d failed writes in %.0fs): %s",
                self.failed_in_row,
                now - (self.since or now),
                error,
                extra={"event": "store_still_unwritable", "failed_writes": self.failed_in_row},
            )

    def reason(self) -> str | None:
        """Why /readyz fails, or None while writes succeed."""
        if self.writable:
            return None
        return f"store writes fail ({self.failed_in_row} in a row): {self.last_error}"


class StoreError(Exception):
    """The store is unreachable or failed; the message names the URL without its password."""


class StoreConfigError(ValueError):
    """A store URL that cannot be used; the message names the problem."""


class Fence(NamedTuple):
    """Several daemons: a write allowed only while `owner` holds the lease of `shard` at `epoch` (the row
    of `shard_lease`, checked in the write's own transaction)."""

    shard: int
    epoch: int
    owner: str


class FencedWrite(StoreError):
    """A write refused by its `Fence`: another daemon took the shard (a newer epoch), or it was released.
    Nothing was written."""


class DecisionNotFound(LookupError):
    """`record_outcome` was given a decision id the store does not hold (for that job)."""


@dataclass(frozen=True, slots=True)
class StoredJob:
    name: str
    doc: dict[str, Any]
    version: int  # 1 on create, +1 on every put
    updated_at: float  # Unix seconds of the last put


@dataclass(frozen=True, slots=True)
class JobChange:
    """One row of the job change log (`job_changes`) with the job as stored now: `doc` and `version` are
    None when the job is gone (deleted)."""

    seq: int
    job: str
    doc: dict[str, Any] | None
    version: int | None


class TemplateConflict(Exception):
    """A template write refused inside the transaction (nothing written): `code` is template_in_use,
    template_missing or template_changed; `jobs` the jobs concerned."""

    def __init__(self, code: str, message: str, jobs: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.jobs = jobs or []


@dataclass(frozen=True, slots=True)
class StoredTemplate:
    name: str
    doc: dict[str, Any]
    version: int  # 1 on create, +1 on every put
    updated_at: float


@dataclass(frozen=True, slots=True)
class JobLink:
    """The template a job names and the job's own fields (its document as given)."""

    job: str
    template: str
    own: dict[str, Any]
    doc: dict[str, Any] | None = None  # the job's stored effective document (`job_links(with_docs=True)`)
    version: int | None = None


@dataclass(frozen=True, slots=True)
class JobWrite:
    """A job's effective document; `template` and `own` when it names a template (None: a plain job,
    whose link, if it had one, is removed)."""

    name: str
    doc: dict[str, Any]
    template: str | None = None
    own: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class TemplateWrite:
    """A template's new document; `dependents` are the jobs naming it that the caller recomputed (any
    other set at commit time is a TemplateConflict)."""

    name: str
    doc: dict[str, Any]
    dependents: frozenset[str] = field(default_factory=frozenset)


class Store(Protocol):
    """What the daemon calls. All methods are coroutines; see the module docstring for errors."""

    @property
    def url(self) -> str:
        """The store URL with the password replaced by `***` (for logs and /readyz)."""
        ...

    async def open(self) -> None:
        """Connect and apply pending migrations; StoreError if unreachable or the schema is too new."""
        ...

    async def close(self) -> None: ...

    async def ping(self) -> bool:
        """True when the store answers a trivial query; never raises."""
        ...

    @property
    def health(self) -> WriteHealth:
        """Whether writes succeed (every write reports its outcome here)."""
        ...

    async def probe_write(self) -> bool:
        """Write and delete a row (a real write to disk); True if it committed. Never raises."""
        ...

    async def put_job(self, name: str, doc: dict[str, Any]) -> int:
        """Create or replace the job's document; return its new version (1 on create)."""
        ...

    async def get_job(self, name: str) -> StoredJob | None: ...

    async def job_changes(self, ranges: list[tuple[int, int | None]], limit: int) -> list[JobChange]:
        """The change-log rows whose seq lies in one of `ranges` (low, high): low < seq < high (high None:
        no bound), oldest first, at most `limit`, each with the job as stored now (oceand/cluster/jobsync.py)."""
        ...

    async def job_change_bounds(self) -> tuple[int, int]:
        """(oldest seq, newest seq) of the change log; (0, 0) when it is empty."""
        ...

    async def prune_job_changes(self, before: float, limit: int) -> int:
        """Delete up to `limit` change-log rows written before `before`; how many went."""
        ...

    async def list_jobs(self) -> list[StoredJob]:
        """Every job, ordered by name."""
        ...

    async def delete_job(self, name: str) -> bool:
        """Delete the document and the job's state; keep its decisions and fires. False if absent."""
        ...

    async def load_state(self, job: str) -> dict[str, Any] | None: ...

    async def load_states(self) -> dict[str, dict[str, Any]]:
        """Every job's state, by job (one read: the engine's start)."""
        ...

    async def commit(
        self,
        job: str,
        state: dict[str, Any],
        decision: dict[str, Any] | None = None,
        outcome: dict[str, Any] | None = None,
    ) -> int | None:
        """Write the job's state and (if given) insert the decision with its first outcome
        (`ActuationOutcome.to_json()`, status `none` when not given) in one transaction; return its id.
        A decision is never changed once inserted: what becomes of it is `record_outcome`'s."""
        ...

    async def record_outcome(
        self,
        decision_id: int,
        job: str,
        outcome: dict[str, Any],
        state: dict[str, Any] | None = None,
        fence: Fence | None = None,
    ) -> None:
        """Replace the decision's outcome and (when given) write the job's state in the same transaction
        (a retry or a block the state records goes with the outcome that caused it). DecisionNotFound
        when the job has no such decision; nothing is written then. `fence` (several daemons, MySQL):
        FencedWrite, nothing written, unless its owner holds its shard's lease at its epoch (read with a
        shared lock in the same transaction, so a takeover's epoch bump waits for this write, or this
        write sees the bump)."""
        ...

    async def decisions(self, job: str, limit: int = 50, since: float | None = None) -> list[dict[str, Any]]:
        """Newest first (by `at`, then id); `since` keeps decisions with `at >= since`. Each is the
        decision as committed with its `id` and its `outcome` (`ActuationOutcome.to_json()`)."""
        ...

    async def pending_decisions(self) -> list[dict[str, Any]]:
        """Decisions of every job whose outcome is "pending", oldest first (shaped as `decisions`)."""
        ...

    async def pending_attempt_decisions(self) -> list[dict[str, Any]]:
        """Decisions of every job with a write (attempt) still "pending", whatever their outcome, oldest
        first (shaped as `decisions`): the writes of unknown outcome a crash or a takeover must settle
        (HA.md §6.7), including those of decisions already failed or superseded."""
        ...

    async def claim_fire(self, job: str, rule: str, at: float, status: str) -> bool:
        """Record a schedule fire; False if (job, rule, at) was already recorded."""
        ...

    async def record_attempt(self, decision_id: int, job: str, attempt: dict[str, Any]) -> None:
        """Insert or update one write of a decision (`Attempt.to_json()`: attempt, to_count, sent_at,
        deadline, status, detail), durably before returning: it precedes the write it describes."""
        ...

    async def attempts(self, decision_id: int) -> list[dict[str, Any]]:
        """The decision's recorded writes, in attempt order (the shape `record_attempt` takes)."""
        ...

    async def fires(self, job: str, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first: {"rule", "at", "status", "recorded_at"}."""
        ...

    # access tokens and the audit trail (oceand.auth): a token's record is a JSON-ready dict

    async def list_tokens(self) -> list[dict[str, Any]]:
        """Every token as {"name", "record"}, ordered by name."""
        ...

    async def create_token(self, name: str, record: dict[str, Any]) -> bool:
        """Insert a token; False (nothing written) if one with that name exists."""
        ...

    async def update_token(self, name: str, record: dict[str, Any]) -> bool:
        """Replace a token's record; False if there is no such token."""
        ...

    async def delete_token(self, name: str) -> bool: ...

    # templates (oceand/store/templates.py, oceand/templates.py)

    async def get_template(self, name: str) -> StoredTemplate | None: ...

    async def list_templates(self) -> list[StoredTemplate]:
        """Every template, ordered by name."""
        ...

    async def job_links(
        self, template: str | None = None, job: str | None = None, with_docs: bool = False
    ) -> list[JobLink]:
        """The template and own fields of every job that names a template (or of those naming
        `template`, or of `job`), ordered by job; `with_docs`: with each job's document and version."""
        ...

    async def write_jobs(
        self,
        jobs: list[JobWrite],
        template: TemplateWrite | None = None,
        based_on: dict[str, int] | None = None,
    ) -> tuple[dict[str, int], int | None]:
        """In one transaction: `template` (if given) and every job of `jobs` with its link to a template
        (set or removed); (job -> new version, the template's new version). TemplateConflict (nothing
        written) if `template.dependents` or a version of `based_on` (template -> version the caller
        read) no longer holds, or a job names a template that does not exist."""
        ...

    async def rename_template(self, name: str, to: str) -> int | None:
        """The renamed template's version (None: no such template); TemplateConflict if jobs name it
        (template_in_use) or `to` exists (template_exists)."""
        ...

    async def delete_template(self, name: str) -> bool:
        """False if there is no such template; TemplateConflict (template_in_use) if jobs name it."""
        ...

    async def add_audit(self, entry: dict[str, Any]) -> int:
        """Insert an audit entry ({"time", "actor", "source", "action", "job", "before_version",
        "after_version", "detail"}); return its id."""
        ...

    async def add_audits(self, entries: list[dict[str, Any]]) -> list[int]:
        """Insert several audit entries (as `add_audit`) in one transaction; return their ids, in order."""
        ...

    async def audit(
        self, job: str | None = None, since: float | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Audit entries, newest first; `job` keeps that job's, `since` those with time >= since."""
        ...

    async def add_history(self, rows: list[dict[str, Any]]) -> int:
        """Insert (or replace, same job and t) history rows ({"job", "t", "values", "ready", "running",
        "desired", "decision"}) in one transaction; return how many."""
        ...

    async def history(
        self, job: str, since: float | None = None, until: float | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """A job's history rows with since <= t < until, oldest first, at most `limit`."""
        ...

    async def rollup_history(self, before: float, limit: int) -> int:
        """Roll up to `limit` per-period rows older than `before` into 1-minute rows (values averaged,
        the counts and decision of the minute's last row); return how many per-period rows went."""
        ...

    async def prune_history(self, before: float, limit: int) -> int:
        """Delete up to `limit` history rows older than `before`; return how many."""
        ...

    async def prune_audit(self, before: float, limit: int) -> int:
        """Delete at most `limit` of the oldest audit entries with time < `before`; return how many."""
        ...


# ---------------------------------------------------------------- URLs

# user:password@ up to the last '@', so that a password with an unencoded '/' or '@' is hidden too.
_PASSWORD_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:?#]*:).*@")


def redact(url: str) -> str:
    """The URL with any password replaced by `***`."""
    return _PASSWORD_RE.sub(r"\1***@", url)


@dataclass(frozen=True, slots=True)
class SQLiteURL:
    path: str  # a file path, or ":memory:"
    timeout: float = 5.0  # seconds to wait for another process's write lock
    journal: str = "delete"  # "delete" (rollback journal) or "wal": see oceand/store/sqlite.py

    @property
    def memory(self) -> bool:
        return self.path == ":memory:"

    @property
    def redacted(self) -> str:
        return "sqlite://:memory:" if self.memory else f"sqlite:///{self.path}"


@dataclass(frozen=True, slots=True)
class MySQLURL:
    host: str
    user: str
    database: str
    password: str = ""
    port: int = 3306
    pool_size: int = 10
    connect_timeout: float = 5.0
    timeout: float = 30.0  # bound on one store call, pool wait included
    unix_socket: str | None = None

    @property
    def redacted(self) -> str:
        password = ":***" if self.password else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mysql://{self.user}{password}@{host}:{self.port}/{self.database}"


StoreURL = SQLiteURL | MySQLURL

SQLITE_JOURNALS = ("delete", "wal")
_SQLITE_FORMS = "sqlite:////absolute/path.db, sqlite:///relative/path.db or sqlite://:memory:"
_MYSQL_FORM = "mysql://user[:password]@host[:port]/database"
_MYSQL_DB_RE = re.compile(r"^[A-Za-z0-9_$]{1,64}$")


def parse_url(url: str) -> StoreURL:
    """Parse a store URL; StoreConfigError naming the problem (never echoing the password)."""
    if not isinstance(url, str) or not url.strip():
        raise StoreConfigError("store URL is empty: use " + _SQLITE_FORMS + " or " + _MYSQL_FORM)
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise StoreConfigError(f"store URL {redact(url)!r} has no scheme: use sqlite:// or mysql://")
    if scheme == "sqlite":
        return _parse_sqlite(url)
    if scheme == "mysql":
        return _parse_mysql(url)
    raise StoreConfigError(f"store URL {redact(url)!r}: unknown scheme {scheme!r} (use sqlite or mysql)")


def _fail(url: str, problem: str) -> StoreConfigError:
    return StoreConfigError(f"store URL {redact(url)!r}: {problem}")


def _params(url: str, query: str, allowed: Mapping[str, str]) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise _fail(url, f"malformed query string {query!r}") from None
    out: dict[str, str] = {}
    for key, value in pairs:
        if key not in allowed:
            raise _fail(url, f"unknown parameter {key!r} (known: {', '.join(sorted(allowed))})")
        if key in out:
            raise _fail(url, f"parameter {key!r} given twice")
        out[key] = value
    return out


def _number(url: str, key: str, value: str, low: float, high: float, integer: bool = False) -> float:
    try:
        number = int(value) if integer else float(value)
    except ValueError:
        kind = "an integer" if integer else "a number of seconds"
        raise _fail(url, f"parameter {key}={value!r} is not {kind}") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise _fail(url, f"parameter {key}={value!r} is out of range [{low:g}, {high:g}]")
    return number


def _parse_sqlite(url: str) -> SQLiteURL:
    rest, _, query = url[len("sqlite://") :].partition("?")
    if "#" in rest or "#" in query:
        raise _fail(url, "a fragment ('#...') is not allowed")
    params = _params(url, query, {"timeout": "seconds", "journal": "delete|wal"})
    timeout = _number(url, "timeout", params["timeout"], 0, 3600) if "timeout" in params else 5.0
    journal = params.get("journal", "delete")
    if journal not in SQLITE_JOURNALS:
        raise _fail(url, f"parameter journal={journal!r} must be one of {', '.join(SQLITE_JOURNALS)}")
    if rest == ":memory:":
        return SQLiteURL(":memory:", timeout, journal)
    if not rest.startswith("/"):
        raise _fail(url, f"a SQLite URL has no host part; use {_SQLITE_FORMS}")
    path = unquote(rest[1:])
    if not path or path.endswith("/"):
        raise _fail(url, f"no database file name; use {_SQLITE_FORMS}")
    if "\x00" in path:
        raise _fail(url, "the path contains a NUL character")
    return SQLiteURL(path, timeout, journal)


_MYSQL_PARAMS = {
    "pool_size": "connections",
    "connect_timeout": "seconds",
    "timeout": "seconds",
    "unix_socket": "path",
}


def _parse_mysql(url: str) -> MySQLURL:
    parts = urlsplit(url)
    if parts.fragment:
        raise _fail(url, "a fragment ('#...') is not allowed")
    if "@" not in parts.netloc:
        hint = " (encode '/', '?', '#' and '@' in a password as %2F, %3F, %23, %40)" if "@" in url else ""
        raise _fail(url, f"no user; use {_MYSQL_FORM}{hint}")
    try:
        port = parts.port if parts.port is not None else 3306
    except ValueError:
        raise _fail(url, "the port is not a number in 1-65535") from None
    if not 1 <= port <= 65535:
        raise _fail(url, "the port is not a number in 1-65535")
    host = parts.hostname or ""
    user = unquote(parts.username or "")
    if not user:
        raise _fail(url, f"no user; use {_MYSQL_FORM}")
    if not host:
        raise _fail(url, f"no host; use {_MYSQL_FORM}")
    database = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if not database:
        raise _fail(url, f"no database name; use {_MYSQL_FORM}")
    if not _MYSQL_DB_RE.match(database):
        raise _fail(url, f"database name {database!r} must be 1-64 characters of [A-Za-z0-9_$]")
    params = _params(url, parts.query, _MYSQL_PARAMS)
    return MySQLURL(
        host=host,
        user=user,
        database=database,
        password=unquote(parts.password or ""),
        port=port,
        pool_size=int(_number(url, "pool_size", params.get("pool_size", "10"), 1, 1000, integer=True)),
        connect_timeout=_number(url, "connect_timeout", params.get("connect_timeout", "5"), 0.1, 3600),
        timeout=_number(url, "timeout", params.get("timeout", "30"), 0.1, 3600),
        unix_socket=params.get("unix_socket") or None,
    )


# ---------------------------------------------------------------- argument checks and encoding


def show_value(value: object) -> str:
    """repr() of a bad argument, shortened for an error message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_job(name: object) -> str:
    if not isinstance(name, str) or not JOB_NAME_RE.match(name):
        raise ValueError(f"job name must be 1-200 characters of [A-Za-z0-9._-], got {show_value(name)}")
    return name


def check_rule(name: object) -> str:
    if not isinstance(name, str) or not _RULE_NAME.match(name):
        raise ValueError(f"rule name must be 1-64 characters of [A-Za-z0-9._-], got {show_value(name)}")
    return name


def check_time(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number of Unix seconds, got {show_value(value)}")
    return float(value)


def check_decision_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"decision id must be an integer, got {show_value(value)}")
    return value


def check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be an integer >= 0, got {show_value(limit)}")
    return limit


def check_status(status: object, allowed: tuple[str, ...], what: str) -> str:
    if status not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, got {show_value(status)}")
    assert isinstance(status, str)
    return status


def encode(value: object, what: str) -> str:
    """JSON text of a dict (orjson); ValueError naming `what` if it is not a JSON object."""
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object (dict), got {type(value).__name__}")
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as e:
        raise ValueError(f"{what} is not JSON-serialisable: {e}") from None


def decode(text: str | bytes) -> Any:
    return orjson.loads(text)


# ---------------------------------------------------------------- history

HISTORY_COLUMNS = "job, t, step, vals, ready, running, desired, decision"
ROLLUP_STEP = 60  # seconds of one rolled-up history row


def _count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"history {what} must be an integer >= 0, got {show_value(value)}")
    return value


def history_row(row: object, step: int = 0) -> tuple[Any, ...]:
    """The column values of one history row dict; ValueError naming a bad field."""
    if not isinstance(row, dict):
        raise ValueError(f"history row must be a dict, got {type(row).__name__}")
    values = row.get("values")
    if not isinstance(values, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values.values()
    ):
        raise ValueError(f"history values must map rule names to finite numbers, got {show_value(values)}")
    for rule in values:
        check_rule(rule)
    decision = row.get("decision")
    return (
        check_job(row.get("job")),
        check_time(row.get("t"), "history t"),
        step,
        encode(values, "history values"),
        _count(row.get("ready"), "ready"),
        _count(row.get("running"), "running"),
        _count(row.get("desired"), "desired"),
        None if decision is None else check_decision_id(decision),
    )


def history_dict(row: Any) -> dict[str, Any]:
    """A history row dict from a `SELECT t, step, vals, ready, running, desired, decision` row."""
    return {
        "t": float(row[0]),
        "step": int(row[1]),
        "values": decode(row[2]),
        "ready": int(row[3]),
        "running": int(row[4]),
        "desired": int(row[5]),
        "decision": None if row[6] is None else int(row[6]),
    }


def rollup(rows: list[Any], complete: bool) -> tuple[list[tuple[Any, ...]], list[tuple[str, float]]]:
    """Roll per-period rows (`SELECT job, t, vals, ready, running, desired, decision`, ordered by job
    and t) into 1-minute rows: each rule's mean, the counts and decision of the minute's last row (or
    its last decision). Returns (rows to insert, (job, t) keys to delete). Unless `complete`, the last
    minute may be cut off by the batch limit and is left for the next batch."""
    groups: dict[tuple[str, float], list[Any]] = {}
    for r in rows:
        t = float(r[1])
        groups.setdefault((r[0], t - t % ROLLUP_STEP), []).append(r)
    if not complete and len(groups) > 1 and rows:
        last = rows[-1]
        t = float(last[1])
        groups.pop((last[0], t - t % ROLLUP_STEP), None)
    out: list[tuple[Any, ...]] = []
    gone: list[tuple[str, float]] = []
    for (job, minute), members in groups.items():
        sums: dict[str, list[float]] = {}
        decision = None
        for m in members:
            for rule, v in decode(m[2]).items():
                acc = sums.setdefault(rule, [0.0, 0])
                acc[0] += v
                acc[1] += 1
            if m[6] is not None:
                decision = int(m[6])
            gone.append((job, float(m[1])))
        last = members[-1]
        values = {rule: total / n for rule, (total, n) in sums.items()}
        out.append(
            (job, minute, ROLLUP_STEP, encode(values, "history values"), last[3], last[4], last[5], decision)
        )
    return out, gone


@dataclass(frozen=True, slots=True)
class AttemptRow:
    decision_id: int
    attempt: int
    job: str
    to_count: int
    sent_at: float
    deadline: float
    baseline: float | None
    status: str
    detail: str  # JSON text

    def values(self, updated_at: float) -> tuple[Any, ...]:
        return (
            self.decision_id,
            self.attempt,
            self.job,
            self.to_count,
            self.sent_at,
            self.deadline,
            self.baseline,
            self.status,
            self.detail,
            updated_at,
        )


ATTEMPT_COLUMNS = (
    "decision_id, attempt, job, to_count, sent_at, deadline, baseline, status, detail, updated_at"
)
ATTEMPT_SELECT = (
    "SELECT attempt, to_count, sent_at, deadline, baseline, status, detail, epoch FROM actuation_attempts"
)


def attempt_row(decision_id: object, job: object, attempt: object) -> AttemptRow:
    """Check an attempt record (ValueError naming the bad field) and split it into columns."""
    decision = check_decision_id(decision_id)
    name = check_job(job)
    if not isinstance(attempt, dict):
        raise ValueError(f"attempt must be a dict (Attempt.to_json()), got {type(attempt).__name__}")
    for key in ("attempt", "to_count"):
        value = attempt.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if key == "attempt" else 0):
            raise ValueError(f"attempt.{key} must be an integer >= {1 if key == 'attempt' else 0}")
    return AttemptRow(
        decision,
        attempt["attempt"],
        name,
        attempt["to_count"],
        check_time(attempt.get("sent_at"), "attempt.sent_at"),
        check_time(attempt.get("deadline"), "attempt.deadline"),
        None if attempt.get("baseline") is None else check_time(attempt["baseline"], "attempt.baseline"),
        check_status(attempt.get("status", "pending"), ATTEMPT_STATUSES, "attempt.status"),
        encode(attempt.get("detail") or {}, "attempt.detail"),
    )


def attempt_dict(row: Any) -> dict[str, Any]:
    """A row of ATTEMPT_SELECT as `record_attempt` took it."""
    out = {
        "attempt": int(row[0]),
        "to_count": int(row[1]),
        "sent_at": float(row[2]),
        "deadline": float(row[3]),
        "baseline": None if row[4] is None else float(row[4]),
        "status": str(row[5]),
        "detail": decode(row[6]),
    }
    if row[7] is not None:  # several daemons: the lease epoch the intent was fenced by
        out["epoch"] = int(row[7])
    return out


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """A decision split into its indexed columns and JSON texts, ready to insert with its first outcome."""

    at: float
    status: str  # the outcome when it was made (the row is never updated: its outcome row moves on)
    body: str  # the decision without id
    outcome: OutcomeRow


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    status: str
    text: str  # ActuationOutcome.to_json() as JSON


def outcome_row(outcome: object) -> OutcomeRow:
    """Check an outcome (ValueError naming the bad field) and encode it."""
    if not isinstance(outcome, dict):
        raise ValueError(f"outcome must be a dict (ActuationOutcome.to_json()), got {type(outcome).__name__}")
    status = check_status(outcome.get("status", "none"), OUTCOME_STATUSES, "outcome.status")
    return OutcomeRow(status, encode(outcome, "outcome"))


def decision_row(job: str, decision: object, outcome: object | None = None) -> DecisionRow:
    if not isinstance(decision, dict):
        raise ValueError(f"decision must be a dict (Decision.to_json()), got {type(decision).__name__}")
    if decision.get("job", job) != job:
        raise ValueError(f"decision is for job {show_value(decision.get('job'))}, not {job!r}")
    for key in ("status", "result", "outcome"):
        if key in decision:
            raise ValueError(f"decision.{key}: what became of a decision is its outcome, not part of it")
    at = check_time(decision.get("at"), "decision.at")
    out = outcome_row(outcome if outcome is not None else ActuationOutcome().to_json())
    body = {k: v for k, v in decision.items() if k != "id"}
    body["job"] = job
    return DecisionRow(at, out.status, encode(body, "decision"), out)


# SELECT of a decision with its outcome; a decision stored before migration 5 has no outcome row and
# shows the status and result its own row held (decision_dict turns them into an outcome).
DECISION_SELECT = (
    "SELECT d.id, d.body, d.status, d.result, o.outcome FROM decisions d"
    " LEFT JOIN actuation_outcomes o ON o.decision_id = d.id"
)
PENDING_WHERE = "o.status = 'pending' OR (o.decision_id IS NULL AND d.status = 'pending')"
PENDING_ATTEMPT_WHERE = "d.id IN (SELECT a.decision_id FROM actuation_attempts a WHERE a.status = 'pending')"
OUTCOME_COLUMNS = "(decision_id, job, status, outcome, updated_at)"


def decision_dict(
    decision_id: int, body: str | bytes, status: str, result: str | bytes, outcome: str | bytes | None
) -> dict[str, Any]:
    out: dict[str, Any] = decode(body)
    out.pop("status", None)  # a body written before migration 5 held these too
    out.pop("result", None)
    out["id"] = int(decision_id)
    out["outcome"] = decode(outcome) if outcome is not None else legacy_outcome(status, decode(result))
    return out


_LEGACY_FIELDS = {"deployment_id", "version", "latency_ms", "error", "superseded_by", "tries", "attempts"}


def legacy_outcome(status: str, result: dict[str, Any]) -> dict[str, Any]:
    """The outcome of a decision stored before migration 5, from its row's status and result."""
    if status not in OUTCOME_STATUSES:
        status = "failed"
    known = {k: v for k, v in result.items() if k in _LEGACY_FIELDS}
    for key in ("deployment_id", "version", "error"):
        if key in known and known[key] is not None:
            known[key] = str(known[key])
    detail = {k: v for k, v in result.items() if k not in _LEGACY_FIELDS}
    return ActuationOutcome.from_json({"status": status, "detail": detail, **known}).to_json()


def check_token_name(name: object) -> str:
    if not isinstance(name, str) or not _TOKEN_NAME.match(name):
        raise ValueError(f"token name must be 1-64 characters of [A-Za-z0-9._-], got {show_value(name)}")
    return name


@dataclass(frozen=True, slots=True)
class AuditRow:
    at: float
    actor: str
    source: str
    action: str
    job: str | None
    before: int | None
    after: int | None
    detail: str

    def values(self) -> tuple[Any, ...]:
        return (self.at, self.actor, self.source, self.action, self.job, self.before, self.after, self.detail)


AUDIT_COLUMNS = "at, actor, source, action, job, before_version, after_version, detail"


def _opt_int(value: object, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer or None, got {show_value(value)}")
    return value


def audit_row(entry: object) -> AuditRow:
    if not isinstance(entry, dict):
        raise ValueError(f"audit entry must be a dict, got {type(entry).__name__}")
    texts = {}
    for key, limit in (("actor", 64), ("source", 200), ("action", 64)):
        v = entry.get(key)
        if not isinstance(v, str) or not 1 <= len(v) <= limit:
            raise ValueError(f"audit {key} must be a string of 1-{limit} characters, got {show_value(v)}")
        texts[key] = v
    job = entry.get("job")
    return AuditRow(
        at=check_time(entry.get("time"), "audit time"),
        actor=texts["actor"],
        source=texts["source"],
        action=texts["action"],
        job=None if job is None else check_job(job),
        before=_opt_int(entry.get("before_version"), "before_version"),
        after=_opt_int(entry.get("after_version"), "after_version"),
        detail=encode(entry.get("detail") or {}, "audit detail"),
    )


def audit_dict(row: Any) -> dict[str, Any]:
    """A row of `SELECT id, {AUDIT_COLUMNS}` as the API shows it."""
    return {
        "id": int(row[0]),
        "time": float(row[1]),
        "actor": row[2],
        "source": row[3],
        "action": row[4],
        "job": row[5],
        "before_version": None if row[6] is None else int(row[6]),
        "after_version": None if row[7] is None else int(row[7]),
        "detail": decode(row[8]),
    }
