"""Budgets in the warehouse: sync configs, read scope spend, evaluate every budget, publish status."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import Engine, Table, and_, func, or_, select

from cams.budgets.evaluate import MONEY, BudgetStatus, crossed_thresholds, evaluate
from cams.budgets.forecast import HISTORY_DAYS
from cams.budgets.model import Budget, parse_budget
from cams.budgets.periods import period_window
from cams.costing import QUARTER_SECONDS
from cams.warehouse import schema as t
from cams.warehouse.db import epoch_bucket, replace_rows, sync_config_rows

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _row(b: Budget, source: str, now: datetime) -> dict[str, Any]:
    return {
        "id": b.id,
        "name": b.name,
        "scope": b.scope,
        "scope_id": b.scope_id,
        "org_id": b.org_id,
        "period": b.period,
        "amount_usd": b.amount_usd,
        "timezone": b.timezone,
        "config_json": json.dumps(b.as_dict(), sort_keys=True),
        "source": source,
        "created_at": now,
        "updated_at": now,
    }


def sync_yaml_budgets(engine: Engine, budgets: list[Budget]) -> dict[str, int]:
    """cams.yaml is the truth for its budgets: upsert them, drop YAML budgets no longer listed.

    Budgets created through the API are left alone; an id in both is owned by YAML.
    """
    now = datetime.now(UTC)
    counts = sync_config_rows(engine, t.budget_configs, [_row(b, "yaml", now) for b in budgets], "config_json")
    return {"budgets": len(budgets), **counts}


def load_budgets(engine: Engine) -> list[Budget]:
    with engine.connect() as conn:
        rows = conn.execute(select(t.budget_configs.c.config_json).order_by(t.budget_configs.c.id)).scalars().all()
    return [parse_budget(json.loads(r)) for r in rows]


def _scope_filter(b: Budget, table: Table = t.cost_tracking):  # type: ignore[no-untyped-def]
    clause = table.c.org_id == b.org_id
    if b.scope == "team":
        clause = and_(clause, table.c.team_id == b.scope_id)
    elif b.scope == "user":
        clause = and_(clause, table.c.user_id == b.scope_id)
    return clause


def scope_costs(engine: Engine, b: Budget, start: datetime, end: datetime) -> pd.DataFrame:
    """(timestamp, cost) of the scope's spend in [start, end), as sums per quarter hour (`timestamp` is the
    quarter hour's start, UTC). An unpriced request counts at RelayCore's charge, so a missing price never
    hides spend.

    Why sums: a month of an org's requests as rows was the whole period in Python memory (an org of half a
    million requests a day: 15 million rows at the month's end), and even summed in the database a scan
    of them. The whole quarter hours come from spend_quarter_hours (written with each costed day); the
    two partial ones at the window's ends from cost_tracking, cut at the exact instants. A quarter hour
    lies wholly in one local day, and a period starts at a local midnight, in every zone whose offset is
    whole quarter hours; any other zone's spend is summed per second from cost_tracking, exact as well.
    """
    sq = t.spend_quarter_hours
    step = timedelta(seconds=QUARTER_SECONDS)
    if not _quarter_hours(b.timezone, start, end):
        return _summed(engine, b, [(start, end)], 1)
    first, last = -((EPOCH - start) // step), (end - EPOCH) // step  # the whole quarter hours: [first, last)
    if first >= last:
        return _summed(engine, b, [(start, end)], QUARTER_SECONDS)
    edges = [(start, EPOCH + first * step), (EPOCH + last * step, end)]
    whole = (
        select(sq.c.quarter, func.sum(sq.c.spend_usd))
        .where(
            sq.c.scope == b.scope,
            _scope_filter(b, sq),
            sq.c.day >= (EPOCH + first * step).date(),
            sq.c.day <= (EPOCH + last * step).date(),
            sq.c.quarter >= first,
            sq.c.quarter < last,
        )
        .group_by(sq.c.quarter)
    )
    with engine.connect() as conn:
        rows = conn.execute(whole).all()
    parts = [
        p for p in (pd.DataFrame(rows, columns=["bucket", "cost"]), _sums(engine, b, edges, QUARTER_SECONDS)) if len(p)
    ]
    return _frame(pd.concat(parts) if parts else pd.DataFrame(columns=["bucket", "cost"]), QUARTER_SECONDS)


def _sums(engine: Engine, b: Budget, windows: list[tuple[datetime, datetime]], seconds: int) -> pd.DataFrame:
    """(bucket, cost): the scope's cost_tracking spend in the windows, summed per `seconds`."""
    ct = t.cost_tracking
    windows = [(s, e) for s, e in windows if s < e]
    if not windows:
        return pd.DataFrame(columns=["bucket", "cost"])
    bucket = epoch_bucket(ct.c.timestamp, seconds).label("bucket")
    stmt = (
        select(bucket, func.sum(func.coalesce(ct.c.cost_usd, ct.c.charged_usd, 0)).label("cost"))
        .where(
            _scope_filter(b),
            or_(
                *(
                    and_(
                        ct.c.day >= s.date() - timedelta(days=1),
                        ct.c.day <= e.date(),
                        ct.c.timestamp >= s,
                        ct.c.timestamp < e,
                    )
                    for s, e in windows
                )
            ),
        )
        .group_by(bucket)
    )
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(stmt).all(), columns=["bucket", "cost"])


def _summed(engine: Engine, b: Budget, windows: list[tuple[datetime, datetime]], seconds: int) -> pd.DataFrame:
    return _frame(_sums(engine, b, windows, seconds), seconds)


def _frame(sums: pd.DataFrame, seconds: int) -> pd.DataFrame:
    """(timestamp, cost) from (bucket, cost) sums of `seconds`-long stretches."""
    return pd.DataFrame(
        {
            "timestamp": pd.to_datetime(sums["bucket"].astype("int64") * seconds, unit="s", utc=True),
            "cost": pd.to_numeric(sums["cost"]).astype(float),
        }
    )


def _quarter_hours(zone: str, start: datetime, end: datetime) -> bool:
    """Whether the zone's offset is whole quarter hours at both ends of the window (DST moves it by
    whole quarter hours in between)."""
    tz = ZoneInfo(zone)
    return all(
        (off := moment.astimezone(tz).utcoffset()) is not None and off.total_seconds() % QUARTER_SECONDS == 0
        for moment in (start, end)
    )


def evaluate_budget(engine: Engine, b: Budget, as_of: datetime) -> BudgetStatus:
    period = period_window(b.period, b.timezone, as_of)
    history_start = min(period[0], as_of - timedelta(days=HISTORY_DAYS + 1))
    costs = scope_costs(engine, b, history_start, as_of)
    spent = float(costs.loc[costs["timestamp"] >= period[0], "cost"].sum())
    local = costs["timestamp"].dt.tz_convert(b.timezone).dt.date
    today = as_of.astimezone(ZoneInfo(b.timezone)).date()
    by_day = costs.groupby(local)["cost"].sum()
    history: dict[date, float] = {d: float(v) for d, v in by_day.items() if d < today}
    first_day = min(history) if history else today
    for i in range((today - first_day).days):  # days with no spend are days of zero spend
        history.setdefault(first_day + timedelta(days=i), 0.0)
    return evaluate(b, period, as_of, spent, history, float(by_day.get(today, 0.0)))


def evaluate_all(engine: Engine, as_of: datetime) -> list[BudgetStatus]:
    """Evaluate every budget and replace budget_status with the results."""
    statuses = [evaluate_budget(engine, b, as_of) for b in load_budgets(engine)]
    now = datetime.now(UTC)
    rows = [
        {
            "budget_id": s.budget.id,
            "scope": s.budget.scope,
            "scope_id": s.budget.scope_id,
            "org_id": s.budget.org_id,
            "period_start": s.period_start,
            "period_end": s.period_end,
            "as_of": s.as_of,
            "amount_usd": s.budget.amount_usd,
            "spent_usd": s.spent_usd,
            "forecast_usd": s.forecast_usd,
            "percent_used": s.percent_used,
            "forecast_percent": s.forecast_percent,
            "state": s.state,
            "action": s.action,
            "projected_exhaustion_at": s.projected_exhaustion_at,
            "evaluated_at": now,
        }
        for s in statuses
    ]
    with engine.begin() as conn:
        replace_rows(conn, t.budget_status, t.budget_status.c.budget_id.is_not(None), rows)
    return statuses


def published_statuses(engine: Engine) -> list[BudgetStatus]:
    """The statuses budget_status last published, with their crossed thresholds."""
    bs = t.budget_status
    budgets = {b.id: b for b in load_budgets(engine)}
    with engine.connect() as conn:
        rows = conn.execute(select(bs)).mappings().all()
    out = []
    for r in rows:
        b = budgets.get(r["budget_id"])
        if b is None:
            continue
        pct, fpct = float(r["percent_used"]), float(r["forecast_percent"])
        crossed = crossed_thresholds(b, pct, fpct)
        out.append(
            BudgetStatus(
                budget=b,
                period_start=_utc(r["period_start"]),
                period_end=_utc(r["period_end"]),
                as_of=_utc(r["as_of"]),
                spent_usd=Decimal(str(r["spent_usd"])).quantize(MONEY),
                forecast_usd=Decimal(str(r["forecast_usd"])).quantize(MONEY),
                percent_used=pct,
                forecast_percent=fpct,
                state=r["state"],
                action=r["action"],
                projected_exhaustion_at=_utc(r["projected_exhaustion_at"]) if r["projected_exhaustion_at"] else None,
                crossed=crossed,
                daily_rate_usd=0.0,
            )
        )
    return out


def _utc(value: Any) -> datetime:
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
