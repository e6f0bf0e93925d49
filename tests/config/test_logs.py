"""oceand.logs: JSON lines / text, extras, one line per decision; no forged lines, no secrets."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from oceand.logs import log_decision, setup_logging
from oceand.notify import Notifier
from policies.document import parse_job
from policies.types import ActuationOutcome, Decision, Limit, Proposal

SECRET = "s3cr3t-Pa55"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    yield out
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def test_json_line_fields(stream: io.StringIO) -> None:
    setup_logging("info", "json", stream)
    logging.getLogger("oceand.test").info(
        "bucket %s closed", 42, extra={"event": "bucket_closed", "job": "j"}
    )
    (line,) = lines(stream)
    assert {k: line[k] for k in ("level", "logger", "msg", "event", "job")} == {
        "level": "info",
        "logger": "oceand.test",
        "msg": "bucket 42 closed",
        "event": "bucket_closed",
        "job": "j",
    }
    assert line["ts"].endswith("Z") and len(line["ts"]) == len("2024-05-01T08:00:00.123Z")


def test_level_filters_and_exceptions_are_kept(stream: io.StringIO) -> None:
    setup_logging("WARNING", "json", stream)
    log = logging.getLogger("oceand.test")
    log.info("hidden")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed", extra={"event": "x", "obj": object.__name__, "n": {1: 2}})
    (line,) = lines(stream)
    assert line["level"] == "error" and line["msg"] == "failed"
    assert "RuntimeError: boom" in line["exc"]
    assert line["n"] == {"1": 2}


def test_unserialisable_extras_become_strings(stream: io.StringIO) -> None:
    setup_logging("info", "json", stream)
    logging.getLogger("t").info("x", extra={"when": frozenset({3})})
    assert lines(stream)[0]["when"] == "frozenset({3})"


def test_text_format(stream: io.StringIO) -> None:
    setup_logging("debug", "text", stream)
    logging.getLogger("oceand.api").debug("push", extra={"event": "push", "items": 3, "peer": "a b"})
    text = stream.getvalue().strip()
    assert text.endswith(' DEBUG oceand.api: push event=push items=3 peer="a b"')


def test_reload_replaces_the_handler(stream: io.StringIO) -> None:
    setup_logging("info", "json", stream)
    second = io.StringIO()
    setup_logging("info", "text", second)
    logging.getLogger("t").info("once")
    assert stream.getvalue() == ""
    assert second.getvalue().count("once") == 1


@pytest.mark.parametrize(
    ("level", "fmt", "fragment"),
    [
        pytest.param("verbose", "json", "unknown log level 'verbose'", id="level"),
        pytest.param("info", "xml", "unknown log format 'xml'", id="format"),
    ],
)
def test_bad_arguments(level: str, fmt: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        setup_logging(level, fmt)


DECISION = Decision(
    job="web",
    at=1700000000.0,
    trigger="bucket",
    current=2,
    desired=3,
    bucket=1699999990,
    proposals=[Proposal(rule="cpu", kind="threshold", desired=3, reason="ScaleOut", inputs={"value": 91.0})],
    limits=[Limit(code="MaxStep", before=4, after=3)],
    reasons=["ScaleOut", "MaxStep"],
    mode="active",
    id=17,
)
APPLIED = ActuationOutcome("applied", deployment_id="d-1")


@pytest.mark.parametrize(
    ("decision", "level", "extra"),
    [
        pytest.param((DECISION, APPLIED), "info", {}, id="Decision object and its outcome"),
        pytest.param(APPLIED.view(DECISION.to_json()), "info", {}, id="decision JSON"),
        pytest.param(
            (DECISION, ActuationOutcome("failed", error="409 app locked")),
            "warning",
            {"error": "409 app locked"},
            id="failed outcome warns with the error",
        ),
        pytest.param(
            {
                **APPLIED.view(DECISION.to_json()),
                "status": "failed",
                "reasons": ["ScaleOut", "ActuationFailed"],
                "result": {"error": "409 app locked"},
            },
            "warning",
            {"error": "409 app locked"},
            id="failed decision warns with the error",
        ),
    ],
)
def test_one_line_per_decision(stream: io.StringIO, decision: Any, level: str, extra: dict[str, Any]) -> None:
    setup_logging("info", "json", stream)
    if isinstance(decision, tuple):
        log_decision(logging.getLogger("oceand.engine"), *decision)
        d = decision[1].view(decision[0].to_json())
    else:
        log_decision(logging.getLogger("oceand.engine"), decision)
        d = decision
    (line,) = lines(stream)
    assert line["event"] == "decision" and line["level"] == level
    for key in ("job", "trigger", "current", "desired", "reasons", "status", "id", "mode", "at"):
        assert line[key] == d[key], key
    for key, value in extra.items():
        assert line[key] == value
    assert line["msg"].startswith("decision web: 2 -> 3 (ScaleOut,")
    assert "proposals" not in line


@pytest.mark.parametrize(
    ("level", "status", "logged"),
    [
        pytest.param("info", "dry-run", None, id="held-at-info-not-written"),
        pytest.param("debug", "dry-run", "debug", id="held-at-debug-written-at-debug"),
        pytest.param("info", "failed", "warning", id="held-but-failed-still-warns"),
    ],
)
def test_a_decision_that_holds_the_count_logs_at_debug(
    stream: io.StringIO, level: str, status: str, logged: str | None
) -> None:
    """current == desired (a proposal wanted a change that was held back): DEBUG, so 10,000 jobs holding do
    not flood the log past journald's rate limit; the stored decision is the record."""
    setup_logging(level, "json", stream)
    held = {**APPLIED.view(DECISION.to_json()), "desired": 2, "status": status}
    log_decision(logging.getLogger("oceand.engine"), held)
    got = lines(stream)
    if logged is None:
        assert got == []
    else:
        (line,) = got
        assert line["level"] == logged and line["event"] == "decision" and line["desired"] == 2


# ---- control characters never forge a line; URLs are redacted (issue 18 item 6) --------------------------------------------


FORGED = "2026-12-02T06:00:00.000Z INFO oceand.engine: decision web: 1 -> 9 (ScaleOut) applied event=decision"


def test_text_log_newline_in_notify_group_cannot_forge_a_line(stream: io.StringIO) -> None:
    setup_logging("info", "text", stream)
    doc = parse_job(
        {
            "job": "web",
            "target": {"cluster": "lg", "app": "/web"},
            "min_instances": 1,
            "max_instances": 5,
            "notify": {"group": "sre\n" + FORGED},
        }
    )
    d = Decision(job="web", at=1.0, trigger="bucket", current=1, desired=2)
    Notifier().submit(
        doc, d, ActuationOutcome("applied")
    )  # no [notify] falcon_api: the group message is only logged
    out = stream.getvalue()
    assert out.count("\n") == 1, out
    assert "\\n" + FORGED.split(" ")[0] in out
    assert not any(line.startswith(FORGED[:10]) for line in out.splitlines()[1:])


CONTROLS = [
    pytest.param("a\nb", "a\\nb", id="LF"),
    pytest.param("a\rb", "a\\rb", id="CR"),
    pytest.param("a\r\nb", "a\\r\\nb", id="CRLF"),
    pytest.param("a\tb", "a\\tb", id="TAB"),
    pytest.param("a\x1b[31mred", "a\\x1b[31mred", id="ESC (terminal colour)"),
    pytest.param("a\x00b\x07", "a\\x00b\\x07", id="NUL and BEL"),
    pytest.param("a\x7fb", "a\\x7fb", id="DEL"),
    pytest.param("a\x85b\x9b", "a\\x85b\\x9b", id="C1: NEL and CSI"),
    pytest.param("a\u2028b\u2029", "a\\u2028b\\u2029", id="Unicode line and paragraph separators"),
    pytest.param("plain text, ünïcode ok", "plain text, ünïcode ok", id="nothing to escape"),
]


@pytest.mark.parametrize(("raw", "shown"), CONTROLS)
def test_text_log_escapes_control_characters_in_the_message(
    stream: io.StringIO, raw: str, shown: str
) -> None:
    setup_logging("info", "text", stream)
    logging.getLogger("t").info("x %s y", raw)
    out = stream.getvalue()
    assert out.endswith(f" INFO t: x {shown} y\n"), repr(out)


@pytest.mark.parametrize(("raw", "shown"), CONTROLS)
def test_text_log_escapes_control_characters_in_field_values(
    stream: io.StringIO, raw: str, shown: str
) -> None:
    setup_logging("info", "text", stream)
    logging.getLogger("t").info("m", extra={"group": raw, "items": [raw]})
    (line,) = stream.getvalue().splitlines()
    assert line.count("\n") == 0 and not any(c in line for c in "\x1b\x85\x9b\u2028\x00\x7f")
    value = line.split(" group=", 1)[1].split(" items=")[0]
    assert orjson.loads(value) == raw  # quoted (JSON) as soon as it holds a space or a control character


def test_text_log_traceback_lines_are_indented(stream: io.StringIO) -> None:
    setup_logging("info", "text", stream)
    try:
        raise ValueError("boom\n" + FORGED)
    except ValueError:
        logging.getLogger("t").exception("failed")
    first, *rest = stream.getvalue().splitlines()
    assert first.endswith(" ERROR t: failed") and rest
    assert all(line.startswith("  ") for line in rest), rest


@pytest.mark.parametrize(("raw", "shown"), CONTROLS)
def test_json_log_stays_one_valid_line(stream: io.StringIO, raw: str, shown: str) -> None:
    setup_logging("info", "json", stream)
    logging.getLogger("t").info("x %s", raw, extra={"group": raw, "items": {"k": [raw]}})
    (line,) = stream.getvalue().splitlines()
    obj = orjson.loads(line)
    assert (obj["msg"], obj["group"], obj["items"]) == ("x " + raw, raw, {"k": [raw]})
    assert not any(c in line for c in "\x85\x9b\u2028\u2029\x7f")


def test_json_log_survives_lone_surrogates(stream: io.StringIO) -> None:
    setup_logging("info", "json", stream)
    logging.getLogger("t").info("x %s", "\ud800", extra={"group": "a\udcffb"})
    (line,) = stream.getvalue().splitlines()
    obj = orjson.loads(line)
    assert obj["msg"].startswith("x ") and obj["group"].startswith("a")


def test_logs_redact_urls_whatever_the_call_site(stream: io.StringIO) -> None:
    setup_logging("info", "json", stream)
    logging.getLogger("t").warning(
        "GET %s failed",
        f"http://u:{SECRET}@h/x?token={SECRET}",
        extra={"url": f"https://h/?api_key={SECRET}"},
    )
    (line,) = stream.getvalue().splitlines()
    assert SECRET not in line
    obj = orjson.loads(line)
    assert obj["msg"] == "GET http://***@h/x?token=*** failed" and obj["url"] == "https://h/?api_key=***"


def test_debug_level_leaves_out_the_store_drivers_sql_parameters(stream: io.StringIO) -> None:
    """aiosqlite / aiomysql log every statement with its parameters at DEBUG: a job's stored webhook URL
    with its password, token hashes. `[log] level = "debug"` is for oceand's own lines."""
    drivers = {name: logging.getLogger(name).level for name in ("aiosqlite", "aiomysql")}
    try:
        setup_logging("debug", "json", stream)
        logging.getLogger("aiosqlite").debug("executing %s", ("INSERT", f"http://u:{SECRET}@h/"))
        logging.getLogger("aiomysql").debug("query %s", SECRET)
        logging.getLogger("aiosqlite").warning("driver warning")
        logging.getLogger("oceand.store").debug("own debug line")
        assert [line["msg"] for line in lines(stream)] == ["driver warning", "own debug line"]
        setup_logging("error", "json", stream)  # a reload to a higher level keeps the drivers as high
        logging.getLogger("aiosqlite").warning("not shown")
        assert [line["msg"] for line in lines(stream)] == ["driver warning", "own debug line"]
    finally:
        for name, level in drivers.items():
            logging.getLogger(name).setLevel(level)
