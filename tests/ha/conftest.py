"""The chaos rig as a fixture (tests/ha/rig.py), and the on-demand scenarios: tests marked `ha_soak` run
only with OCEAND_HA_SOAK set (1, or the soak's length in seconds); see docs/cluster.md."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ha.rig import Rig


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("OCEAND_HA_SOAK"):
        return
    skip = pytest.mark.skip(reason="on demand: OCEAND_HA_SOAK=1 (or =SECONDS for the soak), docs/cluster.md")
    for item in items:
        if "ha_soak" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    from tests.store.conftest import _mysql_admin

    try:
        _mysql_admin().close()
    except Exception as e:
        pytest.skip(f"MariaDB not reachable: {e}")
    r = Rig(tmp_path)
    try:
        yield r
    finally:
        r.close()
