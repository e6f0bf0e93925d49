"""`oceanctl`: the operator's command line over the admin API (PRODUCT §12, docs/cli.md).

Every command is one to three calls of the admin API through `oceand.ctl.client`; nothing here touches the
store or the daemon's internals. Exit codes: 0 ok, 1 usage (or a question answered "no"), 2 not found,
3 validation, 4 auth, 5 server or connection (`client.exit_code_for`).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import sys
import time
import tomllib
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from oceand.ctl.client import (
    NOT_FOUND,
    USAGE,
    VALIDATION,
    ApiFailure,
    Client,
    CtlError,
    resolve,
)

F = TypeVar("F", bound=Callable[..., Any])

# ---- output ------------------------------------------------------------------------------------------


def console(err: bool = False) -> Console:
    """rich on the current stdout/stderr (colour on a terminal only; NO_COLOR is honoured). Off a terminal
    the width is unbounded, so pipes and files get whole job names, never folded cells."""
    stream = sys.stderr if err else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 10_000
    return Console(file=stream, width=width, highlight=False, markup=False, soft_wrap=True)


def dump(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False).rstrip("\n")


def output_option(f: F) -> F:
    return click.option(
        "-o",
        "--output",
        type=click.Choice(["table", "json", "yaml"]),
        default="table",
        show_default=True,
        help="table: for people; json / yaml: the API's reply, for scripts.",
    )(f)


def emit(data: Any, fmt: str, human: Callable[[Console], None]) -> None:
    if fmt == "table":
        con = console()
        with con.capture() as cap:  # tables pad their last column: no trailing blanks in the output
            human(con)
        click.echo("\n".join(line.rstrip() for line in cap.get().splitlines()))
    else:
        click.echo(dump(data, fmt))


def when(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def table(*columns: str) -> Table:
    t = Table(box=None, pad_edge=False, header_style="bold")
    for c in columns:
        t.add_column(c, overflow="fold")
    return t


# ---- Ocean tree names --------------------------------------------------------------------------------

TREE_KEYS = ("job", "service", "cluster", "pdl", "owt", "cop")
_TREE_SPLIT = re.compile(r"_(?=(?:" + "|".join(TREE_KEYS) + r")\.)")


def tree_parts(name: str) -> dict[str, str]:
    """`job.web_service.api_cluster.lg_pdl.ocean_owt.inf_cop.xiaomi` -> {"job": "web", ..., "cop": "xiaomi"};
    a name that is no tree name gives {}."""
    parts: dict[str, str] = {}
    for piece in _TREE_SPLIT.split(name):
        key, dot, value = piece.partition(".")
        if dot and key in TREE_KEYS and value:
            parts.setdefault(key, value)
    return parts


# ---- the command group -------------------------------------------------------------------------------


class Ctl(click.Group):
    """click with oceanctl's exit codes: a usage error is 1 (click says 2, which is "not found" here)."""

    def main(self, *args: Any, **kwargs: Any) -> NoReturn:
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.UsageError as e:
            e.show()
            sys.exit(USAGE)
        except click.Abort:
            click.echo("oceanctl: aborted, nothing changed", err=True)
            sys.exit(USAGE)
        except click.ClickException as e:
            e.show()
            sys.exit(USAGE)
        except CtlError as e:
            click.echo(f"oceanctl: {e.message}", err=True)
            for line in e.details:
                click.echo(f"  {line}", err=True)
            sys.exit(e.code)
        sys.exit(rv if isinstance(rv, int) else 0)


def client(ctx: click.Context) -> Client:
    obj = ctx.find_root().obj or {}
    return Client(resolve(obj.get("url"), obj.get("config"), obj.get("cacert")))


def _complete_jobs(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    try:
        root = ctx.find_root()
        settings = resolve(root.params.get("url"), root.params.get("config"), root.params.get("cacert"))
        c = Client(dataclasses.replace(settings, timeout=min(settings.timeout, 2.0)))  # a shell waits on it
        names = [j["job"] for j in c.call("GET", "/api/v1/jobs")["jobs"]]
    except Exception:  # completion must never print a traceback into the shell
        return []
    return [n for n in names if n.startswith(incomplete)]


def job_argument(f: F) -> F:
    return click.argument("job", shell_complete=_complete_jobs)(f)


@click.group(cls=Ctl, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url", metavar="URL", help="The daemon's admin API [env OCEAND_URL; default http://127.0.0.1:8080]."
)
@click.option(
    "--config",
    metavar="FILE",
    help="oceanctl's config file [env OCEANCTL_CONFIG; default ~/.config/oceanctl/config.toml].",
)
@click.option(
    "--cacert",
    metavar="FILE",
    help="CA file for an https daemon's certificate [env OCEAND_CACERT; config `cacert`].",
)
@click.version_option(package_name="oceand", prog_name="oceanctl")
@click.pass_context
def cli(ctx: click.Context, url: str | None, config: str | None, cacert: str | None) -> None:
    """Operate oceand jobs over its admin API.

    The token (sent as `Authorization: Bearer`) comes from $OCEAND_TOKEN or the config file's `token`.
    Exit codes: 0 ok, 1 usage or answered no, 2 not found, 3 validation, 4 auth, 5 server or connection.
    """
    ctx.obj = {"url": url, "config": config, "cacert": cacert}


# ---- jobs ls -----------------------------------------------------------------------------------------


@cli.group()
def jobs() -> None:
    """List jobs."""


@jobs.command("ls")
@click.option("--cop", metavar="C", help="Only jobs whose tree name has cop.C (company).")
@click.option("--owt", metavar="O", help="Only jobs whose tree name has owt.O.")
@click.option("--pdl", metavar="P", help="Only jobs whose tree name has pdl.P (product line).")
@click.option("--service", metavar="S", help="Only jobs whose tree name has service.S.")
@click.option("--cluster", metavar="K", help="Only jobs whose tree name has cluster.K.")
@output_option
@click.pass_context
def jobs_ls(ctx: click.Context, /, output: str, **filters: str | None) -> None:
    """List jobs, optionally filtered by the parts of their Ocean tree names
    (job.X_service.S_cluster.K_pdl.P_owt.O_cop.C)."""
    rows = client(ctx).call("GET", "/api/v1/jobs")["jobs"]
    wanted = {k: v for k, v in filters.items() if v}
    rows = [r for r in rows if all(tree_parts(r["job"]).get(k) == v for k, v in wanted.items())]

    def human(con: Console) -> None:
        if not rows:
            con.print("no jobs" + (" match" if wanted else ""))
            return
        t = table("JOB", "MODE", "EFFECTIVE", "VERSION")
        for r in rows:
            eff = r["effective_mode"]
            t.add_row(r["job"], r["mode"], Text(eff, style=_MODE_STYLE.get(eff, "")), str(r["version"]))
        con.print(t)

    emit({"jobs": rows}, output, human)


_MODE_STYLE = {"active": "green", "dry-run": "yellow", "paused": "red"}


# ---- get / apply / edit / delete ---------------------------------------------------------------------


@cli.command()
@job_argument
@click.option(
    "-o",
    "--output",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
    help="yaml: the document (its version as a comment); json: the API's reply.",
)
@click.pass_context
def get(ctx: click.Context, job: str, output: str) -> None:
    """Print a job's document (webhook secrets show as ***)."""
    reply = client(ctx).call("GET", Client.job_path(job))
    if output == "json":
        click.echo(dump(reply, "json"))
    else:
        click.echo(f"# {job}: version {reply['version']}\n" + dump(reply["job"], "yaml"))


def read_document(path: str) -> dict[str, Any]:
    """A job document from a .json, .yaml/.yml or .toml file (`-`: YAML or JSON on stdin)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as e:
        raise CtlError(USAGE, f"{path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise CtlError(VALIDATION, f"{path}: not UTF-8 text") from None
    suffix = Path(path).suffix.lower()
    try:
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:  # YAML reads JSON too
            data = yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        kind = {".toml": "TOML", ".json": "JSON"}.get(suffix, "YAML")
        raise CtlError(VALIDATION, f"{path}: not valid {kind}: {e}") from None
    if not isinstance(data, dict):
        raise CtlError(
            VALIDATION, f"{path}: a job document is a mapping (an object), not {type(data).__name__}"
        )
    return data


def document_option(help: str) -> Callable[[F], F]:
    return click.option("-f", "--filename", "path", required=True, metavar="FILE", help=help)


def job_name_of(doc: dict[str, Any], path: str) -> str:
    name = doc.get("job")
    if not isinstance(name, str) or not name:
        raise CtlError(VALIDATION, f"{path}: the document has no 'job' (the job's name)")
    return name


def stored(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as the daemon would store it (defaults filled in), so a diff has only real changes;
    a document the daemon would refuse is kept as written (the daemon names its errors)."""
    from policies.document import DocumentError, dump_job, parse_job  # here: 0.3 s of pydantic models

    try:
        return dump_job(parse_job(doc))
    except DocumentError:
        return doc


def diff(live: dict[str, Any] | None, new: dict[str, Any], name: str) -> list[str]:
    a = dump(live, "yaml").splitlines() if live is not None else []
    b = dump(new, "yaml").splitlines()
    return list(difflib.unified_diff(a, b, f"{name} (live)", f"{name} (new)", lineterm=""))


def print_diff(lines: list[str], err: bool) -> None:
    con = console(err)
    for line in lines:
        style = ""
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        elif line.startswith("@@"):
            style = "cyan"
        con.print(Text(line, style=style))


def live_document(c: Client, job: str) -> tuple[dict[str, Any] | None, int | None]:
    try:
        reply = c.call("GET", Client.job_path(job))
    except ApiFailure as e:
        if e.status == 404 and e.api_code == "job_not_found":
            return None, None
        raise
    return reply["job"], reply["version"]


@cli.command()
@document_option("The job document (.json, .yaml, .toml; - for stdin).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask; apply.")
@output_option
@click.pass_context
def apply(ctx: click.Context, path: str, yes: bool, output: str) -> None:
    """Create or replace a job from a file: prints the diff against the live document and asks first."""
    if path == "-" and not yes:
        raise click.UsageError(
            "-f - reads the document from stdin, which cannot answer the question: add --yes"
        )
    doc = read_document(path)
    name = job_name_of(doc, path)
    c = client(ctx)
    live, version = live_document(c, name)
    from policies.redact import public_job

    new = stored(doc)
    shown = public_job(new)  # webhook secrets as `***`, as the live document shows them
    lines = diff(live, shown, name)
    secret = shown != new  # the file carries a webhook secret: the live one cannot be compared with it
    if live is not None and not lines and not secret:
        emit(
            {"job": live, "version": version},
            output,
            lambda con: con.print(f"{name}: unchanged (version {version})"),
        )
        return
    print_diff(lines, err=output != "table")
    if secret:
        click.echo(
            "notify.webhook holds a secret: it is sent as written (the daemon shows no secret to compare)",
            err=True,
        )
    if not yes and not click.confirm(f"{'Replace' if live is not None else 'Create'} job {name}?", err=True):
        raise click.Abort
    reply = c.call("PUT", Client.job_path(name), doc)
    verb = "created" if live is None else "unchanged" if reply["version"] == version else "replaced"
    emit(reply, output, lambda con: con.print(f"{name}: {verb} (version {reply['version']})"))


def _body(text: str) -> str:
    """The document without its comment lines (the header and the error block oceanctl writes)."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")).strip("\n")


def _with_errors(body: str, errors: list[str]) -> str:
    """The document to edit again: the errors as comments at the top, then what the user wrote."""
    head = ["# oceanctl: the daemon refused this document; fix it, or save it unchanged or empty to give up:"]
    head += [f"#   {e}" for e in errors]
    return "\n".join(head) + "\n" + body + "\n"


@cli.command()
@job_argument
@click.pass_context
def edit(ctx: click.Context, job: str) -> None:
    """Edit a job's document in $VISUAL / $EDITOR (YAML) and replace it on save.

    A document the daemon refuses (422) is opened again with the errors as comments at the top; saving
    it unchanged or empty gives up (exit 3).
    """
    c = client(ctx)
    reply = c.call("GET", Client.job_path(job))
    original = reply["job"]
    text = (
        f"# {job}: version {reply['version']}. Lines starting with '#' are ignored.\n"
        + dump(original, "yaml")
        + "\n"
    )
    errors: list[str] = []
    refused = ""  # the body the daemon (or the YAML parser) refused last
    while True:
        edited = click.edit(text, extension=".yaml", require_save=False)
        body = _body(edited or "")
        if edited is None or not body.strip() or body == _body(text) or body == refused:
            if errors:  # closed without a change after an error, or emptied: give up
                raise CtlError(VALIDATION, f"{job}: not saved, the document still has errors", errors)
            click.echo(f"{job}: no changes" if body.strip() else f"{job}: empty document, nothing changed")
            return
        try:
            doc = yaml.safe_load(body)
            if not isinstance(doc, dict):
                raise ValueError(f"a job document is a mapping, not {type(doc).__name__}")
        except (yaml.YAMLError, ValueError) as e:
            errors = [f"not valid YAML: {e}".replace("\n", " ")]
        else:
            if stored(doc) == original:  # a changed webhook secret differs here, though `***` in GET
                click.echo(f"{job}: no changes")
                return
            try:
                put = c.call("PUT", Client.job_path(job), doc)
            except ApiFailure as e:
                if e.status not in (400, 422):
                    raise
                errors = [e.message, *e.details]
            else:
                click.echo(f"{job}: replaced (version {put['version']})")
                return
        refused = body
        text = _with_errors(body, errors)


@cli.command()
@job_argument
@click.pass_context
def delete(ctx: click.Context, job: str) -> None:
    """Delete a job (its Marathon app is left as it is)."""
    client(ctx).call("DELETE", Client.job_path(job))
    click.echo(f"{job}: deleted")


# ---- status / decisions ------------------------------------------------------------------------------


@cli.command()
@job_argument
@output_option
@click.pass_context
def status(ctx: click.Context, job: str, output: str) -> None:
    """A job's live state: mode, instances, bounds, each rule's last value and streaks, cooldowns."""
    st = client(ctx).call("GET", Client.job_path(job, "/status"))

    def human(con: Console) -> None:
        mode = st["effective_mode"]
        head = Table.grid(padding=(0, 2))
        head.add_row("job", st["job"])
        head.add_row(
            "mode",
            Text(mode, style=_MODE_STYLE.get(mode, ""))
            + (f" (set: {st['mode']})" if mode != st["mode"] else ""),
        )
        if st.get("dry_run_reason"):
            head.add_row("dry run because", st["dry_run_reason"])
        head.add_row("version", str(st["version"]))
        counts = ", ".join(f"{k} {st[k]}" for k in ("running", "ready") if st.get(k) is not None)
        inst = (
            "unknown"
            if not st.get("app_known")
            else f"{st['instances']}" + (f" ({counts})" if counts else "")
        )
        head.add_row(
            "instances", inst + (", deployment in progress" if st.get("deployment_in_progress") else "")
        )
        head.add_row("bounds", f"{st['bounds']['min']}..{st['bounds']['max']}")
        for direction, left in (st.get("cooldown_left") or {}).items():
            if left:
                head.add_row(f"cooldown {direction}", f"{left:g}s")
        if st.get("blocked"):
            head.add_row("blocked", Text(str(st["blocked"]), style="red"))
        last = st.get("last_decision")
        if last:
            head.add_row("last decision", _decision_line(last))
        con.print(head)
        if st.get("rules"):
            t = table("RULE", "TYPE", "VALUE", "DETAIL")
            for name, r in st["rules"].items():
                value = r.get("value")
                hidden = {"type", "value", "last_bucket", "next_fire"}  # next_fire_local says it for people
                detail = {k: v for k, v in r.items() if k not in hidden}
                t.add_row(name, r["type"], "-" if value is None else f"{value:g}", _inline(detail))
            con.print()
            con.print(t)

    emit(st, output, human)


def _inline(d: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in d.items() if v not in (None, {}, [])
    )


def _decision_line(d: dict[str, Any]) -> str:
    if not isinstance(d, dict):
        return str(d)
    text = f"{d.get('current')} -> {d.get('desired')}"
    if d.get("reasons"):
        text += f" ({', '.join(d['reasons'])})"
    if d.get("at"):
        text += f" at {when(d['at'])}"
    return text


def _since(value: str | None) -> float | None:
    """`--since`: seconds since the epoch, or a duration back from now (30m, 2h, 1d)."""
    if value is None:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", value.strip())
    if m:
        return time.time() - float(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]]
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(
            "a duration (30m, 2h, 1d) or seconds since the epoch", param_hint="--since"
        ) from None


@cli.command()
@job_argument
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="At most this many."
)
@click.option(
    "--since",
    metavar="WHEN",
    help="Only newer ones: a duration back from now (30m, 2h, 1d) or epoch seconds.",
)
@output_option
@click.pass_context
def decisions(ctx: click.Context, job: str, limit: int, since: str | None, output: str) -> None:
    """A job's decisions, newest first: trigger, count before and after, reasons, what was done."""
    reply = client(ctx).call(
        "GET", Client.job_path(job, "/decisions"), query={"limit": limit, "since": _since(since)}
    )

    def human(con: Console) -> None:
        rows = reply["decisions"]
        if not rows:
            con.print(f"{job}: no decisions yet")
            return
        t = table("ID", "AT (UTC)", "TRIGGER", "COUNT", "STATUS", "REASONS")
        for d in rows:
            count = f"{d['current']} -> {d['desired']}" if d["current"] != d["desired"] else str(d["current"])
            t.add_row(
                str(d.get("id") or "-"),
                when(d.get("at")),
                str(d.get("trigger")),
                count,
                str(d.get("status")),
                ", ".join(d.get("reasons") or []),
            )
        con.print(t)

    emit(reply, output, human)


# ---- scale / mode / pause / resume -------------------------------------------------------------------


@cli.command()
@job_argument
@click.argument("instances", type=click.IntRange(0, 100000))
@click.option("--reason", default="", help="Why (kept with the decision, at most 500 characters).")
@output_option
@click.pass_context
def scale(ctx: click.Context, job: str, instances: int, reason: str, output: str) -> None:
    """Set a job's instance count now (a manual decision; the job's bounds still apply)."""
    body: dict[str, Any] = {"instances": instances}
    if reason:
        body["reason"] = reason
    reply = client(ctx).call("POST", Client.job_path(job, "/scale"), body)
    d = reply["decision"]
    emit(reply, output, lambda con: con.print(f"{job}: {_decision_line(d)}: {d.get('status')}"))


def _set_mode(ctx: click.Context, job: str, mode: str, output: str) -> None:
    reply = client(ctx).call("POST", Client.job_path(job, "/mode"), {"mode": mode})

    def human(con: Console) -> None:
        line = f"{job}: mode {reply['mode']} (version {reply['version']})"
        if reply["effective_mode"] != reply["mode"]:
            line += f"; runs {reply['effective_mode']}: {reply.get('dry_run_reason')}"
        con.print(line)

    emit(reply, output, human)


@cli.command()
@job_argument
@click.argument("mode", type=click.Choice(["active", "dry-run", "paused"]))
@output_option
@click.pass_context
def mode(ctx: click.Context, job: str, mode: str, output: str) -> None:
    """Set a job's mode: active, dry-run (decide, apply nothing) or paused (decide nothing)."""
    _set_mode(ctx, job, mode, output)


@cli.command()
@job_argument
@output_option
@click.pass_context
def pause(ctx: click.Context, job: str, output: str) -> None:
    """Pause a job (mode paused): no decisions until it is resumed."""
    _set_mode(ctx, job, "paused", output)


@cli.command()
@job_argument
@click.option("--dry-run", "dry", is_flag=True, help="Resume into dry-run instead of active.")
@output_option
@click.pass_context
def resume(ctx: click.Context, job: str, dry: bool, output: str) -> None:
    """Resume a job: mode active (or dry-run with --dry-run)."""
    _set_mode(ctx, job, "dry-run" if dry else "active", output)


# ---- clusters ----------------------------------------------------------------------------------------


@cli.command()
@output_option
@click.pass_context
def clusters(ctx: click.Context, output: str) -> None:
    """The configured Marathon clusters: connection state, leader, jobs, last event and error."""
    reply = client(ctx).call("GET", "/api/v1/clusters")

    def human(con: Console) -> None:
        rows = reply["clusters"]
        if not rows:
            con.print("no Marathon clusters configured")
            return
        t = table("CLUSTER", "STATE", "URL", "JOBS", "APPS", "LAST EVENT (UTC)", "LAST ERROR")
        for c in rows:
            t.add_row(
                str(c.get("name")), str(c.get("state")), str(c.get("url") or "-"), str(c.get("jobs")),
                str(c.get("watched_apps")), when(c.get("last_event_at")), str(c.get("last_error") or "-"),
            )  # fmt: skip
        con.print(t)

    emit(reply, output, human)


# ---- history / preview / tokens / audit (issue 15: the rest of PRODUCT §12) ---------------------------


def _window(since: str | None, until: str | None) -> tuple[float | None, float | None]:
    """--since / --until as epoch seconds; --until must be after --since."""
    start, end = _since(since), _since(until) if until is not None else None
    if start is not None and end is not None and end <= start:
        raise click.BadParameter("must be after --since", param_hint="--until")
    return start, end


def window_options(since: str) -> Callable[[F], F]:
    """--since (default `since` back from now) and --until (default now) of the recorded history."""

    def add(f: F) -> F:
        f = click.option("--until", metavar="WHEN", help="Up to (not including): as --since; default now.")(f)
        return click.option(
            "--since",
            metavar="WHEN",
            default=since,
            show_default=True,
            help="From: a duration back from now (30m, 2h, 1d) or epoch seconds.",
        )(f)

    return add


def _number(v: Any) -> str:
    return "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


@cli.command()
@job_argument
@window_options("1h")
@click.option(
    "--limit", type=click.IntRange(1, 100_000), default=100, show_default=True, help="At most this many rows."
)
@output_option
@click.pass_context
def history(ctx: click.Context, job: str, since: str, until: str | None, limit: int, output: str) -> None:
    """A job's recorded history, oldest first: each period's rule values, the ready / running / desired
    counts and the decision taken (older than a day: 1-minute roll-ups)."""
    start, end = _window(since, until)
    reply = client(ctx).call(
        "GET", Client.job_path(job, "/history"), query={"since": start, "until": end, "limit": limit}
    )

    def human(con: Console) -> None:
        rows = reply["rows"]
        if not rows:
            con.print(f"{job}: no recorded history in that range")
            return
        rules = list(dict.fromkeys(name for r in rows for name in r["values"]))
        t = table("AT (UTC)", *(name.upper() for name in rules), "READY", "RUNNING", "DESIRED", "DECISION")
        for r in rows:
            t.add_row(
                when(r["t"]),
                *(_number(r["values"].get(name)) for name in rules),
                str(r["ready"]),
                str(r["running"]),
                str(r["desired"]),
                _number(r.get("decision")),
            )
        con.print(t)

    emit(reply, output, human)


_SUMMARY = (  # the preview summary's fields people read first (PRODUCT §6), in this order
    ("periods", "periods"),
    ("actions", "actions"),
    ("scale_outs", "scale-outs"),
    ("scale_ins", "scale-ins"),
    ("max_instances_used", "max instances"),
    ("unserved_fraction", "unserved"),
    ("overload_seconds", "overload s"),
    ("instance_seconds", "instance s"),
    ("cost_ratio", "cost ratio"),
)


@cli.command()
@document_option("The new job document (.json, .yaml, .toml; - for stdin); its `job` names the job.")
@window_options("7d")
@click.option(
    "--rule", metavar="RULE", help="The rule whose values give the load (default the first on cpu/qps)."
)
@click.option(
    "--capacity", type=click.FloatRange(min=0, min_open=True), help="Load one ready instance serves [100]."
)
@click.option("--startup", metavar="DURATION", help="Launch-to-ready time of an instance [60s].")
@click.option(
    "--initial", type=click.IntRange(0, 100_000), help="Ready instances at the start [the recorded count]."
)
@output_option
@click.pass_context
def preview(
    ctx: click.Context,
    path: str,
    since: str,
    until: str | None,
    rule: str | None,
    capacity: float | None,
    startup: str | None,
    initial: int | None,
    output: str,
) -> None:
    """Replay a new document on the job's recorded load before applying it: the summary, then each
    period where it would have acted differently from what really happened. Nothing is changed."""
    doc = read_document(path)
    name = job_name_of(doc, path)
    start, end = _window(since, until)
    body: dict[str, Any] = {"job": doc, "since": start, "until": end if end is not None else time.time()}
    if startup is not None:
        from policies.document import parse_duration

        try:
            body["startup"] = parse_duration(startup)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--startup") from None
    for key, value in (("rule", rule), ("capacity", capacity), ("initial", initial)):
        if value is not None:
            body[key] = value
    reply = client(ctx).call("POST", Client.job_path(name, "/preview"), body)

    def human(con: Console) -> None:
        s = reply["summary"]
        head = Table.grid(padding=(0, 2))
        head.add_row("job", reply["job"])
        head.add_row("load from rule", reply["rule"])
        for key, label in _SUMMARY:
            value = s.get(key)
            head.add_row(label, f"{value:.2%}" if key == "unserved_fraction" else _number(value))
        con.print(head)
        con.print()
        diffs = reply["differences"]
        if not diffs:
            con.print("the new document acts as the recorded one did at every recorded period")
            return
        con.print(f"{len(diffs)} period(s) where the new document acts differently:")
        t = table("AT (UTC)", "HAPPENED", "RECORDED", "NEW DOCUMENT", "WOULD BE")
        for d in diffs:
            t.add_row(
                when(d["t"]),
                d["happened"],
                str(d["recorded_desired"]),
                d["preview"],
                str(d["preview_desired"]),
            )
        con.print(t)

    emit(reply, output, human)


@cli.group()
def tokens() -> None:
    """Admin API tokens: list, create, revoke, rotate (needs a token with the admin scope)."""


def _token_row(tok: dict[str, Any]) -> list[str]:
    expires = when(tok.get("expires_at")) if tok.get("expires_at") else "never"
    if tok.get("expired"):
        expires += " (expired)"
    grace = tok.get("old_secret_valid_until")
    return [
        tok["name"],
        ",".join(tok["scopes"]),
        ",".join(tok["jobs"]),
        expires,
        when(tok.get("rotated_at")) + (f" (old valid until {when(grace)})" if grace else ""),
    ]


def _token_reply(reply: dict[str, Any], output: str, verb: str) -> None:
    """A created / rotated token: its fields, then the secret alone on the last line (shown once)."""

    def human(con: Console) -> None:
        t = table("NAME", "SCOPES", "JOBS", "EXPIRES (UTC)", "ROTATED (UTC)")
        t.add_row(*_token_row(reply))
        con.print(t)
        con.print(f"token {reply['name']} {verb}; its secret (shown once, keep it safe):")
        con.print(reply["secret"])

    emit(reply, output, human)


@tokens.command("ls")
@output_option
@click.pass_context
def tokens_ls(ctx: click.Context, output: str) -> None:
    """List the tokens (never their secrets)."""
    reply = client(ctx).call("GET", "/api/v1/tokens")

    def human(con: Console) -> None:
        if not reply["tokens"]:
            con.print("no tokens")
            return
        t = table("NAME", "SCOPES", "JOBS", "EXPIRES (UTC)", "ROTATED (UTC)")
        for tok in reply["tokens"]:
            t.add_row(*_token_row(tok))
        con.print(t)

    emit(reply, output, human)


@tokens.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(["read", "write", "operate", "admin", "ingest"]),
    help="A scope of the token (repeat for several).",
)
@click.option(
    "--jobs",
    "globs",
    multiple=True,
    metavar="GLOB",
    help="Only jobs matching this glob (repeatable; default all).",
)
@click.option("--expires", metavar="DURATION", help="Lifetime, e.g. 90d (default: never).")
@output_option
@click.pass_context
def tokens_create(
    ctx: click.Context,
    name: str,
    scopes: tuple[str, ...],
    globs: tuple[str, ...],
    expires: str | None,
    output: str,
) -> None:
    """Create a token; prints its secret once, as the last line."""
    body: dict[str, Any] = {"name": name, "scopes": list(scopes)}
    if globs:
        body["jobs"] = list(globs)
    if expires is not None:
        body["expires"] = expires
    _token_reply(client(ctx).call("POST", "/api/v1/tokens", body), output, "created")


@tokens.command("revoke")
@click.argument("name")
@click.pass_context
def tokens_revoke(ctx: click.Context, name: str) -> None:
    """Revoke (delete) a token: it stops working at once."""
    client(ctx).call("DELETE", "/api/v1/tokens/" + urllib.parse.quote(name, safe=""))
    click.echo(f"token {name} revoked")


@tokens.command("rotate")
@click.argument("name")
@click.option(
    "--grace",
    metavar="DURATION",
    help="How long the old secret keeps working [the daemon's [auth] grace, 1h].",
)
@output_option
@click.pass_context
def tokens_rotate(ctx: click.Context, name: str, grace: str | None, output: str) -> None:
    """Give a token a new secret (printed once, as the last line); the old one works for --grace."""
    body = {"grace": grace} if grace is not None else None
    reply = client(ctx).call("POST", "/api/v1/tokens/" + urllib.parse.quote(name, safe="") + "/rotate", body)
    _token_reply(reply, output, "rotated")


@cli.command()
@click.option("--job", metavar="JOB", help="Only changes of this job.")
@click.option(
    "--since",
    metavar="WHEN",
    help="Only newer ones: a duration back from now (30m, 2h, 1d) or epoch seconds.",
)
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="At most this many."
)
@output_option
@click.pass_context
def audit(ctx: click.Context, job: str | None, since: str | None, limit: int, output: str) -> None:
    """The audit trail, newest first: who changed what (jobs, modes, manual scales, tokens), from where."""
    reply = client(ctx).call(
        "GET", "/api/v1/audit", query={"job": job, "since": _since(since), "limit": limit}
    )

    def human(con: Console) -> None:
        rows = reply["entries"]
        if not rows:
            con.print("no audit entries" + (" match" if job or since else ""))
            return
        t = table("AT (UTC)", "ACTOR", "SOURCE", "ACTION", "JOB", "VERSION", "DETAIL")
        for e in rows:
            versions = f"{_number(e.get('before_version'))} -> {_number(e.get('after_version'))}"
            t.add_row(
                when(e["time"]),
                str(e["actor"]),
                str(e["source"]),
                str(e["action"]),
                e.get("job") or "-",
                "-" if e.get("before_version") is None and e.get("after_version") is None else versions,
                _inline(e.get("detail") or {}),
            )
        con.print(t)

    emit(reply, output, human)


def main(argv: list[str] | None = None) -> NoReturn:
    cli.main(args=argv, prog_name="oceanctl")


__all__ = ["NOT_FOUND", "cli", "main"]
