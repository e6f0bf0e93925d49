"""The handlers reach jobs through the jobs service (`request.app[JOBS]`, oceand/jobs.py), never through
the engine's runtime objects: a job's document, version and mode come from one place (issue 11)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import oceand

HANDLERS = sorted((Path(oceand.__file__).parent / "api").glob("*.py")) + sorted(
    (Path(oceand.__file__).parent / "console").glob("*.py")
)
REACHING_IN = re.compile(r"\[ENGINE\]\.jobs|\bengine\.jobs\b|\[DAEMON\]\.(engine|put_job|delete_job)")


@pytest.mark.parametrize("path", HANDLERS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_handlers_do_not_reach_into_the_engines_jobs(path: Path) -> None:
    lines = [
        f"{path.name}:{n}: {line.strip()}"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if REACHING_IN.search(line)
    ]
    assert lines == []


def test_the_check_sees_a_handler_that_reaches_in() -> None:
    assert REACHING_IN.search("    rt = request.app[ENGINE].jobs[name]")
    assert REACHING_IN.search("    for rt in engine.jobs.values():")
    assert not REACHING_IN.search("    job = request.app[JOBS].get(name)")
