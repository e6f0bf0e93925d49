"""Store URLs: what each accepted form means, and the message every bad one gets."""

from __future__ import annotations

from typing import Any

import pytest

from oceand.store import (
    MySQLStore,
    MySQLURL,
    SQLiteStore,
    SQLiteURL,
    StoreConfigError,
    open_store,
    parse_url,
    redact,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(
            "sqlite:////var/lib/oceand/oceand.db", SQLiteURL("/var/lib/oceand/oceand.db"), id="absolute"
        ),
        pytest.param("sqlite:///oceand.db", SQLiteURL("oceand.db"), id="relative"),
        pytest.param("sqlite:///data/o.db", SQLiteURL("data/o.db"), id="relative in a folder"),
        pytest.param("sqlite://:memory:", SQLiteURL(":memory:"), id="memory"),
        pytest.param("sqlite:////tmp/my%20db.db", SQLiteURL("/tmp/my db.db"), id="percent-decoded path"),
        pytest.param(
            "sqlite:////tmp/o.db?timeout=0.5", SQLiteURL("/tmp/o.db", timeout=0.5), id="busy timeout"
        ),
        pytest.param(
            "sqlite:////tmp/o.db?journal=wal&timeout=2",
            SQLiteURL("/tmp/o.db", timeout=2, journal="wal"),
            id="WAL journal chosen",
        ),
        pytest.param(
            "mysql://oceand:secret@127.0.0.1:3306/oceand",
            MySQLURL(host="127.0.0.1", user="oceand", password="secret", database="oceand"),
            id="mysql full",
        ),
        pytest.param(
            "mysql://root@db.example/oceand",
            MySQLURL(host="db.example", user="root", database="oceand"),
            id="mysql no password, default port",
        ),
        pytest.param(
            "mysql://o%40x:p%40ss%3Aw%2Frd@10.0.0.5:3307/oceand_prod",
            MySQLURL(host="10.0.0.5", user="o@x", password="p@ss:w/rd", port=3307, database="oceand_prod"),
            id="mysql URL-decoded user and password",
        ),
        pytest.param(
            "mysql://u@[::1]:3306/o",
            MySQLURL(host="::1", user="u", database="o"),
            id="mysql IPv6 host",
        ),
        pytest.param(
            "mysql://u:p@h/db?pool_size=3&connect_timeout=2&timeout=7.5&unix_socket=/run/mysqld/mysqld.sock",
            MySQLURL(
                host="h",
                user="u",
                password="p",
                database="db",
                pool_size=3,
                connect_timeout=2,
                timeout=7.5,
                unix_socket="/run/mysqld/mysqld.sock",
            ),
            id="mysql parameters",
        ),
    ],
)
def test_good_urls(url: str, expected: Any) -> None:
    assert parse_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param("", "store URL is empty", id="empty"),
        pytest.param("   ", "store URL is empty", id="blank"),
        pytest.param(None, "store URL is empty", id="not a string"),
        pytest.param("/var/lib/oceand.db", "has no scheme", id="a bare path"),
        pytest.param("postgres://u@h/db", "unknown scheme 'postgres'", id="unknown scheme"),
        pytest.param("sqlite://host/path.db", "a SQLite URL has no host part", id="sqlite with host"),
        pytest.param("sqlite://", "a SQLite URL has no host part", id="sqlite nothing"),
        pytest.param("sqlite:///", "no database file name", id="sqlite empty path"),
        pytest.param("sqlite:////var/lib/", "no database file name", id="sqlite directory"),
        pytest.param(
            "sqlite:////tmp/o.db?mode=ro", "unknown parameter 'mode'", id="sqlite unknown parameter"
        ),
        pytest.param(
            "sqlite:////tmp/o.db?timeout=soon", "is not a number of seconds", id="sqlite bad timeout"
        ),
        pytest.param("sqlite:////tmp/o.db?timeout=-1", "out of range", id="sqlite negative timeout"),
        pytest.param(
            "sqlite:////tmp/o.db?journal=memory",
            "journal='memory' must be one of delete, wal",
            id="sqlite journal",
        ),
        pytest.param(
            "sqlite:////tmp/o.db?timeout=1&timeout=2", "given twice", id="sqlite repeated parameter"
        ),
        pytest.param("sqlite:////tmp/o.db#x", "fragment", id="sqlite fragment"),
        pytest.param("mysql://127.0.0.1:3306/oceand", "no user", id="mysql no user"),
        pytest.param("mysql://:pw@127.0.0.1/oceand", "no user", id="mysql empty user"),
        pytest.param("mysql://u:pw@:3306/oceand", "no host", id="mysql no host"),
        pytest.param("mysql://u:p/w@h/oceand", "encode '/'", id="mysql unencoded '/' in the password"),
        pytest.param("mysql://u:pw@h:port/oceand", "port is not a number", id="mysql port not a number"),
        pytest.param("mysql://u:pw@h:0/oceand", "port is not a number in 1-65535", id="mysql port 0"),
        pytest.param(
            "mysql://u:pw@h:70000/oceand", "port is not a number in 1-65535", id="mysql port too big"
        ),
        pytest.param("mysql://u:pw@h:3306", "no database name", id="mysql no database"),
        pytest.param("mysql://u:pw@h:3306/", "no database name", id="mysql empty database"),
        pytest.param("mysql://u:pw@h/my-db", "database name 'my-db' must be", id="mysql bad database name"),
        pytest.param("mysql://u:pw@h/a/b", "database name 'a/b' must be", id="mysql database with a slash"),
        pytest.param("mysql://u:pw@h/db?ssl=1", "unknown parameter 'ssl'", id="mysql unknown parameter"),
        pytest.param("mysql://u:pw@h/db?pool_size=0", "out of range", id="mysql pool_size 0"),
        pytest.param("mysql://u:pw@h/db?pool_size=2.5", "is not an integer", id="mysql pool_size fraction"),
        pytest.param("mysql://u:pw@h/db?timeout=nan", "out of range", id="mysql timeout nan"),
        pytest.param("mysql://u:pw@h/db?timeout", "malformed query string", id="mysql query without '='"),
    ],
)
def test_bad_urls_name_the_problem_and_never_the_password(url: Any, message: str) -> None:
    with pytest.raises(StoreConfigError, match=message) as info:
        open_store(url)
    assert "pw" not in str(info.value) and "p/w" not in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        pytest.param("mysql://u:secret@h:3306/db", "mysql://u:***@h:3306/db", id="password"),
        pytest.param("mysql://u@h/db", "mysql://u@h/db", id="no password"),
        pytest.param(
            "mysql://u:p%40ss@h/db?timeout=3", "mysql://u:***@h/db?timeout=3", id="encoded password"
        ),
        pytest.param("mysql://u:a/b@c@h/db", "mysql://u:***@h/db", id="unencoded '/' and '@'"),
        pytest.param("sqlite:////a:b@c.db", "sqlite:////a:b@c.db", id="sqlite path with ':' and '@'"),
    ],
)
def test_redact(url: str, redacted: str) -> None:
    assert redact(url) == redacted


@pytest.mark.parametrize(
    ("url", "kind", "shown"),
    [
        pytest.param("sqlite://:memory:", SQLiteStore, "sqlite://:memory:", id="sqlite memory"),
        pytest.param("sqlite:////tmp/o.db", SQLiteStore, "sqlite:////tmp/o.db", id="sqlite file"),
        pytest.param("mysql://u:pw@h/db", MySQLStore, "mysql://u:***@h:3306/db", id="mysql"),
        pytest.param("mysql://u@[::1]/db", MySQLStore, "mysql://u@[::1]:3306/db", id="mysql ipv6 shown"),
    ],
)
def test_open_store_picks_the_backend_and_shows_the_url_without_password(
    url: str, kind: type, shown: str
) -> None:
    store = open_store(url)
    assert isinstance(store, kind)
    assert store.url == shown
