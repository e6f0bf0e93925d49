"""`[notify]` keys (docs/configuration.md): each mistake is a config error naming the file and the key,
and the falcon-plus API token never appears in one."""

from __future__ import annotations

from pathlib import Path

import pytest

from oceand.config import ConfigError, load_config

TOKEN = "tok-3f9a1c77e2"
BASE = f'falcon_api = "http://falcon-api:8080"\nfalcon_api_token = "{TOKEN}"\n'


def test_defaults_and_a_full_table(tmp_path: Path) -> None:
    path = tmp_path / "oceand.toml"
    path.write_text(f'[notify]\n{BASE}sms = "http://sender:10086/sms"\nim = "http://sender:10086/wechat"\n')
    n = load_config(path).notify
    assert n.falcon and (n.sms, n.mail, n.im) == (
        "http://sender:10086/sms",
        None,
        "http://sender:10086/wechat",
    )
    assert (
        n.falcon_api_user,
        n.team_cache_ttl,
        n.timeout,
        n.attempts,
        n.backoff,
        n.queue,
        n.sms_max_chars,
    ) == ("oceand", 300.0, 5.0, 3, 1.0, 1000, 160)
    assert TOKEN not in repr(n)
    path.write_text("")
    assert not load_config(path).notify.falcon


CASES = [
    pytest.param(
        'falcon_sender = "http://127.0.0.1:6066"\n', "notify.falcon_sender", "removed", id="falcon_sender"
    ),
    pytest.param('sms = "http://sender/sms"\n', "notify", "sms needs falcon_api", id="sender without api"),
    pytest.param(BASE, "notify", "none of sms, mail, im", id="api without a sender"),
    pytest.param(
        'falcon_api = "http://falcon-api:8080"\nim = "http://s/im"\n',
        "notify",
        "needs falcon_api_token",
        id="no token",
    ),
    pytest.param(BASE + 'sms = "sender:10086"\n', "notify.sms", "not an http(s) URL", id="sms not a URL"),
    pytest.param(
        BASE.replace("falcon-api:8080", "falcon-api:8080/?x=1") + 'mail = "http://s/m"\n',
        "notify.falcon_api",
        "query",
        id="api base URL with a query",
    ),
    pytest.param(
        BASE + 'im = "http://s/im"\nattempts = 0\n',
        "notify.attempts",
        "greater than or equal to 1",
        id="attempts 0",
    ),
    pytest.param(
        BASE + 'im = "http://s/im"\nattempts = 11\n',
        "notify.attempts",
        "less than or equal to 10",
        id="attempts 11",
    ),
    pytest.param(
        BASE + 'im = "http://s/im"\nqueue = 0\n', "notify.queue", "greater than or equal to 1", id="queue 0"
    ),
    pytest.param(
        BASE + 'im = "http://s/im"\ntimeout = "0s"\n', "notify.timeout", "greater than 0", id="timeout 0"
    ),
    pytest.param(
        BASE + 'im = "http://s/im"\nbackoff = -1\n',
        "notify.backoff",
        ">= 0",
        id="backoff <0",
    ),
    pytest.param(
        BASE + 'im = "http://s/im"\nteam_cache_ttl = "2d"\n',
        "notify.team_cache_ttl",
        "less than or equal",
        id="ttl 2d",
    ),
    pytest.param(
        BASE + 'sms = "http://s/s"\nsms_max_chars = 20\n', "notify.sms_max_chars", "60", id="sms 20 chars"
    ),
    pytest.param(
        BASE + 'sms = "http://s/s"\nsms_host = "x"\n', "notify.sms_host", "unknown key", id="unknown key"
    ),
    pytest.param(
        'falcon_api = "http://a:8080"\nsms = "http://s/s"\nfalcon_api_token = ["' + TOKEN + '"]\n',
        "notify.falcon_api_token",
        "expected a string",
        id="token of the wrong type: not echoed",
    ),
]


def config_error(tmp_path: Path, text: str) -> ConfigError:
    """The error loading a config file holding `text` raises (the test fails when it loads)."""
    path = tmp_path / "oceand.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.file == str(path), str(info.value)
    return info.value


@pytest.mark.parametrize(("table", "key", "message"), CASES)
def test_bad_notify_keys_name_the_key(tmp_path: Path, table: str, key: str, message: str) -> None:
    e = config_error(tmp_path, "[notify]\n" + table)
    assert e.key == key, str(e)
    assert message in e.message, str(e)
    assert TOKEN not in str(e)
