"""The console's files at /ui/ on the admin listener: served from the package, with a JavaScript MIME
type (ES modules need one) and a same-origin-only Content-Security-Policy; nothing else is served."""

from __future__ import annotations

import aiohttp
import pytest

from tests.conftest import DaemonFactory


async def test_index_and_modules(start_daemon: DaemonFactory) -> None:
    d, _ = await start_daemon()
    async with aiohttp.ClientSession() as s:
        async with s.get(d.url + "/ui", allow_redirects=False) as r:
            assert (r.status, r.headers["Location"]) == (301, "/ui/")
        async with s.get(d.url + "/ui/") as r:
            assert r.status == 200 and r.content_type == "text/html"
            assert '<script type="module" src="/ui/app.js">' in await r.text()
            csp = r.headers["Content-Security-Policy"]
            assert (
                "script-src 'self'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
            )
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert "Set-Cookie" not in r.headers
        for name in ("app.js", "tree.js", "style.css"):
            async with s.get(f"{d.url}/ui/{name}") as r:
                assert r.status == 200
                assert r.content_type == ("text/css" if name.endswith(".css") else "text/javascript")


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/ui/nothing.js", id="unknown file"),
        pytest.param("/ui/../daemon.py", id="dot-dot"),
        pytest.param("/ui/%2e%2e/__init__.py", id="encoded dot-dot"),
        pytest.param("/ui/static/app.js", id="a directory prefix"),
    ],
)
async def test_only_shipped_files(start_daemon: DaemonFactory, path: str) -> None:
    d, _ = await start_daemon()
    async with aiohttp.ClientSession() as s, s.get(d.url + path) as r:
        assert r.status == 404
        assert (await r.json())["error"]["code"] in ("not_found",)


JOB = "job.web_pdl.ocean_cop.xiaomi"
DOC = {
    "job": JOB,
    "target": {"cluster": "lg", "app": "/ocean/web"},
    "mode": "active",
    "rules": [{"name": "cpu", "type": "threshold", "metric": "cpu.used", "scale_out": {"above": 80}}],
}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(
            {"Origin": "http://evil.example", "Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site"},
            id="a form on another site (text/plain needs no preflight)",
        ),
        pytest.param(
            {"Origin": "http://evil.example", "Content-Type": "text/plain"},
            id="an older browser: Origin only",
        ),
        pytest.param({"Origin": "null", "Content-Type": "text/plain"}, id="an opaque origin"),
        pytest.param({"Sec-Fetch-Site": "same-site", "Content-Type": "text/plain"}, id="a sibling site"),
    ],
)
async def test_cross_site_writes_are_refused(start_daemon: DaemonFactory, headers: dict[str, str]) -> None:
    """With no authentication (the default on loopback) a page on any site could otherwise pause or scale a
    job from an operator's browser: a form post with a text/plain body is sent without a CORS preflight."""
    d, c = await start_daemon()
    assert (await c.call("POST", "/api/v1/jobs", DOC))[0] == 201
    body = b'{"mode": "paused", "x": "="}'  # what <form enctype="text/plain"> can produce
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{d.url}/api/v1/jobs/{JOB}/mode", data=body, headers=headers) as r,
    ):
        assert r.status == 403
        err = (await r.json())["error"]
        assert err["code"] == "cross_origin" and "another site" in err["message"]
    assert (await c.call("GET", f"/api/v1/jobs/{JOB}"))[1]["job"]["mode"] == "active"
    assert d.metrics.registry.get_sample_value("oceand_http_cross_site_refused_total") == 1


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no Origin: curl, oceanctl, Falcon"),
        pytest.param({"Sec-Fetch-Site": "same-origin", "Origin": "http://{host}"}, id="the console itself"),
        pytest.param({"Origin": "http://{host}"}, id="the console in an older browser"),
    ],
)
async def test_same_origin_and_non_browser_writes_pass(
    start_daemon: DaemonFactory, headers: dict[str, str]
) -> None:
    d, c = await start_daemon()
    assert (await c.call("POST", "/api/v1/jobs", DOC))[0] == 201
    host = d.url.removeprefix("http://")
    sent = {k: v.format(host=host) for k, v in headers.items()}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{d.url}/api/v1/jobs/{JOB}/mode", json={"mode": "paused"}, headers=sent) as r,
    ):
        assert r.status == 200, await r.text()
    assert d.metrics.registry.get_sample_value("oceand_http_cross_site_refused_total") == 0
    assert (await c.call("GET", f"/api/v1/jobs/{JOB}"))[1]["job"]["mode"] == "paused"


async def test_no_cors_for_other_sites(start_daemon: DaemonFactory) -> None:
    """A JSON fetch from another site needs a preflight; the daemon grants none (and no read either)."""
    d, _ = await start_daemon()
    async with aiohttp.ClientSession() as s:
        preflight = {
            "Origin": "http://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization",
        }
        async with s.options(d.url + "/api/v1/jobs", headers=preflight) as r:
            assert "Access-Control-Allow-Origin" not in r.headers
        async with s.get(d.url + "/api/v1/jobs", headers={"Origin": "http://evil.example"}) as r:
            assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers
