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
have; negative, the counterfactual was cheaper. The month's requests are priced and summed in the database
(cams.pricing.rate_table, the same formula and rounding as cost_tracking); memory holds the groups.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Column, Connection, Engine, MetaData, String, Table, and_, case, delete, false, func, or_, select

from cams.costing import TOKEN_COLS
from cams.pricing.book import PriceBook
from cams.pricing.rate_table import NEVER, cost_expression, rate_match, rate_table, usd_sum
from cams.selection.table import TIER_ORDER
from cams.warehouse import schema as t
from cams.warehouse.db import insert_rows, lock_for_replace, temporary, tune_for_a_day

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


choices_table = Table(
    "cams_choices",
    MetaData(),
    Column("tier", String(20), nullable=False),
    Column("task_type", String(100), nullable=False),
    Column("model", String(512), nullable=False),
    Column("provider", String(512), nullable=False),
    prefixes=["TEMPORARY"],
)


def savings(
    engine: Engine,
    table: dict[str, Any],
    book: PriceBook,
    as_of: datetime,
    days: int = WINDOW_DAYS,
) -> Savings:
    """The report and the recommendations over the `days` up to `as_of`.

    Each request is priced four more times (the model asked for, each tier's choice for its task) in the
    database, by the same rate table and formula as cost_tracking, and summed per scope, task, model and
    model asked for: Python sees hundreds of groups, never the month's requests."""
    choices, qualities = _choices(table), _qualities(table)
    groups = _grouped_costs(engine, choices, book, as_of, days)
    if groups.empty:
        return Savings(pd.DataFrame(columns=REPORT_COLUMNS), pd.DataFrame(columns=RECOMMENDATION_COLUMNS))
    known = pd.Series(qualities, dtype=float) if qualities else pd.Series(dtype=float)
    asked_quality = known.reindex(pd.MultiIndex.from_arrays([groups["task_type"], groups["asked"]])).to_numpy()
    parts = [_part(groups, "requested", groups["requests"], groups["actual_usd"], groups["asked_usd"], asked_quality)]
    for tier in ("standard", "premium"):
        quality = groups["task_type"].map({k: float(c["expected_quality"]) for k, c in choices[tier].items()})
        kept = groups[f"{tier}_n"]
        parts.append(
            _part(groups, f"always_{tier}", kept, groups[f"{tier}_actual"], groups[f"{tier}_usd"], quality.to_numpy())
        )
    rep = pd.concat(parts).groupby([*SCOPE, "counterfactual"], dropna=False).sum().reset_index()
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
    first = pd.to_datetime(groups["first_day"]).min().date()
    covered = max(1, min(days, (as_of.date() - first).days + 1))
    keys = ["org_id", "team_id", "task_type", "model"]
    moves = groups[[*keys, "requests", "actual_usd", *(f"{tier}_usd" for tier in TIER_ORDER)]]
    return Savings(rep, _recommend(moves, choices, qualities, covered))


GROUP_KEYS = [*SCOPE, "task_type", "model", "asked"]
# the sums each group carries, in the order the query gives them (after the keys and the day)
SUMS = [
    "requests",
    "actual_usd",
    "asked_usd",
    *(f"{tier}_{what}" for tier in TIER_ORDER for what in ("n", "actual", "usd")),
]
CACHE_FORMAT = "savings-day-groups/2"  # part of every fingerprint: change it when what a day's sums mean changes


def _grouped_costs(
    engine: Engine, choices: dict[str, dict[str, dict[str, Any]]], book: PriceBook, as_of: datetime, days: int
) -> pd.DataFrame:
    """Per org × team × user × task × model × model asked for: requests, actual cost, the asked model's cost
    (the actual one where it has no price), and per tier the requests its choice prices, their actual cost
    and the choice's cost; and the first day with requests.

    Why per day, kept: the window is 30 days of every request priced four more times, and on a warehouse in
    use all but the newest day were priced the run before, at the same choices and prices. A complete day's
    sums are kept in `savings_day_groups` under a fingerprint of the table's choices and of the prices in
    force over the window's complete days (`_fingerprint`); a run prices the days it has no sums for at that
    fingerprint, and an as-of day whose end it has not reached. Costing a day again empties its sums."""
    first = (as_of - timedelta(days=days)).date()
    # the complete days: every instant of them is at or before the as-of (the default as-of, a day's last
    # microsecond, completes its day: tomorrow's run then prices only tomorrow)
    done = (as_of + timedelta(microseconds=1)).date()
    whole = [first + timedelta(days=i) for i in range((done - first).days)]
    picks = [
        {"tier": tier, "task_type": task, "model": c["model"], "provider": c["provider"]}
        for tier in TIER_ORDER
        for task, c in choices[tier].items()
    ]
    key = _fingerprint(picks, book, first, done)
    kept_t = t.savings_day_groups
    with engine.begin() as conn:
        # one savings run at a time reads and writes the kept sums (two would both price a day and keep it
        # twice); taken before cost_tracking is read, as costing takes it before its swap
        lock_for_replace(conn, kept_t)
        # days before the window will not be read again; and on SQLite this write takes the database's write
        # lock now, before anything is read (a reader that writes later fails when another wrote meanwhile)
        conn.execute(delete(kept_t).where(kept_t.c.day < first))
        tune_for_a_day(conn)
        kept_days = set(
            conn.execute(
                select(kept_t.c.day)
                .where(kept_t.c.fingerprint == key, kept_t.c.day >= first, kept_t.c.day < done)
                .distinct()
            ).scalars()
        )
        missing = [d for d in whole if d not in kept_days]
        ct = t.cost_tracking
        window = or_(
            ct.c.day.in_(missing) if missing else false(),
            and_(ct.c.day == as_of.date(), ct.c.day >= done, ct.c.timestamp <= as_of),  # an incomplete as-of day
        )
        fresh = _priced_groups(conn, picks, book, window)
        # the complete days just priced are kept (whatever was kept for them before goes)
        if missing:
            conn.execute(delete(kept_t).where(kept_t.c.day.in_(missing)))
        new = [dict(zip(["day", *GROUP_KEYS, *SUMS], r, strict=True)) for r in fresh if r[0] < done]
        insert_rows(conn, kept_t, [{**r, "fingerprint": key} for r in new])
        kept = conn.execute(
            select(kept_t.c.day, *(kept_t.c[c] for c in GROUP_KEYS), *(kept_t.c[c] for c in SUMS)).where(
                kept_t.c.fingerprint == key, kept_t.c.day.in_(sorted(kept_days)) if kept_days else false()
            )
        ).all()
    per_day = pd.DataFrame([*kept, *fresh], columns=["day", *GROUP_KEYS, *SUMS])
    for c in SUMS:
        per_day[c] = pd.to_numeric(per_day[c]).astype(float if not (c == "requests" or c.endswith("_n")) else "int64")
    # in key order, then day order, not a hash table's: the sums add up the same way whatever plan ran
    per_day = per_day.sort_values([*GROUP_KEYS, "day"], na_position="first", ignore_index=True)
    grouped = per_day.groupby(GROUP_KEYS, dropna=False, sort=False)
    frame = grouped[SUMS].sum(min_count=1).reset_index()
    frame["first_day"] = grouped["day"].min().to_numpy()
    for c in ("requests", *(f"{tier}_n" for tier in TIER_ORDER)):
        frame[c] = frame[c].fillna(0).astype("int64")
    return frame


def _fingerprint(picks: list[dict[str, str]], book: PriceBook, first: date, last: date) -> str:
    """What a complete day's sums in [first, last) depend on besides its requests: the table's choices and
    the prices in force over those days (each entry clipped to them: a price that takes effect later, or
    the end a later one puts to it, changes nothing kept), and the names the book knows (which decide how
    a model name resolves)."""
    lo = datetime(first.year, first.month, first.day, tzinfo=UTC)
    hi = datetime(last.year, last.month, last.day, tzinfo=UTC)
    digest = hashlib.sha256(CACHE_FORMAT.encode())
    digest.update(json.dumps(sorted((p["tier"], p["task_type"], p["model"], p["provider"]) for p in picks)).encode())
    for model in book.models:
        digest.update(model.encode() + b"\0")
        entries = book.entries(model)
        for i, e in enumerate(entries):
            ends = [x for x in (entries[i + 1].valid_from if i + 1 < len(entries) else None, e.valid_to) if x]
            end = min(ends) if ends else NEVER
            if e.valid_from < hi and end > lo:
                seen = (e.provider, e.mode, max(e.valid_from, lo), min(end, hi), sorted(e.prices.items()), e.source)
                digest.update(json.dumps(seen, default=str).encode())
    return digest.hexdigest()


def _priced_groups(conn: Connection, picks: list[dict[str, str]], book: PriceBook, window: Any) -> list[Any]:
    """(day, *GROUP_KEYS, *SUMS) for the priced requests `window` selects, summed in the database."""
    ct = t.cost_tracking
    window = and_(window, ct.c.unpriced.is_(False))
    asked = func.coalesce(ct.c.model_requested, ct.c.model)
    names = conn.execute(select(asked, ct.c.provider, ct.c.service_tier).where(window).distinct()).all()
    if not names:
        return []
    service_tiers = {n[2] for n in names}
    names += [(p["model"], p["provider"], s) for p in picks for s in service_tiers]
    with rate_table(conn, book, set(map(tuple, names))) as rates, temporary(conn, choices_table, picks) as ch:
        dialect = conn.dialect.name
        tokens = [ct.c[c] for c in TOKEN_COLS]
        at = (ct.c.service_tier, ct.c.timestamp, ct.c.input_tokens)
        actual = func.coalesce(ct.c.cost_usd, 0)
        ra = rates.alias("r_asked")
        asked_cost = cost_expression(ra, *tokens, dialect, money=False)
        # each request's costs once, in a subquery the planner keeps as it is (OFFSET 0): flattened, every
        # cost would be computed again for each aggregate that reads it (13 times a request, not 4)
        joined = ct.outerjoin(ra, rate_match(ra, asked, ct.c.provider, *at))
        per_request = [
            *(ct.c[c] for c in SCOPE),
            ct.c.task_type,
            ct.c.model,
            ct.c.day,
            asked.label("asked"),
            actual.label("actual"),
            func.coalesce(asked_cost, actual).label("asked_cost"),
        ]
        for tier in TIER_ORDER:  # the tier's choice for each task with its rates: one join a request, not two
            picked = and_(ch.c.tier == tier, ch.c.model == rates.c.model, ch.c.provider == rates.c.provider)
            r = select(rates, ch.c.task_type).join(ch, picked).subquery(f"r_{tier}")
            joined = joined.outerjoin(
                r, and_(r.c.task_type == ct.c.task_type, rate_match(r, r.c.model, r.c.provider, *at))
            )
            per_request.append(cost_expression(r, *tokens, dialect, money=False).label(f"{tier}_cost"))
        each = select(*per_request).select_from(joined).where(window).offset(0).subquery("each")
        keys = [each.c.day, *(each.c[c] for c in GROUP_KEYS)]
        sums = [
            func.count().label("requests"),
            func.sum(each.c.actual).label("actual_usd"),
            usd_sum(each.c.asked_cost, dialect).label("asked_usd"),
        ]
        for tier in TIER_ORDER:
            cost = each.c[f"{tier}_cost"]
            sums += [
                func.count(cost).label(f"{tier}_n"),
                func.sum(case((cost.is_not(None), each.c.actual))).label(f"{tier}_actual"),
                usd_sum(cost, dialect).label(f"{tier}_usd"),
            ]
        grouped = select(*keys, *sums).group_by(*keys)
        if dialect == "postgresql":
            # the groups are hundreds, but through the subquery the planner guesses a tenth of the rows
            # and sorts the whole window on disk instead of hashing (7 days of 1M: 45 s against 23 s)
            conn.exec_driver_sql("SET LOCAL enable_sort = off")
        return [tuple(r) for r in conn.execute(grouped).all()]


def _part(groups: pd.DataFrame, name: str, requests: Any, actual: Any, cost: Any, quality: np.ndarray) -> pd.DataFrame:
    """One counterfactual's rows for the report: groups with requests it prices, summed per scope later."""
    n = np.asarray(requests, dtype=np.int64)
    known = ~np.isnan(quality)
    part = groups[SCOPE].assign(
        requests=n,
        actual_usd=np.nan_to_num(np.asarray(actual, dtype=float)),
        counterfactual_usd=np.nan_to_num(np.asarray(cost, dtype=float)),
        quality_sum=np.where(known, np.nan_to_num(quality) * n, 0.0),
        quality_n=np.where(known, n, 0),
    )
    return part[n > 0].assign(counterfactual=name)


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
