"""`POST /api/v1/jobs/{job}/preview` (issue 16): the §6 simulator on the job's recorded load.

A job runs live (controlled clock, in-memory Marathon) on a scripted load; its history is recorded; a
preview of a stricter document shows the scale-out it would not have made, at that period."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from actuators.marathon import RecordingActuator
from oceand.history_cli import main as replay_main
from oceand.replay import ReplayOptions, simulate
from oceand.trace import load_trace
from policies.document import parse_job
from tests.conftest import Client, DaemonFactory
from tests.engine.test_live_decisions import JOB, T0, Clock, bucket, seed

# load units per period; one instance serves 100 (cpu.used = min(100, 100 × load / (n × 100)))
LOAD = [150] * 6 + [270] * 9


async def _run_live(start_daemon: DaemonFactory) -> tuple[Any, Client, RecordingActuator]:
    clock = Clock(T0)
    act = RecordingActuator()
    d, c = await start_daemon(actuator=act, clock=clock)
    assert (await c.call("POST", "/api/v1/jobs", seed(mode="active")))[0] == 201
    for k, load in enumerate(LOAD):
        n = act.instances.get(JOB, 1)
        await bucket(d, c, clock, k, cpu_used=min(100.0, load / n), hosts=n)
    await d.history.flush()
    return d, c, act


def stricter() -> dict[str, Any]:
    doc = seed(mode="active")
    doc["rules"][0]["scale_out"]["above"] = 95
    return doc


async def test_a_stricter_document_scales_out_less_at_the_right_period(start_daemon: DaemonFactory) -> None:
    _, c, act = await _run_live(start_daemon)
    assert act.calls == [(JOB, 2), (JOB, 3), (JOB, 4)]  # live: out at k = 2, 8, 11
    _, hist = await c.call("GET", f"/api/v1/jobs/{JOB}/history")
    assert [r["t"] for r in hist["rows"]] == [T0 + 10 * k for k in range(len(LOAD))]
    body = {"job": stricter(), "since": T0, "until": T0 + 10 * len(LOAD), "startup": 0}
    status, got = await c.call("POST", f"/api/v1/jobs/{JOB}/preview", body)
    assert status == 200, got
    assert got["rule"] == "cpu" and got["summary"]["periods"] == len(LOAD)
    outs = [round((r["t"] - T0) / 10) for r in got["timeline"] if r["desired"] > r["ready"] + r["starting"]]
    assert outs == [2, 8]  # 90 % on 3 instances stays under 95: no third scale-out
    assert got["differences"] == [
        {"t": T0 + 110, "happened": "out", "recorded_desired": 4, "preview": "none", "preview_desired": 3}
    ]
    # the same document as the live one acts as it did
    body["job"] = seed(mode="active")
    status, same = await c.call("POST", f"/api/v1/jobs/{JOB}/preview", body)
    assert status == 200 and same["differences"] == [] and same["summary"]["scale_outs"] == 3


@pytest.mark.parametrize(
    ("change", "code"),
    [
        pytest.param({"since": T0 - 10_000, "until": T0 - 5_000}, "no_history", id="range-without-history"),
        pytest.param({"since": T0, "until": T0 + 10 * 365 * 86400}, "range_too_long", id="ten-years"),
        pytest.param({"job": {"rules": "nope"}}, "invalid_document", id="invalid-document"),
        pytest.param({"until": T0 - 1}, "invalid_body", id="until-before-since"),
        pytest.param({"since": "yesterday"}, "invalid_body", id="since-not-a-number"),
        pytest.param({"rule": "falcon"}, "bad_rule", id="rule-without-load"),
        pytest.param({"capacity": 0}, "invalid_body", id="capacity-zero"),
    ],
)
async def test_bad_preview_input_is_a_clear_422(
    start_daemon: DaemonFactory, change: dict[str, Any], code: str
) -> None:
    d, c, _ = await _run_live(start_daemon)
    body = {"job": stricter(), "since": T0, "until": T0 + 150, **change}
    status, got = await c.call("POST", f"/api/v1/jobs/{JOB}/preview", body)
    assert (status, got["error"]["code"]) == (422, code), got
    refused = d.metrics.previews_refused.labels("range_too_long")._value.get()
    assert refused == (1 if code == "range_too_long" else 0)


async def test_preview_numbers_equal_replay_on_the_same_load_as_csv(
    start_daemon: DaemonFactory, tmp_path: Any
) -> None:
    _, c, _ = await _run_live(start_daemon)
    _, hist = await c.call("GET", f"/api/v1/jobs/{JOB}/history")
    csv = tmp_path / "load.csv"
    csv.write_text(
        "t,load\n" + "".join(f"{r['t']:.0f},{r['values']['cpu'] * r['ready']}\n" for r in hist["rows"])
    )
    replayed = simulate(
        parse_job(stricter()), load_trace(csv), ReplayOptions(capacity=100, startup=0, initial=1)
    )
    body = {"job": stricter(), "since": T0, "until": T0 + 10 * len(LOAD), "startup": 0}
    _, got = await c.call("POST", f"/api/v1/jobs/{JOB}/preview", body)
    assert got["summary"] == pytest.approx(replayed.summary())
    assert [r["desired"] for r in got["timeline"]] == replayed.timeline.desired.tolist()


async def test_oceand_replay_job_history_goes_through_the_admin_api(
    start_daemon: DaemonFactory, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    d, _, _ = await _run_live(start_daemon)
    job_file = tmp_path / "new.json"
    job_file.write_text(json.dumps(stricter()))
    out = tmp_path / "summary.json"
    argv = ["--job-history", JOB, "--job", str(job_file), "--since", str(T0), "--until", str(T0 + 150)]
    argv += ["--url", d.url, "--startup", "0s", "--summary", str(out), "--timeline", str(tmp_path / "t.csv")]
    assert await asyncio.to_thread(replay_main, argv) == 0
    got = json.loads(out.read_text())
    assert got["scale_outs"] == 2 and [x["t"] for x in got["differences"]] == [T0 + 110]
    assert (tmp_path / "t.csv").read_text().splitlines()[
        0
    ] == "t,load,ready,starting,desired,cpu_used,unserved"
    # a range with no history: the daemon's 422, exit 2, the reason on stderr
    bad = [*argv[:4], "--since", str(T0 - 10_000), "--until", str(T0 - 5_000), "--url", d.url]
    assert await asyncio.to_thread(replay_main, bad) == 2
    assert "no recorded history" in capsys.readouterr().err
