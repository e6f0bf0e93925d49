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
import uuid
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
    IDEMPOTENCY_HEADER,
    NOT_FOUND,
    SERVER,
    USAGE,
    VALIDATION,
    ApiFailure,
    Client,
    CtlError,
    resolve,
)
from policies.tree import tree_parts

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


def document_output_option(what: str) -> Callable[[F], F]:
    return click.option(
        "-o",
        "--output",
        type=click.Choice(["yaml", "json"]),
        default="yaml",
        show_default=True,
        help=f"yaml: the {what}; json: the API's reply.",
    )


@cli.command()
@job_argument
@document_output_option("document (its version as a comment)")
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

    new = stored(_effective(c, doc))
    shown = public_job(new)  # webhook secrets as `***`, as the live document shows them
    lines = diff(live, shown, name)
    secret = shown != new  # the file carries a webhook secret: the live one cannot be compared with it
    # a document naming a template is always sent: the same effective document may still change the link
    if live is not None and not lines and not secret and "template" not in doc:
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
    print_warnings(reply.get("warnings"))


def print_warnings(warnings: Any) -> None:
    """The daemon's validation warnings (policies/warnings.py), one line each on stderr."""
    for w in warnings or []:
        console(err=True).print(Text(f"warning: {w.get('message', w)}", style="yellow"))


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
        if st.get("startup") is not None:
            head.add_row("startup", f"{st['startup']:.3g}s (learned from Marathon: p90 of recent tasks)")
        if st.get("blocked"):
            head.add_row("blocked", Text(str(st["blocked"]), style="red"))
        if st.get("retry_at"):
            head.add_row("retry at", when(st["retry_at"]))
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
        for w in st.get("warnings") or []:
            con.print(Text(f"warning: {w['message']}", style="yellow"))

    emit(st, output, human)


def _inline(d: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in d.items() if v not in (None, {}, [])
    )


def reasons_of(d: dict[str, Any]) -> list[str]:
    """A decision's reason codes, then its outcome's (`ActuationFailed`, once) — as one list."""
    out = [str(r) for r in d.get("reasons") or []]
    outcome = d.get("outcome")
    extra = outcome.get("reason") if isinstance(outcome, dict) else None
    if extra and extra not in out:
        out.append(str(extra))
    return out


def _decision_line(d: dict[str, Any]) -> str:
    if not isinstance(d, dict):
        return str(d)
    text = f"{d.get('current')} -> {d.get('desired')}"
    if reasons_of(d):
        text += f" ({', '.join(reasons_of(d))})"
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
                ", ".join(reasons_of(d)),
            )
        con.print(t)

    emit(reply, output, human)


# ---- scale / mode / pause / resume -------------------------------------------------------------------


@cli.command()
@job_argument
@click.argument("instances", type=click.IntRange(0, 100000))
@click.option("--reason", default="", help="Why (kept with the decision, at most 500 characters).")
@click.option(
    "--key",
    default=None,
    help="The call's Idempotency-Key (1-64 of A-Z a-z 0-9 . _ : -). Default: a fresh one per command. "
    "Give the key of a command whose answer was lost to retry it: with several daemons it is then "
    "not applied twice.",
)
@output_option
@click.pass_context
def scale(ctx: click.Context, job: str, instances: int, reason: str, key: str | None, output: str) -> None:
    """Set a job's instance count now (a manual decision; the job's bounds still apply)."""
    body: dict[str, Any] = {"instances": instances}
    if reason:
        body["reason"] = reason
    op = key if key is not None else uuid.uuid4().hex
    try:
        reply = client(ctx).call(
            "POST", Client.job_path(job, "/scale"), body, headers={IDEMPOTENCY_HEADER: op}
        )
    except CtlError as e:
        if e.code == SERVER:  # the call may have been applied: say how to retry it safely
            e.details.append(f"Idempotency-Key {op}: retry with --key {op} so that it is not applied twice")
        raise
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


# ---- templates and product lines (PRODUCT §13) ---------------------------------------------------------

SELECT_KEYS = ("job", "service", "cluster", "pdl", "owt", "cop", "name")


def parse_selector(text: str) -> dict[str, str]:
    """`pdl=ocean,owt=inf` -> {"pdl": "ocean", "owt": "inf"}; `name=GLOB` matches whole job names."""
    out: dict[str, str] = {}
    for item in text.split(","):
        key, eq, value = item.strip().partition("=")
        if not eq or key not in SELECT_KEYS or not value:
            raise click.UsageError(
                f"--selector: {item.strip()!r} is not KEY=VALUE with KEY one of {', '.join(SELECT_KEYS)}"
            )
        out[key] = value
    return out


def selector_option(f: F) -> F:
    return click.option(
        "--selector",
        "-l",
        metavar="KEY=VALUE,...",
        help="Every job whose Ocean tree name has these parts (pdl=ocean,owt=inf; name=GLOB: whole name).",
    )(f)


def _mode_of(ctx: click.Context, job: str | None, selector: str | None, mode: str, output: str) -> None:
    if (job is None) == (selector is None):
        raise click.UsageError("give a JOB or --selector, not both")
    if job is not None:
        _set_mode(ctx, job, mode, output)
        return
    assert selector is not None
    reply = client(ctx).call("POST", "/api/v1/modes", {"select": parse_selector(selector), "mode": mode})

    def human(con: Console) -> None:
        for j in reply["jobs"]:
            what = f"version {j['version']}" if j["changed"] else f"already {mode}, version {j['version']}"
            con.print(f"{j['job']}: mode {mode} ({what})")

    emit(reply, output, human)


def _effective(c: Client, doc: dict[str, Any]) -> dict[str, Any]:
    """A document naming a template laid over the live template (what the daemon will run), for the diff;
    the document itself when it names none or the template cannot be read (the daemon names the error)."""
    name = doc.get("template")
    if not isinstance(name, str):
        return doc
    try:
        template = c.call("GET", _template_path(name))["template"]
    except ApiFailure:
        return doc
    from policies.templates import compose  # here: pydantic models load only when needed

    return compose(doc, template)


@cli.group()
def templates() -> None:
    """Templates: job-document fields shared by the jobs that name them."""


def _template_path(name: str) -> str:
    return "/api/v1/templates/" + urllib.parse.quote(name, safe="")


@templates.command("ls")
@output_option
@click.pass_context
def templates_ls(ctx: click.Context, output: str) -> None:
    """List templates and the jobs that name each."""
    reply = client(ctx).call("GET", "/api/v1/templates")

    def human(con: Console) -> None:
        if not reply["templates"]:
            con.print("no templates")
            return
        t = table("TEMPLATE", "VERSION", "JOBS")
        for r in reply["templates"]:
            t.add_row(r["name"], str(r["version"]), str(len(r["jobs"])))
        con.print(t)

    emit(reply, output, human)


@templates.command("get")
@click.argument("name")
@document_output_option("template (its version and jobs as comments)")
@click.pass_context
def templates_get(ctx: click.Context, name: str, output: str) -> None:
    """Print a template (webhook secrets show as ***) and the jobs that name it."""
    reply = client(ctx).call("GET", _template_path(name))
    if output == "json":
        click.echo(dump(reply, "json"))
        return
    head = f"# {name}: version {reply['version']}, named by {len(reply['jobs'])} job(s)"
    click.echo(
        "\n".join([head, *(f"#   {j}" for j in reply["jobs"])]) + "\n" + dump(reply["template"], "yaml")
    )


def _print_plan(con: Console, reply: dict[str, Any]) -> None:
    if not reply["jobs"]:
        con.print(f"no job's document changes ({len(reply['dependents'])} name the template)")
    for j in reply["jobs"]:
        con.print(Text(f"{j['job']} (version {j['version']})", style="bold"))
        for c in j["changes"]:
            before = json.dumps(c["before"]) if "before" in c else "(none)"
            after = json.dumps(c["after"]) if "after" in c else "(none)"
            con.print(f"  {c['path']}: {before} -> {after}")


@templates.command("apply")
@click.option(
    "-f", "--filename", "path", required=True, metavar="FILE", help="The template (.json, .yaml, .toml)."
)
@click.option("--name", metavar="NAME", help="The template's name (default: the file name without suffix).")
@click.option("--dry-run", "dry", is_flag=True, help="Only list each job's change; write nothing.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask; apply.")
@output_option
@click.pass_context
def templates_apply(
    ctx: click.Context, path: str, name: str | None, dry: bool, yes: bool, output: str
) -> None:
    """Create or replace a template: lists the change of every job that names it, then asks first."""
    if path == "-" and name is None:
        raise click.UsageError("-f - reads the template from stdin: give its name with --name")
    if path == "-" and not (yes or dry):
        raise click.UsageError(
            "-f - reads the template from stdin, which cannot answer the question: add --yes"
        )
    name = name or Path(path).stem
    doc = read_document(path)
    c = client(ctx)
    plan = c.call("PUT", _template_path(name), doc, {"dry_run": "true"})
    if dry:
        emit(plan, output, lambda con: _print_plan(con, plan))
        return
    _print_plan(console(err=output != "table"), plan)
    if not yes and not click.confirm(f"Write template {name}?", err=True):
        raise click.Abort
    reply = c.call("PUT", _template_path(name), doc)
    changed = ", ".join(f"{j['job']} -> {j['new_version']}" for j in reply["jobs"]) or "no job changed"
    emit(reply, output, lambda con: con.print(f"{name}: version {reply['version']}; {changed}"))


@templates.command("delete")
@click.argument("name")
@click.pass_context
def templates_delete(ctx: click.Context, name: str) -> None:
    """Delete a template no job names (refused, naming them, otherwise)."""
    client(ctx).call("DELETE", _template_path(name))
    click.echo(f"{name}: deleted")


@cli.command()
@click.argument("job", required=False, shell_complete=_complete_jobs)
@selector_option
@output_option
@click.pass_context
def pause(ctx: click.Context, job: str | None, selector: str | None, output: str) -> None:
    """Pause a job, or every job of --selector (mode paused): no decisions until resumed."""
    _mode_of(ctx, job, selector, "paused", output)


@cli.command()
@click.argument("job", required=False, shell_complete=_complete_jobs)
@selector_option
@click.option("--dry-run", "dry", is_flag=True, help="Resume into dry-run instead of active.")
@output_option
@click.pass_context
def resume(ctx: click.Context, job: str | None, selector: str | None, dry: bool, output: str) -> None:
    """Resume a job, or every job of --selector: mode active (or dry-run with --dry-run)."""
    _mode_of(ctx, job, selector, "dry-run" if dry else "active", output)


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


@cli.command()
@click.option("--leases", is_flag=True, help="Also list every shard's lease: owner, epoch, valid.")
@output_option
@click.pass_context
def cluster(ctx: click.Context, leases: bool, output: str) -> None:
    """Several daemons (docs/cluster.md): the live members and the shards each holds, as this daemon
    last read them; --leases adds every shard's lease."""
    reply = client(ctx).call("GET", "/api/v1/cluster")

    def human(con: Console) -> None:
        if not reply.get("enabled"):
            con.print("this daemon is not in a cluster ([cluster] enabled = false)")
            return
        me = reply.get("this_daemon")
        con.print(
            f"cluster {reply.get('name')}: {reply.get('shards')} shards, {reply.get('unowned')} unowned; "
            f"this daemon is {me}"
        )
        t = table("MEMBER", "STABLE ID", "ADDRESS", "SHARDS", "")
        for m in reply.get("members", []):
            t.add_row(
                str(m.get("instance_id")), str(m.get("stable_id")), str(m.get("addr") or "-"),
                str(m.get("shards_held")), "this daemon" if m.get("instance_id") == me else "",
            )  # fmt: skip
        con.print(t)
        if leases:
            t = table("SHARD", "OWNER", "EPOCH", "VALID")
            for r in reply.get("leases", []):
                t.add_row(
                    str(r.get("shard")),
                    str(r.get("owner") or "-"),
                    str(r.get("epoch")),
                    "yes" if r.get("valid") else "no",
                )
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
@click.option(
    "--step",
    metavar="DURATION",
    default=None,
    help="Bins this long (10m, 1h): values averaged, the counts and decision of each bin's last row.",
)
@output_option
@click.pass_context
def history(
    ctx: click.Context, job: str, since: str, until: str | None, limit: int, step: str | None, output: str
) -> None:
    """A job's recorded history, oldest first: each period's rule values, the ready / running / desired
    counts and the decision taken (older than a day: 1-minute roll-ups)."""
    start, end = _window(since, until)
    query: dict[str, Any] = {"since": start, "until": end, "limit": limit}
    if step is not None:
        from policies.document import parse_duration  # here: pydantic models load only when needed

        try:
            query["step"] = parse_duration(step)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--step") from None
    reply = client(ctx).call("GET", Client.job_path(job, "/history"), query=query)

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
