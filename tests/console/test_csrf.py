"""Cross-site request forgery in a real browser (PRODUCT §12 "CSRF-safe", docs/console.md): a page of
another site, opened in the operator's Chromium, posts a `text/plain` form (no CORS preflight) whose
body is JSON to the daemon's mode route. The daemon runs without auth (the loopback default, where no
token protects it), so only its cross-site guard stands between that page and a paused job: Chromium
sends `Sec-Fetch-Site: cross-site`, the daemon answers 403 `cross_origin`, and the job is unchanged.
The same post made by the console's own page (same origin) goes through."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.console.conftest import WEB, Live

pytestmark = pytest.mark.slow

FORM = """<!doctype html><html><body>
<form method="post" enctype="text/plain" action="{action}">
<input type="hidden" name='{{"mode": "paused", "x": "' value='"}}'>
</form><script>document.forms[0].submit()</script></body></html>"""


@pytest.fixture
def other_site(live: Live) -> Iterator[str]:
    """A page on http://localhost:<other port> (another site than http://127.0.0.1:<daemon>) that posts
    the forged form to the daemon as soon as it loads."""
    page = FORM.format(action=f"{live.daemon.url}/api/v1/jobs/{WEB}/mode").encode()

    class Evil(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def refused_count(live: Live) -> float:
    with urllib.request.urlopen(live.daemon.url + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("oceand_http_cross_site_refused_total "):
                return float(line.split()[1])
    return 0.0


def test_a_forged_form_from_another_site_changes_nothing(browser: Any, live: Live, other_site: str) -> None:
    before = live.daemon.request("GET", f"/api/v1/jobs/{WEB}")
    refused = refused_count(live)
    browser.get(other_site)  # the page submits itself; the browser shows the daemon's answer
    WebDriverWait(browser, 10).until(lambda d: "cross_origin" in d.find_element(By.TAG_NAME, "body").text)
    assert "a write from a page of another site is refused" in browser.find_element(By.TAG_NAME, "body").text
    after = live.daemon.request("GET", f"/api/v1/jobs/{WEB}")
    assert (after["version"], after["job"]["mode"]) == (before["version"], before["job"]["mode"])
    assert refused_count(live) == refused + 1

    # the console's own origin may post the same body (what its mode buttons do, with fetch)
    browser.get(live.daemon.url + "/ui/")
    status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {method: 'POST', body: JSON.stringify({mode: arguments[1]})})"
        ".then(r => done(r.status));",
        f"/api/v1/jobs/{WEB}/mode",
        before["job"]["mode"],
    )
    assert status == 200
