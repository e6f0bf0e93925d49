"""Marathon REST client for one cluster: read apps, set an absolute instance count, follow the event stream.

Errors (PRODUCT §4.1, ARCHITECTURE property 7):

    MarathonError
    ├── Transient      connection errors, timeouts, 5xx, a closed event stream: retry with backoff
    │   └── Locked     409, the app is locked by a running deployment (`deployments`: the blocking ids)
    └── Permanent      any other 4xx (`status`, Marathon's `message`), or a request that cannot be sent
        └── AppNotFound  GET of an app answered 404

URL rotation (PROTOCOLS A.8): a cluster has several masters. Each call starts at the URL that answered
last (or the leader named by `X-Marathon-Leader`, when it is one of the configured URLs). Reads move on
to the next URL after a connection error, a timeout, 502, 503 or 504. A PUT moves on only when the
request cannot have been applied (connection refused, 502, 503); after a timeout or a dropped reply it
raises Transient, and the apply loop re-reads the app before it sends again.

App ids go into paths as they are (PROTOCOLS A.1): `/prod/web` → `/v2/apps/prod/web`, never `%2F`.

Credentials (basic auth or a DC/OS token) go only to the origins (scheme, host, port) of the configured
URLs. The event stream follows a standby's redirect to the leader (PROTOCOLS A.6) with them only when
the leader is one of those origins and the redirect chain never left them; otherwise it follows
without `Authorization` and a 401/403 says why. REST calls are proxied by standbys, not redirected;
should one be redirected, aiohttp (3.14, `ClientSession._request`) drops `Authorization` when the
origin changes. Error texts and URL states are redacted (`policies.redact`): a `Location` or an
aiohttp error may carry credentials or tokens.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import ssl
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDictProxy
from yarl import URL

from actuators.marathon.errors import AppNotFound, Locked, Permanent, Transient
from actuators.marathon.model import AppState
from actuators.marathon.sse import SSEParser
from policies.document import APP_ID_RE
from policies.redact import redact_text, redact_url

log = logging.getLogger(__name__)

# The first item `events()` yields once the stream is open, before any Marathon event: the moment to
# re-read state (events are cache invalidation, PROTOCOLS A.6). Its data is {"url": <stream URL>}.
STREAM_OPENED = "oceand_stream_opened"
_APP_ID = re.compile(APP_ID_RE)
_ROTATE_STATUSES = frozenset({502, 503, 504})
_NOT_APPLIED_STATUSES = frozenset({502, 503})  # a write answered with these never reached the leader
_MAX_REDIRECTS = 5


@dataclass(frozen=True)
class ClusterConfig:
    name: str
    urls: Sequence[str]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    verify_tls: bool = True
    ca_file: str | None = None
    timeout: float = 5.0
    connect_timeout: float = 2.0
    # The event stream is reconnected when nothing (not even a heartbeat) arrives for this long.
    events_idle_timeout: float | None = 60.0

    def __post_init__(self) -> None:
        where = f"marathon cluster {self.name!r}"
        if not self.urls:
            raise ValueError(f"{where}: urls is empty; give at least one http(s) URL")
        urls = tuple(str(u).rstrip("/") for u in self.urls)
        for u in urls:
            parsed = URL(u)
            if parsed.scheme not in ("http", "https") or not parsed.host:
                raise ValueError(f"{where}: {u!r} is not an http(s) URL")
        if self.token is not None and self.username is not None:
            raise ValueError(f"{where}: give either token or username/password, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError(f"{where}: username and password go together")
        if self.timeout <= 0 or self.connect_timeout <= 0:
            raise ValueError(f"{where}: timeout and connect_timeout must be > 0")
        if self.events_idle_timeout is not None and self.events_idle_timeout <= 0:
            raise ValueError(f"{where}: events_idle_timeout must be > 0 (or None)")
        object.__setattr__(self, "urls", urls)

    def authorization(self) -> str | None:
        if self.token is not None:
            return f"token={self.token}"  # DC/OS scheme, not Bearer (PROTOCOLS A.7)
        if self.username is not None and self.password is not None:
            raw = f"{self.username}:{self.password}".encode()
            return "Basic " + base64.b64encode(raw).decode("ascii")
        return None


@dataclass(frozen=True)
class ScaleResult:
    deployment_id: str | None
    version: str | None
    url: str  # the Marathon URL that took the request
    already_applied: bool = False  # the app already had the count: no PUT was sent (apply loop)
    landed: str | None = None  # an earlier PUT of unknown outcome was found applied: the evidence
    observed: int | None = None  # the app's count when an earlier PUT was found applied


@dataclass
class _UrlState:
    url: str
    ok: bool | None = None  # None: not tried yet
    last_error: str | None = None
    last_ok_at: float | None = None  # wall-clock seconds


def app_path(app_id: str) -> str:
    """`/prod/web` → `/v2/apps/prod/web` (ids are checked, so nothing needs escaping)."""
    if not isinstance(app_id, str) or not _APP_ID.fullmatch(app_id):
        raise Permanent(
            0,
            f"invalid Marathon app id {app_id!r}: want an absolute path of segments [a-z0-9.-], "
            "not starting or ending with '-' (e.g. /prod/web)",
        )
    return "/v2/apps" + app_id


def _marathon_message(status: int, reason: str | None, data: bytes) -> tuple[str, Any]:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("message"), str):
        return obj["message"], obj.get("details")
    text = data.decode("utf-8", "replace").strip()
    if not text or text.lstrip().startswith("<"):
        return f"{status} {reason or ''}".strip(), None
    return text[:300], None


class _ReplyLost(aiohttp.ClientConnectionError):
    """The connection dropped after a write went out: Marathon may have applied it."""


async def _no_resend(
    req: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """aiohttp resends an idempotent request (PUT included) once when the connection drops before the
    reply. For a scale that hides a possibly applied write; the apply loop re-reads the app instead."""
    try:
        return await handler(req)
    except aiohttp.ClientConnectorError:
        raise  # never connected: nothing was sent
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as e:
        raise _ReplyLost(f"connection dropped before the reply ({type(e).__name__}: {e})") from e


def _origin(url: str) -> str:
    u = URL(url)
    return f"{u.scheme}://{u.host}:{u.port}"


class MarathonClient:
    def __init__(self, cfg: ClusterConfig, session: aiohttp.ClientSession | None = None) -> None:
        self.cfg = cfg
        self._session = session
        self._own_session = session is None
        self._closed = False  # close() was called: no new session (a reconfigured cluster's old client)
        self._states = [_UrlState(u) for u in cfg.urls]
        self._active = 0
        self._leader: str | None = None
        self._timeout = aiohttp.ClientTimeout(total=cfg.timeout, connect=cfg.connect_timeout)
        self._ssl: ssl.SSLContext | bool = True
        if not cfg.verify_tls:
            self._ssl = False
        elif cfg.ca_file is not None:
            try:
                self._ssl = ssl.create_default_context(cafile=cfg.ca_file)
            except (OSError, ssl.SSLError) as e:
                raise ValueError(f"marathon cluster {cfg.name!r}: ca_file {cfg.ca_file!r}: {e}") from e
        auth = cfg.authorization()
        self._auth_headers = {"Authorization": auth} if auth else {}

    async def close(self) -> None:
        self._closed = True
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    # ---- URL state ----------------------------------------------------------------------------------
    @property
    def active_url(self) -> str:
        return self._states[self._active].url

    @property
    def leader(self) -> str | None:
        """The leader as last named by `X-Marathon-Leader` (may be outside the configured URLs)."""
        return self._leader

    def url_state(self) -> list[dict[str, Any]]:
        return [
            {
                "url": s.url,
                "active": i == self._active,
                "ok": s.ok,
                "last_error": s.last_error,
                "last_ok_at": s.last_ok_at,
            }
            for i, s in enumerate(self._states)
        ]

    def _order(self) -> list[int]:
        n = len(self._states)
        return [(self._active + k) % n for k in range(n)]

    def _mark_ok(self, i: int, headers: CIMultiDictProxy[str] | None = None) -> None:
        s = self._states[i]
        if s.ok is False:
            log.info("marathon %s: %s answers again", self.cfg.name, s.url)
        s.ok, s.last_ok_at = True, time.time()
        self._active = i
        leader = headers.get("X-Marathon-Leader") if headers is not None else None
        if leader:
            self._note_leader(leader)

    def _note_leader(self, leader: str) -> None:
        if "://" not in leader:
            leader = f"{URL(self.active_url).scheme}://{leader}"
        self._leader = redact_url(leader.rstrip("/"))
        try:
            origin = _origin(self._leader)
        except ValueError:
            return
        for j, st in enumerate(self._states):
            if _origin(st.url) == origin:
                self._active = j

    def _mark_fail(self, i: int, error: str) -> None:
        error = redact_text(error)
        s = self._states[i]
        if s.ok is not False:
            log.warning("marathon %s: %s failed: %s", self.cfg.name, s.url, error)
        s.ok, s.last_error = False, error
        if i == self._active:
            self._active = (i + 1) % len(self._states)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            # a call still running on a client whose cluster was closed (reload, stop) must not open a
            # session nobody closes: it fails as a retry, which goes to the cluster's new client
            raise Transient(
                f"marathon {self.cfg.name}: the client was closed (cluster reconfigured or stopping)"
            )
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    # ---- one request, rotating through the URLs ---------------------------------------------------
    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        idempotent: bool = True,
        extra_headers: dict[str, str] | None = None,
        budget: float | None = None,
    ) -> tuple[int, bytes, CIMultiDictProxy[str], str]:
        """(status, body, headers, url) of the first URL that answers with something other than a
        rotate-worthy failure; raises Transient when none did. `budget`: seconds all URLs together may
        take (each request's timeout is the smaller of `timeout` and what is left of it); a URL is not
        tried once nothing is left."""
        headers = {**(extra_headers or {}), **self._auth_headers}
        if body is not None:
            headers["Content-Type"] = "application/json"
        errors: list[str] = []
        loop = asyncio.get_running_loop()
        end = None if budget is None else loop.time() + budget
        for i in self._order():
            url = self._states[i].url + path
            timeout, limit = self._timeout, self.cfg.timeout
            if end is not None:
                left = end - loop.time()
                if left <= 0:
                    errors.append(f"{method} {url}: not sent, its time budget ({budget:.3f}s) is spent")
                    break
                if left < limit:
                    limit = left
                    timeout = aiohttp.ClientTimeout(total=left, connect=min(self.cfg.connect_timeout, left))
            try:
                async with self._get_session().request(
                    method,
                    URL(url, encoded=True),
                    params=params,
                    data=body,
                    headers=headers,
                    timeout=timeout,
                    ssl=self._ssl,
                    middlewares=None if idempotent else (_no_resend,),
                ) as r:
                    data = await r.read()
                    status, rheaders = r.status, r.headers
            except aiohttp.ConnectionTimeoutError:  # no connection within connect_timeout: nothing sent
                msg = f"{method} {url}: cannot connect within {self.cfg.connect_timeout}s"
                self._mark_fail(i, msg)
                errors.append(msg)
                continue
            except TimeoutError:
                msg = f"{method} {url}: no reply within {limit:.3g}s"
                self._mark_fail(i, msg)
                if not idempotent:
                    raise Transient(msg, url=url, maybe_applied=True) from None
                errors.append(msg)
                continue
            except aiohttp.ClientConnectorError as e:  # nothing was sent: safe to try the next URL
                msg = f"{method} {url}: cannot connect: {e.os_error or e}"
                self._mark_fail(i, msg)
                errors.append(msg)
                continue
            except aiohttp.ClientError as e:
                msg = f"{method} {url}: {type(e).__name__}: {e}"
                self._mark_fail(i, msg)
                if not idempotent:
                    raise Transient(msg, url=url, maybe_applied=True) from e
                errors.append(msg)
                continue
            if status in _ROTATE_STATUSES:
                text, _ = _marathon_message(status, None, data)
                msg = f"{method} {url}: {status} {text}"
                self._mark_fail(i, msg)
                if not idempotent and status not in _NOT_APPLIED_STATUSES:
                    raise Transient(msg, url=url, maybe_applied=True)
                errors.append(msg)
                continue
            self._mark_ok(i, rheaders)
            return status, data, rheaders, url
        raise Transient(f"marathon {self.cfg.name}: no URL answered: " + "; ".join(errors))

    @staticmethod
    def _raise_for(status: int, reason: str | None, data: bytes, url: str) -> None:
        if status < 300:
            return
        message, details = _marathon_message(status, reason, data)
        if status == 409:
            deps: list[str] = []
            try:
                obj = orjson.loads(data)
                deps = [str(d["id"]) for d in obj.get("deployments") or [] if "id" in d]
            except (orjson.JSONDecodeError, AttributeError, TypeError):
                pass
            raise Locked(f"Marathon answered 409: {message}", deps, url=url)
        if 400 <= status < 500:
            raise Permanent(status, message, url=url, details=details)
        raise Transient(f"Marathon answered {status}: {message}", url=url)

    @staticmethod
    def _json(data: bytes, url: str) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise Transient(f"{url}: reply is not JSON: {e}", url=url) from e

    # ---- API --------------------------------------------------------------------------------------
    async def get_app(self, app_id: str) -> AppState:
        path = app_path(app_id)
        status, data, _, url = await self._call("GET", path)
        if status == 404:
            message, _ = _marathon_message(status, None, data)
            raise AppNotFound(404, message, url=url)
        self._raise_for(status, None, data, url)
        obj = self._json(data, url)
        try:
            return AppState.from_marathon(obj["app"])
        except (KeyError, TypeError, ValueError) as e:
            raise Transient(f"{url}: unexpected app reply: {type(e).__name__}: {e}", url=url) from e

    async def list_apps(self) -> dict[str, AppState]:
        """Every app of the cluster with its tasks and deployments (one request)."""
        params = [("embed", "apps.tasks"), ("embed", "apps.deployments"), ("embed", "apps.counts")]
        status, data, _, url = await self._call("GET", "/v2/apps", params=params)
        self._raise_for(status, None, data, url)
        obj = self._json(data, url)
        try:
            return {a.id: a for a in (AppState.from_marathon(d) for d in obj["apps"])}
        except (KeyError, TypeError, ValueError) as e:
            raise Transient(f"{url}: unexpected apps reply: {type(e).__name__}: {e}", url=url) from e

    async def scale(
        self,
        app_id: str,
        instances: int,
        *,
        force: bool = False,
        headers: dict[str, str] | None = None,
        budget: float | None = None,
    ) -> ScaleResult:
        """PUT `{"instances": N}` (an absolute count; never creates an app: PROTOCOLS A.2). `headers`
        go along (`X-Oceand-Decision`, `X-Oceand-Attempt`: which decision's which attempt this is, for
        Marathon's access log). `budget`: seconds the PUT may be in flight, over every URL tried (the
        time left before its attempt's deadline): no request outlives it."""
        if not isinstance(instances, int) or isinstance(instances, bool) or instances < 0:
            raise Permanent(0, f"instances must be an integer >= 0, not {instances!r}")
        path = app_path(app_id)
        params = [("force", "true" if force else "false")]
        body = orjson.dumps({"instances": instances})
        status, data, rheaders, url = await self._call(
            "PUT", path, params=params, body=body, idempotent=False, extra_headers=headers, budget=budget
        )
        try:
            self._raise_for(status, None, data, url)
        except Locked:
            raise
        except Transient as e:  # a 500 (or other 5xx that got through): Marathon may have taken it
            raise Transient(str(e), url=url, maybe_applied=True) from e
        dep: str | None = rheaders.get("Marathon-Deployment-Id")
        version: str | None = None
        try:
            obj = orjson.loads(data)
            if isinstance(obj, dict):
                dep = str(obj.get("deploymentId") or dep or "") or None
                version = obj.get("version")
        except orjson.JSONDecodeError:
            pass
        return ScaleResult(dep, version, url)

    async def deployments(self) -> list[dict[str, Any]]:
        status, data, _, url = await self._call("GET", "/v2/deployments")
        self._raise_for(status, None, data, url)
        obj = self._json(data, url)
        if not isinstance(obj, list):
            raise Transient(f"{url}: /v2/deployments did not answer a list", url=url)
        return [d for d in obj if isinstance(d, dict)]

    async def events(
        self, event_types: Sequence[str] = ()
    ) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
        """The SSE stream as (event type, data). First yields (STREAM_OPENED, {"url": …}); raises
        Transient when the stream cannot be opened, closes, or stays silent past events_idle_timeout."""
        resp, url = await self._open_stream(event_types)
        url = redact_url(url)
        try:
            yield STREAM_OPENED, {"url": url}
            parser = SSEParser()
            idle = self.cfg.events_idle_timeout
            while True:
                try:
                    async with asyncio.timeout(idle):
                        chunk = await resp.content.readany()
                except TimeoutError:
                    raise Transient(f"{url}: event stream silent for {idle}s", url=url) from None
                except aiohttp.ClientError as e:
                    raise Transient(f"{url}: event stream broke: {type(e).__name__}: {e}", url=url) from e
                if not chunk:
                    raise Transient(f"{url}: event stream closed", url=url)
                for event, text in parser.feed(chunk):
                    try:
                        obj = orjson.loads(text)
                    except orjson.JSONDecodeError:
                        log.debug("marathon %s: skipping event %r with non-JSON data", self.cfg.name, event)
                        continue
                    if isinstance(obj, dict):
                        yield event, obj
        finally:
            resp.close()

    async def _open_stream(self, event_types: Sequence[str]) -> tuple[aiohttp.ClientResponse, str]:
        timeout = aiohttp.ClientTimeout(total=None, connect=self.cfg.connect_timeout, sock_read=None)
        configured = {_origin(st.url) for st in self._states}
        errors: list[str] = []
        for i in self._order():
            target = URL(self._states[i].url + "/v2/events", encoded=True).with_query(
                [("event_type", t) for t in event_types]
            )
            headers = {**self._auth_headers, "Accept": "text/event-stream"}
            redirected, left = False, None  # left: the first origin outside the configured URLs
            try:
                for _ in range(_MAX_REDIRECTS + 1):
                    resp = await self._get_session().get(
                        target, headers=headers, timeout=timeout, ssl=self._ssl, allow_redirects=False
                    )
                    if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                        location = resp.headers["Location"]
                        resp.close()
                        try:
                            nxt = target.join(URL(location))
                            origin = _origin(str(nxt))
                        except ValueError:
                            raise Transient(f"{target}: redirect to an invalid URL {location!r}") from None
                        if target.scheme == "https" and nxt.scheme != "https":
                            raise Permanent(0, f"{target}: refusing a redirect from https to {nxt}")
                        if left is None and origin not in configured:
                            left = origin  # from here on no credentials, also back at a configured URL
                            headers.pop("Authorization", None)
                        target, redirected = nxt, True  # standby → leader (PROTOCOLS A.6)
                        continue
                    break
                else:
                    raise Transient(f"{target}: more than {_MAX_REDIRECTS} redirects")
            except aiohttp.ClientConnectorError as e:
                msg = f"GET {target.with_query(None)}: cannot connect: {e.os_error or e}"
                self._mark_fail(i, msg)
                errors.append(msg)
                continue
            except (TimeoutError, aiohttp.ClientError) as e:
                msg = f"GET {target.with_query(None)}: {type(e).__name__}: {e}"
                self._mark_fail(i, msg)
                errors.append(msg)
                continue
            except Transient as e:
                self._mark_fail(i, str(e))
                errors.append(str(e))
                continue
            if resp.status in _ROTATE_STATUSES:
                data = await resp.read()
                resp.close()
                text = _marathon_message(resp.status, resp.reason, data)[0]
                msg = f"GET {target.with_query(None)}: {resp.status} {text}"
                self._mark_fail(i, msg)
                errors.append(msg)
                continue
            if resp.status != 200:
                data = await resp.read()
                resp.close()
                if left is not None and self._auth_headers and resp.status in (401, 403):
                    text = _marathon_message(resp.status, resp.reason, data)[0]
                    raise Permanent(
                        resp.status,
                        f"{text} (the event stream was redirected to {left}, which is not one of the "
                        f"configured urls of marathon {self.cfg.name}: credentials go only to those; "
                        "list every Marathon master in urls)",
                        url=str(target),
                    )
                self._raise_for(resp.status, resp.reason, data, str(target))
                raise Transient(f"GET {target}: unexpected {resp.status} for the event stream")
            self._mark_ok(i, resp.headers)
            if redirected:
                self._note_leader(_origin(str(target)))
            return resp, str(target)
        raise Transient("no URL answered: " + "; ".join(errors))
