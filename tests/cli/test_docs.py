"""docs/cli.md's terminal session is real: its commands run here against the real daemon process and their
output must be what the document shows (times and ports aside). `OCEANCTL_WRITE_DOCS=1` rewrites the
document's outputs from this run instead of comparing (the commands stay as written)."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import click
import pytest

from oceand.ctl.main import cli
from tests.cli.conftest import Ctl, Live, read_yaml, record_history
from tests.e2e.harness import ROOT, wait_for

pytestmark = pytest.mark.slow

DOC = ROOT / "docs" / "cli.md"
SESSION = re.compile(r"(<!-- session: (\w+) -->\n```console\n)(.*?)(```\n<!-- session: end -->)", re.S)
FILE = re.compile(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```\n", re.S)
SED = re.compile(r"sed -i 's/([^/]*)/([^/]*)/' (\S+)")
EXIT = '; echo "exit $?"'
VOLATILE = [
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"), "<time>"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
]


def run(ctl: Ctl, line: str, cwd: Path) -> str:
    """One `$ ` line of the session: `oceanctl ...` (optionally `; echo "exit $?"`) or a `sed -i`."""
    if m := SED.fullmatch(line):
        f = cwd / m[3]
        f.write_text(f.read_text().replace(m[1], m[2]))
        return ""
    show_exit = line.endswith(EXIT)
    argv = shlex.split(line.removesuffix(EXIT))
    assert argv[0] == "oceanctl", line
    r = ctl(*argv[1:], input="y\n")
    settle(ctl)
    out = r.output
    if show_exit:
        out += f"exit {r.exit_code}\n"
    else:
        assert r.exit_code == 0, (line, out)
    return out


def settle(ctl: Ctl) -> None:
    """Wait (as a person typing would) until the daemon knows the Marathon app of every job: a status
    just after a create would otherwise race the daemon's first GET of the app."""

    def known() -> bool:
        jobs = ctl.daemon.request("GET", "/api/v1/jobs")["jobs"]
        return all(ctl.daemon.request("GET", f"/api/v1/jobs/{j['job']}/status")["app_known"] for j in jobs)

    wait_for(known, 10, "the daemon to know every job's app")


def normal(text: str) -> str:
    for pattern, repl in VOLATILE:
        text = pattern.sub(repl, text)
    return "\n".join(line.rstrip() for line in text.splitlines())


def replay_session(ctl: Ctl, tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the `$` lines of the session block `name` in docs/cli.md; compare, or rewrite the outputs."""
    doc = DOC.read_text()
    for file, body in FILE.findall(doc):
        (tmp_path / file).write_text(body)
    monkeypatch.chdir(tmp_path)
    m = next((m for m in SESSION.finditer(doc) if m[2] == name), None)
    assert m, f"docs/cli.md has no session block {name!r}"
    shown = m[3]
    commands = [line[2:] for line in shown.splitlines() if line.startswith("$ ")]
    real = "".join(f"$ {c}\n" + run(ctl, c, tmp_path) for c in commands)
    if os.environ.get("OCEANCTL_WRITE_DOCS") == "1":
        DOC.write_text(doc[: m.start(3)] + real + doc[m.end(3) :])
        return
    assert normal(shown) == normal(real), (
        f"docs/cli.md's session {name!r} differs: OCEANCTL_WRITE_DOCS=1 rewrites it"
    )


def test_the_session_in_docs_cli_md_is_real(
    ctl: Ctl, live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(SESSION.search(DOC.read_text())[3].splitlines()) >= 10  # type: ignore[index]
    replay_session(ctl, tmp_path, "begin", monkeypatch)


def test_the_preview_session_in_docs_cli_md_is_real(
    ctl: Ctl, live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job of preview-live.yaml, really run on four pushed 1 s buckets, then the block's lines."""
    doc = DOC.read_text()
    api = read_yaml(dict(FILE.findall(doc))["preview-live.yaml"])
    live.daemon.request("PUT", f"/api/v1/jobs/{api['job']}", api)
    try:
        wait_for(
            lambda: live.daemon.request("GET", f"/api/v1/jobs/{api['job']}/status")["app_known"], 10, "app"
        )
        record_history(live.daemon, api["job"], [50.0, 95.0, 95.0, 95.0])
        wait_for(lambda: 3 in live.fake.scales("/ocean/preview"), 10, "the scale-out to 3")
        replay_session(ctl, tmp_path, "preview", monkeypatch)
    finally:
        live.daemon.request("DELETE", f"/api/v1/jobs/{api['job']}")


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            out += _commands(cmd, f"{prefix}{name} ")
        else:
            out.append((f"{prefix}{name}", cmd))
    return out


def test_the_reference_names_every_command_and_option() -> None:
    doc = DOC.read_text()
    missing = []
    for path, cmd in _commands(cli):
        section = re.search(rf"^### `oceanctl {re.escape(path)}\b[^\n]*\n(.*?)(?=^### |\Z)", doc, re.S | re.M)
        if section is None:
            missing.append(f"oceanctl {path}")
            continue
        for param in cmd.params:
            if isinstance(param, click.Option) and not set(param.opts) & set(
                re.findall(r"-[-\w]+", section[0])
            ):
                missing.append(f"oceanctl {path} {param.opts[-1]}")
    assert not missing, f"docs/cli.md does not describe: {missing}"
