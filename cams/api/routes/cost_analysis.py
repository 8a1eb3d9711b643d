"""Cost analysis over the daily rollups: totals and breakdowns (model, provider, team, user, task,
steering rule, fallbacks), trends, and the savings report; JSON, or CSV with `Accept: text/csv`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import Engine, Integer, and_, func, select

from cams.api.deps import ApiError, auth, engine, org_filter
from cams.api.keys import ApiKey
from cams.api.rows import CSV_TOO, as_csv_if_asked, jsonable
from cams.money import exact
from cams.warehouse import schema as t

router = APIRouter(tags=["cost analysis"])
r = t.cost_daily_rollups
sr = t.steering_daily_rollups
COUNTS = ("requests", "errors", "input_tokens", "output_tokens", "unpriced_requests")
STEERING_MONEY = ("cost_usd", "charged_usd", "fallback_cost_usd")


def rollup_where(
    key: ApiKey, org: str | None, team: str | None, user: str | None, start: date | None, end: date | None
) -> Any:
    org = org_filter(key, org)
    clauses = []
    for col, val in ((r.c.org_id, org), (r.c.team_id, team), (r.c.user_id, user)):
        if val:
            clauses.append(col == val)
    if start:
        clauses.append(r.c.day >= start)
    if end:
        clauses.append(r.c.day <= end)
    return and_(*clauses) if clauses else True


def _money_cols() -> list[Any]:
    return [
        func.sum(r.c.requests).label("requests"),
        func.sum(r.c.errors).label("errors"),
        func.sum(r.c.input_tokens).label("input_tokens"),
        func.sum(r.c.output_tokens).label("output_tokens"),
        func.sum(r.c.cost_usd).label("cost_usd"),
        func.sum(r.c.charged_usd).label("charged_usd"),
        func.sum(r.c.unpriced_requests).label("unpriced_requests"),
    ]


def _fmt(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if k in ("cost_usd", "charged_usd"):
            out[k] = exact(v)
        elif k in COUNTS:
            out[k] = int(v or 0)
        else:
            out[k] = str(v) if isinstance(v, date) else v
    return out


def rollup_scope(
    org_id: str | None = None,
    team_id: str | None = None,
    user_id: str | None = None,
    start: date | None = None,
    end: date | None = None,
    key: ApiKey = Depends(auth("read")),
) -> Any:
    """The rollup rows the caller asked for and may read: an org (an org-bound key's own), team, user
    and an inclusive day range, as a WHERE clause."""
    if start and end and end < start:
        raise ApiError(422, "invalid_request", "end is before start")
    return rollup_where(key, org_id, team_id, user_id, start, end)


# the breakdowns the API serves (/cost-analysis/by-<name>) and the dashboard shows
BREAKDOWNS: dict[str, list[Any]] = {
    "model": [r.c.model],
    "provider": [r.c.provider],
    "team": [r.c.org_id, r.c.team_id],
    "user": [r.c.org_id, r.c.user_id],
    "task": [r.c.task_type],
}


def breakdown(db: Engine, where: Any, group: list[Any]) -> list[dict[str, Any]]:
    """Requests, tokens and dollars of the rollup rows `where` selects, per `group` (most spent first)."""
    stmt = select(*group, *_money_cols()).where(where)
    if group:
        stmt = stmt.group_by(*group).order_by(func.sum(r.c.cost_usd).desc(), *group)
    with db.connect() as conn:
        return [_fmt(dict(x)) for x in conn.execute(stmt).mappings()]


def analysis(group: list[Any]) -> Callable[..., Any]:
    def handler(request: Request, where: Any = Depends(rollup_scope), db: Engine = Depends(engine)) -> Any:
        rows = breakdown(db, where, group)
        return as_csv_if_asked(request, rows) or (rows if group else rows[0])

    return handler


router.get("/api/v1/cost-analysis/summary", responses=CSV_TOO)(analysis([]))
for _name, _group in BREAKDOWNS.items():
    router.get(f"/api/v1/cost-analysis/by-{_name}", responses=CSV_TOO)(analysis(_group))


def _steering(key: ApiKey, org_id: str | None, start: date | None, end: date | None, group: list[Any]) -> Any:
    org = org_filter(key, org_id)
    where = and_(
        sr.c.org_id == org if org else True, sr.c.day >= start if start else True, sr.c.day <= end if end else True
    )
    fb = func.cast(sr.c.fallback, Integer)
    return (
        select(
            *group,
            func.sum(sr.c.requests).label("requests"),
            func.sum(sr.c.requests * fb).label("fallback_requests"),
            func.sum(sr.c.cost_usd).label("cost_usd"),
            func.sum(sr.c.charged_usd).label("charged_usd"),
            func.sum(sr.c.cost_usd * fb).label("fallback_cost_usd"),
        )
        .where(where)
        .group_by(*group)
        .order_by(func.sum(sr.c.cost_usd).desc(), *group)
    )


def _steering_rows(db: Engine, stmt: Any) -> list[dict[str, Any]]:
    with db.connect() as conn:
        rows = [dict(x) for x in conn.execute(stmt).mappings()]
    out = []
    for row in rows:
        n, f = int(row["requests"] or 0), int(row["fallback_requests"] or 0)
        money = {k: exact(row[k]) for k in STEERING_MONEY}
        keys = {k: v for k, v in row.items() if k not in STEERING_MONEY and k not in ("requests", "fallback_requests")}
        out.append(
            {**keys, "requests": n, "fallback_requests": f, "fallback_rate": round(f / n, 4) if n else 0.0, **money}
        )
    return out


def steering(column: Any) -> Callable[..., Any]:
    def handler(
        request: Request,
        org_id: str | None = None,
        start: date | None = None,
        end: date | None = None,
        key: ApiKey = Depends(auth("read")),
        db: Engine = Depends(engine),
    ) -> Any:
        rows = _steering_rows(db, _steering(key, org_id, start, end, [column]))
        return as_csv_if_asked(request, rows) or rows

    return handler


for _path, _column, _doc in (
    (
        "by-steering-rule",
        sr.c.steering_rule,
        "Spend by RelayCore steering rule (`null`: none applied), with how often and at what cost it fell back.",
    ),
    (
        "fallbacks",
        sr.c.model_requested,
        "Per model asked for: requests, how many a fallback served (the rate), and what those cost.",
    ),
):
    router.get(f"/api/v1/cost-analysis/{_path}", responses=CSV_TOO, description=_doc)(steering(_column))


@router.get("/api/v1/cost-analysis/savings", responses=CSV_TOO)
def savings(
    request: Request,
    org_id: str | None = None,
    team_id: str | None = None,
    key: ApiKey = Depends(auth("read")),
    db: Engine = Depends(engine),
) -> Any:
    """The latest savings report (per org, and per team within it): what the last 30 days cost with
    the models used, against the same requests on the selection table's standard-tier choice."""
    sv = t.savings_report
    org = org_filter(key, org_id)
    q = select(sv).order_by(sv.c.org_id, sv.c.team_id.is_not(None), sv.c.team_id)
    q = q.where(sv.c.org_id == org) if org else q
    q = q.where(sv.c.team_id == team_id) if team_id else q
    with db.connect() as conn:
        rows = [jsonable(dict(x)) for x in conn.execute(q).mappings()]
    return as_csv_if_asked(request, rows) or rows


@router.get("/api/v1/cost-analysis/trends", responses=CSV_TOO)
def trends(
    request: Request,
    granularity: str = Query(default="day", pattern="^(day|week|month)$"),
    where: Any = Depends(rollup_scope),
    db: Engine = Depends(engine),
) -> Any:
    stmt = select(r.c.day, *_money_cols()).where(where)
    with db.connect() as conn:
        daily = [_fmt(dict(x)) for x in conn.execute(stmt.group_by(r.c.day).order_by(r.c.day)).mappings()]
    buckets: dict[str, dict[str, Any]] = {}
    for d in daily:
        day = date.fromisoformat(str(d["day"])[:10])
        key_ = {"day": day, "week": day - timedelta(days=day.weekday()), "month": day.replace(day=1)}[granularity]
        b = buckets.setdefault(
            key_.isoformat(),
            {"period_start": key_.isoformat(), "requests": 0, "cost_usd": Decimal(0), "charged_usd": Decimal(0)},
        )
        b["requests"] += d["requests"]
        b["cost_usd"] += Decimal(d["cost_usd"])
        b["charged_usd"] += Decimal(d["charged_usd"])
    rows = [{**b, "cost_usd": f"{b['cost_usd']:f}", "charged_usd": f"{b['charged_usd']:f}"} for b in buckets.values()]
    return as_csv_if_asked(request, rows) or rows
