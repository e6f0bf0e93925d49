"""Templates in job files (PRODUCT §13): `<jobs.dir>/templates/<name>.*`, job files that name one, and
the daemon applying both at start and on reload (one transaction per template, audited)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oceand import jobs as jobs_module
from oceand.config import ConfigError
from oceand.daemon import Daemon
from oceand.jobfiles import load_job_tree
from oceand.store.base import TemplateConflict
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


# ---- many job files: stored in batches --------------------------------------------------------------


def counted(d: Daemon) -> dict[str, list[int]]:
    """The sizes of the store's write_jobs and add_audits calls from now on."""
    calls: dict[str, list[int]] = {"write_jobs": [], "add_audits": []}
    for name in calls:
        real = getattr(d.store, name)

        async def call(items: list[Any], *a: Any, _real: Any = real, _name: str = name, **k: Any) -> Any:
            calls[_name].append(len(items))
            return await _real(items, *a, **k)

        setattr(d.store, name, call)
    return calls


async def test_job_files_are_stored_and_audited_in_batches(
    start_daemon: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FILE_BATCH jobs a transaction (3 here): 7 new files take 3 writes and 3 audit inserts; on reload
    only the changed files are written, each audited as a replace of the version before."""
    monkeypatch.setattr(jobs_module, "FILE_BATCH", 3)
    d_jobs = tree(tmp_path)
    d, c = await start_daemon(jobs={"dir": str(d_jobs)})
    calls = counted(d)
    for i in range(7):
        (d_jobs / f"j{i}.toml").write_text(job_toml(f"j{i}"))
    async with d.jobs._lock:
        await d.jobs.apply_files(d.config.jobs_dir)
    assert calls == {"write_jobs": [3, 3, 1], "add_audits": [3, 3, 1]}
    new = [f"job.j{i}{PDL}" for i in range(7)]
    _, got = await c.call("GET", "/api/v1/audit?limit=100")
    created = {e["job"]: (e["actor"], e["before_version"], e["after_version"]) for e in got["entries"]}
    assert {job: created[job] for job in new} == {job: ("local", None, 1) for job in new}
    for i in (2, 5):
        (d_jobs / f"j{i}.toml").write_text(job_toml(f"j{i}", "max_instances = 4\n"))
    async with d.jobs._lock:
        await d.jobs.apply_files(d.config.jobs_dir)
    assert calls == {"write_jobs": [3, 3, 1, 2], "add_audits": [3, 3, 1, 2]}
    _, got = await c.call("GET", "/api/v1/audit?limit=100")
    replaced = {
        e["job"]: (e["before_version"], e["after_version"])
        for e in got["entries"]
        if e["action"] == "job.replace"
    }
    assert replaced == {f"job.j2{PDL}": (1, 2), f"job.j5{PDL}": (1, 2)}
    for i, job in enumerate(new):
        stored = await d.store.get_job(job)
        assert stored is not None and stored.version == (2 if i in (2, 5) else 1)
        assert stored.doc["max_instances"] == (4 if i in (2, 5) else 8)
    async with d.jobs._lock:  # unchanged: nothing written
        await d.jobs.apply_files(d.config.jobs_dir)
    assert calls == {"write_jobs": [3, 3, 1, 2], "add_audits": [3, 3, 1, 2]}


async def test_a_batch_the_store_refuses_names_the_files_and_writes_nothing(
    start_daemon: DaemonFactory, tmp_path: Path
) -> None:
    """A template deleted between the read of the files and the write (the store's TemplateConflict): a
    ConfigError naming the file of each job concerned; no job of the batch stored, nothing audited."""
    d_jobs = tree(tmp_path)
    d, c = await start_daemon(jobs={"dir": str(d_jobs)})
    for name in ("x", "y"):
        (d_jobs / f"{name}.toml").write_text(job_toml(name))
    real = d.store.write_jobs

    async def gone(jobs: list[Any], *a: Any, **k: Any) -> Any:
        users = sorted(w.name for w in jobs if w.template == "web-default")
        raise TemplateConflict("template_missing", "no template named 'web-default'", users)

    d.store.write_jobs = gone  # type: ignore[method-assign]
    with pytest.raises(ConfigError) as e:
        async with d.jobs._lock:
            await d.jobs.apply_files(d.config.jobs_dir)
    assert [(Path(p.file).name, p.key) for p in e.value.problems] == [
        ("x.toml", "template"),
        ("y.toml", "template"),
    ]
    assert "no template named 'web-default'" in str(e.value)
    d.store.write_jobs = real  # type: ignore[method-assign]
    assert await d.store.get_job(f"job.x{PDL}") is None
    _, entries = await c.call("GET", "/api/v1/audit?limit=100")
    assert not [e for e in entries["entries"] if e["job"] in (f"job.x{PDL}", f"job.y{PDL}")]
