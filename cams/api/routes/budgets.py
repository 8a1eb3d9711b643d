"""Budgets through the API: list, create, read, replace, delete, and a budget's published status.
Budgets from cams.yaml are listed beside them and are changed in cams.yaml."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy import Engine, delete, insert, select

from cams.api.deps import ApiError, auth, engine, org_filter, same_org, service
from cams.api.keys import ApiKey
from cams.api.rows import jsonable
from cams.budgets.model import BudgetError, allowed_channels, parse_budget
from cams.budgets.store import _row as budget_row
from cams.config import CamsConfig
from cams.warehouse import schema as t

router = APIRouter(tags=["budgets"])
bc = t.budget_configs


def _budget(db: Engine, budget_id: str, key: ApiKey) -> dict[str, Any]:
    with db.connect() as conn:
        row = conn.execute(select(bc).where(bc.c.id == budget_id)).mappings().first()
    if row is None or (key.org_id is not None and row["org_id"] != key.org_id):
        raise ApiError(404, "not_found", f"no budget {budget_id!r}")
    return dict(row)


def _out(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **json.loads(row["config_json"]),
        "source": row["source"],
        **jsonable({"created_at": row["created_at"], "updated_at": row["updated_at"]}),
    }


def _parse(body: dict[str, Any], config: CamsConfig) -> Any:
    """A budget body, validated, whose channels reach only hosts (and name only secrets) cams.yaml allows."""
    try:
        b = parse_budget(body)
        allowed_channels(b, config)
    except BudgetError as exc:
        raise ApiError(422, "invalid_budget", str(exc)) from None
    return b


def create(db: Engine, config: CamsConfig, key: ApiKey, body: dict[str, Any]) -> dict[str, Any]:
    """A new budget written through the API or the dashboard: validated, in the key's org, a new id."""
    b = _parse(body, config)
    same_org(key, b.org_id)
    with db.begin() as conn:
        found = conn.execute(select(bc.c.org_id).where(bc.c.id == b.id)).first()
        if found and key.org_id is not None and found.org_id != key.org_id:
            # another org's budget: say nothing of it (SPEC §7: 404, not 409)
            raise ApiError(404, "not_found", f"budget id {b.id!r} cannot be created; choose another id")
        if found:
            raise ApiError(409, "conflict", f"budget {b.id!r} exists; PUT to change it")
        conn.execute(insert(bc).values(**budget_row(b, "api", datetime.now(UTC))))
    return _out(budget_row(b, "api", datetime.now(UTC)))


def replace(db: Engine, config: CamsConfig, key: ApiKey, budget_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """A budget written through the API replaced whole (those from cams.yaml change in cams.yaml)."""
    old = _budget(db, budget_id, key)
    if old["source"] == "yaml":
        raise ApiError(409, "conflict", "this budget is managed in cams.yaml; change it there")
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_budget", "a budget is a JSON object")
    b = _parse({**body, "id": budget_id}, config)
    same_org(key, b.org_id)
    row = budget_row(b, "api", datetime.now(UTC))
    row["created_at"] = old["created_at"]
    with db.begin() as conn:
        conn.execute(delete(bc).where(bc.c.id == budget_id))
        conn.execute(insert(bc).values(**row))
    return _out(row)


@router.get("/api/v1/budgets/{budget_id}/status")
def budget_status(budget_id: str, key: ApiKey = Depends(auth("read")), db: Engine = Depends(engine)) -> dict[str, Any]:
    bs = t.budget_status
    with db.connect() as conn:
        row = conn.execute(select(bs).where(bs.c.budget_id == budget_id)).mappings().first()
    if row is None or (key.org_id is not None and row["org_id"] != key.org_id):
        raise ApiError(404, "not_found", "no such budget status")
    return jsonable(dict(row))


@router.get("/api/v1/budgets")
def list_budgets(
    org_id: str | None = None, key: ApiKey = Depends(auth("read")), db: Engine = Depends(engine)
) -> list[dict[str, Any]]:
    org = org_filter(key, org_id)
    q = select(bc).order_by(bc.c.id)
    q = q.where(bc.c.org_id == org) if org else q
    with db.connect() as conn:
        return [_out(dict(r)) for r in conn.execute(q).mappings()]


@router.post("/api/v1/budgets", status_code=201)
def create_budget(
    body: dict[str, Any],
    key: ApiKey = Depends(auth("write")),
    db: Engine = Depends(engine),
    svc: Any = Depends(service),
) -> dict[str, Any]:
    return create(db, svc.config, key, body)


@router.get("/api/v1/budgets/{budget_id}")
def get_budget(budget_id: str, key: ApiKey = Depends(auth("read")), db: Engine = Depends(engine)) -> dict[str, Any]:
    return _out(_budget(db, budget_id, key))


@router.put("/api/v1/budgets/{budget_id}")
def put_budget(
    budget_id: str,
    body: dict[str, Any],
    key: ApiKey = Depends(auth("write")),
    db: Engine = Depends(engine),
    svc: Any = Depends(service),
) -> dict[str, Any]:
    return replace(db, svc.config, key, budget_id, body)


@router.delete("/api/v1/budgets/{budget_id}", status_code=204)
def delete_budget(budget_id: str, key: ApiKey = Depends(auth("write")), db: Engine = Depends(engine)) -> None:
    old = _budget(db, budget_id, key)
    if old["source"] == "yaml":
        raise ApiError(409, "conflict", "this budget is managed in cams.yaml; remove it there")
    with db.begin() as conn:
        conn.execute(delete(bc).where(bc.c.id == budget_id))
