"""The job document's bounds and field grammar (PRODUCT §3, issue 18 items 4 and 6, issue 11).

`parse_job` validates input (the admin API, job files, replay); a document stored by an earlier version
is read with `JobDocument.model_validate` and must still load.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from policies.document import (
    MAX_MATCH_CHARS,
    MAX_TAGS,
    MIN_EVERY,
    Behavior,
    DocumentError,
    JobDocument,
    dump_job,
    parse_job,
)


def base(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"job": "web", "target": {"cluster": "lg", "app": "/ocean/web"}}
    d.update(over)
    return d


def schedule(**over: Any) -> dict[str, Any]:
    return {
        "name": "s",
        "type": "schedule",
        "start": "2024-01-01T00:00:00",
        "every": 60,
        "instances": 2,
        **over,
    }


def alarm(**match: Any) -> dict[str, Any]:
    return {"name": "a", "type": "alarm", "match": {"metric": "cpu.idle", **match}}


def metric(**selector: Any) -> dict[str, Any]:
    return {
        "name": "cpu",
        "type": "threshold",
        "metric": "cpu.used",
        "selector": selector,
        "scale_out": {"above": 80},
    }


LONG = "x" * (MAX_MATCH_CHARS + 1)
FULL = "x" * MAX_MATCH_CHARS


def tags(n: int) -> dict[str, str]:
    return {f"k{i}": "v" for i in range(n)}


def errors_of(data: dict[str, Any]) -> list[dict[str, str]]:
    with pytest.raises(DocumentError) as e:
        parse_job(data)
    return e.value.errors


# --- refused, each with the path of the field at fault --------------------------------------------------


@pytest.mark.parametrize(
    ("data", "path", "bound"),
    [
        pytest.param(
            base(rules=[schedule(every=0.01)]), "rules[0].every", "schedule_every", id="every 0.01 s"
        ),
        pytest.param(
            base(rules=[schedule(every="500ms")]), "rules[0].every", "schedule_every", id="every 500ms"
        ),
        pytest.param(
            base(rules=[schedule(every=0.999)]), "rules[0].every", "schedule_every", id="every 0.999 s"
        ),
        pytest.param(base(rules=[schedule(every=0)]), "rules[0].every", "schedule_every", id="every 0"),
        pytest.param(base(job="."), "job", "job_name", id="job ."),
        pytest.param(base(job=".."), "job", "job_name", id="job .."),
        pytest.param(base(job="..."), "job", "job_name", id="job ..."),
        pytest.param(base(job=".hidden"), "job", "job_name", id="job with a leading dot (hidden file)"),
        pytest.param(base(job="-rf"), "job", "job_name", id="job with a leading dash (an option)"),
        pytest.param(base(job="a/b"), "job", None, id="job with a slash"),
        pytest.param(base(job="a\x00b"), "job", None, id="job with NUL"),
        pytest.param(base(job="web\n"), "job", None, id="job with a trailing newline"),
        pytest.param(base(job=""), "job", None, id="empty job name"),
        pytest.param(base(job="x" * 201), "job", None, id="201-char job name"),
        pytest.param(
            base(rules=[alarm(metric=LONG)]), "rules[0].match.metric", "string_length", id="match metric"
        ),
        pytest.param(
            base(rules=[alarm(endpoint=LONG)]),
            "rules[0].match.endpoint",
            "string_length",
            id="match endpoint",
        ),
        pytest.param(
            base(rules=[alarm(tags={LONG: "v"})]), "rules[0].match.tags", "string_length", id="match tag key"
        ),
        pytest.param(
            base(rules=[alarm(tags={"k": LONG})]),
            "rules[0].match.tags",
            "string_length",
            id="match tag value",
        ),
        pytest.param(
            base(rules=[alarm(tags=tags(MAX_TAGS + 1))]),
            "rules[0].match.tags",
            "tag_count",
            id="match tag count",
        ),
        pytest.param(
            base(rules=[metric(tags={LONG: "v"})]),
            "rules[0].selector.tags",
            "string_length",
            id="selector tag key",
        ),
        pytest.param(
            base(rules=[metric(tags={"k": LONG})]),
            "rules[0].selector.tags",
            "string_length",
            id="selector tag value",
        ),
        pytest.param(
            base(rules=[metric(tags=tags(MAX_TAGS + 1))]),
            "rules[0].selector.tags",
            "tag_count",
            id="selector tags",
        ),
        pytest.param(
            base(behavior={"DEFAULT_IN_COOLDOWN": -5}),
            "behavior.DEFAULT_IN_COOLDOWN",
            None,
            id="behavior constant as input",
        ),
        pytest.param(
            base(behavior={"DEFAULT_OUT_COOLDOWN": 30}),
            "behavior.DEFAULT_OUT_COOLDOWN",
            None,
            id="behavior constant with its own value",
        ),
    ],
)
def test_refused_with_the_field_path(data: dict[str, Any], path: str, bound: str | None) -> None:
    with pytest.raises(DocumentError) as e:
        parse_job(data)
    assert [err["path"] for err in e.value.errors] == [path], e.value.errors
    assert e.value.bounds == ([bound] if bound else [])
    message = e.value.errors[0]["message"]
    assert len(message) < 300 and LONG not in message  # a long input is not echoed back whole


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(base(rules=[schedule(every=MIN_EVERY)]), id="every 1 s"),
        pytest.param(base(rules=[schedule(every="1s")]), id="every '1s'"),
        pytest.param(base(rules=[schedule(every="1000ms")]), id="every '1000ms'"),
        pytest.param(base(job="a"), id="one-letter job"),
        pytest.param(base(job="_x"), id="leading underscore"),
        pytest.param(base(job="0"), id="leading digit"),
        pytest.param(base(job="a..b"), id="dots inside"),
        pytest.param(base(job="a."), id="trailing dot"),
        pytest.param(base(job="a-"), id="trailing dash"),
        pytest.param(base(job="x" * 200), id="200-char job name"),
        pytest.param(
            base(rules=[alarm(metric=FULL, endpoint=FULL, tags={FULL: FULL})]), id="match at the caps"
        ),
        pytest.param(base(rules=[alarm(tags=tags(MAX_TAGS))]), id="match tags at the cap"),
        pytest.param(base(rules=[metric(tags={FULL: FULL})]), id="selector tag at the caps"),
        pytest.param(base(rules=[metric(tags=tags(MAX_TAGS))]), id="selector tags at the cap"),
    ],
)
def test_accepted(data: dict[str, Any]) -> None:
    assert parse_job(data).job == data["job"]


def test_a_brace_in_a_refused_tag_does_not_break_the_message() -> None:
    (err,) = errors_of(base(rules=[alarm(tags={"{k}" + LONG: "v"})]))
    assert err["path"] == "rules[0].match.tags" and "{k}" in err["message"]


# --- the behavior constants -------------------------------------------------------------------------------


def test_behavior_constants_are_not_fields() -> None:
    doc = parse_job(base())
    # nothing set, nothing stored: the stabilization windows' defaults depend on the rules (Limits.of)
    assert dump_job(doc)["behavior"] == {"scale_out": {}, "scale_in": {}}
    assert "DEFAULT_IN_COOLDOWN" not in Behavior.model_fields
    assert (doc.behavior.out_cooldown(), doc.behavior.in_cooldown()) == (30.0, 300.0)
    (err,) = errors_of(base(behavior={"DEFAULT_IN_COOLDOWN": -5}))
    assert "scale_in.cooldown" in err["message"]  # says what to write instead


# --- documents stored by an earlier version still load -------------------------------------------------------


def test_a_document_stored_by_an_earlier_version_loads() -> None:
    stored = base(
        job="..",
        behavior={
            "scale_out": {"stabilization": 0.0},
            "scale_in": {"stabilization": 0.0},
            "DEFAULT_OUT_COOLDOWN": 30.0,
            "DEFAULT_IN_COOLDOWN": 300.0,
        },
        rules=[schedule(every=0.01), alarm(tags={"k": LONG}), metric(tags=tags(MAX_TAGS + 1))],
    )
    doc = JobDocument.model_validate(stored)
    assert doc.job == ".."
    assert "DEFAULT_IN_COOLDOWN" not in dump_job(doc)["behavior"]
    assert doc.rules[0].every == MIN_EVERY  # type: ignore[union-attr]  # runs at most once a second
    with pytest.raises(DocumentError):  # but the same document is refused as input
        parse_job(stored)


# --- "did you mean" for unknown fields -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "path", "suggestion"),
    [
        pytest.param(base(min_instance=2), "min_instance", "min_instances", id="top level"),
        pytest.param(
            base(rules=[{**metric(), "scael_out": {"above": 1}}]),
            "rules[0].scael_out",
            "scale_out",
            id="in a rule",
        ),
        pytest.param(
            base(rules=[{**alarm(), "stepin": 1}]), "rules[0].stepin", "step_in", id="in an alarm rule"
        ),
        pytest.param(
            base(behavior={"scale_in": {"cooldwn": "5m"}}),
            "behavior.scale_in.cooldwn",
            "cooldown",
            id="nested",
        ),
        pytest.param(
            base(lb=[{"type": "nginx", "upstraem": "u"}]), "lb[0].upstraem", "upstream", id="in a balancer"
        ),
        pytest.param(
            base(target={"cluster": "lg", "app": "/a", "forse": True}), "target.forse", "force", id="target"
        ),
        pytest.param(base(colour="red"), "colour", None, id="nothing close"),
    ],
)
def test_unknown_field_suggests_the_closest(data: dict[str, Any], path: str, suggestion: str | None) -> None:
    found = {e["path"]: e["message"] for e in errors_of(data)}
    assert path in found, found
    if suggestion is None:
        assert found[path] == "unknown field"
    else:
        assert found[path] == f"unknown field (did you mean {suggestion!r}?)"


# --- the JSON Schema (the OpenAPI description) states the bounds ---------------------------------------------


def test_json_schema_states_the_bounds() -> None:
    schema = JobDocument.model_json_schema()
    defs = schema["$defs"]
    assert schema["properties"]["job"]["pattern"] == "^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$"
    assert defs["ScheduleRule"]["properties"]["every"]["minimum"] == MIN_EVERY
    assert set(defs["Behavior"]["properties"]) == {"scale_out", "scale_in"}
    for model in ("Selector", "AlarmMatch"):
        t = defs[model]["properties"]["tags"]
        assert t["maxProperties"] == MAX_TAGS
        assert t["propertyNames"]["maxLength"] == MAX_MATCH_CHARS
        assert t["additionalProperties"]["maxLength"] == MAX_MATCH_CHARS
    for field in ("metric", "endpoint"):
        assert f'"maxLength": {MAX_MATCH_CHARS}' in json.dumps(defs["AlarmMatch"]["properties"][field])


def test_only_the_first_unknown_fields_get_a_suggestion() -> None:
    data = base(**{f"min_instancez{i}": 1 for i in range(25)})  # each is close to min_instances
    messages = [e["message"] for e in errors_of(data)]
    assert len(messages) == 25
    assert messages[:20] == ["unknown field (did you mean 'min_instances'?)"] * 20
    assert messages[20:] == ["unknown field"] * 5


def test_a_very_long_unknown_field_gets_no_suggestion() -> None:
    (err,) = errors_of(base(**{"min_instances" + "s" * 200: 1}))
    assert err["message"] == "unknown field"
