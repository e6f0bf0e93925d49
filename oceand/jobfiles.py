"""Job documents kept as files (PRODUCT §3, §7.1 `jobs.dir`): JSON, TOML or YAML, same fields.

`load_job_files(dir)` reads every `*.json`, `*.toml`, `*.yaml` and `*.yml` file directly in `dir`
(not in subdirectories; hidden files are skipped), in file-name order, and validates each with
`policies.document.parse_job`. All problems of all files are collected into one `ConfigError`, one
line per problem: `conf/jobs/web.yaml: rules[1].target: must be > 0`. A job name defined by two
files is an error naming both.

TOML and YAML have native date-times (`start = 2016-10-01T07:00:00`); they are read as ISO 8601
strings, the form the job document takes in JSON.

Templates (PRODUCT §13) as files: `<dir>/templates/<name>.json|toml|yaml|yml`, one template per file,
named by the file name. A job file that names a template (`template = "web-default"`) is laid over
the template of that name in `<dir>/templates/` (a job file names only templates kept as files, so the
whole directory is checked offline by `oceand check`); the effective document is validated like any
other and a problem is reported with the job file's path.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from oceand.config import ConfigError, ConfigProblem, toml_error
from policies.document import DocumentError, JobDocument, parse_job
from policies.templates import TemplateError, check_name, check_template, compose

SUFFIXES = (".json", ".toml", ".yaml", ".yml")
MAX_FILE_BYTES = 1024 * 1024
TEMPLATES_DIR = "templates"  # <jobs.dir>/templates/<name>.<suffix>: one template per file


@dataclass(frozen=True, slots=True)
class TemplateFile:
    path: Path
    name: str
    doc: dict[str, Any]


@dataclass(frozen=True, slots=True)
class JobFile:
    """A job file: its effective document, and the template it names with its own fields (or None)."""

    path: Path
    doc: JobDocument
    template: str | None = None
    own: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class JobTree:
    templates: list[TemplateFile]
    jobs: list[JobFile]


def job_file_paths(directory: Path) -> list[Path]:
    """The job files `load_job_files` reads, in the order it reads them."""
    return sorted(
        p
        for p in directory.iterdir()
        if p.suffix.lower() in SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def load_job_files(directory: Path) -> list[tuple[Path, JobDocument]]:
    """Read and validate every job file in `directory`; raise ConfigError listing every problem."""
    return [(f.path, f.doc) for f in load_job_tree(directory).jobs]


def load_job_tree(directory: Path) -> JobTree:
    """The templates of `directory/templates/` and the job files of `directory`, validated (job files
    that name a template laid over it); ConfigError listing every problem of every file."""
    paths = _listing(directory)
    problems: list[ConfigProblem] = []
    templates: dict[str, TemplateFile] = {}
    folder = directory / TEMPLATES_DIR
    if folder.is_dir():
        for path in _listing(folder):
            try:
                templates[path.stem] = _load_template_file(path)
            except ConfigError as e:
                problems.extend(e.problems)
    loaded: list[JobFile] = []
    first_file: dict[str, Path] = {}
    for path in paths:
        try:
            job = _load_job(path, templates)
        except ConfigError as e:
            problems.extend(e.problems)
            continue
        if job.doc.job in first_file:
            problems.append(
                ConfigProblem(
                    str(path), "job", f"job {job.doc.job!r} is also defined in {first_file[job.doc.job]}"
                )
            )
            continue
        first_file[job.doc.job] = path
        loaded.append(job)
    if problems:
        raise ConfigError(problems)
    return JobTree(sorted(templates.values(), key=lambda t: t.name), loaded)


def _listing(directory: Path) -> list[Path]:
    try:
        return job_file_paths(directory)
    except FileNotFoundError:
        raise ConfigError.one(directory, "(directory)", "no such directory") from None
    except NotADirectoryError:
        raise ConfigError.one(directory, "(directory)", "not a directory") from None
    except OSError as e:
        raise ConfigError.one(directory, "(directory)", f"cannot list: {e.strerror or e}") from None


def _load_template_file(path: Path) -> TemplateFile:
    try:
        name = check_name(path.stem)
        return TemplateFile(path, name, check_template(_read_data(path)))
    except TemplateError as e:
        raise ConfigError(
            [ConfigProblem(str(path), err["path"], err["message"]) for err in e.errors]
        ) from None


def _load_job(path: Path, templates: dict[str, TemplateFile]) -> JobFile:
    data = _read_data(path)
    if not isinstance(data, dict) or "template" not in data:
        return JobFile(path, _parse(path, data))
    name = data["template"]
    template = templates.get(name) if isinstance(name, str) else None
    if template is None:
        raise ConfigError.one(
            path,
            "template",
            f"no template {str(name)[:200]!r} in {path.parent / TEMPLATES_DIR} (job files name templates kept as files)",
        )
    return JobFile(path, _parse(path, compose(data, template.doc)), template.name, data)


def load_job_file(path: Path) -> JobDocument:
    """Read and validate one job file (format by suffix); raise ConfigError naming every bad field."""
    return _parse(path, _read_data(path))


def _read_data(path: Path) -> Any:
    """The data of one JSON, TOML or YAML file (date-times as ISO 8601 strings); ConfigError if unreadable."""
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise ConfigError.one(
            path, "(file)", f"unknown job file type {path.suffix!r} (use {', '.join(SUFFIXES)})"
        )
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ConfigError.one(path, "(file)", f"cannot read: {e.strerror or e}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError.one(path, "(file)", f"larger than {MAX_FILE_BYTES} bytes; is it a job document?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError.one(path, "(file)", f"not UTF-8 text (byte {e.start})") from None
    return _plain(reader(str(path), text))


def _parse(path: Path, data: Any) -> JobDocument:
    try:
        return parse_job(data)
    except DocumentError as e:
        raise ConfigError(
            [ConfigProblem(str(path), err["path"], err["message"]) for err in e.errors]
        ) from None


def _read_json(file: str, text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise ConfigError.one(file, f"line {e.lineno}, column {e.colno}", f"JSON syntax: {e.msg}") from None


def _read_toml(file: str, text: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise toml_error(file, e) from None


def _read_yaml(file: str, text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "(file)"
        what = " ".join(x for x in (e.context, e.problem) if x)
        raise ConfigError.one(file, where, f"YAML syntax: {what}") from None
    except yaml.YAMLError as e:
        raise ConfigError.one(file, "(file)", f"YAML syntax: {e}") from None


_READERS: dict[str, Callable[[str, str], Any]] = {
    ".json": _read_json,
    ".toml": _read_toml,
    ".yaml": _read_yaml,
    ".yml": _read_yaml,
}


def _plain(value: Any) -> Any:
    """Native TOML/YAML date-times -> ISO 8601 strings, recursively."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return value
