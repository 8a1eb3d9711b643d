"""Explanations of recorded selections: by request id or explanation id, the recent decisions and
their statistics. Each read flushes the history written so far, so a decision just made is there."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import Engine, func, select

from cams.api.deps import ApiError, auth, engine, service
from cams.api.keys import ApiKey
from cams.api.rows import jsonable
from cams.warehouse import schema as t

router = APIRouter(tags=["explainer"])
ex, mh = t.model_selection_explanations, t.model_selection_history


def _flushed(key: ApiKey = Depends(auth("read")), svc: Any = Depends(service)) -> ApiKey:
    """The caller's key, once the history spooled so far has reached the warehouse."""
    svc.flush()
    return key


@router.get("/api/v1/explainer/request/{request_id}")
def explain_request(request_id: str, key: ApiKey = Depends(_flushed), db: Engine = Depends(engine)) -> dict[str, Any]:
    q = select(ex).where(ex.c.request_id == request_id, ex.c.kind == "selection")
    if key.org_id:
        q = q.where(ex.c.org_id == key.org_id)
    with db.connect() as conn:
        row = conn.execute(q.order_by(ex.c.created_at.desc())).mappings().first()
    if row is None:
        raise ApiError(404, "not_found", f"no selection recorded for request {request_id!r}")
    return {
        "id": row["id"],
        "request_id": request_id,
        "table_version": row["table_version"],
        "explanation": json.loads(row["explanation_json"]),
    }


@router.get("/api/v1/explainer/recent")
def recent(
    limit: int = Query(default=20, ge=1, le=500), key: ApiKey = Depends(_flushed), db: Engine = Depends(engine)
) -> list[dict]:
    q = select(mh).order_by(mh.c.selected_at.desc()).limit(limit)
    if key.org_id:
        q = q.where(mh.c.org_id == key.org_id)
    with db.connect() as conn:
        return [jsonable(dict(x)) for x in conn.execute(q).mappings()]


@router.get("/api/v1/explainer/stats")
def stats(key: ApiKey = Depends(_flushed), db: Engine = Depends(engine)) -> dict[str, Any]:
    where = mh.c.org_id == key.org_id if key.org_id else True
    with db.connect() as conn:
        by = {
            name: {str(k): int(n) for k, n in conn.execute(select(col, func.count()).where(where).group_by(col)).all()}
            for name, col in (
                ("by_model", mh.c.model),
                ("by_budget_state", mh.c.budget_state),
                ("by_binding_constraint", mh.c.binding_constraint),
                ("by_served_tier", mh.c.served_tier),
            )
        }
        total = conn.execute(select(func.count(), func.sum(mh.c.estimated_cost_usd)).where(where)).one()
    return {"decisions": int(total[0]), "estimated_cost_usd": f"{Decimal(str(total[1] or 0)):f}", **by}


@router.get("/api/v1/explainer/{explanation_id}")
def explainer(explanation_id: str, key: ApiKey = Depends(_flushed), db: Engine = Depends(engine)) -> dict[str, Any]:
    with db.connect() as conn:
        row = conn.execute(select(ex).where(ex.c.id == explanation_id)).mappings().first()
    if row is None or (key.org_id is not None and row["org_id"] not in (None, key.org_id)):
        raise ApiError(404, "not_found", "no such explanation")
    return {
        "id": row["id"],
        "kind": row["kind"],
        "table_version": row["table_version"],
        "org_id": row["org_id"],
        "request_id": row["request_id"],
        "explanation": json.loads(row["explanation_json"]),
    }
