"""`oceand replay --job-history JOB --since 7d --job new.json` (PRODUCT §13): a preview through the
admin API (`POST /api/v1/jobs/{job}/preview`), so the daemon's recorded history is the trace.

The daemon's URL: `--url`, else $OCEAND_URL, else oceanctl's config file, else http://127.0.0.1:8080;
the token from $OCEAND_TOKEN (as oceanctl). Exit status: 0 done; 2 bad input (arguments, the job file,
or the daemon's 4xx naming the problem); 1 the daemon could not be reached or failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from oceand.ctl.client import ApiFailure, Client, CtlError, resolve
from oceand.replay_cli import USAGE_ERROR, UsageError, _check_output_dirs, _Parser, _write_text, load_job
from policies.document import dump_job, parse_duration

TIMELINE_COLUMNS = ("t", "load", "ready", "starting", "desired", "cpu_used", "unserved")


def _since(text: str) -> float:
    """A duration before now (`7d`, `90m`) or Unix seconds."""
    try:
        return (
            float(text) if text.replace(".", "", 1).isdigit() and float(text) > 1e8 else -parse_duration(text)
        )
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a duration before now (7d) or Unix seconds ({e})"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="oceand replay --job-history",
        description="Preview a job document on a job's recorded history, through the admin API.",
    )
    p.add_argument("--job-history", required=True, metavar="JOB", help="the job whose history is the load")
    p.add_argument("--job", required=True, metavar="FILE", help="the job document to preview")
    p.add_argument("--since", type=_since, default=-7 * 86400.0, help="7d (before now) or Unix seconds")
    p.add_argument("--until", type=_since, default=None, help="default now; 1h (before now) or Unix seconds")
    p.add_argument("--url", help="the daemon's admin API (default $OCEAND_URL or http://127.0.0.1:8080)")
    p.add_argument("--rule", help="the rule whose values give the load (default the first on cpu/qps)")
    p.add_argument("--capacity", type=float, help="load one ready instance serves (default 100)")
    p.add_argument("--startup", type=parse_duration, help="launch-to-ready time (default 60s)")
    p.add_argument("--initial", type=int, help="ready instances at the start (default the recorded count)")
    p.add_argument("--timeline", metavar="OUT.csv", help="write one row per period")
    p.add_argument("--summary", metavar="OUT.json", help="write the summary, differences included")
    return p


def _when(value: float | None, now: float) -> float:
    if value is None:
        return now
    return now + value if value <= 0 else value


def write_timeline(rows: list[dict[str, Any]], out: TextIO) -> None:
    out.write(",".join(TIMELINE_COLUMNS) + "\n")
    out.writelines(",".join(str(r[c]) for c in TIMELINE_COLUMNS) + "\n" for r in rows)


def run(argv: Sequence[str], now: float | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(list(argv))
    _check_output_dirs(args.timeline, args.summary)
    doc = dump_job(load_job(args.job))
    now = time.time() if now is None else now
    body: dict[str, Any] = {"job": doc, "since": _when(args.since, now), "until": _when(args.until, now)}
    for key in ("rule", "capacity", "startup", "initial"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    client = Client(resolve(args.url, None))
    reply: dict[str, Any] = client.call("POST", Client.job_path(args.job_history, "/preview"), body)
    out = {
        "job": reply["job"],
        "rule": reply["rule"],
        **reply["summary"],
        "differences": reply["differences"],
    }
    if args.timeline:
        _write_text(args.timeline, lambda f: write_timeline(reply["timeline"], f))
    if args.summary:
        _write_text(args.summary, lambda f: f.write(json.dumps(out, indent=2) + "\n"))
    if not (args.timeline or args.summary):
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    return reply


def main(argv: list[str]) -> int:
    try:
        run(argv)
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return USAGE_ERROR
    except ApiFailure as e:
        print("\n".join([f"oceand replay: {e.message}", *e.details]), file=sys.stderr)
        return USAGE_ERROR if 400 <= e.status < 500 else 1
    except CtlError as e:
        print(f"oceand replay: {e.message}", file=sys.stderr)
        return 1
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    return 0
