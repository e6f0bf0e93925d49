"""Templates, pure part (PRODUCT §13): RFC 7396 merge patch, a template's own checks, the effective
document of a job that names a template, and the change a template edit makes to it."""

from __future__ import annotations

from typing import Any

import pytest

from policies.templates import TemplateError, check_template, compose, diff, merge_patch

RULE = {
    "name": "cpu",
    "type": "threshold",
    "metric": "cpu.used",
    "aggregate": "avg",
    "scale_out": {"above": 80, "consecutive": 3, "step": 1},
    "scale_in": {"below": 60, "consecutive": 3, "step": 1},
}
TEMPLATE: dict[str, Any] = {"mode": "active", "max_instances": 8, "rules": [RULE]}
TARGET = {"cluster": "lg", "app": "/ocean/web"}


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [
        # RFC 7396 appendix A, every example
        pytest.param({"a": "b"}, {"a": "c"}, {"a": "c"}, id="replace a member"),
        pytest.param({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}, id="add a member"),
        pytest.param({"a": "b"}, {"a": None}, {}, id="null removes"),
        pytest.param({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}, id="null removes one of two"),
        pytest.param({"a": ["b"]}, {"a": "c"}, {"a": "c"}, id="array replaced by a string"),
        pytest.param({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}, id="string replaced by an array"),
        pytest.param({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}, id="nested"),
        pytest.param({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}, id="arrays are replaced whole"),
        pytest.param(["a", "b"], ["c", "d"], ["c", "d"], id="array by array"),
        pytest.param({"a": "b"}, ["c"], ["c"], id="object by array"),
        pytest.param({"a": "foo"}, None, None, id="document by null"),
        pytest.param({"a": "foo"}, "bar", "bar", id="document by a string"),
        pytest.param({"e": None}, {"a": 1}, {"e": None, "a": 1}, id="a null in the target stays"),
        pytest.param([1, 2], {"a": "b", "c": None}, {"a": "b"}, id="array by an object"),
        pytest.param({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}, id="null inside a new member"),
    ],
)
def test_merge_patch(target: Any, patch: Any, result: Any) -> None:
    before = repr(target)
    assert merge_patch(target, patch) == result
    assert repr(target) == before  # the target is not changed in place


@pytest.mark.parametrize(
    ("data", "code", "path"),
    [
        pytest.param({"template": "other", "max_instances": 3}, "template_cycle", "template", id="cycle"),
        pytest.param({"job": "x", "max_instances": 3}, "invalid_template", "job", id="names a job"),
        pytest.param({"target": TARGET}, "invalid_template", "target", id="holds a target"),
        pytest.param({"max_instances": "many"}, "invalid_template", "max_instances", id="wrong type"),
        pytest.param(
            {"min_instances": 5, "max_instances": 2}, "invalid_template", "(document)", id="min>max"
        ),
        pytest.param({"colour": "red"}, "invalid_template", "colour", id="unknown field"),
        pytest.param(["mode"], "invalid_template", "(document)", id="not an object"),
    ],
)
def test_check_template_refuses(data: Any, code: str, path: str) -> None:
    with pytest.raises(TemplateError) as e:
        check_template(data)
    assert e.value.code == code
    assert path in [err["path"] for err in e.value.errors], e.value.errors


def test_check_template_takes_a_partial_document() -> None:
    assert check_template(TEMPLATE) == TEMPLATE
    assert check_template({}) == {}


@pytest.mark.parametrize(
    ("own", "expect"),
    [
        pytest.param(
            {"template": "web", "target": TARGET},
            {"mode": "active", "max_instances": 8, "rules": [RULE]},
            id="template fields, job's target",
        ),
        pytest.param(
            {"template": "web", "target": TARGET, "max_instances": 3, "mode": "paused"},
            {"mode": "paused", "max_instances": 3, "rules": [RULE]},
            id="the job's fields win",
        ),
        pytest.param(
            {"template": "web", "target": TARGET, "max_instances": None},
            {"mode": "active", "rules": [RULE]},
            id="null drops the template's field",
        ),
        pytest.param(
            {"template": "web", "target": TARGET, "rules": []},
            {"mode": "active", "max_instances": 8, "rules": []},
            id="a list is replaced whole",
        ),
    ],
)
def test_compose(own: dict[str, Any], expect: dict[str, Any]) -> None:
    assert compose({"job": "job.web_pdl.ocean", **own}, TEMPLATE) == {
        "job": "job.web_pdl.ocean",
        "target": TARGET,
        **expect,
    }


@pytest.mark.parametrize(
    ("before", "after", "changes"),
    [
        pytest.param({"a": 1}, {"a": 1}, [], id="no change"),
        pytest.param({"a": 1}, {"a": 2}, [{"path": "a", "before": 1, "after": 2}], id="a value"),
        pytest.param({}, {"a": 2}, [{"path": "a", "after": 2}], id="added"),
        pytest.param({"a": 2}, {}, [{"path": "a", "before": 2}], id="removed"),
        pytest.param(
            {"rules": [{"scale_out": {"above": 80}}]},
            {"rules": [{"scale_out": {"above": 70}}]},
            [{"path": "rules[0].scale_out.above", "before": 80, "after": 70}],
            id="inside a list of the same length",
        ),
        pytest.param(
            {"lb": [1]}, {"lb": [1, 2]}, [{"path": "lb", "before": [1], "after": [1, 2]}], id="list grows"
        ),
    ],
)
def test_diff(before: dict[str, Any], after: dict[str, Any], changes: list[dict[str, Any]]) -> None:
    assert diff(before, after) == changes


def test_the_product_line_example_in_docs_templates_md_is_valid() -> None:
    """docs/templates.md's template and jobs: the template passes its checks, each job's effective
    document validates, and the docs job falls back to the document default when it nulls a field."""
    import json
    import re
    from pathlib import Path

    from policies.document import parse_job

    text = (Path(__file__).parents[2] / "docs" / "templates.md").read_text()
    bodies = re.findall(r"curl -X PUT \S+/api/v1/(templates|jobs)/(\S+) -d '(.*?)'\n", text, re.S)
    assert [kind for kind, _, _ in bodies] == ["templates", "jobs", "jobs"]
    template = check_template(json.loads(bodies[0][2]))
    docs = [parse_job(compose({"job": name, **json.loads(body)}, template)) for _, name, body in bodies[1:]]
    assert [(d.min_instances, d.max_instances, d.rules[0].name) for d in docs] == [
        (2, 40, "cpu"),
        (1, 20, "cpu"),
    ]
