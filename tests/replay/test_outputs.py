"""Replay outputs: the timeline CSV, the summary JSON and the PNG, on a scripted (engine-free) run."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from oceand.replay import ReplayOptions, ReplayResult, simulate
from oceand.replay_cli import summary_json, write_timeline
from oceand.replay_plot import PlotError, write_plot
from oceand.trace import Trace
from tests.replay.test_cluster import Script, job

SPEC_FIELDS = [
    "unserved_fraction", "overload_seconds", "instance_seconds", "oracle_instance_seconds", "cost_ratio",
    "actions", "periods",
]  # fmt: skip


def scripted(t0: float = 1_438_560_000.0) -> ReplayResult:
    values = [5.0, 25.0, 12.5, 0.0, 1.0 / 3.0]
    times = t0 + np.arange(len(values), dtype=np.float64) * 10.0
    tr = Trace("mem.csv", times, np.asarray(values), 10.0, "t", "v")
    return simulate(
        job(), tr, ReplayOptions(capacity=10, startup=10, initial=1), step=Script(t0, 10, {1: 3, 4: 2})
    )


def timeline_text(result: ReplayResult) -> str:
    out = io.StringIO()
    write_timeline(result, out)
    return out.getvalue()


def test_timeline_csv_exact_text() -> None:
    assert timeline_text(scripted()) == (
        "t,load,ready,starting,desired,cpu_used,unserved\n"
        "1438560000,5,1,0,1,50,0\n"
        "1438560010,25,1,0,3,100,15\n"
        "1438560020,12.5,3,0,3,41.666666666666664,0\n"
        "1438560030,0,3,0,3,0,0\n"
        "1438560040,0.3333333333333333,3,0,2,1.111111111111111,0\n"
    )


def test_timeline_keeps_full_precision() -> None:
    """Every float reads back as the float the replay computed (issue 17: fixed decimals lost load)."""
    result = scripted()
    rows = list(csv.DictReader(io.StringIO(timeline_text(result))))
    assert [float(r["load"]) for r in rows] == result.timeline.load.tolist()
    assert [float(r["cpu_used"]) for r in rows] == result.timeline.cpu_used.tolist()
    assert [float(r["unserved"]) for r in rows] == result.timeline.unserved.tolist()


def test_timeline_fractional_times() -> None:
    text = timeline_text(scripted(t0=1_438_560_000.25))
    assert text.splitlines()[1].startswith("1438560000.25,")


def test_summary_json_spec_fields_first_and_equal_to_timeline_sums() -> None:
    result = scripted()
    doc = json.loads(summary_json(result))
    assert list(doc)[:7] == SPEC_FIELDS
    rows = list(csv.DictReader(io.StringIO(timeline_text(result))))
    period = 10.0
    load = sum(float(r["load"]) for r in rows)
    unserved = sum(float(r["unserved"]) for r in rows)
    assert doc["unserved_fraction"] == unserved / load  # exact: the timeline keeps full precision
    overloaded = [r for r in rows if float(r["load"]) > int(r["ready"]) * 10]
    assert doc["overload_seconds"] == period * len(overloaded) == 10.0
    assert (
        doc["instance_seconds"] == period * sum(int(r["ready"]) + int(r["starting"]) for r in rows) == 110.0
    )
    assert doc["oracle_instance_seconds"] == period * (1 + 3 + 2 + 1 + 1)
    assert doc["cost_ratio"] == pytest.approx(110.0 / 80.0)
    assert doc["actions"] == sum(int(r["desired"]) != int(r["ready"]) + int(r["starting"]) for r in rows) == 2
    assert doc["periods"] == len(rows) == 5
    assert doc["inputs"]["capacity"] == 10
    assert doc["job"] == "replay-test"


def test_outputs_are_byte_identical_across_runs() -> None:
    a, b = scripted(), scripted()
    assert timeline_text(a) == timeline_text(b)
    assert summary_json(a) == summary_json(b)


def test_plot_is_a_png_and_deterministic(tmp_path: Path) -> None:
    result = scripted()
    write_plot(result, tmp_path / "a.png")
    write_plot(result, tmp_path / "b.png")
    data = (tmp_path / "a.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data == (tmp_path / "b.png").read_bytes()
    assert b"Software" not in data


def test_plot_unwritable_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(PlotError, match=r"nowhere/x\.png: cannot write the plot"):
        write_plot(scripted(), tmp_path / "nowhere" / "x.png")
