"""A job's `notify.group` delivered the way falcon-plus's alarm delivers it (PRODUCT §9, docs/falcon.md).

The group is a falcon-plus team (several, comma-separated, as in a Falcon action's `uic`). Its members
come from the falcon-plus API, `GET {falcon_api}/api/v1/team/name/{team}` with the header
`Apitoken: {"name":"<falcon_api_user>","sig":"<falcon_api_token>"}` (modules/alarm/api/uic.go `CurlUic`;
the API accepts its `default_token` as sig for any name). Answers are cached per team for
`team_cache_ttl`; when a lookup fails, the last answer is used however old (falcon-alarm does the same).

Phones, e-mail addresses and IM ids of the members (each once, empty ones left out) are joined with `,`
into `tos` and posted as a form (`application/x-www-form-urlencoded`) to the sender endpoints, exactly
the fields falcon-plus's alarm posts (modules/alarm/cron/*_sender.go): `tos`, `content` to `sms` and `im`;
`tos`, `subject`, `content` to `mail`. The SMS names status, job, from -> to, reason and decision id
within `sms_max_chars`; the mail's subject is that line (falcon-alarm uses its SMS text as the subject)
and its content the whole decision, lines ended with CRLF as falcon-alarm writes them.

Nothing here is on the scaling path: `FalconGroups.submit` only appends to a bounded queue (the oldest
message is dropped and counted when it is full). One task resolves teams, one task per channel posts;
a request has `timeout`, a message `attempts` tries with `backoff` doubling between them (connection
errors, time-outs, 429 and 5xx are retried; other answers are not); a message that exhausts them is
counted as an error of its channel. The API token never reaches a log line or an error text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import aiohttp
import orjson

from oceand.config import NotifySettings
from policies.backoff import Backoff
from policies.redact import REDACTED, redact_text, redact_url

log = logging.getLogger("oceand.notify")

CHANNELS = ("sms", "mail", "im")
MAX_ANSWER = 4 * 1024**2  # bytes read of an answer (a team of ~20k members); more is an error
OnEvent = Callable[[str, str], None]  # (event, kind): sent / retry / dropped / error, or team_<result>

T = TypeVar("T")


# ---- what is sent -------------------------------------------------------------------------------


def _fit(text: str, room: int) -> str:
    """`text` cut in the middle to `room` characters ('..' marks the cut); '' when there is no room."""
    if len(text) <= room:
        return text
    if room < 5:
        return text[: max(room, 0)]
    head = (room - 2 + 1) // 2
    return text[:head] + ".." + text[len(text) - (room - 2 - head) :]


def sms_line(msg: dict[str, Any], max_chars: int | None = None) -> str:
    """`[oceand][applied][job][1->2][ScaleOut][decision 17]`, the job name (then the reason) cut in the
    middle when the line would pass `max_chars`; the status, counts and decision id always stay."""
    did = msg.get("decision_id")
    head = f"[oceand][{msg['status']}]"
    tail = f"[{msg['from']}->{msg['to']}]"
    end = f"[decision {did if did is not None else '?'}]"
    job, reason = str(msg["job"]), str(msg["reason"])

    def line(j: str, r: str) -> str:
        return f"{head}[{j}]{tail}[{r}]{end}"

    j, r = job, reason
    # shrink, in this order, until the line fits: the reason to 24, the job to 8, the reason, the job
    for which, floor in (("reason", 24), ("job", 8), ("reason", 0), ("job", 0)):
        over = len(line(j, r)) - max_chars if max_chars is not None else 0
        if over <= 0:
            break
        if which == "reason":
            r = _fit(reason, max(len(r) - over, min(floor, len(r))))
        else:
            j = _fit(job, max(len(j) - over, min(floor, len(j))))
    text = line(j, r)
    return text if max_chars is None else text[:max_chars]


def mail_content(msg: dict[str, Any]) -> str:
    """The mail body: one `Key:value` per line, CRLF-ended (modules/alarm/cron/builder.go's layout)."""
    at = datetime.fromtimestamp(float(msg["at"]), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    target = msg.get("target") or {}
    lines = [
        f"oceand {msg['status']}",
        f"Job:{msg['job']}",
        f"Instances:{msg['from']} -> {msg['to']}",
        f"Reason:{msg['reason']}",
        f"Reasons:{','.join(msg.get('reasons') or [])}",
        f"Decision:{msg.get('decision_id')}",
        f"Trigger:{msg.get('trigger')}",
        f"Target:{target.get('cluster')} {target.get('app')}",
        f"Timestamp:{at}",
    ]
    if msg.get("error"):
        lines.append(f"Error:{msg['error']}")
    return "".join(line + "\r\n" for line in lines)


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    phone: str
    email: str
    im: str


def addresses(members: list[Member]) -> dict[str, str]:
    """`tos` per channel: each address once, in order of first appearance, joined with ','."""
    out: dict[str, str] = {}
    for channel, attr in (("sms", "phone"), ("mail", "email"), ("im", "im")):
        seen: dict[str, None] = {}
        for m in members:
            value = getattr(m, attr)
            if value:
                seen.setdefault(value, None)
        out[channel] = ",".join(seen)
    return out


def forms(msg: dict[str, Any], tos: dict[str, str], sms_max_chars: int) -> dict[str, dict[str, str]]:
    """The form of each channel that has addresses, with falcon-plus alarm's field names."""
    line = sms_line(msg)
    out: dict[str, dict[str, str]] = {}
    if tos["sms"]:
        out["sms"] = {"tos": tos["sms"], "content": sms_line(msg, sms_max_chars)}
    if tos["mail"]:
        out["mail"] = {
            "tos": tos["mail"],
            "subject": sms_line(msg, sms_max_chars),
            "content": mail_content(msg),
        }
    if tos["im"]:
        out["im"] = {"tos": tos["im"], "content": line}
    return out


# ---- plumbing -----------------------------------------------------------------------------------


class Lane(Generic[T]):
    """A bounded queue with one consumer: `put` never waits; when full the oldest item goes (counted)."""

    def __init__(self, kind: str, maxlen: int, on_drop: Callable[[str], None]) -> None:
        self.kind = kind
        self.items: deque[T] = deque(maxlen=maxlen)
        self._wake = asyncio.Event()
        self._on_drop = on_drop

    def put(self, item: T) -> None:
        if len(self.items) == self.items.maxlen:
            self._on_drop(self.kind)
        self.items.append(item)
        self._wake.set()

    async def get(self, stop: asyncio.Event) -> T | None:
        while not self.items:
            if stop.is_set():
                return None
            self._wake.clear()
            await until_stopped(self._wake.wait(), stop)
        return self.items.popleft()


async def until_stopped(work: Awaitable[T], stop: asyncio.Event) -> T | None:
    """Await `work`, or cancel it when `stop` is set first (then None)."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        return None
    return task.result()


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    retry: bool
    error: str = ""
    body: bytes = b""
    tries: int = 1


def _answer(status: int, reason: str | None) -> str:
    return f"answered {status} {reason or ''}".rstrip()


async def _read(resp: aiohttp.ClientResponse, limit: int = MAX_ANSWER) -> bytes:
    """The answer's body, or its first `limit` + 1 bytes when it is longer (never all of it)."""
    body = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            break
    return bytes(body[: limit + 1])


async def request(
    session: aiohttp.ClientSession, method: str, url: str, *, max_answer: int = MAX_ANSWER, **kwargs: Any
) -> Outcome:  # one try, never following a redirect
    try:
        async with session.request(method, url, allow_redirects=False, **kwargs) as resp:
            body = await _read(resp, max_answer)
            if len(body) > max_answer:
                return Outcome(
                    False, False, f"{_answer(resp.status, resp.reason)} with more than {max_answer} bytes"
                )
            if 200 <= resp.status < 300:
                return Outcome(True, False, body=body)
            error = _answer(resp.status, resp.reason)
            if 300 <= resp.status < 400:
                error += f"; redirect to {resp.headers.get('Location', '(none)')} not followed"
            text = body[:200].decode("utf-8", "replace").strip()
            if text and resp.status >= 400:
                error += f": {text}"
            return Outcome(False, resp.status == 429 or resp.status >= 500, error, body)
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        return Outcome(False, True, str(e) or type(e).__name__)


# ---- the team directory -------------------------------------------------------------------------


def apitoken(name: str, sig: str) -> str:
    """The falcon-plus API's `Apitoken` header: `{"name":..,"sig":..}` as Go's json.Marshal writes it."""
    return orjson.dumps({"name": name, "sig": sig}).decode()


class TeamLookupError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Env:
    """What the Falcon notifier works with: its settings, where its events go, its clock and sleep."""

    settings: NotifySettings
    on_event: OnEvent
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep


class Teams:
    """falcon-plus teams -> members, cached for `ttl` seconds; a failed lookup falls back to the last
    answer whatever its age (counted as `team_stale`)."""

    def __init__(self, env: Env) -> None:
        self.settings = env.settings
        self._on_event = env.on_event
        self._monotonic = env.monotonic
        self._sleep = env.sleep
        self._cache: dict[str, tuple[float, list[Member]]] = {}

    def header(self) -> str:
        return apitoken(self.settings.falcon_api_user, self.settings.falcon_api_token or "")

    async def members(self, session: aiohttp.ClientSession, team: str) -> list[Member]:
        now = self._monotonic()
        hit = self._cache.get(team)
        if hit is not None and now - hit[0] < self.settings.team_cache_ttl:
            self._on_event("team_cached", "falcon_api")
            return hit[1]
        try:
            members = await self._fetch(session, team)
        except TeamLookupError as e:
            if hit is None:
                self._on_event("team_failed", "falcon_api")
                raise
            self._on_event("team_stale", "falcon_api")
            log.warning(
                "falcon-plus team %r: lookup failed (%s); using its members as of %.0f s ago",
                team,
                redact_text(str(e)),
                now - hit[0],
                extra={"event": "notify_team_stale", "team": team},
            )
            return hit[1]
        self._on_event("team_fetched", "falcon_api")
        if self.settings.team_cache_ttl > 0:
            self._cache[team] = (self._monotonic(), members)
        return members

    async def _fetch(self, session: aiohttp.ClientSession, team: str) -> list[Member]:
        url = f"{self.settings.falcon_api}/api/v1/team/name/{quote(team, safe='')}"
        out = await with_retries(
            self.settings,
            lambda: request(session, "GET", url, headers={"Apitoken": self.header()}),
            "falcon_api",
            self._on_event,
            self._sleep,
        )
        if not out.ok:  # the token out of whatever the answer echoed
            raise TeamLookupError(
                f"GET {redact_url(url)} {_without(out.error, self.settings.falcon_api_token)}"
            )
        try:
            data = orjson.loads(out.body)
            users = data["users"]
            if not isinstance(users, list):
                raise TypeError("users is not a list")
            return [
                Member(
                    str(u.get("name") or ""),
                    str(u.get("phone") or ""),
                    str(u.get("email") or ""),
                    str(u.get("im") or ""),
                )
                for u in users
                if isinstance(u, dict)
            ]
        except (orjson.JSONDecodeError, KeyError, TypeError) as e:
            raise TeamLookupError(f"GET {redact_url(url)}: not a falcon-plus team answer ({e})") from None


def _without(text: str, secret: str | None) -> str:
    return text.replace(secret, REDACTED) if secret else text


async def with_retries(
    settings: NotifySettings,
    attempt: Callable[[], Awaitable[Outcome]],
    kind: str,
    on_event: OnEvent,
    sleep: Callable[[float], Awaitable[Any]],
) -> Outcome:
    """Up to `attempts` tries, `backoff` * 2**n seconds apart, while the failure is worth a retry."""
    backoff = Backoff(initial=settings.backoff, factor=2.0, maximum=math.inf, jitter=0)
    out = await attempt()
    for n in range(1, settings.attempts):
        if out.ok or not out.retry:
            break
        on_event("retry", kind)
        await sleep(backoff.delay(n - 1))
        out = replace(await attempt(), tries=n + 1)
    return out


# ---- the notifier -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Post:
    job: str
    decision_id: int | None
    form: dict[str, str]


class FalconGroups:
    """Queues and tasks that turn a decision message for a group into Falcon sender posts."""

    def __init__(self, env: Env) -> None:
        self.settings = settings = env.settings
        self._on_event = env.on_event
        self._sleep = env.sleep
        drop = self._dropped
        self.groups: Lane[tuple[str, dict[str, Any]]] = Lane("group", settings.queue, drop)
        self.channels: dict[str, Lane[Post]] = {c: Lane(c, settings.queue, drop) for c in CHANNELS}
        self.teams = Teams(env)

    def _dropped(self, kind: str) -> None:
        self._on_event("dropped", kind)

    def submit(self, group: str, msg: dict[str, Any]) -> None:
        self.groups.put((group, msg))

    async def run(self, stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            workers = [self._resolve(session, stop)]
            workers += [self._send(session, c, stop) for c in CHANNELS if self._url(c)]
            await asyncio.gather(*workers)

    def _url(self, channel: str) -> str | None:
        return getattr(self.settings, channel)  # type: ignore[no-any-return]

    async def _resolve(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        while (item := await self.groups.get(stop)) is not None:
            group, msg = item
            await self._guarded(until_stopped(self._resolve_one(session, group, msg), stop), "falcon_api")

    async def _resolve_one(self, session: aiohttp.ClientSession, group: str, msg: dict[str, Any]) -> None:
        members: dict[str, Member] = {}
        for team in (t.strip() for t in group.split(",")):
            if not team:
                continue
            try:
                for m in await self.teams.members(session, team):
                    members.setdefault(m.name, m)
            except TeamLookupError as e:
                self._on_event("error", "falcon_api")
                log.warning(
                    "notification of job %s to falcon-plus team %r not sent: %s",
                    msg["job"],
                    team,
                    redact_text(str(e)),
                    extra={"event": "notify_failed", "job": msg["job"], "kind": "falcon_api"},
                )
        tos = addresses(list(members.values()))
        for channel, form in forms(msg, tos, self.settings.sms_max_chars).items():
            if self._url(channel):
                self.channels[channel].put(Post(str(msg["job"]), msg.get("decision_id"), form))

    async def _send(self, session: aiohttp.ClientSession, channel: str, stop: asyncio.Event) -> None:
        lane = self.channels[channel]
        while (post := await lane.get(stop)) is not None:
            await self._guarded(until_stopped(self._send_one(session, channel, post), stop), channel)

    async def _guarded(self, work: Awaitable[Any], kind: str) -> None:
        """A bug in one message costs that message (logged with its traceback, counted), not the task."""
        try:
            await work
        except Exception:
            self._on_event("error", kind)
            log.exception(
                "notification (%s) failed inside oceand", kind, extra={"event": "notify_internal_error"}
            )

    async def _send_one(self, session: aiohttp.ClientSession, channel: str, post: Post) -> None:
        url = self._url(channel)
        assert url is not None
        out = await with_retries(
            self.settings,
            lambda: request(session, "POST", url, data=post.form),
            channel,
            self._on_event,
            self._sleep,
        )
        if out.ok:
            self._on_event("sent", channel)
            return
        self._on_event("error", channel)
        log.warning(
            "notification (%s) of job %s, decision %s, to %s failed after %d attempt(s): %s",
            channel,
            post.job,
            post.decision_id,
            redact_url(url),
            out.tries,
            redact_text(out.error),
            extra={"event": "notify_failed", "job": post.job, "kind": channel},
        )
