"""Savings report and recommendations (SPEC §6): what each org, team and user spent over the window
against named counterfactuals on the very same requests (same tokens, same time, same price book),
and per scope and task which move would spend less at no lower expected quality.

Counterfactuals:

* `requested` — each request on the model the gateway asked for (RelayCore's `model_requested`; the
  served model when none was named or the asked-for model has no price then): what steering and
  fallbacks saved or cost.
* `always_standard`, `always_premium` — each request on the selection table's choice for its task at
  that tier: what a fixed policy would have cost.

`savings_usd` = counterfactual − actual: positive, the scope spent less than the counterfactual would
have; negative, the counterfactual was cheaper. The window is read a chunk at a time and summed per
scope, so memory holds one chunk, not the month.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from cams.costing import TOKEN_COLS, compute_costs
from cams.pricing.book import PriceBook
from cams.selection.table import TIER_ORDER
from cams.warehouse import schema as t
from cams.warehouse.db import read_frames

WINDOW_DAYS = 30
COUNTERFACTUALS = ("requested", "always_standard", "always_premium")
SCOPE = ["org_id", "team_id", "user_id"]
MIN_REQUESTS = 20  # a recommendation rests on at least this many requests of the scope, task and model
MIN_SHARE = 0.05  # and saves at least this share of what they cost
REPORT_COLUMNS = [
    *SCOPE,
    "counterfactual",
    "requests",
    "actual_usd",
    "counterfactual_usd",
    "savings_usd",
    "savings_pct",
    "counterfactual_quality",
]
RECOMMENDATION_COLUMNS = [
    "org_id",
    "team_id",
    "task_type",
    "from_model",
    "to_model",
    "tier",
    "requests",
    "actual_usd",
    "projected_usd",
    "monthly_savings_usd",
    "from_quality",
    "to_quality",
]


@dataclass(frozen=True)
class Savings:
    report: pd.DataFrame  # REPORT_COLUMNS, per org × team × user × counterfactual
    recommendations: pd.DataFrame  # RECOMMENDATION_COLUMNS, per org × team × task × model now used


def _choices(table: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """tier -> task -> the table's first candidate."""
    out: dict[str, dict[str, dict[str, Any]]] = {tier: {} for tier in TIER_ORDER}
    for r in table["rows"]:
        if r["candidates"] and r["tier"] in out:
            out[r["tier"]][r["task_type"]] = r["candidates"][0]
    return out


def _qualities(table: dict[str, Any]) -> dict[tuple[str, str], float]:
    """(task, model) -> the table's expected quality (the same at every tier), for scored models."""
    out: dict[tuple[str, str], float] = {}
    for r in table["rows"]:
        for c in (*r["candidates"], *r["rejected"]):
            out[(r["task_type"], c["model"])] = float(c["expected_quality"])
    return out


def savings(
    engine: Engine,
    table: dict[str, Any],
    book: PriceBook,
    as_of: datetime,
    days: int = WINDOW_DAYS,
) -> Savings:
    """The report and the recommendations over the `days` up to `as_of`."""
    ct = t.cost_tracking
    cols = [*SCOPE, "task_type", "model", "model_requested", "provider", "timestamp", "service_tier", "cost_usd"]
    query = select(*(ct.c[c] for c in [*cols, *TOKEN_COLS])).where(
        ct.c.day >= (as_of - timedelta(days=days)).date(),
        ct.c.day <= as_of.date(),
        ct.c.timestamp <= as_of,
        ct.c.unpriced.is_(False),
    )
    choices, qualities = _choices(table), _qualities(table)
    reports, moves = [], []
    with engine.connect() as conn:
        for frame in read_frames(conn, query):
            report, move = _chunk_sums(frame, choices, qualities, book)
            reports.append(report)
            moves.append(move)
    if not reports:
        return Savings(pd.DataFrame(columns=REPORT_COLUMNS), pd.DataFrame(columns=RECOMMENDATION_COLUMNS))
    rep = pd.concat(reports).groupby([*SCOPE, "counterfactual"], dropna=False).sum().reset_index()
    rep["counterfactual_quality"] = np.where(
        rep["quality_n"] > 0, rep["quality_sum"] / rep["quality_n"].clip(1), np.nan
    )
    rep["savings_usd"] = rep["counterfactual_usd"] - rep["actual_usd"]
    rep["savings_pct"] = np.where(
        rep["actual_usd"] > 0, rep["savings_usd"] / rep["actual_usd"].where(rep["actual_usd"] > 0, 1) * 100, 0.0
    )
    rep = rep[REPORT_COLUMNS].round(
        {"actual_usd": 6, "counterfactual_usd": 6, "savings_usd": 6, "savings_pct": 2, "counterfactual_quality": 4}
    )
    covered = max(1, min(days, (as_of.date() - _first_day(moves)).days + 1)) if moves else days
    return Savings(rep, _recommend(pd.concat(moves), choices, qualities, covered))


def _first_day(moves: list[pd.DataFrame]) -> Any:
    return min(m["first_day"].min() for m in moves if len(m))


def _chunk_sums(
    frame: pd.DataFrame,
    choices: dict[str, dict[str, dict[str, Any]]],
    qualities: dict[tuple[str, str], float],
    book: PriceBook,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One chunk's sums: per scope and counterfactual (report), and per org × team × task × model with
    each tier choice's cost of the same requests (recommendations)."""
    actual = pd.to_numeric(frame["cost_usd"]).astype(float).to_numpy()
    task = frame["task_type"]
    parts = []
    asked = frame["model_requested"].where(frame["model_requested"].notna(), frame["model"])
    asked_cost = compute_costs(frame.assign(model=asked), book)["cost_usd"].to_numpy()
    asked_cost = np.where(np.isnan(asked_cost), actual, asked_cost)  # no price for what was asked: no saving
    known = pd.Series(qualities, dtype=float) if qualities else pd.Series(dtype=float)
    asked_quality = known.reindex(pd.MultiIndex.from_arrays([task, asked])).to_numpy(dtype=float)
    parts.append(_sums(frame, "requested", np.ones(len(frame), bool), actual, asked_cost, asked_quality))
    tier_cost: dict[str, np.ndarray] = {}
    for tier in TIER_ORDER:
        choice = choices[tier]
        model = task.map({k: c["model"] for k, c in choice.items()})
        has = model.notna().to_numpy()
        cost = np.full(len(frame), np.nan)
        if has.any():
            alt = frame.assign(model=model, provider=task.map({k: c["provider"] for k, c in choice.items()}))
            cost[has] = compute_costs(alt[has], book)["cost_usd"].to_numpy()
        tier_cost[tier] = cost
        if tier != "economy":
            quality = task.map({k: float(c["expected_quality"]) for k, c in choice.items()}).astype(float).to_numpy()
            parts.append(_sums(frame, f"always_{tier}", has & ~np.isnan(cost), actual, cost, quality))
    keys = ["org_id", "team_id", "task_type", "model"]
    per_model = frame[keys].assign(
        requests=1,
        actual_usd=actual,
        first_day=pd.to_datetime(frame["timestamp"], utc=True).dt.date,
        **{f"{tier}_usd": tier_cost[tier] for tier in TIER_ORDER},
    )
    g = per_model.groupby(keys, dropna=False)
    move = g[["requests", "actual_usd", *(f"{tier}_usd" for tier in TIER_ORDER)]].sum(min_count=1)
    move["first_day"] = g["first_day"].min()
    return pd.concat(parts), move.reset_index()


def _sums(
    frame: pd.DataFrame, name: str, keep: np.ndarray, actual: np.ndarray, cost: np.ndarray, quality: np.ndarray
) -> pd.DataFrame:
    part = frame.loc[keep, SCOPE].assign(
        requests=1,
        actual_usd=actual[keep],
        counterfactual_usd=cost[keep],
        quality_sum=np.nan_to_num(quality[keep]),
        quality_n=(~np.isnan(quality[keep])).astype(int),
    )
    out = part.groupby(SCOPE, dropna=False).sum().reset_index()
    return out.assign(counterfactual=name)


def _recommend(
    moves: pd.DataFrame,
    choices: dict[str, dict[str, dict[str, Any]]],
    qualities: dict[tuple[str, str], float],
    covered_days: int,
) -> pd.DataFrame:
    """Per org × team × task × model now used: the cheapest tier choice of at least that model's expected
    quality, when it would have cost at least MIN_SHARE less on the same requests (MIN_REQUESTS or more)."""
    keys = ["org_id", "team_id", "task_type", "model"]
    cost_cols = [f"{tier}_usd" for tier in TIER_ORDER]
    moves = moves.groupby(keys, dropna=False)[["requests", "actual_usd", *cost_cols]].sum(min_count=1).reset_index()
    out = []
    for m in moves.itertuples(index=False):  # one row per scope, task and model: hundreds, not requests
        floor = qualities.get((m.task_type, m.model))
        if floor is None or m.requests < MIN_REQUESTS or not m.actual_usd > 0:
            continue
        best = None
        for tier in TIER_ORDER:
            c = choices[tier].get(m.task_type)
            projected = getattr(m, f"{tier}_usd")
            if c is None or c["model"] == m.model or c["expected_quality"] < floor or pd.isna(projected):
                continue
            if best is None or projected < best[1]:
                best = (tier, float(projected), c)
        if best is None or best[1] > m.actual_usd * (1 - MIN_SHARE):
            continue
        tier, projected, c = best
        out.append(
            {
                "org_id": m.org_id,
                "team_id": None if pd.isna(m.team_id) else m.team_id,
                "task_type": m.task_type,
                "from_model": m.model,
                "to_model": c["model"],
                "tier": tier,
                "requests": int(m.requests),
                "actual_usd": round(float(m.actual_usd), 6),
                "projected_usd": round(projected, 6),
                "monthly_savings_usd": round((float(m.actual_usd) - projected) * 30 / covered_days, 6),
                "from_quality": round(floor, 4),
                "to_quality": round(float(c["expected_quality"]), 4),
            }
        )
    rec = pd.DataFrame(out, columns=RECOMMENDATION_COLUMNS)
    return rec.sort_values("monthly_savings_usd", ascending=False, ignore_index=True)
