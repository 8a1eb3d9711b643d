"""Cost analysis over the daily rollups: totals and breakdowns (model, provider, team, user, task,
steering rule, fallbacks), trends, the savings report and its recommendations; JSON, or CSV with
`Accept: text/csv`."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import Engine, Integer, and_, case, func, select

from cams.api.deps import ApiError, auth, engine, org_filter
from cams.api.keys import ApiKey
from cams.api.rows import CSV_TOO, as_csv_if_asked, jsonable
from cams.money import exact
from cams.selection.preferences import Preference
from cams.selection.store import preference_rows
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


SCOPES = {"org": ("org_id",), "team": ("org_id", "team_id"), "user": ("org_id", "team_id", "user_id")}


@router.get("/api/v1/cost-analysis/savings", responses=CSV_TOO)
def savings(
    request: Request,
    scope: str = Query(default="team", pattern="^(org|team|user)$"),
    counterfactual: str | None = Query(default=None, pattern="^(requested|always_standard|always_premium)$"),
    org_id: str | None = None,
    team_id: str | None = None,
    user_id: str | None = None,
    key: ApiKey = Depends(auth("read")),
    db: Engine = Depends(engine),
) -> Any:
    """The latest savings report per org, team or user (`scope`) and counterfactual: what the 30 days to
    its as-of cost with the models used (`actual_usd`) against the same requests on the model the gateway
    asked for (`requested`), on the table's standard choice (`always_standard`) or its premium choice
    (`always_premium`); `savings_usd` = counterfactual − actual (positive: spent less)."""
    sv = t.savings_report
    keys = [sv.c[k] for k in SCOPES[scope]]
    weight = func.sum(case((sv.c.counterfactual_quality.is_not(None), sv.c.requests), else_=0))
    q = select(
        *keys,
        sv.c.counterfactual,
        func.sum(sv.c.requests).label("requests"),
        func.sum(sv.c.actual_usd).label("actual_usd"),
        func.sum(sv.c.counterfactual_usd).label("counterfactual_usd"),
        (func.sum(sv.c.counterfactual_quality * sv.c.requests) / func.nullif(weight, 0)).label("quality"),
        func.max(sv.c.table_version).label("table_version"),
        func.max(sv.c.computed_at).label("computed_at"),
    )
    org = org_filter(key, org_id)
    for col, val in (
        (sv.c.org_id, org),
        (sv.c.team_id, team_id),
        (sv.c.user_id, user_id),
        (sv.c.counterfactual, counterfactual),
    ):
        if val:
            q = q.where(col == val)
    q = q.group_by(*keys, sv.c.counterfactual).order_by(*(k.is_not(None) for k in keys[1:]), *keys, sv.c.counterfactual)
    with db.connect() as conn:
        found = [dict(x) for x in conn.execute(q).mappings()]
    rows = []
    for x in found:
        actual, alt = Decimal(str(x["actual_usd"])), Decimal(str(x["counterfactual_usd"]))
        rows.append(
            jsonable(
                {
                    **{k: x[k] for k in SCOPES[scope]},
                    "counterfactual": x["counterfactual"],
                    "requests": int(x["requests"]),
                    "actual_usd": exact(actual),
                    "counterfactual_usd": exact(alt),
                    "savings_usd": exact(alt - actual),
                    "savings_pct": round(float((alt - actual) / actual * 100), 2) if actual else 0.0,
                    "counterfactual_quality": None if x["quality"] is None else round(float(x["quality"]), 4),
                    "table_version": x["table_version"],
                    "computed_at": x["computed_at"],
                }
            )
        )
    return as_csv_if_asked(request, rows) or rows


@router.get("/api/v1/cost-analysis/recommendations", responses=CSV_TOO)
def recommendations(
    request: Request,
    org_id: str | None = None,
    team_id: str | None = None,
    key: ApiKey = Depends(auth("read")),
    db: Engine = Depends(engine),
) -> Any:
    """Per org, team and task, biggest first: a model to move to that would have cost less on the same
    requests at no lower expected quality, with the evidence (the requests it rests on, the table row
    that explains the choice) and how to apply it: the Preferences API call that excludes the model now
    used for the scope (merged with the scope's preference as it stands)."""
    rc = t.savings_recommendations
    q = select(rc).order_by(rc.c.monthly_savings_usd.desc(), rc.c.org_id, rc.c.task_type)
    org = org_filter(key, org_id)
    q = q.where(rc.c.org_id == org) if org else q
    q = q.where(rc.c.team_id == team_id) if team_id else q
    with db.connect() as conn:
        found = [dict(x) for x in conn.execute(q).mappings()]
    prefs = {p["id"]: p for p in preference_rows(db, org)} if found else {}
    rows = []
    for x in found:
        pref = Preference(x["org_id"], x["team_id"])
        rows.append(
            jsonable(
                {
                    **{k: v for k, v in x.items() if k not in ("explanation_id",)},
                    "summary": (
                        f"{x['task_type']}: move from {x['from_model']} to {x['to_model']}, saves "
                        f"${Decimal(str(x['monthly_savings_usd'])):.2f} a month at expected quality {x['to_quality']} "
                        f"(now {x['from_quality']}), based on {x['requests']:,} requests"
                    ),
                    "evidence": {
                        "explanation_id": x["explanation_id"],
                        "explainer": f"/api/v1/explainer/{x['explanation_id']}",
                        "dashboard": f"/dashboard/explain/{x['explanation_id']}",
                    },
                    "apply": _apply(pref.key, x, prefs.get(pref.key)),
                }
            )
        )
    return as_csv_if_asked(request, rows) or rows


def _apply(scope: str, rec: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
    """The write that applies a recommendation: exclude the model now used, keeping the scope's other rules."""
    path = f"/api/v1/preferences/{rec['org_id']}" + (f"/teams/{rec['team_id']}" if rec["team_id"] else "")
    rules = {} if current is None else json.loads(current["preference_json"])
    rules.pop("org_id", None)
    rules.pop("team_id", None)
    rules["excluded_models"] = sorted({*rules.get("excluded_models", []), rec["from_model"]})
    allowed = [m for m in rules.pop("allowed_models", []) if m != rec["from_model"]]
    if allowed:  # an allowed list left empty would allow nothing: drop it, the exclusion says enough
        rules["allowed_models"] = allowed
    if current is not None and current["source"] == "yaml":
        return {"scope": scope, "managed_in": "cams.yaml", "preference": rules}
    return {"scope": scope, "method": "PUT", "path": path, "body": rules}


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
