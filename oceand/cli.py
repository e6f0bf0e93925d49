"""`oceand run | check-config | replay` (PRODUCT §6, §7)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from oceand.config import Config, ConfigError, default_config, load_config

log = logging.getLogger("oceand")


def _load(path: str | None) -> Config:
    return default_config() if path is None else load_config(Path(path))


def _check(path: str | None) -> tuple[Config, list[str]]:
    """The config, and one line per warning of its job files (policies/warnings.py: what a valid
    document cannot do as written)."""
    from oceand.jobfiles import load_job_files
    from policies.warnings import document_warnings

    config = _load(path)  # store.url is checked by the store's own parser while loading
    warnings: list[str] = []
    if config.jobs_dir is not None:
        for file, doc in load_job_files(Path(config.jobs_dir)):
            warnings += [f"{file}: warning: {w['message']}" for w in document_warnings(doc)]
    return config, warnings


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("oceand")
    except PackageNotFoundError:  # a checkout on sys.path without an install
        return "(not installed)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "replay":
        if any(a == "--job-history" or a.startswith("--job-history=") for a in argv[1:]):
            from oceand.history_cli import main as history_main  # a job's recorded history as the trace

            return history_main(argv[1:])
        from oceand.replay_cli import main as replay_main

        return replay_main(argv[1:])
    if argv and argv[0] == "token":
        from oceand.token_cli import main as token_main

        return token_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="oceand",
        description="Elastic-scaling daemon for Marathon / Open-Falcon (docs/operations.md). "
        "Operators' commands over the admin API are in `oceanctl` (docs/cli.md).",
    )
    parser.add_argument("--version", action="version", version=f"oceand {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p_run = sub.add_parser(
        "run",
        help="run the daemon",
        description="Run the daemon in the foreground (as systemd does): load the config and the job "
        "files, serve the admin and ingest APIs, scale. SIGHUP reloads the config, SIGTERM drains and "
        "exits 0. Exit status 2: config error; 1: the store or a listener could not start.",
    )
    p_run.add_argument("--config", metavar="FILE", help="TOML config file (default: the embedded defaults)")
    p_check = sub.add_parser(
        "check-config",
        help="validate the config and job files, then exit",
        description="Validate a config file and the job files under its jobs_dir, then exit: 0 and "
        "'FILE: OK' when both are good, 2 with the file and key of the first error otherwise. "
        "Without a file, checks the embedded defaults.",
    )
    p_check.add_argument("file", nargs="?", metavar="FILE", help="TOML config file")
    p_check.add_argument("--config", metavar="FILE", help="the same as FILE (the older spelling)")
    sub.add_parser(
        "replay",
        help="what-if simulation on a recorded load (oceand replay --help)",
        description="What-if simulation of a job document on a recorded load (oceand replay --help).",
    )
    sub.add_parser(
        "token",
        help="create, list, rotate or delete access tokens (oceand token --help)",
        description="Create, list, rotate or delete the admin API's access tokens on the host (docs/security.md).",
    )
    args = parser.parse_args(argv)
    if args.command == "check-config" and args.file is not None:
        if args.config is not None and args.config != args.file:
            parser.error("check-config: give the config file either as FILE or --config, not both")
        args.config = args.file

    from oceand.logs import setup_logging

    try:
        config, warnings = _check(args.config)
    except ConfigError as e:
        print(f"oceand: config error: {e}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        for line in warnings:
            print(line, file=sys.stderr)
        print(f"{args.config or '(embedded defaults)'}: OK")
        return 0
    setup_logging(config.log.level, config.log.format)
    from oceand.daemon import run
    from oceand.store.base import StoreError

    try:
        return asyncio.run(run(config))
    except StoreError as e:
        log.error("store unavailable at start: %s", e, extra={"event": "fatal"})
        return 1
    except OSError as e:
        log.error("cannot start: %s", e, extra={"event": "fatal"})
        return 1
    except ConfigError as e:
        log.error("config error: %s", e, extra={"event": "fatal"})
        return 2


if __name__ == "__main__":
    sys.exit(main())
