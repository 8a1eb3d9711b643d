"""Savings against named counterfactuals per org, team and user, and recommendations with their
evidence and the API call that applies them: by hand, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cams.api.app import create_app
from cams.api.keys import create_key
from cams.config import PricingConfig, SelectionConfig
from cams.pricing import store as pricebook_store
from cams.pricing.quote import load_book
from cams.selection import savings as sv
from cams.selection.preferences import parse_preference
from cams.selection.store import publish, put_preference
from cams.selection.table import SelectionSettings, build_table
from cams.warehouse import schema as t
from tests.conftest import PG_URL
from tests.test_api import stats

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
STATS = stats(  # claude-haiku-4-5 below gemini-2.5-flash in quality, and dearer
    [
        ("gpt-4o-mini", "chat", 0.72, 0.99, 900),
        ("gemini/gemini-2.5-flash", "chat", 0.80, 0.99, 1200),
        ("claude-haiku-4-5", "chat", 0.78, 0.99, 800),
        ("gpt-4.1", "chat", 0.87, 0.99, 2500),
        ("claude-sonnet-4-5", "chat", 0.91, 0.99, 3000),
    ]
)


def _request(i: int, team: str | None, user: str, model: str, provider: str, cost: float, asked: str | None) -> dict:
    return {
        "day": NOW.date(),
        "request_id": f"r{i}",
        "timestamp": NOW,
        "org_id": "acme",
        "team_id": team,
        "user_id": user,
        "task_type": "chat",
        "model": model,
        "provider": provider,
        "service_tier": "standard",
        "status": "success",
        "input_tokens": 1000,
        "output_tokens": 100,
        "cached_input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": cost,
        "charged_usd": cost,
        "unpriced": False,
        "price_id": "p",
        "computed_at": NOW,
        "model_requested": asked,
    }


@pytest.fixture
def month(engine):  # type: ignore[no-untyped-def]
    """24 haiku requests of acme/search (12 asked for sonnet), 4 gpt-4.1 requests of acme without a team."""
    book = load_book(PricingConfig())
    table = build_table(
        STATS, book, SelectionSettings.from_config(SelectionConfig(), sorted(STATS["model"])), NOW, ["chat"]
    )
    rows = [
        _request(i, "search", "u1", "claude-haiku-4-5", "anthropic", 0.0015, "claude-sonnet-4-5" if i < 12 else None)
        for i in range(24)
    ]
    rows += [_request(100 + i, None, "u2", "gpt-4.1", "openai", 0.0028, None) for i in range(4)]
    with engine.begin() as conn:
        conn.execute(sa.insert(t.cost_tracking), rows)
    return book, table


def test_counterfactuals_per_user_and_a_recommendation_by_hand(engine, month, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    book, table = month
    found = sv.savings(engine, table, book, NOW)
    got = {
        (r["team_id"] if r["team_id"] == r["team_id"] else None, r["user_id"], r["counterfactual"]): (
            r["requests"],
            round(r["actual_usd"], 6),
            round(r["counterfactual_usd"], 6),
            round(r["savings_usd"], 6),
        )
        for r in found.report.to_dict("records")
    }
    # per request, 1,000 tokens in and 100 out: haiku 0.0015, sonnet 0.0045, gemini-2.5-flash 0.00055, gpt-4.1 0.0028
    assert got == {
        ("search", "u1", "requested"): (24, 0.036, 0.072, 0.036),  # 12 asked for sonnet: steering saved 0.036
        ("search", "u1", "always_standard"): (24, 0.036, 0.0132, -0.0228),  # flash would have been cheaper
        ("search", "u1", "always_premium"): (24, 0.036, 0.0672, 0.0312),
        (None, "u2", "requested"): (4, 0.0112, 0.0112, 0.0),
        (None, "u2", "always_standard"): (4, 0.0112, 0.0022, -0.009),
        (None, "u2", "always_premium"): (4, 0.0112, 0.0112, 0.0),
    }
    quality = {
        r["counterfactual"]: r["counterfactual_quality"]
        for r in found.report.to_dict("records")
        if r["user_id"] == "u1"
    }
    assert quality == {
        "requested": pytest.approx((12 * 0.91 + 12 * 0.78) / 24),
        "always_standard": 0.8,
        "always_premium": 0.87,
    }
    # haiku (0.78) to flash (0.80, the standard choice) on search's 24 requests; gpt-4.1's 4 requests are too few
    (rec,) = found.recommendations.to_dict("records")
    assert (rec["team_id"], rec["from_model"], rec["to_model"], rec["tier"], rec["requests"]) == (
        "search",
        "claude-haiku-4-5",
        "gemini/gemini-2.5-flash",
        "standard",
        24,
    )
    assert rec["projected_usd"] == pytest.approx(0.0132) and rec["monthly_savings_usd"] == pytest.approx(0.684)
    # the month is summed in the database: a second run over the same rows gives the same figures
    again = sv.savings(engine, table, book, NOW)
    assert again.report.equals(found.report)
    assert again.recommendations.to_dict("records") == found.recommendations.to_dict("records")


def test_recommendations_are_served_with_evidence_and_the_call_that_applies_them(engine, month) -> None:  # type: ignore[no-untyped-def]
    import dagster as dg

    from assets.selection import build_selection_assets
    from resources.warehouse import WarehouseResource

    book, table = month
    pricebook_store.store(engine, book)
    version = publish(engine, table, as_of=NOW)
    put_preference(engine, parse_preference({"org_id": "acme", "team_id": "search", "excluded_providers": ["mistral"]}))
    asset = next(a for a in build_selection_assets(SelectionConfig()) if a.key == dg.AssetKey("savings_report"))
    url = engine.url.render_as_string(hide_password=False)
    with dg.instance_for_test() as inst:
        done = dg.materialize(
            [asset],
            instance=inst,
            resources={"warehouse": WarehouseResource(database_url=url)},
            tags={"cams/as_of": NOW.isoformat()},
        )
        assert done.success
        md = done.asset_materializations_for_node("savings_report")[0].metadata
    assert md["recommendations"].value == 1 and md["always_standard_savings_usd"].value == pytest.approx(-0.0318)
    admin = create_key(engine, ["admin"])
    app = create_app(engine, refresh_s=60)
    with TestClient(app) as http:
        app.state.service.refresh()
        h = {"Authorization": f"Bearer {admin}"}
        (rec,) = http.get("/api/v1/cost-analysis/recommendations?org_id=acme", headers=h).json()
        assert rec["summary"].startswith(
            "chat: move from claude-haiku-4-5 to gemini/gemini-2.5-flash, saves $0.68 a month"
        )
        assert rec["summary"].endswith("based on 24 requests")
        why = http.get(rec["evidence"]["explainer"], headers=h)
        assert rec["evidence"]["explanation_id"] == f"{version}:chat:standard"
        assert why.status_code == 200 and why.json()["explanation"]["chosen"] == "gemini/gemini-2.5-flash"
        apply = rec["apply"]
        assert (apply["method"], apply["path"]) == ("PUT", "/api/v1/preferences/acme/teams/search")
        assert apply["body"] == {"excluded_models": ["claude-haiku-4-5"], "excluded_providers": ["mistral"]}
        ask = {
            "org_id": "acme",
            "team_id": "search",
            "task_type": "chat",
            "quality_tier": "standard",
            "max_latency_ms": 1000,  # flash's p95 is 1,200 ms: haiku is the answer
        }
        before = http.post("/api/v1/models/select", json=ask, headers=h).json()["model"]
        assert before == "claude-haiku-4-5"
        assert http.request(apply["method"], apply["path"], json=apply["body"], headers=h).status_code == 200
        after = http.post("/api/v1/models/select", json=ask, headers=h).json()  # applied: haiku no longer served
        alternatives = {a["model"]: a["rejected"] for a in after["error"]["detail"]["alternatives"]}
        assert alternatives["claude-haiku-4-5"] == "preference:excluded_models"
        by_user = http.get("/api/v1/cost-analysis/savings?scope=user&counterfactual=requested", headers=h).json()
        assert [(x["user_id"], x["savings_usd"]) for x in by_user] == [("u2", "0.0000000000"), ("u1", "0.0360000000")]
        csv = http.get("/api/v1/cost-analysis/recommendations", headers={**h, "Accept": "text/csv"})
        assert csv.status_code == 200 and csv.text.splitlines()[0].startswith("org_id,team_id,task_type")
        # the dashboard's panels: spend against each counterfactual, and the move with its evidence
        page = http.get("/dashboard?org_id=acme", headers=h).text
        assert "id='savings'" in page and 'data-label="always_premium"' in page and 'data-label="actual spend"' in page
        assert "id='recommendations'" in page and f"/dashboard/explain/{version}:chat:standard" in page
        assert http.get(f"/dashboard/explain/{version}:chat:standard", headers=h).status_code == 200
        rows = http.get("/dashboard/recommendations.csv?org_id=acme", headers=h).text.splitlines()
        assert len(rows) == 2 and "claude-haiku-4-5" in rows[1]


def test_complete_days_are_priced_once_and_kept_while_choices_and_prices_hold(engine, month) -> None:  # type: ignore[no-untyped-def]
    """On a warehouse in use the window's complete days were priced the run before, at the same choices and
    prices: their sums are kept (`savings_day_groups`) and read, not priced again. A new table choice, a
    price dated into those days or costing a day again prices afresh; every answer equals a fresh one."""
    from datetime import timedelta

    from cams.costing import cost_partition

    book, table = month
    shifted = []
    for k in range(1, 6):  # the fixture's requests on each of the five days before NOW as well
        at = NOW - timedelta(days=k)
        shifted += [
            {**_request(1000 * k + i, "search", "u1", "claude-haiku-4-5", "anthropic", 0.0015, None), "day": at.date()}
            for i in range(6)
        ]
        shifted += [
            {**_request(1000 * k + 100, None, "u2", "gpt-4.1", "openai", 0.0028, "gpt-4o-mini"), "day": at.date()}
        ]
        shifted[-7:] = [{**r, "timestamp": at, "computed_at": at} for r in shifted[-7:]]
    with engine.begin() as conn:
        conn.execute(sa.insert(t.cost_tracking), shifted)
    kept_t = t.savings_day_groups

    def answer(tbl=table, bk=book):  # type: ignore[no-untyped-def]
        s = sv.savings(engine, tbl, bk, NOW)
        return s.report.to_dict("records"), s.recommendations.to_dict("records")

    def fresh(tbl=table, bk=book):  # type: ignore[no-untyped-def]
        with engine.begin() as conn:
            conn.execute(sa.delete(kept_t))
        return answer(tbl, bk)

    def requests(found) -> int:  # type: ignore[no-untyped-def]
        return sum(r["requests"] for r in found[0] if r["counterfactual"] == "requested")

    first = answer()
    assert requests(first) == 28 + 5 * 7
    with engine.connect() as conn:
        days = set(conn.execute(sa.select(kept_t.c.day).distinct()).scalars())
    assert days == {(NOW - timedelta(days=k)).date() for k in range(1, 6)}  # complete days only: not the as-of day
    assert answer() == first
    # what a run reads is the kept sums: one tampered shows, so nothing kept was priced again
    yesterday = (NOW - timedelta(days=1)).date()
    with engine.begin() as conn:
        conn.execute(sa.update(kept_t).where(kept_t.c.day == yesterday).values(requests=kept_t.c.requests + 1000))
        groups = conn.execute(sa.select(sa.func.count()).where(kept_t.c.day == yesterday)).scalar_one()
    assert requests(answer()) == requests(first) + 1000 * groups

    # another choice for a tier: every day is priced again (the tampered sums are not read)
    other = {**table, "rows": [{**r, "candidates": r["candidates"][1:] or r["candidates"]} for r in table["rows"]]}
    changed = answer(other)
    assert requests(changed) == requests(first) and changed == fresh(other)
    # a price dated into the kept days: priced again, at the new price
    answer()
    dearer = load_book(
        PricingConfig(
            overrides=({"model": "gpt-4o-mini", "valid_from": "2026-11-01T00:00:00Z", "input_cost_per_token": 1e-4},)
        )
    )
    repriced = answer(bk=dearer)
    assert repriced != first and repriced == fresh(bk=dearer)
    # a price that takes effect after the kept days changes nothing kept
    later = load_book(
        PricingConfig(
            overrides=({"model": "gpt-4o-mini", "valid_from": "2026-11-20T00:00:00Z", "input_cost_per_token": 1e-4},)
        )
    )
    answer()
    with engine.connect() as conn:
        before = conn.execute(sa.select(kept_t.c.fingerprint).distinct()).scalars().all()
    answer(bk=later)
    with engine.connect() as conn:
        assert conn.execute(sa.select(kept_t.c.fingerprint).distinct()).scalars().all() == before
    # costing a day again (here its usage is gone: no requests) empties its kept sums
    cost_partition(engine, yesterday, NOW.date(), book)
    with engine.connect() as conn:
        assert not conn.execute(sa.select(sa.func.count()).where(kept_t.c.day == yesterday)).scalar_one()
    after = answer()
    assert requests(after) == requests(first) - 7 and after == fresh()
    # the default as-of, a day's last microsecond, completes its day: kept, so tomorrow prices only tomorrow
    end = datetime(2026, 11, 20, 23, 59, 59, 999999, tzinfo=UTC)
    at_end = sv.savings(engine, table, book, end).report.to_dict("records")
    with engine.connect() as conn:
        assert NOW.date() in set(conn.execute(sa.select(kept_t.c.day).distinct()).scalars())
    assert sv.savings(engine, table, book, end).report.to_dict("records") == at_end
    with engine.begin() as conn:
        conn.execute(sa.delete(kept_t))
    assert sv.savings(engine, table, book, end).report.to_dict("records") == at_end


def test_two_savings_runs_at_once_keep_each_day_once(engine, month) -> None:  # type: ignore[no-untyped-def]
    """Two runs pricing the same new days at the same moment (a schedule and a sensor-launched run): one
    waits for the other, so each day's sums are kept once and both answer the same."""
    from concurrent.futures import ThreadPoolExecutor
    from datetime import timedelta

    book, table = month
    earlier = []
    for k in range(1, 4):
        at = NOW - timedelta(days=k)
        earlier += [
            {**_request(1000 * k + i, "search", "u1", "claude-haiku-4-5", "anthropic", 0.0015, None), "day": at.date()}
            | {"timestamp": at, "computed_at": at}
            for i in range(5)
        ]
    with engine.begin() as conn:
        conn.execute(sa.insert(t.cost_tracking), earlier)
    with ThreadPoolExecutor(2) as pool:  # both find the three days unpriced
        both = list(pool.map(lambda _: sv.savings(engine, table, book, NOW).report.to_dict("records"), range(2)))
    kept_t = t.savings_day_groups
    keys = [kept_t.c.day, kept_t.c.fingerprint, *(kept_t.c[c] for c in sv.GROUP_KEYS)]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(*keys)).all()
    assert len(rows) == len(set(rows)) and {r[0] for r in rows} == {(NOW - timedelta(days=k)).date() for k in (1, 2, 3)}
    assert both[0] == both[1] == sv.savings(engine, table, book, NOW).report.to_dict("records")


@pytest.mark.parametrize("db_url", [b for b in ("postgresql",) if PG_URL], indirect=True)
def test_the_sums_do_not_depend_on_the_order_the_rows_are_read_in(engine, month) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL reads a day in whatever order its scan gives: one that joins a concurrent scan midway
    (`synchronize_seqscans`, reconciliation reading cost_tracking beside the savings run) or a parallel plan.
    A sum of doubles in another order moves its last bit, so a re-run of the same requests gave other sums.
    The same requests written in two orders must give the same sums, to the bit. (SQLite reads in rowid
    order: the order they were written in.)"""
    import random

    book, table = month
    rng = random.Random(7)
    served = [("claude-haiku-4-5", "anthropic"), ("gpt-4.1", "openai"), ("gpt-4o-mini", "openai")]
    rows = []
    for i in range(3000):
        model, provider = rng.choice(served)
        asked = rng.choice([None, "claude-sonnet-4-5", "gemini/gemini-2.5-flash"])
        rows.append(
            _request(
                i, rng.choice(["search", None]), f"u{i % 3}", model, provider, round(rng.random() / 997, 10), asked
            )
            | {"input_tokens": rng.randrange(1, 90_000), "output_tokens": rng.randrange(1, 7_000)}
        )
    choices = sv._choices(table)
    got = []
    for order in (rows, rows[::-1]):
        with engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE cost_tracking, savings_day_groups")
            conn.execute(sa.insert(t.cost_tracking), order)
        got.append(sv._grouped_costs(engine, choices, book, NOW, sv.WINDOW_DAYS))
    assert len(got[0]) > 3 and got[0]["requests"].sum() == len(rows)
    sums = [c for c in sv.SUMS if c.endswith("_usd")]
    assert got[0][[*sv.GROUP_KEYS, *sums]].equals(got[1][[*sv.GROUP_KEYS, *sums]])
