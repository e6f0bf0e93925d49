"""`oceand replay` command-line errors: exit 2 with one clear message naming the problem, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oceand.replay_cli import main

SEED = Path(__file__).resolve().parents[2] / "conf" / "jobs" / "seed-threshold.json"


@pytest.fixture
def good_trace(tmp_path: Path) -> Path:
    p = tmp_path / "good.csv"
    p.write_text("timestamp,value\n2020-01-01 00:00,10\n2020-01-01 00:01,20\n")
    return p


def bad_job(tmp_path: Path) -> Path:
    doc = json.loads(SEED.read_text())
    doc["rules"][0]["scale_out"]["consecutive"] = 0
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(doc))
    return p


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["{trace}"], "the following arguments are required: --job", id="no job"),
        pytest.param([], "the following arguments are required: TRACE.csv", id="no trace"),
        pytest.param(["{trace}", "--job", "{seed}", "--capacity", "0"], "--capacity: '0' must be a finite number > 0",
                     id="zero capacity"),
        pytest.param(["{trace}", "--job", "{seed}", "--capacity", "lots"], "--capacity: 'lots' is not a number",
                     id="capacity not a number"),
        pytest.param(["{trace}", "--job", "{seed}", "--scale", "-1"], "--scale: '-1' must be a finite number > 0",
                     id="negative scale"),
        pytest.param(["{trace}", "--job", "{seed}", "--startup", "soon"], "--startup: invalid duration 'soon'",
                     id="bad startup"),
        pytest.param(["{trace}", "--job", "{seed}", "--initial", "-2"], "--initial: '-2' must be >= 0",
                     id="negative initial"),
        pytest.param(["{trace}", "--job", "{seed}", "--frobnicate"], "unrecognized arguments: --frobnicate",
                     id="unknown option"),
        pytest.param(["{tmp}/missing.csv", "--job", "{seed}"], "missing.csv: no such file", id="missing trace"),
        pytest.param(["{trace}", "--job", "{tmp}/nope.json"], "nope.json: (file): cannot read", id="missing job"),
        pytest.param(["{trace}", "--job", "{bad}"], "bad.json: rules[0].scale_out.consecutive:",
                     id="invalid job names file and field path"),
        pytest.param(["{trace}", "--job", "{seed}", "--value-column", "requests"],
                     "good.csv: no value column named 'requests'", id="missing column"),
        pytest.param(["{malformed}", "--job", "{seed}"], "malformed.csv, line 3: value 'x' is not a number",
                     id="malformed trace names file and line"),
        pytest.param(["{trace}", "--job", "{seed}", "--summary", "{tmp}/no/dir/s.json"],
                     "s.json: cannot write", id="unwritable summary"),
    ],
)  # fmt: skip
def test_errors_exit_2_with_a_message(
    tmp_path: Path, good_trace: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    malformed = tmp_path / "malformed.csv"
    malformed.write_text("t,v\n100,1\n110,x\n")
    names = {
        "trace": good_trace,
        "seed": SEED,
        "tmp": tmp_path,
        "bad": bad_job(tmp_path),
        "malformed": malformed,
    }
    code = main([a.format(**names) for a in args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--job", "--time-column", "--value-column", "--scale", "--per-second", "--capacity",
                   "--startup", "--initial", "--timeline", "--summary", "--plot"):  # fmt: skip
        assert option in out


# --- the traces people have (issue 17) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "opts", "warned"),
    [
        pytest.param("t,v\n0,1\n1,2\n2,3\n", [], True, id="1 s rows, 10 s period: warned"),
        pytest.param("t,v\n0,1\n10,2\n20,3\n", [], False, id="10 s rows: no warning"),
        pytest.param("t\n0\n1\n2\n30\n", ["--bin", "5s"], True, id="5 s bins: warned"),
        pytest.param("t\n0\n1\n2\n30\n", ["--bin", "10s"], False, id="10 s bins: no warning"),
        pytest.param("v\n1\n2\n", ["--interval", "1s"], True, id="--interval 1s: warned"),
    ],
)
def test_a_trace_finer_than_the_period_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, opts: list[str], warned: bool
) -> None:
    trace = tmp_path / "fine.csv"
    trace.write_text(text)
    out = tmp_path / "s.json"
    assert main([str(trace), "--job", str(SEED), "--summary", str(out), *opts]) == 0
    err = capsys.readouterr().err
    warnings = json.loads(out.read_text())["warnings"]
    assert ("warning: " in err) == warned == bool(warnings)
    if warned:
        assert "finer than the job's period of 10 s" in err and "--bin 10s" in err


def test_bin_and_interval_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "requests.csv"
    log.write_text("time,method\n" + "".join(f"{100 + i // 3},GET\n" for i in range(90)))  # 3 a second
    out = tmp_path / "s.json"
    assert main([str(log), "--job", str(SEED), "--bin", "10s", "--per-second", "--summary", str(out)]) == 0
    s = json.loads(out.read_text())
    assert s["inputs"]["shape"] == "bins" and s["inputs"]["source_rows"] == 90
    assert s["load_total"] == pytest.approx(9.0)  # 90 events over 4 bins of 10 s: Σ rates = 90 / 10
    plain = tmp_path / "plain.csv"
    plain.write_text("requests\n" + "10\n" * 12)
    assert main([str(plain), "--job", str(SEED), "--interval", "5m", "--summary", str(out)]) == 0
    s = json.loads(out.read_text())
    assert (s["periods"], s["inputs"]["row_interval"], s["inputs"]["start"]) == (
        360,
        300.0,
        "1970-01-01T00:00:00Z",
    )
    assert main([str(log), "--job", str(SEED)]) == 2
    assert "value 'GET' is not a number (column 'method'" in capsys.readouterr().err
