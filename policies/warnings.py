"""Validation warnings (issue 17): a job document that passes validation but cannot work as written.

`document_warnings(doc)` returns, in rule order, one `{"path", "code", "message"}` per problem; the admin
API returns them with the 201/200 of a create or replace (`warnings`), the job status shows them, and
oceanctl prints them. A warning never refuses a document: it may be what the operator wants (a threshold
rule kept for its scale-in side only, a job held at a fixed count for now).

Codes:
- `never_scales_out`: the metric is a percentage capped at 100 per instance (`cpu.used`,
  `mem.used.percent`, the Falcon agent's `*.percent`, `cpu.busy`, `disk.io.util`) and the rule cannot
  see a value that makes it scale out: a target rule (or a predictive rule's target floor) whose
  `100 / target` stays within `1 + tolerance_out`, a threshold whose `scale_out.above` is ≥ 100.
- `unreachable_band`: a scale-out band above that cap.
- `never_scales_in`: a threshold whose `scale_in.below` is ≤ 0 (no metric here goes below 0).
- `inverse_metric`: a target or predictive rule on a metric that falls as the load rises (`cpu.idle`,
  `mem.memfree.percent`): it would scale in under load.
- `capped_load`: a predictive rule on a capped percentage: the load it forecasts (value × ready) cannot
  exceed 100 × ready, so it never sees how far the load is above the capacity.
- `fixed_count`: `min_instances` = `max_instances` with metric rules: they cannot change the count.

A `sum` aggregate of a percentage is not capped (it grows with the instances), so the cap checks skip it.
Pure: reads the document only.
"""

from __future__ import annotations

from policies.document import JobDocument, PredictiveRule, TargetRule, ThresholdRule
from policies.target import tolerances

CAP = 100.0
# percentages per instance, capped at 100 (the daemon's derived names and the Falcon agent's own)
CAPPED_METRICS = frozenset(
    {
        "cpu.used",
        "cpu.busy",
        "mem.used.percent",
        "mem.memused.percent",
        "disk.io.util",
        "df.bytes.used.percent",
        "df.inodes.used.percent",
    }
)
# metrics that fall as the load rises
INVERSE_METRICS = frozenset({"cpu.idle", "mem.memfree.percent", "df.bytes.free.percent"})

Warning = dict[str, str]


def _w(path: str, code: str, text: str) -> Warning:
    return {"path": path, "code": code, "message": f"{path}: {text}"}


def document_warnings(doc: JobDocument) -> list[Warning]:
    out: list[Warning] = []
    for i, rule in enumerate(doc.rules):
        at = f"rules[{i}]"
        if not isinstance(rule, TargetRule | PredictiveRule | ThresholdRule):
            continue
        capped = rule.metric in CAPPED_METRICS and rule.aggregate != "sum"
        if isinstance(rule, ThresholdRule):
            out.extend(_threshold(rule, at, capped))
            continue
        if rule.metric in INVERSE_METRICS:
            out.append(_w(f"{at}.metric", "inverse_metric",
                          f"{rule.metric} falls as the load rises, so a {rule.type} rule on it scales in under "
                          "load; use the metric that rises with it (cpu.used for cpu.idle, mem.used.percent "
                          "for mem.memfree.percent)"))  # fmt: skip
            continue
        if not capped:
            continue
        if isinstance(rule, PredictiveRule):
            out.append(_w(f"{at}.metric", "capped_load",
                          f"{rule.metric} is capped at {CAP:g} per instance, so the load the rule forecasts "
                          "(value × ready) never shows how far the load is above the capacity; forecast a "
                          "load metric that is not capped (proc.qps, alb.qps, a request rate)"))  # fmt: skip
            t_out = rule.tolerance
        else:
            t_out = tolerances(rule)[0]
        if CAP / rule.target <= 1 + t_out:
            out.append(_w(f"{at}.target", "never_scales_out",
                          f"{rule.metric} is at most {CAP:g}, so value / target is at most "
                          f"{CAP / rule.target:.3g}, within the tolerance band (up to {1 + t_out:g}): the "
                          f"rule never scales out; use a target below {CAP / (1 + t_out):.4g}"))  # fmt: skip
    if doc.min_instances == doc.max_instances and doc.metric_rules():
        out.append(_w("max_instances", "fixed_count",
                      f"min_instances = max_instances = {doc.max_instances}: the metric rules cannot change "
                      "the count (only schedules with min/max overrides can)"))  # fmt: skip
    return out


def _threshold(rule: ThresholdRule, at: str, capped: bool) -> list[Warning]:
    out: list[Warning] = []
    if capped and rule.scale_out is not None:
        if rule.scale_out.above >= CAP:
            out.append(_w(f"{at}.scale_out.above", "never_scales_out",
                          f"{rule.metric} is at most {CAP:g} and the rule scales out only strictly above "
                          f"{rule.scale_out.above:g}: it never does"))  # fmt: skip
        for j, band in enumerate(rule.scale_out.bands):
            if band.above is not None and band.above >= CAP and rule.scale_out.above < CAP:
                out.append(_w(f"{at}.scale_out.bands[{j}].above", "unreachable_band",
                              f"{rule.metric} is at most {CAP:g}: a band above {band.above:g} is never "
                              "reached"))  # fmt: skip
    if rule.scale_in is not None and rule.scale_in.below <= 0:
        out.append(_w(f"{at}.scale_in.below", "never_scales_in",
                      f"the rule scales in only strictly below {rule.scale_in.below:g}, and {rule.metric} "
                      "is never negative: it never does"))  # fmt: skip
    return out
