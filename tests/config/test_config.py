"""oceand.config: the TOML file, its fixed keys (PRODUCT §7.1) and every kind of error."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oceand.config import (
    Config,
    ConfigError,
    changed_keys,
    default_config,
    load_config,
    parse_listen,
    parse_size,
)
from oceand.daemon import Daemon
from oceand.ingest import IngestLimits

FULL = """
dry_run = true
timezone = "Asia/Shanghai"
[server]
listen = "0.0.0.0:9090"
max_body = "512KiB"
[store]
url = "mysql://ocean:s%40cret@127.0.0.1:3306/oceand"
[marathon.lg]
urls = ["http://10.0.0.1:8080", "http://10.0.0.2:8080/"]
username = "ocean"
password = "secret"
verify_tls = false
timeout = "3s"
connect_timeout = 1
[marathon.hy]
urls = ["https://dcos.example.com/service/marathon"]
token = "eyJ0"
ca_file = "ca.pem"
[jobs]
dir = "jobs"
[ingest]
grace = "2s"
max_ahead = "30s"
max_age = "1h"
max_series_per_job = 100
max_series = 1000
series_expiry = "10m"
max_unrouted = 50
allow = ["10.0.0.0/8"]
[log]
level = "DEBUG"
format = "text"
[notify]
falcon_api = "http://127.0.0.1:8080"
falcon_api_token = "t"
sms = "http://127.0.0.1:10086/sms?x=1"
[auth]
enabled = true
"""


def write(tmp_path: Path, text: str, name: str = "oceand.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def full(tmp_path: Path) -> Config:
    (tmp_path / "jobs").mkdir()
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    return load_config(write(tmp_path, FULL))


@pytest.mark.parametrize(
    ("get", "expected"),
    [
        pytest.param(lambda c: c.dry_run, True, id="dry_run"),
        pytest.param(lambda c: c.timezone, "Asia/Shanghai", id="timezone"),
        pytest.param(lambda c: (c.server.host, c.server.port), ("0.0.0.0", 9090), id="server.listen"),
        pytest.param(lambda c: c.server.max_body, 512 * 1024, id="server.max_body KiB"),
        pytest.param(lambda c: c.store.kind, "mysql", id="store.url mysql kind"),
        pytest.param(lambda c: c.store.parsed().password, "s@cret", id="store.url password unquoted"),
        pytest.param(
            lambda c: c.store.display_url(),
            "mysql://ocean:***@127.0.0.1:3306/oceand",
            id="store url redacted",
        ),
        pytest.param(lambda c: sorted(c.marathon), ["hy", "lg"], id="marathon cluster names"),
        pytest.param(
            lambda c: c.marathon["lg"].urls,
            ["http://10.0.0.1:8080", "http://10.0.0.2:8080"],
            id="marathon urls, trailing slash dropped",
        ),
        pytest.param(
            lambda c: (c.marathon["lg"].username, c.marathon["lg"].password), ("ocean", "secret"), id="auth"
        ),
        pytest.param(lambda c: c.marathon["lg"].verify_tls, False, id="verify_tls"),
        pytest.param(
            lambda c: (c.marathon["lg"].timeout, c.marathon["lg"].connect_timeout), (3.0, 1.0), id="timeouts"
        ),
        pytest.param(lambda c: c.marathon["hy"].token, "eyJ0", id="token"),
        pytest.param(lambda c: Path(c.marathon["hy"].ca_file).name, "ca.pem", id="ca_file"),
        pytest.param(lambda c: c.marathon["hy"].timeout, 5.0, id="timeout default"),
        pytest.param(lambda c: c.ingest.grace, 2.0, id="ingest.grace"),
        pytest.param(
            lambda c: c.ingest.limits(),
            IngestLimits(30.0, 3600.0, 100, 1000, 600.0, 50),
            id="ingest limits",
        ),
        pytest.param(lambda c: (c.log.level, c.log.format), ("debug", "text"), id="log level lowercased"),
        pytest.param(lambda c: c.notify.sms, "http://127.0.0.1:10086/sms?x=1", id="notify.sms"),
    ],
)
def test_full_config_keys(full: Config, get: Callable[[Config], Any], expected: Any) -> None:
    assert get(full) == expected


def test_paths_resolve_against_the_config_directory(full: Config, tmp_path: Path) -> None:
    assert full.path == (tmp_path / "oceand.toml").resolve()
    assert full.base_dir == tmp_path.resolve()
    assert full.jobs_dir == (tmp_path / "jobs").resolve()
    assert full.marathon["hy"].ca_file == str((tmp_path / "ca.pem").resolve())


def test_relative_sqlite_path_is_relative_to_the_config_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(write(conf, '[store]\nurl = "sqlite:///../var/oceand.db?timeout=2"\n'))
    assert cfg.store.sqlite_path == str((tmp_path / "var" / "oceand.db").resolve())
    assert cfg.store.url == f"sqlite:///{(tmp_path / 'var' / 'oceand.db').resolve()}?timeout=2"
    assert cfg.store.parsed().timeout == 2.0


@pytest.mark.parametrize(
    ("url", "path"),
    [
        pytest.param(
            "sqlite:////var/lib/oceand/oceand.db", "/var/lib/oceand/oceand.db", id="absolute, 4 slashes"
        ),
        pytest.param("sqlite://:memory:", ":memory:", id="memory"),
        pytest.param("sqlite:///x.db", "{base}/x.db", id="relative, 3 slashes"),
    ],
)
def test_sqlite_forms(tmp_path: Path, url: str, path: str) -> None:
    cfg = load_config(write(tmp_path, f'[store]\nurl = "{url}"\n'))
    assert cfg.store.kind == "sqlite"
    assert cfg.store.sqlite_path == path.format(base=tmp_path.resolve())


def test_marathon_clusters_are_plain_values(full: Config) -> None:
    clusters = full.marathon_clusters()
    lg, hy = clusters["lg"].client, clusters["hy"].client
    assert lg.urls == ("http://10.0.0.1:8080", "http://10.0.0.2:8080")
    assert lg.authorization() == "Basic b2NlYW46c2VjcmV0"  # base64("ocean:secret")
    assert hy.authorization() == "token=eyJ0"  # DC/OS scheme, not Bearer (PROTOCOLS A.7)
    assert (lg.verify_tls, lg.timeout, lg.connect_timeout) == (False, 3.0, 1.0)
    assert "secret" not in repr(lg) and "eyJ0" not in repr(hy)


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    d = default_config()
    assert d.path is None
    assert d.dry_run is False and d.timezone == "UTC"
    assert (d.server.host, d.server.port, d.server.max_body) == ("127.0.0.1", 8080, 8 * 1024 * 1024)
    assert d.store.sqlite_path == str(tmp_path.resolve() / "var" / "oceand.db")
    assert d.marathon == {} and d.marathon_clusters() == {}
    assert d.jobs_dir is None and d.ingest.grace is None
    assert (d.log.level, d.log.format, d.notify.falcon_api) == ("info", "json", None)
    assert (d.redis.url, d.redis.socket_timeout) == (None, 0.5)
    # an empty file means the same as no file
    empty = load_config(write(tmp_path, ""))
    assert empty.model_dump() == d.model_dump()


def test_changed_keys(tmp_path: Path) -> None:
    a = load_config(write(tmp_path, '[marathon.lg]\nurls = ["http://a:8080"]\n', "a.toml"))
    b = load_config(write(tmp_path, 'dry_run = true\n[marathon.lg]\nurls = ["http://b:8080"]\n', "b.toml"))
    c = load_config(write(tmp_path, "", "c.toml"))
    assert changed_keys(a, b) == ["dry_run", "marathon.lg.urls"]
    assert changed_keys(a, c) == ["marathon.lg"]
    assert changed_keys(a, a) == []


@pytest.mark.parametrize(
    ("text", "per_period_for"),
    [
        pytest.param("", 86400.0, id="default: the job's period for 1 d"),
        pytest.param('[history]\nresolution = "2d"\n', 172800.0, id="PRODUCT §13's name"),
        pytest.param('[history]\nrollup_after = "6h"\n', 21600.0, id="the daemon's name"),
        pytest.param('[history]\nresolution = "6h"\nrollup_after = "6h"\n', 21600.0, id="both, agreeing"),
    ],
)
def test_history_resolution_is_rollup_after(tmp_path: Path, text: str, per_period_for: float) -> None:
    """PRODUCT §13 names `[history] resolution` ("the job's period up to 1 d, then 1-minute roll-ups"):
    one setting with `rollup_after`, and the recorder rolls up rows older than it."""
    config = load_config(write(tmp_path, text + '[store]\nurl = "sqlite:///oceand.db"\n'))
    assert config.history.per_period_for == per_period_for
    assert Daemon(config).history.rollup_after == per_period_for


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("127.0.0.1:8080", ("127.0.0.1", 8080), id="ipv4"),
        pytest.param("[::1]:8080", ("::1", 8080), id="ipv6 in brackets"),
        pytest.param("localhost:0", ("localhost", 0), id="port 0 for tests"),
        pytest.param("oceand-1.example.com:65535", ("oceand-1.example.com", 65535), id="host name"),
    ],
)
def test_parse_listen(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(4096, 4096, id="bytes"),
        pytest.param("4096", 4096, id="bytes as string"),
        pytest.param("512KiB", 512 * 1024, id="KiB"),
        pytest.param("8MiB", 8 * 1024**2, id="MiB"),
        pytest.param("8m", 8 * 1024**2, id="nginx m"),
        pytest.param("1GiB", 1024**3, id="GiB, the maximum"),
        pytest.param("2MB", 2_000_000, id="MB is decimal"),
    ],
)
def test_parse_size(value: Any, expected: int) -> None:
    assert parse_size(value) == expected


MARATHON = '[marathon.lg]\nurls = ["http://10.0.0.1:8080"]\n'

ERRORS = [
    # unknown keys, with a suggestion when one is close
    pytest.param("dryrun = true\n", "dryrun", "unknown key (did you mean 'dry_run'?)", id="typo top level"),
    pytest.param(
        '[server]\nlisen = "127.0.0.1:1"\n', "server.lisen", "did you mean 'listen'?", id="typo in server"
    ),
    pytest.param(
        MARATHON + 'usrname = "x"\n', "marathon.lg.usrname", "did you mean 'username'?", id="typo in cluster"
    ),
    pytest.param("[notifyy]\n", "notifyy", "did you mean 'notify'?", id="typo in a table name"),
    pytest.param("[server]\nzzz = 1\n", "server.zzz", "unknown key", id="unknown key, nothing close"),
    pytest.param(
        "[ingest]\nmax_series_per_job = 10\n[limits]\nseries_per_job = 20\n",
        "limits.series_per_job",
        "differs from [ingest] max_series_per_job = 10",
        id="limits and ingest name two series bounds",
    ),
    pytest.param("[limits]\njobs = 0\n", "limits.jobs", "greater than or equal to 1", id="limits jobs zero"),
    pytest.param(
        '[history]\nrollup_after = "1d"\nresolution = "2d"\n',
        "history.resolution",
        "172800 s differs from [history] rollup_after = 86400 s: they are one setting",
        id="history resolution and rollup_after disagree",
    ),
    pytest.param(
        '[history]\nresolution = "1m"\n',
        "history.resolution",
        "greater than or equal to 600",
        id="resolution 1m",
    ),
    pytest.param(
        '[marathon]\nurls = ["http://a:1"]\n',
        "marathon.urls",
        "write [marathon.NAME]",
        id="cluster table not named",
    ),
    pytest.param(
        '[marathon."a b"]\nurls = ["http://a:1"]\n', "marathon.a b", "cluster name", id="bad cluster name"
    ),
    # wrong types
    pytest.param('dry_run = "yes"\n', "dry_run", "expected true or false, got 'yes'", id="bool as string"),
    pytest.param(
        "[server]\nlisten = 8080\n", "server.listen", "expected a string, got 8080", id="listen as int"
    ),
    pytest.param('server = "x"\n', "server", "expected a table", id="table as string"),
    pytest.param(
        '[marathon.lg]\nurls = "http://a:1"\n', "marathon.lg.urls", "expected an array", id="urls not list"
    ),
    pytest.param(
        MARATHON + "verify_tls = 1\n", "marathon.lg.verify_tls", "expected true or false", id="tls int"
    ),
    pytest.param('[log]\nlevel = "verbose"\n', "log.level", "expected 'debug'", id="bad log level"),
    pytest.param(
        '[log]\nformat = "xml"\n', "log.format", "expected 'json' or 'text', got 'xml'", id="bad format"
    ),
    # URLs
    pytest.param(
        '[marathon.lg]\nurls = ["ftp://x"]\n', "marathon.lg.urls[0]", "not an http(s) URL", id="url scheme"
    ),
    pytest.param(
        '[marathon.lg]\nurls = ["http://a:1", "http:/nohost"]\n',
        "marathon.lg.urls[1]",
        "not an http(s) URL",
        id="url host",
    ),
    pytest.param(
        '[marathon.lg]\nurls = ["http://a:99999"]\n',
        "marathon.lg.urls[0]",
        "out of range",
        id="url port range",
    ),
    pytest.param(
        '[marathon.lg]\nurls = ["http://u:p@a:1"]\n',
        "marathon.lg.urls[0]",
        "credentials",
        id="url with credentials",
    ),
    pytest.param(
        '[marathon.lg]\nurls = ["http://a:1/?x=1"]\n', "marathon.lg.urls[0]", "query", id="url with query"
    ),
    pytest.param(
        '[marathon.lg]\nurls = ["http://a:1", "http://a:1/"]\n',
        "marathon.lg.urls",
        "listed twice",
        id="dup url",
    ),
    pytest.param("[marathon.lg]\nurls = []\n", "marathon.lg.urls", "at least 1", id="no urls"),
    pytest.param(
        '[marathon.lg]\nusername = "a"\n', "marathon.lg.urls", "required key is missing", id="urls missing"
    ),
    pytest.param('[notify]\nsms = "sender:6066"\n', "notify.sms", "not an http(s) URL", id="sender"),
    # durations and sizes
    pytest.param(
        MARATHON + 'timeout = "5x"\n', "marathon.lg.timeout", "invalid duration '5x'", id="bad duration"
    ),
    pytest.param(MARATHON + "timeout = 0\n", "marathon.lg.timeout", "greater than 0", id="zero timeout"),
    pytest.param(
        MARATHON + 'timeout = "1s"\nconnect_timeout = "2s"\n',
        "marathon.lg",
        "connect_timeout (2s) > timeout (1s)",
        id="connect_timeout over timeout",
    ),
    pytest.param('[ingest]\ngrace = "-1s"\n', "ingest.grace", "invalid duration", id="negative grace"),
    pytest.param('[ingest]\nmax_ahead = "2d"\n', "ingest.max_ahead", "less than or equal", id="max_ahead"),
    pytest.param("[ingest]\nmax_age = 0\n", "ingest.max_age", "greater than 0", id="max_age 0"),
    pytest.param(
        "[ingest]\nmax_series_per_job = 0\n", "ingest.max_series_per_job", "greater than or equal", id="cap 0"
    ),
    pytest.param(
        '[ingest]\nmax_series = "many"\n', "ingest.max_series", "expected an integer", id="cap text"
    ),
    pytest.param(
        '[ingest]\nseries_expiry = "10s"\n', "ingest.series_expiry", "greater than", id="expiry 10s"
    ),
    pytest.param('[server]\nmax_body = "8XB"\n', "server.max_body", "invalid size '8XB'", id="bad size unit"),
    pytest.param("[server]\nmax_body = 0\n", "server.max_body", "from 1 byte to 1GiB", id="zero size"),
    pytest.param(
        '[server]\nmax_body = "2GiB"\n', "server.max_body", "from 1 byte to 1GiB", id="size over 1GiB"
    ),
    # listen
    pytest.param('[server]\nlisten = "localhost"\n', "server.listen", "not host:port", id="listen no port"),
    pytest.param('[server]\nlisten = ":8080"\n', "server.listen", "use '0.0.0.0:8080'", id="listen no host"),
    pytest.param(
        '[server]\nlisten = "::1:8080"\n', "server.listen", "in brackets", id="ipv6 without brackets"
    ),
    pytest.param('[server]\nlisten = "[::g]:80"\n', "server.listen", "not an IPv6 address", id="bad ipv6"),
    pytest.param('[server]\nlisten = "h:70000"\n', "server.listen", "out of range", id="listen port range"),
    # time zone, auth, paths, store
    pytest.param('timezone = "Mars/Base"\n', "timezone", "unknown time zone 'Mars/Base'", id="bad time zone"),
    pytest.param(
        MARATHON + 'username = "a"\n', "marathon.lg", "needs both username and password", id="half auth"
    ),
    pytest.param(
        MARATHON + 'password = "p"\n', "marathon.lg", "needs both username and password", id="password only"
    ),
    pytest.param(
        MARATHON + 'username = "a"\npassword = "p"\ntoken = "t"\n',
        "marathon.lg",
        "not both",
        id="token and username",
    ),
    pytest.param(
        MARATHON + 'username = "a:b"\npassword = "p"\n', "marathon.lg.username", "':'", id="colon in user"
    ),
    pytest.param(
        MARATHON + 'ca_file = "nope.pem"\n', "marathon.lg.ca_file", "does not exist", id="ca_file missing"
    ),
    pytest.param('[jobs]\ndir = "nope"\n', "jobs.dir", "does not exist", id="jobs dir missing"),
    pytest.param(
        '[store]\nurl = "postgres://x/y"\n', "store.url", "unknown scheme 'postgres'", id="store scheme"
    ),
    pytest.param(
        '[store]\nurl = "mysql://127.0.0.1/oceand"\n', "store.url", "no user", id="mysql without user"
    ),
    pytest.param('[store]\nurl = "oceand.db"\n', "store.url", "no scheme", id="store url without scheme"),
    pytest.param('[redis]\nurl = "http://x:6379"\n', "redis.url", "redis://", id="redis scheme"),
    pytest.param('[redis]\nurl = "redis://"\n', "redis.url", "redis://", id="redis without host"),
    pytest.param(
        "[redis]\nsocket_timeout = 0\n", "redis.socket_timeout", "greater than 0", id="redis timeout 0"
    ),
    pytest.param(
        '[redis]\nsocket_timeout = "2m"\n', "redis.socket_timeout", "less than or equal", id="redis timeout"
    ),
    pytest.param("[redis]\nport = 6379\n", "redis.port", "unknown key", id="redis unknown key"),
    # TOML syntax
    pytest.param(
        "dry_run = \n", "line 1, column 11", "TOML syntax: Invalid value", id="toml syntax, line and column"
    ),
    pytest.param(
        '[server]\nlisten = "a:1"\nlisten = "b:2"\n',
        "line 3, column 15",
        "Cannot overwrite a value",
        id="toml dup key",
    ),
    pytest.param(
        '[server]\nlisten = "a:1', "end of file", "Unterminated string", id="unterminated string at end"
    ),
    pytest.param('[server\nlisten = "a:1"\n', "line 1, column 8", "TOML syntax", id="unclosed table header"),
]


@pytest.mark.parametrize(("text", "key", "fragment"), ERRORS)
def test_config_errors_name_the_file_and_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    e = info.value
    assert (e.file, e.key) == (str(path), key), str(e)
    assert fragment in e.message, str(e)
    assert str(e).startswith(f"{path}: {key}: ")


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, 'dry_run = 1\ntimezone = "X/Y"\n[log]\nformat = "xml"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [p.key for p in info.value.problems] == ["dry_run", "timezone", "log.format"]
    assert str(info.value).count("\n") == 2


def test_secrets_are_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, MARATHON + 'username = "a"\npassword = 12345678\n'))
    assert info.value.key == "marathon.lg.password"
    assert "12345678" not in str(info.value)


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        pytest.param(lambda d: d / "missing.toml", "no such file", id="missing file"),
        pytest.param(lambda d: d, "is a directory", id="directory"),
        pytest.param(lambda d: write(d, "").with_name("bin.toml"), "not UTF-8", id="not utf-8"),
    ],
)
def test_file_errors(tmp_path: Path, make: Callable[[Path], Path], fragment: str) -> None:
    (tmp_path / "bin.toml").write_bytes(b"dry_run = true # \xff\n")
    path = make(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.file, info.value.key) == (str(path), "(file)")
    assert fragment in info.value.message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    path.chmod(0)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(path)


def test_config_is_frozen(full: Config) -> None:
    with pytest.raises(ValueError, match="frozen"):
        full.dry_run = False
