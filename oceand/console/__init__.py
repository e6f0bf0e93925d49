"""The web console (PRODUCT §12): static ES modules and CSS under `/ui/` on the admin listener.

No build step and nothing fetched at run time: the files in `static/` are served as they are, with a
Content-Security-Policy that allows only this origin (no inline script, no other host), so a page can
neither load nor send anything elsewhere. The console talks to the admin API with JSON bodies and an
`Authorization: Bearer` header it keeps in the browser's sessionStorage; it sets no cookie, so a page on
another site cannot make the browser send an authenticated request (docs/console.md).

`cross_site_guard` refuses (403 `cross_origin`) a write (POST, PUT, PATCH, DELETE) that a browser says
comes from another site: `Sec-Fetch-Site` other than `same-origin` / `none`, or, from a browser that
does not send it, an `Origin` whose host is not the one the request was sent to. Without it, while the
admin API has no authentication (the default on loopback), any page an operator opens could pause or
scale a job from their browser with a `<form enctype="text/plain">` post, which needs no CORS preflight.
Clients that are not browsers (curl, oceanctl, Falcon, agents) send neither header and are not affected.

Only files that ship in `static/` are served, looked up by name in a table built at start: a path with
`..`, a directory or anything not in the table is 404.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from oceand.api.errors import ApiError
from oceand.keys import METRICS

STATIC = Path(__file__).parent / "static"

_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",  # ES modules need a JavaScript MIME type
    ".css": "text/css",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".txt": "text/plain",
}

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def _cross_site(request: web.Request) -> bool:
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    return origin.partition("://")[2] != request.host


@web.middleware
async def cross_site_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """403 for a write a browser sent from another site (see the module doc)."""
    if request.method not in _SAFE and _cross_site(request):
        request.app[METRICS].http_cross_site_refused.inc()
        raise ApiError(
            403,
            "cross_origin",
            "a write from a page of another site is refused (Origin "
            f"{request.headers.get('Origin', '-')[:100]!r}, Sec-Fetch-Site "
            f"{request.headers.get('Sec-Fetch-Site', '-')[:20]!r})",
        )
    return await handler(request)


def _files() -> dict[str, Path]:
    return {
        p.relative_to(STATIC).as_posix(): p for p in STATIC.rglob("*") if p.is_file() and p.suffix in _TYPES
    }


def add_routes(app: web.Application) -> None:
    """`/ui` → `/ui/`; `/ui/` is index.html; `/ui/NAME` one of the shipped files."""
    files = _files()

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("/ui/")

    async def serve(request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name") or "index.html"
        path = files.get(name)
        if path is None:
            raise ApiError(404, "not_found", f"no console file named {name[:100]!r}")
        return web.FileResponse(path, headers={**HEADERS, "Content-Type": _TYPES[path.suffix]})

    app.router.add_get("/ui", redirect)
    app.router.add_get("/ui/", serve)
    app.router.add_get("/ui/{name:.+}", serve)
