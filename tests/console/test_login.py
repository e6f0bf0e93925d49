"""The console's login against an admin API that wants a token (PRODUCT §10: 401 for a missing or bad
token, 403 naming what is missing). The daemon's tokens are another issue's work; until they land, a
small aiohttp app in this process serves the console's own routes (oceand.console.add_routes) and one
API route that answers as §10 says, so the browser side is tested now."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from bench.common import free_port
from oceand import console
from oceand.api.errors import error_middleware, error_response

pytestmark = pytest.mark.slow

GOOD, READ_NOTHING = "good-token", "no-read-scope"


async def jobs(request: web.Request) -> web.Response:
    auth = request.headers.get("Authorization", "")
    if auth == f"Bearer {GOOD}":
        return web.json_response(
            {
                "jobs": [
                    {
                        "job": "job.web_pdl.ocean_cop.xiaomi",
                        "mode": "active",
                        "effective_mode": "active",
                        "version": 1,
                    }
                ]
            }
        )
    if auth == f"Bearer {READ_NOTHING}":
        return error_response(403, "forbidden", "token no-read-scope lacks scope read")
    return error_response(401, "unauthorized", "a token is needed")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = free_port()
    loop = asyncio.new_event_loop()
    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/api/v1/jobs", jobs)
    console.add_routes(app)
    runner = web.AppRunner(app)

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_a_401_asks_for_a_token_and_comes_back(browser: Any, server: str) -> None:
    d = browser
    d.get(server + "/ui/")
    d.execute_script("localStorage.setItem('oceand.lang', 'en'); sessionStorage.clear()")
    d.get(server + "/ui/?again#/?cop=xiaomi")  # a new address (not only a new hash): the page loads again
    WebDriverWait(d, 10).until(EC.text_to_be_present_in_element((By.ID, "token-err"), "401"))
    assert d.find_element(By.ID, "token-err").text == "A token is needed: the admin API answered 401."
    assert d.current_url.endswith("#/login")

    token = d.find_element(By.ID, "token")
    token.send_keys("wrong")
    d.find_element(By.ID, "login-submit").click()
    WebDriverWait(d, 10).until(
        EC.text_to_be_present_in_element((By.ID, "token-err"), "The token was refused")
    )
    assert d.current_url.endswith("#/login")
    assert d.execute_script("return sessionStorage.getItem('oceand.token')") is None  # a refused one is gone

    token.clear()
    token.send_keys(READ_NOTHING)
    d.find_element(By.ID, "login-submit").click()
    WebDriverWait(d, 10).until(EC.text_to_be_present_in_element((By.ID, "token-err"), "lacks scope read"))

    token.clear()
    token.send_keys(GOOD)
    d.find_element(By.ID, "login-submit").click()
    WebDriverWait(d, 10).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "a.job-link")))
    assert d.current_url.endswith("/ui/?again#/?cop=xiaomi")  # back where the 401 came
    assert GOOD not in d.current_url
    assert d.execute_script("return sessionStorage.getItem('oceand.token')") == GOOD

    d.find_element(By.ID, "logout").click()
    WebDriverWait(d, 10).until(EC.visibility_of_element_located((By.ID, "token")))
    assert d.execute_script("return sessionStorage.getItem('oceand.token')") is None
