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
from cams.warehouse.db import read_frames

WINDOW_DAYS = 30


def savings(
    engine: Engine,
    table: dict[str, Any],
    book: PriceBook,
    as_of: datetime,
    tier: str = "standard",
    days: int = WINDOW_DAYS,
) -> pd.DataFrame:
    """Per org and team over the window: actual spend, the table's spend on the same requests, savings.

    The window (30 days of every costed request) is read a chunk at a time and summed per scope, so
    memory holds one chunk, not the month.
    """
    ct = t.cost_tracking
    cols = ["org_id", "team_id", "task_type", "model", "provider", "timestamp", "service_tier", "cost_usd", *TOKEN_COLS]
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
    choice = {r["task_type"]: r["candidates"][0] for r in table["rows"] if r["tier"] == tier and r["candidates"]}
    query = select(*(ct.c[c] for c in cols)).where(
        ct.c.day >= (as_of - timedelta(days=days)).date(),
        ct.c.day <= as_of.date(),
        ct.c.timestamp <= as_of,
        ct.c.unpriced.is_(False),
        ct.c.task_type.in_(sorted(choice)),
    )
    parts = []
    with engine.connect() as conn:
        for frame in read_frames(conn, query):
            parts.append(_scope_sums(frame, choice, book))
    if not parts:
        return pd.DataFrame(columns=out_cols)
    rep = pd.concat(parts).groupby(["org_id", "team_id"], dropna=False).sum().reset_index()
    rep["table_expected_quality"] = rep.pop("quality_sum") / rep["requests"]
    rep["savings_usd"] = rep["actual_usd"] - rep["table_usd"]
    rep["savings_pct"] = np.where(rep["actual_usd"] > 0, rep["savings_usd"] / rep["actual_usd"] * 100, 0.0)
    return rep[out_cols].round(
        {"actual_usd": 6, "table_usd": 6, "savings_usd": 6, "savings_pct": 2, "table_expected_quality": 4}
    )


def _scope_sums(frame: pd.DataFrame, choice: dict[str, Any], book: PriceBook) -> pd.DataFrame:
    """One chunk's sums per (org, team): requests, actual and table cost, and the table's quality summed."""
    frame["actual_usd"] = pd.to_numeric(frame["cost_usd"]).astype(float)
    task = frame["task_type"]
    alt = frame.assign(
        model=task.map({k: c["model"] for k, c in choice.items()}),
        provider=task.map({k: c["provider"] for k, c in choice.items()}),
    )
    frame["table_usd"] = compute_costs(alt, book)["cost_usd"].to_numpy()
    frame["quality_sum"] = task.map({k: float(c["expected_quality"]) for k, c in choice.items()}).astype(float)
    g = frame.groupby(["org_id", "team_id"], dropna=False)
    return pd.DataFrame(
        {
            "requests": g.size(),
            "actual_usd": g["actual_usd"].sum(),
            "table_usd": g["table_usd"].sum(),
            "quality_sum": g["quality_sum"].sum(),
        }
    )
