"""Marathon's errors, as every part of the adapter raises them (PRODUCT §4.1, ARCHITECTURE property 7):

    MarathonError
    ├── Transient      connection errors, timeouts, 5xx, a closed event stream: retry with backoff
    │   └── Locked     409, the app is locked by a running deployment (`deployments`: the blocking ids)
    └── Permanent      any other 4xx (`status`, Marathon's `message`), or a request that cannot be sent
        └── AppNotFound  GET of an app answered 404

Texts and URLs are redacted (`policies.redact`): an aiohttp error may carry credentials or tokens.
"""

from __future__ import annotations

from typing import Any

from policies.redact import redact_text, redact_url


class MarathonError(Exception):
    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(redact_text(message))
        self.url = None if url is None else redact_url(url)


class Transient(MarathonError):
    """Worth retrying: the cluster may answer later or on another URL.

    `maybe_applied`: a write whose outcome is unknown (no reply within the timeout, the connection
    dropped after the request went out, a 500 or 504): Marathon may have taken it, so it must not be
    sent again before the app has been re-read (actuators/marathon/apply.py `settle`)."""

    def __init__(self, message: str, *, url: str | None = None, maybe_applied: bool = False) -> None:
        super().__init__(message, url=url)
        self.maybe_applied = maybe_applied


class Locked(Transient):
    def __init__(self, message: str, deployments: list[str], *, url: str | None = None) -> None:
        super().__init__(message, url=url)
        self.deployments = deployments


class Permanent(MarathonError):
    """Retrying the same request cannot help. `status` 0: the request was refused before it was sent."""

    def __init__(self, status: int, message: str, *, url: str | None = None, details: Any = None) -> None:
        super().__init__(f"Marathon answered {status}: {message}" if status else message, url=url)
        self.status = status
        self.message = redact_text(message)
        self.details = details


class AppNotFound(Permanent):
    pass
