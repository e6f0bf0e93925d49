"""`oceanctl`, every command against the real daemon process (issue 15, PRODUCT §12): the life of a job,
the error paths and each exit code (0 ok, 1 usage, 2 not found, 3 validation, 4 auth, 5 server)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.common import free_port
from tests.cli.conftest import Ctl, Live, job_doc, write_yaml
from tests.e2e.harness import ROOT, wait_for

pytestmark = pytest.mark.slow

WEB = "job.web_service.web_cluster.lg_pdl.ocean_owt.inf_cop.xiaomi"


def test_a_job_from_create_to_delete(ctl: Ctl, live: Live, tmp_path: Path) -> None:
    f = write_yaml(tmp_path / "web.yaml", job_doc(WEB))

    r = ctl("apply", "-f", str(f), "--yes")  # create: the whole document is new
    assert r.exit_code == 0, r.output
    assert f"+job: {WEB}" in r.stdout and "+max_instances: 5" in r.stdout
    assert r.stdout.rstrip().endswith(f"{WEB}: created (version 1)")
    wait_for(lambda: live.daemon.request("GET", f"/api/v1/jobs/{WEB}/status")["app_known"], 10, "the app")

    r = ctl("apply", "-f", str(f))  # the same file again: nothing to ask, nothing written
    assert (r.exit_code, r.stdout) == (0, f"{WEB}: unchanged (version 1)\n")

    write_yaml(f, job_doc(WEB, max_instances=8))
    r = ctl("apply", "-f", str(f), input="y\n")  # a change: the diff, then the question
    assert r.exit_code == 0, r.output
    diff = [line for line in r.stdout.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert diff == ["-max_instances: 5", "+max_instances: 8"]
    assert f"Replace job {WEB}? [y/N]: y" in r.output
    assert r.stdout.rstrip().endswith(f"{WEB}: replaced (version 2)")
    assert live.daemon.request("GET", f"/api/v1/jobs/{WEB}")["job"]["max_instances"] == 8

    r = ctl("get", WEB)
    assert r.exit_code == 0
    assert r.stdout.startswith(f"# {WEB}: version 2\n")
    assert yaml.safe_load(r.stdout)["max_instances"] == 8

    r = ctl("jobs", "ls", "--pdl", "ocean", "--cop", "xiaomi")
    assert r.exit_code == 0
    assert r.stdout.splitlines()[0].split() == ["JOB", "MODE", "EFFECTIVE", "VERSION"]
    assert [WEB, "active", "active", "2"] in [line.split() for line in r.stdout.splitlines()]

    r = ctl("status", WEB)
    assert r.exit_code == 0, r.output
    rows = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in r.stdout.splitlines() if line.strip()}
    assert rows["mode"] == "active" and rows["bounds"] == "1..8" and rows["version"] == "2"
    assert rows["instances"] == "1 (running 1, ready 1)"
    assert rows["cpu"].split()[:3] == ["threshold", "-", "streak_out=0"]

    r = ctl("scale", WEB, "3", "--reason", "load test")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"{WEB}: 1 -> 3 (Manual)") and r.stdout.rstrip().endswith(": applied")
    assert 3 in live.fake.scales("/ocean/web")

    r = ctl("decisions", WEB)
    assert r.exit_code == 0
    header, *rows_ = r.stdout.splitlines()
    assert header.split() == ["ID", "AT", "(UTC)", "TRIGGER", "COUNT", "STATUS", "REASONS"]
    assert rows_[0].split()[3:] == ["manual", "1", "->", "3", "applied", "Manual"]

    r = ctl("decisions", WEB, "-o", "json")
    assert json.loads(r.stdout)["decisions"][0]["desired"] == 3

    r = ctl("pause", WEB)
    assert (r.exit_code, r.stdout) == (0, f"{WEB}: mode paused (version 3)\n")
    assert live.daemon.request("GET", f"/api/v1/jobs/{WEB}/status")["effective_mode"] == "paused"
    r = ctl("resume", WEB)
    assert (r.exit_code, r.stdout) == (0, f"{WEB}: mode active (version 4)\n")
    r = ctl("mode", WEB, "dry-run", "-o", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)["effective_mode"] == "dry-run"

    r = ctl("clusters")
    assert r.exit_code == 0
    assert r.stdout.splitlines()[1].split()[:3] == ["lg", "connected", live.fake.url]

    r = ctl("delete", WEB)
    assert (r.exit_code, r.stdout) == (0, f"{WEB}: deleted\n")
    r = ctl("get", WEB)
    assert (r.exit_code, r.stderr) == (2, f"oceanctl: no job named {WEB!r}\n")


@pytest.mark.parametrize(
    ("suffix", "text"),
    [
        pytest.param(".json", json.dumps(job_doc("job.j_cop.c", "/ocean/api")), id="json"),
        pytest.param(".yaml", yaml.safe_dump(job_doc("job.y_cop.c", "/ocean/api")), id="yaml"),
        pytest.param(
            ".toml",
            'job = "job.t_cop.c"\nmin_instances = 1\nmax_instances = 3\n'
            'target = { cluster = "lg", app = "/ocean/api" }\n'
            '[[rules]]\nname = "qps"\ntype = "target"\nmetric = "proc.qps"\ntarget = 500\n',
            id="toml",
        ),
    ],
)
def test_apply_reads_json_yaml_and_toml(ctl: Ctl, live: Live, tmp_path: Path, suffix: str, text: str) -> None:
    f = tmp_path / f"doc{suffix}"
    f.write_text(text)
    r = ctl("apply", "-f", str(f), "--yes", "-o", "json")
    assert r.exit_code == 0, r.output
    name = json.loads(r.stdout)["job"]["job"]
    assert "+job: " in r.stderr  # with -o json the diff goes to stderr, stdout stays JSON
    assert live.daemon.request("GET", f"/api/v1/jobs/{name}")["version"] == 1
    ctl("delete", name)


def test_apply_reads_stdin_with_yes(ctl: Ctl, live: Live) -> None:
    name = "job.stdin_cop.c"
    text = json.dumps(job_doc(name, "/ocean/docs"))
    r = ctl("apply", "-f", "-", input=text)
    assert r.exit_code == 1 and "add --yes" in r.stderr
    r = ctl("apply", "-f", "-", "--yes", input=text)
    assert r.exit_code == 0 and r.stdout.rstrip().endswith(f"{name}: created (version 1)"), r.output
    live.daemon.request("DELETE", f"/api/v1/jobs/{name}")


def test_jobs_ls_filters_by_tree_parts_and_prints_json_and_yaml(ctl: Ctl, live: Live) -> None:
    names = {
        "a": "job.a_service.s_cluster.lg_pdl.ocean_owt.inf_cop.xiaomi",
        "b": "job.b_service.s_cluster.c3_pdl.miui_owt.inf_cop.xiaomi",
        "c": "job.c_pdl.ocean_owt.sre_cop.mi",
    }
    for n in names.values():
        live.daemon.request("PUT", f"/api/v1/jobs/{n}", job_doc(n, "/ocean/docs"))
    try:
        cases = {
            ("--pdl", "ocean"): {"a", "c"},
            ("--owt", "inf"): {"a", "b"},
            ("--cop", "mi"): {"c"},
            ("--cluster", "c3"): {"b"},
            ("--service", "s", "--pdl", "miui"): {"b"},
            ("--pdl", "none"): set(),
        }
        for args, want in cases.items():
            r = ctl("jobs", "ls", *args, "-o", "json")
            assert r.exit_code == 0
            got = {j["job"] for j in json.loads(r.stdout)["jobs"]}
            assert got == {names[k] for k in want}, args
        r = ctl("jobs", "ls", "--pdl", "miui", "-o", "yaml")
        assert yaml.safe_load(r.stdout) == {
            "jobs": [
                {
                    "job": names["b"],
                    "mode": "active",
                    "effective_mode": "active",
                    "version": 1,
                    "template": None,
                }
            ]
        }
        assert ctl("jobs", "ls", "--pdl", "none").stdout == "no jobs match\n"
    finally:
        for n in names.values():
            live.daemon.request("DELETE", f"/api/v1/jobs/{n}")


EDITOR = """
import sys, pathlib
path = pathlib.Path(sys.argv[-1])
log = pathlib.Path(sys.argv[1])
seen = log.read_text().split("\\0") if log.exists() else []
text = path.read_text()
log.write_text("\\0".join([*seen, text]))
steps = sys.argv[2].split(",")
step = steps[min(len(seen), len(steps) - 1)]
if step == "bad":      # min above max: the daemon answers 422
    text = text.replace("min_instances: 1", "min_instances: 9")
elif step == "fix":    # put it back and change what was meant
    text = text.replace("min_instances: 9", "min_instances: 2")
elif step == "yaml":   # not YAML at all
    text = text + "\\n  : [unclosed\\n"
elif step == "empty":
    text = ""
elif step == "token":  # a new secret typed over the redacted one
    text = text.replace("token=***", "token=ccc")
path.write_text(text)
"""


def editor(tmp_path: Path, steps: str) -> tuple[dict[str, str | None], Path]:
    script = tmp_path / "editor.py"
    script.write_text(EDITOR)
    log = tmp_path / "seen"
    return {"EDITOR": f"{sys.executable} {script} {log} {steps}", "VISUAL": None}, log


def test_edit_reopens_with_the_errors_until_fixed(ctl: Ctl, live: Live, tmp_path: Path) -> None:
    name = "job.edit_cop.c"
    live.daemon.request("PUT", f"/api/v1/jobs/{name}", job_doc(name, "/ocean/docs"))
    env, log = editor(tmp_path, "bad,fix")
    r = ctl("edit", name, env=env)
    assert (r.exit_code, r.stdout) == (0, f"{name}: replaced (version 2)\n"), r.output
    first, second = log.read_text().split("\0")
    assert first.startswith(f"# {name}: version 1.") and "min_instances: 1" in first
    head = second.split("job:")[0]  # the errors as comments at the top, then the user's document
    assert head.startswith("# oceanctl: the daemon refused this document")
    assert "#   1 error(s) in the job document" in head
    assert all(line.startswith("#") for line in head.strip().splitlines())
    assert "min_instances: 9" in second  # what the user wrote is kept, not the original
    got = live.daemon.request("GET", f"/api/v1/jobs/{name}")
    assert (got["version"], got["job"]["min_instances"]) == (2, 2)
    live.daemon.request("DELETE", f"/api/v1/jobs/{name}")


@pytest.mark.parametrize(
    ("steps", "code", "needle", "opened"),
    [
        pytest.param("same", 0, "no changes", 1, id="closed unchanged"),
        pytest.param("empty", 0, "empty document, nothing changed", 1, id="emptied"),
        pytest.param("bad,same", 3, "not saved, the document still has errors", 2, id="gave up after a 422"),
        pytest.param("bad,bad", 3, "still has errors", 2, id="saved the same error again"),
        pytest.param("yaml,empty", 3, "not valid YAML", 2, id="bad YAML then emptied"),
    ],
)
def test_edit_ends(
    ctl: Ctl, live: Live, tmp_path: Path, steps: str, code: int, needle: str, opened: int
) -> None:
    name = "job.edit-ends_cop.c"
    live.daemon.request("PUT", f"/api/v1/jobs/{name}", job_doc(name, "/ocean/docs"))
    try:
        env, log = editor(tmp_path, steps)
        r = ctl("edit", name, env=env)
        assert r.exit_code == code and needle in r.output, r.output
        assert len(log.read_text().split("\0")) == opened
        assert live.daemon.request("GET", f"/api/v1/jobs/{name}")["version"] == 1
    finally:
        live.daemon.request("DELETE", f"/api/v1/jobs/{name}")


def _bad_file(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        pytest.param(["nonsense"], 1, "No such command 'nonsense'", id="usage: unknown command"),
        pytest.param(["scale", WEB, "many"], 1, "'many' is not a valid integer", id="usage: not a number"),
        pytest.param(["apply"], 1, "Missing option '-f'", id="usage: apply without -f"),
        pytest.param(["apply", "-f", "/nonexistent.yaml"], 1, "/nonexistent.yaml", id="usage: no such file"),
        pytest.param(["mode", WEB, "fast"], 1, "'fast' is not one of", id="usage: bad mode"),
        pytest.param(["decisions", WEB, "--since", "soon"], 1, "--since", id="usage: bad --since"),
        pytest.param(
            ["--url", "ftp://x", "jobs", "ls"], 1, "must be http(s)://host:port", id="usage: bad url"
        ),
        pytest.param(["get", "job.none_cop.c"], 2, "no job named 'job.none_cop.c'", id="not found: get"),
        pytest.param(["status", "job.none_cop.c"], 2, "no job named", id="not found: status"),
        pytest.param(["decisions", "job.none_cop.c"], 2, "no job named", id="not found: decisions"),
        pytest.param(["scale", "job.none_cop.c", "2"], 2, "no job named", id="not found: scale"),
        pytest.param(["pause", "job.none_cop.c"], 2, "no job named", id="not found: pause"),
        pytest.param(["resume", "job.none_cop.c"], 2, "no job named", id="not found: resume"),
        pytest.param(["edit", "job.none_cop.c"], 2, "no job named", id="not found: edit"),
        pytest.param(["delete", "job.none_cop.c"], 2, "no job named", id="not found: delete"),
        pytest.param(["get", "a b"], 3, "job name must be 1-200 characters", id="validation: bad job name"),
        pytest.param(["scale", "job.web_cop.x", "200000"], 1, "200000", id="usage: scale out of range"),
        pytest.param(
            ["scale", WEB, "2", "--key", "not a key!"],
            3,
            "Idempotency-Key: 1 to 64",
            id="validation: bad --key",
        ),
        pytest.param(["pause"], 1, "give a JOB or --selector", id="usage: pause without job or selector"),
        pytest.param(["pause", WEB, "-l", "pdl=x"], 1, "not both", id="usage: pause with job and selector"),
        pytest.param(
            ["resume", "-l", "colour=red"], 1, "'colour=red' is not KEY=VALUE", id="usage: bad selector"
        ),
        pytest.param(
            ["pause", "-l", "pdl=nothing"], 3, "matches no job", id="validation: selector matches none"
        ),
        pytest.param(["templates", "get", "none"], 2, "no template named 'none'", id="not found: template"),
        pytest.param(
            ["templates", "delete", "none"], 2, "no template named", id="not found: delete template"
        ),
        pytest.param(
            ["templates", "apply", "-f", "-"], 1, "give its name with --name", id="usage: template from stdin"
        ),
    ],
)
def test_exit_codes(ctl: Ctl, args: list[str], code: int, needle: str) -> None:
    r = ctl(*args)
    assert r.exit_code == code and needle in r.output, r.output


@pytest.mark.parametrize(
    ("name", "text", "needles"),
    [
        pytest.param(
            "bounds.yaml",
            yaml.safe_dump(job_doc("job.v_cop.c", max_instances="lots", periodd=1)),
            [
                "2 error(s) in the job document",
                "  max_instances: ",
                "  periodd: unknown field (did you mean 'period'?)",
            ],
            id="422 with the field paths",
        ),
        pytest.param("bad.yaml", "job: [unclosed", ["bad.yaml: not valid YAML"], id="not YAML"),
        pytest.param("bad.json", "{", ["bad.json: not valid JSON"], id="not JSON"),
        pytest.param("bad.toml", "job = ", ["bad.toml: not valid TOML"], id="not TOML"),
        pytest.param(
            "list.yaml", "- 1\n", ["a job document is a mapping (an object), not list"], id="a list"
        ),
        pytest.param("noname.yaml", "min_instances: 1\n", ["the document has no 'job'"], id="no name"),
    ],
)
def test_apply_refused_documents_exit_3(
    ctl: Ctl, live: Live, tmp_path: Path, name: str, text: str, needles: list[str]
) -> None:
    r = ctl("apply", "-f", _bad_file(tmp_path, name, text), "--yes")
    assert r.exit_code == 3, r.output
    for n in needles:
        assert n in r.stderr, r.stderr
    assert "job.v_cop.c" not in {j["job"] for j in live.daemon.request("GET", "/api/v1/jobs")["jobs"]}


def test_apply_answered_no_changes_nothing(ctl: Ctl, live: Live, tmp_path: Path) -> None:
    name = "job.no_cop.c"
    live.daemon.request("PUT", f"/api/v1/jobs/{name}", job_doc(name, "/ocean/docs"))
    try:
        f = write_yaml(tmp_path / "no.yaml", job_doc(name, "/ocean/docs", max_instances=7))
        for answer in ("n\n", ""):  # "no", and no answer at all (stdin closed)
            r = ctl("apply", "-f", str(f), input=answer)
            assert r.exit_code == 1 and "aborted, nothing changed" in r.stderr, r.output
            assert "+max_instances: 7" in r.stdout
        assert live.daemon.request("GET", f"/api/v1/jobs/{name}")["version"] == 1
    finally:
        live.daemon.request("DELETE", f"/api/v1/jobs/{name}")


def test_scale_an_app_marathon_does_not_have_is_a_server_side_failure(ctl: Ctl, live: Live) -> None:
    name = "job.ghost_cop.c"
    live.daemon.request("PUT", f"/api/v1/jobs/{name}", job_doc(name, "/ocean/ghost"))
    try:
        r = ctl("scale", name, "2")
        assert r.exit_code == 5 and "oceanctl: " in r.stderr, r.output
        status = [line.split() for line in ctl("status", name).stdout.splitlines()]
        assert ["instances", "unknown"] in status
    finally:
        live.daemon.request("DELETE", f"/api/v1/jobs/{name}")


def test_nothing_listening_is_exit_5(ctl: Ctl) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    r = ctl("jobs", "ls", env={"OCEAND_URL": url})
    assert r.exit_code == 5 and f"cannot reach the daemon at {url}" in r.stderr


class _Stub(BaseHTTPRequestHandler):
    """A server in front of the API answering every request with one status: the auth and server-error
    replies a daemon with tokens (or a broken proxy) gives, which today's daemon cannot."""

    status = 401
    seen: list[str | None] = []  # noqa: RUF012

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Authorization"))
        body = json.dumps({"error": {"code": "x", "message": f"stub says {self.status}", "details": []}})
        if self.status == 502:
            body = "<html>bad gateway</html>"
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[tuple[str, type[_Stub]]]:
    handler = type("Stub", (_Stub,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "code", "needle"),
    [
        pytest.param(401, 4, "stub says 401", id="401"),
        pytest.param(403, 4, "stub says 403", id="403"),
        pytest.param(500, 5, "stub says 500", id="500"),
        pytest.param(502, 5, "HTTP 502: <html>bad gateway</html>", id="502 not JSON"),
        pytest.param(409, 5, "stub says 409", id="409"),
    ],
)
def test_auth_and_server_replies(
    ctl: Ctl, stub: tuple[str, type[_Stub]], status: int, code: int, needle: str
) -> None:
    url, handler = stub
    handler.status = status
    r = ctl("jobs", "ls", env={"OCEAND_URL": url, "OCEAND_TOKEN": "s3cret"})
    assert (r.exit_code, r.stderr) == (code, f"oceanctl: {needle}\n")
    assert handler.seen == ["Bearer s3cret"]


def test_config_file(ctl: Ctl, live: Live, tmp_path: Path, stub: tuple[str, type[_Stub]]) -> None:
    url, handler = stub
    handler.status = 403
    conf = tmp_path / "oceanctl" / "config.toml"  # $XDG_CONFIG_HOME/oceanctl/config.toml
    conf.parent.mkdir()
    conf.write_text(f'url = "{url}"\ntoken = "from-file"\ntimeout = 5\n')
    r = ctl("jobs", "ls", env={"OCEAND_URL": None})
    assert r.exit_code == 4 and handler.seen == ["Bearer from-file"]
    r = ctl("jobs", "ls", env={"OCEAND_TOKEN": "from-env"})  # the environment wins over the file
    assert r.exit_code == 0, r.output
    r = ctl("--url", url, "jobs", "ls")  # and --url over both
    assert r.exit_code == 4 and handler.seen == ["Bearer from-file", "Bearer from-file"]

    other = tmp_path / "other.toml"
    other.write_text("url = 1\n")
    r = ctl("--config", str(other), "jobs", "ls")
    assert (r.exit_code, r.stderr) == (1, f"oceanctl: {other}: url: must be a string\n")
    other.write_text('urk = "x"\n')
    r = ctl("jobs", "ls", env={"OCEANCTL_CONFIG": str(other)})
    assert r.exit_code == 1 and "urk: unknown key" in r.stderr
    r = ctl("--config", str(tmp_path / "missing.toml"), "jobs", "ls")
    assert r.exit_code == 1 and "config file not found" in r.stderr


def _script(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "oceanctl"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **env},
    )


def test_the_console_script_and_shell_completion(live: Live) -> None:
    name = "job.complete-me_cop.c"
    live.daemon.request("PUT", f"/api/v1/jobs/{name}", job_doc(name, "/ocean/docs"))
    try:
        env = {"OCEAND_URL": live.daemon.url}
        p = _script("--version", env=env)
        assert (p.returncode, p.stdout.split(", version ")[0]) == (0, "oceanctl")
        p = _script("get", "job.not-there_cop.c", env=env)  # a real process's exit status
        assert p.returncode == 2 and "no job named" in p.stderr
        p = _script(env={**env, "_OCEANCTL_COMPLETE": "bash_source"})
        assert p.returncode == 0 and "complete -o nosort -F _oceanctl_completion oceanctl" in p.stdout
        p = _script(
            env={
                **env,
                "_OCEANCTL_COMPLETE": "bash_complete",
                "COMP_WORDS": "oceanctl status job.compl",
                "COMP_CWORD": "2",
            }
        )
        assert p.returncode == 0 and p.stdout.splitlines() == [f"plain,{name}"], p.stdout
        p = _script(
            env={**env, "_OCEANCTL_COMPLETE": "bash_complete", "COMP_WORDS": "oceanctl pa", "COMP_CWORD": "1"}
        )
        assert p.stdout.splitlines() == ["plain,pause"]
    finally:
        live.daemon.request("DELETE", f"/api/v1/jobs/{name}")


def test_a_changed_webhook_secret_is_sent_though_the_diff_cannot_show_it(
    ctl: Ctl, live: Live, tmp_path: Path
) -> None:
    name = "job.hook_cop.c"
    hook = "http://hooks.example/notify?token={}"
    f = write_yaml(
        tmp_path / "hook.yaml", job_doc(name, "/ocean/docs", notify={"webhook": hook.format("aaa")})
    )
    try:
        assert ctl("apply", "-f", str(f), "--yes").exit_code == 0
        r = ctl("apply", "-f", str(f), "--yes")  # the same secret: sent (it cannot be compared), same version
        assert r.exit_code == 0 and "notify.webhook holds a secret" in r.stderr, r.output
        assert r.stdout.rstrip().endswith(f"{name}: unchanged (version 1)")

        write_yaml(f, job_doc(name, "/ocean/docs", notify={"webhook": hook.format("bbb")}))
        r = ctl("apply", "-f", str(f), "--yes")  # a new secret: no diff line, but written
        assert r.exit_code == 0 and r.stdout.rstrip().endswith(f"{name}: replaced (version 2)"), r.output
        assert "token=***" in ctl("get", name).stdout and "bbb" not in ctl("get", name).stdout

        env, _ = editor(tmp_path, "token")  # edit: the secret typed over the *** is a change
        r = ctl("edit", name, env=env)
        assert (r.exit_code, r.stdout) == (0, f"{name}: replaced (version 3)\n"), r.output
    finally:
        live.daemon.request("DELETE", f"/api/v1/jobs/{name}")


def test_status_says_why_a_job_runs_dry_and_when_a_schedule_fires(ctl: Ctl, live: Live) -> None:
    name = "job.elsewhere_cop.c"
    doc = job_doc(name, "/ocean/docs", target={"cluster": "nowhere", "app": "/ocean/docs"})
    doc["rules"] = [
        {
            "name": "morning",
            "type": "schedule",
            "cron": "0 7 * * *",
            "timezone": "Asia/Shanghai",
            "instances": 2,
        }
    ]
    live.daemon.request("PUT", f"/api/v1/jobs/{name}", doc)
    try:
        r = ctl("status", name)
        assert r.exit_code == 0, r.output
        rows = {
            line.split("  ", 1)[0]: line.split("  ", 1)[1].strip() for line in r.stdout.splitlines() if line
        }
        assert rows["mode"] == "dry-run (set: active)"
        assert "nowhere" in rows["dry run because"]
        assert rows["instances"] == "1 (ready 1)"  # the dry actuator's count: no Marathon to ask
        morning = rows["morning"].split()
        assert morning[:2] == ["schedule", "-"]
        assert re.search(r'next_fire_local="\d{4}-\d\d-\d\dT07:00:00\+08:00"', rows["morning"]), rows[
            "morning"
        ]
        assert "next_fire=" not in rows["morning"]
        r = ctl("scale", name, "2")  # a manual scale of a job that runs dry: decided, not applied
        assert r.exit_code == 0 and r.stdout.rstrip().endswith(": dry-run"), r.output
    finally:
        live.daemon.request("DELETE", f"/api/v1/jobs/{name}")


def test_apply_and_status_print_the_documents_warnings(ctl: Ctl, live: Live, tmp_path: Path) -> None:
    """Issue 17: a document that cannot work as written is applied, and oceanctl says why it cannot."""
    name = "job.capped_cop.c"
    doc = job_doc(name, "/ocean/docs")
    doc["rules"] = [{"name": "cpu", "type": "target", "metric": "cpu.used", "target": 95}]
    f = write_yaml(tmp_path / "capped.yaml", doc)
    try:
        r = ctl("apply", "-f", str(f), "--yes")
        assert r.exit_code == 0, r.output
        assert r.stdout.rstrip().endswith(f"{name}: created (version 1)")
        assert "warning: rules[0].target: cpu.used is at most 100" in r.stderr
        r = ctl("status", name)
        assert r.exit_code == 0, r.output
        assert "warning: rules[0].target:" in r.stdout and "never scales out" in r.stdout
    finally:
        live.daemon.request("DELETE", f"/api/v1/jobs/{name}")
