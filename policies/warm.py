"""Warm start: a job's state filled from past bucket values (PRODUCT §9 "Warm start"; pure).

What a restart, or a new job, can take from the load's past (Falcon's graph history, oceand/warm.py) and
what it may not:

- **predictive** rules learn their load history (level, the slot means that show a daily, hourly or
  weekly cycle, and their own forecast errors: the margin) from the past buckets exactly as they would
  have live: each past bucket goes through the rule itself (`policies.predictive.propose_predictive`,
  its proposal dropped), in time order, with the instances that reported as the ready count of the
  past (not known otherwise; one endpoint is one instance, or one value of the job's `instance_tag`), so
  load = value × reporters, or the value itself for `sum`. Only a rule whose state is empty is warmed: a state the store kept
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
from policies.predictive import EMPTY, PredictiveSpec, propose_predictive
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
        spec = PredictiveSpec.of(rule, doc.job)
        st = EMPTY
        for start, value, reporters in rows:
            ready = max(1, reporters)
            _, st = propose_predictive(spec, value, ready, ready, float(start + period), lead, st)
        predictive[rule.name] = st
        taken[rule.name] = len(rows)
    if not taken:
        return state, taken
    return replace(state, predictive=predictive), taken
