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
from oceand.replay_cli import main as replay_cli_main
from oceand.trace import load_trace
from policies.document import parse_job
from tests.conftest import Client, DaemonFactory
from tests.engine.test_live_decisions import JOB, T0, Clock, bucket, seed
from tests.fakes.marathon import FakeMarathon

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


async def test_preview_of_a_document_naming_a_template_equals_its_effective_document(
    start_daemon: DaemonFactory,
) -> None:
    """A product line's change tried on one job's load: the document names the template (PRODUCT §13)."""
    _, c, _ = await _run_live(start_daemon)
    shared = {k: v for k, v in stricter().items() if k not in ("job", "target")}
    assert (await c.call("PUT", "/api/v1/templates/web-default", shared))[0] == 201
    window = {"since": T0, "until": T0 + 10 * len(LOAD), "startup": 0}
    own = {"template": "web-default", "target": seed()["target"]}
    status, named = await c.call("POST", f"/api/v1/jobs/{JOB}/preview", {"job": own, **window})
    assert status == 200, named
    _, effective = await c.call("POST", f"/api/v1/jobs/{JOB}/preview", {"job": stricter(), **window})
    assert named == effective and named["summary"]["scale_outs"] == 2
    own["template"] = "nothing"
    status, body = await c.call("POST", f"/api/v1/jobs/{JOB}/preview", {"job": own, **window})
    assert (status, body["error"]["code"]) == (422, "template_not_found")


async def test_a_product_line_job_on_the_fake_marathon_previews_and_replays_alike(
    start_daemon: DaemonFactory, tmp_path: Any
) -> None:
    """Issue 16's second Show, on the fake Marathon: a job that names its product line's template runs
    5 minutes of controlled time on a scripted load, scaling the fake's app; a preview of a stricter
    document on that history makes fewer scale-outs, at the periods where the live job scaled on a load
    the stricter threshold does not reach, and its numbers equal `oceand replay` on the load as CSV."""
    fake = FakeMarathon(heartbeat=0.5, deploy_time=0.01)
    await fake.start()
    try:
        fake.add_app("/seed/web", 1)
        clock = Clock(T0)
        marathon = {"lg": {"urls": [fake.url], "timeout": "2s", "connect_timeout": "0.5s"}}
        d, c = await start_daemon(clock=clock, marathon=marathon)
        live = seed(mode="active")
        shared = {k: v for k, v in live.items() if k not in ("job", "target")}
        assert (await c.call("PUT", "/api/v1/templates/seed-web", shared))[0] == 201
        own = {"template": "seed-web", "target": live["target"]}
        assert (await c.call("PUT", f"/api/v1/jobs/{JOB}", own))[0] == 201
        await _until(lambda: d.engine.status(JOB)["ready"] == 1)
        load = [150] * 6 + [270] * 9 + [370] * 9 + [200] * 6  # 30 periods: 5 minutes
        for k, units in enumerate(load):
            n = fake.apps["/seed/web"].instances
            await _until(lambda n=n: d.engine.status(JOB)["ready"] == n)  # the daemon sees what Marathon has
            await bucket(d, c, clock, k, cpu_used=min(100.0, units / n), hosts=n)
        await d.history.flush()
        assert [count for _, _, count, _ in fake.scale_requests] == [2, 3, 4, 5]  # the fake's app scaled
        _, hist = await c.call("GET", f"/api/v1/jobs/{JOB}/history")
        rows = hist["rows"]
        assert len(rows) == len(load) and [r["ready"] for r in rows][-1] == 5
        outs = [round((r["t"] - T0) / 10) for r in rows if r["desired"] > r["ready"]]
        assert outs == [2, 8, 11, 17]  # live: out on 100 % at 1 and 2 instances, 90 % at 3, 92.5 % at 4

        window = {"since": T0, "until": T0 + 10 * len(load), "startup": 0}
        status, got = await c.call("POST", f"/api/v1/jobs/{JOB}/preview", {"job": stricter(), **window})
        assert status == 200, got
        # above 95: 90 % on 3 instances (k = 11) stays under it; the rest of the climb still scales out
        assert got["summary"]["scale_outs"] == 3 < len(outs)
        assert got["differences"] == [
            {"t": T0 + 110, "happened": "out", "recorded_desired": 4, "preview": "none", "preview_desired": 3}
        ]
        # the same load exported as CSV through `oceand replay` (the command, its summary and timeline)
        csv = tmp_path / "load.csv"
        csv.write_text(
            "t,load\n" + "".join(f"{r['t']:.0f},{r['values']['cpu'] * r['ready']}\n" for r in rows)
        )
        (tmp_path / "stricter.json").write_text(json.dumps(stricter()))
        argv = [str(csv), "--job", str(tmp_path / "stricter.json"), "--startup", "0s", "--capacity", "100"]
        argv += [
            "--initial",
            "1",
            "--summary",
            str(tmp_path / "s.json"),
            "--timeline",
            str(tmp_path / "t.csv"),
        ]
        assert await asyncio.to_thread(replay_cli_main, argv) == 0
        replayed = json.loads((tmp_path / "s.json").read_text())
        assert got["summary"] == pytest.approx({k: replayed[k] for k in got["summary"]})
        timeline = (tmp_path / "t.csv").read_text().splitlines()
        column = timeline[0].split(",").index("desired")
        assert [r["desired"] for r in got["timeline"]] == [
            int(line.split(",")[column]) for line in timeline[1:]
        ]
    finally:
        await fake.stop()


async def _until(cond: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)
