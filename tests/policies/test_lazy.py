"""The evaluation's cheap values read as the ones they stand for (issue 11, PRODUCT §8): a target or quiet
threshold proposal keeps its inputs as a tuple and builds the dict when read (`LazyProposal`), an
Observation is a NamedTuple, and `step` sets the next JobState's slots itself."""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import pytest

from policies.engine import step
from policies.target import TargetSpec, propose_target
from policies.threshold import ThresholdSpec, propose_threshold
from policies.types import Decision, JobState, LazyProposal, Observation, Proposal, json_copy
from tests.policies.build import at, cpu_rule, job

TARGET = TargetSpec("qps", 500.0, 0.1, 0.1, 1.1 + 1e-9, 0.9 - 1e-9)
QUIET = ThresholdSpec("cpu", 80.0, 3, 1, (), 60.0, 3, 1, ())


def lazy_target() -> Proposal:
    return propose_target(TARGET, 700.0, 4, 3)


def lazy_quiet() -> Proposal:
    return propose_threshold(QUIET, 70.0, 4, None)[0]


PLAIN_TARGET = Proposal(
    "qps", "target", 5, "ScaleOut", {"value": 700.0, "target": 500.0, "ratio": 1.4, "ready": 3}
)
PLAIN_QUIET = Proposal(
    "cpu", "threshold", 4, "WithinTolerance", {"value": 70.0, "streak_out": 0, "streak_in": 0}
)

CASES: dict[str, tuple[Callable[[], Proposal], Proposal]] = {
    "target, scale-out": (lazy_target, PLAIN_TARGET),
    "threshold, within tolerance": (lazy_quiet, PLAIN_QUIET),
}

READS: dict[str, Callable[[Proposal], Any]] = {
    "inputs": lambda p: p.inputs,
    "to_json": lambda p: json.dumps(p.to_json()),
    "_asdict": lambda p: p._asdict(),
    "iteration": lambda p: list(p),
    "unpacking": lambda p: (
        lambda rule, kind, desired, reason, inputs: (rule, kind, desired, reason, inputs)
    )(*p),
    "index 4": lambda p: p[4],
    "slice": lambda p: p[1:],
    "len": len,
    "repr": repr,
    "deepcopy": copy.deepcopy,
    "copy": copy.copy,
    "pickle": lambda p: pickle.loads(pickle.dumps(p)),
    "_replace": lambda p: p._replace(kind="predictive"),
    "in a decision's JSON": lambda p: json.dumps(Decision("j", 1.0, "bucket", 4, 4, proposals=[p]).to_json()),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("read", READS)
def test_a_lazy_proposal_reads_as_the_plain_one(case: str, read: str) -> None:
    make, plain = CASES[case]
    lazy = make()
    assert isinstance(lazy, LazyProposal)
    assert READS[read](lazy) == READS[read](plain)


@pytest.mark.parametrize("case", CASES)
def test_a_lazy_proposal_equals_the_plain_one_both_ways(case: str) -> None:
    make, plain = CASES[case]
    lazy = make()
    assert lazy == plain and plain == lazy
    assert (lazy != plain, plain != lazy) == (False, False)
    assert lazy == make() and lazy != plain._replace(desired=9) and plain._replace(desired=9) != lazy
    assert lazy != plain._replace(inputs={}) and plain._replace(inputs={}) != lazy
    with pytest.raises(TypeError):
        hash(lazy)  # as a Proposal's: its inputs dict is unhashable


@pytest.mark.parametrize("case", CASES)
def test_replace_gives_a_plain_proposal_whose_inputs_can_be_changed(case: str) -> None:
    # policies/predictive.py does this with the target rule's proposal
    lazy = CASES[case][0]()
    copy_ = lazy._replace(kind="predictive")
    assert type(copy_) is Proposal
    copy_.inputs["mode"] = "target"
    assert copy_.inputs["mode"] == "target" and "mode" not in lazy.inputs


def test_each_read_of_a_lazy_proposals_inputs_is_a_new_dict() -> None:
    lazy = lazy_target()
    first = lazy.inputs
    first["value"] = -1.0
    assert lazy.inputs["value"] == 700.0 and lazy.inputs is not lazy.inputs


def test_a_decision_with_lazy_proposals_round_trips_through_json() -> None:
    d = Decision("j", 1.0, "bucket", 4, 5, 0, [lazy_quiet(), lazy_target()], [], ["ScaleOut"], "active")
    back = Decision.from_json(json.loads(json.dumps(d.to_json())))
    assert back == d and d == back and [type(p) for p in back.proposals] == [Proposal, Proposal]


def test_an_observation_is_immutable_and_keeps_its_defaults() -> None:
    o = Observation(1.0, 0, 2, 2, {"cpu": 1.0})
    assert (o.reporters, o.deployment_started_at, o.startup) == (0, None, None)
    with pytest.raises(AttributeError):
        o.current = 3  # type: ignore[misc]
    assert Observation(now=1.0, bucket=0, current=2, ready=2, values={"cpu": 1.0}) == o


@pytest.mark.parametrize("hot", [False, True], ids=["keeps the count", "changes the count"])
def test_step_sets_every_field_of_the_next_state(hot: bool) -> None:
    doc = job([cpu_rule(consecutive=1)])
    obs = Observation(at(0), int(at(0)) - 10, 2, 2, {"cpu": 95.0 if hot else 70.0})
    _, st = step(doc, JobState(), obs, at(0), mode="active")
    assert all(hasattr(st, f.name) for f in fields(JobState))
    assert JobState.from_json(st.to_json()) == st and type(st) is JobState
    assert (st.count, st.last_change_at is not None) == ((3, True) if hot else (2, False))


class Odd:
    """Not JSON-shaped: json_copy hands it to deepcopy."""

    def __init__(self) -> None:
        self.items = [1, 2]


JSON_COPY_CASES = {
    "scalars": {"a": 1, "b": 2.5, "c": "x", "d": True, "e": None},
    "nested dict and list": {"band": [1.0, 2.0], "inner": {"k": [{"deep": 1}]}},
    "tuple": {"t": (1, [2, 3])},
    "a list at the top": [1, {"a": [2]}],
    "an object of another type": {"odd": Odd()},
    "empty": {},
}


@pytest.mark.parametrize("case", JSON_COPY_CASES)
def test_json_copy_is_a_deep_copy(case: str) -> None:
    value = JSON_COPY_CASES[case]
    got = json_copy(value)
    if case == "an object of another type":
        assert got["odd"] is not value["odd"] and got["odd"].items == value["odd"].items
        return
    assert got == copy.deepcopy(value) and type(got) is type(value)

    def containers(v: Any) -> list[int]:
        if isinstance(v, dict):
            return [id(v), *(i for x in v.values() for i in containers(x))]
        if isinstance(v, list | tuple):
            return [id(v), *(i for x in v for i in containers(x))]
        return []

    assert not set(containers(got)) & set(containers(value))  # no container shared with the original


def test_a_proposals_json_does_not_share_its_inputs() -> None:
    inputs: dict[str, Any] = {"value": 1.0, "band": [1, 2]}
    p = Proposal("cpu", "threshold", 2, "ScaleOut", inputs)
    out = p.to_json()
    assert out == {"rule": "cpu", "kind": "threshold", "desired": 2, "reason": "ScaleOut", "inputs": inputs}
    out["inputs"]["band"].append(3)
    assert inputs["band"] == [1, 2]
    assert list(out) == list(p._asdict())  # the fields in their order
