"""The console with 10,000 jobs in a real daemon (issue 15: "usable with 10,000 jobs: search, paging").

The jobs are written into the daemon's SQLite store before it starts (one transaction: 10,000 PUTs
would take minutes of the suite), the daemon loads them as it loads any store, and Chromium works the
list through the real `GET /api/v1/jobs`: the tree has a node per company / owt / product line (not per
job), one page of 50 rows is in the page, the pager and the search work, a job found by search opens.
The time to the first rendered list is printed (no timing assert)."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from bench.common import job_doc
from oceand.store import open_store
from policies.document import dump_job, parse_job
from tests.e2e.harness import DaemonProcess

pytestmark = pytest.mark.slow

N = 10_000


def name(i: int) -> str:
    return f"job.j{i}_service.s{i % 50}_cluster.lg_pdl.p{i % 40}_owt.o{i % 8}_cop.c{i % 2}"


def fill_store(db: Path, n: int) -> None:
    """n jobs in the store's `jobs` table, each a valid document as the daemon stores it (dump_job)."""

    async def migrate() -> None:  # the store's own schema, as the daemon would create it
        store = open_store(f"sqlite:///{db}")
        await store.open()
        await store.close()

    asyncio.run(migrate())
    base = dump_job(parse_job(job_doc(name(0), "/ocean/docs", mode="active")))
    rows = [(name(i), orjson.dumps({**base, "job": name(i)}).decode(), 1, time.time()) for i in range(n)]
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO jobs (name, doc, version, updated_at) VALUES (?, ?, ?, ?)", rows)


@pytest.fixture(scope="module")
def many() -> Iterator[DaemonProcess]:
    with tempfile.TemporaryDirectory(prefix="oceand-console-10k-") as tmp:
        daemon = DaemonProcess(workdir=Path(tmp), start=False)
        fill_store(Path(tmp) / "oceand.db", N)
        daemon.start(timeout=120)
        try:
            yield daemon
        finally:
            daemon.close()


def wait(driver: Any, timeout: float = 30) -> WebDriverWait:
    return WebDriverWait(driver, timeout)


def test_ten_thousand_jobs_in_a_real_daemon(browser: Any, many: DaemonProcess) -> None:
    assert len(many.request("GET", "/api/v1/jobs")["jobs"]) == N
    d = browser
    d.get(many.url + "/ui/")
    d.execute_script("localStorage.setItem('oceand.lang', 'en'); sessionStorage.clear()")
    t0 = time.monotonic()
    d.get(many.url + "/ui/?many#/")
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "page-info"), f"Page 1 of 200, {N} jobs"))
    first_render = time.monotonic() - t0
    assert len(d.find_elements(By.CSS_SELECTOR, "a.job-link")) == 50
    assert d.find_element(By.CSS_SELECTOR, 'button[data-node=""]').text.endswith(f"({N})")
    assert len(d.find_elements(By.CSS_SELECTOR, "button.node")) == 1 + 2  # all jobs + two companies, closed

    # the pager
    d.find_element(By.ID, "next").click()
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "page-info"), "Page 2 of 200"))
    assert len(d.find_elements(By.CSS_SELECTOR, "a.job-link")) == 50
    assert "page=2" in d.current_url

    # the tree: a company, an owt, a product line; counts per node
    d.find_element(By.CSS_SELECTOR, 'button[data-node="c1"]').click()
    wait(d).until(EC.element_to_be_clickable((By.CSS_SELECTOR, 'button[data-node="c1/o3"]'))).click()
    node = wait(d).until(EC.element_to_be_clickable((By.CSS_SELECTOR, 'button[data-node="c1/o3/p35"]')))
    assert node.text.endswith("(250)")  # i % 8 == 3 and i % 40 == 35: every 40th job
    node.click()
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "page-info"), "Page 1 of 5, 250 jobs"))

    # the search narrows to one job, which opens
    d.find_element(By.ID, "search").send_keys("j9995_")
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "page-info"), "Page 1 of 1, 1 jobs"))
    d.find_element(By.CSS_SELECTOR, "a.job-link").click()
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "job-title"), name(9995)))
    print(
        f"10,000 jobs: the first page of the list rendered {first_render * 1000:.0f} ms after the load began"
    )
