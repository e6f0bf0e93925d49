"""Recorded load for `oceand replay` (PRODUCT §6): a CSV trace loaded into numpy arrays.

A trace has a header row, a timestamp column and a value column (the load). Timestamps are ISO 8601
(`2015-02-26 21:42:53`, `1995-08-03T04:37`, `...+08:00`, `...Z`; without a zone they are read as UTC)
or Unix seconds (a plain number, e.g. `1438560000` or `1438560000.5`). Rows must be in strictly
increasing time order. Every problem is a `TraceError` naming the file and the line (the header is line
1, so the first data row is line 2), never a traceback.

The load holds its value from one row to the next; the last row holds for one typical row interval
(the median interval between rows), which is also what `--per-second` divides by.

Two other shapes (`load_trace(bin=...)`, `load_trace(interval=...)`):
- a per-event log (`--bin 10s`): one row per event (a request), in any order, duplicates allowed; the
  load of each bin (aligned to whole multiples of the bin since the Unix epoch) is the number of rows
  whose time falls in it, or the sum of the value column when one is named; bins without a row are 0;
- rows without a timestamp (`--interval 300s`): row k is at k × interval seconds (from the Unix epoch,
  1970-01-01T00:00Z); there is no time column, the value column is the only column or column 1.
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
    shape: str = "rows"  # rows | bins (a per-event log counted per bin) | evenly spaced rows (--interval)
    source_rows: int = 0  # data rows read from the file (for bins: the events)

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


MAX_BINS = 10_000_000  # bins of a per-event log: ~3 years at 10 s; more is almost surely a misread trace


def load_trace(
    path: str | Path,
    *,
    time_column: str | int | None = None,
    value_column: str | int | None = None,
    scale: float = 1.0,
    per_second: bool = False,
    bin: float | None = None,
    interval: float | None = None,
) -> Trace:
    """Read a CSV trace. Columns are named or given as 0-based indexes (default: time 0, value 1).

    `scale` multiplies every value; `per_second` divides every value by the median row interval (the
    bin, the interval). `bin`: a per-event log counted per bin; `interval`: rows without timestamps.
    """
    name = str(path)
    if not (math.isfinite(scale) and scale > 0):
        raise TraceError(f"--scale must be a finite number > 0, not {scale!r}")
    for opt, val in (("--bin", bin), ("--interval", interval)):
        if val is not None and not (math.isfinite(val) and val > 0):
            raise TraceError(f"{opt} must be a duration > 0, not {val!r}")
    if bin is not None and interval is not None:
        raise TraceError("--bin counts timestamped events per bin and --interval spaces rows without a "
                         "timestamp evenly: use one of them")  # fmt: skip
    if interval is not None and time_column is not None:
        raise TraceError("--interval replays rows without a timestamp: it takes no --time-column")
    reader: CsvReader | None = None
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, strict=True)
            if bin is not None:
                t, v, tcol, vcol, rows = _read_events(reader, name, time_column, value_column, bin)
                shape = "bins"
            elif interval is not None:
                v, vcol = _read_values(reader, name, value_column)
                rows = len(v)
                t = np.arange(rows, dtype=np.float64) * interval
                tcol, shape = "", "evenly spaced rows"
            else:
                times, values, tcol, vcol = _read_rows(reader, name, time_column, value_column)
                t, v = np.asarray(times, dtype=np.float64), np.asarray(values, dtype=np.float64)
                rows, shape = len(times), "rows"
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
    step = bin if bin is not None else interval
    interval_s = step if step is not None else float(np.median(np.diff(t)))
    v = v * scale
    if per_second:
        v = v / interval_s
    return Trace(name, t, v, interval_s, tcol, vcol, scale, per_second, shape, rows)


def _header(reader: CsvReader, name: str) -> list[str]:
    for row in reader:
        if any(cell.strip() for cell in row):
            return [cell.strip() for cell in row]
    raise TraceError(f"{name}: empty file (a trace needs a header row and at least 2 data rows)")


def _value(cell: str, where: str, column: str) -> float:
    """A load value, or a TraceError that says how to pick the load column."""
    try:
        value = float(cell.strip())
    except ValueError:
        raise TraceError(
            f"{where}: value {cell!r} is not a number (column {column!r}: the value column must hold "
            "the load; choose it with --value-column, or count the rows per bin with --bin 10s for a log "
            "with one row per request)"
        ) from None
    if not math.isfinite(value):
        raise TraceError(f"{where}: value {cell!r} is not a finite number")
    if value < 0:
        raise TraceError(f"{where}: value {cell!r} is negative (a load is >= 0)")
    return value


def _read_values(reader: CsvReader, name: str, value_column: str | int | None) -> tuple[FloatArray, str]:
    """Rows without a timestamp (--interval): the value column of every row."""
    header = _header(reader, name)
    vi = _column(header, value_column, 0 if len(header) == 1 else 1, "value", name)
    values: list[float] = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        where = f"{name}, line {reader.line_num}"
        if len(row) <= vi:
            raise TraceError(f"{where}: {len(row)} column(s), but column {vi} is needed")
        values.append(_value(row[vi], where, header[vi]))
    if len(values) < 2:
        raise TraceError(f"{name}: {len(values)} data row(s); a trace needs at least 2")
    return np.asarray(values, dtype=np.float64), header[vi]


def _read_events(
    reader: CsvReader, name: str, time_column: str | int | None, value_column: str | int | None, bin: float
) -> tuple[FloatArray, FloatArray, str, str, int]:
    """A per-event log (--bin): (bin starts, rows or value sums per bin, time column, value column, rows)."""
    header = _header(reader, name)
    ti = _column(header, time_column, 0, "time", name)
    vi = None if value_column is None else _column(header, value_column, 1, "value", name)
    if vi == ti:
        raise TraceError(f"{name}: the time and value columns are the same column ({header[ti]!r})")
    need = max(ti, -1 if vi is None else vi) + 1
    times: list[float] = []
    weights: list[float] = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        where = f"{name}, line {reader.line_num}"
        if len(row) < need:
            raise TraceError(f"{where}: {len(row)} column(s), but column {need - 1} is needed")
        try:
            times.append(parse_timestamp(row[ti]))
        except ValueError as e:
            raise TraceError(f"{where}: {e}") from None
        if vi is not None:
            weights.append(_value(row[vi], where, header[vi]))
    if not times:
        raise TraceError(f"{name}: 0 data rows; a per-event log needs at least 1 event")
    t = np.asarray(times, dtype=np.float64)
    first = math.floor(float(t.min()) / bin)
    idx = np.floor(t / bin).astype(np.int64) - first
    nbins = max(2, int(idx.max()) + 1)  # at least 2 bins: the replay needs a row interval
    if nbins > MAX_BINS:
        raise TraceError(
            f"{name}: the events span {float(t.max() - t.min()):.0f} s = {nbins:,} bins of {bin:g} s, more than "
            f"{MAX_BINS:,}; are its Unix timestamps in milliseconds rather than seconds?"
        )
    w = None if vi is None else np.asarray(weights, dtype=np.float64)
    counts = np.bincount(idx, weights=w, minlength=nbins).astype(np.float64)
    starts = (first + np.arange(nbins, dtype=np.float64)) * bin
    return starts, counts, header[ti], ("events" if vi is None else header[vi]), len(times)


def _read_rows(
    reader: CsvReader, name: str, time_column: str | int | None, value_column: str | int | None
) -> tuple[list[float], list[float], str, str]:
    header = _header(reader, name)
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
        value = _value(row[vi], where, header[vi])
        if t <= prev:
            kind = "duplicates" if t == prev else "is earlier than"
            raise TraceError(
                f"{where}: timestamp {row[ti].strip()!r} {kind} the previous row's (line {prev_line}); "
                "rows must be in strictly increasing time order (for a log with one row per event, count "
                "the rows per bin with --bin 10s)"
            )
        times.append(t)
        values.append(value)
        prev, prev_line = t, line
    if len(times) < 2:
        raise TraceError(
            f"{name}: {len(times)} data row(s); a trace needs at least 2 (the row interval comes from them)"
        )
    return times, values, header[ti], header[vi]
