"""oceand.jobfiles: job documents as JSON, TOML or YAML files (PRODUCT §3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from oceand.config import ConfigError
from oceand.jobfiles import job_file_paths, load_job_file, load_job_files

JSON = """{"job": "web", "target": {"cluster": "lg", "app": "/ocean/web"}, "mode": "active",
 "rules": [{"name": "cpu", "type": "threshold", "metric": "cpu.used",
            "scale_out": {"above": 80, "consecutive": 3}}]}"""

TOML = """
job = "api"
target = { cluster = "lg", app = "/ocean/api" }
period = "30s"
max_instances = 8

[[rules]]
name = "qps"
type = "target"
metric = "proc.qps"
target = 500

[[rules]]
name = "morning"
type = "schedule"
start = 2016-10-01T07:00:00
every = "1d"
timezone = "Asia/Shanghai"
instances = 4
"""

YAML = """
job: batch
target: {cluster: hy, app: /ocean/batch}
min_instances: 0
rules:
  - name: night
    type: schedule
    cron: 0 2 * * *
    instances: 2
  - name: falcon
    type: alarm
    match: {stra_id: 1042}
    step: "50%"
notify: {group: sre_ocean}
"""


@pytest.mark.parametrize(
    ("name", "text", "job", "check"),
    [
        pytest.param("web.json", JSON, "web", lambda d: d.mode == "active", id="json"),
        pytest.param("api.toml", TOML, "api", lambda d: d.period == 30.0 and d.max_instances == 8, id="toml"),
        pytest.param(
            "api2.toml",
            TOML,
            "api",
            lambda d: d.rules[1].start == "2016-10-01T07:00:00",
            id="toml date-time read as ISO",
        ),
        pytest.param("batch.yaml", YAML, "batch", lambda d: d.rules[1].step == "50%", id="yaml"),
        pytest.param(
            "batch.yml", YAML, "batch", lambda d: d.mode == "dry-run", id="yml, mode defaults to dry-run"
        ),
    ],
)
def test_each_format_loads(tmp_path: Path, name: str, text: str, job: str, check: object) -> None:
    path = tmp_path / name
    path.write_text(text)
    doc = load_job_file(path)
    assert doc.job == job
    assert callable(check) and check(doc)


def test_directory_is_read_in_name_order_and_other_files_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(YAML)
    (tmp_path / "a.json").write_text(JSON)
    (tmp_path / "c.TOML").write_text(TOML)
    (tmp_path / "README.md").write_text("# not a job")
    (tmp_path / ".hidden.json").write_text("{")
    (tmp_path / "sub.json").mkdir()
    (tmp_path / "sub.json" / "x.json").write_text("{")
    loaded = load_job_files(tmp_path)
    assert [(p.name, d.job) for p, d in loaded] == [("a.json", "web"), ("b.yaml", "batch"), ("c.TOML", "api")]
    assert [p.name for p in job_file_paths(tmp_path)] == ["a.json", "b.yaml", "c.TOML"]


def test_empty_directory(tmp_path: Path) -> None:
    assert load_job_files(tmp_path) == []


BAD_RULE = '{"job": "web", "target": {"cluster": "lg", "app": "/ocean/web"}, "min_instances": 5,\n' + (
    ' "max_instances": 2, "rules": [{"name": "q", "type": "target", "metric": "m", "target": 0}], "colour": 1}'
)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        pytest.param(
            "bad.json",
            BAD_RULE,
            [("rules[0].target", "greater than 0"), ("colour", "unknown field")],
            id="every field error with its path",
        ),
        pytest.param(
            "bounds.json",
            '{"job": "web", "target": {"cluster": "lg", "app": "/ocean/web"}, "min_instances": 5, "max_instances": 2}',
            [("(document)", "min_instances (5) > max_instances (2)")],
            id="whole-document error",
        ),
        pytest.param(
            "cron.yaml",
            "job: w\ntarget: {cluster: lg, app: /w}\nrules:\n  - {name: n, type: schedule, cron: '99 * * * *', instances: 1}\n",
            [("rules[0].cron", "bad cron")],
            id="schedule syntax error path",
        ),
        pytest.param(
            "syntax.json", '{"job": "web",\n "x": }', [("line 2, column 7", "JSON syntax")], id="json syntax"
        ),
        pytest.param(
            "syntax.toml", 'job = "web"\nmode = \n', [("line 2, column 8", "TOML syntax")], id="toml syntax"
        ),
        pytest.param(
            "syntax.yaml",
            "job: web\nrules: [a, b\nmode: x\n",
            [("line 3, column 5", "YAML syntax")],
            id="yaml syntax",
        ),
        pytest.param("list.json", "[1, 2]", [("(document)", "a JSON object")], id="not an object"),
        pytest.param("empty.yaml", "", [("(document)", "a JSON object")], id="empty yaml"),
        pytest.param(
            "wrong.toml", 'job = "web"\ntarget = "lg"\n', [("target", "valid dictionary")], id="wrong type"
        ),
    ],
)
def test_invalid_files_name_the_file_and_every_field(
    tmp_path: Path, name: str, text: str, expected: list[tuple[str, str]]
) -> None:
    path = tmp_path / name
    path.write_text(text)
    (tmp_path / "ok.json").write_text(JSON)
    with pytest.raises(ConfigError) as info:
        load_job_files(tmp_path)
    problems = info.value.problems
    assert {p.file for p in problems} == {str(path)}, str(info.value)
    assert [p.key for p in problems] == [k for k, _ in expected], str(info.value)
    for p, (_, fragment) in zip(problems, expected, strict=True):
        assert fragment in p.message, str(info.value)
        assert f"{path}: {p.key}: " in str(info.value)


def test_problems_of_several_files_are_reported_together(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{")
    (tmp_path / "b.yaml").write_text("job: [")
    with pytest.raises(ConfigError) as info:
        load_job_files(tmp_path)
    assert [Path(p.file).name for p in info.value.problems] == ["a.json", "b.yaml"]


def test_duplicate_job_names_name_both_files(tmp_path: Path) -> None:
    (tmp_path / "one.json").write_text(JSON)
    (tmp_path / "two.yaml").write_text(JSON)  # JSON is YAML too
    with pytest.raises(ConfigError) as info:
        load_job_files(tmp_path)
    e = info.value
    assert (e.file, e.key) == (str(tmp_path / "two.yaml"), "job")
    assert str(tmp_path / "one.json") in e.message and "'web'" in e.message


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        pytest.param(lambda d: d / "nope", "no such directory", id="missing directory"),
        pytest.param(lambda d: d / "file.json", "not a directory", id="a file, not a directory"),
    ],
)
def test_directory_errors(tmp_path: Path, make: object, fragment: str) -> None:
    (tmp_path / "file.json").write_text(JSON)
    assert callable(make)
    path = make(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_job_files(path)
    assert (info.value.file, info.value.key) == (str(path), "(directory)")
    assert fragment in info.value.message


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        pytest.param("big.json", b" " * (1024 * 1024 + 1), "larger than", id="too large"),
        pytest.param("bin.json", b'{"job": "\xff"}', "not UTF-8", id="not utf-8"),
        pytest.param("x.txt", b"{}", "unknown job file type", id="unknown suffix, one file"),
    ],
)
def test_file_level_errors(tmp_path: Path, name: str, content: bytes, fragment: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_job_file(path)
    assert (info.value.file, info.value.key) == (str(path), "(file)")
    assert fragment in info.value.message
