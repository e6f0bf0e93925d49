"""What the Falcon senders receive, as pure functions: the SMS line within `sms_max_chars` (the decision id
and the counts always kept), the mail body, and `tos` per channel."""

from __future__ import annotations

from typing import Any

import pytest

from oceand.falcon_notify import Member, addresses, forms, mail_content, sms_line

LONG_JOB = (
    "job.ocean-monitor-job_service.ocean-monitor-job_cluster.production-lg_pdl.ocean_owt.inf_cop.xiaomi"
)


def msg(**over: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "job": "web",
        "from": 1,
        "to": 3,
        "reason": "ScaleOut",
        "reasons": ["ScaleOut", "MaxStep"],
        "status": "applied",
        "decision_id": 17,
        "at": 1_800_000_000.0,
        "trigger": "bucket",
        "target": {"cluster": "lg", "app": "/web"},
        "error": None,
    }
    m.update(over)
    return m


SMS = [
    pytest.param(msg(), None, "[oceand][applied][web][1->3][ScaleOut][decision 17]", id="short, no limit"),
    pytest.param(msg(), 160, "[oceand][applied][web][1->3][ScaleOut][decision 17]", id="short, fits"),
    pytest.param(
        msg(decision_id=None), 160, "[oceand][applied][web][1->3][ScaleOut][decision ?]", id="no id"
    ),
    pytest.param(
        msg(job="a" * 30 + "b" * 30, status="failed"),
        70,
        "[oceand][failed][aaaaaaaaaaa..bbbbbbbbbb][1->3][ScaleOut][decision 17]",
        id="job cut in the middle to fit",
    ),
    pytest.param(
        msg(job=LONG_JOB),
        160,
        f"[oceand][applied][{LONG_JOB}][1->3][ScaleOut][decision 17]",
        id="a 101-char job fits 160",
    ),
    pytest.param(
        msg(job=LONG_JOB, reason="R" * 40),
        60,
        "[oceand][applied][job..omi][1->3][RRRRR..RRRRR][decision 17]",
        id="long reason and job: both cut, the id kept",
    ),
    pytest.param(
        msg(job=LONG_JOB, decision_id=12345678901, **{"from": 1000, "to": 2000}),
        60,
        "[oceand][applied][jo..i][1000->2000][][decision 12345678901]",
        id="big numbers: the reason goes before the counts or the id",
    ),
]


@pytest.mark.parametrize(("m", "limit", "want"), SMS)
def test_sms_line(m: dict[str, Any], limit: int | None, want: str) -> None:
    got = sms_line(m, limit)
    assert got == want
    assert limit is None or len(got) <= limit


def test_mail_body_is_crlf_lines_with_the_whole_decision() -> None:
    body = mail_content(msg(status="failed", error="marathon answered 422: bad instances"))
    assert body.split("\r\n") == [
        "oceand failed",
        "Job:web",
        "Instances:1 -> 3",
        "Reason:ScaleOut",
        "Reasons:ScaleOut,MaxStep",
        "Decision:17",
        "Trigger:bucket",
        "Target:lg /web",
        "Timestamp:2027-01-15 08:00:00 UTC",
        "Error:marathon answered 422: bad instances",
        "",
    ]


MEMBERS = [
    Member("alice", "138", "a@x", "a.im"),
    Member("bob", "139", "", ""),
    Member("carol", "138", "c@x", ""),
]

FORMS = [
    pytest.param(
        MEMBERS,
        {"sms": ["tos", "content"], "mail": ["tos", "subject", "content"], "im": ["tos", "content"]},
        {"sms": "138,139", "mail": "a@x,c@x", "im": "a.im"},
        id="every channel, each address once",
    ),
    pytest.param(
        [Member("bob", "139", "", "")],
        {"sms": ["tos", "content"]},
        {"sms": "139"},
        id="only phones: only sms",
    ),
    pytest.param([], {}, {}, id="nobody: nothing is posted"),
]


@pytest.mark.parametrize(("members", "fields", "tos"), FORMS)
def test_forms_carry_falcon_plus_alarm_fields(
    members: list[Member], fields: dict[str, list[str]], tos: dict[str, str]
) -> None:
    got = forms(msg(), addresses(members), 160)
    assert {k: list(v) for k, v in got.items()} == fields
    assert {k: v["tos"] for k, v in got.items()} == tos
