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
from sqlalchemy import (
    Column,
    Double,
    MetaData,
    Select,
    String,
    Table,
    and_,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.engine import Engine

from cams.config import ReconciliationConfig
from cams.costing import TOKEN_COLS, costed_requests
from cams.pricing.book import PriceBook
from cams.pricing.rate_table import cost_expression, rate_match, rate_table, rounded_usd
from cams.progress import DayProgress
from cams.warehouse import schema as t
from cams.warehouse.db import COUNTED, bytewise, insert_rows, replace_rows, temporary, tune_for_a_day
from cams.warehouse.partitions import DAY_STATISTICS_TARGET, days_with_rows, replacing

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


def bare_model(name: Any) -> Any:
    """`gemini/gemini-2.5-flash` and `gemini-2.5-flash` name one model: what follows the last '/'.

    In SQL both backends understand: rtrim() with every character of the name but '/' leaves the prefix up
    to the last '/' (or nothing), and the name after that prefix is the bare model."""
    name = func.coalesce(name, "")
    return func.substr(name, func.length(func.rtrim(name, func.replace(name, "/", ""))) + 1)


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


SPAN_COLS = (
    "day",
    "span_id",
    "start_time",
    "relaycore_request_id",
    "org_id",
    "provider",
    "request_model",
    "response_model",
    *TOKEN_COLS,
)
first_spans_table = Table(
    "cams_first_spans",
    MetaData(),
    *(Column(c, t.auterity_spans.c[c].type) for c in SPAN_COLS),
    prefixes=["TEMPORARY"],
)


def _first_spans(around: tuple[date, date], dialect: str) -> Select:
    """Of the spans of the days `around` that name a request, each request's first (by start, then id, in
    byte order): the one that pairs with it. Later spans of a request pair with nothing and are never
    orphans. PostgreSQL keeps the first row of each request of one sort (DISTINCT ON, 1.6 s for a
    million spans against 3.0 s for ranking them all); SQLite ranks them."""
    sp = t.auterity_spans
    around_days = and_(sp.c.day >= around[0], sp.c.day < around[1], sp.c.relaycore_request_id.is_not(None))
    order = (bytewise(sp.c.relaycore_request_id), sp.c.start_time, bytewise(sp.c.span_id))
    if dialect == "postgresql":
        return select(*(sp.c[c] for c in SPAN_COLS)).where(around_days).distinct(order[0]).order_by(*order)
    rank = func.row_number().over(partition_by=sp.c.relaycore_request_id, order_by=order[1:])
    ranked = select(*(sp.c[c] for c in SPAN_COLS), rank.label("rank")).where(around_days).subquery("ranked")
    return select(*(ranked.c[c] for c in SPAN_COLS)).where(ranked.c.rank == 1)


OUT = [c.name for c in t.cost_reconciliation.columns if c.name != "computed_at"]


def _paired(rates: Table, first: Table, tol: Tolerances, day: date, dialect: str) -> Select:
    """The cost_reconciliation rows (columns OUT) of `day`'s requests, each priced as costing prices it
    (`costed_requests`: the landed requests joined to the same rate table, the same formula) and with its
    first span if any (`first`, cams_first_spans): paired, classified and priced in the database. Read
    from the landing, not from cost_tracking, so reconciliation runs beside costing instead of after it."""
    ct, fs = costed_requests(dialect, rates, day).subquery("ct"), first.c
    has_span = fs.relaycore_request_id.is_not(None)
    model_diff = and_(
        has_span,
        fs.response_model.is_not(None),
        ct.c.model != fs.response_model,  # the cheap test first: most requests name their model as the span does
        bare_model(ct.c.model) != bare_model(fs.response_model),
    )
    token_diff = and_(has_span, or_(*(and_(fs[c].is_not(None), fs[c] != ct.c[c]) for c in COMPARED_TOKENS)))
    charged, cost = cast(ct.c.charged_usd, Double), func.coalesce(cast(ct.c.cost_usd, Double), 0.0)
    allowed = func.abs(cost) * tol.relative
    cost_diff = and_(
        charged.is_not(None),
        func.abs(charged - cost) > case((allowed > tol.absolute_usd, allowed), else_=tol.absolute_usd),
    )
    pairs = (
        select(
            *(ct.c[c] for c in ("day", "request_id", "org_id", "model", "provider", "service_tier", "timestamp")),
            *(ct.c[c] for c in TOKEN_COLS),
            ct.c.charged_usd,
            ct.c.cost_usd,
            charged.label("charged"),
            cost.label("cost"),
            fs.response_model.label("span_model"),
            fs.span_id,
            *(fs[c].label(f"span_{c}") for c in TOKEN_COLS),
            case(
                (ct.c.unpriced, "unpriced"),
                (~has_span, "missing_in_auterity"),
                (model_diff, "model_mismatch"),
                (token_diff, "token_mismatch"),
                (cost_diff, "cost_mismatch"),
                else_="matched",
            ).label("category"),
        )
        .select_from(ct.outerjoin(first, fs.relaycore_request_id == ct.c.request_id))
        .offset(0)  # a fence: the category is worked out once per request, not wherever it is used below
        .subquery("pairs")
    )
    p = pairs.c
    # what the span says it used (its model where they differ, its token counts where it has them), priced
    # by a lookup run only for the requests in dispute
    seen = rates.alias("seen")
    seen_tokens = [func.coalesce(p[f"span_{c}"], p[c]) for c in TOKEN_COLS]
    seen_model = case((p.category == "model_mismatch", p.span_model), else_=p.model)
    seen_cost = (
        select(cost_expression(seen, *seen_tokens, dialect, money=False))
        .where(rate_match(seen, seen_model, p.provider, p.service_tier, p.timestamp, seen_tokens[0]))
        .scalar_subquery()
    )
    at_risk = case(
        (p.category == "unpriced", func.coalesce(p.charged, 0.0)),
        (p.category == "missing_in_auterity", func.coalesce(p.charged, p.cost)),
        (p.category == "cost_mismatch", func.abs(p.charged - p.cost)),
        (p.category.in_(["model_mismatch", "token_mismatch"]), func.abs(func.coalesce(seen_cost, 0.0) - p.cost)),
        else_=0.0,
    )
    return select(
        *(p[c] for c in ("day", "request_id", "category", "org_id", "model", "span_model", "span_id")),
        p.input_tokens.label("relaycore_input_tokens"),
        p.span_input_tokens.label("auterity_input_tokens"),
        p.output_tokens.label("relaycore_output_tokens"),
        p.span_output_tokens.label("auterity_output_tokens"),
        p.charged_usd,
        p.cost_usd,
        # a matched request (most of a day) risks nothing: its zero is not rounded through text a million times
        case(
            (p.category == "matched", rounded_usd(literal(0.0, Double), dialect)), else_=rounded_usd(at_risk, dialect)
        ).label("at_risk_usd"),
    )


def _orphans(rates: Table, first: Table, day: date, dialect: str) -> Select:
    """missing_in_relaycore rows (columns OUT) of `day`: spans whose request RelayCore never reported (that
    day ±1), or that name none, with their usage at the price book's cost (standard tier)."""
    ru, sp = t.relaycore_usage, t.auterity_spans
    around = (day - timedelta(days=1), day + timedelta(days=2))
    around_days = and_(ru.c.day >= around[0], ru.c.day < around[1])
    if dialect == "postgresql":  # a hash anti-join: 1.1 s a million spans (grouping the ids first: 2.2-2.5 s)
        billed = exists().where(around_days, ru.c.request_id == first.c.relaycore_request_id)
        unknown = select(first).where(first.c.day == day, ~billed)
    else:  # SQLite would probe a NOT EXISTS by scanning the days' requests for each span: a join it indexes
        known = select(ru.c.request_id).where(around_days).group_by(ru.c.request_id).subquery("known")
        unknown = select(first).select_from(first.outerjoin(known, known.c.request_id == first.c.relaycore_request_id))
        unknown = unknown.where(first.c.day == day, known.c.request_id.is_(None))
    nameless = select(*(sp.c[c] for c in SPAN_COLS)).where(sp.c.day == day, sp.c.relaycore_request_id.is_(None))
    spans = union_all(unknown, nameless).subquery("orphans")
    s = spans.c
    model = func.coalesce(s.response_model, s.request_model, "")
    tokens = [func.coalesce(s[c], 0) for c in TOKEN_COLS]
    unbilled = rates.alias("unbilled")
    cost = cost_expression(unbilled, *tokens, dialect, money=False)
    nothing = null()
    return select(
        s.day,
        func.coalesce(s.relaycore_request_id, literal("span:", String) + s.span_id).label("request_id"),
        literal("missing_in_relaycore", String).label("category"),
        s.org_id,
        nothing.label("model"),
        model.label("span_model"),
        s.span_id,
        nothing.label("relaycore_input_tokens"),
        tokens[0].label("auterity_input_tokens"),
        nothing.label("relaycore_output_tokens"),
        tokens[1].label("auterity_output_tokens"),
        nothing.label("charged_usd"),
        nothing.label("cost_usd"),
        rounded_usd(func.coalesce(cost, 0.0), dialect).label("at_risk_usd"),
    ).select_from(
        spans.outerjoin(
            unbilled, rate_match(unbilled, model, func.coalesce(s.provider, ""), "standard", s.start_time, tokens[0])
        )
    )


def _rate_names(conn: Any, first: date, last_exclusive: date) -> set[tuple[str, str, str]]:
    """Every (model, provider, service tier) reconciliation may price: the requests' own, and each model a
    span names with each provider and tier of the requests (or a span's provider at the standard tier)."""
    ru, sp = t.relaycore_usage, t.auterity_spans
    window = and_(ru.c.day >= first, ru.c.day < last_exclusive)
    around = and_(sp.c.day >= first - timedelta(days=1), sp.c.day < last_exclusive + timedelta(days=1))
    own = conn.execute(select(ru.c.model, ru.c.provider, ru.c.service_tier).where(window).distinct()).all()
    named = conn.execute(select(sp.c.response_model, sp.c.request_model, sp.c.provider).where(around).distinct()).all()
    models = {row[0] for row in own} | {m for row in named for m in row[:2] if m} | {""}
    where = {(row[1], row[2]) for row in own}
    where |= {(row[2] or "", "standard") for row in named}
    return {(m, p, tier) for m in models for p, tier in where}


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

    The database pairs requests with spans, finds the orphans, classifies and prices them (the price
    book's rates in a rate table, cams.pricing.rate_table), a day per statement: no request travels
    through Python. The requests are read as landed and priced as costing prices them, so this needs the
    landings and the price book, not cost_tracking.
    """
    started = datetime.now(UTC)
    with engine.connect() as conn:  # the days with requests or spans get a partition
        days = sorted(
            {*days_with_rows(conn, t.relaycore_usage, first, last_exclusive)}
            | {*days_with_rows(conn, t.auterity_spans, first, last_exclusive)}
        )
    cr, cs = t.cost_reconciliation, t.cost_reconciliation_summary
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
        .where(and_(cr.c.day >= first, cr.c.day < last_exclusive))
        .group_by(cr.c.day, cr.c.org_id, cr.c.model, cr.c.category)
    )
    computed_at = literal(datetime.now(UTC), t.Ts).label("computed_at")
    with engine.begin() as conn:
        tune_for_a_day(conn)
        dialect, rows = conn.dialect.name, 0
        with (
            rate_table(conn, book, _rate_names(conn, first, last_exclusive)) as rates,
            replacing(conn, cr, first, last_exclusive, days) as target,
        ):
            for day in days:
                with temporary(conn, first_spans_table, []) as firsts:  # each request's first span, day ±1
                    spans = _first_spans((day - timedelta(days=1), day + timedelta(days=2)), dialect)
                    conn.execute(insert(firsts).from_select(list(SPAN_COLS), spans))
                    if dialect == "postgresql":  # a million rows the planner would otherwise take for a few
                        conn.exec_driver_sql(f"SET LOCAL default_statistics_target = {DAY_STATISTICS_TARGET}")
                        conn.exec_driver_sql("ANALYZE cams_first_spans")
                        conn.exec_driver_sql("SET LOCAL default_statistics_target TO DEFAULT")
                    else:  # SQLite joins by nested loops: without it pairing is quadratic (158 s for 50k)
                        conn.exec_driver_sql(
                            "CREATE INDEX cams_first_spans_request ON cams_first_spans (relaycore_request_id)"
                        )
                    for query in (_paired(rates, firsts, tol, day, dialect), _orphans(rates, firsts, day, dialect)):
                        rows += conn.execute(
                            insert(target.into).from_select([*OUT, "computed_at"], query.add_columns(computed_at)),
                            execution_options=COUNTED,
                        ).rowcount
                if progress is not None:
                    progress.reached(day, rows)
        replace_rows(conn, cs, and_(cs.c.day >= first, cs.c.day < last_exclusive), [])
        conn.execute(insert(cs).from_select(names, agg))
        counts = dict.fromkeys(CATEGORIES, 0)
        at_risk = dict.fromkeys(CATEGORIES, 0.0)
        by_org: dict[Any, float] = {}
        spend, rows = 0.0, 0
        for category, org, n, risk, cost in conn.execute(
            select(
                cs.c.category, cs.c.org_id, func.sum(cs.c.requests), func.sum(cs.c.at_risk_usd), func.sum(cs.c.cost_usd)
            )
            .where(and_(cs.c.day >= first, cs.c.day < last_exclusive))
            .group_by(cs.c.category, cs.c.org_id)
        ):
            counts[str(category)] += int(n)
            at_risk[str(category)] += float(risk or 0)
            by_org[org] = by_org.get(org, 0.0) + float(risk or 0)
            spend += float(cost or 0)
            rows += int(n)
        at_risk = {c: round(v, 6) for c, v in at_risk.items()}
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
