"""Loading CSV traces: timestamps, columns, --scale / --per-second, and every malformed-trace error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from oceand.trace import TraceError, load_trace, parse_timestamp


def write(tmp_path: Path, text: str, name: str = "trace.csv") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2015-02-26 21:42:53", 1424986973.0, id="NAB: space, seconds, naive = UTC"),
        pytest.param("1995-08-03 04:37", 807424620.0, id="NASA: no seconds"),
        pytest.param("1995-08-03T04:37", 807424620.0, id="T separator"),
        pytest.param("2015-02-26T21:42:53Z", 1424986973.0, id="Z suffix"),
        pytest.param("2015-02-27T05:42:53+08:00", 1424986973.0, id="offset"),
        pytest.param("2015-02-26 21:42:53.5", 1424986973.5, id="fractional seconds"),
        pytest.param("1424986973", 1424986973.0, id="unix seconds"),
        pytest.param(" 1424986973.25 ", 1424986973.25, id="unix seconds, fraction, spaces"),
    ],
)
def test_parse_timestamp(text: str, expected: float) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "empty timestamp", id="empty"),
        pytest.param("yesterday", "bad timestamp 'yesterday'", id="words"),
        pytest.param("2015-02-30 00:00", "bad timestamp", id="no such day"),
        pytest.param("2015-02-26 25:00", "bad timestamp", id="no such hour"),
    ],
)
def test_parse_timestamp_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_timestamp(text)


def test_load_defaults_first_two_columns_and_interval(tmp_path: Path) -> None:
    p = write(tmp_path, "timestamp,requests\n1995-08-03 04:37,1\n1995-08-03 04:38,0\n1995-08-03 04:40,7\n")
    tr = load_trace(p)
    assert (tr.time_column, tr.value_column) == ("timestamp", "requests")
    assert tr.times.tolist() == [807424620.0, 807424680.0, 807424800.0]
    assert tr.values.tolist() == [1.0, 0.0, 7.0]
    assert tr.interval == 90.0  # median of 60 and 120
    assert tr.end == 807424800.0 + 90.0


def test_load_holds_each_row_until_the_next(tmp_path: Path) -> None:
    tr = load_trace(write(tmp_path, "t,v\n100,1\n160,2\n220,3\n"))
    got = tr.load_at(np.array([100.0, 159.0, 160.0, 219.9, 220.0, 279.0]))
    assert got.tolist() == [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]


@pytest.mark.parametrize(
    ("time_column", "value_column", "expected"),
    [
        pytest.param(None, None, [5.0, 6.0], id="defaults 0 and 1"),
        pytest.param("when", "b", [7.0, 8.0], id="by name"),
        pytest.param("0", "2", [7.0, 8.0], id="by index string"),
        pytest.param(0, 2, [7.0, 8.0], id="by index int"),
        pytest.param(" when", "a", [5.0, 6.0], id="name matched after the header's spaces are stripped"),
    ],
)
def test_columns(
    tmp_path: Path, time_column: str | int | None, value_column: str | int | None, expected: list[float]
) -> None:
    p = write(tmp_path, "when, a ,b\n100,5,7\n110,6,8\n")
    col = time_column.strip() if isinstance(time_column, str) else time_column
    assert load_trace(p, time_column=col, value_column=value_column).values.tolist() == expected


@pytest.mark.parametrize(
    ("scale", "per_second", "expected"),
    [
        pytest.param(1.0, False, [60.0, 120.0, 30.0], id="as is"),
        pytest.param(2.0, False, [120.0, 240.0, 60.0], id="scale"),
        pytest.param(1.0, True, [1.0, 2.0, 0.5], id="per-second divides by the 60 s interval"),
        pytest.param(0.5, True, [0.5, 1.0, 0.25], id="both"),
    ],
)
def test_scale_and_per_second(tmp_path: Path, scale: float, per_second: bool, expected: list[float]) -> None:
    p = write(tmp_path, "t,v\n2020-01-01 00:00,60\n2020-01-01 00:01,120\n2020-01-01 00:02,30\n")
    tr = load_trace(p, scale=scale, per_second=per_second)
    assert tr.values.tolist() == pytest.approx(expected)
    assert (tr.scale, tr.per_second) == (scale, per_second)


def test_per_second_uses_the_median_interval_across_gaps(tmp_path: Path) -> None:
    # NAB traces miss a few 5-minute slots: the interval stays 300 s.
    p = write(tmp_path, "t,v\n0,300\n300,300\n600,300\n1500,300\n1800,300\n")
    tr = load_trace(p, per_second=True)
    assert tr.interval == 300.0
    assert tr.values.tolist() == [1.0] * 5


def test_bom_and_blank_lines_are_fine(tmp_path: Path) -> None:
    p = tmp_path / "bom.csv"
    p.write_bytes("\ufefftimestamp,value\r\n100,1\r\n\r\n110,2\r\n\r\n".encode())
    tr = load_trace(p)
    assert tr.time_column == "timestamp"
    assert tr.values.tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        pytest.param("", {}, r"trace\.csv: empty file", id="empty file"),
        pytest.param("\n\n", {}, r"trace\.csv: empty file", id="only blank lines"),
        pytest.param("t,v\n", {}, r"trace\.csv: 0 data row\(s\)", id="header only"),
        pytest.param(
            "t,v\n100,1\n", {}, r"trace\.csv: 1 data row\(s\); a trace needs at least 2", id="one row"
        ),
        pytest.param(
            "t,v\n100,1\nyesterday,2\n",
            {},
            r"trace\.csv, line 3: bad timestamp 'yesterday'",
            id="bad timestamp",
        ),
        pytest.param(
            "t,v\n100,1\n110,\n", {}, r"trace\.csv, line 3: value '' is not a number", id="empty value"
        ),
        pytest.param(
            "t,v\n100,1\n110,1\n120,lots\n",
            {},
            r"line 4: value 'lots' is not a number",
            id="non-numeric value",
        ),
        pytest.param("t,v\n100,nan\n110,1\n", {}, r"line 2: value 'nan' is not a finite number", id="nan"),
        pytest.param("t,v\n100,1\n110,inf\n", {}, r"line 3: value 'inf' is not a finite number", id="inf"),
        pytest.param("t,v\n100,1\n110,-4\n", {}, r"line 3: value '-4' is negative", id="negative load"),
        pytest.param(
            "t,v\n100,1\n110,1\n110,2\n",
            {},
            r"line 4: timestamp '110' duplicates the previous row's \(line 3\)",
            id="duplicate row",
        ),
        pytest.param(
            "t,v\n100,1\n120,1\n110,2\n",
            {},
            r"line 4: timestamp '110' is earlier than the previous row's \(line 3\)",
            id="unsorted",
        ),
        pytest.param(
            "t,v\n100,1\n\n50,1\n",
            {},
            r"line 4: timestamp '50' is earlier",
            id="line numbers count blank lines",
        ),
        pytest.param(
            "t,v\n100,1\n110\n", {}, r"line 3: 1 column\(s\), but column 1 is needed", id="short row"
        ),
        pytest.param(
            "t,v\n100,1\n110,2\n",
            {"value_column": "requests"},
            r"trace\.csv: no value column named 'requests' \(the header has: t, v\)",
            id="missing column by name",
        ),
        pytest.param(
            "t,v\n100,1\n110,2\n",
            {"time_column": "7"},
            r"no time column 7 \(0-based\)",
            id="missing column by index",
        ),
        pytest.param(
            "t,v\n100,1\n110,2\n",
            {"value_column": "t"},
            r"the time and value columns are the same",
            id="same column twice",
        ),
        pytest.param(
            "t,v\n100,1\n110,2\n", {"scale": 0.0}, r"--scale must be a finite number > 0", id="zero scale"
        ),
        pytest.param(
            't,v\n100,"1\n', {}, r"trace\.csv, line 2: not a valid CSV file", id="unterminated quote"
        ),
    ],
)
def test_malformed_traces(tmp_path: Path, text: str, kwargs: dict[str, object], message: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(TraceError, match=message):
        load_trace(p, **kwargs)  # type: ignore[arg-type]


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r"nope\.csv: no such file"):
        load_trace(tmp_path / "nope.csv")
    with pytest.raises(TraceError, match=r"is a directory"):
        load_trace(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "latin1.csv"
    p.write_bytes(b"t,v\n100,1\n110,\xe9\n")
    with pytest.raises(TraceError, match=r"latin1\.csv: not UTF-8 text"):
        load_trace(p)


# --- the traces people have (issue 17): per-event logs, rows without timestamps -----------------------------

REQUEST_LOG = (
    "time,method,path,status\n"
    "2020-01-01T00:00:01Z,GET,/a,200\n"
    "2020-01-01T00:00:01Z,GET,/b,200\n"  # same second: fine in an event log
    "2020-01-01T00:00:09.5Z,POST,/c,500\n"
    "2020-01-01T00:00:03Z,GET,/d,200\n"  # out of order: fine too
    "2020-01-01T00:00:31Z,GET,/e,200\n"  # 00:00:20-30 has no request: 0
)
T_2020 = 1_577_836_800.0


@pytest.mark.parametrize(
    ("kwargs", "times", "values"),
    [
        pytest.param({"bin": 10.0}, [0, 10, 20, 30], [4, 0, 0, 1], id="rows counted per 10 s bin"),
        pytest.param({"bin": 10.0, "per_second": True}, [0, 10, 20, 30], [0.4, 0, 0, 0.1], id="per second"),
        pytest.param({"bin": 60.0}, [0, 60], [5, 0], id="one minute: at least 2 bins"),
        pytest.param({"bin": 10.0, "value_column": "status"}, [0, 10, 20, 30], [1100, 0, 0, 200],
                     id="a named value column is summed per bin"),
    ],
)  # fmt: skip
def test_per_event_log_is_counted_per_bin(
    tmp_path: Path, kwargs: dict[str, Any], times: list[float], values: list[float]
) -> None:
    tr = load_trace(write(tmp_path, REQUEST_LOG), **kwargs)
    assert (tr.times - T_2020).tolist() == times  # bins aligned to multiples of the bin since the epoch
    assert tr.values.tolist() == pytest.approx(values)
    assert (tr.interval, tr.shape, tr.source_rows) == (kwargs["bin"], "bins", 5)


def test_rows_without_timestamps_are_evenly_spaced(tmp_path: Path) -> None:
    tr = load_trace(write(tmp_path, "requests\n10\n20\n5\n"), interval=300.0)
    assert tr.times.tolist() == [0.0, 300.0, 600.0]
    assert tr.values.tolist() == [10.0, 20.0, 5.0]
    assert (tr.interval, tr.end, tr.value_column, tr.shape) == (
        300.0,
        900.0,
        "requests",
        "evenly spaced rows",
    )
    tr2 = load_trace(write(tmp_path, "n,requests\n1,10\n2,20\n"), interval=60.0, per_second=True)
    assert tr2.values.tolist() == pytest.approx([10 / 60, 20 / 60])  # column 1 by default


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        pytest.param(REQUEST_LOG, {}, r"line 2: value 'GET' is not a number \(column 'method': the value column "
                     r"must hold the load; choose it with --value-column, or count the rows per bin with --bin",
                     id="a request log without --bin names the column and the way out"),
        pytest.param("t,v\n100,1\n100,1\n", {}, r"line 3: timestamp .100. duplicates .*count the rows per bin with --bin 10s", id="duplicates hint --bin"),
        pytest.param(REQUEST_LOG, {"bin": 10.0, "value_column": "path"}, r"line 2: value '/a' is not a number",
                     id="--bin with a non-numeric value column"),
        pytest.param(REQUEST_LOG, {"bin": 10.0, "interval": 10.0}, r"use one of them", id="--bin and --interval"),
        pytest.param("v\n1\n2\n", {"interval": 10.0, "time_column": "v"}, r"takes no --time-column",
                     id="--interval has no time column"),
        pytest.param("v\n1\n", {"interval": 10.0}, r"1 data row\(s\)", id="--interval: 2 rows at least"),
        pytest.param("v\n1\nmany\n", {"interval": 10.0}, r"line 3: value 'many' is not a number",
                     id="--interval: non-numeric value"),
        pytest.param("t\n", {"bin": 10.0}, r"0 data rows; a per-event log needs at least 1 event", id="no events"),
        pytest.param("t\n1\n1000000000000\n", {"bin": 1.0}, r"milliseconds", id="millisecond timestamps"),
        pytest.param(REQUEST_LOG, {"bin": 0.0}, r"--bin must be a duration > 0", id="zero bin"),
    ],
)  # fmt: skip
def test_trace_shape_errors(tmp_path: Path, text: str, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TraceError, match=message):
        load_trace(write(tmp_path, text), **kwargs)
