"""oceand.logs: JSON lines / text, extras, one line per decision."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from oceand.logs import log_decision, setup_logging
from policies.types import Decision, Limit, Proposal


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
    status="applied",
    result={"deployment": "d-1"},
    id=17,
)


@pytest.mark.parametrize(
    ("decision", "level", "extra"),
    [
        pytest.param(DECISION, "info", {}, id="Decision object"),
        pytest.param(DECISION.to_json(), "info", {}, id="decision JSON"),
        pytest.param(
            {
                **DECISION.to_json(),
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
    log_decision(logging.getLogger("oceand.engine"), decision)
    (line,) = lines(stream)
    d = decision if isinstance(decision, dict) else decision.to_json()
    assert line["event"] == "decision" and line["level"] == level
    for key in ("job", "trigger", "current", "desired", "reasons", "status", "id", "mode", "at"):
        assert line[key] == d[key], key
    for key, value in extra.items():
        assert line[key] == value
    assert line["msg"].startswith("decision web: 2 -> 3 (ScaleOut,")
    assert "proposals" not in line
