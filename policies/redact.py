"""Secrets out of every message: URLs with credentials, token-like query parameters, control characters.

One rule, used wherever text can carry a URL (config errors, reload logs, `check-config`, the admin
API, notifier and Marathon client errors, and every log line as a last pass):

- the userinfo of a URL (`user:pass@`, `token@`) becomes `***@`;
- the value of a query (or fragment) parameter whose name looks secret becomes `***`. A name looks
  secret when, lower-cased, it contains `token`, `secret`, `passw`, `pwd`, `auth`, `credential`,
  `signature`, `session`, `apikey`, `api_key`, `api-key` or `private`, or one of its words (split at
  anything not a letter or digit) is `key`, `sig`, `pass`, `pw`, `sid`, `jwt` or `otp`
  (`?token=`, `?access_token=`, `?X-Amz-Signature=`, `?apiKey=`, `?key=`, `?sig=`; not `?monkey=`);
- an `Authorization` header value written out in text keeps its scheme and loses the rest.

Everything else is kept as written, so a redacted URL still says where a request went. The rule is
pure text work (no I/O), so the adapters (`actuators`, `collectors`) use it too.

`public_job` / `keep_secrets` apply it to a job document's `notify.webhook` for the admin API: GET
shows the redacted URL; a document PUT back with exactly that redacted URL keeps the stored secret
(docs/policy.md).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

REDACTED = "***"

_SECRET_PARTS = (
    "token", "secret", "passw", "pwd", "auth", "credential", "signature", "session",
    "apikey", "api_key", "api-key", "private",
)  # fmt: skip
_SECRET_WORDS = frozenset({"key", "sig", "pass", "pw", "sid", "jwt", "otp"})
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")

# A URL in free text: a scheme, "://", then everything up to white space, a quote or an angle bracket.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]*")
_TRAILING = re.compile(r"[:,.;!)\]}]+$")
_AUTH_HEADER = re.compile(r"(?i)\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)(\w+[ =])?[^\s\"',}]+")


def is_secret_param(name: str) -> bool:
    """Whether a query parameter named `name` carries a secret (see the module doc)."""
    n = unquote(name).lower()
    if any(part in n for part in _SECRET_PARTS):
        return True
    return any(w in _SECRET_WORDS for w in _WORD_SPLIT.split(n))


def _redact_params(text: str) -> str:
    out = []
    changed = False
    for sep, item in _split_params(text):
        name, eq, value = item.partition("=")
        if eq and value and value != REDACTED and is_secret_param(name):
            item, changed = f"{name}={REDACTED}", True
        elif eq and ("://" in value or "?" in value):  # a URL in a parameter: ?next=/login?token=…
            head, q, tail = value.partition("?")
            inner = redact_url(value) if "://" in value else head + q + _redact_params(tail)
            if inner != value:
                item, changed = f"{name}={inner}", True
        out.append(sep + item)
    return "".join(out) if changed else text


def redact_query(query: str) -> str:
    """A URL's query string (`a=1&token=x`) with the value of every secret-looking parameter as `***`."""
    return _redact_params(query)


def _split_params(text: str) -> list[tuple[str, str]]:
    parts = re.split(r"([&;])", text)
    pairs = [("", parts[0])]
    for i in range(1, len(parts), 2):
        pairs.append((parts[i], parts[i + 1]))
    return pairs


def redact_url(url: str) -> str:
    """The URL with its userinfo and secret-looking parameter values replaced by `***`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    # The authority ends at the first '/', '?' or '#'. An '@' in it ends the userinfo (the last one,
    # since a password may hold an unencoded '@'). A password may also hold an unencoded '/': when
    # 'user:' comes before an '@' that is before any '?' or '#', all of that is userinfo too.
    end = len(rest)
    for c in "/?#":
        i = rest.find(c)
        if i != -1:
            end = min(end, i)
    authority = rest[:end]
    at = authority.rfind("@")
    if at == -1:
        head = re.split(r"[?#]", rest, maxsplit=1)[0]
        at2 = head.rfind("@")
        colon = head.find(":")
        if at2 != -1 and colon != -1 and colon < head.find("/") < at2:
            at = at2
    if at != -1:
        rest = f"{REDACTED}@" + rest[at + 1 :]
    before_fragment, hash_, fragment = rest.partition("#")
    path, q, query = before_fragment.partition("?")
    if q:
        query = _redact_params(query)
    if hash_ and "=" in fragment:
        fragment = _redact_params(fragment)
    return f"{scheme}://{path}{q}{query}{hash_}{fragment}"


def redact_text(text: str) -> str:
    """`text` with every URL in it redacted (`redact_url`) and Authorization values hidden."""
    if "://" in text:
        text = _URL_IN_TEXT.sub(_redact_match, text)
    if "uthorization" in text or "UTHORIZATION" in text:
        text = _AUTH_HEADER.sub(lambda m: m.group(1) + (m.group(2) or "") + REDACTED, text)
    return text


def _redact_match(m: re.Match[str]) -> str:
    url = m.group(0)
    tail = _TRAILING.search(url)  # "GET http://h/x?token=t: 500": the ':' ends the sentence, not the URL
    cut = tail.start() if tail else len(url)
    return redact_url(url[:cut]) + url[cut:]


# ---- job documents in the admin API -------------------------------------------------------------


def public_job(data: dict[str, Any]) -> dict[str, Any]:
    """A dumped job document as the admin API shows it: `notify.webhook` redacted."""
    notify = data.get("notify")
    if isinstance(notify, dict) and isinstance(notify.get("webhook"), str):
        shown = redact_url(notify["webhook"])
        if shown != notify["webhook"]:
            return {**data, "notify": {**notify, "webhook": shown}}
    return data


def restore_webhook(new: str | None, stored: str | None) -> str | None:
    """The webhook to store when a client sends `new` and `stored` is the one in force.

    `new` equal to the redacted form of `stored` (a document PUT back as GET returned it) means "keep
    it": `stored` is returned. A `new` that still holds the `***` placeholder otherwise is refused
    (ValueError), so a placeholder never silently replaces a real password or token. Anything else is
    the client's new URL."""
    if new is None:
        return None
    if stored is not None and new != stored and new == redact_url(stored):
        return stored
    if _placeholder_in_a_secret(new):
        raise ValueError(
            f"holds {REDACTED!r}, the redacted form of a secret: send the real credentials, or the URL "
            "exactly as GET returned it to keep the stored one"
        )
    return new


def _placeholder_in_a_secret(url: str) -> bool:
    """Whether `***` stands where `redact_url` hides something (userinfo, a secret parameter)."""
    n = url.count(REDACTED)
    if not n:
        return False
    marker = "\x00"
    return redact_url(url.replace(REDACTED, marker)).count(marker) < n
