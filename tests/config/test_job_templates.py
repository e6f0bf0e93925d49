"""Templates in job files (PRODUCT §13): `<jobs.dir>/templates/<name>.*`, job files that name one, and
the daemon applying both at start and on reload (one transaction per template, audited)."""

from __future__ import annotations

from pathlib import Path

import pytest

from oceand.config import ConfigError
from oceand.jobfiles import load_job_tree
from tests.conftest import DaemonFactory

TEMPLATE_YAML = """
mode: active
max_instances: 8
rules:
  - name: cpu
    type: threshold
    metric: cpu.used
    scale_out: {above: 80, consecutive: 3}
"""
PDL = "_pdl.ocean_owt.inf_cop.xiaomi"


def job_toml(name: str, extra: str = "") -> str:
    return f'job = "job.{name}{PDL}"\ntemplate = "web-default"\ntarget = {{ cluster = "lg", app = "/{name}" }}\n{extra}'


def tree(tmp_path: Path, template: str = TEMPLATE_YAML, **jobs: str) -> Path:
    d = tmp_path / "jobs"
    (d / "templates").mkdir(parents=True, exist_ok=True)
    (d / "templates" / "web-default.yaml").write_text(template)
    for name, text in (
        jobs or {"api": job_toml("api"), "front": job_toml("front", "max_instances = 3\n")}
    ).items():
        (d / f"{name}.toml").write_text(text)
    return d


def test_job_files_are_laid_over_their_template(tmp_path: Path) -> None:
    t = load_job_tree(tree(tmp_path))
    assert [(x.name, x.doc["max_instances"]) for x in t.templates] == [("web-default", 8)]
    got = {j.doc.job: (j.template, j.doc.max_instances, j.doc.mode, j.doc.rules[0].name) for j in t.jobs}
    assert got == {
        f"job.api{PDL}": ("web-default", 8, "active", "cpu"),
        f"job.front{PDL}": ("web-default", 3, "active", "cpu"),
    }
    assert t.jobs[0].own is not None and t.jobs[0].own["template"] == "web-default"


@pytest.mark.parametrize(
    ("template", "jobs", "where", "fragment"),
    [
        pytest.param(
            "template: other\n",
            {},
            "templates/web-default.yaml: template",
            "cannot name a template",
            id="cycle",
        ),
        pytest.param(
            "target: {cluster: lg, app: /x}\n",
            {},
            "web-default.yaml: target",
            "each job has its own",
            id="target",
        ),
        pytest.param(
            TEMPLATE_YAML,
            {"api": job_toml("api").replace("web-default", "missing")},
            "api.toml: template",
            "no template 'missing'",
            id="job names a missing template",
        ),
        pytest.param(
            TEMPLATE_YAML,
            {"api": job_toml("api", "min_instances = 9\n")},
            "api.toml: (document)",
            "min_instances (9) > max_instances (8)",
            id="merge makes the job invalid",
        ),
    ],
)
def test_bad_template_files_name_the_file_and_key(
    tmp_path: Path, template: str, jobs: dict[str, str], where: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as e:
        load_job_tree(tree(tmp_path, template, **jobs))
    assert where in str(e.value) and fragment in str(e.value), str(e.value)


async def test_daemon_applies_template_files_and_their_changes(
    start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    d_jobs = tree(tmp_path)
    d, c = await start_daemon(jobs={"dir": str(d_jobs)})
    api, front = f"job.api{PDL}", f"job.front{PDL}"
    _, got = await c.call("GET", f"/api/v1/jobs/{api}")
    assert (got["template"], got["version"], got["job"]["max_instances"]) == ("web-default", 1, 8)
    _, t = await c.call("GET", "/api/v1/templates/web-default")
    assert (t["version"], t["jobs"]) == (1, [api, front])
    # the template file changes: on reload both jobs follow, audited from the file
    (d_jobs / "templates" / "web-default.yaml").write_text(TEMPLATE_YAML.replace("above: 80", "above: 90"))
    async with d.jobs._lock:
        await d.jobs.apply_files(d.config.jobs_dir)
    for job in (api, front):
        stored = await d.store.get_job(job)
        assert stored is not None and stored.version == 2
        assert stored.doc["rules"][0]["scale_out"]["above"] == 90
    _, entries = await c.call("GET", "/api/v1/audit")
    sources = {(e["action"], e["job"], e["source"].rsplit("/", 1)[-1]) for e in entries["entries"]}
    assert ("job.template", api, "web-default.yaml") in sources and (
        "job.template",
        front,
        "web-default.yaml",
    ) in sources
    # applied again unchanged: nothing new
    async with d.jobs._lock:
        await d.jobs.apply_files(d.config.jobs_dir)
    assert (await d.store.get_job(api)).version == 2  # type: ignore[union-attr]


async def test_a_template_file_that_breaks_an_api_job_is_refused_whole(
    start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    d_jobs = tree(tmp_path, api=job_toml("api"))
    d, c = await start_daemon(jobs={"dir": str(d_jobs)})
    extra = f"job.extra{PDL}"  # made through the API, naming the file's template
    own = {"template": "web-default", "target": {"cluster": "lg", "app": "/extra"}, "max_instances": 3}
    assert (await c.call("PUT", f"/api/v1/jobs/{extra}", own))[0] == 201
    (d_jobs / "templates" / "web-default.yaml").write_text(TEMPLATE_YAML + "min_instances: 5\n")
    with pytest.raises(ConfigError) as e:
        async with d.jobs._lock:
            await d.jobs.apply_files(d.config.jobs_dir)
    assert "web-default.yaml" in str(e.value) and extra in str(e.value), str(e.value)
    _, t = await c.call("GET", "/api/v1/templates/web-default")
    assert t["version"] == 1
    stored = await d.store.get_job(f"job.api{PDL}")
    assert stored is not None and stored.version == 1
