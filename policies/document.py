"""The job document (PRODUCT §3): one pydantic model per part, strict (unknown fields are errors).

Pure: no I/O. The admin API, the config loader and replay all validate through `parse_job`, and the
OpenAPI description takes its schema from `JobDocument.model_json_schema()`.

Durations are stored as float seconds; they accept a number of seconds or "30s", "5m", "2h", "1d".
"""

from __future__ import annotations

import math
import re
import zoneinfo
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from policies.crontab import validate_schedule
from policies.fields import did_you_mean

# Job names. A new document's name starts with a letter, digit or '_' and goes on with letters, digits,
# '.', '_' and '-' (at most 200 characters): never '.', '..', a hidden file name or an option-like '-x',
# never a '/', a NUL or a newline, so it is safe as a URL path segment and as a file name (docs/policy.md).
JOB_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$"
# Any name a store may hold: the grammar of earlier versions, which also let '.', '..', '.x' and '-x'
# through. Jobs stored under such names still load and can be read and deleted; none can be created.
STORED_JOB_NAME_PATTERN = r"^[A-Za-z0-9._-]{1,200}$"
JOB_NAME_RE = re.compile(STORED_JOB_NAME_PATTERN.removesuffix("$") + r"\Z")  # \Z: no trailing newline
_NEW_JOB_NAME_RE = re.compile(JOB_NAME_PATTERN.removesuffix("$") + r"\Z")
RULE_NAME_RE = r"^[A-Za-z0-9._-]{1,64}$"
# Marathon strings.PathId: absolute path of segments [a-z0-9.-], not starting/ending with '-'.
APP_ID_RE = r"^(/[a-z0-9]([a-z0-9.-]*[a-z0-9])?)+$"

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """'30s' / '5m' / '2h' / '1d' / '250ms' / a number of seconds -> float seconds (>= 0)."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '30s', '5m', '2h', '1d'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION_RE.match(value)
        if not m:
            raise ValueError(
                f"invalid duration {value!r}: use a number of seconds or '30s', '5m', '2h', '1d'"
            )
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError("a duration is a number of seconds or a string like '30s', '5m', '2h', '1d'")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a duration must be a finite number of seconds >= 0")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]

# Bounds on what one document may hold (docs/policy.md, "Bounds"). Input beyond them is refused with the
# field's path; a document stored by an earlier version is still read (see `parse_job`).
MIN_EVERY = 1.0  # seconds between a schedule's fires, at least
MAX_MATCH_CHARS = 255  # characters in an alarm match string, a match or selector tag key or value
MAX_TAGS = 32  # tags in an alarm match or a selector

_INPUT = {"input": True}  # the validation context of `parse_job`: a document given now, not one stored


def _is_input(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and bool(info.context.get("input"))


def _shorten(text: str, n: int = 40) -> str:
    r = repr(text)
    return r if len(r) <= n else r[: n - 4] + "...'"


def _bound(name: str, message: str) -> PydanticCustomError:
    """An error at one of the document bounds; `parse_job` lists `name` in DocumentError.bounds."""
    return PydanticCustomError(f"bound_{name}", message.replace("{", "{{").replace("}", "}}"))


def _cap_string(v: str, info: ValidationInfo) -> str:
    if len(v) > MAX_MATCH_CHARS and _is_input(info):
        raise _bound("string_length", f"at most {MAX_MATCH_CHARS} characters (got {len(v)})")
    return v


MatchString = Annotated[
    str, AfterValidator(_cap_string), Field(json_schema_extra={"maxLength": MAX_MATCH_CHARS})
]


def _cap_tags(v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
    if not _is_input(info):
        return v
    if len(v) > MAX_TAGS:
        raise _bound("tag_count", f"{len(v)} tags: at most {MAX_TAGS}")
    for k, val in v.items():
        for what, text in (("key", k), ("value", val)):
            if len(text) > MAX_MATCH_CHARS:
                raise _bound(
                    "string_length",
                    f"tag {what} {_shorten(text)} has {len(text)} characters: at most {MAX_MATCH_CHARS}",
                )
    return v


Tags = Annotated[
    dict[str, str],
    AfterValidator(_cap_tags),
    Field(
        json_schema_extra={
            "maxProperties": MAX_TAGS,
            "propertyNames": {"minLength": 1, "maxLength": MAX_MATCH_CHARS},
            "additionalProperties": {"type": "string", "maxLength": MAX_MATCH_CHARS},
        }
    ),
]
Aggregate = Literal["avg", "max", "min", "sum", "p50", "p90", "p99"]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _parse_step(value: Any) -> int | str:
    if isinstance(value, bool):
        raise ValueError("step is a count (>= 1) or a percentage string like '50%'")
    if isinstance(value, int):
        if value < 1:
            raise ValueError("step must be >= 1")
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", value)
        if m and 0 < float(m.group(1)) <= 1000:
            return f"{float(m.group(1)):g}%"
        if value.strip().isdigit() and int(value) >= 1:
            return int(value)
    raise ValueError("step is a count (>= 1) or a percentage string like '50%' (0 < p <= 1000)")


Step = Annotated[int | str, BeforeValidator(_parse_step)]


def step_count(step: int | str, current: int) -> int:
    """A step as a count of instances for a job now at `current`: percentages round up, at least 1."""
    if isinstance(step, int):
        return step
    pct = float(step.rstrip("%"))
    return max(1, math.ceil(current * pct / 100.0 - 1e-9))


class Target(Strict):
    cluster: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    app: str = Field(min_length=2, max_length=512, pattern=APP_ID_RE)
    force: bool = False


class Selector(Strict):
    """Which samples feed a rule. Default: the tag job=<job name>."""

    tags: Tags = Field(default_factory=dict)
    endpoint: str | None = Field(default=None, min_length=1, max_length=255)
    tasks: bool = Field(
        default=False,
        description="Match samples whose endpoint is the host name or an IP address of one of the job's "
        "current Marathon tasks (falcon-agent's own metrics, which carry no job tag)",
    )

    @field_validator("tags")
    @classmethod
    def _tags_ok(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            if not k or any(c in k for c in ",= ") or any(c in val for c in ", "):
                raise ValueError(
                    f"tag {k!r}={val!r}: keys and values may not be empty or hold ',', '=' or spaces"
                )
        return v


class Band(Strict):
    above: FiniteFloat | None = None
    below: FiniteFloat | None = None
    step: Step

    @model_validator(mode="after")
    def _one_edge(self) -> Band:
        if (self.above is None) == (self.below is None):
            raise ValueError("a band has exactly one of 'above' or 'below'")
        return self


class ScaleOutSide(Strict):
    above: FiniteFloat
    consecutive: int = Field(default=1, ge=1, le=1000)
    step: Step = 1
    bands: list[Band] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _bands(self) -> ScaleOutSide:
        for i, b in enumerate(self.bands):
            if b.above is None:
                raise ValueError(f"bands[{i}]: scale_out bands use 'above'")
            if b.above <= self.above:
                raise ValueError(f"bands[{i}].above must be > scale_out.above ({self.above:g})")
        return self


class ScaleInSide(Strict):
    below: FiniteFloat
    consecutive: int = Field(default=1, ge=1, le=1000)
    step: Step = 1
    bands: list[Band] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _bands(self) -> ScaleInSide:
        for i, b in enumerate(self.bands):
            if b.below is None:
                raise ValueError(f"bands[{i}]: scale_in bands use 'below'")
            if b.below >= self.below:
                raise ValueError(f"bands[{i}].below must be < scale_in.below ({self.below:g})")
        return self


class RuleBase(Strict):
    name: str = Field(pattern=RULE_NAME_RE)


class MetricRule(RuleBase):
    metric: str = Field(min_length=1, max_length=255)
    aggregate: Aggregate = "avg"
    selector: Selector | None = None


class ThresholdRule(MetricRule):
    type: Literal["threshold"]
    scale_out: ScaleOutSide | None = None
    scale_in: ScaleInSide | None = None

    @model_validator(mode="after")
    def _sides(self) -> ThresholdRule:
        if self.scale_out is None and self.scale_in is None:
            raise ValueError("a threshold rule needs scale_out, scale_in or both")
        if (
            self.scale_out is not None
            and self.scale_in is not None
            and self.scale_in.below > self.scale_out.above
        ):
            raise ValueError("scale_in.below must be <= scale_out.above (otherwise the rule flaps)")
        return self


class TargetRule(MetricRule):
    type: Literal["target"]
    target: FiniteFloat = Field(gt=0)
    tolerance: FiniteFloat = Field(default=0.1, ge=0, lt=1)
    tolerance_out: FiniteFloat | None = Field(default=None, ge=0, lt=1)
    tolerance_in: FiniteFloat | None = Field(default=None, ge=0, lt=1)


class PredictiveRule(MetricRule):
    """PRODUCT §14: forecast the load from the rule's own history and scale ahead of it by the start-up
    time (policies/predictive.py has the method)."""

    type: Literal["predictive"]
    target: FiniteFloat = Field(gt=0, description="the load one instance should carry (per-instance units)")
    tolerance: FiniteFloat = Field(
        default=0.1, ge=0, lt=1, description="scale-in only below (1 - tolerance) x the current capacity"
    )
    startup: Duration | None = Field(
        default=None,
        description="the lead: how far ahead to forecast (launch to healthy); default the app's start-up "
        "time as the daemon knows it, else 60s",
        json_schema_extra={"maximum": 86400},
    )
    season: Literal["auto", "1d", "7d", "off"] = Field(
        default="auto", description="the cycle to follow: detected (auto), daily, weekly, or none"
    )
    quantile: FiniteFloat = Field(
        default=0.9,
        gt=0,
        lt=1,
        description="the margin is this quantile of the rule's recent forecast errors",
    )

    @field_validator("startup")
    @classmethod
    def _startup(cls, v: float | None) -> float | None:
        if v is not None and v > 86400:
            raise ValueError("startup must be at most 1d")
        return v


class AlarmMatch(Strict):
    stra_id: int | None = Field(default=None, ge=1)
    exp_id: int | None = Field(default=None, ge=1)
    metric: MatchString | None = Field(default=None, min_length=1)
    tags: Tags = Field(default_factory=dict)
    endpoint: MatchString | None = None

    @model_validator(mode="after")
    def _something(self) -> AlarmMatch:
        if self.stra_id is None and self.exp_id is None and self.metric is None:
            raise ValueError("match needs stra_id, exp_id or metric (with optional tags)")
        return self


class AlarmRule(RuleBase):
    type: Literal["alarm"]
    match: AlarmMatch
    step: Step = 1
    step_in: Step | None = None


class ScheduleRule(RuleBase):
    type: Literal["schedule"]
    start: str | None = None
    every: Duration | None = Field(default=None, json_schema_extra={"minimum": MIN_EVERY})
    cron: str | None = None
    timezone: str | None = None
    instances: int | None = Field(default=None, ge=0, le=100000)
    duration: Duration | None = None
    min_instances: int | None = Field(default=None, ge=0, le=100000)
    max_instances: int | None = Field(default=None, ge=0, le=100000)
    misfire_grace: Duration = 300.0

    @field_validator("every")
    @classmethod
    def _every(cls, v: float | None, info: ValidationInfo) -> float | None:
        if v is None or v >= MIN_EVERY:
            return v
        if _is_input(info):
            raise _bound(
                "schedule_every",
                f"every must be at least {MIN_EVERY:g}s (got {v:g}s): fires come at most once a second",
            )
        return MIN_EVERY if v > 0 else v  # stored by an earlier version: fires at most once a second

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name such as 'Asia/Shanghai')") from None
        return v

    @model_validator(mode="after")
    def _form(self) -> ScheduleRule:
        # Fire-time syntax (cron fields, start format) is checked by policies.crontab.validate_schedule,
        # called from JobDocument below so that errors carry this rule's path.
        if (self.cron is None) == (self.start is None or self.every is None):
            if self.cron is not None:
                raise ValueError("use either cron, or start + every, not both")
            raise ValueError("a schedule needs cron, or start + every")
        if self.every is not None and self.every <= 0:
            raise ValueError("every must be > 0")
        if self.duration is None:
            if self.instances is None:
                raise ValueError("a schedule without duration needs instances")
            if self.min_instances is not None or self.max_instances is not None:
                raise ValueError("min_instances / max_instances overrides need a duration")
        else:
            if self.duration <= 0:
                raise ValueError("duration must be > 0")
            if self.min_instances is None and self.max_instances is None:
                raise ValueError("a schedule with duration needs min_instances and/or max_instances")
            if (
                self.min_instances is not None
                and self.max_instances is not None
                and self.min_instances > self.max_instances
            ):
                raise ValueError("min_instances must be <= max_instances")
        return self


Rule = Annotated[
    ThresholdRule | TargetRule | PredictiveRule | AlarmRule | ScheduleRule, Field(discriminator="type")
]


class SideBehavior(Strict):
    cooldown: Duration | None = None
    max_step: int | None = Field(default=None, ge=1, le=100000)
    # None: the default (`Behavior.in_stabilization` / `out_stabilization`), which depends on the rules
    stabilization: Duration | None = None


class Behavior(Strict):
    scale_out: SideBehavior = SideBehavior()
    scale_in: SideBehavior = SideBehavior()

    # Defaults an operator expects when the document is silent (docs/policy.md); constants, not fields.
    DEFAULT_OUT_COOLDOWN: ClassVar[float] = 30.0
    DEFAULT_IN_COOLDOWN: ClassVar[float] = 300.0
    # Scale-in stabilization of a job with a target or predictive rule (Kubernetes HPA's default): such a
    # rule proposes ceil(load / target) every bucket, so without a window one quiet bucket drops the job.
    DEFAULT_IN_STABILIZATION: ClassVar[float] = 300.0

    @model_validator(mode="before")
    @classmethod
    def _stored_constants(cls, data: Any, info: ValidationInfo) -> Any:
        # Earlier versions showed these constants as fields and so stored them in every document.
        if isinstance(data, dict) and not _is_input(info) and _CONSTANTS.intersection(data):
            data = {k: v for k, v in data.items() if k not in _CONSTANTS}
        return data

    def out_cooldown(self) -> float:
        c = self.scale_out.cooldown
        return self.DEFAULT_OUT_COOLDOWN if c is None else c

    def in_cooldown(self) -> float:
        c = self.scale_in.cooldown
        return self.DEFAULT_IN_COOLDOWN if c is None else c

    def in_stabilization(self, sizing_rules: bool) -> float:
        """The scale-in window: the document's, else 5 min when the job has a target or predictive rule
        (`sizing_rules`), else 0."""
        w = self.scale_in.stabilization
        if w is not None:
            return w
        return self.DEFAULT_IN_STABILIZATION if sizing_rules else 0.0

    def out_stabilization(self) -> float:
        w = self.scale_out.stabilization
        return 0.0 if w is None else w


_CONSTANTS = frozenset({"DEFAULT_OUT_COOLDOWN", "DEFAULT_IN_COOLDOWN"})


class Notify(Strict):
    group: str | None = Field(default=None, min_length=1, max_length=128)
    webhook: str | None = Field(default=None, pattern=r"^https?://[^\s]+$", max_length=2048)


_HOSTPORT = r"^[A-Za-z0-9.:\[\]-]+:\d{1,5}$"


class LvsLB(Strict):
    type: Literal["lvs"]
    vip: str = Field(pattern=_HOSTPORT)
    protocol: Literal["tcp", "udp"] = "tcp"
    port_index: int = Field(default=0, ge=0, le=64)
    scheduler: Literal[
        "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh"
    ] = "wrr"
    forward: Literal["nat", "dr", "tun"] = "nat"
    weight: int = Field(default=100, ge=1, le=65535)
    drain: Duration = 30.0
    driver: Literal["ipvsadm", "keepalived"] = "ipvsadm"
    name: str | None = Field(default=None, pattern=RULE_NAME_RE)


class NginxLB(Strict):
    type: Literal["nginx"]
    upstream: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    port_index: int = Field(default=0, ge=0, le=64)
    weight: int = Field(default=1, ge=1, le=1000)
    drain: Duration = 10.0
    name: str | None = Field(default=None, pattern=RULE_NAME_RE)


class HaproxyLB(Strict):
    type: Literal["haproxy"]
    backend: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")
    port_index: int = Field(default=0, ge=0, le=64)
    weight: int = Field(default=10, ge=1, le=256)
    drain: Duration = 10.0
    name: str | None = Field(default=None, pattern=RULE_NAME_RE)


LoadBalancer = Annotated[LvsLB | NginxLB | HaproxyLB, Field(discriminator="type")]
Mode = Literal["active", "dry-run", "paused"]


class JobDocument(Strict):
    job: str = Field(json_schema_extra={"pattern": JOB_NAME_PATTERN, "minLength": 1, "maxLength": 200})
    target: Target
    mode: Mode = "dry-run"
    period: Duration = 10.0
    grace: Duration | None = None
    instance_tag: str | None = Field(default=None, min_length=1, max_length=64)
    min_instances: int = Field(default=1, ge=0, le=100000)
    max_instances: int = Field(default=10, ge=0, le=100000)
    deployment_timeout: Duration = 600.0
    rules: list[Rule] = Field(default_factory=list, max_length=50)
    behavior: Behavior = Behavior()
    notify: Notify = Notify()
    lb: list[LoadBalancer] = Field(default_factory=list, max_length=16)

    @field_validator("job")
    @classmethod
    def _job(cls, v: str, info: ValidationInfo) -> str:
        if not JOB_NAME_RE.match(v):
            raise ValueError(
                f"a job name is 1-200 characters of [A-Za-z0-9._-] (got {_shorten(v)}, {len(v)} characters)"
            )
        if _is_input(info) and not _NEW_JOB_NAME_RE.match(v):
            raise _bound(
                "job_name",
                f"a job name starts with a letter, digit or '_' (got {_shorten(v)}): it is used as a URL "
                "path segment and a file name, where '.', '..', '.x' and '-x' mean something else",
            )
        return v

    @field_validator("period")
    @classmethod
    def _period(cls, v: float) -> float:
        if v < 1 or v > 3600 or v != int(v):
            raise ValueError("period must be a whole number of seconds from 1 to 3600")
        return v

    @model_validator(mode="after")
    def _whole(self) -> JobDocument:
        if self.min_instances > self.max_instances:
            raise ValueError(f"min_instances ({self.min_instances}) > max_instances ({self.max_instances})")
        seen: set[str] = set()
        for r in self.rules:
            if r.name in seen:
                raise ValueError(f"duplicate rule name {r.name!r}")
            seen.add(r.name)
        return self

    def grace_seconds(self) -> float:
        return self.period / 2 if self.grace is None else self.grace

    def metric_rules(self) -> list[ThresholdRule | TargetRule | PredictiveRule]:
        return [r for r in self.rules if isinstance(r, ThresholdRule | TargetRule | PredictiveRule)]

    def selector_for(self, rule: MetricRule) -> Selector:
        return rule.selector if rule.selector is not None else Selector(tags={"job": self.job})


class DocumentError(ValueError):
    """A job document failed validation; `errors` lists {"path", "message"} for every problem, `bounds`
    the document bounds it went past (`job_name`, `schedule_every`, `string_length`, `tag_count`)."""

    def __init__(self, errors: list[dict[str, str]], bounds: list[str] | None = None):
        self.errors = errors
        self.bounds = bounds or []
        super().__init__("; ".join(f"{e['path']}: {e['message']}" for e in errors))


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    after_index = False
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            after_index = True
            continue
        if after_index and part in _UNION_TAGS:
            after_index = False
            continue  # the discriminator tag pydantic inserts after a union element's index
        after_index = False
        out += f".{part}" if out else str(part)
    return out or "(document)"


_MAX_SUGGESTIONS = 20  # unknown fields of one document that get a "did you mean"
_UNION_TAGS = ("threshold", "target", "predictive", "alarm", "schedule", "lvs", "nginx", "haproxy")


def parse_job(data: Mapping[str, Any] | Any) -> JobDocument:
    """Validate a job document given now (the admin API, job files, replay); raise DocumentError listing
    every error with its field path.

    A document stored by an earlier version is read with `JobDocument.model_validate(data)` instead, which
    also takes what earlier versions stored and `parse_job` refuses: the behavior constants (dropped),
    job names of the old grammar, strings and tags past the bounds, and a schedule `every` under 1 s (read
    as 1 s)."""
    if not isinstance(data, Mapping):
        raise DocumentError([{"path": "(document)", "message": "a job document is a JSON object"}])
    try:
        doc = JobDocument.model_validate(dict(data), context=_INPUT)
    except ValidationError as e:
        errors = []
        bounds = []
        suggest = _MAX_SUGGESTIONS  # "did you mean" costs ~0.2 ms a field: not for thousands of them
        for err in e.errors(include_url=False):
            loc = tuple(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"].startswith("bound_"):
                bounds.append(err["type"].removeprefix("bound_"))
            if err["type"] == "extra_forbidden":
                msg = "unknown field" + (did_you_mean(JobDocument, loc) if suggest > 0 else "")
                suggest -= 1
                if loc[:1] == ("behavior",) and loc[-1] in _CONSTANTS:
                    msg += (
                        ": a constant that earlier versions showed in every job; delete it "
                        "(behavior.scale_out.cooldown and behavior.scale_in.cooldown set the cooldowns)"
                    )
            errors.append({"path": _path(loc), "message": msg})
        raise DocumentError(errors, bounds) from None
    errors = []
    for i, rule in enumerate(doc.rules):
        if isinstance(rule, ScheduleRule):
            for field, msg in validate_schedule(rule):
                errors.append({"path": f"rules[{i}].{field}", "message": msg})
    if errors:
        raise DocumentError(errors)
    return doc


def dump_job(doc: JobDocument) -> dict[str, Any]:
    """The document as JSON-ready data (the admin API returns this)."""
    return doc.model_dump(mode="json", exclude_none=True)
