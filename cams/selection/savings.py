"""Savings report (SPEC §6): what each scope spent versus what the table's choices would have cost
on the same requests (same tokens, same time, the table's standard-tier choice for the task), and
at what expected quality."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from cams.costing import TOKEN_COLS, compute_costs
from cams.pricing.book import PriceBook
from cams.warehouse import schema as t

WINDOW_DAYS = 30


def savings(
    engine: Engine,
    table: dict[str, Any],
    book: PriceBook,
    as_of: datetime,
    tier: str = "standard",
    days: int = WINDOW_DAYS,
) -> pd.DataFrame:
    ct = t.cost_tracking
    cols = ["org_id", "team_id", "task_type", "model", "provider", "timestamp", "service_tier", "cost_usd", *TOKEN_COLS]
    with engine.connect() as conn:
        rows = conn.execute(
            select(*(ct.c[c] for c in cols)).where(
                ct.c.day >= (as_of - timedelta(days=days)).date(), ct.c.unpriced.is_(False)
            )
        ).all()
    frame = pd.DataFrame(rows, columns=cols)
    out_cols = [
        "org_id",
        "team_id",
        "requests",
        "actual_usd",
        "table_usd",
        "savings_usd",
        "savings_pct",
        "table_expected_quality",
    ]
    if frame.empty:
        return pd.DataFrame(columns=out_cols)
    choice = {r["task_type"]: r["candidates"][0] for r in table["rows"] if r["tier"] == tier and r["candidates"]}
    frame = frame[frame["task_type"].isin(choice)].copy()
    frame["actual_usd"] = pd.to_numeric(frame["cost_usd"]).astype(float)
    alt = frame.assign(
        model=frame["task_type"].map(lambda k: choice[k]["model"]),
        provider=frame["task_type"].map(lambda k: choice[k]["provider"]),
    )
    frame["table_usd"] = compute_costs(alt, book)["cost_usd"].to_numpy()
    frame["table_quality"] = frame["task_type"].map(lambda k: choice[k]["expected_quality"]).astype(float)
    g = frame.groupby(["org_id", "team_id"], dropna=False)
    rep = pd.DataFrame(
        {
            "requests": g.size(),
            "actual_usd": g["actual_usd"].sum(),
            "table_usd": g["table_usd"].sum(),
            "table_expected_quality": g["table_quality"].mean(),
        }
    ).reset_index()
    rep["savings_usd"] = rep["actual_usd"] - rep["table_usd"]
    rep["savings_pct"] = np.where(rep["actual_usd"] > 0, rep["savings_usd"] / rep["actual_usd"] * 100, 0.0)
    return rep[out_cols].round(
        {"actual_usd": 6, "table_usd": 6, "savings_usd": 6, "savings_pct": 2, "table_expected_quality": 4}
    )
