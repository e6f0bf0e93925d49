"""SIGTERM finishes within `stop_timeout` whatever is queued or in flight (issue 18 item 7).

The real daemon process and a fake Marathon process whose PUTs take 6 s to land. One alarm starts a
slow PUT, 100 more queue behind it; SIGTERM then must end the process within the 3 s configured here
(the default is 20 s), the queued alarms dropped with a count in the log, and the cut-off PUT left as a
write of unknown outcome that the next start settles: it landed, so it is not sent again.
"""

from __future__ import annotations

import time
import urllib.parse
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.e2e.harness import DaemonProcess, FakeMarathonProcess, wait_for

pytestmark = pytest.mark.slow

JOB = "job.stop_web.xiaomi"
APP = "/stop/web"
STOP_TIMEOUT = 3.0


def job_doc() -> dict[str, Any]:
    return {
        "job": JOB,
        "target": {"cluster": "lg", "app": APP},
        "mode": "active",
        "period": 10,
        "min_instances": 1,
        "max_instances": 500,
        "rules": [{"name": "falcon", "type": "alarm", "match": {"stra_id": 7}, "step": 1}],
        "behavior": {"scale_out": {"cooldown": 0}},
    }


def alarm(d: DaemonProcess, k: int) -> None:
    q = urllib.parse.urlencode(
        {
            "endpoint": f"h{k}",
            "metric": "cpu.idle",
            "status": "PROBLEM",
            "step": 1,
            "priority": 0,
            "time": "2026-11-28 10:00:00",
            "tpl_id": 1,
            "exp_id": 0,
            "stra_id": 7,
            "left_value": 3,
            "tags": "job:x",
        }
    )
    assert d.request("GET", f"/v1/falcon/alarm?{q}")["jobs"] == [JOB]


def log_events(d: DaemonProcess) -> list[dict[str, Any]]:
    out = []
    for line in d.log.read_bytes().splitlines():
        try:
            out.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    return out


def test_sigterm_with_a_slow_put_and_an_alarm_backlog_exits_within_stop_timeout(tmp_path: Path) -> None:
    fake = FakeMarathonProcess(tmp_path, [f"{APP}:2"])
    d = DaemonProcess(
        f'[marathon.lg]\nurls = ["{fake.url}"]\ntimeout = "10s"\nsettle_grace = "0.5s"\n',
        workdir=tmp_path,
        start=False,
    )
    d.conf.write_text(f'stop_timeout = "{STOP_TIMEOUT}s"\n' + d.conf.read_text())  # top level: first
    try:
        d.start()
        d.request("POST", "/api/v1/jobs", job_doc())
        wait_for(lambda: d.request("GET", f"/api/v1/jobs/{JOB}/status")["app_known"], 10, "the app")
        fake.control("POST", "put_delay", {"seconds": 6.0})
        alarm(d, 0)
        wait_for(lambda: fake.control("GET", "requests") and puts(fake), 5, "the slow PUT")
        for k in range(1, 101):
            alarm(d, k)
        assert d.proc is not None
        t0 = time.monotonic()
        d.proc.terminate()
        rc = d.proc.wait(30)
        took = time.monotonic() - t0
        assert rc == 0
        assert took < STOP_TIMEOUT + 1.0, f"SIGTERM took {took:.1f}s"
        events = log_events(d)
        dropped = [e for e in events if e.get("event") == "shutdown_dropped"]
        # the 100 alarms are of one rule: they coalesce into the one queued alarm the stop drops
        assert dropped and dropped[0]["dropped"] == 1
        assert any(e.get("event") == "actuation_unknown" for e in events)

        d.start()  # the cut-off PUT lands 6 s after it was sent; the start settles it without a resend
        wait_for(lambda: decisions(d) and decisions(d)[0]["status"] != "pending", 15, "the settled decision")
        (only,) = decisions(d)
        assert only["status"] == "applied" and only["result"]["landed"], only
        assert d.stop() == 0  # whatever it would still send, it has sent
        assert len(puts(fake)) == 1
        assert fake.app(APP)["instances"] == 3
    finally:
        d.close()
        fake.stop()


def puts(fake: FakeMarathonProcess) -> list[dict[str, Any]]:
    return [r for r in fake.control("GET", "requests") if r["method"] == "PUT"]


def decisions(d: DaemonProcess) -> list[dict[str, Any]]:
    return d.request("GET", f"/api/v1/jobs/{JOB}/decisions")["decisions"]  # type: ignore[no-any-return]
