"""policies.redact: the one redaction rule for URLs and messages."""

from __future__ import annotations

import pytest

from policies.redact import is_secret_param, public_job, redact_text, redact_url, restore_webhook


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param("http://h:8080/v2/apps", "http://h:8080/v2/apps", id="nothing secret"),
        pytest.param("http://u:p@h:8080/x", "http://***@h:8080/x", id="user:pass"),
        pytest.param("https://tok@h/", "https://***@h/", id="user only (a token as user name)"),
        pytest.param("http://u:p@ss@h/x", "http://***@h/x", id="unencoded @ in the password"),
        pytest.param("http://u:pa/ss@h/x", "http://***@h/x", id="unencoded / in the password"),
        pytest.param("http://h/users/@me", "http://h/users/@me", id="@ in the path, no userinfo"),
        pytest.param("http://h/x?mail=a@b.c", "http://h/x?mail=a@b.c", id="@ in the query"),
        pytest.param("http://h/x?token=abc&team=sre", "http://h/x?token=***&team=sre", id="token"),
        pytest.param("http://h/x?a=1&access_token=abc", "http://h/x?a=1&access_token=***", id="access_token"),
        pytest.param("http://h/?apiKey=1;sig=2", "http://h/?apiKey=***;sig=***", id="camelCase key; sig"),
        pytest.param("http://h/?X-Amz-Signature=f00", "http://h/?X-Amz-Signature=***", id="signature"),
        pytest.param("http://h/?key=k&monkey=m", "http://h/?key=***&monkey=m", id="key word, not monkey"),
        pytest.param("http://h/?password=&x=1", "http://h/?password=&x=1", id="empty value kept"),
        pytest.param("http://h/?client%5Fsecret=s", "http://h/?client%5Fsecret=***", id="encoded name"),
        pytest.param("http://h/cb#access_token=t&x=1", "http://h/cb#access_token=***&x=1", id="fragment"),
        pytest.param("http://h/#section", "http://h/#section", id="plain fragment"),
        pytest.param("mysql://u:p@db:3306/o", "mysql://***@db:3306/o", id="any scheme"),
        pytest.param("http://h/?next=/a?token=t&x=1", "http://h/?next=/a?token=***&x=1", id="nested query"),
        pytest.param(
            "http://h/?next=http://u:p@i/?sig=s", "http://h/?next=http://***@i/?sig=***", id="nested URL"
        ),
        pytest.param("not a url", "not a url", id="not a URL"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_url(shown) == shown  # idempotent


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("token", True), ("Token", True), ("access_token", True), ("x-auth-token", True), ("secret", True),
        ("client_secret", True), ("password", True), ("passwd", True), ("pwd", True), ("sig", True),
        ("apikey", True), ("api-key", True), ("key", True), ("sessionId", True), ("private_key", True),
        ("team", False), ("monkey", False), ("keyword", False), ("page", False), ("sigma", False),
        ("x", False),
    ],
)  # fmt: skip
def test_is_secret_param(name: str, secret: bool) -> None:
    assert is_secret_param(name) is secret


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        pytest.param(
            "'http://u:p@h:1' is not an http(s) URL",
            "'http://***@h:1' is not an http(s) URL",
            id="quoted URL",
        ),
        pytest.param(
            "GET http://h/x?token=t: 500, message='x', url='http://h/y?sig=s'",
            "GET http://h/x?token=***: 500, message='x', url='http://h/y?sig=***'",
            id="two URLs",
        ),
        pytest.param("URL('https://u:p@h/')", "URL('https://***@h/')", id="yarl repr"),
        pytest.param(
            "{'Authorization': 'Basic dTpw'}", "{'Authorization': 'Basic ***'}", id="basic auth header"
        ),
        pytest.param("Authorization: token=abc", "Authorization: token=***", id="DC/OS token header"),
        pytest.param("use either token or username/password", None, id="prose is kept"),
        pytest.param("multi\nline http://u:p@h/ text", "multi\nline http://***@h/ text", id="multi-line"),
    ],
)
def test_redact_text(text: str, shown: str | None) -> None:
    assert redact_text(text) == (text if shown is None else shown)


def test_public_job_redacts_only_the_webhook() -> None:
    data = {"job": "j", "notify": {"group": "g", "webhook": "http://u:p@h/x"}}
    assert public_job(data) == {"job": "j", "notify": {"group": "g", "webhook": "http://***@h/x"}}
    assert data["notify"]["webhook"] == "http://u:p@h/x"  # the input is not changed
    plain = {"job": "j", "notify": {"webhook": "http://h/x"}}
    assert public_job(plain) is plain


STORED = "http://u:p@h/x?token=t&a=1"


@pytest.mark.parametrize(
    ("new", "stored", "result"),
    [
        pytest.param("http://***@h/x?token=***&a=1", STORED, STORED, id="PUT back as GET showed it: kept"),
        pytest.param(STORED, STORED, STORED, id="same real URL"),
        pytest.param("http://v:q@h/x", STORED, "http://v:q@h/x", id="new credentials"),
        pytest.param("http://h/x", STORED, "http://h/x", id="credentials removed"),
        pytest.param(None, STORED, None, id="webhook removed"),
        pytest.param("http://h/x", None, "http://h/x", id="no stored webhook"),
        pytest.param("http://h/x/***", STORED, "http://h/x/***", id="*** in a path is just text"),
        pytest.param("http://h/x?team=***", None, "http://h/x?team=***", id="*** in a plain parameter"),
        pytest.param("http://***@h/y", STORED, ValueError, id="placeholder userinfo, other URL"),
        pytest.param("http://u:p@h/x?token=***&a=2", STORED, ValueError, id="placeholder token, other URL"),
        pytest.param("http://***@h/x?token=***&a=1", None, ValueError, id="placeholder, nothing stored"),
    ],
)
def test_restore_webhook(new: str | None, stored: str | None, result: object) -> None:
    if result is ValueError:
        with pytest.raises(ValueError, match=r"redacted form of a secret"):
            restore_webhook(new, stored)
    else:
        assert restore_webhook(new, stored) == result
