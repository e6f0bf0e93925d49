"""The OpenAPI 3.1 description of every route (`GET /api/v1/openapi.json`).

The job document's schema comes from the pydantic model itself, so the description cannot drift from
validation; a test checks that the router's routes and this description list the same operations.
"""

from __future__ import annotations

from functools import cache
from typing import Any, get_args

from aiohttp import web

import oceand
from oceand.api.auth import ROUTE_SCOPES, WRITE_SCOPES
from oceand.api.errors import json_response
from oceand.templates import SELECT_KEYS
from policies.document import STORED_JOB_NAME_PATTERN, JobDocument
from policies.templates import TEMPLATE_NAME_PATTERN
from policies.types import ACTUATION_FAILED, ApplyStatus, OutcomeStatus

_ERR = {"$ref": "#/components/responses/Error"}
_JOB = {
    "name": "job",
    "in": "path",
    "required": True,
    "description": "A job's name. New jobs follow JobDocument.job's pattern; this wider one also reaches "
    "jobs stored by earlier versions (e.g. named '.x'), to read or delete them.",
    "schema": {"type": "string", "pattern": STORED_JOB_NAME_PATTERN},
}
_OBJ = {"type": "object"}
_MODES = ["active", "dry-run", "paused"]
_MODE_REPLY = {
    "type": "object",
    "required": ["job", "mode", "effective_mode", "dry_run_reason", "version"],
    "properties": {
        "job": {"type": "string"},
        "mode": {"enum": _MODES, "description": "the mode asked for, now in the document"},
        "effective_mode": {"enum": _MODES, "description": "the mode the job runs in"},
        "dry_run_reason": {
            "type": ["string", "null"],
            "description": "what makes the job run dry whatever its mode says (the daemon-wide dry_run, "
            "a target cluster without a [marathon.<name>] table); null when nothing does",
        },
        "version": {"type": "integer", "description": "unchanged when the job already had that mode"},
    },
}


def _op(
    summary: str,
    ok: str,
    *,
    body: Any = None,
    params: list[Any] | None = None,
    errors: tuple[int, ...] = (),
    reply: Any = _OBJ,
) -> Any:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {ok: {"description": "OK", "content": {"application/json": {"schema": reply}}}},
    }
    if ok == "204":
        op["responses"][ok] = {"description": "No content"}
    for code in errors:
        op["responses"][str(code)] = _ERR
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        op["responses"]["413"] = _ERR  # a body over its route's limit (admin 1 MiB, ingest server.max_body)
    if params:
        op["parameters"] = params
    return op


_PUSH_ITEM = {
    "type": "object",
    "required": ["endpoint", "metric", "timestamp", "step", "value", "counterType"],
    "properties": {
        "endpoint": {"type": "string"},
        "metric": {"type": "string"},
        "timestamp": {"type": "integer"},
        "step": {"type": "integer", "minimum": 1},
        "value": {"oneOf": [{"type": "number"}, {"type": "string"}]},
        "counterType": {"enum": ["GAUGE", "COUNTER", "DERIVE"]},
        "tags": {"type": "string"},
    },
}
_ALARM_PARAMS = [
    {
        "name": n,
        "in": "query",
        "required": n in ("endpoint", "metric", "status"),
        "schema": {"type": "string"},
    }
    for n in (
        "endpoint",
        "metric",
        "status",
        "step",
        "priority",
        "time",
        "tpl_id",
        "exp_id",
        "stra_id",
        "left_value",
        "tags",
    )
]
_DOC = {"$ref": "#/components/schemas/JobDocument"}
_WARNINGS = {
    "type": "array",
    "description": "what in the document cannot work as written (policies/warnings.py); the document is "
    "stored all the same",
    "items": {
        "type": "object",
        "required": ["path", "code", "message"],
        "properties": {
            "path": {"type": "string", "description": "the field, e.g. rules[0].target"},
            "code": {
                "enum": [
                    "never_scales_out",
                    "never_scales_in",
                    "unreachable_band",
                    "inverse_metric",
                    "capped_load",
                    "fixed_count",
                ]
            },
            "message": {"type": "string"},
        },
    },
}
_STATUS_REQUIRED = ["job", "warnings", "startup"]
_STATUS_PROPERTIES: dict[str, Any] = {
    "job": {"type": "string"},
    "warnings": _WARNINGS,
    "startup": {
        "type": ["number", "null"],
        "description": "the app's start-up time learned from Marathon (launch to healthy, p90 of its "
        "recent tasks, seconds); null while not known. Each predictive rule shows its `lead` and "
        "`lead_from` (document, marathon or default)",
    },
}
_TEMPLATE_NAME = {"type": "string", "pattern": TEMPLATE_NAME_PATTERN}
_OWN = {
    "type": "object",
    "required": ["template"],
    "properties": {"template": _TEMPLATE_NAME},
    "description": "a job that names a template: its own fields laid over the template's (JSON merge "
    "patch, RFC 7396; null removes a field); the result is validated as a JobDocument",
}
_JOB_BODY = {"anyOf": [_DOC, _OWN]}
_JOB_REPLY = {
    "type": "object",
    "required": ["job", "version", "template", "warnings"],
    "properties": {
        "job": {"type": "object", "description": "the effective document (what the engine runs)"},
        "warnings": _WARNINGS,
        "version": {"type": "integer"},
        "template": {"type": ["string", "null"], "description": "the template the job names"},
        "own": {"type": "object", "description": "the job's own document, when it names a template"},
    },
}
_SELECT_PROPS = {k: {"type": "string", "minLength": 1, "maxLength": 200} for k in SELECT_KEYS}
_SELECT = {
    "type": "object",
    "minProperties": 1,
    "additionalProperties": False,
    "properties": _SELECT_PROPS,
    "description": "Ocean tree parts a job's name must have (job.X_service.S_cluster.K_pdl.P_owt.O_cop.C) "
    "and/or `name`, a glob on the whole job name",
}
_TEMPLATE_PARAM = {"name": "name", "in": "path", "required": True, "schema": _TEMPLATE_NAME}
_JOB_CHANGE = {
    "type": "object",
    "required": ["job", "version", "changes"],
    "properties": {
        "job": {"type": "string"},
        "version": {"type": ["integer", "null"], "description": "the job's version before"},
        "new_version": {"type": ["integer", "null"], "description": "after (null on a dry run)"},
        "changes": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["path"],
                "properties": {"path": {"type": "string"}, "before": {}, "after": {}},
            },
        },
    },
}
_TEMPLATE_PUT_REPLY = {
    "type": "object",
    "required": ["name", "template", "version", "dry_run", "dependents", "jobs"],
    "properties": {
        "name": {"type": "string"},
        "template": {"type": "object"},
        "version": {"type": ["integer", "null"], "description": "null: a dry run of a new template"},
        "dry_run": {"type": "boolean"},
        "dependents": {"type": "array", "items": {"type": "string"}},
        "jobs": {"type": "array", "items": _JOB_CHANGE, "description": "each job whose document changes"},
    },
}
_TOKEN_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
}
_DURATION = {
    "oneOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"},
    ],
    "description": "seconds, or '30s', '10m', '2h', '90d'",
}
_SCOPES = ["read", "write", "operate", "admin", "ingest"]
_TOKEN = {
    "type": "object",
    "required": ["name", "scopes", "jobs", "created_at", "expires_at", "expired", "rotated_at"],
    "properties": {
        "name": {"type": "string"},
        "scopes": {"type": "array", "items": {"enum": _SCOPES}},
        "jobs": {"type": "array", "items": {"type": "string"}, "description": "job-name globs"},
        "created_at": {"type": "number"},
        "expires_at": {"type": ["number", "null"]},
        "expired": {"type": "boolean"},
        "rotated_at": {"type": ["number", "null"]},
        "old_secret_valid_until": {"type": ["number", "null"]},
        "secret": {"type": "string", "description": "only in the replies of create and rotate: shown once"},
    },
}
_SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An oceand token (`oceand token create`, POST /api/v1/tokens). Each operation's "
        "`x-oceand-scope` names the scope it needs (admin includes every scope); operations on a job "
        "also need the job's name to match one of the token's job globs. Checked when [auth] enabled.",
    },
    "ingestToken": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "[ingest] token, in the query (a Falcon callback URL) or as a bearer token; "
        "or the sender's address is in [ingest] allow; or a token with the ingest scope.",
    },
}


_NULLABLE_STR = {"type": ["string", "null"]}
# What became of a decision (policies.types.ActuationOutcome): a record of its own, beside the decision.
_OUTCOME = {
    "type": "object",
    "required": ["status", "attempts", "tries", "detail", "reason"],
    "properties": {
        "status": {"enum": list(get_args(OutcomeStatus))},
        "deployment_id": {**_NULLABLE_STR, "description": "Marathon's deployment of the write that landed"},
        "version": {**_NULLABLE_STR, "description": "the app version Marathon answered with"},
        "latency_ms": {"type": ["number", "null"], "description": "the last apply round"},
        "error": {**_NULLABLE_STR, "description": "the last failure (kept while a retry is pending)"},
        "attempts": {"type": "integer", "description": "writes (PUTs) of this decision"},
        "tries": {"type": "integer", "description": "apply rounds: the first and each retry"},
        "retry_at": {"type": ["number", "null"], "description": "pending: when it is tried again"},
        "superseded_by": {"type": ["integer", "null"], "description": "the newer decision that replaced it"},
        "detail": {
            "type": "object",
            "description": "url, unknown, landed, settled, stale, note, blocked ...",
        },
        "reason": {
            "enum": [ACTUATION_FAILED, None],
            "description": "ActuationFailed when an error is recorded",
        },
    },
}
# A decision as the API shows it: what the policy decided (never changed once made), `status` and
# `result` derived from its outcome (the fields this API has always had), and the outcome itself.
_DECISION = {
    "type": "object",
    "required": ["job", "at", "trigger", "current", "desired", "reasons", "status", "result", "outcome"],
    "properties": {
        "job": {"type": "string"},
        "at": {"type": "number"},
        "trigger": {"enum": ["bucket", "alarm", "schedule", "manual"]},
        "current": {"type": "integer"},
        "desired": {"type": "integer"},
        "bucket": {"type": ["integer", "null"]},
        "proposals": {"type": "array", "items": _OBJ},
        "limits": {"type": "array", "items": _OBJ},
        "reasons": {"type": "array", "items": {"type": "string"}},
        "mode": {"type": "string"},
        "id": {"type": ["integer", "null"]},
        "status": {"enum": list(get_args(ApplyStatus)), "description": "the outcome's (superseded: failed)"},
        "result": {"type": "object", "description": "the outcome's fields and detail, flat"},
        "outcome": {"$ref": "#/components/schemas/ActuationOutcome"},
    },
}
_DECISION_REF = {"$ref": "#/components/schemas/Decision"}


@cache
def spec() -> dict[str, Any]:
    schema = JobDocument.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    schemas = {**defs, "JobDocument": schema, "Decision": _DECISION, "ActuationOutcome": _OUTCOME}
    lim = [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
        {"name": "since", "in": "query", "schema": {"type": "number"}},
    ]
    paths: dict[str, Any] = {
        "/healthz": {"get": _op("Liveness", "200")},
        "/readyz": {
            "get": _op(
                "Readiness: store answers and writes, config loaded (Redis, when set: ok or degraded, never 503)",
                "200",
                errors=(503,),
            )
        },
        "/metrics": {
            "get": {"summary": "Prometheus text", "responses": {"200": {"description": "text/plain"}}}
        },
        "/v1/push": {
            "post": _op(
                "Open-Falcon agent push",
                "200",
                body={"type": "array", "items": _PUSH_ITEM},
                errors=(400, 413),
            )
        },
        "/v1/falcon/alarm": {
            "get": _op("Open-Falcon alarm callback", "200", params=_ALARM_PARAMS, errors=(400, 413, 415)),
            "post": _op(
                "Open-Falcon alarm callback (form or query)",
                "200",
                params=_ALARM_PARAMS,
                errors=(400, 413, 415),
            ),
        },
        "/api/v1/jobs": {
            "get": _op(
                "List jobs; the tree-part filters keep one product line (PRODUCT §13)",
                "200",
                params=[{"name": k, "in": "query", "schema": v} for k, v in _SELECT_PROPS.items()],
                errors=(422,),
            ),
            "post": _op("Create a job", "201", body=_JOB_BODY, errors=(400, 409, 413, 422), reply=_JOB_REPLY),
        },
        "/api/v1/jobs/{job}": {
            "parameters": [_JOB],
            "get": _op(
                "Read a job: its effective document, and the template and own document it names",
                "200",
                errors=(400, 404),
                reply=_JOB_REPLY,
            ),
            "put": _op(
                "Create or replace a job document (an identical document keeps its version)",
                "200",
                body=_JOB_BODY,
                errors=(400, 409, 413, 422),
                reply=_JOB_REPLY,
            ),
            "delete": _op("Delete a job", "204", errors=(400, 404)),
        },
        "/api/v1/jobs/{job}/status": {
            "parameters": [_JOB],
            "get": _op(
                "Job status",
                "200",
                errors=(400, 404),
                reply={
                    "type": "object",
                    "required": _STATUS_REQUIRED,
                    "properties": {
                        "blocked": {
                            **_NULLABLE_STR,
                            "description": "Marathon refused a write: nothing is applied until the document"
                            " changes (kept across a restart)",
                        },
                        "retry_at": {
                            "type": ["number", "null"],
                            "description": "a decision waiting after a transient failure is tried again then"
                            " (kept across a restart)",
                        },
                        "last_decision": {"oneOf": [_DECISION_REF, {"type": "null"}]},
                        **_STATUS_PROPERTIES,
                    },
                },
            ),
        },
        "/api/v1/jobs/{job}/decisions": {
            "parameters": [_JOB],
            "get": _op(
                "Decisions, newest first, each with its outcome, and schedule fires",
                "200",
                params=lim,
                errors=(400, 404),
                reply={
                    "type": "object",
                    "required": ["job", "decisions", "fires"],
                    "properties": {
                        "job": {"type": "string"},
                        "decisions": {"type": "array", "items": _DECISION_REF},
                        "fires": {"type": "array", "items": _OBJ},
                    },
                },
            ),
        },
        "/api/v1/jobs/{job}/history": {
            "parameters": [_JOB],
            "get": _op(
                "Recorded history, oldest first: per period (1-minute roll-ups after [history] rollup_after)"
                " each rule's value, the ready / running / desired counts and the decision id",
                "200",
                params=[
                    {"name": "since", "in": "query", "schema": {"type": "number"}},
                    {"name": "until", "in": "query", "schema": {"type": "number"}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100000},
                    },
                    {
                        "name": "step",
                        "in": "query",
                        "description": "bins of this many seconds: values averaged, counts and decision of"
                        " the bin's last row (reads at most 100,000 stored rows)",
                        "schema": {"type": "number", "minimum": 1, "maximum": 86400},
                    },
                ],
                errors=(400, 404),
            ),
        },
        "/api/v1/jobs/{job}/preview": {
            "parameters": [_JOB],
            "post": _op(
                "What another document would have done on the job's recorded load (the replay simulator):"
                " summary, timeline, and the periods where it acts differently from what happened",
                "200",
                body={
                    "type": "object",
                    "required": ["job", "since", "until"],
                    "properties": {
                        "job": _JOB_BODY,
                        "since": {"type": "number"},
                        "until": {"type": "number"},
                        "rule": {"type": "string"},
                        "capacity": {"type": "number"},
                        "startup": {"type": "number"},
                        "initial": {"type": "integer"},
                    },
                },
                errors=(400, 404, 422),
            ),
        },
        "/api/v1/jobs/{job}/scale": {
            "parameters": [_JOB],
            "post": _op(
                "Manual scale within the bounds (reason Manual); answers once the apply round is done",
                "200",
                reply={"type": "object", "required": ["decision"], "properties": {"decision": _DECISION_REF}},
                body={
                    "type": "object",
                    "required": ["instances"],
                    "properties": {
                        "instances": {"type": "integer", "minimum": 0},
                        "reason": {"type": "string"},
                    },
                },
                params=[
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "several daemons: the same key on a retry of this call makes the"
                        " retry's write refused as a duplicate (decision key m:<key>), never applied twice",
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"},
                    }
                ],
                errors=(400, 404, 422),
            ),
        },
        "/api/v1/jobs/{job}/mode": {
            "parameters": [_JOB],
            "post": _op(
                "Change the job's mode; the reply says the mode the job runs in and why",
                "200",
                body={"type": "object", "required": ["mode"], "properties": {"mode": {"enum": _MODES}}},
                errors=(400, 404, 422),
                reply=_MODE_REPLY,
            ),
        },
        "/api/v1/templates": {
            "get": _op(
                "List templates with the jobs that name each",
                "200",
                reply={
                    "type": "object",
                    "required": ["templates"],
                    "properties": {"templates": {"type": "array"}},
                },
            )
        },
        "/api/v1/templates/{name}": {
            "parameters": [_TEMPLATE_PARAM],
            "get": _op("Read a template and the jobs naming it", "200", errors=(400, 404)),
            "put": _op(
                "Create or replace a template: every job naming it is re-validated and written with it in one"
                " transaction (422 naming the jobs it would break); ?dry_run=true lists each job's change",
                "200",
                body={"type": "object", "description": "job-document fields except job, target, template"},
                params=[{"name": "dry_run", "in": "query", "schema": {"enum": ["true", "false", "1", "0"]}}],
                errors=(400, 409, 413, 422),
                reply=_TEMPLATE_PUT_REPLY,
            ),
            "delete": _op("Delete a template no job names (409 naming them)", "204", errors=(400, 404, 409)),
        },
        "/api/v1/templates/{name}/rename": {
            "parameters": [_TEMPLATE_PARAM],
            "post": _op(
                "Rename a template no job names (409 naming them)",
                "200",
                body={"type": "object", "required": ["to"], "properties": {"to": _TEMPLATE_NAME}},
                errors=(400, 404, 409, 422),
            ),
        },
        "/api/v1/modes": {
            "post": _op(
                "Set the mode of every job a selector matches (one product line: the incident switch), in one"
                " transaction, audited once per job changed; 422 no_match when it matches nothing",
                "200",
                body={
                    "type": "object",
                    "required": ["select", "mode"],
                    "properties": {"select": _SELECT, "mode": {"enum": _MODES}},
                },
                errors=(400, 403, 413, 422),
                reply={
                    "type": "object",
                    "required": ["select", "mode", "jobs"],
                    "properties": {
                        "select": {"type": "object"},
                        "mode": {"enum": _MODES},
                        "jobs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["job", "version", "changed"],
                                "properties": {
                                    "job": {"type": "string"},
                                    "version": {"type": "integer"},
                                    "changed": {"type": "boolean"},
                                },
                            },
                        },
                    },
                },
            )
        },
        "/api/v1/clusters": {"get": _op("Marathon clusters, answering URL, event-stream state", "200")},
        "/api/v1/cluster": {
            "get": _op(
                "Several daemons (docs/cluster.md): whether this daemon is in a cluster, the live members "
                "with the shards each holds, and every shard's lease (owner instance id, epoch, valid) as "
                "this daemon last read them",
                "200",
                reply={
                    "type": "object",
                    "required": ["enabled"],
                    "properties": {
                        "enabled": {"type": "boolean"},
                        "name": {"type": "string"},
                        "shards": {"type": "integer"},
                        "this_daemon": {"type": "string"},
                        "members": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "instance_id": {"type": "string"},
                                    "stable_id": {"type": "string"},
                                    "addr": {"type": "string"},
                                    "shards_held": {"type": "integer"},
                                },
                            },
                        },
                        "unowned": {"type": "integer"},
                        "leases": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "shard": {"type": "integer"},
                                    "owner": {"type": ["string", "null"]},
                                    "epoch": {"type": "integer"},
                                    "valid": {"type": "boolean"},
                                },
                            },
                        },
                    },
                },
            )
        },
        "/api/v1/ingest/unmatched": {
            "get": _op(
                "The latest series (up to 100, newest first) whose samples no job takes, and the total of "
                "such samples since start; `count` is the samples of a series noted (a sample of each push)",
                "200",
                reply={
                    "type": "object",
                    "properties": {
                        "unmatched_samples": {"type": "integer"},
                        "series": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "endpoint": {"type": "string"},
                                    "metric": {"type": "string"},
                                    "tags": {"type": "string"},
                                    "counterType": {"type": "string"},
                                    "last_seen": {"type": "number"},
                                    "count": {"type": "integer"},
                                },
                            },
                        },
                    },
                },
            )
        },
        "/api/v1/openapi.json": {"get": _op("This description", "200")},
        "/api/v1/tokens": {
            "get": _op(
                "List tokens (never their secrets)",
                "200",
                reply={"type": "object", "properties": {"tokens": {"type": "array", "items": _TOKEN}}},
            ),
            "post": _op(
                "Create a token; the reply holds its secret, shown once",
                "201",
                body={
                    "type": "object",
                    "required": ["name", "scopes"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
                        "scopes": {"type": "array", "minItems": 1, "items": {"enum": _SCOPES}},
                        "jobs": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": 64,
                            "items": {"type": "string", "pattern": "^[A-Za-z0-9._*?-]{1,200}$"},
                            "description": "job-name globs (* any run, ? one character); default ['*']",
                        },
                        "expires": _DURATION,
                    },
                },
                errors=(400, 409, 413, 422),
                reply=_TOKEN,
            ),
        },
        "/api/v1/tokens/{name}": {
            "parameters": [_TOKEN_NAME],
            "delete": _op("Revoke a token", "204", errors=(400, 404)),
        },
        "/api/v1/tokens/{name}/rotate": {
            "parameters": [_TOKEN_NAME],
            "post": _op(
                "New secret (shown once); the old one keeps working for grace (default [auth] grace)",
                "200",
                errors=(400, 404, 422),
                reply=_TOKEN,
            ),
        },
        "/api/v1/audit": {
            "get": _op(
                "Audit entries, newest first",
                "200",
                params=[
                    {"name": "job", "in": "query", "schema": {"type": "string"}},
                    {"name": "since", "in": "query", "schema": {"type": "number", "minimum": 0}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                ],
                errors=(400,),
            )
        },
    }
    _secure(paths)
    out: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "oceand", "version": oceand.__version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": _SECURITY_SCHEMES,
            "responses": {
                "RateLimited": {
                    "description": "Too many writes for this token ([auth] write_rate / write_burst)",
                    "headers": {
                        "Retry-After": {
                            "description": "whole seconds until a write may go again",
                            "schema": {"type": "integer", "minimum": 1},
                        }
                    },
                    "content": "ERROR_CONTENT",
                },
                "Error": {
                    "description": "Error",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["error"],
                                "properties": {
                                    "error": {
                                        "type": "object",
                                        "required": ["code", "message", "details"],
                                        "properties": {
                                            "code": {"type": "string"},
                                            "message": {"type": "string"},
                                            "details": {"type": "array"},
                                        },
                                    }
                                },
                            }
                        }
                    },
                },
            },
        },
    }
    responses = out["components"]["responses"]
    responses["RateLimited"]["content"] = responses["Error"]["content"]
    return out


def _secure(paths: dict[str, Any]) -> None:
    """Each operation's security and scope, from the one table the middleware enforces (ROUTE_SCOPES)."""
    for path, ops in paths.items():
        for method, op in ops.items():
            if method == "parameters":
                continue
            scope = ROUTE_SCOPES[(method.upper(), path)]
            op["x-oceand-scope"] = scope
            if scope is None:
                op["security"] = []
            elif scope == "ingest":
                op["security"] = [{}, {"ingestToken": []}, {"bearer": ["ingest"]}]
            else:
                op["security"] = [{"bearer": [scope]}]
                op["responses"].setdefault("401", _ERR)
                op["responses"].setdefault("403", _ERR)
                if scope in WRITE_SCOPES and method != "get":  # [auth] write_rate / write_burst
                    op["responses"].setdefault("429", {"$ref": "#/components/responses/RateLimited"})


async def openapi(request: web.Request) -> web.Response:
    return json_response(spec())
