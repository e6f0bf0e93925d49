"""Templates and product lines on the admin API (PRODUCT §13, issue 16), against a daemon on 127.0.0.1."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.api.test_auth import with_root
from tests.conftest import Client, DaemonFactory
from tests.policies.test_templates import RULE

PDL = "_pdl.ocean_owt.inf_cop.xiaomi"
JOBS = [f"job.{name}_service.web{PDL}" for name in ("api", "front", "search")]
OTHER = "job.web_pdl.other_owt.inf_cop.xiaomi"
TEMPLATE: dict[str, Any] = {"mode": "active", "min_instances": 2, "max_instances": 8, "rules": [RULE]}


def own(job: str, **over: Any) -> dict[str, Any]:
    """A job that names the template `web-default`: its target and its own overrides."""
    app = "/" + job.split("_")[0].removeprefix("job.")
    return {"template": "web-default", "target": {"cluster": "lg", "app": app}, **over}


def plain(job: str, **over: Any) -> dict[str, Any]:
    return {"job": job, "target": {"cluster": "lg", "app": "/other"}, "rules": [RULE], **over}


def stricter(above: float = 90) -> dict[str, Any]:
    t = copy.deepcopy(TEMPLATE)
    t["rules"][0]["scale_out"]["above"] = above
    return t


OVERRIDES: dict[str, dict[str, Any]] = {JOBS[0]: {"min_instances": 3}}  # the others take the template's


async def three_jobs(c: Client) -> None:
    status, body = await c.call("PUT", "/api/v1/templates/web-default", TEMPLATE)
    assert (status, body["version"], body["dependents"]) == (201, 1, []), body
    for job in JOBS:
        status, body = await c.call("PUT", f"/api/v1/jobs/{job}", own(job, **OVERRIDES.get(job, {})))
        assert (status, body["version"], body["template"]) == (201, 1, "web-default"), body
    status, body = await c.call("PUT", f"/api/v1/jobs/{OTHER}", plain(OTHER, mode="active"))
    assert status == 201, body


async def audit(c: Client, action: str) -> list[dict[str, Any]]:
    _, body = await c.call("GET", "/api/v1/audit?limit=1000")
    return [e for e in body["entries"] if e["action"] == action]


async def test_show_three_jobs_on_one_template(start_daemon: DaemonFactory) -> None:
    """Issue 16's first Show: dry run lists 3 changes, apply bumps 3 versions with the same change, the
    product line pauses and resumes in one call each, every job audited once per change."""
    d, c = await start_daemon()
    await three_jobs(c)
    status, got = await c.call("GET", f"/api/v1/jobs/{JOBS[0]}")
    assert status == 200 and got["template"] == "web-default"
    assert got["own"] == {"job": JOBS[0], **own(JOBS[0], min_instances=3)}
    assert got["job"]["rules"][0]["scale_out"]["above"] == 80 and got["job"]["max_instances"] == 8
    assert got["job"]["min_instances"] == 3

    change = [{"path": "rules[0].scale_out.above", "before": 80.0, "after": 90.0}]
    status, dry = await c.call("PUT", "/api/v1/templates/web-default?dry_run=true", stricter())
    assert status == 200, dry
    assert (dry["dry_run"], dry["version"], dry["dependents"]) == (True, 1, JOBS)
    assert [(j["job"], j["version"], j["changes"], j["new_version"]) for j in dry["jobs"]] == [
        (job, 1, change, None) for job in JOBS
    ]
    for job in JOBS:  # nothing changed
        assert d.engine.jobs[job].version == 1
        assert d.engine.jobs[job].doc.rules[0].scale_out.above == 80  # type: ignore[union-attr]
    _, t = await c.call("GET", "/api/v1/templates/web-default")
    assert (t["version"], t["template"], t["jobs"]) == (1, TEMPLATE, JOBS)

    status, done = await c.call("PUT", "/api/v1/templates/web-default", stricter())
    assert status == 200, done
    assert (done["dry_run"], done["version"]) == (False, 2)
    assert [(j["job"], j["version"], j["new_version"], j["changes"]) for j in done["jobs"]] == [
        (job, 1, 2, change) for job in JOBS
    ]
    for job in JOBS:  # the engine runs the effective document; GET and status show it
        assert d.engine.jobs[job].version == 2
        assert d.engine.jobs[job].doc.rules[0].scale_out.above == 90  # type: ignore[union-attr]
        _, got = await c.call("GET", f"/api/v1/jobs/{job}")
        assert got["job"]["rules"][0]["scale_out"]["above"] == 90 and got["version"] == 2
        _, status_body = await c.call("GET", f"/api/v1/jobs/{job}/status")
        assert status_body["template"] == "web-default" and status_body["version"] == 2
        assert status_body["document"]["rules"][0]["scale_out"]["above"] == 90
        assert status_body["own"] == {"job": job, **own(job, **OVERRIDES.get(job, {}))}
    entries = await audit(c, "job.template")
    assert sorted((e["job"], e["before_version"], e["after_version"]) for e in entries) == [
        (job, 1, 2) for job in JOBS
    ]
    assert all(e["detail"]["changes"] == change for e in entries)
    assert len(await audit(c, "template.replace")) == 1
    status, again = await c.call("PUT", "/api/v1/templates/web-default", stricter())
    assert (status, again["version"], again["jobs"]) == (200, 2, [])  # the same template: no new version

    status, _ = await c.call("GET", "/api/v1/jobs?pdl=other")
    _, listed = await c.call("GET", "/api/v1/jobs?pdl=ocean&cop=xiaomi")
    assert [(j["job"], j["template"]) for j in listed["jobs"]] == [(job, "web-default") for job in JOBS]

    status, paused = await c.call("POST", "/api/v1/modes", {"select": {"pdl": "ocean"}, "mode": "paused"})
    assert status == 200, paused
    assert paused["jobs"] == [{"job": job, "version": 3, "changed": True} for job in JOBS]
    assert {job: d.engine.jobs[job].doc.mode for job in JOBS} == dict.fromkeys(JOBS, "paused")
    assert d.engine.jobs[OTHER].doc.mode == "active"  # another product line
    # the pause is the job's own field: the link stays, and a template change keeps the jobs paused
    _, got = await c.call("GET", f"/api/v1/jobs/{JOBS[1]}")
    assert (got["template"], got["own"]["mode"]) == ("web-default", "paused")
    status, body = await c.call("PUT", "/api/v1/templates/web-default", stricter(95))
    assert status == 200 and [j["new_version"] for j in body["jobs"]] == [4, 4, 4]
    assert {job: d.engine.jobs[job].doc.mode for job in JOBS} == dict.fromkeys(JOBS, "paused")

    status, resumed = await c.call("POST", "/api/v1/modes", {"select": {"pdl": "ocean"}, "mode": "active"})
    assert status == 200, resumed
    assert [(j["job"], j["version"]) for j in resumed["jobs"]] == [(job, 5) for job in JOBS]
    assert {job: d.engine.jobs[job].doc.mode for job in JOBS} == dict.fromkeys(JOBS, "active")
    modes = await audit(c, "job.mode")
    assert sorted((e["job"], e["after_version"], e["detail"]["mode"]) for e in modes) == sorted(
        [(job, 3, "paused") for job in JOBS] + [(job, 5, "active") for job in JOBS]
    )
    assert all(e["detail"]["select"] == {"pdl": "ocean"} for e in modes)


async def test_a_job_written_without_its_template_becomes_plain(start_daemon: DaemonFactory) -> None:
    _, c = await start_daemon()
    await three_jobs(c)
    status, body = await c.call("PUT", f"/api/v1/jobs/{JOBS[0]}", plain(JOBS[0]))
    assert (status, body["version"], body["template"]) == (200, 2, None)
    _, t = await c.call("GET", "/api/v1/templates/web-default")
    assert t["jobs"] == JOBS[1:]
    # the same own document again keeps the version
    status, body = await c.call("PUT", f"/api/v1/jobs/{JOBS[1]}", own(JOBS[1]))
    assert (status, body["version"]) == (200, 1)
    # overrides: the job's own fields win, null removes a template's field
    status, body = await c.call(
        "PUT", f"/api/v1/jobs/{JOBS[1]}", own(JOBS[1], max_instances=3, min_instances=None)
    )
    assert (status, body["version"]) == (200, 2)
    assert (body["job"]["max_instances"], body["job"]["min_instances"]) == (3, 1)  # 1: the document default
    created = f"job.new_service.web{PDL}"  # POST takes the same document, its name inside
    status, body = await c.call("POST", "/api/v1/jobs", {"job": created, **own(created)})
    assert (status, body["template"], body["job"]["max_instances"]) == (201, "web-default", 8), body
    [entry] = [e for e in await audit(c, "job.create") if e["job"] == created]
    assert entry["detail"] == {"template": "web-default", "template_version": 1}
    assert (await c.call("DELETE", f"/api/v1/jobs/{created}"))[0] == 204
    status, _ = await c.call("DELETE", f"/api/v1/jobs/{JOBS[2]}")
    _, t = await c.call("GET", "/api/v1/templates")
    assert t["templates"] == [
        {
            "name": "web-default",
            "version": 1,
            "updated_at": t["templates"][0]["updated_at"],
            "jobs": [JOBS[1]],
        }
    ]


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "code", "names"),
    [
        pytest.param(
            "PUT",
            "/api/v1/templates/chained",
            {"template": "web-default", "max_instances": 3},
            422,
            "template_cycle",
            "template",
            id="template names a template",
        ),
        pytest.param(
            "PUT",
            "/api/v1/templates/web-default",
            {**TEMPLATE, "max_instances": 2},
            422,
            "template_breaks_jobs",
            JOBS[0],
            id="merge makes the jobs invalid",
        ),
        pytest.param(
            "PUT",
            "/api/v1/templates/bad",
            {"target": {"cluster": "lg", "app": "/x"}},
            422,
            "invalid_template",
            "target",
            id="template holds a target",
        ),
        pytest.param(
            "PUT",
            f"/api/v1/jobs/{JOBS[0]}",
            own(JOBS[0], max_instances=1),
            422,
            "invalid_document",
            "min_instances",
            id="job override makes its document invalid",
        ),
        pytest.param(
            "PUT",
            f"/api/v1/jobs/{JOBS[0]}",
            own(JOBS[0], template="nothing"),
            422,
            "template_not_found",
            "nothing",
            id="job names a missing template",
        ),
        pytest.param(
            "POST",
            "/api/v1/jobs",
            {"job": "job.x_pdl.ocean", "template": "../etc"},
            400,
            "bad_template_name",
            "template name",
            id="bad template name",
        ),
        pytest.param(
            "POST",
            "/api/v1/templates/web-default/rename",
            {"to": "web-2"},
            409,
            "template_in_use",
            JOBS[2],
            id="rename while jobs use it",
        ),
        pytest.param(
            "DELETE",
            "/api/v1/templates/web-default",
            None,
            409,
            "template_in_use",
            JOBS[1],
            id="delete in use",
        ),
        pytest.param(
            "POST",
            "/api/v1/modes",
            {"select": {"pdl": "nothing"}, "mode": "paused"},
            422,
            "no_match",
            "pdl=nothing",
            id="selector matches nothing",
        ),
        pytest.param(
            "POST",
            "/api/v1/modes",
            {"select": {"colour": "red"}, "mode": "paused"},
            422,
            "invalid_body",
            "colour",
            id="selector with an unknown key",
        ),
        pytest.param(
            "POST",
            "/api/v1/modes",
            {"select": {}, "mode": "paused"},
            422,
            "invalid_body",
            "select",
            id="empty",
        ),
        pytest.param(
            "POST",
            "/api/v1/modes",
            {"select": {"pdl": "ocean"}, "mode": "off"},
            422,
            "invalid_body",
            "mode",
            id="unknown mode",
        ),
        pytest.param(
            "GET", "/api/v1/jobs?pdl=" + "x" * 201, None, 422, "invalid_body", "query.pdl", id="long filter"
        ),
        pytest.param(
            "GET", "/api/v1/templates/nothing", None, 404, "template_not_found", "nothing", id="no template"
        ),
    ],
)
async def test_bad_input_is_a_clear_4xx_and_changes_nothing(
    start_daemon: DaemonFactory,
    method: str,
    path: str,
    payload: Any,
    status: int,
    code: str,
    names: str,
) -> None:
    d, c = await start_daemon()
    await three_jobs(c)
    _, audit_before = await c.call("GET", "/api/v1/audit?limit=1000")
    got, body = await c.call(method, path, payload)
    assert (got, body["error"]["code"]) == (status, code), body
    assert names in body["error"]["message"] + str(body["error"]["details"])
    assert {job: d.engine.jobs[job].version for job in JOBS} == dict.fromkeys(JOBS, 1)
    _, t = await c.call("GET", "/api/v1/templates/web-default")
    assert (t["version"], t["template"], t["jobs"]) == (1, TEMPLATE, JOBS)
    _, audit_after = await c.call("GET", "/api/v1/audit?limit=1000")
    assert audit_after == audit_before


async def test_template_breaking_jobs_names_each_job_and_field(start_daemon: DaemonFactory) -> None:
    _, c = await start_daemon()
    await three_jobs(c)
    assert (await c.call("PUT", f"/api/v1/jobs/{JOBS[2]}", own(JOBS[2], min_instances=4)))[0] == 200
    status, body = await c.call(
        "PUT", "/api/v1/templates/web-default?dry_run=true", {**TEMPLATE, "max_instances": 2}
    )
    assert (status, body["error"]["code"]) == (422, "template_breaks_jobs")
    assert "2 job(s)" in body["error"]["message"]
    assert {(e["job"], e["path"]) for e in body["error"]["details"]} == {
        (JOBS[0], "(document)"),
        (JOBS[2], "(document)"),
    }


async def test_unused_template_deletes_and_renames(start_daemon: DaemonFactory) -> None:
    _, c = await start_daemon()
    assert (await c.call("PUT", "/api/v1/templates/spare", {"max_instances": 4}))[0] == 201
    status, body = await c.call("POST", "/api/v1/templates/spare/rename", {"to": "spare-2"})
    assert (status, body) == (200, {"name": "spare-2", "version": 2})
    assert (await c.call("DELETE", "/api/v1/templates/spare-2"))[0] == 204
    assert (await c.call("DELETE", "/api/v1/templates/spare-2"))[0] == 404
    actions = [e["action"] for e in (await c.call("GET", "/api/v1/audit"))[1]["entries"]]
    assert actions[:3] == ["template.delete", "template.rename", "template.create"]


async def test_webhook_secret_of_a_template_is_shown_redacted_and_kept(start_daemon: DaemonFactory) -> None:
    _, c = await start_daemon()
    secret = {**TEMPLATE, "notify": {"webhook": "http://u:pw@127.0.0.1:9/hook?token=abc"}}
    assert (await c.call("PUT", "/api/v1/templates/web-default", secret))[0] == 201
    _, got = await c.call("GET", "/api/v1/templates/web-default")
    assert "pw" not in str(got) and "abc" not in str(got)
    status, body = await c.call("PUT", "/api/v1/templates/web-default", got["template"])  # sent back as shown
    assert (status, body["version"]) == (200, 1)
    status, body = await c.call("PUT", f"/api/v1/jobs/{JOBS[0]}", own(JOBS[0]))
    assert status == 201 and "pw" not in str(body)


async def test_a_token_must_cover_every_job_a_template_change_writes(
    start_daemon: DaemonFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A template change is a change to the jobs naming it: a token limited to one product line cannot
    make it when a job of another line names the template, and learns nothing about that job's errors."""
    async with aiohttp.ClientSession() as session:
        api, root = await with_root(start_daemon, session, tmp_path, capsys)
        status, body = await api(
            "POST", "/api/v1/tokens", root, {"name": "line", "scopes": ["write"], "jobs": [f"*{PDL}"]}
        )
        assert status == 201, body
        line = body["secret"]
        assert (await api("PUT", "/api/v1/templates/web-default", root, TEMPLATE))[0] == 201
        assert (await api("PUT", f"/api/v1/jobs/{JOBS[0]}", root, own(JOBS[0])))[0] == 201
        status, body = await api("PUT", "/api/v1/templates/web-default?dry_run=true", line, stricter())
        assert status == 200, body  # every job naming it is the token's
        assert (await api("PUT", f"/api/v1/jobs/{OTHER}", root, own(OTHER)))[0] == 201
        for query in ("?dry_run=true", ""):
            broken = {**TEMPLATE, "max_instances": 1}  # would break both jobs: still only a 403
            status, body = await api("PUT", f"/api/v1/templates/web-default{query}", line, broken)
            assert (status, body["error"]["code"]) == (403, "job_outside_token"), body
            assert OTHER in body["error"]["message"] and "min_instances" not in str(body)
        _, got = await api("GET", "/api/v1/templates/web-default", root)
        assert got["version"] == 1


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param({}, {"webhook": "http://u:s3cretNEW@127.0.0.1:9/h"}, id="notify added"),
        pytest.param(
            {"group": "g"},
            {"group": "g", "webhook": "http://127.0.0.1:9/h?token=s3cretNEW"},
            id="webhook added",
        ),
        pytest.param(
            {"webhook": "http://u:s3cretOLD@127.0.0.1:9/h"},
            {"webhook": "http://u:s3cretNEW@127.0.0.1:9/h"},
            id="changed",
        ),
    ],
)
async def test_a_change_list_shows_no_webhook_secret(
    start_daemon: DaemonFactory, before: dict[str, Any], after: dict[str, Any]
) -> None:
    d, c = await start_daemon()
    first = {**TEMPLATE, "notify": before} if before else TEMPLATE
    assert (await c.call("PUT", "/api/v1/templates/web-default", first))[0] == 201
    assert (await c.call("PUT", f"/api/v1/jobs/{JOBS[0]}", own(JOBS[0])))[0] == 201
    for query in ("?dry_run=true", ""):
        status, body = await c.call(
            "PUT", f"/api/v1/templates/web-default{query}", {**TEMPLATE, "notify": after}
        )
        assert status == 200 and len(body["jobs"]) == 1, body
        assert "s3cret" not in str(body), body
    entries = await audit(c, "job.template")
    assert len(entries) == 1 and "s3cret" not in str(entries)
    stored = await d.store.get_job(JOBS[0])
    assert stored is not None and stored.doc["notify"]["webhook"] == after["webhook"]  # the real one is kept
