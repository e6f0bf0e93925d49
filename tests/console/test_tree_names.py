"""Ocean tree names: one rule for the daemon and oceanctl (policies/tree.py `tree_parts`) and the console (static/tree.js `treeParts`).
The cases are one JSON table; this test holds the Python side to it, tests/console/test_browser.py the
JavaScript side (run in Chromium)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from policies.tree import tree_parts

CASES: list[dict[str, Any]] = json.loads((Path(__file__).parent / "tree_names.json").read_text())["cases"]


@pytest.mark.parametrize("case", [pytest.param(c, id=c["id"]) for c in CASES])
def test_tree_parts(case: dict[str, Any]) -> None:
    assert tree_parts(case["name"]) == case["parts"]
