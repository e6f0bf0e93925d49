"""`[cluster]` and `[redis]` (issue 14, HA.md §6.2): defaults, the timing relations, MySQL required;
every error names the file and the key to change."""

from __future__ import annotations

from pathlib import Path

import pytest

from oceand.cluster.lease import LeaseSettings
from oceand.config import ConfigError, load_config

MYSQL = '[store]\nurl = "mysql://root@127.0.0.1:3306/oceand"\n'
TOKEN = 'token = "cluster-secret-0123456789"\n'
ON = '[cluster]\nenabled = true\nadvertise = "10.0.0.5:8080"\n' + TOKEN


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "oceand.toml"
    p.write_text(text)
    return p


def test_single_daemon_by_default(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, ""))
    assert c.cluster.enabled is False
    assert c.redis.url is None


def test_the_design_defaults(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, MYSQL + ON)).cluster
    assert (c.name, c.advertise, c.shards) == ("oceand", "10.0.0.5:8080", 1024)
    assert (c.lease_ttl, c.renew_interval, c.stop_acting_after, c.acquire_poll) == (3.0, 1.0, 2.0, 0.5)
    assert (c.intent_margin, c.actuation_budget, c.takeover_grace) == (1.0, 2.0, 3.0)
    assert (c.release_rate, c.member_min_age, c.store_timeout) == (64, 2.0, 0.8)
    assert c.lease_settings() == LeaseSettings()  # the loop's defaults are the config's


def test_every_key(tmp_path: Path) -> None:
    text = (
        MYSQL
        + ON
        + 'name = "lg"\nshards = 64\nlease_ttl = "1.5s"\nrenew_interval = "500ms"\n'
        + 'stop_acting_after = "1s"\nacquire_poll = "250ms"\nintent_margin = "500ms"\n'
        + 'actuation_budget = "1s"\ntakeover_grace = "1s"\nrelease_rate = 8\nmember_min_age = "1s"\n'
        + 'store_timeout = "400ms"\nforward_flush = "5ms"\nforward_batch = 100\n'
        + '[redis]\nurl = "redis://127.0.0.1:6379/0"\nsocket_timeout = "250ms"\n'
    )
    c = load_config(write(tmp_path, text))
    assert (c.cluster.name, c.cluster.shards, c.cluster.lease_ttl, c.cluster.renew_interval) == (
        "lg",
        64,
        1.5,
        0.5,
    )
    assert (c.cluster.forward_flush, c.cluster.forward_batch) == (0.005, 100)
    assert (c.redis.url, c.redis.socket_timeout) == ("redis://127.0.0.1:6379/0", 0.25)


def test_disabled_cluster_table_is_only_checked_for_its_own_values(tmp_path: Path) -> None:
    """A table kept with enabled = false (e.g. before MySQL is set up) does not stop a SQLite daemon."""
    c = load_config(write(tmp_path, '[cluster]\nenabled = false\nadvertise = "10.0.0.5:8080"\n'))
    assert c.cluster.enabled is False and c.store.kind == "sqlite"


ERRORS = [
    pytest.param(ON, "cluster.enabled", "mysql:// URL", id="SQLite store"),
    pytest.param(
        MYSQL + "[cluster]\nenabled = true\n" + TOKEN, "cluster.advertise", "required", id="no advertise"
    ),
    pytest.param(MYSQL + ON + 'lease_ttl = "2s"\n', "cluster.stop_acting_after", "below lease_ttl", id="ttl"),
    pytest.param(
        MYSQL + ON + 'renew_interval = "1.8s"\n',
        "cluster.renew_interval",
        "stop_acting_after / 1.2",
        id="renew",
    ),
    pytest.param(
        MYSQL + ON + 'intent_margin = "1.5s"\n',
        "cluster.intent_margin",
        "lease_ttl - stop_acting_after",
        id="margin",
    ),
    pytest.param(MYSQL + ON + 'acquire_poll = "3s"\n', "cluster.acquire_poll", "below lease_ttl", id="poll"),
    pytest.param(
        MYSQL + ON + 'store_timeout = "1s"\n', "cluster.store_timeout", "below renew_interval", id="timeout"
    ),
    pytest.param(MYSQL + ON + "shards = 0\n", "cluster.shards", "greater than or equal to 1", id="0 shards"),
    pytest.param(MYSQL + ON + "shards = 70000\n", "cluster.shards", "less than or equal", id="too many"),
    pytest.param(MYSQL + ON + 'name = "a b"\n', "cluster.name", "pattern", id="bad name"),
    pytest.param(MYSQL + ON + 'lease_ttl = "soon"\n', "cluster.lease_ttl", "invalid duration", id="duration"),
    pytest.param(
        MYSQL + '[cluster]\nenabled = true\nadvertise = "0.0.0.0:8080"\n' + TOKEN,
        "cluster.advertise",
        "wildcard",
        id="wildcard advertise",
    ),
    pytest.param(
        MYSQL + '[cluster]\nenabled = true\nadvertise = "host"\n' + TOKEN,
        "cluster.advertise",
        "host:port",
        id="advertise without port",
    ),
    pytest.param(
        MYSQL + '[cluster]\nenabled = true\nadvertise = "10.0.0.5:8080"\n',
        "cluster.token",
        "required",
        id="no token",
    ),
    pytest.param(
        MYSQL + '[cluster]\nenabled = true\nadvertise = "10.0.0.5:8080"\ntoken = "short"\n',
        "cluster.token",
        "at least 16",
        id="short token",
    ),
    pytest.param(
        MYSQL + '[cluster]\nenabled = true\nadvertise = "10.0.0.5:8080"\ntoken = "with white space here"\n',
        "cluster.token",
        "white space",
        id="token with a space",
    ),
    pytest.param(MYSQL + ON + "lease = 3\n", "cluster.lease", "unknown key", id="unknown key"),
    pytest.param('[redis]\nurl = "http://x"\n', "redis.url", "redis://", id="redis scheme"),
    pytest.param(
        "[redis]\nsocket_timeout = 0\n", "redis.socket_timeout", "greater than 0", id="redis timeout"
    ),
]


@pytest.mark.parametrize(("text", "key", "fragment"), ERRORS)
def test_errors_name_the_file_and_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    e = info.value
    assert (e.file, e.key) == (str(path), key), str(e)
    assert fragment in e.message, str(e)


def test_the_cluster_token_is_never_shown(tmp_path: Path) -> None:
    """A refused token is named by its key, never echoed (policies/redact.py's rule for secrets)."""
    secret = "with white space secret-9876"
    with pytest.raises(ConfigError) as e:
        load_config(
            write(tmp_path, MYSQL + f'[cluster]\nenabled = true\nadvertise = "h:1"\ntoken = "{secret}"\n')
        )
    assert "cluster.token" in str(e.value) and "secret-9876" not in str(e.value)
    c = load_config(write(tmp_path, MYSQL + ON)).cluster
    assert "cluster-secret" not in repr(c)
