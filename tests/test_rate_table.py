"""Costing in the database gives the same dollars as numpy, to the last bit, on both backends.

cost_tracking is costed by a join to the rate table (cams.pricing.rate_table); reconciliation and
savings price frames with `compute_costs`. Moving costing into SQL must not move a single request's
cost: a re-run of a day costed before the move would otherwise record a recomputation nobody made.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import sqlalchemy as sa

from cams.costing import compute_costs, cost_partition
from cams.pricing.book import PriceBook, PriceEntry
from cams.pricing.rate_table import rate_rows, usd_sum
from cams.warehouse import schema as t

DAY = date(2026, 6, 1)
NOON = datetime(2026, 6, 1, 12, tzinfo=UTC)


def _book() -> PriceBook:
    d = Decimal
    tiered = {
        "input_cost_per_token": d("0.0000012500"),
        "output_cost_per_token": d("0.00001"),
        "cache_read_input_token_cost": d("0.000000125"),
        "input_cost_per_token_above_200k_tokens": d("0.0000025"),
        "output_cost_per_token_above_200k_tokens": d("0.000015"),
        "input_cost_per_token_priority": d("0.0000021"),
        "output_cost_per_token_flex": d("0.0000049"),
    }
    return PriceBook(
        [
            # a price change at noon, dated into the day
            PriceEntry("gpt-x", "openai", "chat", datetime(2026, 1, 1, tzinfo=UTC), None, {**tiered}),
            PriceEntry(
                "gpt-x",
                "openai",
                "chat",
                NOON,
                None,
                {**tiered, "input_cost_per_token": d("0.0000011"), "output_cost_per_token": d("0.0000093")},
            ),
            # in force until 18:00, then no price: those requests stay unpriced
            PriceEntry(
                "anthropic/claude-y",
                "anthropic",
                "chat",
                datetime(2026, 1, 1, tzinfo=UTC),
                datetime(2026, 6, 1, 18, tzinfo=UTC),
                {
                    "input_cost_per_token": d("0.000003"),
                    "output_cost_per_token": d("0.000015"),
                    "cache_creation_input_token_cost": d("0.00000375"),
                    "cache_read_input_token_cost": d("0.0000003"),
                    "input_cost_per_token_batches": d("0.0000015"),
                },
            ),
        ]
    )


def _requests(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.Timestamp(DAY, tz="UTC") + pd.to_timedelta(rng.integers(0, 86_400_000_000, n), unit="us")
    model = rng.choice(["gpt-x", "claude-y", "unknown-z"], n, p=[0.6, 0.35, 0.05])
    provider = np.where(model == "gpt-x", "openai", np.where(model == "claude-y", "anthropic", "acme"))
    inp = rng.integers(0, 400_000, n)
    inp[: n // 10] = 200_000  # on the threshold and just past it
    inp[n // 10 : n // 5] = 200_001
    cached = (inp * rng.random(n) * 0.5).astype(np.int64)
    creation = ((inp - cached) * rng.random(n) * 0.3).astype(np.int64)
    out = rng.integers(0, 30_000, n)
    reasoning = (out * rng.random(n) * 0.5).astype(np.int64)
    return pd.DataFrame(
        {
            "day": DAY,
            "request_id": [f"req-{seed}-{i}" for i in range(n)],
            "timestamp": ts,
            "org_id": "org",
            "team_id": None,
            "user_id": None,
            "task_type": "chat",
            "model_requested": None,
            "model": model,
            "provider": provider,
            "input_tokens": inp,
            "output_tokens": out,
            "cached_input_tokens": cached,
            "cache_creation_input_tokens": creation,
            "reasoning_tokens": reasoning,
            "service_tier": rng.choice(["standard", "batch", "flex", "priority"], n),
            "status": "ok",
            "latency_ms": 100,
            "cost_usd": Decimal("0.01"),
            "steering_rule": None,
            "fallback_from": None,
            "ingested_at": datetime(2026, 6, 2, tzinfo=UTC),
        }
    )


def test_the_database_costs_every_request_as_numpy_does(engine) -> None:  # type: ignore[no-untyped-def]
    book = _book()
    frame = _requests(4000, seed=7)
    frame.loc[0, "timestamp"] = pd.Timestamp(NOON)  # the instant the new price takes effect
    frame.loc[1, "timestamp"] = pd.Timestamp(NOON) - pd.Timedelta(microseconds=1)
    frame.loc[2, ["model", "timestamp"]] = ["claude-y", pd.Timestamp("2026-06-01T18:00:00Z")]  # the end
    with engine.begin() as conn:
        conn.execute(sa.insert(t.relaycore_usage), frame.to_dict("records"))
    summary = cost_partition(engine, DAY, DAY + timedelta(days=1), book)

    expected = compute_costs(frame, book).set_index("request_id")
    with engine.connect() as conn:
        got = pd.read_sql(sa.select(t.cost_tracking), conn).set_index("request_id").loc[expected.index]
    sql_cost = np.array([np.nan if v is None else float(v) for v in got["cost_usd"]])
    assert np.array_equal(np.isnan(sql_cost), np.isnan(expected["cost_usd"].to_numpy()))
    priced = ~np.isnan(sql_cost)
    assert priced.sum() > 3000 and (~priced).sum() > 100  # both kinds are there
    # bit for bit, not within a tolerance
    assert np.array_equal(sql_cost[priced], expected["cost_usd"].to_numpy()[priced])
    assert list(got["price_id"].where(priced, None)) == list(expected["price_id"].where(priced, None))
    assert list(got["unpriced"].astype(bool)) == list(expected["unpriced"])
    # the boundaries: the new price from its instant on, none after the end of the window
    assert got.loc["req-7-0", "price_id"] != got.loc["req-7-1", "price_id"]
    assert got.loc["req-7-2", "unpriced"]
    assert summary.rows == 4000 and summary.unpriced_requests == int((~priced).sum())
    assert summary.unpriced_models == sorted(set(got.loc[~priced, "model"]))
    assert abs(float(summary.cost_usd) - float(np.nansum(expected["cost_usd"]))) < 1e-6


def test_rate_rows_split_each_entry_at_the_next_one_and_at_each_threshold() -> None:
    rows = rate_rows(_book(), [("gpt-x", "openai", "standard"), ("claude-y", "anthropic", "batch"), ("z", "x", "flex")])
    gpt = [r for r in rows if r["model"] == "gpt-x"]
    assert [(r["valid_from"], r["valid_to"]) for r in gpt][::2] == [
        (datetime(2026, 1, 1, tzinfo=UTC), NOON),
        (NOON, datetime(9999, 1, 1, tzinfo=UTC)),
    ]
    assert [(r["input_above"], r["input_upto"]) for r in gpt[:2]] == [(-(2**62), 200_000), (200_000, 2**62)]
    assert gpt[1]["rate_input"] == 0.0000025  # above 200k every rate moves
    claude = [r for r in rows if r["model"] == "claude-y"]
    assert len(claude) == 1 and claude[0]["valid_to"] == datetime(2026, 6, 1, 18, tzinfo=UTC)
    assert claude[0]["rate_input"] == 0.0000015  # the batch price
    assert not [r for r in rows if r["model"] == "z"]  # no price: no rate row, never a zero


def test_usd_sum_adds_costs_exactly_and_keeps_null_for_none(engine) -> None:  # type: ignore[no-untyped-def]
    """usd_sum: on PostgreSQL whole 1e-10 USD units in a bigint, and a billion dollars and up as NUMERIC
    beside (a bigint of units would overflow); NULL when every cost is NULL, as SUM."""
    rows = {1: [0.1, 0.2, 0.3], 2: [2e9 + 0.5, 0.0000000001, None], 3: [None, None]}
    data = sa.union_all(
        *(
            sa.select(sa.literal(g).label("g"), sa.cast(sa.literal(x), sa.Double).label("x"))
            for g, xs in rows.items()
            for x in xs
        )
    ).subquery("v")
    with engine.connect() as conn:
        got = dict(
            conn.execute(
                sa.select(data.c.g, usd_sum(data.c.x, conn.dialect.name)).group_by(data.c.g).order_by(data.c.g)
            ).all()
        )
    assert got[3] is None
    if engine.dialect.name == "postgresql":  # exact: 0.6, not 0.6000000000000001
        assert got[1] == Decimal("0.6") and got[2] == Decimal("2000000000.5000000001")
    else:
        assert float(got[1]) == 0.1 + 0.2 + 0.3 and float(got[2]) == 2e9 + 0.5 + 1e-10
