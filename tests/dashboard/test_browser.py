"""A real headless Chromium renders the report from disk and the live page from the server.

Each test finds every figure drawn (Plotly's SVG/canvas plot elements in the DOM), no error
in the browser's console, nothing fetched from another host, and keeps a full-page
screenshot in artifacts/screenshots/ for a person to look at.

Needs Debian's ``chromium`` and ``chromium-driver`` (apt-get install chromium chromium-driver).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from sweeper.dashboard.report import write_report
from sweeper.snapshot import snapshot
from sweeper.storage import open_storage

from .factory import GRID, SWEEP, add_sweep, make_trial
from .live import dashboard
from .paths import SCREENSHOTS

PANELS = (
    "landscape",
    "slices",
    "decoupling",
    "comparison",
    "decay",
    "importance",
    "curves",
    "history",
    "timeline",
)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WIDTH = 1400


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    profile = tempfile.mkdtemp(prefix="sweeper-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # As root in a container: no sandbox, no GPU, no /dev/shm, no background traffic.
    # (--headless=new with a virtual-time budget hung on this machine; plain --headless works.)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},1000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver: webdriver.Chrome, script: str, timeout: float = 60.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {script}")
        time.sleep(0.25)


# Every panel's div holds a rendered Plotly graph: its SVG root, and at least one drawn trace
# (scatter points/lines, heatmap or contour images/paths, bars).
RENDERED = """
return PANELS.every(key => {
  const div = document.getElementById('fig-' + key);
  if (!div || !div._fullLayout) return false;
  const svg = div.querySelector('svg.main-svg');
  const drawn = div.querySelectorAll(
    'g.trace path, g.trace image, g.points path, g.hm image, g.contourlayer path, g.bars path');
  return svg !== null && drawn.length > 0;
});
""".replace("PANELS", json.dumps(list(PANELS)))


def check_page(driver: webdriver.Chrome, shot: str, origin: str) -> None:
    wait_for(driver, RENDERED)
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    resources = driver.execute_script(
        "return performance.getEntriesByType('resource').map(r => r.name)"
    )
    assert all(r.startswith(origin) for r in resources), resources
    height = driver.execute_script("return document.documentElement.scrollHeight")
    # The window includes the browser's own frame: pad it so the page's bottom is captured.
    driver.set_window_size(WIDTH, height + 200)
    time.sleep(0.5)  # let Plotly's responsive layout settle at the new size
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(SCREENSHOTS / shot))
    driver.set_window_size(WIDTH, 1000)


def test_report_from_disk_renders_every_figure(
    browser: webdriver.Chrome, shared_url: str, tmp_path: Path
) -> None:
    storage = open_storage(shared_url)
    for name, shot in ((SWEEP, "report-sweep.png"), (GRID, "report-adam-vs-adamw.png")):
        snap = snapshot(optuna.load_study(study_name=name, storage=storage), storage)
        out = tmp_path / f"{name}.html"
        write_report(snap, out)
        browser.get(out.as_uri())
        check_page(browser, shot, "file://")
        title = browser.execute_script("return document.querySelector('h1').textContent")
        assert title == f"sweeper report: {name}"


def test_live_dashboard_renders_and_refreshes(browser: webdriver.Chrome, storage_url: str) -> None:
    add_sweep(storage_url, n_trials=40)
    with dashboard("--study", SWEEP, "--storage", storage_url, "--refresh", "1") as live:
        browser.get(live.url)  # redirects to the study's page
        check_page(browser, "dashboard.png", live.url.rstrip("/"))
        assert "40 trials" in wait_for(
            browser, "return document.getElementById('status').textContent"
        )
        study = optuna.load_study(study_name=SWEEP, storage=storage_url)
        study.add_trial(make_trial(0, lr=4e-4, wd=1e-3, curve={1: 0.5, 6: 0.7}))
        wait_for(
            browser, "return document.getElementById('status').textContent.startsWith('41 trials')"
        )
        assert browser.execute_script("return document.getElementById('error').textContent") == ""
