"""`oceand` as people type it (issue 15): --version, check-config FILE positional, a description in every
subcommand's help."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest

from oceand.cli import main
from tests.e2e.harness import ROOT

EXAMPLE = str(ROOT / "conf" / "oceand.toml")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        rc = main(list(argv))
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "--version")
    assert (rc, out) == (0, f"oceand {version('oceand')}\n")


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["check-config", EXAMPLE], id="positional"),
        pytest.param(["check-config", "--config", EXAMPLE], id="--config"),
    ],
)
def test_check_config_takes_the_file_either_way(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    rc, out, err = run(capsys, *argv)
    assert (rc, out) == (0, f"{EXAMPLE}: OK\n"), err


def test_check_config_positional_names_a_bad_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nlisen = "127.0.0.1:1"\n')
    rc, _, err = run(capsys, "check-config", str(bad))
    assert rc == 2 and str(bad) in err and "server.lisen" in err


def test_check_config_refuses_two_files(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "check-config", EXAMPLE, "--config", "other.toml")
    assert rc == 2 and "either as FILE or --config" in err


@pytest.mark.parametrize(
    ("argv", "description"),
    [
        pytest.param(["run", "--help"], "Run the daemon in the foreground", id="run"),
        pytest.param(["check-config", "--help"], "Validate a config file", id="check-config"),
        pytest.param(["replay", "--help"], "What-if", id="replay"),
        pytest.param(["--help"], "Elastic-scaling daemon", id="top"),
    ],
)
def test_every_help_has_a_description(
    capsys: pytest.CaptureFixture[str], argv: list[str], description: str
) -> None:
    rc, out, _ = run(capsys, *argv)
    assert rc == 0 and description in out, out


def test_replay_with_job_history_asks_the_daemon(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`oceand replay --job-history JOB` takes the trace from a daemon's recorded history (issue 16): with
    no daemon listening it says so and exits 1 (a CSV replay would have asked for a trace file instead)."""
    job = tmp_path / "job.json"
    job.write_text((ROOT / "conf" / "jobs" / "seed-threshold.json").read_text())
    argv = [
        "replay",
        "--job-history",
        "job.x",
        "--job",
        str(job),
        "--since",
        "1h",
        "--url",
        "http://127.0.0.1:9",
    ]
    assert main(argv) == 1
    assert "127.0.0.1:9" in capsys.readouterr().err


def test_check_config_prints_the_warnings_of_the_job_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:  # fmt: skip
    """Issue 17: a job file that cannot work as written passes the check (exit 0) with its warning on stderr."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "web.json").write_text(
        '{"job": "web", "target": {"cluster": "lg", "app": "/web"}, '
        '"rules": [{"name": "cpu", "type": "target", "metric": "cpu.used", "target": 95}]}'
    )
    conf = tmp_path / "oceand.toml"
    conf.write_text(f'[store]\nurl = "sqlite:///{tmp_path}/o.db"\n[jobs]\ndir = "{jobs}"\n')
    rc, out, err = run(capsys, "check-config", str(conf))
    assert (rc, out) == (0, f"{conf}: OK\n")
    assert err.startswith(f"{jobs / 'web.json'}: warning: rules[0].target: cpu.used is at most 100")
    assert "never scales out" in err and err.count("\n") == 1
