"""A decision cannot change once made; its actuation outcome is a record of its own, from which the API's
`status` / `result` (as they always were) and the `ActuationFailed` reason are derived (issue 11)."""

from __future__ import annotations

from typing import Any

import pytest

from policies.types import (
    ACTUATION_FAILED,
    ActuationOutcome,
    ActuationState,
    Decision,
    Limit,
    Proposal,
)

DECISION = Decision(
    "web",
    1_800_000_000.5,
    "bucket",
    2,
    3,
    1_800_000_000,
    [Proposal("cpu", "threshold", 3, "ScaleOut", {"value": 91.0})],
    [Limit("MaxStep", 5, 3, "max_step=1")],
    ["ScaleOut", "MaxStep"],
    "active",
    17,
)


@pytest.mark.parametrize("name", Decision._fields)
def test_no_field_of_a_decision_can_be_assigned(name: str) -> None:
    with pytest.raises(AttributeError):
        setattr(DECISION, name, None)
    assert Decision.from_json(DECISION.to_json()) == DECISION


def test_a_decision_built_with_its_defaults_round_trips_and_leaves_the_defaults_empty() -> None:
    paused = Decision("web", 1.0, "alarm", 2, 2, reasons=["Paused"], mode="paused")
    assert Decision.from_json(paused.to_json()) == paused and paused.proposals == []
    assert Decision._field_defaults["proposals"] == Decision._field_defaults["limits"] == []


def test_a_decision_has_no_outcome_fields_and_its_id_is_given_by_a_copy() -> None:
    assert not {"status", "result", "outcome"} & set(Decision._fields)
    stored = DECISION._replace(id=18)
    assert (stored.id, DECISION.id) == (18, 17) and stored._replace(id=17) == DECISION
    # an API view read back is the decision as it was made: its status, result and outcome are left out
    view = ActuationOutcome("applied").view(DECISION.to_json())
    assert Decision.from_json(view) == DECISION


@pytest.mark.parametrize(
    ("outcome", "status", "result", "reason"),
    [
        pytest.param(ActuationOutcome(), "none", {}, None, id="nothing to apply"),
        pytest.param(
            ActuationOutcome("dry-run", detail={"note": "no cluster"}),
            "dry-run",
            {"note": "no cluster"},
            None,
            id="dry-run with its note",
        ),
        pytest.param(
            ActuationOutcome("applied", "d-1", "v1", 12.5, attempts=1, tries=1, detail={"url": "http://m"}),
            "applied",
            {
                "url": "http://m",
                "deployment_id": "d-1",
                "version": "v1",
                "latency_ms": 12.5,
                "tries": 1,
                "attempts": 1,
            },
            None,
            id="applied: deployment, version, latency",
        ),
        pytest.param(
            ActuationOutcome(
                "pending", error="503", tries=2, attempts=2, retry_at=30.0, detail={"unknown": True}
            ),
            "pending",
            {"unknown": True, "error": "503", "retry_at": 30.0, "tries": 2, "attempts": 2},
            ACTUATION_FAILED,
            id="a retry pending after a transient failure",
        ),
        pytest.param(
            ActuationOutcome("failed", error="Marathon answered 403", tries=1, detail={"status": 403}),
            "failed",
            {"status": 403, "error": "Marathon answered 403", "tries": 1, "attempts": 0},
            ACTUATION_FAILED,
            id="refused: the job is blocked",
        ),
        pytest.param(
            ActuationOutcome("failed", error="blocked by 403", detail={"blocked": True}),
            "failed",
            {"blocked": True, "error": "blocked by 403"},
            ACTUATION_FAILED,
            id="not sent: the job is blocked",
        ),
        pytest.param(
            ActuationOutcome("superseded", error="503", tries=1, attempts=1, superseded_by=9),
            "failed",
            {"error": "503", "superseded_by": 9, "tries": 1, "attempts": 1},
            ACTUATION_FAILED,
            id="superseded while retrying",
        ),
        pytest.param(
            ActuationOutcome(
                "failed", tries=1, detail={"stale": "not sent: the app has 4 now", "observed": 4}
            ),
            "failed",
            {"stale": "not sent: the app has 4 now", "observed": 4, "tries": 1, "attempts": 0},
            None,
            id="stale: dropped, nothing failed",
        ),
    ],
)
def test_the_api_view_derives_status_result_and_reason_from_the_outcome(
    outcome: ActuationOutcome, status: str, result: dict[str, Any], reason: str | None
) -> None:
    view = outcome.view(DECISION.to_json())
    assert (view["status"], view["result"], view["outcome"]["reason"]) == (status, result, reason)
    assert {k: v for k, v in view.items() if k not in ("status", "result", "outcome")} == DECISION.to_json()
    assert view["reasons"] == ["ScaleOut", "MaxStep"]  # never the outcome's reason
    assert ActuationOutcome.from_json(view["outcome"]) == outcome


@pytest.mark.parametrize(
    "state",
    [
        pytest.param(ActuationState(), id="nothing"),
        pytest.param(ActuationState(retry=7, retry_at=30.0), id="a retry"),
        pytest.param(ActuationState(blocked="403", blocked_version=2, blocked_by=7), id="a block"),
    ],
)
def test_actuation_state_round_trips(state: ActuationState) -> None:
    assert ActuationState.from_json(state.to_json()) == state
    assert None not in state.to_json().values()  # only what is set is written
