"""`[ingest]` listener keys: defaults, and every bad value named with its file and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oceand.config import ConfigError, validate_config


def ingest(**keys: Any) -> Any:
    return validate_config({"ingest": keys}, file="oceand.toml", base_dir=Path("."), path=None).ingest


def test_defaults_listen_nowhere() -> None:
    s = ingest()
    assert (s.rpc_listen, s.tsdb_listen) == (None, None)
    assert (s.listen_max_connections, s.listen_idle_timeout) == (1024, 300.0)
    assert (s.rpc_max_frame, s.tsdb_max_line, s.tsdb_counters) == (8 * 1024**2, 64 * 1024, [])


def test_values_in_their_units() -> None:
    s = ingest(
        rpc_listen="0.0.0.0:8433",
        tsdb_listen="[::1]:4242",
        listen_idle_timeout="2m",
        rpc_max_frame="1MiB",
        allow=["10.0.0.0/8"],  # rpc_listen is reachable beyond this host
    )
    assert (s.rpc_listen, s.tsdb_listen, s.listen_idle_timeout, s.rpc_max_frame) == (
        "0.0.0.0:8433",
        "[::1]:4242",
        120.0,
        1024**2,
    )


@pytest.mark.parametrize(
    ("keys", "key", "text"),
    [
        pytest.param({"rpc_listen": "8433"}, "ingest.rpc_listen", "not host:port", id="rpc-no-host"),
        pytest.param({"tsdb_listen": ":4242"}, "ingest.tsdb_listen", "no host", id="tsdb-empty-host"),
        pytest.param({"http_listen": "6060"}, "ingest.http_listen", "not host:port", id="http-no-host"),
        pytest.param(
            {"listen_max_connections": 0}, "ingest.listen_max_connections", "greater than", id="cap-0"
        ),
        pytest.param(
            {"listen_idle_timeout": "0s"}, "ingest.listen_idle_timeout", "greater than", id="idle-0"
        ),
        pytest.param(
            {"rpc_max_frame": "8 potatoes"}, "ingest.rpc_max_frame", "invalid size", id="frame-bad-unit"
        ),
        pytest.param({"rpc_max_frame": 10}, "ingest.rpc_max_frame", "greater than", id="frame-tiny"),
        pytest.param({"tsdb_max_line": "1GiB"}, "ingest.tsdb_max_line", "less than", id="line-huge"),
        pytest.param({"tsdb_counters": [""]}, "ingest.tsdb_counters[0]", "at least 1", id="counter-empty"),
        pytest.param({"rpc_listn": "1.2.3.4:1"}, "ingest.rpc_listn", "", id="typo"),
    ],
)
def test_bad_values_name_the_key(keys: dict[str, Any], key: str, text: str) -> None:
    with pytest.raises(ConfigError) as e:
        ingest(**keys)
    msg = str(e.value)
    assert msg.startswith("oceand.toml: ") and key in msg and text in msg, msg


def test_listener_keys_and_ingest_limits_live_together() -> None:
    """The ingest limits the engine gets are the bound keys only, whatever listener keys sit beside them."""
    s = ingest(rpc_listen="127.0.0.1:8433", tsdb_counters=["net.if.in.bytes"], max_series=5, max_ahead="30s")
    limits = s.limits()
    assert (limits.max_series, limits.max_ahead) == (5, 30.0)
