"""The lookup service: selection honours tier, latency, capabilities, context and budget state; a new
table version is served without restart; keys, scopes and org binding; bad input never gives a 500."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cams.api.app import create_app
from cams.api.keys import create_key
from cams.config import PricingConfig, SelectionConfig
from cams.pricing import store as pricebook_store
from cams.pricing.quote import load_book
from cams.selection.quality import STATS_COLUMNS
from cams.selection.select import Request, SelectionTable
from cams.selection.store import publish
from cams.selection.table import SelectionSettings, build_table, fallback_chain
from cams.warehouse import schema as t

NOW = datetime.now(UTC)


def stats(rows: list[tuple]) -> pd.DataFrame:
    cols = STATS_COLUMNS
    return pd.DataFrame(
        [(m, task, 500, 300, q, q, s, lat / 2, lat, 2000, 500) for m, task, q, s, lat in rows], columns=cols
    )


STATS = stats(
    [
        ("gpt-4o-mini", "chat", 0.72, 0.99, 900),  # cheapest, economy only
        ("gemini/gemini-2.5-flash", "chat", 0.80, 0.99, 1200),
        ("claude-haiku-4-5", "chat", 0.81, 0.99, 800),
        ("gpt-4.1", "chat", 0.87, 0.99, 2500),
        ("claude-sonnet-4-5", "chat", 0.91, 0.99, 3000),
        ("mistral/mistral-small-latest", "chat", 0.79, 0.90, 500),  # below the success floor
    ]
)


def table(book):  # type: ignore[no-untyped-def]
    settings = SelectionSettings.from_config(SelectionConfig(), sorted(STATS["model"]))
    return build_table(STATS, book, settings, NOW, ["chat"])


@pytest.fixture(scope="module")
def book():  # type: ignore[no-untyped-def]
    return load_book(PricingConfig())


def test_table_and_selection_by_hand(book) -> None:  # type: ignore[no-untyped-def]
    tb = table(book)
    rows = {(r["task_type"], r["tier"]): r for r in tb["rows"]}
    assert [c["model"] for c in rows[("chat", "economy")]["candidates"]][:2] == [
        "gpt-4o-mini",
        "gemini/gemini-2.5-flash",
    ]
    assert rows[("chat", "standard")]["candidates"][0]["model"] == "gemini/gemini-2.5-flash"
    assert rows[("chat", "premium")]["candidates"][0]["model"] == "gpt-4.1"
    assert {"model": "mistral/mistral-small-latest", "reason": "success_rate"} in [
        {k: r[k] for k in ("model", "reason")} for r in rows[("chat", "economy")]["rejected"]
    ]
    rejected = next(r for r in rows[("chat", "economy")]["rejected"] if r["model"] == "mistral/mistral-small-latest")
    assert rejected["floor"] == "success_rate_floor:0.95" and rejected["success_rate"] < 0.95
    # costs ascend, and the first fallback is another provider
    costs = [c["expected_cost_usd"] for c in rows[("chat", "standard")]["candidates"]]
    assert costs == sorted(costs)
    std = rows[("chat", "standard")]["candidates"]
    assert std[0]["fallback_chain"][0] != "gemini/gemini-2.5-pro" and std[0]["provider"] == "gemini"
    assert all(book.lookup(m, NOW).provider != "gemini" for m in std[0]["fallback_chain"][:1])
    sel = SelectionTable(
        "v1",
        tb,
        [
            {
                "budget_id": "b1",
                "scope": "org",
                "scope_id": "down",
                "org_id": "down",
                "state": "critical",
                "action": "downgrade",
            },
            {
                "budget_id": "b2",
                "scope": "team",
                "scope_id": "t",
                "org_id": "ok",
                "state": "exceeded",
                "action": "block",
            },
        ],
    )
    assert sel.select(Request("ok", "chat", "premium")).model == "gpt-4.1"
    lat = sel.select(Request("ok", "chat", "standard", max_latency_ms=1000))  # flash's p95 is 1200 ms
    assert (lat.model, lat.binding_constraint) == ("claude-haiku-4-5", "max_latency_ms")
    assert lat.alternatives[0] | {"rejected": "max_latency_ms"} == lat.alternatives[0]
    with pytest.raises(Exception) as slow:
        sel.select(Request("ok", "chat", "premium", max_latency_ms=2000))
    assert getattr(slow.value, "status", None) == 422
    assert sel.select(Request("ok", "chat", "standard", required_capabilities=("vision",))).model
    down = sel.select(Request("down", "chat", "premium"))
    assert down.tier == "standard" and down.model == "gemini/gemini-2.5-flash" and down.budget_state == "critical"
    with pytest.raises(Exception) as blocked:
        sel.select(Request("ok", "chat", "standard", team_id="t"))
    assert getattr(blocked.value, "status", None) == 402
    with pytest.raises(Exception) as big:
        sel.select(Request("ok", "chat", "economy", input_tokens=5_000_000))
    assert getattr(big.value, "status", None) == 422
    # a request that states its input size is estimated at that size, not the row's typical request
    typical = sel.select(Request("ok", "chat", "economy"))
    sized = sel.select(Request("ok", "chat", "economy", input_tokens=100_000))
    rates = tb["models"][sized.model]["rates"]
    row = next(r for r in tb["rows"] if (r["task_type"], r["tier"]) == ("chat", "economy"))
    assert sized.estimated_cost_usd == pytest.approx(100_000 * rates["input"] + row["profile"][1] * rates["output"])
    assert sized.estimated_cost_usd > 10 * typical.estimated_cost_usd  # 100k tokens in, against ~2k typical
    assert fallback_chain(
        [{"model": "a", "provider": "x"}, {"model": "b", "provider": "x"}, {"model": "c", "provider": "y"}], 0
    ) == ["c", "b"]


@pytest.fixture
def client(engine, book):  # type: ignore[no-untyped-def]
    pricebook_store.store(engine, book)
    publish(engine, table(book))
    with engine.begin() as conn:
        conn.execute(
            sa.insert(t.budget_status),
            [
                {
                    "budget_id": "globex-cap",
                    "scope": "org",
                    "scope_id": "globex",
                    "org_id": "globex",
                    "period_start": NOW,
                    "period_end": NOW,
                    "as_of": NOW,
                    "amount_usd": 10,
                    "spent_usd": 12,
                    "forecast_usd": 20,
                    "percent_used": 120.0,
                    "forecast_percent": 200.0,
                    "state": "exceeded",
                    "action": "block",
                    "projected_exhaustion_at": None,
                    "evaluated_at": NOW,
                }
            ],
        )
    app = create_app(engine, refresh_s=0.2, flush_s=0.1)
    with TestClient(app) as c:
        c.keys = {  # type: ignore[attr-defined]
            "admin": create_key(engine, ["admin"]),
            "acme": create_key(engine, ["read", "write"], org_id="acme"),
        }
        app.state.service.refresh()
        yield c


def _h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_select_over_http_and_history(client, engine) -> None:  # type: ignore[no-untyped-def]
    k = client.keys
    r = client.post(
        "/api/v1/models/select",
        json={"org_id": "acme", "task_type": "chat", "request_id": "rq-1"},
        headers=_h(k["acme"]),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {
        "selection_id",
        "model",
        "provider",
        "estimated_cost_usd",
        "fallback_chain",
        "budget_state",
        "table_version",
        "explanation_id",
    }
    assert body["model"] == "gemini/gemini-2.5-flash" and body["budget_state"] == "ok"
    blocked = client.post(
        "/api/v1/models/select", json={"org_id": "globex", "task_type": "chat"}, headers=_h(k["admin"])
    )
    assert blocked.status_code == 402 and blocked.json()["error"]["code"] == "budget_blocked"
    ex = client.get(f"/api/v1/explainer/{body['explanation_id']}", headers=_h(k["acme"]))
    assert ex.status_code == 200 and ex.json()["explanation"]["chosen"] == body["model"]
    with engine.connect() as conn:
        hist = conn.execute(sa.text("select request_id, model from model_selection_history")).all()
    assert [tuple(h) for h in hist] == [("rq-1", "gemini/gemini-2.5-flash")]
    fb = client.get(f"/api/v1/models/fallbacks/{body['model']}", headers=_h(k["acme"]))
    assert fb.status_code == 200 and fb.json()["fallback_chain"] == body["fallback_chain"]
    est = client.post(
        "/api/v1/models/estimate",
        json={"model": "gpt-4o-mini", "prompt": "hello world " * 50, "max_output_tokens": 100},
        headers=_h(k["acme"]),
    )
    assert est.status_code == 200 and est.json()["input_tokens"] == 101 and est.json()["encoding"]
    again = client.post(
        "/api/v1/models/estimate",
        json={"model": "gpt-4o-mini", "prompt": "hello world " * 50, "max_output_tokens": 100},
        headers=_h(k["acme"]),
    )
    assert again.json()["cached"] is True


def test_auth_scopes_and_org_binding(client) -> None:  # type: ignore[no-untyped-def]
    k = client.keys
    assert client.post("/api/v1/models/select", json={"org_id": "acme", "task_type": "chat"}).status_code == 401
    assert (
        client.post(
            "/api/v1/models/select", json={"org_id": "acme", "task_type": "chat"}, headers=_h("cams_nope_nope")
        ).status_code
        == 401
    )
    other = client.post("/api/v1/models/select", json={"org_id": "globex", "task_type": "chat"}, headers=_h(k["acme"]))
    assert other.status_code == 403 and other.json()["error"]["code"] == "forbidden"
    assert client.get("/api/v1/budgets/globex-cap/status", headers=_h(k["acme"])).status_code == 404
    assert client.get("/api/v1/budgets/globex-cap/status", headers=_h(k["admin"])).json()["state"] == "exceeded"


def test_new_table_version_is_served_without_restart(client, engine, book) -> None:  # type: ignore[no-untyped-def]
    k = client.keys
    first = client.post(
        "/api/v1/models/select", json={"org_id": "acme", "task_type": "chat"}, headers=_h(k["admin"])
    ).json()
    cheaper = STATS.copy()
    cheaper.loc[cheaper["model"] == "gpt-4o-mini", "quality"] = 0.95  # now qualifies for standard, and is cheapest
    settings = SelectionSettings.from_config(SelectionConfig(), sorted(cheaper["model"]))
    version = publish(
        engine, build_table(cheaper, book, settings, NOW, ["chat"]), now=datetime.now(UTC).replace(year=2099)
    )
    deadline = time.monotonic() + 10
    body = first
    while time.monotonic() < deadline and body["table_version"] != version:
        time.sleep(0.1)
        body = client.post(
            "/api/v1/models/select", json={"org_id": "acme", "task_type": "chat"}, headers=_h(k["admin"])
        ).json()
    assert body["table_version"] == version and body["model"] == "gpt-4o-mini"
    assert client.get("/readyz").json()["table_version"] == version


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "text",
        {"org_id": ""},
        {"org_id": "acme"},
        {"org_id": "acme", "task_type": "chat", "quality_tier": 9},
        {"org_id": "acme", "task_type": "chat", "max_latency_ms": -1},
        {"org_id": "acme", "task_type": "nope"},
        {"org_id": "acme", "task_type": "chat", "input_tokens": 10**12},
        {"org_id": "acme", "task_type": "chat", "required_capabilities": ["teleport"]},
        {"org_id": "a" * 500, "task_type": "chat"},
        {"org_id": "acme", "task_type": "chat", "prompt": "\x00" * 100},
    ],
)
def test_bad_input_never_gives_a_500(client, payload) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/models/select", json=payload, headers=_h(client.keys["admin"]))
    assert 200 <= r.status_code < 500 and r.status_code != 500
    if r.status_code >= 400:
        assert set(r.json()["error"]) >= {"code", "message"}
    for path, body in [
        ("/api/v1/models/estimate", payload),
        ("/api/v1/models/estimate", {"model": "x", "prompt": "y"}),
    ]:
        r = client.post(path, json=body, headers=_h(client.keys["admin"]))
        assert (r.status_code < 500 and "error" in r.json()) or r.status_code == 200
    r = client.get("/openapi.json")
    assert r.status_code == 200 and "/api/v1/models/select" in r.json()["paths"]


def test_budget_api_and_org_isolation(client, engine) -> None:  # type: ignore[no-untyped-def]
    k = client.keys
    acme = {
        "id": "acme-api",
        "scope": "team",
        "scope_id": "search",
        "org_id": "acme",
        "period": "weekly",
        "amount_usd": 50,
        "thresholds": [{"level": "warning", "percent": 80}],
    }
    r = client.post("/api/v1/budgets", json=acme, headers=_h(k["acme"]))
    assert r.status_code == 201 and r.json()["amount_usd"] == "50"
    assert client.post("/api/v1/budgets", json=acme, headers=_h(k["acme"])).status_code == 409
    other = {**acme, "id": "globex-api", "org_id": "globex"}
    assert client.post("/api/v1/budgets", json=other, headers=_h(k["acme"])).status_code == 403
    assert client.post("/api/v1/budgets", json=other, headers=_h(k["admin"])).status_code == 201
    bad = client.post("/api/v1/budgets", json={**acme, "id": "x", "period": "hourly"}, headers=_h(k["admin"]))
    assert bad.status_code == 422 and "period" in bad.json()["error"]["message"]
    assert [b["id"] for b in client.get("/api/v1/budgets", headers=_h(k["acme"])).json()] == ["acme-api"]
    assert client.get("/api/v1/budgets/globex-api", headers=_h(k["acme"])).status_code == 404
    assert client.put("/api/v1/budgets/globex-api", json=other, headers=_h(k["acme"])).status_code == 404
    put = client.put("/api/v1/budgets/acme-api", json={**acme, "amount_usd": 75}, headers=_h(k["acme"]))
    assert put.status_code == 200 and put.json()["amount_usd"] == "75"
    assert client.delete("/api/v1/budgets/globex-api", headers=_h(k["acme"])).status_code == 404
    assert client.delete("/api/v1/budgets/acme-api", headers=_h(k["acme"])).status_code == 204
    with engine.connect() as conn:
        assert sorted(conn.execute(sa.text("select id from budget_configs")).scalars()) == ["globex-api"]
    got = client.get("/api/v1/budgets/globex-api", headers=_h(k["admin"])).json()
    assert got["created_at"].endswith("+00:00")  # every timestamp with its zone


def test_budget_status_reads_as_money_and_zoned_time(client, engine) -> None:  # type: ignore[no-untyped-def]
    """No "0E-10" and no zoneless times: exact decimals written out, timestamps in UTC with their offset."""
    with engine.begin() as conn:
        conn.execute(sa.update(t.budget_status).where(t.budget_status.c.budget_id == "globex-cap").values(spent_usd=0))
    body = client.get("/api/v1/budgets/globex-cap/status", headers=_h(client.keys["admin"])).json()
    assert body["spent_usd"] == "0.0000000000" and body["amount_usd"] == "10.0000000000"
    for field in ("period_start", "period_end", "as_of", "evaluated_at"):
        assert datetime.fromisoformat(body[field]).utcoffset() is not None, (field, body[field])


def test_cost_analysis(client, engine) -> None:  # type: ignore[no-untyped-def]
    from datetime import date

    base = {
        "team_id": "t",
        "user_id": "u",
        "task_type": "chat",
        "errors": 0,
        "unpriced_requests": 0,
        "input_tokens": 10,
        "output_tokens": 5,
        "cached_input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "reasoning_tokens": 0,
    }
    rows = [
        {
            **base,
            "day": date(2026, 5, 4),
            "org_id": "acme",
            "model": "gpt-4o-mini",
            "provider": "openai",
            "requests": 10,
            "cost_usd": 1.5,
            "charged_usd": 1.6,
        },
        {
            **base,
            "day": date(2026, 5, 5),
            "org_id": "acme",
            "model": "claude-sonnet-4-5",
            "provider": "anthropic",
            "requests": 2,
            "cost_usd": 3.25,
            "charged_usd": 3.25,
        },
        {
            **base,
            "day": date(2026, 5, 12),
            "org_id": "globex",
            "model": "gpt-4o-mini",
            "provider": "openai",
            "requests": 7,
            "cost_usd": 9,
            "charged_usd": 9,
        },
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(t.cost_daily_rollups), rows)
    h = _h(client.keys["acme"])
    s = client.get("/api/v1/cost-analysis/summary", headers=h).json()
    assert (s["requests"], s["cost_usd"], s["charged_usd"]) == (12, "4.7500000000", "4.8500000000")
    assert client.get("/api/v1/cost-analysis/summary?org_id=globex", headers=h).status_code == 403
    by_model = client.get("/api/v1/cost-analysis/by-model", headers=h).json()
    assert [m["model"] for m in by_model] == ["claude-sonnet-4-5", "gpt-4o-mini"]
    assert (
        client.get("/api/v1/cost-analysis/by-provider?start=2026-05-05", headers=h).json()[0]["provider"] == "anthropic"
    )
    weeks = client.get("/api/v1/cost-analysis/trends?granularity=week", headers=_h(client.keys["admin"])).json()
    assert [(w["period_start"], w["requests"]) for w in weeks] == [("2026-05-04", 12), ("2026-05-11", 7)]
    assert client.get("/api/v1/cost-analysis/trends?granularity=year", headers=h).status_code == 422
    for path in ("summary", "by-model", "trends"):  # one scope dependency for every rollup read
        assert client.get(f"/api/v1/cost-analysis/{path}?start=2026-05-09&end=2026-05-01", headers=h).status_code == 422
    # breakdowns by team, user and task, scoped to the key's org
    admin = _h(client.keys["admin"])
    teams = client.get("/api/v1/cost-analysis/by-team", headers=admin).json()
    assert [(x["org_id"], x["team_id"], x["requests"]) for x in teams] == [("globex", "t", 7), ("acme", "t", 12)]
    assert [x["task_type"] for x in client.get("/api/v1/cost-analysis/by-task", headers=h).json()] == ["chat"]
    assert client.get("/api/v1/cost-analysis/by-user", headers=h).json()[0]["user_id"] == "u"
    # the same rows as CSV for a spreadsheet
    csv_models = client.get("/api/v1/cost-analysis/by-model", headers={**h, "Accept": "text/csv"})
    assert csv_models.headers["content-type"].startswith("text/csv")
    lines = csv_models.text.splitlines()
    assert lines[0].startswith("model,requests") and lines[1].startswith("claude-sonnet-4-5,2,")
    assert len(lines) == 1 + len(by_model)
    steering = [
        ("acme", "cheapest-ok", "gpt-4.1", "gpt-4o-mini", True, 3, 0.3),
        ("acme", "cheapest-ok", "gpt-4o-mini", "gpt-4o-mini", False, 7, 0.7),
        ("acme", None, "claude-sonnet-4-5", "claude-sonnet-4-5", False, 2, 3.25),
        ("globex", "latency-slo", "gpt-4.1", "gpt-4o-mini", True, 5, 0.5),
    ]
    with engine.begin() as conn:
        conn.execute(
            sa.insert(t.steering_daily_rollups),
            [
                {
                    "day": date(2026, 5, 4),
                    "org_id": o,
                    "steering_rule": rule,
                    "model_requested": asked,
                    "model": m,
                    "fallback": fb,
                    "requests": n,
                    "cost_usd": c,
                    "charged_usd": c,
                }
                for o, rule, asked, m, fb, n, c in steering
            ],
        )
    rules = client.get("/api/v1/cost-analysis/by-steering-rule", headers=h).json()  # acme's key: acme only
    assert [(x["steering_rule"], x["requests"], x["fallback_requests"]) for x in rules] == [
        (None, 2, 0),
        ("cheapest-ok", 10, 3),
    ]
    assert rules[1]["fallback_rate"] == 0.3 and rules[1]["fallback_cost_usd"] == "0.3000000000"
    asked = {x["model_requested"]: x for x in client.get("/api/v1/cost-analysis/fallbacks", headers=admin).json()}
    assert (asked["gpt-4.1"]["requests"], asked["gpt-4.1"]["fallback_rate"]) == (8, 1.0)
    assert asked["gpt-4o-mini"]["fallback_rate"] == 0.0
    report = [  # org, team, user, counterfactual, requests, actual, counterfactual, quality
        ("acme", None, "u1", "always_standard", 12, 4.75, 4.0, 0.8),
        ("acme", "t", "u1", "always_standard", 10, 4.0, 3.0, 0.8),
        ("acme", "t", "u2", "always_standard", 2, 0.75, 1.0, 0.8),
        ("acme", "t", "u2", "requested", 2, 0.75, 1.5, None),
        ("globex", None, None, "always_standard", 7, 9, 9.5, 0.8),
    ]
    with engine.begin() as conn:
        conn.execute(
            sa.insert(t.savings_report),
            [
                {
                    "org_id": o,
                    "team_id": tm,
                    "user_id": u,
                    "counterfactual": cf,
                    "requests": n,
                    "actual_usd": a,
                    "counterfactual_usd": b,
                    "savings_usd": b - a,
                    "savings_pct": 0.0,
                    "counterfactual_quality": q,
                    "table_version": "v1",
                    "computed_at": NOW,
                }
                for o, tm, u, cf, n, a, b, q in report
            ],
        )
    by_team = client.get("/api/v1/cost-analysis/savings?counterfactual=always_standard", headers=h).json()
    assert [(x["org_id"], x["team_id"], x["requests"], x["savings_usd"]) for x in by_team] == [
        ("acme", None, 12, "-0.7500000000"),
        ("acme", "t", 12, "-0.7500000000"),  # two users summed
    ]
    assert by_team[0]["computed_at"].endswith("+00:00") and by_team[1]["savings_pct"] == -15.79
    orgs = client.get("/api/v1/cost-analysis/savings?scope=org", headers=h).json()
    assert [(x["counterfactual"], x["requests"], x["counterfactual_usd"]) for x in orgs] == [
        ("always_standard", 24, "8.0000000000"),
        ("requested", 2, "1.5000000000"),
    ]
    assert orgs[0]["counterfactual_quality"] == 0.8 and orgs[1]["counterfactual_quality"] is None
    users = client.get("/api/v1/cost-analysis/savings?scope=user&team_id=t", headers=h).json()
    assert [(x["user_id"], x["counterfactual"]) for x in users] == [
        ("u1", "always_standard"),
        ("u2", "always_standard"),
        ("u2", "requested"),
    ]
    assert client.get("/api/v1/cost-analysis/savings?org_id=globex", headers=h).status_code == 403
    assert client.get("/api/v1/cost-analysis/savings?scope=planet", headers=h).status_code == 422
    assert len(client.get("/api/v1/cost-analysis/savings?scope=org", headers=admin).json()) == 3
    weekly = client.get("/api/v1/cost-analysis/trends?granularity=week", headers={**admin, "Accept": "text/csv"})
    assert weekly.text.splitlines()[1].startswith("2026-05-04,12,")


def test_signed_webhooks_are_idempotent(client, engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import json as _json

    from cams import signing

    monkeypatch.setenv("CAMS_WEBHOOK_SECRET", "whsec")
    body = _json.dumps({"event_id": "ev-1", "records": []}).encode()

    def post(raw: bytes, sig: str | None, kind: str = "cost-data"):  # type: ignore[no-untyped-def]
        headers = {"Content-Type": "application/json", **({"X-CAMS-Signature": sig} if sig else {})}
        return client.post(f"/api/v1/webhooks/{kind}", content=raw, headers=headers)

    assert post(body, signing.sign("whsec", body)).json()["status"] == "stored"
    assert post(body, signing.sign("whsec", body)).json()["status"] == "duplicate"
    assert post(body, None).status_code == 401
    assert post(body, signing.sign("wrong", body)).status_code == 401
    assert post(body, signing.sign("whsec", body, t=int(time.time()) - 301)).status_code == 401
    assert post(b"not json", signing.sign("whsec", b"not json")).status_code == 422
    assert post(body, signing.sign("whsec", body), kind="nope").status_code == 404
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from webhook_events")).scalar_one() == 1


def test_model_cost_update_webhook_is_a_dated_price(client, engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """SPEC §2.3: a price-update event becomes a dated price through the Models API's path, exactly once."""
    import json as _json

    from cams import signing

    monkeypatch.setenv("CAMS_WEBHOOK_SECRET", "whsec")

    def post(body: dict):  # type: ignore[no-untyped-def]
        raw = _json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "X-CAMS-Signature": signing.sign("whsec", raw)}
        return client.post("/api/v1/webhooks/model-cost-update", content=raw, headers=headers)

    event = {
        "event_id": "price-1",
        "prices": [{"model": "gpt-4o-mini", "valid_from": "2026-12-01T00:00:00Z", "input_cost_per_token": "2e-7"}],
    }
    first = post(event)
    assert first.status_code == 200 and first.json() == {
        "status": "applied",
        "event_id": "price-1",
        "models": ["gpt-4o-mini"],
    }
    assert post(event).json()["status"] == "duplicate"
    book = pricebook_store.load(engine)
    before, after = (book.lookup("gpt-4o-mini", datetime(2026, m, d, tzinfo=UTC)) for m, d in ((11, 30), (12, 1)))
    assert before is not None and after is not None
    assert str(before.prices["input_cost_per_token"]) in ("1.5E-7", "1.5e-7", "0.00000015")
    assert after.prices["input_cost_per_token"] == Decimal("2e-7") and after.source == "override"
    with engine.connect() as conn:
        writers = conn.execute(sa.text("select created_by from model_price_overrides")).scalars().all()
        processed = conn.execute(sa.text("select processed_at from webhook_events")).scalar_one()
    assert writers == ["webhook:price-1"] and processed is not None
    # a price the book cannot apply is refused before anything is stored
    bad = post({"event_id": "price-2", "model": "gpt-4o-mini", "input_cost_per_token": "-1"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_price"
    assert post({"event_id": "price-3", "prices": []}).status_code == 422
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from webhook_events")).scalar_one() == 1


def test_explainer_lists_and_models(client) -> None:  # type: ignore[no-untyped-def]
    h = _h(client.keys["acme"])
    for i in range(3):
        client.post(
            "/api/v1/models/select",
            json={"org_id": "acme", "task_type": "chat", "request_id": f"r{i}", "quality_tier": "premium"},
            headers=h,
        )
    recent = client.get("/api/v1/explainer/recent?limit=2", headers=h).json()
    assert len(recent) == 2 and all(r["org_id"] == "acme" for r in recent)
    stats = client.get("/api/v1/explainer/stats", headers=h).json()
    assert stats["decisions"] == 3 and stats["by_model"] == {"gpt-4.1": 3}
    by_request = client.get("/api/v1/explainer/request/r1", headers=h).json()
    assert by_request["explanation"]["tier_served"] == "premium"
    assert client.get("/api/v1/explainer/request/nope", headers=h).status_code == 404
    models = client.get("/api/v1/models?q=gpt-4o-mini&provider=openai&limit=100", headers=h).json()["models"]
    assert any(m["model"] == "gpt-4o-mini" for m in models)
    one = client.get("/api/v1/models/gemini/gemini-2.5-flash", headers=h).json()
    assert one["profiles"][0]["prices"]["input_cost_per_token"]
    assert client.post("/api/v1/models", json={"model": "x"}, headers=_h(client.keys["admin"])).status_code == 422


def test_models_api_writes_dated_prices(client, engine) -> None:  # type: ignore[no-untyped-def]
    """POST/PUT/DELETE write effective-dated overrides: history stays, price ids stay traceable, the price
    book (and a later price_book run) includes them, an org key cannot change global prices."""
    admin = _h(client.keys["admin"])
    new = {
        "model": "acme-finetune-v3",
        "provider": "custom",
        "input_cost_per_token": "0.0000002",
        "output_cost_per_token": "0.0000008",
        "valid_from": "2026-01-01T00:00:00Z",
    }
    assert client.post("/api/v1/models", json=new, headers=_h(client.keys["acme"])).status_code == 403
    made = client.post("/api/v1/models", json=new, headers=admin)
    assert made.status_code == 201, made.text
    assert made.json()["profiles"][0]["prices"]["input_cost_per_token"] == "0.0000002"
    # a new price from a date: the old window ends there, both stay
    bump = client.put(
        "/api/v1/models/acme-finetune-v3",
        json={"input_cost_per_token": "0.0000003", "valid_from": "2026-06-01T00:00:00Z"},
        headers=admin,
    )
    assert bump.status_code == 200, bump.text
    windows = [
        (p["valid_from"][:10], p["prices"]["input_cost_per_token"])
        for p in bump.json()["profiles"]
        if p["retired_at"] is None
    ]
    assert windows[-2:] == [("2026-01-01", "0.0000002"), ("2026-06-01", "0.0000003")]
    est = client.post(
        "/api/v1/models/estimate",
        json={"model": "acme-finetune-v3", "prompt": "hi", "max_output_tokens": 0},
        headers=admin,
    ).json()
    assert Decimal(est["estimated_cost_usd"]) == Decimal("0.0000003") * est["input_tokens"]
    assert (
        client.put("/api/v1/models/never-heard-of", json={"input_cost_per_token": "0.1"}, headers=admin).status_code
        == 404
    )
    assert (
        client.post("/api/v1/models", json={"model": "m", "input_cost_per_token": 5}, headers=admin).status_code == 422
    )
    assert (
        client.post(
            "/api/v1/models", json={"model": "m2", "cache_read_input_token_cost": "1e-7"}, headers=admin
        ).status_code
        == 422
    )  # a custom model needs an input or output price
    assert client.delete("/api/v1/models/acme-finetune-v3", headers=admin).status_code == 204
    with engine.connect() as conn:
        live = conn.execute(
            sa.text("select count(*) from model_cost_profiles where model = 'acme-finetune-v3' and retired_at is null")
        ).scalar_one()
        kept = conn.execute(
            sa.text("select count(*) from model_cost_profiles where model = 'acme-finetune-v3'")
        ).scalar_one()
        audit = conn.execute(
            sa.text("select count(*) from model_price_overrides where deleted_at is not null")
        ).scalar_one()
    assert live == 0 and kept >= 2 and audit == 2  # withdrawn, but every price id still resolves
    assert (
        client.delete("/api/v1/models/gpt-4o-mini", headers=admin).status_code == 404
    )  # snapshot prices live in cams.yaml


def test_explainer_generate_records_nothing(client, engine) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/api/v1/explainer/generate",
        json={"org_id": "acme", "task_type": "chat", "max_latency_ms": 1000},
        headers=_h(client.keys["acme"]),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["model"], body["binding_constraint"]) == ("claude-haiku-4-5", "max_latency_ms")
    assert body["alternatives"][0]["rejected"] == "max_latency_ms"
    client.app.state.service.flush()
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from model_selection_history")).scalar_one() == 0


def test_api_docs_work_offline(client) -> None:  # type: ignore[no-untyped-def]
    """Swagger UI and ReDoc come from this server, not a CDN: every asset they name is served here."""
    import re

    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200
        urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", html.text)
        assets = [u for u in urls if u.endswith((".js", ".css", ".png"))]
        assert assets, html.text[:500]
        assert not [u for u in urls if u.startswith(("http://", "https://", "//"))], urls
        for u in assets:
            assert client.get(u).status_code == 200, u
