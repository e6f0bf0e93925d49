"""Templates in the store (oceand/store/templates.py), against every backend: a template and the jobs
that name it are written in one transaction, and a write whose inputs changed meanwhile writes nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from oceand.store import JobWrite, MySQLStore, SQLiteStore, TemplateConflict, TemplateWrite
from oceand.store.sqlite import _drive

AnyStore = SQLiteStore | MySQLStore
TEMPLATE: dict[str, Any] = {"max_instances": 8, "mode": "active"}


def job(name: str, template: str | None = "web", **doc: Any) -> JobWrite:
    own = {"template": template, "target": {"cluster": "lg", "app": f"/{name}"}} if template else None
    return JobWrite(name, {"job": name, **doc}, template, own)


async def test_template_and_jobs_roundtrip(store: AnyStore) -> None:
    versions, tv = await store.write_jobs([job("a"), job("b")], TemplateWrite("web", TEMPLATE))
    assert (versions, tv) == ({"a": 1, "b": 1}, 1)
    t = await store.get_template("web")
    assert t is not None and (t.doc, t.version) == (TEMPLATE, 1)
    assert [t.name for t in await store.list_templates()] == ["web"]
    links = await store.job_links("web")
    assert [(link.job, link.template, link.own["target"]["app"]) for link in links] == [
        ("a", "web", "/a"),
        ("b", "web", "/b"),
    ]
    assert [link.job for link in await store.job_links(job="b")] == ["b"]
    # the template changes: both jobs get a new version in the same write
    versions, tv = await store.write_jobs(
        [job("a", max_instances=9), job("b", max_instances=9)],
        TemplateWrite("web", {"max_instances": 9}, frozenset({"a", "b"})),
    )
    assert (versions, tv) == ({"a": 2, "b": 2}, 2)
    stored = await store.get_job("a")
    assert stored is not None and stored.doc["max_instances"] == 9


async def test_a_plain_write_drops_the_link(store: AnyStore) -> None:
    await store.write_jobs([job("a")], TemplateWrite("web", TEMPLATE))
    versions, _ = await store.write_jobs([job("a", template=None)], based_on={})
    assert versions == {"a": 2}
    assert await store.job_links() == []


async def test_deleting_a_job_drops_its_link(store: AnyStore) -> None:
    await store.write_jobs([job("a")], TemplateWrite("web", TEMPLATE))
    assert await store.delete_job("a")
    assert await store.job_links() == []
    assert await store.delete_template("web")
    assert await store.delete_template("web") is False


async def test_delete_in_use_is_refused(store: AnyStore) -> None:
    await store.write_jobs([job("b"), job("a")], TemplateWrite("web", TEMPLATE))
    with pytest.raises(TemplateConflict) as e:
        await store.delete_template("web")
    assert (e.value.code, e.value.jobs) == ("template_in_use", ["a", "b"])
    assert await store.get_template("web") is not None


@pytest.mark.parametrize(
    ("write", "code"),
    [
        pytest.param(
            {"template": TemplateWrite("web", {"max_instances": 3}, frozenset())},
            "template_changed",
            id="dependents changed",
        ),
        pytest.param({"based_on": {"web": 7}}, "template_changed", id="template version changed"),
        pytest.param({"based_on": {"gone": 1}}, "template_missing", id="template deleted"),
    ],
)
async def test_changed_inputs_write_nothing(store: AnyStore, write: dict[str, Any], code: str) -> None:
    await store.write_jobs([job("a")], TemplateWrite("web", TEMPLATE))
    await store.write_jobs([], TemplateWrite("other", TEMPLATE))
    with pytest.raises(TemplateConflict) as e:
        # the other template is written first in the same transaction: it must roll back too
        await store.write_jobs(
            [
                job("a", max_instances=3),
                job("new", template=write.get("template", TemplateWrite("web", {})).name),
            ],
            write.get("template", TemplateWrite("other", {"max_instances": 1})),
            write.get("based_on"),
        )
    assert e.value.code == code
    other = await store.get_template("other")
    assert other is not None and (other.version, other.doc) == (1, TEMPLATE)
    a = await store.get_job("a")
    assert a is not None and a.version == 1 and "max_instances" not in a.doc
    assert await store.get_job("new") is None


async def test_rename(store: AnyStore) -> None:
    await store.write_jobs([job("a")], TemplateWrite("web", TEMPLATE))
    await store.write_jobs([], TemplateWrite("free", TEMPLATE))
    with pytest.raises(TemplateConflict) as e:
        await store.rename_template("web", "web2")
    assert (e.value.code, e.value.jobs) == ("template_in_use", ["a"])
    with pytest.raises(TemplateConflict) as e:
        await store.rename_template("free", "web")
    assert e.value.code == "template_exists"
    assert await store.rename_template("free", "spare") == 2
    assert [t.name for t in await store.list_templates()] == ["spare", "web"]
    assert await store.rename_template("nothing", "x") is None


async def test_links_with_docs_and_a_job_moving_to_another_template(store: AnyStore) -> None:
    await store.write_jobs([job("a", max_instances=2)], TemplateWrite("web", TEMPLATE))
    await store.write_jobs([], TemplateWrite("other", TEMPLATE))
    [link] = await store.job_links("web", with_docs=True)
    assert (link.job, link.version, link.doc) == ("a", 1, {"job": "a", "max_instances": 2})
    assert (await store.job_links("web"))[0].doc is None  # not read unless asked
    versions, _ = await store.write_jobs([job("a", template="other")], based_on={"other": 1})
    assert versions == {"a": 2}
    assert await store.job_links("web") == []
    [moved] = await store.job_links("other", with_docs=True)
    assert (moved.job, moved.template, moved.own["template"], moved.version) == ("a", "other", "other", 2)


# ---- SQLite: the template functions run whole in the database's thread ---------------------------------


async def _returns() -> int:
    return 7


async def _raises() -> int:
    raise ValueError("refused")


async def _suspends() -> int:
    await asyncio.sleep(0)
    return 7


def test_drive_runs_a_coroutine_that_never_suspends() -> None:
    """`_drive` (oceand/store/sqlite.py) runs write_jobs on `_ThreadTx` in the database's thread: a value
    comes back, an exception goes through, and a coroutine that would wait for a loop is refused."""
    assert _drive(_returns()) == 7
    with pytest.raises(ValueError, match="refused"):
        _drive(_raises())
    with pytest.raises(RuntimeError, match="suspended"):
        _drive(_suspends())
