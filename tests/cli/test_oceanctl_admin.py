"""`oceanctl history`, `preview`, `tokens` and `audit` (issue 15, the rest of PRODUCT §12) against real daemon
processes: the history a job really recorded from pushed buckets, a preview of a stricter document on it,
and tokens and the audit trail on a daemon with `[auth] enabled` (its first admin token made on the host),
with the error paths and their exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.cli.conftest import Ctl, Live, Secured, job_doc, record_history, write_yaml
from tests.e2e.harness import wait_for

pytestmark = pytest.mark.slow

HIST = "job.hist_service.api_cluster.lg_pdl.ocean_owt.inf_cop.xiaomi"
HOT = [50.0, 50.0, 95.0, 95.0, 95.0, 95.0]  # cpu.used per 1 s period: out after 3 hot ones (above 80)


@pytest.fixture(scope="module")
def recorded(live: Live) -> int:
    """HIST (2 instances in the fake Marathon, period 1 s) after HOT was pushed: it scaled out to 3."""
    live.daemon.request("PUT", f"/api/v1/jobs/{HIST}", job_doc(HIST, "/ocean/api", period="1s"))
    wait_for(lambda: live.daemon.request("GET", f"/api/v1/jobs/{HIST}/status")["app_known"], 10, "the app")
    start = record_history(live.daemon, HIST, HOT)
    wait_for(lambda: 3 in live.fake.scales("/ocean/api"), 10, "the scale-out to 3")
    return start


def table_rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()]


def test_history_prints_the_recorded_periods(ctl: Ctl, live: Live, recorded: int) -> None:
    until = str(recorded + len(HOT))
    r = ctl("history", HIST, "--since", str(recorded), "--until", until)
    assert r.exit_code == 0, r.output
    header, *rows = table_rows(r.stdout)
    assert header == ["AT", "(UTC)", "CPU", "READY", "RUNNING", "DESIRED", "DECISION"]
    assert [row[2] for row in rows] == ["50", "50", "95", "95", "95", "95"]
    assert [row[5] for row in rows][:3] == ["2", "2", "2"]  # desired before the scale-out
    assert "3" in [row[5] for row in rows]  # and after it
    decided = [row for row in rows if row[6] != "-"]
    assert decided and all(row[6].isdigit() for row in decided)

    r = ctl("history", HIST, "--since", str(recorded), "--until", until, "-o", "json")
    reply = json.loads(r.stdout)
    assert [row["values"] for row in reply["rows"]] == [{"cpu": v} for v in HOT]
    r = ctl("history", HIST, "--since", str(recorded), "--limit", "2", "-o", "yaml")
    assert len(yaml.safe_load(r.stdout)["rows"]) == 2

    r = ctl("history", HIST, "--since", "1", "--until", "2")
    assert (r.exit_code, r.stdout) == (0, f"{HIST}: no recorded history in that range\n")

    # --step: the same rows in 3 s bins aligned to multiples of 3, each the mean of its rows
    r = ctl("history", HIST, "--since", str(recorded), "--until", until, "--step", "3s", "-o", "json")
    binned = json.loads(r.stdout)
    bins: dict[float, list[float]] = {}
    for row in reply["rows"]:
        bins.setdefault(row["t"] // 3 * 3, []).append(row["values"]["cpu"])
    assert binned["step"] == 3
    assert [(row["t"], row["values"]["cpu"]) for row in binned["rows"]] == [
        (t, pytest.approx(sum(v) / len(v))) for t, v in bins.items()
    ]


def test_preview_shows_the_summary_and_where_the_new_document_differs(
    ctl: Ctl, live: Live, recorded: int, tmp_path: Path
) -> None:
    stricter = job_doc(HIST, "/ocean/api", period="1s")
    stricter["rules"][0]["scale_out"]["above"] = 99  # the pushed 95 % never scales out
    f = write_yaml(tmp_path / "stricter.yaml", stricter)
    window = ["--since", str(recorded), "--until", str(recorded + len(HOT)), "--startup", "0s"]
    r = ctl("preview", "-f", str(f), *window, "-o", "json")
    assert r.exit_code == 0, r.output
    reply = json.loads(r.stdout)
    assert reply["rule"] == "cpu" and reply["summary"]["periods"] == len(HOT)
    assert reply["summary"]["scale_outs"] == 0
    [out] = [d for d in reply["differences"] if d["happened"] == "out"]
    assert (out["recorded_desired"], out["preview"], out["preview_desired"]) == (3, "none", 2)

    r = ctl("preview", "-f", str(f), *window)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    head = {line.split("  ", 1)[0]: line.split("  ", 1)[1].strip() for line in lines[: lines.index("")]}
    assert head["job"] == HIST and head["load from rule"] == "cpu"
    assert (head["periods"], head["scale-outs"], head["unserved"]) == ("6", "0", head["unserved"])
    assert head["unserved"].endswith("%")
    n = len(reply["differences"])
    assert f"{n} period(s) where the new document acts differently:" in lines
    table = lines[lines.index(f"{n} period(s) where the new document acts differently:") + 1 :]
    assert table[0].split() == ["AT", "(UTC)", "HAPPENED", "RECORDED", "NEW", "DOCUMENT", "WOULD", "BE"]
    assert ["out", "3", "none", "2"] in [row.split()[2:] for row in table[1:]]
    # nothing was changed by the preview
    assert live.daemon.request("GET", f"/api/v1/jobs/{HIST}")["job"]["rules"][0]["scale_out"]["above"] == 80


@pytest.mark.parametrize(
    ("args", "doc", "code", "needle"),
    [
        pytest.param(["--since", "1", "--until", "2"], {}, 3, "no recorded history", id="no history: 3"),
        pytest.param([], {"job": "job.none_cop.c"}, 2, "no job named 'job.none_cop.c'", id="unknown job: 2"),
        pytest.param([], {"max_instances": "lots"}, 3, "max_instances: ", id="invalid document: 3"),
        pytest.param([], {"job": None}, 3, "the document has no 'job'", id="no job name: 3"),
        pytest.param(["--rule", "nope"], {}, 3, "is not a rule of the job", id="no such rule: 3"),
        pytest.param(["--rule", "qps"], {}, 3, "no recorded value of rule", id="rule without values: 3"),
        pytest.param(["--since", "1h", "--until", "2h"], {}, 1, "must be after --since", id="until first: 1"),
        pytest.param(["--startup", "soon"], {}, 1, "--startup", id="bad startup: 1"),
        pytest.param(["--capacity", "0"], {}, 1, "--capacity", id="capacity zero: 1"),
    ],
)
def test_preview_errors(
    ctl: Ctl, recorded: int, tmp_path: Path, args: list[str], doc: dict[str, object], code: int, needle: str
) -> None:
    body = {**job_doc(HIST, "/ocean/api", period="1s"), **doc}
    f = write_yaml(tmp_path / "doc.yaml", {k: v for k, v in body.items() if v is not None})
    r = ctl("preview", "-f", str(f), *args)
    assert r.exit_code == code and needle in r.output, r.output


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        pytest.param(["history", "job.none_cop.c"], 2, "no job named", id="not found: history"),
        pytest.param(["history", HIST, "--since", "soon"], 1, "--since", id="usage: bad --since"),
        pytest.param(["history", HIST, "--limit", "0"], 1, "--limit", id="usage: limit 0"),
        pytest.param(["history", HIST, "--step", "soon"], 1, "--step", id="usage: bad --step"),
        pytest.param(
            ["history", HIST, "--step", "0.5s"], 3, "step: must be between 1", id="validation: step below 1 s"
        ),
        pytest.param(["history", "a b"], 3, "job name must be", id="validation: bad job name"),
    ],
)
def test_history_errors(ctl: Ctl, args: list[str], code: int, needle: str) -> None:
    r = ctl(*args)
    assert r.exit_code == code and needle in r.output, r.output


# ---- tokens and audit, on a daemon with [auth] enabled ------------------------------------------------


def as_token(ctl: Ctl, secured: Secured, token: str | None) -> Ctl:
    ctl.env = {**ctl.env, "OCEAND_URL": secured.daemon.url, "OCEAND_TOKEN": token}
    return ctl


def test_tokens_create_list_rotate_revoke(ctl: Ctl, secured: Secured) -> None:
    root = as_token(ctl, secured, secured.root)
    pdl = "*_pdl.ocean_owt.inf_cop.xiaomi"
    r = root(
        "tokens", "create", "ops", "--scope", "read", "--scope", "operate", "--jobs", pdl, "--expires", "90d"
    )
    assert r.exit_code == 0, r.output
    *fields, said, secret = r.stdout.splitlines()
    assert said == "token ops created; its secret (shown once, keep it safe):"
    assert fields[0].split() == ["NAME", "SCOPES", "JOBS", "EXPIRES", "(UTC)", "ROTATED", "(UTC)"]
    assert fields[1].split()[:3] == ["ops", "read,operate", pdl]
    assert len(secret) >= 43  # 256 bits, url-safe base64

    r = root("tokens", "ls")
    assert r.exit_code == 0 and "secret" not in r.stdout.lower() and secret not in r.stdout
    names = {row[0]: row for row in table_rows(r.stdout)[1:]}
    assert set(names) == {"root", "ops"} and names["root"][1:3] == ["admin", "*"]
    listed = json.loads(root("tokens", "ls", "-o", "json").stdout)["tokens"]
    assert {t["name"]: t["scopes"] for t in listed} == {"root": ["admin"], "ops": ["read", "operate"]}

    ops = Ctl(secured.daemon, Path(ctl.env["XDG_CONFIG_HOME"] or "."))
    ops.env = {**root.env, "OCEAND_TOKEN": secret}
    assert ops("jobs", "ls").exit_code == 0  # the new token works for what its scopes allow
    r = ops("tokens", "ls")
    assert r.exit_code == 4 and "token 'ops' lacks scope 'admin'" in r.stderr, r.output

    r = root("tokens", "rotate", "ops", "--grace", "0s", "-o", "json")
    assert r.exit_code == 0, r.output
    rotated = json.loads(r.stdout)
    assert rotated["name"] == "ops" and rotated["secret"] != secret
    r = ops("jobs", "ls")  # the old secret, past its grace of 0 s
    assert r.exit_code == 4 and "oceanctl: " in r.stderr, r.output
    ops.env["OCEAND_TOKEN"] = rotated["secret"]
    assert ops("jobs", "ls").exit_code == 0

    r = root("tokens", "revoke", "ops")
    assert (r.exit_code, r.stdout) == (0, "token ops revoked\n")
    assert ops("jobs", "ls").exit_code == 4  # revoked: refused at once
    r = root("tokens", "revoke", "ops")
    assert (r.exit_code, r.stderr) == (2, "oceanctl: no token named 'ops'\n")
    r = root("tokens", "rotate", "nobody")
    assert r.exit_code == 2 and "no token named 'nobody'" in r.stderr


@pytest.mark.parametrize(
    ("token", "args", "code", "needle"),
    [
        pytest.param(None, ["jobs", "ls"], 4, "needs a bearer token with scope 'read'", id="no token: 4"),
        pytest.param("wrong", ["jobs", "ls"], 4, "oceanctl: ", id="wrong token: 4"),
        pytest.param("wrong", ["tokens", "ls"], 4, "oceanctl: ", id="wrong token, tokens: 4"),
        pytest.param("wrong", ["audit"], 4, "oceanctl: ", id="wrong token, audit: 4"),
        pytest.param("root", ["tokens", "create", "root", "--scope", "read"], 5, "exists", id="exists: 5"),
        pytest.param(
            "root",
            ["tokens", "create", "x", "--scope", "read", "--expires", "soon"],
            3,
            "expires",
            id="bad expiry: 3",
        ),
        pytest.param("root", ["tokens", "create", "a b", "--scope", "read"], 3, "name: ", id="bad name: 3"),
        pytest.param("root", ["tokens", "create", "x"], 1, "Missing option '--scope'", id="no scope: 1"),
        pytest.param(
            "root", ["tokens", "create", "x", "--scope", "god"], 1, "'god' is not one of", id="scope: 1"
        ),
        pytest.param("root", ["tokens", "rotate", "root", "--grace", "soon"], 3, "grace", id="bad grace: 3"),
        pytest.param("root", ["audit", "--since", "soon"], 1, "--since", id="audit bad since: 1"),
        pytest.param("root", ["audit", "--job", "a b"], 3, "job: ", id="audit bad job: 3"),
    ],
)
def test_token_and_audit_errors(
    ctl: Ctl, secured: Secured, token: str | None, args: list[str], code: int, needle: str
) -> None:
    r = as_token(ctl, secured, secured.root if token == "root" else token)(*args)
    assert r.exit_code == code and needle in r.output, r.output


def test_audit_lists_who_changed_what(ctl: Ctl, secured: Secured, tmp_path: Path) -> None:
    root = as_token(ctl, secured, secured.root)
    name = "job.audited_cop.c"
    assert root("apply", "-f", str(write_yaml(tmp_path / "a.yaml", job_doc(name))), "--yes").exit_code == 0
    assert root("pause", name).exit_code == 0
    assert root("tokens", "create", "audit-me", "--scope", "read").exit_code == 0

    r = root("audit", "--job", name)
    assert r.exit_code == 0, r.output
    header, *rows = table_rows(r.stdout)
    assert header == ["AT", "(UTC)", "ACTOR", "SOURCE", "ACTION", "JOB", "VERSION", "DETAIL"]
    assert [row[2:] for row in rows] == [
        ["root", "127.0.0.1", "job.mode", name, "1", "->", "2", 'mode="paused"'],
        ["root", "127.0.0.1", "job.create", name, "-", "->", "1"],
    ]
    entries = json.loads(root("audit", "--limit", "1", "-o", "json").stdout)["entries"]
    assert [(e["actor"], e["action"], e["detail"]) for e in entries] == [
        ("root", "token.create", {"token": "audit-me", "scopes": ["read"], "jobs": ["*"]})
    ]
    r = root("audit", "--job", "job.never_cop.c")
    assert (r.exit_code, r.stdout) == (0, "no audit entries match\n")
