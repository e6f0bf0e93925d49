"""The falcon-plus API's team endpoint and Falcon's sender endpoints, built from falcon-plus's source.

- `GET /api/v1/team/name/:team_name` (`modules/api/app/controller/uic/user_routes.go`, `GetTeamByName` in
  `team_controller.go`): behind `AuthSessionMidd` (`app/utils/auth_middle.go`, `app/helper/session.go`):
  the `Apitoken` header is JSON `{"name":..,"sig":..}`; a missing header, bad JSON, an empty name or sig
  answer 401 `{"error": ...}`; a sig equal to the API's `default_token` is accepted for any name,
  otherwise the (name, sig) pair must be a user's session. A team that does not exist answers 400
  `{"error":"record not found"}` (gorm's `Find` error through `h.JSONR`). A team answers 200 with
  `APIGetTeamOutput`: the `uic.Team` fields (`id`, `name`, `resume`, `creator`), `users` (`uic.User`:
  `id`, `name`, `cnname`, `email`, `phone`, `im`, `qq`, `role`; never the password) and `creator_name`
  (left empty by `GetTeamByName`).
- The senders: what falcon-plus's alarm posts to `api.sms`, `api.mail`, `api.im` (`modules/alarm/cron/
  sms_sender.go`, `mail_sender.go`, `im_sender.go`, through `toolkits/net/httplib`): `POST` with
  `Content-Type: application/x-www-form-urlencoded`, fields `tos` + `content` (sms, im) and `tos` +
  `subject` + `content` (mail), `tos` being the addresses joined with `,` (`redi/msg_writer.go`). Every
  request is recorded; a path can be told to fail (500) a number of times, or to hang until released.
- `POST /api/v1/graph/history` (`graph_routes.go`, `QueryGraphDrawData` in `graph_controller.go`, the
  graph's `Graph.Query` in `modules/graph/api/graph.go`): same auth; `hostnames`, `counters`,
  `consol_fun`, `start_time`, `end_time` required (gin `binding:"required"`: 400 `{"error": ...}`);
  one `GraphQueryResponse` per hostname x counter, `step` 0 meaning "look it up" (a series the graph
  DB does not know is then skipped); a series the graph does not know answers `dstype` "", `step` 0,
  `Values` []; values are the stored points in [start, end], `null` for NaN; a series marked `timeout`
  answers `null` (`fetchData`'s error is dropped and its nil response appended).
- `GET /api/v1/graph/endpoint` (`EndpointRegexpQuery`): `q` (terms split on spaces, each a MySQL
  `endpoint regexp`: an unanchored search) and/or `tags` (terms split on `,`, each `counter like
  %term%` over the endpoint's counters), `limit` (default 500); both missing: 400 `{"error": "q and
  labels are all missing"}`; a 200 answer is `[{"id", "endpoint"}]`. Endpoints and counters are those
  of `graphs`, ids in sorted endpoint order from 1.
- `GET /api/v1/graph/endpointobj` (`EndpointObjGet`): `endpoints` repeated in the query (gin's form
  binding); none: 400 `{"error": "endpoints missing"}`; answers `[{"id", "endpoint", "ts"}]` for the
  known ones.
- `GET /api/v1/graph/endpoint_counter` (`EndpointCounterRegexpQuery`): `eid` (comma-separated ids; missing:
  400 `"eid is missing"`), `metricQuery` (terms split on spaces, each `counter regexp term`, `!term` for
  NOT; default `.+`), `limit` (500); answers `[{"endpoint_id", "counter", "step", "type"}]`.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

DEFAULT_TOKEN = "default-token-used-in-server-side"  # modules/api/cfg.example.json


@dataclass
class User:
    id: int
    name: str
    email: str = ""
    phone: str = ""
    im: str = ""
    cnname: str = ""
    qq: str = ""
    role: int = 0

    def json(self) -> dict[str, Any]:  # uic.User's json tags, in struct order; Passwd is `json:"-"`
        return {
            "id": self.id,
            "name": self.name,
            "cnname": self.cnname,
            "email": self.email,
            "phone": self.phone,
            "im": self.im,
            "qq": self.qq,
            "role": self.role,
        }


@dataclass
class SenderRequest:
    path: str
    content_type: str
    form: dict[str, list[str]]
    body: bytes


@dataclass
class FalconFake:
    """One server on 127.0.0.1 with the team endpoint and the sender endpoints (`/sms`, `/mail`,
    `/wechat`: the paths of falcon-plus's alarm `cfg.example.json`)."""

    teams: dict[str, list[User]] = field(default_factory=dict)
    default_token: str = DEFAULT_TOKEN
    sessions: dict[str, str] = field(default_factory=dict)  # user name -> session sig
    team_lookups: list[tuple[str, str]] = field(default_factory=list)  # (team, Apitoken header)
    sent: list[SenderRequest] = field(default_factory=list)
    arrived: list[str] = field(default_factory=list)  # sender paths, when a request arrives
    fail: dict[str, int] = field(default_factory=dict)  # path -> how many more requests answer 500
    hang: set[str] = field(default_factory=set)  # paths whose requests wait for `release`
    team_answer: tuple[int, bytes] | None = None  # not falcon-plus: a broken or hostile API's answer
    # (endpoint, counter) -> (dstype, step, [(timestamp, value or None)]); `timeout` holds series that
    # time out in the graph
    graphs: dict[tuple[str, str], tuple[str, int, list[tuple[int, float | None]]]] = field(
        default_factory=dict
    )
    timeout: set[tuple[str, str]] = field(default_factory=set)
    history_queries: list[dict[str, Any]] = field(default_factory=list)
    endpoint_queries: list[dict[str, str]] = field(default_factory=list)
    hang_history: bool = False  # the history endpoint waits for `release` (a graph that does not answer)
    url: str = ""

    def __post_init__(self) -> None:
        self.release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def start(self) -> FalconFake:
        app = web.Application()
        app.router.add_get("/api/v1/team/name/{team_name}", self._team)
        app.router.add_post("/api/v1/graph/history", self._history)
        app.router.add_get("/api/v1/graph/endpoint", self._endpoints)
        app.router.add_get("/api/v1/graph/endpointobj", self._endpoint_objs)
        app.router.add_get("/api/v1/graph/endpoint_counter", self._endpoint_counters)
        for path in ("/sms", "/mail", "/wechat"):
            app.router.add_post(path, self._sender)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- modules/api: AuthSessionMidd + GetTeamByName ----------------------------------------------

    def _session_error(self, header: str) -> str | None:
        if header == "":
            return "token key is not set"
        try:
            s = json.loads(header)
        except ValueError as e:
            return str(e)
        if not isinstance(s, dict):
            return "json: cannot unmarshal into Go value of type helper.WebSession"
        name, sig = s.get("name") or "", s.get("sig") or ""
        if name == "":
            return "token key:name is empty"
        if sig == "":
            return "token key:sig is empty"
        if self.default_token and sig == self.default_token:
            return None
        if name not in self.sessions:
            return "not found this user"
        if self.sessions[name] != sig:
            return "session not found"
        return None

    async def _team(self, request: web.Request) -> web.Response:
        header = request.headers.get("Apitoken", "")
        name = request.match_info["team_name"]
        self.team_lookups.append((name, header))
        if self.team_answer is not None:
            return web.Response(status=self.team_answer[0], body=self.team_answer[1])
        error = self._session_error(header)
        if error is not None:
            return web.json_response({"error": error}, status=401)
        if name not in self.teams:
            return web.json_response({"error": "record not found"}, status=400)
        tid = sorted(self.teams).index(name) + 1
        body = {
            "id": tid,
            "name": name,
            "resume": "",
            "creator": 1,
            "users": [u.json() for u in self.teams[name]],
            "creator_name": "",
        }
        return web.json_response(body)

    async def _history(self, request: web.Request) -> web.Response:
        error = self._session_error(request.headers.get("Apitoken", ""))
        if error is not None:
            return web.json_response({"error": error}, status=401)
        try:
            q = await request.json()
        except ValueError as e:
            return web.json_response({"error": str(e)}, status=400)
        self.history_queries.append(q)
        if self.hang_history:
            await self.release.wait()
        fields = {"hostnames": "HostNames", "counters": "Counters", "consol_fun": "ConsolFun"}
        fields |= {"start_time": "StartTime", "end_time": "EndTime"}
        for key, go in fields.items():
            if not q.get(key):
                msg = f"Key: 'APIQueryGraphDrawData.{go}' Error:Field validation for '{go}' failed on the 'required' tag"
                return web.json_response({"error": msg}, status=400)
        out: list[dict[str, Any] | None] = []
        for host in q["hostnames"]:
            for counter in q["counters"]:
                known = self.graphs.get((host, counter))
                if not q.get("step") and known is None:
                    continue  # getCounterStep: "empty result"
                if (host, counter) in self.timeout:
                    out.append(None)
                    continue
                resp: dict[str, Any] = {
                    "endpoint": host,
                    "counter": counter,
                    "dstype": "",
                    "step": 0,
                    "Values": [],
                }
                if known is not None:
                    dstype, step, points = known
                    values = [
                        {"timestamp": t, "value": v}
                        for t, v in points
                        if q["start_time"] <= t <= q["end_time"]
                    ]
                    resp |= {"dstype": dstype, "step": step, "Values": values}
                out.append(resp)
        return web.json_response(out)

    async def _endpoints(self, request: web.Request) -> web.Response:
        error = self._session_error(request.headers.get("Apitoken", ""))
        if error is not None:
            return web.json_response({"error": error}, status=401)
        q, tags = request.query.get("q", ""), request.query.get("tags", "")
        self.endpoint_queries.append(dict(request.query))
        if not q and not tags:
            return web.json_response({"error": "q and labels are all missing"}, status=400)
        limit = int(request.query.get("limit", "500"))
        names = sorted({e for e, _ in self.graphs})
        out = []
        for i, name in enumerate(names, 1):
            counters = [c for e, c in self.graphs if e == name]
            if tags and not any(all(t.strip() in c for t in tags.split(",")) for c in counters):
                continue
            if q and not all(re.search(t.strip(), name) for t in q.split(" ")):
                continue
            out.append({"id": i, "endpoint": name})
        return web.json_response(out[:limit])

    def _ids(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(sorted({e for e, _ in self.graphs}), 1)}

    async def _endpoint_objs(self, request: web.Request) -> web.Response:
        error = self._session_error(request.headers.get("Apitoken", ""))
        if error is not None:
            return web.json_response({"error": error}, status=401)
        names = request.query.getall("endpoints", [])
        self.endpoint_queries.append({"endpoints": ",".join(names)})
        if not names:
            return web.json_response({"error": "endpoints missing"}, status=400)
        ids = self._ids()
        return web.json_response([{"id": ids[n], "endpoint": n, "ts": 0} for n in names if n in ids])

    async def _endpoint_counters(self, request: web.Request) -> web.Response:
        error = self._session_error(request.headers.get("Apitoken", ""))
        if error is not None:
            return web.json_response({"error": error}, status=401)
        eid = request.query.get("eid", "")
        self.endpoint_queries.append(dict(request.query))
        if not eid:
            return web.json_response({"error": "eid is missing"}, status=400)
        wanted = {int(e) for e in eid.split(",") if e.strip().isdigit()}
        terms = [t for t in request.query.get("metricQuery", ".+").split(" ") if t.strip()]
        limit = int(request.query.get("limit", "500"))
        ids = self._ids()
        out = []
        for (endpoint, counter), (dstype, step, _) in sorted(self.graphs.items()):
            if ids[endpoint] not in wanted:
                continue
            if all(_regexp(t, counter) for t in terms):
                out.append({"endpoint_id": ids[endpoint], "counter": counter, "step": step, "type": dstype})
        return web.json_response(out[:limit])

    # ---- the sender endpoints -----------------------------------------------------------------------

    async def _sender(self, request: web.Request) -> web.Response:
        self.arrived.append(request.path)
        if request.path in self.hang:
            await self.release.wait()
        body = await request.read()
        form: dict[str, list[str]] = {}
        post = await request.post()
        for k, v in post.items():
            form.setdefault(k, []).append(str(v))
        if self.fail.get(request.path, 0) > 0:
            self.fail[request.path] -= 1
            return web.Response(status=500, text="sender down")
        self.sent.append(SenderRequest(request.path, request.headers.get("Content-Type", ""), form, body))
        return web.Response(text="success")

    def to(self, path: str) -> list[SenderRequest]:
        return [r for r in self.sent if r.path == path]


def _regexp(term: str, counter: str) -> bool:
    """One `metricQuery` term: `counter regexp term`, or `NOT counter regexp term[1:]` for `!term`."""
    if term.startswith("!"):
        return re.search(term[1:], counter) is None
    return re.search(term, counter) is not None
