"""Templates (PRODUCT §13, the seed's 模板管理): shared job-document fields a job names with
`"template": "web-default"`, its own fields laid over them as a JSON merge patch (RFC 7396).

Pure: no I/O. A template holds any job-document fields except `job` and `target` (each job has its own);
it cannot name a template (no chains, so no cycles). It is checked as a job document with a placeholder
job and target, so a bad field is refused when the template is written, not when a job first uses it.
The effective document of a job is `merge_patch(template, own)` with the job's name, validated like any
job document (`policies.document.parse_job`). oceand/templates.py keeps them in the store.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from policies.document import JOB_NAME_PATTERN, DocumentError, parse_job

TEMPLATE_NAME_PATTERN = JOB_NAME_PATTERN  # the grammar of new job names: safe in a URL and a file name
TEMPLATE_NAME_RE = re.compile(TEMPLATE_NAME_PATTERN.removesuffix("$") + r"\Z")
PER_JOB_FIELDS = ("job", "target")  # never in a template
_PLACEHOLDER = {"job": "template-check", "target": {"cluster": "template-check", "app": "/template-check"}}


class TemplateError(ValueError):
    """A template or a job's use of one is refused: `code` (template_cycle, invalid_template,
    bad_template_name) and `errors`, [{"path", "message"}] as DocumentError has them."""

    def __init__(self, code: str, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.errors = errors or []


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: `patch` applied to `target` (a new value; neither argument is changed). Members of an
    object patch replace, add or (null) remove members; anything else replaces the target whole."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def check_name(name: object) -> str:
    if not isinstance(name, str) or not TEMPLATE_NAME_RE.match(name):
        raise TemplateError(
            "bad_template_name",
            "a template name is 1-200 characters of [A-Za-z0-9._-] starting with a letter, digit or '_'",
            [{"path": "template", "message": "bad name"}],
        )
    return name


def check_template(data: Any) -> dict[str, Any]:
    """`data` if it is a template; TemplateError naming every problem otherwise."""
    if not isinstance(data, dict):
        raise TemplateError(
            "invalid_template",
            "a template is a JSON object",
            [{"path": "(document)", "message": "a template is a JSON object"}],
        )
    if "template" in data:
        raise TemplateError(
            "template_cycle",
            "a template cannot name a template (template chains are refused, so there are no cycles)",
            [{"path": "template", "message": "a template cannot name a template"}],
        )
    errors = [
        {"path": key, "message": f"a template cannot hold {key!r}: each job has its own"}
        for key in PER_JOB_FIELDS
        if key in data
    ]
    if not errors:
        try:
            parse_job({**data, **_PLACEHOLDER})
        except DocumentError as e:
            errors = e.errors
    if errors:
        raise TemplateError("invalid_template", f"{len(errors)} error(s) in the template", errors)
    return data


def compose(own: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """The effective document (unvalidated) of a job whose own fields are `own` (with its `job` name and
    the `template` it names) on `template`: `merge_patch(template, own)` without the `template` key."""
    merged = merge_patch(template, {k: v for k, v in own.items() if k != "template"})
    if "job" in merged:
        merged = {"job": merged.pop("job"), **merged}
    return dict(merged)


def diff(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """What changed from `before` to `after`: [{"path", "before", "after"}] (no "before" for an added
    field, no "after" for a removed one). Objects and lists of equal length are compared member by
    member, anything else whole."""
    if before == after:
        return []
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[dict[str, Any]] = []
        for key in [*before, *(k for k in after if k not in before)]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in after:
                out.append({"path": sub, "before": before[key]})
            elif key not in before:
                out.append({"path": sub, "after": after[key]})
            else:
                out.extend(diff(before[key], after[key], sub))
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [
            c for i, (b, a) in enumerate(zip(before, after, strict=True)) for c in diff(b, a, f"{path}[{i}]")
        ]
    return [{"path": path or "(document)", "before": before, "after": after}]
