"""Reconcile RelayCore against Auterity and the price book, one request at a time (SPEC §4).

Every request of a day lands in exactly one category, first match wins:

1. missing_in_relaycore — a span whose relaycore.request_id has no RelayCore record (that day ±1)
2. unpriced             — no price in force for the model: the charge cannot be checked
3. missing_in_auterity  — a RelayCore record with no span
4. model_mismatch       — RelayCore's `model` differs from the span's gen_ai.response.model
5. token_mismatch       — input, output, cached or reasoning tokens differ (where the span reports them)
6. cost_mismatch        — RelayCore's charge differs from the price book beyond the tolerances
7. matched

Dollars at risk: the charge that cannot be verified (unpriced, missing_in_auterity), the price-book
cost of unbilled usage (missing_in_relaycore), |charge − price book| (cost_mismatch), and the
price-book difference the disagreement makes (model_mismatch, token_mismatch).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, and_, func, insert, select

from cams.costing import TOKEN_COLS, compute_costs
from cams.pricing.book import PriceBook
from cams.warehouse import schema as t
from cams.warehouse.db import insert_frame, insert_rows, read_frame, replace_rows

CATEGORIES = (
    "matched",
    "missing_in_auterity",
    "missing_in_relaycore",
    "token_mismatch",
    "model_mismatch",
    "cost_mismatch",
    "unpriced",
)
COMPARED_TOKENS = ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens")


@dataclass(frozen=True)
class Tolerances:
    """A charge is a cost_mismatch when |charge − price book| > max(absolute_usd, relative × price book)."""

    absolute_usd: float = 0.0001
    relative: float = 0.01

    @classmethod
    def from_config(cls, raw: dict[str, Any]) -> Tolerances:
        return cls(float(raw.get("abs_tolerance_usd", cls.absolute_usd)), float(raw.get("rel_tolerance", cls.relative)))

    def exceeded(self, charged: Any, cost: Any) -> Any:
        """Works on floats or numpy arrays."""
        return np.abs(charged - cost) > np.maximum(self.absolute_usd, self.relative * np.abs(cost))


def bare_model(name: pd.Series) -> pd.Series:
    """`gemini/gemini-2.5-flash` and `gemini-2.5-flash` name one model."""
    return name.fillna("").astype(str).str.split("/").str[-1]


@dataclass
class ReconSummary:
    counts: dict[str, int]
    at_risk_usd: dict[str, float]
    spend_usd: float
    rows: int
    by_org: list[dict[str, Any]] = field(default_factory=list)

    @property
    def at_risk_total(self) -> float:
        return float(sum(self.at_risk_usd.values()))


def _frame(engine: Engine, stmt: Any) -> pd.DataFrame:
    with engine.connect() as conn:
        return read_frame(conn, stmt)


def classify(
    requests: pd.DataFrame, spans: pd.DataFrame, known_ids: set[str], book: PriceBook, tol: Tolerances
) -> pd.DataFrame:
    """One row per request (and per orphan span) with its category and dollars at risk."""
    spans = spans.sort_values(["start_time", "span_id"]).drop_duplicates("relaycore_request_id", keep="first")
    span_cols = {c: f"span_{c}" for c in (*TOKEN_COLS, "response_model", "span_id", "provider")}
    paired = requests.merge(
        spans.rename(columns=span_cols)[["relaycore_request_id", *span_cols.values()]],
        how="left",
        left_on="request_id",
        right_on="relaycore_request_id",
    )
    has_span = paired["relaycore_request_id"].notna().to_numpy()
    charged = pd.to_numeric(paired["charged_usd"], errors="coerce").astype(float).to_numpy()
    cost = pd.to_numeric(paired["cost_usd"], errors="coerce").astype(float).to_numpy()
    unpriced = paired["unpriced"].astype(bool).to_numpy()
    model_diff = (
        has_span
        & paired["span_response_model"].notna().to_numpy()
        & (bare_model(paired["model"]).to_numpy() != bare_model(paired["span_response_model"]).to_numpy())
    )
    token_diff = np.zeros(len(paired), dtype=bool)
    for c in COMPARED_TOKENS:
        theirs = pd.to_numeric(paired[f"span_{c}"], errors="coerce")
        token_diff |= (has_span & theirs.notna() & (theirs != paired[c])).to_numpy()
    cost_diff = ~unpriced & ~np.isnan(charged) & tol.exceeded(np.nan_to_num(charged), np.nan_to_num(cost))
    category = np.select(
        [unpriced, ~has_span, model_diff, token_diff, cost_diff],
        ["unpriced", "missing_in_auterity", "model_mismatch", "token_mismatch", "cost_mismatch"],
        default="matched",
    )
    # what the span says it used, priced: the difference the disagreement makes
    as_seen = paired[["request_id", "timestamp", "service_tier", "provider", *TOKEN_COLS]].copy()
    as_seen["model"] = np.where(model_diff, paired["span_response_model"], paired["model"])
    for c in TOKEN_COLS:
        as_seen[c] = pd.to_numeric(paired[f"span_{c}"], errors="coerce").fillna(paired[c]).astype(np.int64)
    seen_cost = compute_costs(as_seen, book)["cost_usd"].to_numpy()
    disagreement = np.abs(np.nan_to_num(seen_cost, nan=0.0) - np.nan_to_num(cost))
    at_risk = np.select(
        [
            category == "unpriced",
            category == "missing_in_auterity",
            category == "cost_mismatch",
            (category == "model_mismatch") | (category == "token_mismatch"),
        ],
        [np.nan_to_num(charged), np.nan_to_num(charged, nan=np.nan_to_num(cost)), np.abs(charged - cost), disagreement],
        default=0.0,
    )
    out = pd.DataFrame(
        {
            "day": paired["day"],
            "request_id": paired["request_id"],
            "category": category,
            "org_id": paired["org_id"],
            "model": paired["model"],
            "span_model": paired["span_response_model"],
            "span_id": paired["span_span_id"],
            "relaycore_input_tokens": paired["input_tokens"],
            "auterity_input_tokens": paired["span_input_tokens"],
            "relaycore_output_tokens": paired["output_tokens"],
            "auterity_output_tokens": paired["span_output_tokens"],
            "charged_usd": charged,
            "cost_usd": cost,
            "at_risk_usd": np.round(at_risk, 10),
        }
    )
    orphans = spans[~spans["relaycore_request_id"].isin(known_ids) | spans["relaycore_request_id"].isna()]
    if len(orphans):
        priced = orphans.assign(
            request_id=orphans["relaycore_request_id"].fillna("span:" + orphans["span_id"]),
            timestamp=orphans["start_time"],
            model=orphans["response_model"].fillna(orphans["request_model"]),
            provider=orphans["provider"].fillna(""),
            service_tier="standard",
            **{c: pd.to_numeric(orphans[c], errors="coerce").fillna(0).astype(np.int64) for c in TOKEN_COLS},
        )
        priced["model"] = priced["model"].fillna("")
        ocost = compute_costs(priced, book)["cost_usd"].to_numpy()
        out = pd.concat(
            [
                out,
                pd.DataFrame(
                    {
                        "day": priced["day"],
                        "request_id": priced["request_id"],
                        "category": "missing_in_relaycore",
                        "org_id": priced["org_id"],
                        "model": None,
                        "span_model": priced["model"],
                        "span_id": priced["span_id"],
                        "relaycore_input_tokens": None,
                        "auterity_input_tokens": priced["input_tokens"],
                        "relaycore_output_tokens": None,
                        "auterity_output_tokens": priced["output_tokens"],
                        "charged_usd": np.nan,
                        "cost_usd": np.nan,
                        "at_risk_usd": np.round(np.nan_to_num(ocost), 10),
                    }
                ),
            ],
            ignore_index=True,
        )
    return out


def reconcile_partition(
    engine: Engine, first: date, last_exclusive: date, book: PriceBook, tol: Tolerances, run_id: str | None = None
) -> ReconSummary:
    """Classify every request and span of [first, last_exclusive); replace those days' rows."""
    started = datetime.now(UTC)
    ct, sp, ru = t.cost_tracking, t.auterity_spans, t.relaycore_usage
    requests = _frame(
        engine,
        select(
            ct.c.day,
            ct.c.request_id,
            ct.c.timestamp,
            ct.c.org_id,
            ct.c.model,
            ct.c.provider,
            ct.c.service_tier,
            *(ct.c[c] for c in TOKEN_COLS),
            ct.c.cost_usd,
            ct.c.charged_usd,
            ct.c.unpriced,
        ).where(and_(ct.c.day >= first, ct.c.day < last_exclusive)),
    )
    # spans of the day before and after pair too (a request at 23:59:59 may start its span after midnight)
    around = (first - timedelta(days=1), last_exclusive + timedelta(days=1))
    spans = _frame(
        engine,
        select(
            sp.c.day,
            sp.c.span_id,
            sp.c.start_time,
            sp.c.relaycore_request_id,
            sp.c.org_id,
            sp.c.provider,
            sp.c.request_model,
            sp.c.response_model,
            *(sp.c[c] for c in TOKEN_COLS),
        ).where(and_(sp.c.day >= around[0], sp.c.day < around[1])),
    )
    with engine.connect() as conn:
        known = set(
            conn.execute(select(ru.c.request_id).where(and_(ru.c.day >= around[0], ru.c.day < around[1]))).scalars()
        )
    out = classify(requests, spans, known, book, tol)
    # an orphan span is counted on its own day, so only this window's
    day = pd.to_datetime(out["day"]).dt.date
    out = out[(out["category"] != "missing_in_relaycore") | ((day >= first) & (day < last_exclusive))]
    out = out.assign(computed_at=datetime.now(UTC))
    cr, cs = t.cost_reconciliation, t.cost_reconciliation_summary
    window = and_(cr.c.day >= first, cr.c.day < last_exclusive)
    counts = {c: int((out["category"] == c).sum()) for c in CATEGORIES}
    at_risk = {c: round(float(out.loc[out["category"] == c, "at_risk_usd"].sum()), 6) for c in CATEGORIES}
    spend = float(np.nansum(pd.to_numeric(requests.get("cost_usd"), errors="coerce"))) if len(requests) else 0.0
    names = ["day", "org_id", "model", "category", "requests", "charged_usd", "cost_usd", "at_risk_usd"]
    agg = (
        select(
            cr.c.day,
            cr.c.org_id,
            cr.c.model,
            cr.c.category,
            func.count(),
            func.coalesce(func.sum(cr.c.charged_usd), 0),
            func.coalesce(func.sum(cr.c.cost_usd), 0),
            func.sum(cr.c.at_risk_usd),
        )
        .where(window)
        .group_by(cr.c.day, cr.c.org_id, cr.c.model, cr.c.category)
    )
    with engine.begin() as conn:
        replace_rows(conn, cr, window, [])
        insert_frame(conn, cr, out[[c.name for c in cr.columns]])
        replace_rows(conn, cs, and_(cs.c.day >= first, cs.c.day < last_exclusive), [])
        conn.execute(insert(cs).from_select(names, agg))
        insert_rows(
            conn,
            t.cost_sync_history,
            [
                {
                    "source": "reconciliation",
                    "window_start": datetime(first.year, first.month, first.day, tzinfo=UTC),
                    "window_end": datetime(last_exclusive.year, last_exclusive.month, last_exclusive.day, tzinfo=UTC),
                    "mode": "warehouse",
                    "read": len(out),
                    "accepted": counts["matched"],
                    "duplicates": 0,
                    "quarantined": 0,
                    "status": "success",
                    "run_id": run_id,
                    "started_at": started,
                    "finished_at": datetime.now(UTC),
                    "detail": json.dumps({"counts": counts, "at_risk_usd": at_risk}),
                }
            ],
        )
    by_org = out.groupby("org_id", dropna=False)["at_risk_usd"].sum().sort_values(ascending=False).head(5)
    return ReconSummary(
        counts, at_risk, spend, len(out), [{"org_id": o, "at_risk_usd": round(float(v), 4)} for o, v in by_org.items()]
    )
