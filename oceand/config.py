"""The daemon's configuration file (PRODUCT §7, §7.1): TOML, validated once at start and on SIGHUP.

`load_config(path)` reads the file with tomllib and validates it against `Config` (pydantic v2, every
table strict: unknown keys and wrong types are errors). Every problem becomes a `ConfigError` naming
the file and the dotted key (`conf/oceand.toml: marathon.lg.urls[0]: not an http(s) URL`), so
`oceand check-config` and a SIGHUP reload report the same text an operator can act on.

Relative paths in the file (a SQLite store, `jobs.dir`, `ca_file`) are relative to the directory of
the config file, never to the daemon's working directory; `Config` holds them resolved.
docs/configuration.md describes every key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import ssl
import tomllib
import zoneinfo
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from actuators.marathon import ClusterConfig, ClusterSettings
from oceand.cluster.lease import LeaseSettings
from oceand.ingest import IngestLimits
from oceand.store.base import SQLiteURL, StoreConfigError, StoreURL
from oceand.store.base import parse_url as parse_store_url
from oceand.store.base import redact as redact_store_url
from policies.document import Duration
from policies.fields import did_you_mean
from policies.redact import redact_text, redact_url


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    file: str
    key: str  # dotted key or field path; "(file)" for the file as a whole
    message: str

    def __post_init__(self) -> None:  # no URL credentials or tokens in any config error (policies.redact)
        object.__setattr__(self, "message", redact_text(self.message))

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}"


class ConfigError(Exception):
    """A config or job file is unusable. `problems` lists every problem found; `file`, `key` and
    `message` are those of the first. str(e) is one `file: key: message` line per problem."""

    def __init__(self, problems: list[ConfigProblem]):
        if not problems:
            raise ValueError("ConfigError needs at least one problem")
        self.problems = problems
        self.file, self.key, self.message = problems[0].file, problems[0].key, problems[0].message
        super().__init__("\n".join(str(p) for p in problems))

    @classmethod
    def one(cls, file: str | Path, key: str, message: str) -> ConfigError:
        return cls([ConfigProblem(str(file), key, message)])


# ---------------------------------------------------------------------------------------------
# Value types


_SIZE_RE = re.compile(r"^\s*(\d+)\s*([A-Za-z]*)\s*$")
_SIZE_UNITS = {
    "": 1, "B": 1,
    "K": 1024, "k": 1024, "KiB": 1024, "M": 1024**2, "m": 1024**2, "MiB": 1024**2,
    "G": 1024**3, "g": 1024**3, "GiB": 1024**3,
    "KB": 1000, "kB": 1000, "MB": 1000**2, "GB": 1000**3,
}  # fmt: skip
MAX_BODY_LIMIT = 1024**3


def parse_size(value: Any) -> int:
    """A byte count: an integer, or "512KiB", "8MiB", "1GiB" (also nginx's "8m"; "8MB" = 8,000,000)."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a string like '8MiB' or '512KiB'")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        m = _SIZE_RE.match(value)
        if not m or m.group(2) not in _SIZE_UNITS:
            raise ValueError(f"invalid size {value!r}: use a number of bytes or '8MiB', '512KiB', '1GiB'")
        size = int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    else:
        raise ValueError("a size is a number of bytes or a string like '8MiB' or '512KiB'")
    if not 1 <= size <= MAX_BODY_LIMIT:
        raise ValueError(f"size must be from 1 byte to 1GiB, got {size} bytes")
    return size


def http_url(value: str, *, allow_query: bool = False) -> str:
    """Check an http(s) URL with a host; return it without a trailing '/'. Errors show it redacted."""
    shown = redact_url(value)
    if any(c.isspace() for c in value):
        raise ValueError(f"{shown!r} is not an http(s) URL (it holds white space)")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"{shown!r} is not an http(s) URL ({redact_text(str(e))})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{shown!r} is not an http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{shown!r}: put credentials in username/password or token, not in the URL")
    if parts.fragment or (parts.query and not allow_query):
        raise ValueError(f"{shown!r}: a base URL may not carry a query or fragment")
    if port == 0:
        raise ValueError(f"{shown!r}: port 0 is not a server port")
    return value.rstrip("/") if not parts.query else value


_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


def parse_listen(value: str) -> tuple[str, int]:
    """'host:port' or '[ipv6]:port' -> (host, port); port 0 means "any free port" (tests)."""
    if value.startswith("["):
        m = re.fullmatch(r"\[([^\]]+)\]:(\d{1,5})", value)
        if not m:
            raise ValueError(f"{value!r}: write an IPv6 address as '[::1]:8080'")
        try:
            ipaddress.IPv6Address(m.group(1))
        except ValueError:
            raise ValueError(f"{value!r}: {m.group(1)!r} is not an IPv6 address") from None
        host, port_text = m.group(1), m.group(2)
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not port_text.isdigit() or len(port_text) > 5:
            raise ValueError(f"{value!r} is not host:port (e.g. '127.0.0.1:8080')")
        if not host:
            raise ValueError(f"{value!r} has no host: use '0.0.0.0:{port_text}' for every interface")
        if ":" in host:
            raise ValueError(f"{value!r}: write an IPv6 address in brackets, e.g. '[::1]:{port_text}'")
        if not _HOSTNAME_RE.match(host):
            raise ValueError(f"{value!r}: {host!r} is not a host name or IPv4 address")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"{value!r}: port {port} is out of range 0-65535")
    return host, port


def _base_dir(info: ValidationInfo) -> Path:
    ctx = info.context if isinstance(info.context, dict) else {}
    base = ctx.get("base_dir")
    return base if isinstance(base, Path) else Path.cwd()


def _resolve(path: str, info: ValidationInfo) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (_base_dir(info) / p).resolve()


Size = Annotated[int, BeforeValidator(parse_size)]
Seconds = Annotated[Duration, Field(gt=0, le=3600)]
ClusterName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# ---------------------------------------------------------------------------------------------
# Tables


class TLSFiles(Table):
    """`tls_cert` / `tls_key` of a listener: PEM files; with them it speaks HTTPS (docs/security.md)."""

    tls_cert: str | None = None
    tls_key: str | None = None

    @field_validator("tls_cert", "tls_key")
    @classmethod
    def _tls_path(cls, v: str | None, info: ValidationInfo) -> str | None:
        return None if v is None else str(_resolve(v, info))

    def ssl_context(self) -> ssl.SSLContext | None:
        return tls_context(self.tls_cert, self.tls_key)


class ServerSettings(TLSFiles):
    listen: str = "127.0.0.1:8080"
    max_body: Size = 8 * 1024**2
    header_timeout: Seconds = 10.0  # a request head must be complete this long after its first byte
    keepalive_timeout: Seconds = 30.0  # an idle keep-alive connection is closed after this
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] = 4096
    # what survives a full garbage collection is frozen, and everything collected again this often;
    # 0: CPython's collector as it is (oceand/gcpolicy.py; docs/operations.md §12)
    gc_rebase: Annotated[Duration, Field(ge=0, le=86400)] = 600.0

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        parse_listen(v)
        return v

    @property
    def host(self) -> str:
        return parse_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return parse_listen(self.listen)[1]

    @property
    def address(self) -> tuple[str, int]:
        return parse_listen(self.listen)


class StoreSettings(Table):
    """`url` is held resolved: a relative SQLite path becomes absolute (`sqlite:////abs/path`).
    The URL syntax (and its query parameters) is the store's: `oceand.store.base.parse_url`."""

    url: str = Field(default="sqlite:///var/oceand.db", validate_default=True)
    probe_interval: Annotated[Duration, Field(ge=0.1, le=3600)] = 5.0  # a test write this often

    @field_validator("url")
    @classmethod
    def _url(cls, v: str, info: ValidationInfo) -> str:
        try:
            parsed = parse_store_url(v)
        except StoreConfigError as e:
            raise ValueError(str(e)) from None
        if isinstance(parsed, SQLiteURL) and not parsed.memory and not Path(parsed.path).is_absolute():
            _, q, query = v.partition("?")
            path = quote(str(_resolve(parsed.path, info)), safe="/")
            return f"sqlite:///{path}" + (f"?{query}" if q else "")
        return v

    def parsed(self) -> StoreURL:
        """The URL as the store reads it (SQLiteURL with an absolute path, or MySQLURL)."""
        return parse_store_url(self.url)

    @property
    def kind(self) -> Literal["sqlite", "mysql"]:
        return "sqlite" if self.url.startswith("sqlite:") else "mysql"

    @property
    def sqlite_path(self) -> str | None:
        """The SQLite database file (absolute, or ':memory:'); None for MySQL."""
        p = self.parsed()
        return p.path if isinstance(p, SQLiteURL) else None

    def display_url(self) -> str:
        """The URL without its password, for logs and the admin API."""
        return redact_store_url(self.url)


class MarathonSettings(Table):
    urls: list[Annotated[str, AfterValidator(http_url)]] = Field(min_length=1, max_length=16)
    username: str | None = Field(default=None, min_length=1)
    password: str | None = Field(default=None, min_length=1, repr=False)
    token: str | None = Field(default=None, min_length=1, repr=False)
    verify_tls: bool = True
    ca_file: str | None = None
    timeout: Seconds = 5.0
    connect_timeout: Seconds = 2.0
    apply_timeout: Seconds = 30.0  # one apply (409 waits, retries over the URLs) before the engine backs off
    clock_skew: Annotated[Duration, Field(ge=0, le=600)] = 2.0  # ours vs Marathon's, for lastScalingAt
    settle_grace: Annotated[Duration, Field(ge=0, le=3600)] = (
        5.0  # a PUT may land this long after its timeout
    )

    @field_validator("urls")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        dup = sorted({u for u in v if v.count(u) > 1})
        if dup:
            raise ValueError(f"{dup[0]!r} is listed twice")
        return v

    @field_validator("username")
    @classmethod
    def _user(cls, v: str | None) -> str | None:
        if v is not None and ":" in v:
            raise ValueError("a basic-auth user name may not contain ':'")
        return v

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return None
        p = _resolve(v, info)
        if not p.is_file():
            raise ValueError(f"CA file {str(p)!r} does not exist or is not a file")
        return str(p)

    @model_validator(mode="after")
    def _auth(self) -> MarathonSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("basic auth needs both username and password")
        if self.token is not None and self.username is not None:
            raise ValueError("use either token (DC/OS) or username/password (basic auth), not both")
        if self.connect_timeout > self.timeout:
            raise ValueError(f"connect_timeout ({self.connect_timeout:g}s) > timeout ({self.timeout:g}s)")
        return self


class JobsSettings(Table):
    dir: str | None = None  # held resolved (absolute)

    @field_validator("dir")
    @classmethod
    def _dir(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return None
        p = _resolve(v, info)
        if not p.is_dir():
            raise ValueError(f"directory {str(p)!r} does not exist")
        return str(p)


class LimitsSettings(Table):
    """Bounds on what the admin API and the job files may create (PRODUCT §10 "Limits")."""

    jobs: Annotated[int, Field(ge=1, le=10_000_000)] = 100_000  # jobs the daemon holds; a create beyond: 409
    # routed series per job: PRODUCT §10's name for [ingest] max_series_per_job (set one of them)
    series_per_job: Annotated[int, Field(ge=1, le=10_000_000)] | None = None


class IngestSettings(TLSFiles):
    grace: Annotated[Duration, Field(ge=0, le=3600)] | None = None
    max_ahead: Annotated[Duration, Field(ge=0, le=86400)] | None = None
    max_age: Annotated[Duration, Field(gt=0, le=7 * 86400)] | None = None
    max_series_per_job: Annotated[int, Field(ge=1, le=10_000_000)] = 20_000
    max_series: Annotated[int, Field(ge=1, le=100_000_000)] = 500_000
    series_expiry: Annotated[Duration, Field(ge=60, le=30 * 86400)] | None = None
    max_unrouted: Annotated[int, Field(ge=1, le=100_000_000)] = 200_000

    def limits(self) -> IngestLimits:
        return IngestLimits(**self.model_dump(include={f.name for f in dataclasses.fields(IngestLimits)}))

    # Falcon transfer's backends as inputs (docs/falcon.md): off unless a listen address is given
    rpc_listen: str | None = None
    tsdb_listen: str | None = None
    http_listen: str | None = None  # POST /v1/push and /api/push on a lean listener (oceand.api.pushserver)
    listen_max_connections: Annotated[int, Field(ge=1, le=1_000_000)] = 1024
    listen_idle_timeout: Annotated[Duration, Field(gt=0, le=86400)] = 300.0
    rpc_max_frame: Annotated[Size, Field(ge=1024, le=1024**3)] = 8 * 1024**2
    tsdb_max_line: Annotated[Size, Field(ge=256, le=16 * 1024**2)] = 64 * 1024
    tsdb_counters: list[Annotated[str, Field(min_length=1, max_length=255)]] = Field(
        default_factory=list, max_length=10_000
    )

    # access (PRODUCT §10, docs/security.md): a listener of its own, who may send
    listen: str | None = None  # None: push and alarm callbacks stay on server.listen
    allow: list[str] = Field(default_factory=list, max_length=1024)  # sender CIDRs
    token: str | None = Field(default=None, min_length=16, max_length=512, repr=False)

    @field_validator("rpc_listen", "tsdb_listen", "http_listen", "listen")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        if v is not None:
            parse_listen(v)
        return v

    @field_validator("allow")
    @classmethod
    def _allow(cls, v: list[str]) -> list[str]:
        for cidr in v:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr[:60]!r} is not an IP address or CIDR (e.g. '10.0.0.0/8')") from None
        return v

    @field_validator("token")
    @classmethod
    def _token(cls, v: str | None) -> str | None:
        if v is not None and (any(c.isspace() for c in v) or not v.isprintable()):
            raise ValueError("the ingest token may not hold white space or control characters")
        return v

    @cached_property
    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(c, strict=False) for c in self.allow]

    def allows(self, remote: str | None) -> bool:
        """The sender's address is in `allow` (an IPv4-mapped IPv6 address counts as its IPv4 one)."""
        try:
            addr = ipaddress.ip_address((remote or "").split("%")[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr.version == n.version and addr in n for n in self.networks)

    @property
    def address(self) -> tuple[str, int] | None:
        return None if self.listen is None else parse_listen(self.listen)


class AuthSettings(Table):
    """Bearer tokens on the admin API (oceand.auth, docs/security.md)."""

    enabled: bool = False
    grace: Annotated[Duration, Field(ge=0, le=7 * 86400)] = (
        3600.0  # a rotated token's old secret works this long
    )
    refresh: Annotated[Duration, Field(gt=0, le=300)] = 5.0  # tokens are re-read from the store this often
    write_rate: Annotated[float, Field(gt=0, le=100_000)] = 10.0  # admin writes per second per token
    write_burst: Annotated[int, Field(ge=1, le=1_000_000)] = 100  # admin writes at once per token
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] = 1000  # tokens in the store, at most
    audit_retention: Annotated[Duration, Field(ge=86400, le=100 * 365 * 86400)] = 90 * 86400.0


def is_loopback(host: str) -> bool:
    """Whether a listen host reaches only this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


class LBConfig(Table):
    """Where this host's balancers live (docs/configuration.md `[lb]`); defaults are Debian's paths."""

    reconcile_interval: Seconds = 30.0
    timeout: Seconds = 10.0
    use_ip_address: bool = False
    ipvsadm: str = "ipvsadm"
    keepalived: str = "keepalived"
    keepalived_config: str = "/etc/keepalived/keepalived.conf"
    keepalived_include_dir: str = "/etc/keepalived/oceand"
    keepalived_pid_file: str | None = "/run/keepalived.pid"
    keepalived_real_server_lines: list[str] = Field(default_factory=list)
    nginx: str = "nginx"
    nginx_conf: str = "/etc/nginx/nginx.conf"
    nginx_prefix: str | None = None
    nginx_pid_file: str | None = None
    nginx_upstream_dir: str = "/etc/nginx/oceand"
    nginx_status_url: str | None = None
    haproxy_socket: str = "/run/haproxy/admin.sock"
    haproxy_servers_dir: str | None = "/etc/haproxy/oceand"
    haproxy_server_options: str = ""

    @field_validator("nginx_status_url")
    @classmethod
    def _status_url(cls, v: str | None) -> str | None:
        return None if v is None else http_url(v)


class LogSettings(Table):
    level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    format: Literal["json", "text"] = "json"

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v


class HistorySettings(Table):
    """Recorded history per job (docs/operations.md "History")."""

    enabled: bool = True
    retention: Annotated[Duration, Field(ge=3600, le=366 * 86400)] = 8 * 86400.0  # rows older are pruned
    rollup_after: Annotated[Duration, Field(ge=600, le=366 * 86400)] = 86400.0  # then 1-minute roll-ups
    # PRODUCT §13's name for rollup_after: rows keep the job's period this long, then 1-minute roll-ups
    resolution: Annotated[Duration, Field(ge=600, le=366 * 86400)] | None = None
    flush_interval: Annotated[Duration, Field(gt=0, le=300)] = 5.0  # buffered rows are written this often
    max_buffer: Annotated[int, Field(ge=1000, le=10_000_000)] = 200_000  # rows waiting; more are dropped
    # rows per write / roll-up / prune transaction; each holds the store (a SQLite store serves a decision
    # about to be applied after the transaction in flight: keep them short)
    batch: Annotated[int, Field(ge=100, le=100_000)] = 100
    prune_interval: Annotated[Duration, Field(ge=1, le=86400)] = 60.0  # roll-up and prune this often
    # warm start from Falcon's graph history (docs/falcon.md "Warm start"): off unless falcon_api is set
    falcon_api: str | None = None  # falcon-plus API base URL (modules/api), as [notify] falcon_api
    falcon_api_user: str = Field(default="oceand", min_length=1, max_length=64)  # Apitoken "name"
    falcon_api_token: str | None = Field(default=None, min_length=1, max_length=1024, repr=False)  # "sig"
    warm_window: Annotated[Duration, Field(ge=600, le=8 * 86400)] = 2 * 86400.0  # history asked for
    warm_timeout: Seconds = 10.0  # per job, every request included; then it starts cold
    warm_max_hosts: Annotated[int, Field(ge=1, le=10_000)] = 200  # endpoints asked for per job
    warm_max_points: Annotated[int, Field(ge=1000, le=10_000_000)] = 500_000  # points taken per job
    warm_concurrency: Annotated[int, Field(ge=1, le=64)] = 4  # jobs warmed at once

    @field_validator("falcon_api")
    @classmethod
    def _api(cls, v: str | None) -> str | None:
        return None if v is None else http_url(v)

    @property
    def per_period_for(self) -> float:
        """How long rows keep the job's period before the 1-minute roll-up: `resolution` when set, else
        `rollup_after` (history_problems refuses the two set to different values)."""
        return self.rollup_after if self.resolution is None else self.resolution

    @model_validator(mode="after")
    def _token(self) -> HistorySettings:
        if self.falcon_api is not None and self.falcon_api_token is None:
            raise ValueError(
                "falcon_api needs falcon_api_token (the API's default_token, or a user session sig "
                "with falcon_api_user)"
            )
        return self


class NotifySettings(Table):
    """Jobs' `notify.group` through Falcon (docs/falcon.md "Notifications"): the group is a falcon-plus
    team, its members come from the falcon-plus API, the messages go to Falcon's sender endpoints."""

    falcon_api: str | None = None  # falcon-plus API base URL (modules/api, e.g. http://falcon-api:8080)
    falcon_api_user: str = Field(default="oceand", min_length=1, max_length=64)  # Apitoken "name"
    falcon_api_token: str | None = Field(default=None, min_length=1, max_length=1024, repr=False)  # "sig"
    sms: str | None = None  # the sender endpoints falcon-plus's alarm posts to (its api.sms / mail / im)
    mail: str | None = None
    im: str | None = None
    team_cache_ttl: Annotated[Duration, Field(ge=0, le=86400)] = 300.0
    timeout: Seconds = 5.0  # one request to the API or a sender
    attempts: Annotated[int, Field(ge=1, le=10)] = 3  # per message and channel, the first one included
    backoff: Annotated[Duration, Field(ge=0, le=300)] = 1.0  # before the 2nd attempt; doubles after
    queue: Annotated[int, Field(ge=1, le=100_000)] = 1000  # waiting messages per channel
    sms_max_chars: Annotated[int, Field(ge=60, le=1000)] = 160
    falcon_sender: str | None = None  # removed: refused with a pointer to the keys above
    # webhook destinations (docs/security.md): host names and CIDRs; loopback, link-local and the
    # daemon's own listeners only when a CIDR lists them
    allow: list[str] = Field(default_factory=list, max_length=1024)

    @field_validator("allow")
    @classmethod
    def _allow(cls, v: list[str]) -> list[str]:
        for entry in v:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                if not _HOSTNAME_RE.match(entry) or entry.replace(".", "").isdigit():
                    raise ValueError(
                        f"{entry[:60]!r} is neither a host name nor an IP address or CIDR (e.g. '10.0.0.0/8')"
                    ) from None
        return v

    @field_validator("falcon_api")
    @classmethod
    def _api(cls, v: str | None) -> str | None:
        return None if v is None else http_url(v)

    @field_validator("sms", "mail", "im")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return None if v is None else http_url(v, allow_query=True)

    @field_validator("falcon_sender")
    @classmethod
    def _removed(cls, v: str | None) -> str | None:
        if v is not None:
            raise ValueError(
                "removed: Falcon's sender takes form posts, one URL per channel: set [notify] sms, mail "
                "and/or im (falcon-plus alarm's api.sms/mail/im), and falcon_api + falcon_api_token for "
                "the team members (docs/falcon.md)"
            )
        return v

    @model_validator(mode="after")
    def _together(self) -> NotifySettings:
        senders = [k for k in ("sms", "mail", "im") if getattr(self, k) is not None]
        if senders and self.falcon_api is None:
            raise ValueError(f"{senders[0]} needs falcon_api: the team members' addresses come from it")
        if self.falcon_api is not None and not senders:
            raise ValueError("falcon_api is set but none of sms, mail, im: nothing would be sent")
        if self.falcon_api is not None and self.falcon_api_token is None:
            raise ValueError(
                "falcon_api needs falcon_api_token (the API's default_token, or a user session sig "
                "with falcon_api_user)"
            )
        return self

    @property
    def falcon(self) -> bool:
        """Whether notify groups are delivered through Falcon."""
        return self.falcon_api is not None


_ADVERTISE_RE = re.compile(r"^[A-Za-z0-9.\[\]:_-]{1,128}$")


class ClusterModeSettings(Table):
    """Several daemons (PRODUCT §11, docs/cluster.md): shards leased in the MySQL store. The relations
    between the timings are checked in `cluster_problems` (they name the key to change)."""

    enabled: bool = False
    name: str = Field(default="oceand", pattern=r"^[A-Za-z0-9_-]{1,64}$")  # cluster_meta.name, Redis prefix
    advertise: str | None = None  # host:port the other daemons reach this one at; its stable id
    shards: Annotated[int, Field(ge=1, le=65535)] = 1024  # fixed at creation (cluster_meta), checked at start
    lease_ttl: Annotated[Duration, Field(ge=0.1, le=600)] = 3.0
    renew_interval: Annotated[Duration, Field(ge=0.02, le=300)] = 1.0
    stop_acting_after: Annotated[Duration, Field(ge=0.05, le=600)] = 2.0
    acquire_poll: Annotated[Duration, Field(ge=0.02, le=300)] = 0.5
    jobs_poll: Annotated[Duration, Field(ge=0.02, le=300)] = (
        1.0  # job changes by other daemons read this often
    )
    intent_margin: Annotated[Duration, Field(ge=0, le=600)] = 1.0
    actuation_budget: Annotated[Duration, Field(ge=0.1, le=600)] = 2.0
    takeover_grace: Annotated[Duration, Field(ge=0, le=3600)] = 3.0
    release_rate: Annotated[int, Field(ge=1, le=65535)] = 64  # shards released per second per daemon
    member_min_age: Annotated[Duration, Field(ge=0, le=3600)] = 2.0
    store_timeout: Annotated[Duration, Field(ge=0.05, le=60)] = 0.8  # one coordination statement, at most
    forward_flush: Annotated[Duration, Field(ge=0.001, le=10)] = 0.01  # samples to an owner: flush window
    forward_batch: Annotated[int, Field(ge=1, le=100_000)] = 500  # ... or this many samples, sooner
    forward_hold: Annotated[Duration, Field(ge=0, le=60)] = 5.0  # samples for an unreachable owner kept
    forward_buffer: Annotated[int, Field(ge=1, le=10_000_000)] = 200_000  # samples waiting, at most
    # the secret the daemons of one cluster present to each other (X-Oceand-Cluster-Token) on /internal/
    token: str | None = Field(default=None, min_length=16, max_length=512, repr=False)

    @field_validator("token")
    @classmethod
    def _token(cls, v: str | None) -> str | None:
        if v is not None and (any(c.isspace() for c in v) or not v.isprintable()):
            raise ValueError("the cluster token may not hold white space or control characters")
        return v

    @field_validator("advertise")
    @classmethod
    def _advertise(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not _ADVERTISE_RE.match(v):
            raise ValueError(f"{_show(v)} is not host:port")
        host, _port = parse_listen(v)
        if host in ("0.0.0.0", "::", ""):
            raise ValueError("must be an address the other daemons can reach, not a wildcard")
        return v

    def lease_settings(self) -> LeaseSettings:
        return LeaseSettings(
            name=self.name,
            shards=self.shards,
            lease_ttl=self.lease_ttl,
            renew_interval=self.renew_interval,
            stop_acting_after=self.stop_acting_after,
            acquire_poll=self.acquire_poll,
            intent_margin=self.intent_margin,
            actuation_budget=self.actuation_budget,
            takeover_grace=self.takeover_grace,
            release_rate=self.release_rate,
            member_min_age=self.member_min_age,
            store_timeout=self.store_timeout,
        )


class RedisSettings(Table):
    """Redis (hot state and wake-ups in cluster mode; never the authority): oceand/cluster/hotstate.py,
    docs/redis.md. Without `url` nothing uses Redis; with it, Redis down only degrades (/readyz says so)."""

    url: str | None = None
    socket_timeout: Annotated[Duration, Field(gt=0, le=60)] = 0.5

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("redis", "rediss", "unix") or not (parts.netloc or parts.path):
            raise ValueError(f"{_show(v)} is not a redis://, rediss:// or unix:// URL")
        return v


class Config(Table):
    """The whole file. `path` is the file it came from (None for `default_config()`), `base_dir`
    the directory relative paths were resolved against."""

    dry_run: bool = False
    timezone: str = "UTC"
    stop_timeout: Annotated[Duration, Field(gt=0, le=3600)] = 20.0  # SIGTERM to exit, at most
    decision_stale_after: Annotated[Duration, Field(gt=0, le=3600)] = 5.0  # re-read the app before applying
    # Tables default to {} validated like a written table, so defaults get the same path resolution.
    server: ServerSettings = Field(default_factory=dict, validate_default=True)
    store: StoreSettings = Field(default_factory=dict, validate_default=True)
    marathon: dict[ClusterName, MarathonSettings] = Field(default_factory=dict)
    jobs: JobsSettings = Field(default_factory=dict, validate_default=True)
    ingest: IngestSettings = Field(default_factory=dict, validate_default=True)
    log: LogSettings = Field(default_factory=dict, validate_default=True)
    lb: LBConfig = Field(default_factory=dict, validate_default=True)
    notify: NotifySettings = Field(default_factory=dict, validate_default=True)
    auth: AuthSettings = Field(default_factory=dict, validate_default=True)
    history: HistorySettings = Field(default_factory=dict, validate_default=True)
    limits: LimitsSettings = Field(default_factory=dict, validate_default=True)
    cluster: ClusterModeSettings = Field(default_factory=dict, validate_default=True)
    redis: RedisSettings = Field(default_factory=dict, validate_default=True)

    _path: Path | None = PrivateAttr(default=None)
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    def model_post_init(self, context: Any) -> None:
        if isinstance(context, dict):
            if isinstance(context.get("path"), Path):
                self._path = context["path"]
            if isinstance(context.get("base_dir"), Path):
                self._base_dir = context["base_dir"]

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name such as 'Asia/Shanghai')") from None
        return v

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    def ingest_limits(self) -> IngestLimits:
        """`[ingest]`'s bounds, with `[limits] series_per_job` when it is set."""
        limits = self.ingest.limits()
        if self.limits.series_per_job is not None:
            limits = dataclasses.replace(limits, max_series_per_job=self.limits.series_per_job)
        return limits

    @property
    def jobs_dir(self) -> Path | None:
        return None if self.jobs.dir is None else Path(self.jobs.dir)

    def marathon_clusters(self) -> dict[str, ClusterSettings]:
        return {
            name: ClusterSettings(
                ClusterConfig(
                    name=name,
                    urls=tuple(m.urls),
                    username=m.username,
                    password=m.password,
                    token=m.token,
                    verify_tls=m.verify_tls,
                    ca_file=m.ca_file,
                    timeout=m.timeout,
                    connect_timeout=m.connect_timeout,
                ),
                m.apply_timeout,
                m.clock_skew,
                m.settle_grace,
            )
            for name, m in self.marathon.items()
        }


# ---------------------------------------------------------------------------------------------
# Loading


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file; raise ConfigError naming the file and every bad key."""
    shown = str(path)
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError.one(shown, "(file)", "no such file") from None
    except IsADirectoryError:
        raise ConfigError.one(shown, "(file)", "is a directory, not a config file") from None
    except OSError as e:
        raise ConfigError.one(shown, "(file)", f"cannot read: {e.strerror or e}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError.one(shown, "(file)", f"not UTF-8 text (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise toml_error(shown, e) from None
    base = p.resolve().parent
    return validate_config(data, file=shown, base_dir=base, path=p.resolve())


def default_config() -> Config:
    """The embedded defaults: SQLite at ./var/oceand.db, listen 127.0.0.1:8080, no Marathon."""
    return validate_config({}, file="(defaults)", base_dir=Path.cwd(), path=None)


def validate_config(data: dict[str, Any], *, file: str, base_dir: Path, path: Path | None) -> Config:
    ctx = {"base_dir": base_dir, "path": path}
    try:
        config = Config.model_validate(data, context=ctx)
    except ValidationError as e:
        raise ConfigError([_problem(file, err) for err in e.errors(include_url=False)]) from None
    problems = access_problems(config, file) + tls_problems(config, file) + cluster_problems(config, file)
    problems += limits_problems(config, file) + history_problems(config, file)
    if problems:
        raise ConfigError(problems)
    return config


def access_problems(config: Config, file: str) -> list[ConfigProblem]:
    """The refusals of PRODUCT §10: an admin listener beyond loopback needs `[auth] enabled`."""
    out = []
    if not config.auth.enabled and not is_loopback(config.server.host):
        out.append(
            ConfigProblem(
                file,
                "auth.enabled",
                f"server.listen {config.server.listen!r} is reachable beyond this host: set "
                "[auth] enabled = true (and create a token: oceand token create) or listen on 127.0.0.1",
            )
        )
    ingest = config.ingest
    listen = ingest.listen or config.server.listen
    which = "ingest.listen" if ingest.listen else "server.listen (which carries ingest)"
    for key, where in ((which, listen), ("ingest.http_listen", ingest.http_listen)):
        if where is None or ingest.allow or ingest.token is not None or is_loopback(parse_listen(where)[0]):
            continue
        out.append(
            ConfigProblem(
                file,
                "ingest.allow",
                f"{key} {where!r} is reachable beyond this host: set [ingest] allow (the Falcon "
                "senders' CIDRs) and/or [ingest] token, or listen on 127.0.0.1",
            )
        )
    # Go net/rpc and OpenTSDB's put lines carry no token: beyond loopback only `allow` guards them
    for key, where in (("ingest.rpc_listen", ingest.rpc_listen), ("ingest.tsdb_listen", ingest.tsdb_listen)):
        if where is None or ingest.allow or is_loopback(parse_listen(where)[0]):
            continue
        out.append(
            ConfigProblem(
                file,
                "ingest.allow",
                f"{key} {where!r} is reachable beyond this host: set [ingest] allow (the CIDRs of the "
                "transfers and agents that send to it; its protocol carries no token), or listen on "
                "127.0.0.1",
            )
        )
    address = ingest.address
    if address is not None and address[1] != 0 and address == config.server.address:
        out.append(
            ConfigProblem(file, "ingest.listen", "is server.listen: leave it out to share that listener")
        )
    return out


def limits_problems(config: Config, file: str) -> list[ConfigProblem]:
    """`[limits] series_per_job` is PRODUCT §10's name for `[ingest] max_series_per_job`: both set to
    different values is a mistake, named."""
    mine, theirs = config.limits.series_per_job, config.ingest.max_series_per_job
    if mine is not None and "max_series_per_job" in config.ingest.model_fields_set and mine != theirs:
        return [
            ConfigProblem(
                file,
                "limits.series_per_job",
                f"{mine} differs from [ingest] max_series_per_job = {theirs}: they are one bound, set one",
            )
        ]
    return []


def history_problems(config: Config, file: str) -> list[ConfigProblem]:
    """`[history] resolution` is PRODUCT §13's name for `[history] rollup_after`: both set to different
    values is a mistake, named."""
    h = config.history
    if h.resolution is not None and "rollup_after" in h.model_fields_set and h.resolution != h.rollup_after:
        return [
            ConfigProblem(
                file,
                "history.resolution",
                f"{h.resolution:g} s differs from [history] rollup_after = {h.rollup_after:g} s: they are one "
                "setting (how long rows keep the job's period before 1-minute roll-ups), set one",
            )
        ]
    return []


def cluster_problems(config: Config, file: str) -> list[ConfigProblem]:
    """`[cluster]` (HA.md §6.2): only with a MySQL store, an advertised address, and timings that keep
    a lease safe: lease_ttl > stop_acting_after > 1.2 × renew_interval (client-go's rule), intent_margin
    ≤ lease_ttl − stop_acting_after, acquire_poll < lease_ttl. Each problem names the key to change."""
    c = config.cluster
    if not c.enabled:
        return []
    out = []

    def bad(key: str, message: str) -> None:
        out.append(ConfigProblem(file, f"cluster.{key}", message))

    if config.store.kind != "mysql":
        bad(
            "enabled",
            "several daemons share their leases and decisions through MySQL: set [store] url to a "
            "mysql:// URL (SQLite is for a single daemon)",
        )
    if c.advertise is None:
        bad("advertise", "required with enabled = true: the host:port the other daemons reach this one at")
    if c.token is None:
        bad(
            "token",
            "required with enabled = true: the shared secret (16+ characters) the daemons present to each "
            "other when they forward samples, alarm callbacks and admin calls to a job's owner",
        )
    if not c.stop_acting_after < c.lease_ttl:
        bad(
            "stop_acting_after",
            f"must be below lease_ttl ({c.lease_ttl:g}s), got {c.stop_acting_after:g}s: a daemon must stop "
            "acting before its lease can expire",
        )
    if not c.stop_acting_after > 1.2 * c.renew_interval:
        bad(
            "renew_interval",
            f"must be below stop_acting_after / 1.2 ({c.stop_acting_after / 1.2:g}s), got "
            f"{c.renew_interval:g}s: one late renewal would stop the daemon acting",
        )
    if c.intent_margin > c.lease_ttl - c.stop_acting_after:
        bad(
            "intent_margin",
            f"must be at most lease_ttl - stop_acting_after ({c.lease_ttl - c.stop_acting_after:g}s), got "
            f"{c.intent_margin:g}s",
        )
    if not c.acquire_poll < c.lease_ttl:
        bad("acquire_poll", f"must be below lease_ttl ({c.lease_ttl:g}s), got {c.acquire_poll:g}s")
    if c.store_timeout >= c.renew_interval:
        bad(
            "store_timeout",
            f"must be below renew_interval ({c.renew_interval:g}s), got {c.store_timeout:g}s: a stuck "
            "renewal must give up before the next one is due",
        )
    return out


class TLSFileError(ValueError):
    """A TLS certificate or key that cannot be used; `which` is "cert" or "key"."""

    def __init__(self, which: str, message: str) -> None:
        super().__init__(message)
        self.which = which


def tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """A server SSLContext from PEM files (None without them), or TLSFileError naming the bad file.
    The messages name files and OpenSSL's reason, never the files' contents."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise TLSFileError("cert" if cert is None else "key", "tls_cert and tls_key go together: set both")
    for which, path in (("cert", cert), ("key", key)):
        try:
            with open(path, "rb") as f:
                f.read(1)
        except OSError as e:
            raise TLSFileError(which, f"cannot read {path!r}: {e.strerror or type(e).__name__}") from None
    try:
        ssl.create_default_context(cafile=cert)  # parses the certificates alone
    except (ssl.SSLError, ValueError) as e:
        raise TLSFileError("cert", f"{cert!r} is not a PEM certificate ({_ssl_reason(e)})") from None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key, password=lambda: b"")  # an encrypted key fails, never prompts
    except (ssl.SSLError, ValueError) as e:
        reason = _ssl_reason(e)
        if "KEY_VALUES_MISMATCH" in reason.upper() or "mismatch" in reason:
            raise TLSFileError("key", f"{key!r} is not the private key of {cert!r}") from None
        raise TLSFileError("key", f"{key!r} is not an unencrypted PEM private key ({reason})") from None
    return ctx


def _ssl_reason(e: Exception) -> str:
    return redact_text(str(getattr(e, "reason", None) or e))[:200]


def tls_problems(config: Config, file: str) -> list[ConfigProblem]:
    """Each listener's TLS files load into an SSLContext (so `oceand check-config` catches them)."""
    out = []
    for table, settings in (("server", config.server), ("ingest", config.ingest)):
        try:
            settings.ssl_context()
        except TLSFileError as e:
            out.append(ConfigProblem(file, f"{table}.tls_{e.which}", str(e)))
    if config.ingest.tls_cert is not None and config.ingest.listen is None:
        out.append(
            ConfigProblem(
                file,
                "ingest.tls_cert",
                "needs [ingest] listen: without it ingest shares server.listen (use [server] tls_cert)",
            )
        )
    return out


def toml_error(file: str, e: tomllib.TOMLDecodeError) -> ConfigError:
    """A TOML syntax error with its line and column as the key."""
    text = str(e)
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)\s*$", text)
    if m:
        return ConfigError.one(
            file, f"line {m.group(1)}, column {m.group(2)}", "TOML syntax: " + text[: m.start()]
        )
    m = re.search(r"\s*\(at end of document\)\s*$", text)
    if m:
        return ConfigError.one(file, "end of file", "TOML syntax: " + text[: m.start()])
    return ConfigError.one(file, "(file)", "TOML syntax: " + text)


def dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if part == "[key]":
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


_FRIENDLY = {
    "dict_type": "expected a table",
    "model_type": "expected a table",
    "model_attributes_type": "expected a table",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "list_type": "expected an array",
    "missing": "required key is missing",
}


_SECRET_KEYS = ("password", "token")


def _problem(file: str, err: Any) -> ConfigProblem:
    loc = tuple(err["loc"])
    kind = err["type"]
    msg = str(err["msg"]).removeprefix("Value error, ")
    if len(loc) == 2 and loc[0] == "marathon" and str(loc[1]) in MarathonSettings.model_fields:
        msg = "clusters are named tables: write [marathon.NAME] (e.g. [marathon.lg]), not [marathon]"
    elif kind == "extra_forbidden":
        msg = "unknown key" + did_you_mean(Config, loc)
    elif loc[-1:] == ("[key]",):
        msg = "a cluster name is 1-64 letters, digits, '_' or '-' (it is a job's target.cluster)"
    elif kind == "literal_error":
        msg = f"expected {err['ctx']['expected']}, got {_show(err.get('input'))}"
    elif kind in _FRIENDLY:
        msg = _FRIENDLY[kind]
        if kind != "missing" and not str(loc[-1]).endswith(_SECRET_KEYS):  # falcon_api_token too
            msg += f", got {_show(err.get('input'))}"
    return ConfigProblem(file, dotted(loc), msg)


def _show(value: Any) -> str:
    text = redact_text(repr(value))  # before cutting: a cut URL could lose its "@"
    return text if len(text) <= 60 else text[:57] + "..."


def changed_keys(old: Config, new: Config) -> list[str]:
    """Dotted keys whose values differ (for a SIGHUP reload's log line); passwords are compared too."""
    a, b = old.model_dump(), new.model_dump()
    out: list[str] = []

    def walk(x: Any, y: Any, prefix: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y), key=str):
                walk(x.get(k), y.get(k), f"{prefix}.{k}" if prefix else str(k))
        elif x != y:
            out.append(prefix)

    walk(a, b, "")
    return out
