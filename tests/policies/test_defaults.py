"""HPA-grade defaults (issue 17): a job with a target (or predictive) rule gets a 5-minute scale-in
stabilization window unless its document sets `behavior.scale_in.stabilization`; others keep 0."""

from __future__ import annotations

from typing import Any

import pytest

from policies.behavior import Limits
from policies.document import dump_job
from policies.types import SCALE_IN, STABILIZED
from tests.policies.build import cpu_rule, job, qps_rule, run

ALARM = {"name": "falcon", "type": "alarm", "match": {"stra_id": 1}}


@pytest.mark.parametrize(
    ("rules", "behavior", "in_window", "out_window", "default"),
    [
        pytest.param([qps_rule()], None, 300.0, 0.0, True, id="target rule, silent document: 5 min"),
        pytest.param([cpu_rule(), qps_rule()], None, 300.0, 0.0, True, id="threshold + target: 5 min"),
        pytest.param([cpu_rule()], None, 0.0, 0.0, False, id="threshold only: 0 as before"),
        pytest.param([ALARM], None, 0.0, 0.0, False, id="alarm only: 0"),
        pytest.param([], None, 0.0, 0.0, False, id="no rules: 0"),
        pytest.param([qps_rule()], {"scale_in": {"stabilization": 0}}, 0.0, 0.0, False, id="target, says 0: 0"),
        pytest.param([qps_rule()], {"scale_in": {"stabilization": "1m"}}, 60.0, 0.0, False, id="target, says 1m"),
        pytest.param([cpu_rule()], {"scale_in": {"stabilization": "2m"}}, 120.0, 0.0, False, id="threshold, says 2m"),
        pytest.param([qps_rule()], {"scale_out": {"stabilization": "30s"}}, 300.0, 30.0, True, id="out side set, in default"),
    ],
)  # fmt: skip
def test_default_scale_in_stabilization(
    rules: list[dict[str, Any]],
    behavior: dict[str, Any] | None,
    in_window: float,
    out_window: float,
    default: bool,
) -> None:
    lim = Limits.of(job(rules, behavior=behavior))
    assert (lim.in_window, lim.out_window, lim.in_window_default) == (in_window, out_window, default)


def test_a_silent_document_stores_no_window() -> None:
    """The default is not written into the document: it follows the rules when they change."""
    assert dump_job(job([qps_rule()]))["behavior"]["scale_in"] == {"cooldown": 0.0}


@pytest.mark.parametrize(
    ("behavior", "desired", "codes"),
    [
        pytest.param(None, [5, 5, 5], [[], [STABILIZED], []], id="default: one quiet bucket is held"),
        pytest.param({"scale_in": {"stabilization": 0}}, [5, 2, 2], [[], [], []], id="stabilization 0: drops at once"),
    ],
)  # fmt: skip
def test_one_quiet_bucket_does_not_collapse_a_target_job(
    behavior: dict[str, Any] | None, desired: list[int], codes: list[list[str]]
) -> None:
    doc = job([qps_rule(target=60)], behavior=behavior)
    r = run(doc, [{"qps": 60}, {"qps": 20}, {"qps": 60}], 5)  # one quiet bucket, then back at target
    assert r.desired == desired
    assert r.codes == codes
    if behavior is None:
        d = r.decisions[1]
        assert d.proposals[0].reason == SCALE_IN and d.reasons == [SCALE_IN, STABILIZED]
        assert "default 5m" in d.limits[0].detail


def test_the_default_window_lets_go_after_5_minutes() -> None:
    doc = job([qps_rule(target=60)])
    r = run(doc, [{"qps": 60}] + [{"qps": 20}] * 31, 5)  # 10 s buckets
    assert r.desired[:30] == [5] * 30  # the 5 proposed at bucket 0 is in the window until 300 s later
    assert r.desired[30] == 2
