"""The console's files at /ui/ on the admin listener: served from the package, with a JavaScript MIME
type (ES modules need one) and a same-origin-only Content-Security-Policy; nothing else is served."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import aiohttp
import pytest

from oceand.console import STATIC
from tests.conftest import DaemonFactory

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.mark.slow
def test_wheel_ships_the_console(tmp_path: Path) -> None:
    """pyproject's package data: every file of static/ is in the wheel (built from a copy of the sources,
    so setuptools' build/ folder stays out of the checkout)."""
    src = tmp_path / "src"
    src.mkdir()
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    for d in ("oceand", "policies", "collectors", "actuators"):
        shutil.copytree(ROOT / d, src / d, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("oceand-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"oceand/console/static/{p.name}" for p in STATIC.iterdir() if p.is_file()}
    assert shipped and shipped <= names
