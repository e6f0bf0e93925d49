"""`[history]` warm-start keys (docs/configuration.md, docs/falcon.md "Warm start"): each mistake is a config
error naming the file and the key, and the falcon-plus API token never appears in one."""

from __future__ import annotations

from pathlib import Path

import pytest

from oceand.config import load_config
from tests.notify.test_notify_config import config_error

TOKEN = "tok-77d1e0c4aa"
BASE = f'falcon_api = "http://falcon-api:8080"\nfalcon_api_token = "{TOKEN}"\n'


def test_off_by_default_and_a_full_table(tmp_path: Path) -> None:
    path = tmp_path / "oceand.toml"
    path.write_text("")
    assert load_config(path).history.falcon_api is None
    path.write_text(f'[history]\n{BASE}warm_window = "1d"\nwarm_timeout = "3s"\nwarm_max_hosts = 50\n')
    h = load_config(path).history
    assert (h.falcon_api, h.falcon_api_user, h.warm_window, h.warm_timeout, h.warm_max_hosts) == (
        "http://falcon-api:8080",
        "oceand",
        86400.0,
        3.0,
        50,
    )
    assert (h.warm_max_points, h.warm_concurrency) == (500_000, 4)
    assert TOKEN not in repr(h)


CASES = [
    pytest.param(
        'falcon_api = "http://falcon-api:8080"\n', "history", "needs falcon_api_token", id="no token"
    ),
    pytest.param(BASE.replace("http://", ""), "history.falcon_api", "not an http(s) URL", id="not a URL"),
    pytest.param(BASE + 'warm_window = "5m"\n', "history.warm_window", "600", id="window too short"),
    pytest.param(BASE + 'warm_window = "9d"\n', "history.warm_window", "691200", id="window too long"),
    pytest.param(BASE + 'warm_timeout = "0s"\n', "history.warm_timeout", "greater than 0", id="no timeout"),
    pytest.param(BASE + "warm_max_points = 10\n", "history.warm_max_points", "1000", id="too few points"),
    pytest.param(BASE + "warm_concurrency = 0\n", "history.warm_concurrency", "1", id="no concurrency"),
    pytest.param(
        BASE + 'warm_max_hosts = "x"\n', "history.warm_max_hosts", "integer", id="hosts not a number"
    ),
]


@pytest.mark.parametrize(("table", "key", "fragment"), CASES)
def test_mistakes_name_the_key(tmp_path: Path, table: str, key: str, fragment: str) -> None:
    e = config_error(tmp_path, "[history]\n" + table)
    assert e.key == key and fragment in e.message and str(tmp_path / "oceand.toml") in str(e), str(e)
    assert TOKEN not in str(e)
