"""oceanctl shows a decision's reason codes and its outcome's (`ActuationFailed`) as one list, as it did when
the engine appended the outcome's code to the decision (issue 11); rows stored before keep theirs once."""

from __future__ import annotations

from typing import Any

import pytest

from oceand.ctl.main import reasons_of


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        pytest.param({"reasons": ["ScaleOut"], "outcome": {"reason": None}}, ["ScaleOut"], id="applied"),
        pytest.param(
            {"reasons": ["Manual"], "outcome": {"reason": "ActuationFailed"}},
            ["Manual", "ActuationFailed"],
            id="a failed apply: the outcome's code after the decision's",
        ),
        pytest.param(
            {"reasons": ["ScaleOut", "ActuationFailed"], "outcome": {"reason": "ActuationFailed"}},
            ["ScaleOut", "ActuationFailed"],
            id="a row stored before outcomes: once",
        ),
        pytest.param({"reasons": ["ScaleIn"]}, ["ScaleIn"], id="no outcome (an older daemon)"),
        pytest.param({}, [], id="nothing"),
    ],
)
def test_reasons_of_a_decision_row(row: dict[str, Any], expected: list[str]) -> None:
    assert reasons_of(row) == expected
