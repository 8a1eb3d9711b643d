"""Screenshots of the Dagster UI for the docs, from the demo's instance (run `make demo` first).

    .venv/bin/pip install selenium==4.38.0   # with Debian's chromium and chromium-driver
    .venv/bin/python docs/screenshots.py [--home .cams/demo]

Starts dagster-webserver on loopback over the demo's Dagster home and warehouse, opens the global
asset lineage in headless Chromium with every group expanded, and writes docs/img/lineage.png; then
one day of cost_reconciliation after the demo's range run (docs/img/partition-range.png and
partition-day.png); then the dashboard pages.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# the Dagster code location (pipelines/) is not installed: it is imported from the project folder
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from pipelines.webserver import webserver

OUT = Path(__file__).resolve().parent / "img"
ZOOM_OUT_CLICKS = 6


def browser(width: int, height: int) -> webdriver.Chrome:
    o = Options()
    o.binary_location = "/usr/bin/chromium"
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--hide-scrollbars",
    ):
        o.add_argument(a)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)


def lineage(url: str, out: Path) -> None:
    d = browser(2400, 2000)
    wait = WebDriverWait(d, 60)
    try:
        d.get(url + "/asset-groups")
        d.execute_script("window.localStorage.setItem('communityNux', '1')")  # no sign-up dialog
        d.get(url + "/asset-groups")
        wait.until(ec.presence_of_element_located((By.XPATH, "//*[normalize-space()='ingestion']")))
        time.sleep(2)
        # facets: show each asset's owner on its node
        d.find_element(By.XPATH, "//button[.//*[@aria-label='config']]").click()
        owner = "//label[normalize-space()='Owner']"
        wait.until(ec.element_to_be_clickable((By.XPATH, owner))).click()
        d.find_element(By.XPATH, "//button[normalize-space()='Save']").click()
        # the graph's own settings (the last gear; the first is the user settings in the nav)
        d.find_element(By.XPATH, "(//button[.//*[@aria-label='settings']])[last()]").click()
        item = "//*[normalize-space(text())='Expand all groups']"
        wait.until(ec.visibility_of_element_located((By.XPATH, item))).click()
        wait.until(ec.presence_of_element_located((By.XPATH, "//*[normalize-space()='cost_reconciliation']")))
        time.sleep(2)  # let the layout settle, then zoom out until the whole graph fits
        for _ in range(ZOOM_OUT_CLICKS):
            zoom = d.find_element(By.XPATH, "//button[.//*[@aria-label='zoom_out']]")
            d.execute_script("arguments[0].click()", zoom)  # a toast may sit over the button
            time.sleep(0.4)
        time.sleep(1)
        d.save_screenshot(str(out))
    finally:
        d.quit()


def partition_views(url: str, day: str, asset: str = "cost_reconciliation") -> None:
    """One day of the demo's range run: the partition page (the range's materialization, labelled
    range_) and that day's observation opened from its history (the day's own figures)."""
    d = browser(1600, 1257)
    try:
        d.get(url + "/asset-groups")
        d.execute_script("window.localStorage.setItem('communityNux', '1')")  # no sign-up dialog
        d.get(f"{url}/assets/{asset}?view=partitions&partition={day}")
        time.sleep(8)
        d.save_screenshot(str(OUT / "partition-range.png"))
        d.set_window_size(1600, 957)
        d.find_element(By.XPATH, "//button[contains(normalize-space(), 'View all historical events')]").click()
        time.sleep(3)
        d.find_element(By.XPATH, "(//tr[.//*[normalize-space(text())='Observation']])[1]/td[1]").click()
        time.sleep(2)
        d.save_screenshot(str(OUT / "partition-day.png"))
    finally:
        d.quit()


def dashboard(home: Path) -> None:
    """The budget dashboard (its savings and recommendations too), the explainer's picture and the simulator
    with a what-if, served over the demo's warehouse."""
    import threading

    import httpx
    import uvicorn

    from cams.api.app import create_app
    from cams.api.keys import create_key
    from cams.warehouse.db import make_engine

    engine = make_engine(f"sqlite:///{home / 'warehouse.db'}")
    key = create_key(engine, ["read"], name="screenshots")
    server = uvicorn.Server(
        uvicorn.Config(create_app(engine, flush_s=0.2), host="127.0.0.1", port=0, log_level="warning")
    )
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    sel = httpx.post(
        f"{base}/api/v1/models/select",
        json={"org_id": "acme", "task_type": "code", "quality_tier": "standard", "max_latency_ms": 20000},
        headers={"Authorization": f"Bearer {key}"},
    ).json()
    time.sleep(0.5)
    d = browser(1500, 1700)
    try:
        for name, path in (
            ("dashboard", "/dashboard"),
            ("dashboard-explain", f"/dashboard/explain/{sel['selection_id']}"),
            ("dashboard-simulator", "/dashboard/simulator?org_id=initech&task_type=code&quality_tier=premium"),
            (
                "dashboard-whatif",
                "/dashboard/simulator?org_id=acme&task_type=chat&quality_tier=standard&excluded_providers=gemini"
                "&quality_floor=0.7#whatif",
            ),
            ("dashboard-savings", "/dashboard#savings"),
            ("dashboard-budgets", "/dashboard/budgets"),
        ):
            if name == "dashboard":  # sign in through the form: it POSTs the key and sets a session cookie
                d.get(f"{base}/dashboard/login")
                d.find_element(By.NAME, "key").send_keys(key)
                d.find_element(By.CSS_SELECTOR, "form button").click()
            else:
                d.get(base + path)
            time.sleep(1)
            d.save_screenshot(str(OUT / f"{name}.png"))
            print(f"wrote {OUT / name}.png")
    finally:
        d.quit()
        server.should_exit = True
        th.join(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", default=".cams/demo")
    ap.add_argument("--only", choices=["lineage", "plots", "dashboard"], help="take one set of screenshots")
    ap.add_argument("--day", default="2026-11-20", help="the partition the plots screenshots open")
    a = ap.parse_args()
    home = Path(a.home).resolve()
    env = {
        "DAGSTER_HOME": str(home / "dagster_home"),
        "CAMS_CONFIG": str(home / "cams.yaml"),
        "CAMS_DATABASE_URL": f"sqlite:///{home / 'warehouse.db'}",
    }
    OUT.mkdir(exist_ok=True)
    if a.only in (None, "lineage", "plots"):
        with webserver(env) as url:
            if a.only != "plots":
                lineage(url, OUT / "lineage.png")
                print(f"wrote {OUT / 'lineage.png'}")
            if a.only != "lineage":
                partition_views(url, a.day)
                print(f"wrote {OUT / 'partition-range.png'} and {OUT / 'partition-day.png'}")
    if a.only in (None, "dashboard"):
        dashboard(home)


if __name__ == "__main__":
    main()
