"""Builders for the policy tests: job documents from small overrides, and a bucket-by-bucket runner."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from policies.document import JobDocument, parse_job
from policies.engine import evaluate
from policies.types import Decision, JobState, Observation, Window

PERIOD = 10
T0 = 1_700_000_000  # a bucket boundary (multiple of 10 s)


def cpu_rule(
    above: float | None = 80,
    below: float | None = 60,
    consecutive: int = 3,
    step: int | str = 1,
    name: str = "cpu",
    out: dict[str, Any] | None = None,
    in_: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The seed's rule: add after `consecutive` buckets > above, remove after `consecutive` < below.
    `out` / `in_`: more keys for the scale_out / scale_in side (bands...)."""
    rule: dict[str, Any] = {"name": name, "type": "threshold", "metric": "cpu.used"}
    if above is not None:
        rule["scale_out"] = {"above": above, "consecutive": consecutive, "step": step, **(out or {})}
    if below is not None:
        rule["scale_in"] = {"below": below, "consecutive": consecutive, "step": step, **(in_ or {})}
    return rule


def qps_rule(target: float = 60, name: str = "qps", **kw: Any) -> dict[str, Any]:
    return {"name": name, "type": "target", "metric": "proc.qps", "target": target, **kw}


def job(
    rules: Sequence[dict[str, Any]] = (),
    *,
    min_instances: int = 1,
    max_instances: int = 5,
    out_cooldown: Any = 0,
    in_cooldown: Any = 0,
    behavior: dict[str, Any] | None = None,
    **over: Any,
) -> JobDocument:
    """A job document; cooldowns default to 0 here so that a test sets exactly the limits it is about."""
    beh: dict[str, Any] = {"scale_out": {"cooldown": out_cooldown}, "scale_in": {"cooldown": in_cooldown}}
    for side, extra in (behavior or {}).items():
        beh[side] = {**beh[side], **extra}
    data: dict[str, Any] = {
        "job": "web",
        "target": {"cluster": "lg", "app": "/ocean/web"},
        "mode": "active",
        "min_instances": min_instances,
        "max_instances": max_instances,
        "rules": list(rules),
        "behavior": beh,
        **over,
    }
    return parse_job(data)


Values = float | None | Mapping[str, float | None]


@dataclass
class Run:
    """The outcome of feeding buckets one by one, applying each decision (as Marathon would)."""

    decisions: list[Decision] = field(default_factory=list)
    states: list[JobState] = field(default_factory=list)

    @property
    def desired(self) -> list[int]:
        return [d.desired for d in self.decisions]

    @property
    def reasons(self) -> list[list[str]]:
        return [d.reasons for d in self.decisions]

    @property
    def codes(self) -> list[list[str]]:
        return [[lim.code for lim in d.limits] for d in self.decisions]


def obs(
    i: int,
    current: int,
    values: Values,
    *,
    ready: int | None = None,
    deployment_started_at: float | None = None,
) -> Observation:
    """Bucket number i (closing at T0 + (i + 1) × PERIOD)."""
    vals = values if isinstance(values, Mapping) else {"cpu": values}
    bucket = T0 + i * PERIOD
    return Observation(
        now=float(bucket + PERIOD),
        bucket=bucket,
        current=current,
        ready=current if ready is None else ready,
        values=dict(vals),
        reporters=current,
        deployment_started_at=deployment_started_at,
    )


def run(
    doc: JobDocument,
    values: Sequence[Values],
    start: int,
    *,
    mode: str = "active",
    state: JobState | None = None,
    windows: Sequence[Window] = (),
    apply: bool = True,
    first: int = 0,
) -> Run:
    """Evaluate consecutive buckets; with `apply` the next bucket sees the decided count."""
    out = Run()
    st = state or JobState()
    current = start
    for k, v in enumerate(values):
        d, st = evaluate(doc, obs(first + k, current, v), st, mode=mode, windows=windows)
        out.decisions.append(d)
        out.states.append(st)
        if apply:
            current = d.desired
    return out


def at(i: int) -> float:
    """The close time of bucket i."""
    return float(T0 + (i + 1) * PERIOD)
