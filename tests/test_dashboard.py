"""The budget dashboard: pages render with data and charts, keys see their own org, and headless
Chromium (Debian's chromium + chromium-driver) shows each page with its charts."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
import uvicorn
from fastapi.testclient import TestClient

from cams.api.app import create_app
from cams.api.keys import create_key
from cams.config import PricingConfig, SelectionConfig
from cams.pricing import store as pricebook_store
from cams.pricing.quote import load_book
from cams.selection.store import publish
from cams.selection.table import SelectionSettings, build_table
from cams.warehouse import schema as t
from tests.test_api import STATS

NOW = datetime.now(UTC)
TODAY = NOW.date()


def _seed(engine) -> None:  # type: ignore[no-untyped-def]
    book = load_book(PricingConfig())
    pricebook_store.store(engine, book)
    publish(
        engine,
        build_table(
            STATS, book, SelectionSettings.from_config(SelectionConfig(), sorted(STATS["model"])), NOW, ["chat"]
        ),
    )
    status = {
        "scope": "org",
        "period_start": NOW.replace(day=1),
        "period_end": NOW + timedelta(days=20),
        "as_of": NOW,
        "projected_exhaustion_at": None,
        "evaluated_at": NOW,
    }
    rollup = {
        "team_id": "t",
        "user_id": "u",
        "provider": "openai",
        "task_type": "chat",
        "errors": 0,
        "unpriced_requests": 0,
    }
    rollup |= {"output_tokens": 10, "cached_input_tokens": 0, "cache_creation_input_tokens": 0, "reasoning_tokens": 0}
    with engine.begin() as conn:
        conn.execute(
            sa.insert(t.budget_status),
            [
                {
                    **status,
                    "budget_id": "acme-monthly",
                    "scope_id": "acme",
                    "org_id": "acme",
                    "amount_usd": 100,
                    "spent_usd": 80,
                    "forecast_usd": 130,
                    "percent_used": 80.0,
                    "forecast_percent": 130.0,
                    "state": "warning",
                    "action": "downgrade",
                },
                {
                    **status,
                    "budget_id": "globex-cap",
                    "scope_id": "globex",
                    "org_id": "globex",
                    "amount_usd": 10,
                    "spent_usd": 12,
                    "forecast_usd": 20,
                    "percent_used": 120.0,
                    "forecast_percent": 200.0,
                    "state": "exceeded",
                    "action": "block",
                },
            ],
        )
        conn.execute(
            sa.insert(t.cost_daily_rollups),
            [
                {
                    **rollup,
                    "day": TODAY - timedelta(days=d),
                    "org_id": org,
                    "model": m,
                    "requests": 10 + d,
                    "input_tokens": 1000,
                    "cost_usd": Decimal(cost) * (d + 1),
                    "charged_usd": Decimal(cost) * (d + 1),
                }
                for d in range(7)
                for org, m, cost in (
                    ("acme", "gpt-4o-mini", "0.5"),
                    ("acme", "gpt-4.1", "2"),
                    ("globex", "claude-haiku-4-5", "9"),
                )
            ],
        )
        conn.execute(
            sa.insert(t.cost_reconciliation_summary),
            [
                {
                    "day": TODAY,
                    "org_id": "acme",
                    "model": "gpt-4.1",
                    "category": c,
                    "requests": n,
                    "charged_usd": a,
                    "cost_usd": a,
                    "at_risk_usd": a,
                    "computed_at": NOW,
                }
                for c, n, a in (("matched", 90, 0), ("cost_mismatch", 7, 1.25), ("missing_in_auterity", 3, 0.4))
            ],
        )


@pytest.fixture
def dash(engine):  # type: ignore[no-untyped-def]
    _seed(engine)
    app = create_app(engine, refresh_s=3600, flush_s=3600)
    with TestClient(app) as c:
        c.admin = create_key(engine, ["read"])  # type: ignore[attr-defined]
        c.acme = create_key(engine, ["read"], org_id="acme")  # type: ignore[attr-defined]
        app.state.service.refresh()
        yield c, app


def _h(k: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {k}"}


def test_pages_render_with_data_and_charts(dash, engine) -> None:  # type: ignore[no-untyped-def]
    c, app = dash
    alert = {
        "period_start": NOW,
        "period_end": NOW,
        "threshold_percent": 80,
        "spent_usd": 80,
        "forecast_usd": 130,
        "amount_usd": 100,
        "state": "warning",
        "action": "notify",
        "fired_at": NOW,
    }
    with engine.begin() as conn:
        conn.execute(
            sa.insert(t.budget_alerts),
            [
                {
                    **alert,
                    "event_id": "e1",
                    "budget_id": "acme-monthly",
                    "level": "warning",
                    "basis": "actual",
                    "percent_used": 80.0,
                    "payload_json": "{}",
                },
                {
                    **alert,
                    "event_id": "e2",
                    "budget_id": "globex-cap",
                    "level": "critical",
                    "basis": "external",
                    "percent_used": 120.0,
                    "payload_json": '{"source": "finops-tool"}',
                },
            ],
        )
    page = c.get("/dashboard", headers=_h(c.admin)).text
    assert "Recent alerts" in page and "<td>finops-tool</td>" in page and "<td>CAMS</td>" in page
    assert "/dashboard/alerts.csv?" in page  # the alerts table, once there are alerts, has its CSV link
    assert "acme-monthly" in page and "globex-cap" in page and "exceeded" in page
    # warning by spend so far, 130 % by forecast: both said, and which one set the colour
    assert page.count("badge forecast") == 1 and "forecast 130 %</span>" in page  # exceeded needs no forecast badge
    assert "set by spend so far" in page
    assert page.count("<svg") == 4  # budgets, trend by model, by provider, dollars at risk
    assert 'data-label="cost_mismatch" data-value="1.25"' in page
    assert page.count('class="series"') == 3 and 'class="mark"' in page  # 3 models; forecast ticks
    mine = c.get("/dashboard", headers=_h(c.acme)).text
    assert "acme-monthly" in mine and "globex-cap" not in mine and "claude-haiku-4-5" not in mine
    assert "finops-tool" not in mine  # another org's alerts stay theirs
    assert "globex-cap" not in c.get("/dashboard?org_id=globex", headers=_h(c.acme)).text  # bound to acme
    sel = c.post("/api/v1/models/select", json={"org_id": "acme", "task_type": "chat"}, headers=_h(c.acme)).json()
    app.state.service.flush()
    why = c.get(f"/dashboard/explain/{sel['selection_id']}", headers=_h(c.acme))
    assert why.status_code == 200 and why.text.count("<svg") == 3 and sel["model"] in why.text
    assert f'data-label="{sel["model"]}"' in why.text and "#dc2626" in why.text  # the chosen model stands out
    other = c.post("/api/v1/models/select", json={"org_id": "initech", "task_type": "chat"}, headers=_h(c.admin)).json()
    app.state.service.flush()
    assert c.get(f"/dashboard/explain/{other['selection_id']}", headers=_h(c.acme)).status_code == 404
    sim = c.get("/dashboard/simulator?org_id=globex&task_type=chat&quality_tier=premium", headers=_h(c.admin)).text
    assert "HTTP 402" in sim and sim.count("<tr>") >= 5  # blocked now (globex is exceeded) and under 'exceeded'
    assert "gpt-4.1" in sim and "standard" in sim  # premium's choice, and standard under a downgrade
    assert c.get("/dashboard").status_code == 401 and "<form" in c.get("/dashboard").text
    # sign-in is a POSTed form: the key never sits in a URL (nor in an access log line)
    assert c.get(f"/dashboard/login?key={c.acme}").status_code == 401
    assert c.post("/dashboard/login", data={"key": "cams_wrong"}, follow_redirects=False).status_code == 401
    login = c.post("/dashboard/login", data={"key": c.acme}, follow_redirects=False)
    cookie = login.headers["set-cookie"]
    assert login.status_code == 303 and "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    session = login.cookies["cams_session"]
    assert c.acme not in cookie and session.count(".") == 2  # the cookie is not the key
    c.cookies.clear()
    c.cookies.set("cams_session", session)
    assert c.get("/dashboard").status_code == 200
    c.cookies.clear()
    c.cookies.set("cams_session", session[:-2] + ("00" if not session.endswith("00") else "11"))
    assert c.get("/dashboard").status_code == 401  # a forged signature
    c.cookies.clear()


def _chromium() -> str | None:
    return shutil.which("chromedriver") if shutil.which("chromium") else None


def test_pickers_breakdowns_and_their_csv(dash) -> None:  # type: ignore[no-untyped-def]
    """A date range and org/team pickers; spend by team, user, task and model; each table's full CSV,
    the same figures the cost-analysis API gives, scoped like it."""
    c, _app = dash
    window = f"start={TODAY - timedelta(days=2)}&end={TODAY}"
    page = c.get(f"/dashboard?{window}", headers=_h(c.admin)).text
    assert "id='filters'" in page and f"value='{TODAY - timedelta(days=2)}'" in page and "name='team_id'" in page
    assert all(f"id='by-{by}'" in page for by in ("team", "user", "task", "model"))
    assert "/dashboard/breakdown.csv?by=model" in page
    got = c.get(f"/dashboard/breakdown.csv?by=model&{window}", headers=_h(c.admin))
    assert got.headers["content-type"].startswith("text/csv") and "attachment" in got.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(got.text)))
    api = c.get(f"/api/v1/cost-analysis/by-model?{window}", headers=_h(c.admin)).json()
    assert rows == [{k: str(v) for k, v in a.items()} for a in api] and len(rows) == 3
    # three days of the seeded seven: requests 10+11+12 per model
    assert {r["model"]: int(r["requests"]) for r in rows}["gpt-4.1"] == 33
    # an org-bound key sees its org only, whatever it asks for; a team that has no spend shows none
    acme = c.get(f"/dashboard/breakdown.csv?by=model&org_id=globex&{window}", headers=_h(c.acme)).text
    assert {r["model"] for r in csv.DictReader(io.StringIO(acme))} == {"gpt-4o-mini", "gpt-4.1"}
    nobody = c.get(f"/dashboard?{window}&team_id=nobody", headers=_h(c.admin)).text
    assert nobody.count("no spend") == 4
    assert c.get("/dashboard/breakdown.csv?by=model").status_code == 401


def test_every_table_on_the_page_downloads_as_csv(dash) -> None:  # type: ignore[no-untyped-def]
    c, _app = dash
    window = f"start={TODAY - timedelta(days=6)}&end={TODAY}"
    page = c.get(f"/dashboard?{window}", headers=_h(c.admin)).text
    links = re.findall(r"href='/dashboard/([a-z-]+)\.csv\?", page)
    # every table shown has its link (alerts and selections show, with theirs, once there are any)
    assert set(links) == {"budgets", "daily-cost", "providers", "at-risk", "savings", "breakdown"}
    for empty in ("alerts", "selections"):
        got = c.get(f"/dashboard/{empty}.csv?{window}", headers=_h(c.admin))
        assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    daily = list(csv.DictReader(io.StringIO(c.get(f"/dashboard/daily-cost.csv?{window}", headers=_h(c.admin)).text)))
    assert len(daily) == 7 * 3 and {r["model"] for r in daily} == {"gpt-4o-mini", "gpt-4.1", "claude-haiku-4-5"}
    got = c.get(f"/dashboard/budgets.csv?{window}", headers=_h(c.acme))
    assert "attachment" in got.headers["content-disposition"]
    assert {r["org_id"] for r in csv.DictReader(io.StringIO(got.text))} == {"acme"}  # a bound key: its org only
    risk = list(csv.DictReader(io.StringIO(c.get(f"/dashboard/at-risk.csv?{window}", headers=_h(c.admin)).text)))
    assert {r["category"]: float(r["at_risk_usd"]) for r in risk}["cost_mismatch"] == 1.25
    assert c.get(f"/dashboard/nope.csv?{window}", headers=_h(c.admin)).status_code == 404
    assert c.get(f"/dashboard/budgets.csv?{window}").status_code == 401


def test_budgets_are_created_and_changed_from_the_page_with_a_write_key(dash) -> None:  # type: ignore[no-untyped-def]
    c, app = dash
    writer = create_key(app.state.service.engine, ["write"], org_id="acme")
    app.state.service.refresh()
    form = {
        "id": "acme-search-weekly",
        "name": "Search, weekly",
        "scope": "team",
        "scope_id": "search",
        "period": "weekly",
        "amount_usd": "250",
        "timezone": "Europe/Paris",
        "warning_percent": "80",
        "critical_percent": "95",
        "critical_action": "downgrade",
        "channel_type": "log",
    }
    page = c.get("/dashboard/budgets", headers=_h(writer)).text
    assert "id='budget-form'" in page and "name='amount_usd'" in page and "name='org_id'" not in page  # org-bound
    # a read key may look but not save
    refused = c.post("/dashboard/budgets", data=form, headers=_h(c.acme))
    assert refused.status_code == 403 and "write scope" in refused.text
    saved = c.post("/dashboard/budgets", data=form, headers=_h(writer), follow_redirects=False)
    assert saved.status_code == 303, saved.text
    api = c.get("/api/v1/budgets/acme-search-weekly", headers=_h(writer)).json()
    assert (api["org_id"], api["scope"], api["period"], api["timezone"], api["source"]) == (
        "acme",
        "team",
        "weekly",
        "Europe/Paris",
        "api",
    )
    critical = api["thresholds"][-1]
    assert (critical["level"], float(critical["percent"]), critical["action"]) == ("critical", 95.0, "downgrade")
    # edit: the form comes back filled in; the amount changes, the id does not
    editing = c.get("/dashboard/budgets?edit=acme-search-weekly", headers=_h(writer)).text
    assert "Change acme-search-weekly" in editing and "value='250'" in editing
    changed = c.post(
        "/dashboard/budgets", data={**form, "original": "acme-search-weekly", "amount_usd": "300"}, headers=_h(writer)
    )
    assert changed.status_code == 200 and "acme-search-weekly" in changed.text  # followed to the list
    assert c.get("/api/v1/budgets/acme-search-weekly", headers=_h(writer)).json()["amount_usd"] == "300"
    # a mistake comes back as the API's one line, the form kept
    bad = c.post("/dashboard/budgets", data={**form, "id": "x", "amount_usd": "lots"}, headers=_h(writer))
    assert bad.status_code == 422 and "id='problem'" in bad.text and "value='lots'" in bad.text


def test_headless_chromium_shows_each_page_with_charts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    if _chromium() is None:
        if os.environ.get("CAMS_TEST_REQUIRE_BROWSER"):
            pytest.fail("chromium and chromium-driver are required here (CI installs them)")
        pytest.skip("chromium not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    from cams.warehouse.db import make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    migrate(engine)
    _seed(engine)
    _seed_savings(engine)
    key = create_key(engine, ["write"])
    app = create_app(engine, refresh_s=3600, flush_s=0.2)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    opts = Options()
    opts.binary_location = shutil.which("chromium") or ""
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(_chromium()), options=opts)
    try:
        driver.get(f"{base}/dashboard/login")  # the sign-in form: POST sets the session cookie
        driver.find_element(By.NAME, "key").send_keys(key)
        driver.find_element(By.CSS_SELECTOR, "form button").click()
        time.sleep(0.5)
        assert driver.title.startswith("Budgets and spend")
        charts = driver.find_elements(By.CSS_SELECTOR, "svg.chart")
        assert len(charts) == 5 and all(c.size["width"] > 300 and c.size["height"] > 50 for c in charts)
        # savings against each counterfactual, and a recommendation with its evidence link
        bars = driver.find_elements(By.CSS_SELECTOR, "#savings svg.chart rect.bar")
        assert sorted(b.get_attribute("data-label") for b in bars) == ["actual spend", "always_premium", "requested"]
        move = driver.find_element(By.CSS_SELECTOR, "#recommendations tr:nth-child(2)")
        assert "gpt-4.1" in move.text and "/dashboard/explain/v1:chat:premium" in move.get_attribute("innerHTML")
        assert len(driver.find_elements(By.CSS_SELECTOR, "svg.chart rect.bar")) >= 5
        # the pickers: a team narrows the breakdowns, and the view is a link
        driver.find_element(By.CSS_SELECTOR, "#filters input[name=team_id]").send_keys("t")
        driver.find_element(By.CSS_SELECTOR, "#filters button").click()
        time.sleep(0.5)
        assert "team_id=t" in driver.current_url
        assert len(driver.find_elements(By.CSS_SELECTOR, "#by-model tr")) == 4  # the header and three models
        assert driver.find_element(By.CSS_SELECTOR, "#by-model a").get_attribute("href").count("by=model") == 1
        # a budget made on the page, with the signed-in write key
        driver.get(f"{base}/dashboard/budgets")
        for name, value in (("id", "made-in-browser"), ("scope_id", "acme"), ("org_id", "acme"), ("amount_usd", "50")):
            driver.find_element(By.CSS_SELECTOR, f"#budget-form [name={name}]").send_keys(value)
        driver.find_element(By.CSS_SELECTOR, "#budget-form button").click()
        time.sleep(0.5)
        assert "made-in-browser" in driver.find_element(By.ID, "budget-list").text
        import httpx

        sel = httpx.post(
            f"{base}/api/v1/models/select", json={"org_id": "acme", "task_type": "chat"}, headers=_h(key)
        ).json()
        time.sleep(0.5)  # the history writer flushes every 0.2 s
        driver.get(f"{base}/dashboard/explain/{sel['selection_id']}")
        assert driver.title.startswith("Why ") and len(driver.find_elements(By.CSS_SELECTOR, "svg.chart")) == 3
        driver.get(f"{base}/dashboard/simulator?org_id=acme&task_type=chat&quality_tier=premium")
        rows = driver.find_elements(By.CSS_SELECTOR, "#outcomes tr")
        assert len(rows) == 6 and "HTTP 402" in rows[-1].text
        assert driver.find_elements(By.CSS_SELECTOR, "svg.chart rect.bar")
        # what if: a lower quality floor typed into the form, compared with today's answer
        driver.find_element(By.CSS_SELECTOR, "#whatif-form [name=quality_floor]").send_keys("0.6")
        driver.find_element(By.CSS_SELECTOR, "#whatif-form button").click()
        time.sleep(0.5)
        compared = driver.find_elements(By.CSS_SELECTOR, "#whatif tr")
        assert "quality_floor=0.6" in driver.current_url and "quality_tier=premium" in driver.current_url
        assert [r.text.split()[0] for r in compared[1:]] == ["today", "what"]
        assert driver.find_element(By.ID, "whatif-verdict").text.startswith("The change ")
    finally:
        driver.quit()
        server.should_exit = True
        th.join(timeout=10)
        engine.dispose()


def _seed_savings(engine) -> None:  # type: ignore[no-untyped-def]
    """A savings report of acme's team t against two counterfactuals, and one recommendation."""
    now = datetime(2026, 11, 30, 23, 59, tzinfo=UTC)
    common = {"org_id": "acme", "team_id": "t", "user_id": "u", "requests": 10, "actual_usd": 2, "savings_pct": 0.0}
    with engine.begin() as conn:
        conn.execute(
            sa.insert(t.savings_report),
            [
                {
                    **common,
                    "counterfactual": cf,
                    "counterfactual_usd": v,
                    "savings_usd": v - 2,
                    "counterfactual_quality": q,
                }
                | {"table_version": "v1", "computed_at": now}
                for cf, v, q in (("requested", 2.5, None), ("always_premium", 4.0, 0.87))
            ],
        )
        conn.execute(
            sa.insert(t.savings_recommendations),
            [
                {
                    "org_id": "acme",
                    "team_id": "t",
                    "task_type": "chat",
                    "from_model": "gpt-4.1",
                    "to_model": "claude-sonnet-4-5",
                    "tier": "premium",
                    "requests": 40,
                    "actual_usd": 3,
                    "projected_usd": 2,
                    "monthly_savings_usd": 30,
                    "from_quality": 0.87,
                    "to_quality": 0.91,
                    "explanation_id": "v1:chat:premium",
                    "table_version": "v1",
                    "computed_at": now,
                }
            ],
        )


def test_line_charts_have_round_ticks_gridlines_and_whole_legends() -> None:
    from cams.api.charts import lines, nice_step

    assert [nice_step(x) for x in (0.013, 1.33, 4.9, 120)] == [0.02, 2, 5, 200]
    svg = lines(["2026-11-01", "2026-11-02"], {"gemini/gemini-2.5-flash-lite": [1.0, 5.33]}, "cost", unit=" $")
    ticks = re.findall(r'class="tick"[^>]*>([^<]+)<', svg)
    assert ticks == ["$0.00", "$2.00", "$4.00", "$6.00"]  # 0 .. above the highest point, in round steps
    assert svg.count('class="grid"') == 4 and "gemini/gemini-2.5-flash-lite<" in svg
