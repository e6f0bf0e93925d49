"""The console's login against the daemon's real tokens (PRODUCT §10, §12): a daemon process with
`[auth] enabled`, its first admin token made on the host with `oceand token create`, the others made
through the API. 401 brings the login page; a wrong token is refused and not kept; a token without
`read` gets the API's 403 reason; a read-only token sees the jobs but its mode change is refused on
the page (403 naming the scope); sign out forgets the token; the admin token acts. The token is kept in
sessionStorage only, sent as a bearer header, and is in no URL and no cookie."""

from __future__ import annotations

import json
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from bench.common import job_doc
from tests.e2e.harness import DaemonProcess, daemon_with_auth

pytestmark = pytest.mark.slow

JOB = "job.web_service.web_cluster.lg_pdl.ocean_owt.inf_cop.xiaomi"


@dataclass
class Secured:
    daemon: DaemonProcess
    root: str
    reader: str
    ingest_only: str

    def call(self, method: str, path: str, token: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.daemon.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token}")
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
        return json.loads(raw) if raw else None


@pytest.fixture(scope="module")
def secured() -> Iterator[Secured]:
    with tempfile.TemporaryDirectory(prefix="oceand-console-auth-") as tmp:
        daemon, root = daemon_with_auth(Path(tmp))
        try:
            s = Secured(daemon, root, "", "")
            s.call("POST", "/api/v1/jobs", s.root, job_doc(JOB, "/ocean/web", mode="active", max_instances=5))
            s.reader = s.call("POST", "/api/v1/tokens", s.root, {"name": "reader", "scopes": ["read"]})[
                "secret"
            ]
            s.ingest_only = s.call(
                "POST", "/api/v1/tokens", s.root, {"name": "agents", "scopes": ["ingest"]}
            )["secret"]
            yield s
        finally:
            daemon.close()


def wait(driver: Any, timeout: float = 10) -> WebDriverWait:
    return WebDriverWait(driver, timeout)


def sign_in(d: Any, token: str) -> None:
    field = wait(d).until(EC.element_to_be_clickable((By.ID, "token")))
    field.clear()
    field.send_keys(token)
    d.find_element(By.ID, "login-submit").click()


def bearer_headers(d: Any) -> list[str | None]:
    """The Authorization header of each admin API request the page sent (Chromium's performance log)."""
    out = []
    for entry in d.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent" and "/api/v1/" in msg["params"]["request"]["url"]:
            assert "token" not in msg["params"]["request"]["url"]
            out.append(msg["params"]["request"]["headers"].get("Authorization"))
    return out


def test_login_with_the_daemons_tokens(browser: Any, secured: Secured) -> None:
    d, url = browser, secured.daemon.url
    d.get(url + "/ui/")
    d.execute_script("localStorage.setItem('oceand.lang', 'en'); sessionStorage.clear()")
    d.get(url + "/ui/?again#/?cop=xiaomi")  # a new address (not only a new hash): the page loads again
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "token-err"), "401"))
    assert d.find_element(By.ID, "token-err").text == "A token is needed: the admin API answered 401."
    assert d.current_url.endswith("#/login")

    sign_in(d, "wrong-" + secured.reader)  # a token the daemon does not know
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "token-err"), "The token was refused (401)."))
    assert d.current_url.endswith("#/login")
    assert d.execute_script("return sessionStorage.getItem('oceand.token')") is None  # a refused one is gone

    sign_in(d, secured.ingest_only)  # a real token without the read scope: the API's own reason
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "token-err"), "lacks scope 'read'"))
    assert "token 'agents' lacks scope 'read'" in d.find_element(By.ID, "token-err").text

    d.get_log("performance")  # drop what came before
    sign_in(d, secured.reader)
    wait(d).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "a.job-link")))
    assert d.current_url.endswith("/ui/?again#/?cop=xiaomi")  # back where the 401 came
    assert secured.reader not in d.current_url and d.execute_script("return document.cookie") == ""
    assert d.execute_script("return sessionStorage.getItem('oceand.token')") == secured.reader
    assert d.execute_script("return localStorage.getItem('oceand.token')") is None
    sent = bearer_headers(d)
    assert sent and set(sent) == {f"Bearer {secured.reader}"}

    # read-only: the job page shows, a mode change is refused on the page with the API's reason
    d.find_element(By.CSS_SELECTOR, "a.job-link").click()
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "job-title"), JOB))
    d.find_element(By.ID, "mode-paused").click()
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "operate-result"), "lacks scope 'operate'"))
    assert secured.call("GET", f"/api/v1/jobs/{JOB}", secured.root)["job"]["mode"] == "active"

    d.find_element(By.ID, "logout").click()
    wait(d).until(EC.visibility_of_element_located((By.ID, "token")))
    assert d.execute_script("return sessionStorage.getItem('oceand.token')") is None
    d.get(url + f"/ui/?fresh#/job/{JOB}")  # without a token the job page is not shown
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "token-err"), "401"))

    sign_in(d, secured.root)  # the admin token: back on the job page, and the mode change goes through
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "job-title"), JOB))
    d.find_element(By.ID, "mode-paused").click()
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "operate-result"), "Mode set to paused"))
    assert secured.call("GET", f"/api/v1/jobs/{JOB}", secured.root)["job"]["mode"] == "paused"
    entry = secured.call("GET", f"/api/v1/audit?job={JOB}&limit=1", secured.root)["entries"][0]
    assert (entry["actor"], entry["action"], entry["detail"]) == ("root", "job.mode", {"mode": "paused"})

    # the token is of this tab only: a new tab (a new session) has none
    d.switch_to.new_window("tab")
    d.get(url + "/ui/")
    assert d.execute_script("return sessionStorage.getItem('oceand.token')") is None
    d.close()
    d.switch_to.window(d.window_handles[0])
