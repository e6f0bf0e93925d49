"""Recorded load for `oceand replay` (PRODUCT §6): a CSV trace loaded into numpy arrays.

A trace has a header row, a timestamp column and a value column (the load). Timestamps are ISO 8601
(`2015-02-26 21:42:53`, `1995-08-03T04:37`, `...+08:00`, `...Z`; without a zone they are read as UTC)
or Unix seconds (a plain number, e.g. `1438560000` or `1438560000.5`). Rows must be in strictly
increasing time order. Every problem is a `TraceError` naming the file and the line (the header is line
1, so the first data row is line 2), never a traceback.

The load holds its value from one row to the next; the last row holds for one typical row interval
(the median interval between rows), which is also what `--per-second` divides by.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from _csv import Reader as CsvReader

FloatArray = npt.NDArray[np.float64]

_UNIX_RE = re.compile(r"^[+-]?\d+(\.\d*)?$")


class TraceError(ValueError):
    """A trace could not be loaded; the message names the file and, where it applies, the line."""


@dataclass(frozen=True, slots=True)
class Trace:
    """A loaded trace: row times (Unix seconds, strictly increasing) and the load in force from each."""

    path: str
    times: FloatArray
    values: FloatArray  # after --scale and --per-second
    interval: float  # the median row interval, seconds (> 0)
    time_column: str
    value_column: str
    scale: float = 1.0
    per_second: bool = False

    @property
    def start(self) -> float:
        return float(self.times[0])

    @property
    def end(self) -> float:
        """The instant the last row stops holding: last row's time + one typical interval."""
        return float(self.times[-1]) + self.interval

    def load_at(self, t: FloatArray) -> FloatArray:
        """The load in force at each instant of `t` (within [start, end)): the last row at or before it."""
        idx = np.searchsorted(self.times, t, side="right") - 1
        return self.values[np.clip(idx, 0, len(self.values) - 1)]


def parse_timestamp(text: str) -> float:
    """ISO 8601 (naive = UTC) or Unix seconds -> Unix seconds. Raises ValueError with the reason."""
    s = text.strip()
    if not s:
        raise ValueError("empty timestamp")
    if _UNIX_RE.match(s):
        value = float(s)
        if not math.isfinite(value):
            raise ValueError(f"timestamp {text!r} is not a finite number")
        return value
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(
            f"bad timestamp {text!r}: use ISO 8601 (e.g. 2015-02-26 21:42:53, 1995-08-03T04:37+08:00) "
            "or Unix seconds"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _column(header: list[str], wanted: str | int | None, default: int, what: str, path: str) -> int:
    if wanted is None:
        index = default
    elif isinstance(wanted, str) and wanted in header:
        return header.index(wanted)
    elif isinstance(wanted, int) or wanted.strip().isdigit():
        index = int(wanted)
    else:
        raise TraceError(f"{path}: no {what} column named {wanted!r} (the header has: {', '.join(header)})")
    if index >= len(header):
        raise TraceError(
            f"{path}: no {what} column {index} (0-based); the header has {len(header)} columns: "
            f"{', '.join(header)}"
        )
    return index


def load_trace(
    path: str | Path,
    *,
    time_column: str | int | None = None,
    value_column: str | int | None = None,
    scale: float = 1.0,
    per_second: bool = False,
) -> Trace:
    """Read a CSV trace. Columns are named or given as 0-based indexes (default: time 0, value 1).

    `scale` multiplies every value; `per_second` divides every value by the median row interval.
    """
    name = str(path)
    if not (math.isfinite(scale) and scale > 0):
        raise TraceError(f"--scale must be a finite number > 0, not {scale!r}")
    reader: CsvReader | None = None
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, strict=True)
            times, values, tcol, vcol = _read_rows(reader, name, time_column, value_column)
    except FileNotFoundError:
        raise TraceError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise TraceError(f"{name}: is a directory, not a CSV file") from None
    except UnicodeDecodeError as e:
        raise TraceError(f"{name}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        line = reader.line_num if reader is not None else 0
        raise TraceError(f"{name}, line {line}: not a valid CSV file ({e})") from None
    except OSError as e:
        raise TraceError(f"{name}: cannot read ({e.strerror or e})") from None
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    interval = float(np.median(np.diff(t)))
    v = v * scale
    if per_second:
        v = v / interval
    return Trace(name, t, v, interval, tcol, vcol, scale, per_second)


def _read_rows(
    reader: CsvReader, name: str, time_column: str | int | None, value_column: str | int | None
) -> tuple[list[float], list[float], str, str]:
    header: list[str] | None = None
    for row in reader:
        if any(cell.strip() for cell in row):
            header = [cell.strip() for cell in row]
            break
    if header is None:
        raise TraceError(f"{name}: empty file (a trace needs a header row and at least 2 data rows)")
    ti = _column(header, time_column, 0, "time", name)
    vi = _column(header, value_column, 1, "value", name)
    if ti == vi:
        raise TraceError(f"{name}: the time and value columns are the same column ({header[ti]!r})")
    need = max(ti, vi) + 1
    times: list[float] = []
    values: list[float] = []
    prev = -math.inf
    prev_line = 0
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue  # blank lines are allowed (e.g. a trailing newline)
        where = f"{name}, line {line}"
        if len(row) < need:
            raise TraceError(f"{where}: {len(row)} column(s), but column {need - 1} is needed")
        try:
            t = parse_timestamp(row[ti])
        except ValueError as e:
            raise TraceError(f"{where}: {e}") from None
        cell = row[vi].strip()
        try:
            value = float(cell)
        except ValueError:
            raise TraceError(f"{where}: value {row[vi]!r} is not a number") from None
        if not math.isfinite(value):
            raise TraceError(f"{where}: value {row[vi]!r} is not a finite number")
        if value < 0:
            raise TraceError(f"{where}: value {row[vi]!r} is negative (a load is >= 0)")
        if t <= prev:
            kind = "duplicates" if t == prev else "is earlier than"
            raise TraceError(
                f"{where}: timestamp {row[ti].strip()!r} {kind} the previous row's (line {prev_line}); "
                "rows must be in strictly increasing time order"
            )
        times.append(t)
        values.append(value)
        prev, prev_line = t, line
    if len(times) < 2:
        raise TraceError(
            f"{name}: {len(times)} data row(s); a trace needs at least 2 (the row interval comes from them)"
        )
    return times, values, header[ti], header[vi]
