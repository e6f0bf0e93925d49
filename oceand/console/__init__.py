"""The web console (PRODUCT §12): static ES modules and CSS under `/ui/` on the admin listener.

No build step and nothing fetched at run time: the files in `static/` are served as they are, with a
Content-Security-Policy that allows only this origin (no inline script, no other host), so a page can
neither load nor send anything elsewhere. The console talks to the admin API with JSON bodies and an
`Authorization: Bearer` header it keeps in the browser's sessionStorage; it sets no cookie, so a page on
another site cannot make the browser send an authenticated request (docs/console.md).

Only files that ship in `static/` are served, looked up by name in a table built at start: a path with
`..`, a directory or anything not in the table is 404.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from oceand.api.errors import ApiError

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
