"""The README's replay example runs from a fresh clone (issue 15): its lines, run by bash in a folder with
only what a clone has (traces/, conf/) and the venv, give the numbers docs/replay.md reports."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import ROOT

pytestmark = pytest.mark.slow


def test_the_shipped_trace_is_the_one_its_sources_name() -> None:
    sources = (ROOT / "traces" / "SOURCES.md").read_text()
    for name, digest in re.findall(r"^\| `([^`]+\.csv)` \|.*\| `([0-9a-f]{64})` \|$", sources, re.M):
        assert hashlib.sha256((ROOT / "traces" / name).read_bytes()).hexdigest() == digest, name
    assert "nab_elb_request_count_8c0756.csv" in sources
    assert "Numenta" in (ROOT / "traces" / "LICENSE-NAB.txt").read_text()


def test_the_readme_replay_example_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", readme, re.S)
    (example,) = [b for b in blocks if "oceand replay" in b]
    assert "../" not in example and "/work/" not in example  # nothing outside the repository
    for name in ("traces", "conf"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    p = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (tmp_path / "out" / "plot.png").stat().st_size > 0
    assert len((tmp_path / "out" / "timeline.csv").read_text().splitlines()) == summary["periods"] + 1
    # docs/replay.md's row for this trace and policy: 3.88 % unserved, 63,100 s overloaded, 1.98, 5,425
    assert (round(summary["unserved_fraction"] * 100, 2), summary["overload_seconds"]) == (3.88, 63100)
    assert (round(summary["cost_ratio"], 2), summary["actions"]) == (1.98, 5425)
    assert '"actions": 5425' in example and '"unserved_fraction": 0.0388' in example
