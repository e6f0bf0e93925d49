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


def preview_first_difference(d: Any, above: str) -> list[str]:
    """Type `above` into the scale-out threshold, preview, and return the first difference row's cells."""
    field = d.find_element(By.ID, "f-out_above")
    field.clear()
    field.send_keys(above)
    d.find_element(By.ID, "preview-button").click()
    table = wait(d).until(EC.visibility_of_element_located((By.ID, "preview-differences")))
    return [td.text for td in table.find_elements(By.CSS_SELECTOR, "tbody tr:first-child td")]


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

    # three ordinary buckets (cpu.used 65-75: neither side's threshold), then two hot ones (cpu.used 95 >
    # 85, twice: the saved rule) scale out; then a manual scale from the page; both decisions show up in
    # the timeline (the page polls), newest first, with their reasons
    t = int(time.time()) + 1
    for k, idle in enumerate([35, 30, 25, 5, 5]):  # each bucket once its second has begun: the daemon
        push(live.daemon, [sample(WEB, f"h{i}", until_second(t + k), value=idle) for i in range(2)])
    wait_for(lambda: live.fake.scales("/ocean/web") == [3], 10, "the scale-out to 3")
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "st-instances"), "3"))

    # the history chart: the rule's recorded values (three ordinary buckets, two hot) against the instances.
    # Read in one script call: the page redraws the chart when it polls, and an element found in one
    # WebDriver call can be gone by the next (StaleElementReferenceException failed CI once here).
    def cpu_chart(_: Any) -> dict[str, Any] | None:
        got: dict[str, Any] | None = d.execute_script(
            """
            for (const c of document.querySelectorAll('svg.chart[data-rule="cpu"]')) {
              const points = (s) => { const e = c.querySelector(s); return e ? e.getAttribute('points') : null; };
              const value = points('polyline.value');
              if (!value || value.trim().split(/\\s+/).length < 5) continue;
              const title = c.querySelector('title');
              return {title: title ? title.textContent : null, value: value, ready: points('polyline.ready'),
                      desired: points('polyline.desired'),
                      axis: [...c.querySelectorAll('text.value-axis')].map(t => t.textContent)};
            }
            return null;
            """
        )
        return got

    chart: dict[str, Any] = wait(d, 15).until(cpu_chart)
    assert chart["title"] == "规则 cpu 的值与实例数"
    ys = [float(p.split(",")[1]) for p in chart["value"].split()]
    top, bottom = 10, 156  # the plot's y for 100 and 0 (static/chart.js: 180 high, 10 above, 24 below)
    assert [round(100 * (bottom - y) / (bottom - top)) for y in ys] == [65, 70, 75, 95, 95]
    assert chart["axis"] == ["0", "50", "100"]
    assert chart["ready"] and chart["desired"]
    assert not d.find_elements(By.CSS_SELECTOR, "svg.chart polyline.preview")

    # 操作: a manual scale from the page, then pause and back to active; each shows in the page and the API
    d.find_element(By.ID, "scale-n").send_keys("4")
    d.find_element(By.ID, "scale-reason").send_keys("load test")
    d.find_element(By.ID, "scale-submit").click()
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "operate-result"), "3 → 4：applied"))
    wait_for(lambda: live.fake.scales("/ocean/web") == [3, 4], 10, "the manual scale to 4")
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
    assert d.find_element(By.ID, "mode-active").get_attribute("aria-pressed") == "true"
    d.find_element(By.ID, "mode-paused").click()
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "operate-result"), "模式已设为 paused（版本 4）"))
    assert d.find_element(By.ID, "mode-paused").get_attribute("aria-pressed") == "true"
    assert live.daemon.request("GET", f"/api/v1/jobs/{WEB}/status")["effective_mode"] == "paused"
    d.find_element(By.ID, "mode-active").click()
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "operate-result"), "模式已设为 active（版本 5）"))
    stored = live.daemon.request("GET", f"/api/v1/jobs/{WEB}")
    assert (stored["version"], stored["job"]["mode"]) == (5, "active")
    assert stored["job"]["rules"][0]["scale_out"]["above"] == 85  # a mode change keeps the saved rule
    wait(d).until(lambda _: d.find_element(By.CSS_SELECTOR, 'svg.chart[data-rule="cpu"]'))
    screenshot(d, "job", docs=True)

    # preview before save: a stricter threshold replayed on the recorded load; nothing is saved
    first = preview_first_difference(d, above="99")
    assert first[1:] == ["扩容", "3", "不变", "2"], first  # it happened; the new document would not have
    assert text_of(d, '#preview-summary dd[data-key="scale_outs"]') == "0"
    assert text_of(d, "#preview-diff-count").startswith("新文档在 ")
    assert d.find_element(By.CSS_SELECTOR, 'svg.chart[data-rule="cpu"] polyline.preview').get_attribute(
        "points"
    )
    assert live.daemon.request("GET", f"/api/v1/jobs/{WEB}")["version"] == 5
    screenshot(d, "preview", docs=True)
    # a manual scale the API refuses: its message under the form
    d.find_element(By.ID, "scale-n").send_keys("many")
    d.find_element(By.ID, "scale-submit").click()
    wait(d).until(
        EC.text_to_be_present_in_element((By.ID, "operate-result"), "instances: must be an integer")
    )
    assert "error" in d.find_element(By.ID, "operate-result").get_attribute("class")
    # its settings: a capacity the API refuses names itself; a startup of 0s gives the same difference
    d.find_element(By.CSS_SELECTOR, "details.preview-options summary").click()
    d.find_element(By.ID, "p-capacity").send_keys("lots")
    d.find_element(By.ID, "preview-button").click()
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "preview-error"), "capacity: must be a number"))
    d.find_element(By.ID, "p-capacity").clear()
    d.find_element(By.ID, "p-startup").send_keys("0s")
    assert preview_first_difference(d, above="99")[1:] == ["扩容", "3", "不变", "2"]
    d.find_element(By.ID, "p-startup").clear()
    # a bad value: the preview refuses it and the message sits next to the field, as on save
    consecutive = d.find_element(By.ID, "f-out_consecutive")
    consecutive.clear()
    consecutive.send_keys("0")
    d.find_element(By.ID, "preview-button").click()
    err = wait(d).until(EC.visibility_of_element_located((By.ID, "f-out_consecutive-err")))
    assert err.text == "Input should be greater than or equal to 1"
    assert not d.find_elements(By.ID, "preview-differences")

    # the language switch
    d.find_element(By.ID, "lang").click()
    wait(d).until(
        EC.text_to_be_present_in_element((By.CSS_SELECTOR, "fieldset.autoscale legend"), "Autoscaling")
    )
    assert text_of(d, "fieldset.schedule legend") == "Scheduled scaling"
    assert d.execute_script("return document.documentElement.lang") == "en"
    wait(d).until(lambda _: d.find_element(By.CSS_SELECTOR, 'svg.chart[data-rule="cpu"]'))
    wait(d).until(lambda _: len(d.find_elements(By.CSS_SELECTOR, "ol.timeline li.decision")) == 2)
    screenshot(d, "job-en", docs=True)
    assert preview_first_difference(d, above="99")[1:] == ["out", "3", "none", "2"]
    screenshot(d, "preview-en", docs=True)
    # saved after the preview: the previewed document is the job now; the preview is gone
    d.find_element(By.ID, "save").click()
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "save-result"), "Saved (version 6)"))
    assert live.daemon.request("GET", f"/api/v1/jobs/{WEB}")["job"]["rules"][0]["scale_out"]["above"] == 99
    assert not d.find_elements(By.ID, "preview-differences")
    assert not d.find_elements(By.CSS_SELECTOR, "svg.chart polyline.preview")

    # back on the list: read again, the saved version shows
    d.find_element(By.ID, "back").click()
    row = wait(d).until(EC.visibility_of_element_located((By.XPATH, f'//tr[td/a[text()="{WEB}"]]')))
    assert row.find_elements(By.TAG_NAME, "td")[-1].text == "6"
    d.get(live.daemon.url + "/ui/#/?cop=xiaomi&owt=inf&pdl=ocean")
    wait(d).until(lambda _: len(d.find_elements(By.CSS_SELECTOR, "a.job-link")) == 2)
    screenshot(d, "tree-en", docs=True)


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


def _rows(spec: list[tuple[dict[str, float], int, int]], t0: float = 1000.0) -> list[dict[str, Any]]:
    return [
        {"t": t0 + k, "values": v, "ready": ready, "desired": desired}
        for k, (v, ready, desired) in enumerate(spec)
    ]


CHART_CASES = [
    pytest.param(
        _rows([({"cpu": 50}, 2, 2), ({"cpu": 95}, 2, 3)]),
        None,
        {"rules": ["cpu"], "maxes": [100], "points": [2], "inst_max": 3, "preview": False},
        id="one rule: 0..100 for 95, instances 0..3",
    ),
    pytest.param(
        _rows([({"cpu": 10}, 1, 1), ({}, 1, 1), ({"cpu": 12}, 1, 1)]),
        None,
        {"rules": ["cpu"], "maxes": [15], "points": [2], "inst_max": 1, "preview": False},
        id="a period without a value draws no point",
    ),
    pytest.param(
        _rows([({"qps": 310}, 2, 2), ({"cpu": 10, "qps": 300}, 2, 2)]),
        None,
        {"rules": ["qps", "cpu"], "maxes": [400, 10], "points": [2, 1], "inst_max": 2, "preview": False},
        id="each rule its own axis, in the order first seen",
    ),
    pytest.param(
        _rows([({"cpu": 0}, 0, 0), ({"cpu": 0}, 0, 0)]),
        None,
        {"rules": ["cpu"], "maxes": [1], "points": [2], "inst_max": 1, "preview": False},
        id="all zero: axes of 1, not 0",
    ),
    pytest.param(
        _rows([({"cpu": 50}, 2, 2), ({"cpu": 95}, 2, 3)]),
        [{"t": 1000.0, "desired": 2}, {"t": 1001.0, "desired": 6}],
        {"rules": ["cpu"], "maxes": [100], "points": [2], "inst_max": 6, "preview": True},
        id="a preview adds its desired line and widens the instance axis",
    ),
]


def test_chart_model(browser: Any, live: Live) -> None:
    """static/chart.js's chartModel (pure: rows -> what the SVG draws) over a table of cases, in Chromium."""
    browser.get(live.daemon.url + "/ui/")
    cases = [{"rows": c.values[0], "preview": c.values[1]} for c in CHART_CASES]
    got = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        import('/ui/chart.js').then(m => done(arguments[0].map(c => {
          const model = m.chartModel(c.rows, c.preview);
          return {rules: model.rules.map(r => r.rule), maxes: model.rules.map(r => r.max),
                  points: model.rules.map(r => r.points.length), inst_max: model.instMax,
                  preview: model.preview !== null};
        })));
        """,
        cases,
    )
    assert {c.id: g for c, g in zip(CHART_CASES, got, strict=True)} == {
        c.id: c.values[2] for c in CHART_CASES
    }


def test_chart_draws_a_week_of_periods_as_two_points_per_pixel_column(browser: Any, live: Live) -> None:
    browser.get(live.daemon.url + "/ui/")
    got = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        import('/ui/chart.js').then(m => {
          const rows = [];
          for (let i = 0; i < 60480; i++) rows.push({t: 1e9 + 10 * i, values: {cpu: i % 100}, ready: 2, desired: 2});
          const model = m.chartModel(rows);
          const svg = m.ruleChart(model, model.rules[0], {title: (r) => r});
          const xs = model.rules[0].points.map(p => p[0]);
          done({rows: model.rows, points: xs.length, width: model.plot.right - model.plot.left,
                inside: xs.every(x => x >= model.plot.left && x <= model.plot.right),
                lines: svg.querySelectorAll('polyline').length, max: model.rules[0].max,
                lo: Math.round(100 - (Math.max(...model.rules[0].points.map(p => p[1])) - model.plot.top) / (model.plot.bottom - model.plot.top) * 100),
                hi: Math.round(100 - (Math.min(...model.rules[0].points.map(p => p[1])) - model.plot.top) / (model.plot.bottom - model.plot.top) * 100)});
        });
        """
    )
    assert got["rows"] == 60480 and got["points"] <= 2 * got["width"] and got["inside"]
    assert got["lines"] == 3  # value, ready, desired
    assert got["max"] == 100 and got["lo"] == 0 and got["hi"] == 99  # no peak or trough averaged away


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(0.93, 1, id="under one"),
        pytest.param(87, 100, id="87 -> 100"),
        pytest.param(130, 150, id="130 -> 150"),
        pytest.param(7, 8, id="7 -> 8"),
        pytest.param(0, 1, id="zero -> 1"),
        pytest.param(-5, 1, id="negative -> 1"),
    ],
)
def test_nice_axis_maximum(browser: Any, live: Live, value: float, expected: float) -> None:
    browser.get(live.daemon.url + "/ui/")
    got = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "import('/ui/chart.js').then(m => done(m.niceMax(arguments[0])));",
        value,
    )
    assert got == expected
