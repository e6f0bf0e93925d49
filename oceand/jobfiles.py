"""Job documents kept as files (PRODUCT §3, §7.1 `jobs.dir`): JSON, TOML or YAML, same fields.

`load_job_files(dir)` reads every `*.json`, `*.toml`, `*.yaml` and `*.yml` file directly in `dir`
(not in subdirectories; hidden files are skipped), in file-name order, and validates each with
`policies.document.parse_job`. All problems of all files are collected into one `ConfigError`, one
line per problem: `conf/jobs/web.yaml: rules[1].target: must be > 0`. A job name defined by two
files is an error naming both.

TOML and YAML have native date-times (`start = 2016-10-01T07:00:00`); they are read as ISO 8601
strings, the form the job document takes in JSON.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import yaml

from oceand.config import ConfigError, ConfigProblem, toml_error
from policies.document import DocumentError, JobDocument, parse_job

SUFFIXES = (".json", ".toml", ".yaml", ".yml")
MAX_FILE_BYTES = 1024 * 1024


def job_file_paths(directory: Path) -> list[Path]:
    """The job files `load_job_files` reads, in the order it reads them."""
    return sorted(
        p
        for p in directory.iterdir()
        if p.suffix.lower() in SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def load_job_files(directory: Path) -> list[tuple[Path, JobDocument]]:
    """Read and validate every job file in `directory`; raise ConfigError listing every problem."""
    try:
        paths = job_file_paths(directory)
    except FileNotFoundError:
        raise ConfigError.one(directory, "(directory)", "no such directory") from None
    except NotADirectoryError:
        raise ConfigError.one(directory, "(directory)", "not a directory") from None
    except OSError as e:
        raise ConfigError.one(directory, "(directory)", f"cannot list: {e.strerror or e}") from None

    problems: list[ConfigProblem] = []
    loaded: list[tuple[Path, JobDocument]] = []
    first_file: dict[str, Path] = {}
    for path in paths:
        try:
            doc = load_job_file(path)
        except ConfigError as e:
            problems.extend(e.problems)
            continue
        if doc.job in first_file:
            problems.append(
                ConfigProblem(str(path), "job", f"job {doc.job!r} is also defined in {first_file[doc.job]}")
            )
            continue
        first_file[doc.job] = path
        loaded.append((path, doc))
    if problems:
        raise ConfigError(problems)
    return loaded


def load_job_file(path: Path) -> JobDocument:
    """Read and validate one job file (format by suffix); raise ConfigError naming every bad field."""
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
    data = _plain(reader(str(path), text))
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
