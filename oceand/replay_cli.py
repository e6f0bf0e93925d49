"""`oceand replay TRACE.csv --job job.json ...` (PRODUCT §6): argument parsing, inputs and outputs.

Exit status: 0 done; 2 bad input (arguments, trace, job document, an output that cannot be written),
with one clear message on stderr and never a traceback. Without --timeline/--summary/--plot the summary
JSON goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

from oceand.config import ConfigError
from oceand.jobfiles import load_job_file
from oceand.replay import ReplayError, ReplayOptions, ReplayResult, simulate
from oceand.trace import TraceError, load_trace
from policies.document import JobDocument, parse_duration

USAGE_ERROR = 2


class UsageError(Exception):
    """A bad command line or input; the message is printed as is."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.format_usage().rstrip()}\n{self.prog}: error: {message}")


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive_duration(text: str) -> float:
    seconds = _duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a duration > 0")
    return seconds


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="oceand replay",
        description="What-if simulation of a job document against a recorded load (docs/replay.md).",
    )
    p.add_argument("trace", metavar="TRACE.csv", help="CSV with a header row, a timestamp and a load column")
    p.add_argument("--job", required=True, metavar="FILE", help="job document (.json, .toml or .yaml)")
    p.add_argument("--time-column", metavar="C", help="timestamp column: name or 0-based index (default 0)")
    p.add_argument("--value-column", metavar="C", help="load column: name or 0-based index (default 1)")
    p.add_argument("--scale", type=_positive_float, default=1.0, help="multiply the load (default 1.0)")
    p.add_argument(
        "--per-second", action="store_true", help="divide each value by the trace's row interval in seconds"
    )
    p.add_argument(
        "--bin",
        type=_positive_duration,
        metavar="D",
        help="the trace is a per-event log (one row per request): the load of each bin of D is its number "
        "of rows (or the sum of --value-column)",
    )
    p.add_argument(
        "--interval",
        type=_positive_duration,
        metavar="D",
        help="the rows have no timestamp: replay them D apart (from 1970-01-01T00:00Z)",
    )
    p.add_argument(
        "--capacity", type=_positive_float, default=100.0, help="load one ready instance serves (default 100)"
    )
    p.add_argument("--startup", type=_duration, default=60.0, help="launch-to-ready time (default 60s)")
    p.add_argument("--initial", type=_count, default=1, help="ready instances at the start (default 1)")
    p.add_argument(
        "--deployments",
        action="store_true",
        help="model Marathon deployments: while instances are starting the next action waits for them "
        "(PRODUCT §3.3 step 5; beyond the §6 model, off by default)",
    )
    p.add_argument("--timeline", metavar="OUT.csv", help="write one row per period")
    p.add_argument("--summary", metavar="OUT.json", help="write the summary JSON")
    p.add_argument("--plot", metavar="OUT.png", help="write a PNG of load, capacity and actions")
    return p


def load_job(path: str) -> JobDocument:
    """The job document (.json, .toml, .yaml) through the daemon's own job-file reader."""
    try:
        return load_job_file(Path(path))
    except ConfigError as e:
        raise UsageError(f"invalid job document:\n{e}") from None


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def _num(x: float) -> str:
    """A float with full precision (repr: it reads back as the same float); whole numbers as integers."""
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


def write_timeline(result: ReplayResult, out: TextIO) -> None:
    """CSV `t,load,ready,starting,desired,cpu_used,unserved`; t in Unix seconds, every number with full
    precision (a float's repr, a whole number without decimals), so sums of the timeline equal the
    summary's."""
    tl = result.timeline
    out.write("t,load,ready,starting,desired,cpu_used,unserved\n")
    out.writelines(
        f"{_num(t)},{_num(load)},{r},{s},{d},{_num(cpu)},{_num(u)}\n"
        for t, load, r, s, d, cpu, u in zip(
            tl.t.tolist(),
            tl.load.tolist(),
            tl.ready.tolist(),
            tl.starting.tolist(),
            tl.desired.tolist(),
            tl.cpu_used.tolist(),
            tl.unserved.tolist(),
            strict=True,
        )
    )


def trace_warnings(result: ReplayResult) -> list[str]:
    """What the replay could not take into account as given (printed on stderr, listed in the summary)."""
    tr, period = result.trace, result.period
    out: list[str] = []
    if tr.interval < period:
        what = {"bins": "bins", "evenly spaced rows": "rows"}.get(tr.shape, "rows")
        hint = (
            f"use --bin {period:g}s"
            if tr.shape == "bins"
            else f"for a log with one row per event use --bin {period:g}s; otherwise aggregate the trace to "
            f"the period first"
        )
        out.append(
            f"{tr.path}: the trace's {what} are {tr.interval:g} s apart, finer than the job's period of "
            f"{period:g} s: each period sees only the value in force at its start, not the "
            f"{what} in between ({hint})"
        )
    return out


def summary_document(result: ReplayResult) -> dict[str, Any]:
    """The summary plus what it was computed from, in a fixed key order."""
    tr, opt = result.trace, result.options
    out = result.summary()
    out["job"] = result.doc.job
    out["inputs"] = {
        "trace": tr.path,
        "time_column": tr.time_column,
        "value_column": tr.value_column,
        "rows": len(tr.times),
        "row_interval": tr.interval,
        "start": _iso(float(result.timeline.t[0])),
        "end": _iso(result.trace.end),
        "scale": tr.scale,
        "per_second": tr.per_second,
        "shape": tr.shape,
        "source_rows": tr.source_rows,
        "capacity": opt.capacity,
        "startup": opt.startup,
        "initial": opt.initial,
        "deployments": opt.deployments,
        "period": result.period,
    }
    out["warnings"] = trace_warnings(result)
    return out


def summary_json(result: ReplayResult) -> str:
    return json.dumps(summary_document(result), indent=2) + "\n"


def _write_text(path: str, write: Any) -> None:
    try:
        with open(path, "w", encoding="utf-8", newline="") as f:
            write(f)
    except OSError as e:
        raise UsageError(f"{path}: cannot write ({e.strerror or e})") from None


def _check_output_dirs(*paths: str | None) -> None:
    """Fail before a long replay, not after it, when an output's directory does not exist."""
    for path in paths:
        if path and not Path(path).parent.is_dir():
            raise UsageError(f"{path}: cannot write (no directory {str(Path(path).parent)!r})")


def run(argv: Sequence[str]) -> ReplayResult:
    args = build_parser().parse_args(list(argv))
    _check_output_dirs(args.timeline, args.summary, args.plot)
    doc = load_job(args.job)
    try:
        trace = load_trace(
            args.trace,
            time_column=args.time_column,
            value_column=args.value_column,
            scale=args.scale,
            per_second=args.per_second,
            bin=args.bin,
            interval=args.interval,
        )
        result = simulate(
            doc, trace, ReplayOptions(args.capacity, args.startup, args.initial, args.deployments)
        )
    except (TraceError, ReplayError) as e:
        raise UsageError(str(e)) from None
    for warning in trace_warnings(result):
        print(f"warning: {warning}", file=sys.stderr)
    if args.timeline:
        _write_text(args.timeline, lambda f: write_timeline(result, f))
    if args.summary:
        text = summary_json(result)
        _write_text(args.summary, lambda f: f.write(text))
    if args.plot:
        from oceand.replay_plot import PlotError, write_plot

        try:
            write_plot(result, args.plot)
        except PlotError as e:
            raise UsageError(str(e)) from None
    if not (args.timeline or args.summary or args.plot):
        sys.stdout.write(summary_json(result))
    return result


def main(argv: list[str]) -> int:
    """Entry point of `oceand replay` (argv without the program and subcommand names)."""
    try:
        run(argv)
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return USAGE_ERROR
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    return 0
