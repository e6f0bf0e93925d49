"""`oceand token create | list | delete | rotate` on the host (PRODUCT §10): the first admin token, and a
way back in when every admin token is lost. Acts directly on the configured store, as actor `local`.

`create` and `rotate` print the token's fields, then the secret alone on the last line (shown once;
only its hash is stored).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from oceand.auth import (
    LOCAL_ACTOR,
    MAX_EXPIRES,
    MAX_GRACE,
    SCOPES,
    Authority,
    TokenError,
    audit,
    check_duration,
    check_globs,
    check_name,
    check_scopes,
)
from oceand.config import Config, ConfigError, default_config, load_config

SOURCE = "host"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="oceand token", description="access tokens of the admin API")
    sub = p.add_subparsers(dest="action", required=True)
    for name, text in (
        ("create", "create a token; prints its secret as the last line"),
        ("list", "list the tokens (never their secrets)"),
        ("delete", "revoke a token"),
        ("rotate", "give a token a new secret; the old one works for --grace"),
    ):
        s = sub.add_parser(name, help=text)
        s.add_argument("--config", help="TOML config file (default: the embedded defaults)")
        if name != "list":
            s.add_argument("--name", required=True, help="the token's name (1-64 of [A-Za-z0-9._-])")
        if name == "create":
            s.add_argument(
                "--scope", action="append", required=True, choices=SCOPES, help="repeat for several scopes"
            )
            s.add_argument("--jobs", action="append", help="job-name glob (repeatable; default '*')")
            s.add_argument("--expires", help="lifetime, e.g. '90d' (default: never)")
        if name == "rotate":
            s.add_argument("--grace", help="how long the old secret keeps working (default [auth] grace)")
    return p


async def _run(config: Config, args: argparse.Namespace) -> int:
    from oceand.store import open_store

    store = open_store(config.store.url)
    await store.open()
    try:
        authority = Authority(store, grace=config.auth.grace, max_tokens=config.auth.max_tokens)
        now = authority.clock()
        if args.action == "list":
            for t in await authority.tokens():
                pub = t.public(now)
                exp = "never" if t.expires_at is None else f"{t.expires_at:.0f}"
                state = " (expired)" if pub["expired"] else ""
                print(f"{t.name}\tscopes={','.join(t.scopes)}\tjobs={','.join(t.jobs)}\texpires={exp}{state}")
            return 0
        name = check_name(args.name)
        if args.action == "delete":
            await authority.delete(name)
            await audit(store, now, LOCAL_ACTOR, SOURCE, "token.delete", detail={"token": name})
            print(f"token {name} deleted")
            return 0
        if args.action == "rotate":
            grace = None if args.grace is None else check_duration(args.grace, "grace", MAX_GRACE)
            token, secret = await authority.rotate(name, grace)
            await audit(
                store, now, LOCAL_ACTOR, SOURCE, "token.rotate",
                detail={"token": name, "old_secret_valid_until": token.old_until},
            )  # fmt: skip
            print(f"token {name} rotated; the old secret works until {token.old_until:.0f} (Unix time)")
            print(secret)
            return 0
        scopes = check_scopes(args.scope)
        jobs = check_globs(args.jobs, scopes)
        expires = None if args.expires is None else check_duration(args.expires, "expires", MAX_EXPIRES)
        token, secret = await authority.create(name, scopes, jobs, expires)
        await audit(
            store, now, LOCAL_ACTOR, SOURCE, "token.create",
            detail={"token": name, "scopes": list(scopes), "jobs": list(jobs)},
        )  # fmt: skip
        exp = "never" if token.expires_at is None else f"{token.expires_at:.0f} (Unix time)"
        print(f"token {name} created: scopes {', '.join(scopes)}; jobs {', '.join(jobs)}; expires {exp}")
        print("the secret below is shown once; send it as 'Authorization: Bearer <secret>'")
        print(secret)
        return 0
    finally:
        await store.close()


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        config = default_config() if args.config is None else load_config(Path(args.config))
    except ConfigError as e:
        print(f"oceand: config error: {e}", file=sys.stderr)
        return 2
    from oceand.store.base import StoreError

    try:
        return asyncio.run(_run(config, args))
    except TokenError as e:
        print(f"oceand token: {e.message}", file=sys.stderr)
        return 1
    except StoreError as e:
        print(f"oceand token: store unavailable: {e}", file=sys.stderr)
        return 1
