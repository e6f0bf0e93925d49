"""The keys of issue 18's actuation bounds: defaults, and bad values refused naming file and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oceand.config import ConfigError, validate_config


def load(data: dict[str, Any]) -> Any:
    return validate_config(data, file="oceand.toml", base_dir=Path("/tmp"), path=None)


def test_defaults() -> None:
    c = load({"marathon": {"lg": {"urls": ["http://m:8080"]}}})
    assert (c.stop_timeout, c.decision_stale_after) == (20.0, 5.0)
    lg = c.marathon_clusters()["lg"]
    assert (lg.clock_skew, lg.settle_grace) == (2.0, 5.0)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        pytest.param({"stop_timeout": 0}, "stop_timeout", id="stop_timeout 0"),
        pytest.param({"stop_timeout": "2h"}, "stop_timeout", id="stop_timeout over 1 h"),
        pytest.param({"decision_stale_after": "-1s"}, "decision_stale_after", id="negative stale"),
        pytest.param(
            {"marathon": {"lg": {"urls": ["http://m"], "clock_skew": "1h"}}},
            "marathon.lg.clock_skew",
            id="skew over 10 min",
        ),
        pytest.param(
            {"marathon": {"lg": {"urls": ["http://m"], "settle_grace": "soon"}}},
            "marathon.lg.settle_grace",
            id="grace not a duration",
        ),
    ],
)
def test_bad_values_name_the_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(data)
    assert e.value.key == key and e.value.file == "oceand.toml"
