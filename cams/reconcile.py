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

import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import and_, func, insert, or_, select
from sqlalchemy.engine import Engine

from cams.config import ReconciliationConfig
from cams.costing import TOKEN_COLS, compute_costs, latest_day
from cams.pricing.book import PriceBook
from cams.progress import DayProgress
from cams.warehouse import schema as t
from cams.warehouse.db import WriteBehind, insert_frame, insert_rows, read_frames, replace_rows
from cams.warehouse.partitions import days_with_rows, replacing

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
    def from_config(cls, cfg: ReconciliationConfig) -> Tolerances:
        return cls(cfg.abs_tolerance_usd, cfg.rel_tolerance)

    def exceeded(self, charged: Any, cost: Any) -> Any:
        """Works on floats or numpy arrays."""
        return np.abs(charged - cost) > np.maximum(self.absolute_usd, self.relative * np.abs(cost))


def bare_model(name: pd.Series) -> pd.Series:
    """`gemini/gemini-2.5-flash` and `gemini-2.5-flash` name one model."""
    return name.fillna("").astype(str).str.replace(r"^.*/", "", regex=True)


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


def _first_spans(around: tuple[date, date]) -> Any:
    """Spans of the days around the window, numbered per request id by start (1 = the one that pairs)."""
    sp = t.auterity_spans
    rank = func.row_number().over(partition_by=sp.c.relaycore_request_id, order_by=(sp.c.start_time, sp.c.span_id))
    return (
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
            rank.label("rank"),
        )
        .where(and_(sp.c.day >= around[0], sp.c.day < around[1]))
        .subquery("spans")
    )


def paired_requests(first: date, last_exclusive: date) -> Any:
    """Each costed request of the window with its first span (if any): the join runs in the database."""
    ct = t.cost_tracking
    spans = _first_spans((first - timedelta(days=1), last_exclusive + timedelta(days=1)))
    first_span = select(spans).where(spans.c.rank == 1).subquery("first_span")
    fs = first_span.c
    return (
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
            fs.relaycore_request_id,
            *(fs[c].label(f"span_{c}") for c in (*TOKEN_COLS, "response_model", "span_id", "provider")),
        )
        .select_from(ct.outerjoin(first_span, fs.relaycore_request_id == ct.c.request_id))
        .where(and_(ct.c.day >= first, ct.c.day < last_exclusive))
    )


def orphan_spans(first: date, last_exclusive: date) -> Any:
    """Spans of the window whose request RelayCore never reported (that day ±1), or that name none.

    A request id's later spans pair with nothing: only its first span can be an orphan.
    """
    ru = t.relaycore_usage
    around = (first - timedelta(days=1), last_exclusive + timedelta(days=1))
    spans = _first_spans(around)
    s = spans.c
    # a left join, not NOT EXISTS under an OR: that one is probed row by row (quadratic on a day)
    known = (
        select(ru.c.request_id)
        .where(and_(ru.c.day >= around[0], ru.c.day < around[1]))
        .group_by(ru.c.request_id)
        .subquery("known")
    )
    return (
        select(*(c for c in s if c.name != "rank"))
        .select_from(spans.outerjoin(known, known.c.request_id == s.relaycore_request_id))
        .where(
            and_(
                s.day >= first,
                s.day < last_exclusive,
                or_(s.relaycore_request_id.is_(None), and_(s.rank == 1, known.c.request_id.is_(None))),
            )
        )
    )


def classify(paired: pd.DataFrame, book: PriceBook, tol: Tolerances) -> pd.DataFrame:
    """Category and dollars at risk of each request in `paired` (a chunk of `paired_requests`)."""
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
    # what the span says it used, priced: the difference the disagreement makes (only where they disagree)
    disputed = np.flatnonzero((category == "model_mismatch") | (category == "token_mismatch"))
    disagreement = np.zeros(len(paired))
    if len(disputed):
        rows = paired.iloc[disputed]
        as_seen = rows[["request_id", "timestamp", "service_tier", "provider", *TOKEN_COLS]].copy()
        as_seen["model"] = np.where(model_diff[disputed], rows["span_response_model"], rows["model"])
        for c in TOKEN_COLS:
            as_seen[c] = pd.to_numeric(rows[f"span_{c}"], errors="coerce").fillna(rows[c]).astype(np.int64)
        seen_cost = compute_costs(as_seen, book)["cost_usd"].to_numpy()
        disagreement[disputed] = np.abs(np.nan_to_num(seen_cost, nan=0.0) - np.nan_to_num(cost[disputed]))
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
    return pd.DataFrame(
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


def classify_orphans(orphans: pd.DataFrame, book: PriceBook) -> pd.DataFrame:
    """missing_in_relaycore rows for a chunk of `orphan_spans`: unbilled usage at price-book cost."""
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
    return pd.DataFrame(
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
    )


def reconcile_partition(
    engine: Engine,
    first: date,
    last_exclusive: date,
    book: PriceBook,
    tol: Tolerances,
    run_id: str | None = None,
    progress: DayProgress | None = None,
) -> ReconSummary:
    """Classify every request and span of [first, last_exclusive); replace those days' rows.

    The database pairs requests with spans and finds the orphans; each chunk of pairs is classified
    by numpy and written at once, so memory holds one chunk whatever the size of the day.
    """
    started = datetime.now(UTC)
    with engine.connect() as conn:  # the days with requests or spans get a partition
        days = sorted(
            {*days_with_rows(conn, t.cost_tracking, first, last_exclusive)}
            | {*days_with_rows(conn, t.auterity_spans, first, last_exclusive)}
        )
    cr, cs = t.cost_reconciliation, t.cost_reconciliation_summary
    window = and_(cr.c.day >= first, cr.c.day < last_exclusive)
    counts = dict.fromkeys(CATEGORIES, 0)
    at_risk = dict.fromkeys(CATEGORIES, 0.0)
    by_org: dict[Any, float] = {}
    spend, rows = 0.0, 0
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
        with replacing(conn, cr, first, last_exclusive, days) as target:  # the summary below reads the new days
            chunks = itertools.chain(
                ((classify(c, book, tol), c) for c in read_frames(conn, paired_requests(first, last_exclusive))),
                ((classify_orphans(c, book), None) for c in read_frames(conn, orphan_spans(first, last_exclusive))),
            )
            computed_at = datetime.now(UTC)
            with WriteBehind(conn) as writes:  # a chunk is written while the next one is read and classified
                for out, paired in chunks:
                    writes.submit(
                        insert_frame,
                        conn,
                        target.into,
                        out.assign(computed_at=computed_at)[[c.name for c in cr.columns]],
                    )
                    rows += len(out)
                    if progress is not None and paired is not None:  # requests come about in day order
                        progress.reached(latest_day(out["day"]), rows)
                    for c, n in out["category"].value_counts().items():
                        counts[str(c)] += int(n)
                    for c, v in out.groupby("category")["at_risk_usd"].sum().items():
                        at_risk[str(c)] += float(v)
                    for o, v in out.groupby("org_id", dropna=False)["at_risk_usd"].sum().items():
                        by_org[o] = by_org.get(o, 0.0) + float(v)
                    if paired is not None:
                        spend += float(np.nansum(pd.to_numeric(paired["cost_usd"], errors="coerce")))
        at_risk = {c: round(v, 6) for c, v in at_risk.items()}
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
                    "read": rows,
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
    top = sorted(by_org.items(), key=lambda kv: -kv[1])[:5]
    return ReconSummary(
        counts, at_risk, spend, rows, [{"org_id": o, "at_risk_usd": round(float(v), 4)} for o, v in top]
    )
