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


def _clustered(n: int = 40) -> list:  # type: ignore[type-arg]
    """Both optimizers' trials crowded into the low-lr, low-wd corner: the GP is sure there
    and knows nothing in the far corner. lr matters (a peak at 2e-4), wd does not."""
    import math

    import numpy as np

    rng = np.random.default_rng(3)
    trials = []
    for i in range(n):
        opt = ("adamw", "adam")[i % 2]
        lr, wd = 10 ** rng.uniform(-4, -3.5), 10 ** rng.uniform(-4, -3.3)
        value = 0.62 - 0.6 * math.log10(lr / 2e-4) ** 2 + 0.005 * rng.standard_normal()
        trials.append(
            make_trial(i, lr=lr, wd=wd, optimizer=opt, optimizers=("adamw", "adam"),
                       curve={1: value - 0.05, 2: value})
        )  # fmt: skip
    return trials


# Where a value lands on a figure's first subplot, in the viewport's pixels.
PIXEL_OF = """
const [key, lr, wd] = arguments;
const gd = document.getElementById('fig-' + key);
const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
const box = gd.getBoundingClientRect();
return [box.left + xa._offset + xa.l2p(Math.log10(lr)),
        box.top + ya._offset + ya.l2p(Math.log10(wd))];
"""


def test_figures_show_the_fog_label_every_marker_and_keep_labels_off_whiskers(
    browser: webdriver.Chrome, tmp_path: Path
) -> None:
    """Read in Chromium, as a person sees them: (1) the landscape fades to white where the GP
    knows nothing (pixels: the far corner, which no trial is near, is near-white, while the
    data's corner keeps the colour scale's colours: Viridis has no colour with all three
    channels above 200); (2) no trace draws markers that neither a legend nor a hover names
    (plotly.js gave the importance bands' fills default markers); (3) no share label's box
    overlaps a whisker's box in the importance figure."""
    import io

    from PIL import Image

    from sweeper.snapshot import from_trials

    out = tmp_path / "clustered.html"
    write_report(from_trials(_clustered()), out)
    browser.get(out.as_uri())
    wait_for(browser, RENDERED)
    browser.execute_script("document.getElementById('fig-landscape').scrollIntoView()")
    time.sleep(0.5)
    shot = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
    ratio = browser.execute_script("return window.devicePixelRatio") or 1
    x, y = browser.execute_script(PIXEL_OF, "landscape", 9e-4, 9e-3)
    far = shot.getpixel((int(x * ratio), int(y * ratio)))
    assert min(far) > 200, f"far corner {far}: no fog where the GP knows nothing"
    x, y = browser.execute_script(PIXEL_OF, "landscape", 1.8e-4, 1.6e-4)
    near = [
        shot.getpixel((int((x + dx) * ratio), int((y + dy) * ratio)))
        for dx in range(-15, 16, 3)
        for dy in range(-15, 16, 3)
    ]
    assert any(min(p) < 150 for p in near), "the data's corner is fogged too"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot.save(SCREENSHOTS / "landscape-fog.png")

    unnamed = browser.execute_script(
        """
        const bad = [];
        for (const key of PANELS) {
          const gd = document.getElementById('fig-' + key);
          for (const t of gd._fullData) {
            const marks = t.type === 'scatter' && (t.mode || '').includes('markers');
            const named = t.showlegend || (t.hoverinfo !== 'skip' && t.hoverinfo !== 'none');
            if (t.visible === true && marks && !named) bad.push(key + ': ' + t.name);
          }
        }
        return bad;
        """.replace("PANELS", json.dumps(list(PANELS)))
    )
    assert unnamed == []

    overlaps = browser.execute_script(
        """
        const gd = document.getElementById('fig-importance');
        const boxes = sel => [...gd.querySelectorAll(sel)].map(e => e.getBoundingClientRect())
          .filter(r => r.width > 0 && r.height > 0);
        const texts = boxes('g.textpoint text'), whiskers = boxes('g.errorbar path');
        const hit = (a, b) =>
          a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
        return [texts.length, whiskers.length,
                texts.filter(t => whiskers.some(w => hit(t, w))).length];
        """
    )
    n_texts, n_whiskers, n_hits = overlaps
    assert n_texts >= 6 and n_whiskers >= 6, overlaps  # 3 shares x 2 optimizers
    assert n_hits == 0, overlaps
