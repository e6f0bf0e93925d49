"""A real daemon process on 127.0.0.1 (the fake Marathon process as its cluster `lg`) with a few jobs
across two companies, and a headless Chromium (Debian's `chromium` + `chromium-driver`, installed by
scripts/test) driven by selenium. Screenshots go to tmp/artifacts/console/; with
OCEAND_DOCS_SCREENSHOTS=1 the documented ones are also copied into docs/console/."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.common import job_doc
from tests.e2e.harness import ROOT, DaemonProcess, FakeMarathonProcess, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = ROOT / "tmp" / "artifacts" / "console"
DOCS = ROOT / "docs" / "console"

WEB = "job.web_service.web_cluster.lg_pdl.ocean_owt.inf_cop.xiaomi"
JOBS = {
    WEB: "/ocean/web",
    "job.api_service.api_cluster.lg_pdl.ocean_owt.inf_cop.xiaomi": "/ocean/api",
    "job.monitor_service.falcon_cluster.lg_pdl.falcon_owt.inf_cop.xiaomi": "/ocean/docs",
    "job.shop_service.mall_cluster.c3_pdl.mall_owt.ecom_cop.xiaomi": "/ocean/docs",
    "job.player_service.video_cluster.c3_pdl.video_owt.media_cop.acme": "/ocean/docs",
    "legacy-frontend": "/ocean/docs",
}


@dataclass
class Live:
    daemon: DaemonProcess
    fake: FakeMarathonProcess


@pytest.fixture(scope="package")
def live() -> Iterator[Live]:
    """One daemon for the browser, CSRF and editor tests (started once: about 2 s each under load). The
    CSRF test changes nothing (that is its point) and the editor's tests save nothing; the end-to-end
    test, which counts the saved versions from 1, runs first (test_browser.py sorts first)."""
    with tempfile.TemporaryDirectory(prefix="oceand-console-") as tmp:
        d = Path(tmp)
        fake = FakeMarathonProcess(d, ["/ocean/web:2", "/ocean/api:1", "/ocean/docs:1"])
        # the nginx binding's upstream file in the test's folder, its check and reload a no-op
        (d / "nginx").mkdir()
        lb = f'[lb]\nnginx = "true"\nnginx_upstream_dir = "{d / "nginx"}"\n'
        history = '[history]\nflush_interval = "0.2s"\n'  # the chart sees a period at once
        daemon = DaemonProcess(
            f'[marathon.lg]\nurls = ["{fake.url}"]\ntimeout = "2s"\n{lb}{history}', workdir=d
        )
        try:
            for name, app in JOBS.items():
                doc: dict[str, Any] = job_doc(name, app, mode="active", max_instances=6)
                if name == WEB:
                    doc["period"] = "1s"  # the test's hot buckets, pushed ahead, close at once
                    doc["notify"] = {"group": "sre_ocean"}
                    doc["rules"].append(
                        {
                            "name": "morning",
                            "type": "schedule",
                            "start": "2026-01-01T07:00",
                            "every": "1d",
                            "timezone": "Asia/Shanghai",
                            "instances": 4,
                        }
                    )
                    doc["lb"] = [
                        {"type": "nginx", "upstream": "web_backend", "port_index": 0, "drain": "10s"}
                    ]
                daemon.request("POST", "/api/v1/jobs", doc)
            wait_for(lambda: daemon.request("GET", f"/api/v1/jobs/{WEB}/status")["app_known"], 10, "the app")
            yield Live(daemon, fake)
        finally:
            daemon.close()
            fake.stop()


def _driver() -> Any:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip(
            f"Chromium is not installed ({CHROMIUM}, {CHROMEDRIVER}): scripts/test installs the Debian packages "
            "chromium and chromium-driver where it runs as root"
        )
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--lang=zh-CN",
        "--disable-gpu",
        "--no-first-run",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    try:
        return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    except WebDriverException as e:
        pytest.skip(f"Chromium cannot run here: {e.msg}")


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One Chromium for every console test (each test loads its own page; the daemons it visits listen
    on ports of their own, so their storage does not mix)."""
    driver = _driver()
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, name: str, docs: bool = False) -> Path:
    """The whole page (the window is made as tall as the page for the shot)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    size = driver.get_window_size()
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(size["width"], max(size["height"], height + 140))  # + the browser's own frame
    try:
        driver.save_screenshot(str(path))
    finally:
        driver.set_window_size(size["width"], size["height"])
    if docs and os.environ.get("OCEAND_DOCS_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / f"{name}.png")
    return path
