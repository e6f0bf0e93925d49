"""`oceand replay` with the shared policy engine: hand-computed traces, schedules, a real trace."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from oceand.replay import ReplayOptions, ReplayResult, simulate
from oceand.replay_cli import main
from oceand.trace import load_trace
from policies.document import JobDocument, parse_job

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "conf" / "jobs" / "seed-threshold.json"
TRACES = [ROOT.parent / "shared" / "traces", Path("/work/shared/traces")]
NASA = next((d / "nasa_http_aug95_per_min.csv" for d in TRACES if (d / "nasa_http_aug95_per_min.csv").is_file()),
            None)  # fmt: skip
SHANGHAI = timezone(timedelta(hours=8))


def doc(rules: list[dict[str, Any]], **extra: Any) -> JobDocument:
    base: dict[str, Any] = {
        "job": "replay-engine-test",
        "target": {"cluster": "lg", "app": "/replay/test"},
        "mode": "dry-run",  # replay runs every document in mode "active" whatever it says
        "period": "10s",
        "min_instances": 1,
        "max_instances": 20,
        "rules": rules,
        "behavior": {"scale_out": {"cooldown": "30s"}, "scale_in": {"cooldown": "5m"}},
    }
    base.update(extra)
    return parse_job(base)


SEED_CPU = {
    "name": "cpu", "type": "threshold", "metric": "cpu.used", "aggregate": "avg",
    "scale_out": {"above": 80, "consecutive": 3, "step": 1},
    "scale_in": {"below": 60, "consecutive": 3, "step": 1},
}  # fmt: skip


def write_trace(tmp_path: Path, rows: Sequence[tuple[str | int, float]], name: str = "t.csv") -> Path:
    p = tmp_path / name
    p.write_text("timestamp,value\n" + "".join(f"{t},{v}\n" for t, v in rows))
    return p


def run(tmp_path: Path, d: JobDocument, rows: Sequence[tuple[str | int, float]], **opts: Any) -> ReplayResult:
    return simulate(d, load_trace(write_trace(tmp_path, rows)), ReplayOptions(**opts))


def test_step_load_startup_delay_and_third_hot_period(tmp_path: Path) -> None:
    # 1 instance (capacity 100) at load 70 (cpu 70: neither hot nor cold), then a step to 1000 (10
    # instances' worth) at k=3. Hot buckets k3, k4, k5: the rule fires at k5 (the third). Streaks restart
    # after each change and the 30 s cooldown allows the next action exactly 3 periods later, so the
    # count grows by one every 3 periods; each launch is ready 60 s (6 periods) later.
    rows = [(1_000_000 + 10 * k, 70.0 if k < 3 else 1000.0) for k in range(20)]
    tl = run(tmp_path, doc([SEED_CPU]), rows, capacity=100, startup=60, initial=1).timeline
    assert tl.desired.tolist() == [1] * 5 + [2] * 3 + [3] * 3 + [4] * 3 + [5] * 3 + [6] * 3
    assert tl.ready.tolist() == [1] * 11 + [2] * 3 + [3] * 3 + [4] * 3
    assert tl.starting.tolist() == [0] * 6 + [1] * 3 + [2] * 2 + [1] + [2] * 2 + [1] + [2] * 2 + [1] + [2] * 2
    assert (tl.ready + tl.starting)[1:].tolist() == tl.desired[:-1].tolist()
    # unserved = max(0, load - ready x capacity)
    assert tl.unserved.tolist() == [0.0] * 3 + [900.0] * 8 + [800.0] * 3 + [700.0] * 3 + [600.0] * 3
    assert tl.cpu_used.tolist() == [70.0] * 3 + [100.0] * 17


def test_deployments_option_waits_for_starting_instances(tmp_path: Path) -> None:
    # The same step with --deployments: after the scale-out at k5 the deployment runs until its instance
    # is ready (k11); the held proposal keeps its streak, so the next action comes at k11, then k17.
    rows = [(1_000_000 + 10 * k, 70.0 if k < 3 else 1000.0) for k in range(20)]
    tl = run(tmp_path, doc([SEED_CPU]), rows, capacity=100, startup=60, initial=1, deployments=True).timeline
    assert tl.desired.tolist() == [1] * 5 + [2] * 6 + [3] * 6 + [4] * 3
    assert tl.ready.tolist() == [1] * 11 + [2] * 6 + [3] * 3


def test_summary_of_the_step(tmp_path: Path) -> None:
    rows = [(1_000_000 + 10 * k, 70.0 if k < 3 else 1000.0) for k in range(20)]
    s = run(tmp_path, doc([SEED_CPU]), rows, capacity=100, startup=60, initial=1).summary()
    load = 3 * 70.0 + 17 * 1000.0
    unserved = 8 * 900.0 + 3 * (800.0 + 700.0 + 600.0)
    assert s["unserved_fraction"] == pytest.approx(unserved / load)
    assert s["overload_seconds"] == 10.0 * 17
    assert s["instance_seconds"] == 10.0 * (6 * 1 + 3 * 2 + 3 * 3 + 3 * 4 + 3 * 5 + 2 * 6)  # previous desired
    assert s["oracle_instance_seconds"] == 10.0 * (3 * 1 + 17 * 10)
    assert s["cost_ratio"] == pytest.approx(s["instance_seconds"] / s["oracle_instance_seconds"])
    assert (s["actions"], s["scale_outs"], s["scale_ins"], s["periods"]) == (5, 5, 0, 20)


def test_scale_in_then_a_rule_on_an_unknown_metric_blocks_it(tmp_path: Path) -> None:
    # 5 instances, load 100 (cpu 20 < 60): the first scale-in comes at the third cold bucket (k2).
    rows = [(1_000_000 + 10 * k, 100.0) for k in range(6)]
    tl = run(tmp_path, doc([SEED_CPU]), rows, capacity=100, initial=5).timeline
    assert tl.desired.tolist() == [5, 5, 4, 4, 4, 4]  # then the 5 min scale-in cooldown holds
    assert tl.ready.tolist() == [5, 5, 5, 4, 4, 4]  # a scale-in removes a ready instance at once
    unknown = {"name": "mem", "type": "threshold", "metric": "mem.used.percent",
               "scale_out": {"above": 90}, "scale_in": {"below": 10}}  # fmt: skip
    tl = run(tmp_path, doc([SEED_CPU, unknown]), rows, capacity=100, initial=5).timeline
    assert tl.desired.tolist() == [5] * 6  # "no data" from mem.used.percent blocks scale-in


def test_target_rule_on_qps_jumps_to_the_needed_count(tmp_path: Path) -> None:
    target = {"name": "qps", "type": "target", "metric": "proc.qps", "target": 100}
    rows = [(1_000_000 + 10 * k, 100.0 if k < 2 else 950.0) for k in range(5)]
    tl = run(tmp_path, doc([target], behavior={"scale_out": {"max_step": 20}}), rows, capacity=200).timeline
    # k2: qps 950 on 1 ready -> ceil(1 x 950 / 100) = 10; k3: ready still 1 -> 10 again (no change)
    assert tl.desired.tolist() == [1, 1, 10, 10, 10]


def at_local(hour: int, minute: int = 0, second: int = 0, day: int = 2) -> int:
    return int(datetime(2016, 10, day, hour, minute, second, tzinfo=SHANGHAI).timestamp())


MORNING = {"name": "morning", "type": "schedule", "start": "2016-10-01T07:00", "every": "1d",
           "timezone": "Asia/Shanghai", "instances": 4}  # fmt: skip
NIGHT = {
    "name": "night",
    "type": "schedule",
    "cron": "0 2 * * *",
    "timezone": "Asia/Shanghai",
    "instances": 2,
}


def day_rows(start: datetime, hours: int) -> list[tuple[str | int, float]]:
    return [((start + timedelta(minutes=10 * i)).isoformat(), 10.0) for i in range(hours * 6)]


@pytest.mark.parametrize(
    ("start", "hours", "expected"),
    [
        pytest.param(datetime(2016, 10, 2, 0, 0, tzinfo=SHANGHAI), 24,
                     [(at_local(2), 1, 2), (at_local(7), 2, 4)], id="a day: 02:00 -> 2, 07:00 -> 4"),
        pytest.param(datetime(2016, 10, 2, 0, 0, 30, tzinfo=SHANGHAI), 24,
                     [(at_local(2, 0, 30), 1, 2), (at_local(7, 0, 30), 2, 4)],
                     id="periods off the minute: fires run at the next period"),
        pytest.param(datetime(2016, 10, 2, 3, 0, tzinfo=SHANGHAI), 24,
                     [(at_local(7), 1, 4), (at_local(2, day=3), 4, 2)], id="starts after 02:00: no earlier fire"),
        pytest.param(datetime(2016, 10, 2, 7, 0, tzinfo=SHANGHAI), 2,
                     [(at_local(7), 1, 4)], id="a fire exactly at the trace start runs"),
        pytest.param(datetime(2016, 10, 1, 16, 0, tzinfo=UTC), 24,
                     [(at_local(2), 1, 2), (at_local(7), 2, 4)], id="trace in UTC, schedule in Asia/Shanghai"),
    ],
)  # fmt: skip
def test_schedules_fire_at_the_simulated_instants(
    tmp_path: Path, start: datetime, hours: int, expected: list[tuple[int, int, int]]
) -> None:
    d = doc([MORNING, NIGHT], period="60s")
    tl = run(tmp_path, d, day_rows(start, hours), capacity=100, initial=1).timeline
    before = tl.ready + tl.starting
    actions = [(int(t), int(b), int(x)) for t, b, x in zip(tl.t, before, tl.desired, strict=True) if b != x]
    assert actions == expected


def test_schedule_window_raises_the_floor_for_its_duration(tmp_path: Path) -> None:
    window = {"name": "peak", "type": "schedule", "cron": "0 9 * * *", "timezone": "Asia/Shanghai",
              "duration": "1h", "min_instances": 3}  # fmt: skip
    cpu = {**SEED_CPU, "scale_in": {"below": 60, "consecutive": 1, "step": 1}}
    d = doc([window, cpu], period="60s", behavior={"scale_in": {"cooldown": "0s"}})
    rows = day_rows(datetime(2016, 10, 2, 8, 0, tzinfo=SHANGHAI), 3)
    tl = run(tmp_path, d, rows, capacity=100, initial=1).timeline
    by_time = dict(zip(tl.t.astype(int).tolist(), tl.desired.tolist(), strict=True))
    assert by_time[at_local(8, 59)] == 1
    assert by_time[at_local(9, 0)] == 3  # the window's min applies from 09:00 (bounds clamp)
    assert by_time[at_local(9, 59)] == 3
    assert by_time[at_local(10, 0)] == 2  # window over: the cold cpu rule steps down again
    assert by_time[at_local(10, 1)] == 1


def test_cli_per_second_and_scale(tmp_path: Path) -> None:
    trace = write_trace(tmp_path, [("2020-01-01 00:00", 60.0), ("2020-01-01 00:01", 120.0)])
    out = tmp_path / "tl.csv"
    assert main([str(trace), "--job", str(SEED), "--per-second", "--scale", "2", "--timeline", str(out)]) == 0
    loads = [float(r["load"]) for r in csv.DictReader(out.open())]
    assert loads == [2.0] * 6 + [4.0] * 6  # 60 / 60 s x 2, then 120 / 60 s x 2; 12 periods of 10 s


def test_cli_without_outputs_prints_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_trace(tmp_path, [(1_000_000, 50.0), (1_000_060, 50.0)])
    assert main([str(trace), "--job", str(SEED)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["periods"] == 12
    assert summary["unserved_fraction"] == 0.0


@pytest.mark.skipif(NASA is None, reason="shared/traces/nasa_http_aug95_per_min.csv not found")
def test_real_trace_replay_is_deterministic(tmp_path: Path) -> None:
    assert NASA is not None
    head = tmp_path / "nasa_head.csv"
    with NASA.open() as f:
        head.write_text("".join(line for _, line in zip(range(2881), f, strict=False)))  # 2,880 rows: 2 days
    outs = []
    for name in ("a", "b"):
        files = [tmp_path / f"{name}.{ext}" for ext in ("csv", "json")]
        args = [str(head), "--per-second", "--capacity", "0.5", "--job", str(SEED)]
        assert main([*args, "--timeline", str(files[0]), "--summary", str(files[1])]) == 0
        outs.append([f.read_bytes() for f in files])
    assert outs[0] == outs[1]
    summary = json.loads(outs[0][1])
    rows = list(csv.DictReader(io.StringIO(outs[0][0].decode())))
    assert summary["periods"] == len(rows) == 17280
    assert summary["actions"] == sum(int(r["desired"]) != int(r["ready"]) + int(r["starting"]) for r in rows)
    assert summary["actions"] > 0
    assert summary["instance_seconds"] == 10 * sum(int(r["ready"]) + int(r["starting"]) for r in rows)
    assert summary["overload_seconds"] == 10 * sum(float(r["load"]) > int(r["ready"]) * 0.5 for r in rows)


@pytest.mark.parametrize("suffix", [pytest.param(".yaml", id="yaml"), pytest.param(".toml", id="toml")])
def test_job_documents_in_yaml_and_toml_replay_like_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    data = json.loads(SEED.read_text())
    job_file = tmp_path / f"job{suffix}"
    if suffix == ".yaml":
        job_file.write_text(yaml.safe_dump(data))
    else:
        rule = data["rules"][0]
        job_file.write_text(
            f'job = "{data["job"]}"\nperiod = "10s"\nmax_instances = 20\n'
            f'[target]\ncluster = "lg"\napp = "{data["target"]["app"]}"\n'
            f'[behavior.scale_out]\ncooldown = "30s"\n[behavior.scale_in]\ncooldown = "5m"\n'
            f'[[rules]]\nname = "cpu"\ntype = "threshold"\nmetric = "cpu.used"\n'
            f"scale_out = {{above = {rule['scale_out']['above']}, consecutive = 3, step = 1}}\n"
            f"scale_in = {{below = {rule['scale_in']['below']}, consecutive = 3, step = 1}}\n"
        )
    rows = [(1_000_000 + 60 * k, 10.0 + 40.0 * (k % 7)) for k in range(60)]
    trace = write_trace(tmp_path, rows)
    assert main([str(trace), "--job", str(SEED), "--capacity", "50"]) == 0
    from_json = json.loads(capsys.readouterr().out)
    assert main([str(trace), "--job", str(job_file), "--capacity", "50"]) == 0
    other = json.loads(capsys.readouterr().out)
    assert from_json["actions"] > 0
    assert other == from_json
