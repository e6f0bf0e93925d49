"""The web console in a real headless Chromium against a real daemon process (issue 15, PRODUCT §12):
log in, walk the tree, open a job, edit the 自动伸缩 form with a bad value (the API's 422 message shown
next to the field), fix it, save, see the decision timeline after a manual scale; the 定时伸缩 table;
the language switch; keyboard use; the tree-name rule shared with oceanctl; 10,000 jobs stay paged."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests.console.conftest import WEB, Live, screenshot
from tests.e2e.harness import push, sample, until_second, wait_for

pytestmark = pytest.mark.slow

CASES = json.loads((Path(__file__).parent / "tree_names.json").read_text())["cases"]


def wait(driver: Any, timeout: float = 10) -> WebDriverWait:
    return WebDriverWait(driver, timeout)


def text_of(driver: Any, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def node(driver: Any, path: str) -> Any:
    return wait(driver).until(EC.element_to_be_clickable((By.CSS_SELECTOR, f'button[data-node="{path}"]')))


def api_requests(driver: Any) -> list[dict[str, Any]]:
    """The admin API requests the page sent (from Chromium's performance log)."""
    out = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent" and "/api/v1/" in msg["params"]["request"]["url"]:
            out.append(msg["params"]["request"])
    return out


def test_the_console_end_to_end(browser: Any, live: Live) -> None:
    d = browser
    d.get(live.daemon.url + "/ui/")
    d.execute_script("localStorage.setItem('oceand.lang', 'zh'); sessionStorage.clear()")
    d.get(live.daemon.url + "/ui/#/login")
    d.refresh()  # a new hash alone loads nothing: read the language again

    # token login: kept in the tab's sessionStorage, sent as a bearer header, never in a URL
    token = wait(d).until(EC.element_to_be_clickable((By.ID, "token")))
    assert d.find_element(By.CSS_SELECTOR, "label[for=token]").text == "令牌"
    token.send_keys("s3cret-console-token")
    d.get_log("performance")  # drop what came before
    token.send_keys(Keys.ENTER)
    node(d, "xiaomi")
    assert d.execute_script("return sessionStorage.getItem('oceand.token')") == "s3cret-console-token"
    sent = api_requests(d)
    assert sent and all(r["headers"].get("Authorization") == "Bearer s3cret-console-token" for r in sent)
    assert all("s3cret" not in r["url"] for r in sent) and "s3cret" not in d.current_url
    assert d.execute_script("return document.cookie") == ""

    # the tree: company -> owt -> product line, with counts
    assert "任务管理" in text_of(d, "#jobs-title")
    assert text_of(d, 'button[data-node=""]').endswith("(6)")
    assert [b.text.split()[-1] for b in d.find_elements(By.CSS_SELECTOR, ".tree > li > button")] == [
        "(1)",  # (none): legacy-frontend
        "(1)",  # acme
        "(4)",  # xiaomi
    ]
    # with the keyboard: Enter opens a node and the focus stays on it, Tab goes on to its children
    node(d, "xiaomi").send_keys(Keys.ENTER)
    node(d, "xiaomi/inf")
    assert d.switch_to.active_element.get_attribute("data-node") == "xiaomi"
    assert d.switch_to.active_element.get_attribute("aria-expanded") == "true"
    d.switch_to.active_element.send_keys(Keys.TAB)
    assert d.switch_to.active_element.get_attribute("data-node") == "xiaomi/ecom"
    d.switch_to.active_element.send_keys(Keys.TAB)
    d.switch_to.active_element.send_keys(Keys.ENTER)
    node(d, "xiaomi/inf/ocean").click()
    wait(d).until(lambda _: len(d.find_elements(By.CSS_SELECTOR, "a.job-link")) == 2)
    assert (
        d.find_element(By.CSS_SELECTOR, 'button[data-node="xiaomi/inf/ocean"]').get_attribute("aria-current")
        == "true"
    )
    assert "cop=xiaomi" in d.current_url and "pdl=ocean" in d.current_url
    screenshot(d, "tree", docs=True)

    # search narrows the list (debounced), paging says where we are
    search = d.find_element(By.ID, "search")
    search.send_keys("web")
    wait(d).until(lambda _: [a.text for a in d.find_elements(By.CSS_SELECTOR, "a.job-link")] == [WEB])
    assert text_of(d, "#page-info") == "第 1 / 1 页，共 1 个任务"

    # keyboard: Tab from the search box reaches the job link; Enter opens the job
    link = d.find_element(By.CSS_SELECTOR, "a.job-link")
    d.switch_to.active_element.send_keys(Keys.TAB)
    assert d.switch_to.active_element == link
    link.send_keys(Keys.ENTER)
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "job-title"), WEB))
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "st-instances"), "2"))
    assert d.find_element(By.ID, "f-out_consecutive").get_attribute("value") == "3"
    assert d.find_element(By.ID, "f-notify_group").get_attribute("value") == "sre_ocean"
    assert d.find_element(By.CSS_SELECTOR, "label[for=f-out_consecutive]").text == "连续次数"
    assert "web_backend" in text_of(d, "#lb")

    # 自动伸缩: a bad value -> the API's message next to the field, nothing saved
    consecutive = d.find_element(By.ID, "f-out_consecutive")
    consecutive.clear()
    consecutive.send_keys("0")
    d.find_element(By.ID, "save").click()
    err = wait(d).until(EC.visibility_of_element_located((By.ID, "f-out_consecutive-err")))
    assert err.text == "Input should be greater than or equal to 1"
    assert consecutive.get_attribute("aria-invalid") == "true"
    assert "f-out_consecutive-err" in consecutive.get_attribute("aria-describedby")
    assert d.switch_to.active_element == consecutive  # focus goes to the first bad field
    assert text_of(d, "#f-out_above-err") == ""
    assert text_of(d, "#form-errors") == "1 处错误，见各字段旁的说明"
    assert live.daemon.request("GET", f"/api/v1/jobs/{WEB}")["version"] == 1
    screenshot(d, "job-error", docs=True)

    # fixed: saved as a new version of the document, the rule's other fields kept
    consecutive.clear()
    consecutive.send_keys("2")
    above = d.find_element(By.ID, "f-out_above")
    above.clear()
    above.send_keys("85")
    d.find_element(By.ID, "save").click()
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "save-result"), "已保存（版本 2）"))
    stored = live.daemon.request("GET", f"/api/v1/jobs/{WEB}")
    rule = stored["job"]["rules"][0]
    assert rule["scale_out"] == {"above": 85.0, "consecutive": 2, "step": 1, "bands": []}
    assert rule["scale_in"]["below"] == 60 and stored["job"]["notify"]["group"] == "sre_ocean"
    assert text_of(d, "#f-out_consecutive-err") == ""

    # 定时伸缩: a new row with a bad interval -> the error in that row's cell; fixed -> saved
    d.find_element(By.ID, "add-row").click()
    for f, v in (("name", "evening"), ("start", "2026-01-01T19:00"), ("every", "0s"), ("instances", "1")):
        d.find_element(By.ID, f"s-1-{f}").send_keys(v)
    d.find_element(By.ID, "save").click()
    err = wait(d).until(EC.visibility_of_element_located((By.ID, "s-1-every-err")))
    assert "1s" in err.text, err.text
    every = d.find_element(By.ID, "s-1-every")
    every.clear()
    every.send_keys("12h")
    d.find_element(By.ID, "save").click()
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "save-result"), "版本 3"))
    schedules = [
        r
        for r in live.daemon.request("GET", f"/api/v1/jobs/{WEB}")["job"]["rules"]
        if r["type"] == "schedule"
    ]
    assert [(r["name"], r["every"], r["instances"]) for r in schedules] == [
        ("morning", 86400.0, 4),
        ("evening", 43200.0, 1),
    ]

    # two hot buckets (cpu.used 95 > 85, twice: the saved rule) scale out; then a manual scale through the
    # API; both show up in the decision timeline (the page polls), newest first, with their reasons
    t = int(time.time()) + 1
    for k in range(2):  # each bucket once its second has begun: the daemon takes nothing stamped ahead
        push(
            live.daemon, [sample(WEB, f"h{i}", until_second(t + k), value=5) for i in range(2)]
        )  # cpu.idle 5
    wait_for(lambda: live.fake.scales("/ocean/web") == [3], 10, "the scale-out to 3")
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "st-instances"), "3"))
    live.daemon.request("POST", f"/api/v1/jobs/{WEB}/scale", {"instances": 4, "reason": "load test"})
    wait(d).until(lambda _: len(d.find_elements(By.CSS_SELECTOR, "ol.timeline li.decision")) == 2)
    manual, scale_out = d.find_elements(By.CSS_SELECTOR, "ol.timeline li.decision")
    reasons = [
        [c.text for c in li.find_elements(By.CSS_SELECTOR, "code.reason")] for li in (manual, scale_out)
    ]
    assert reasons[0] == ["Manual"] and "3 → 4" in manual.text
    assert reasons[1][0] == "ScaleOut" and "2 → 3" in scale_out.text and "applied" in scale_out.text
    assert "cpu: ScaleOut → 3 (当前值 95)" in scale_out.text, (
        scale_out.text
    )  # the rule's proposal and its value
    assert "qps: NoData" in scale_out.text and "null" not in scale_out.text
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "st-instances"), "4"))
    screenshot(d, "job", docs=True)

    # the language switch
    d.find_element(By.ID, "lang").click()
    wait(d).until(
        EC.text_to_be_present_in_element((By.CSS_SELECTOR, "fieldset.autoscale legend"), "Autoscaling")
    )
    assert text_of(d, "fieldset.schedule legend") == "Scheduled scaling"
    assert d.execute_script("return document.documentElement.lang") == "en"
    screenshot(d, "job-en")

    # back on the list: read again, the saved version shows
    d.find_element(By.ID, "back").click()
    row = wait(d).until(EC.visibility_of_element_located((By.XPATH, f'//tr[td/a[text()="{WEB}"]]')))
    assert row.find_elements(By.TAG_NAME, "td")[-1].text == "3"


def test_tree_rule_is_oceanctls(browser: Any, live: Live) -> None:
    """static/tree.js against the same table as oceanctl's tree_parts (tests/console/test_tree_names.py)."""
    browser.get(live.daemon.url + "/ui/")
    got = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "import('/ui/tree.js').then(m => done(arguments[0].map(c => m.treeParts(c.name))));",
        CASES,
    )
    assert {c["id"]: g for c, g in zip(CASES, got, strict=True)} == {c["id"]: c["parts"] for c in CASES}


def test_ten_thousand_jobs_stay_paged(browser: Any, live: Live) -> None:
    """renderJobs over 10,000 jobs: one page of rows in the DOM, a tree node per company/owt/product line
    (not per job), and the search narrows to the one job asked for."""
    browser.get(live.daemon.url + "/ui/")
    got = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        import('/ui/jobs.js').then(m => {
          const jobs = [];
          for (let i = 0; i < 10000; i++) {
            jobs.push({job: `job.j${i}_service.s${i % 50}_pdl.p${i % 40}_owt.o${i % 8}_cop.c${i % 2}`,
                       mode: 'active', effective_mode: 'active', version: 1});
          }
          const box = document.createElement('div');
          document.body.append(box);
          const t0 = performance.now();
          const all = m.renderJobs(box, jobs, {page: 3}, () => {});
          const ms = performance.now() - t0;
          const allRows = box.querySelectorAll('a.job-link').length;
          const allNodes = box.querySelectorAll('button.node').length;
          const one = m.renderJobs(box, jobs, {cop: 'c1', owt: 'o3', q: 'j9995_'}, () => {});
          done({all, allRows, allNodes, one, links: [...box.querySelectorAll('a.job-link')].map(a => a.textContent), ms});
        });
        """
    )
    assert got["all"] == {"matching": 10000, "pages": 200, "page": 3, "rows": 50}
    assert got["allRows"] == 50 and got["allNodes"] == 1 + 2  # "all jobs" + two companies (closed)
    assert got["one"]["matching"] == 1 and got["links"] == ["job.j9995_service.s45_pdl.p35_owt.o3_cop.c1"]
    print(f"renderJobs over 10,000 jobs: {got['ms']:.0f} ms")
