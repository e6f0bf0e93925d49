"""oceanctl's side of the admin API: where the daemon is, the HTTP calls, and the exit codes.

Plain `urllib` (standard library, synchronous): a command makes one to three calls and exits, so an event
loop or another HTTP package would buy nothing.
"""

from __future__ import annotations

import json
import os
import ssl
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8080"

# Exit codes scripts can rely on (docs/cli.md).
OK, USAGE, NOT_FOUND, VALIDATION, AUTH, SERVER = 0, 1, 2, 3, 4, 5
IDEMPOTENCY_HEADER = "Idempotency-Key"  # `scale`: the same key on a retry is not applied twice (cluster)


class CtlError(Exception):
    """A failure reported to the user as `oceanctl: <message>` (plus detail lines) and exit `code`."""

    def __init__(self, code: int, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or []


class ApiFailure(CtlError):
    """An error reply of the admin API: its HTTP status and the body's {"error": {code, message, details}}."""

    def __init__(self, status: int, api_code: str, message: str, details: list[Any]) -> None:
        super().__init__(exit_code_for(status), message, [_detail(d) for d in details])
        self.status = status
        self.api_code = api_code
        self.raw_details = details


def exit_code_for(status: int) -> int:
    """404 -> 2; 400, 413, 422 -> 3; 401, 403 -> 4; anything else (409, 429, 5xx) -> 5."""
    if status == 404:
        return NOT_FOUND
    if status in (400, 413, 422):
        return VALIDATION
    if status in (401, 403):
        return AUTH
    return SERVER


def _detail(d: Any) -> str:
    if isinstance(d, dict) and "message" in d:
        return f"{d.get('path', '(document)')}: {d['message']}"
    if isinstance(d, dict) and "path" in d:
        return str(d["path"])
    return str(d)


def config_path() -> Path:
    """$OCEANCTL_CONFIG, else $XDG_CONFIG_HOME/oceanctl/config.toml (~/.config/oceanctl/config.toml)."""
    explicit = os.environ.get("OCEANCTL_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "oceanctl" / "config.toml"


_KEYS: dict[str, tuple[type, ...]] = {
    "url": (str,),
    "token": (str,),
    "timeout": (int, float),
    "cacert": (str,),
}


def load_settings(path: Path, explicit: bool) -> dict[str, Any]:
    """The config file's keys (url, token, timeout, cacert); {} when the default file does not exist."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        if explicit:
            raise CtlError(USAGE, f"{path}: config file not found") from None
        return {}
    except (OSError, UnicodeDecodeError) as e:
        raise CtlError(USAGE, f"{path}: cannot read the config file: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise CtlError(USAGE, f"{path}: not valid TOML: {e}") from None
    for key, value in data.items():
        if key not in _KEYS:
            raise CtlError(USAGE, f"{path}: {key}: unknown key (known: {', '.join(_KEYS)})")
        kind = _KEYS[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CtlError(USAGE, f"{path}: {key}: must be a {'number' if key == 'timeout' else 'string'}")
    return data


@dataclass(frozen=True, slots=True)
class Settings:
    url: str
    token: str | None
    timeout: float
    cacert: str | None = None  # CA file that signs an https daemon's certificate (else the system's)


def resolve(url: str | None, config: str | None, cacert: str | None = None) -> Settings:
    """--url, else $OCEAND_URL, else the file's `url`, else http://127.0.0.1:8080; the token from
    $OCEAND_TOKEN, else the file's `token` (never a command-line flag: it would show in `ps`); the CA
    file from --cacert, else $OCEAND_CACERT, else the file's `cacert`."""
    path = Path(config) if config else config_path()
    file = load_settings(path, explicit=bool(config or os.environ.get("OCEANCTL_CONFIG")))
    base = url or os.environ.get("OCEAND_URL") or file.get("url") or DEFAULT_URL
    parts = urllib.parse.urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CtlError(USAGE, f"daemon URL {base!r}: must be http(s)://host:port")
    token = os.environ.get("OCEAND_TOKEN") or file.get("token") or None
    ca = cacert or os.environ.get("OCEAND_CACERT") or file.get("cacert") or None
    if ca is not None and not os.path.isfile(ca):
        raise CtlError(USAGE, f"CA file {ca!r}: not found")
    return Settings(base.rstrip("/"), token, float(file.get("timeout", 30)), ca)


class Client:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tls: ssl.SSLContext | None = None
        if settings.cacert is not None and settings.url.startswith("https:"):
            try:
                self.tls = ssl.create_default_context(cafile=settings.cacert)
            except (ssl.SSLError, OSError) as e:
                raise CtlError(USAGE, f"CA file {settings.cacert!r}: not usable ({e})") from None

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """The reply's JSON (None for an empty reply), or ApiFailure / CtlError(SERVER)."""
        url = self.settings.url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.settings.token:
            req.add_header("Authorization", f"Bearer {self.settings.token}")
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=self.settings.timeout, context=self.tls) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise self._failure(e.code, e.read()) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise CtlError(SERVER, f"cannot reach the daemon at {self.settings.url}: {reason}") from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise CtlError(SERVER, f"{method} {path}: the reply is not JSON") from None

    @staticmethod
    def _failure(status: int, raw: bytes) -> ApiFailure:
        try:
            err = json.loads(raw)["error"]
            return ApiFailure(status, str(err["code"]), str(err["message"]), list(err.get("details") or []))
        except (ValueError, KeyError, TypeError):
            text = raw.decode("utf-8", "replace").strip()[:200]
            return ApiFailure(status, "http_error", f"HTTP {status}" + (f": {text}" if text else ""), [])

    @staticmethod
    def job_path(name: str, suffix: str = "") -> str:
        return "/api/v1/jobs/" + urllib.parse.quote(name, safe="") + suffix
