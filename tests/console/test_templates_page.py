"""The console's templates page (模板管理, read-only; PRODUCT §13's templates seen from §12's console) in a
real headless Chromium against a real daemon process: every template with its version, its fields and the
jobs that name it (links to their pages), an unused one said to be unused, in Chinese and English."""

from __future__ import annotations

import json
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from bench.common import job_doc
from tests.console.conftest import Live, screenshot
from tests.console.test_browser import wait

pytestmark = pytest.mark.slow

PDL = "_cluster.lg_pdl.ocean_owt.inf_cop.xiaomi"
USERS = [f"job.{s}_service.{s}{PDL}" for s in ("cart", "search")]
SHARED = {k: v for k, v in job_doc("x", "/ocean/docs", max_instances=7).items() if k not in ("job", "target")}


def _open(d: Any, live: Live, lang: str) -> None:
    d.get(live.daemon.url + "/ui/")
    d.execute_script(f"localStorage.setItem('oceand.lang', '{lang}'); sessionStorage.clear()")
    d.get(live.daemon.url + "/ui/#/templates")
    d.refresh()  # a new hash alone loads nothing: read the language again


def test_templates_and_the_jobs_that_use_them(browser: Any, live: Live) -> None:
    d = browser
    _open(d, live, "zh")
    empty = wait(d).until(EC.visibility_of_element_located((By.ID, "no-templates")))
    assert empty.text == "还没有模板" and d.find_element(By.ID, "nav-templates").text == "模板管理"

    live.daemon.request("PUT", "/api/v1/templates/web-default", SHARED)
    live.daemon.request("PUT", "/api/v1/templates/spare", {"max_instances": 3})
    for name in USERS:
        live.daemon.request("PUT", f"/api/v1/jobs/{name}", {"template": "web-default", "target": {"cluster": "lg", "app": "/ocean/docs"}})  # fmt: skip
    try:
        d.get(live.daemon.url + "/ui/#/")  # to the list, then back by the header's link: read again
        wait(d).until(EC.element_to_be_clickable((By.ID, "nav-templates"))).click()
        used = wait(d).until(EC.visibility_of_element_located((By.ID, "tpl-web-default")))
        assert used.find_element(By.TAG_NAME, "h2").text == "web-default"
        assert "版本 1" in used.text and "2 个任务使用" in used.text
        links = used.find_elements(By.CSS_SELECTOR, "ul.template-jobs a")
        assert [a.text for a in links] == USERS
        spare = d.find_element(By.ID, "tpl-spare")
        assert "没有任务使用该模板" in spare.text and "0 个任务使用" in spare.text

        used.find_element(By.TAG_NAME, "summary").click()  # the fields, read when opened
        pre = used.find_element(By.CSS_SELECTOR, "pre.template-fields")
        wait(d).until(lambda _: pre.text.startswith("{"))
        assert json.loads(pre.text) == live.daemon.request("GET", "/api/v1/templates/web-default")["template"]
        assert json.loads(pre.text)["max_instances"] == 7
        screenshot(d, "templates", docs=True)

        links[1].click()  # a job's link opens its page
        title = wait(d).until(EC.visibility_of_element_located((By.ID, "job-title")))
        assert title.text == USERS[1]

        _open(d, live, "en")
        used = wait(d).until(EC.visibility_of_element_located((By.ID, "tpl-web-default")))
        assert d.find_element(By.CSS_SELECTOR, "main h1").text == "Templates"
        assert "Version 1" in used.text and "used by 2 job(s)" in used.text
        assert "No job uses this template" in d.find_element(By.ID, "tpl-spare").text
        assert d.find_element(By.ID, "nav-templates").text == "Templates"
    finally:
        for name in USERS:
            live.daemon.request("DELETE", f"/api/v1/jobs/{name}")
        for name in ("web-default", "spare"):
            live.daemon.request("DELETE", f"/api/v1/templates/{name}")
