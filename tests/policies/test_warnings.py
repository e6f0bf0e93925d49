"""Validation warnings (issue 17): documents that pass validation but cannot work as written. Each is
returned with the 201/200 of a create or replace, shown by the job status and oceanctl."""

from __future__ import annotations

from typing import Any

import pytest

from policies.document import parse_job
from policies.warnings import document_warnings


def doc(*rules: dict[str, Any], **over: Any) -> dict[str, Any]:
    d = {"job": "web", "target": {"cluster": "lg", "app": "/web"}, "max_instances": 10, "rules": list(rules)}
    d.update(over)
    return d


def target(metric: str = "cpu.used", value: float = 70, **kw: Any) -> dict[str, Any]:
    return {"name": "t", "type": "target", "metric": metric, "target": value, **kw}


def predictive(metric: str = "proc.qps", value: float = 70, **kw: Any) -> dict[str, Any]:
    return {"name": "p", "type": "predictive", "metric": metric, "target": value, **kw}


def threshold(metric: str = "cpu.used", above: float | None = 80, below: float | None = 30, **kw: Any) -> dict[str, Any]:  # fmt: skip
    r: dict[str, Any] = {"name": "th", "type": "threshold", "metric": metric, **kw}
    if above is not None:
        r["scale_out"] = {"above": above}
    if below is not None:
        r["scale_in"] = {"below": below}
    return r


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        pytest.param(doc(target()), [], id="target cpu.used 70: fine"),
        pytest.param(doc(target(value=95)), [("rules[0].target", "never_scales_out")],
                     id="target cpu.used 95: 100/95 stays within the 10% tolerance"),
        pytest.param(doc(target(value=80, tolerance_out=0.25)), [("rules[0].target", "never_scales_out")],
                     id="target 80 tolerance_out 0.25: 100/80 is the band's edge, within it"),
        pytest.param(doc(target(value=91)), [("rules[0].target", "never_scales_out")],
                     id="target cpu.used 91: 100/91 < 1.1"),
        pytest.param(doc(target(value=90)), [], id="target cpu.used 90: 100/90 leaves the band"),
        pytest.param(doc(target(value=80, tolerance_out=0.3)), [("rules[0].target", "never_scales_out")],
                     id="target 80 with tolerance_out 0.3"),
        pytest.param(doc(target("mem.used.percent", 95)), [("rules[0].target", "never_scales_out")],
                     id="target mem.used.percent 95"),
        pytest.param(doc(target("cpu.used", 150)), [("rules[0].target", "never_scales_out")],
                     id="target above the cap"),
        pytest.param(doc(target("cpu.used", 95, aggregate="sum")), [],
                     id="a sum of percentages is not capped at 100"),
        pytest.param(doc(target("proc.qps", 5000)), [], id="uncapped metric: any target"),
        pytest.param(doc(target("cpu.idle", 30)), [("rules[0].metric", "inverse_metric")],
                     id="target on cpu.idle: it falls as the load rises"),
        pytest.param(doc(predictive("cpu.idle", 30)), [("rules[0].metric", "inverse_metric")],
                     id="predictive on cpu.idle"),
        pytest.param(doc(predictive()), [], id="predictive proc.qps: fine"),
        pytest.param(doc(predictive("cpu.used", 60)), [("rules[0].metric", "capped_load")],
                     id="predictive on cpu.used: cannot see the load above capacity"),
        pytest.param(doc(predictive("cpu.used", 95)),
                     [("rules[0].metric", "capped_load"), ("rules[0].target", "never_scales_out")],
                     id="predictive on cpu.used 95: never scales out"),
        pytest.param(doc(threshold()), [], id="threshold 80/30: fine"),
        pytest.param(doc(threshold(above=100)), [("rules[0].scale_out.above", "never_scales_out")],
                     id="threshold above 100 on a percentage never fires (strictly above)"),
        pytest.param(doc(threshold(above=100, below=None, aggregate="sum")), [],
                     id="threshold on a sum of percentages"),
        pytest.param(doc(threshold(below=0)), [("rules[0].scale_in.below", "never_scales_in")],
                     id="threshold below 0 on a percentage never fires (strictly below)"),
        pytest.param(doc(threshold("proc.qps", above=500, below=0)),
                     [("rules[0].scale_in.below", "never_scales_in")], id="no metric goes below 0"),
        pytest.param(doc(threshold(above=None, below=None, scale_out={"above": 90, "bands": [{"above": 100, "step": 3}]})),
                     [("rules[0].scale_out.bands[0].above", "unreachable_band")], id="a band above 100"),
        pytest.param(doc(target(), min_instances=3, max_instances=3), [("max_instances", "fixed_count")],
                     id="min = max: the metric rules cannot change the count"),
        pytest.param(doc({"name": "s", "type": "schedule", "cron": "0 9 * * *", "instances": 3},
                         min_instances=3, max_instances=3), [],
                     id="min = max without metric rules: nothing to say"),
        pytest.param(doc(target(value=95), target("cpu.idle", 30, name="t2")),
                     [("rules[0].target", "never_scales_out"), ("rules[1].metric", "inverse_metric")],
                     id="every problem, in rule order"),
    ],
)  # fmt: skip
def test_warnings(document: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    got = document_warnings(parse_job(document))
    assert [(w["path"], w["code"]) for w in got] == expected
    for w in got:
        assert w["message"].startswith(w["path"] + ": ") and len(w["message"]) > len(w["path"]) + 20
