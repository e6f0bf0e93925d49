"""Warm start: a job's state filled from past bucket values (PRODUCT §9 "Warm start"; pure).

What a restart, or a new job, can take from the load's past (Falcon's graph history, oceand/warm.py) and
what it may not:

- **predictive** rules learn their load history (level, trend, the slot means that show a daily or
  weekly cycle, and their own forecast errors: the margin) from the past buckets exactly as they would
  have live: each past bucket is one `policies.predictive.observe`, in time order, with load = value ×
  the endpoints that reported (the ready count of the past is not known; one endpoint is one instance),
  or the value itself for `sum`. Only a rule whose state is empty is warmed: a state the store kept
  (a restart) or one the live buckets already started is never overwritten.
- **threshold** streaks are not invented: a streak counts buckets the daemon closed and judged, with its
  instance count at the time; a breach seen in averaged graph data never made a decision. A restart
  keeps its streaks from the store; a new job starts its streaks at zero.
- **target** rules keep no state: the first live bucket is all they need.
- the stabilization window, cooldowns and alarm times are decisions' records: never from history.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

from policies.document import JobDocument, PredictiveRule
from policies.predictive import DEFAULT_LEAD, EMPTY, PredictiveSpec, observe
from policies.types import JobState

BucketValue = tuple[int, float | None, int]  # (bucket start, the rule's value, endpoints that reported)


def warm_rules(doc: JobDocument, state: JobState) -> list[PredictiveRule]:
    """The rules of `doc` a warm start would fill: predictive rules whose state is still empty."""
    out = []
    for rule in doc.metric_rules():
        if isinstance(rule, PredictiveRule):
            st = state.predictive.get(rule.name)
            if st is None or st.t is None:
                out.append(rule)
    return out


def warm_state(
    doc: JobDocument,
    state: JobState,
    history: Mapping[str, Sequence[BucketValue]],
    lead: float | None = None,
) -> tuple[JobState, dict[str, int]]:
    """The job's state with every rule of `warm_rules` that has history fed that history (buckets with a
    value, in time order, each observed at its bucket's end), and how many buckets each rule took.
    `lead`: the start-up time the daemon knows for the app (the rule's own `startup` comes first)."""
    taken: dict[str, int] = {}
    predictive = dict(state.predictive)
    period = int(doc.period)
    for rule in warm_rules(doc, state):
        rows = sorted(r for r in history.get(rule.name, ()) if r[1] is not None and math.isfinite(r[1]))
        if not rows:
            continue
        spec = PredictiveSpec.of(rule)
        lead_s = spec.startup if spec.startup is not None else (lead if lead is not None else DEFAULT_LEAD)
        st = EMPTY
        for start, value, reporters in rows:
            assert value is not None
            load = value if spec.is_sum else value * max(1, reporters)
            st, _ = observe(spec, st, load, float(start + period), lead_s)
        predictive[rule.name] = st
        taken[rule.name] = len(rows)
    if not taken:
        return state, taken
    return replace(state, predictive=predictive), taken
