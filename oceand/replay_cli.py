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


def _fmt_time(t: float) -> str:
    return str(int(t)) if t == int(t) else f"{t:.3f}"


def write_timeline(result: ReplayResult, out: TextIO) -> None:
    """CSV `t,load,ready,starting,desired,cpu_used,unserved`; t in Unix seconds, fixed decimals."""
    tl = result.timeline
    out.write("t,load,ready,starting,desired,cpu_used,unserved\n")
    out.writelines(
        f"{_fmt_time(t)},{load:.4f},{r},{s},{d},{cpu:.2f},{u:.4f}\n"
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
        "capacity": opt.capacity,
        "startup": opt.startup,
        "initial": opt.initial,
        "deployments": opt.deployments,
        "period": result.period,
    }
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
        )
        result = simulate(
            doc, trace, ReplayOptions(args.capacity, args.startup, args.initial, args.deployments)
        )
    except (TraceError, ReplayError) as e:
        raise UsageError(str(e)) from None
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
    if any(a == "--job-history" or a.startswith("--job-history=") for a in argv):
        from oceand.history_cli import main as history_main  # the recorded history as the trace

        return history_main(argv)
    try:
        run(argv)
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return USAGE_ERROR
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    return 0
