"""Model cost profiles: read the price book, and write dated prices (custom models, new prices,
withdrawals) that the book applies from their `valid_from`. The price-update webhook writes through
`write_prices` too."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, func, select

from cams.api.deps import ApiError, auth, engine, service
from cams.api.keys import ApiKey
from cams.api.rows import jsonable
from cams.config import ConfigError
from cams.pricing import store as pricebook_store
from cams.pricing.book import PricingConfigError
from cams.warehouse import schema as t

router = APIRouter(tags=["models"])
mcp = t.model_cost_profiles
profile_cols = [c for c in mcp.c if c.name not in ("prices_json", "capabilities_json")]


class ModelPrice(BaseModel):
    """A price written through the API: the fields of a cams.yaml `pricing.overrides` entry."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, min_length=1, max_length=512)
    provider: str | None = Field(default=None, min_length=1, max_length=100)
    mode: Literal["chat", "responses", "embedding", "completion"] | None = None
    valid_from: datetime | None = Field(default=None, description="default now; a past time needs a backfill")
    input_cost_per_token: Decimal | None = Field(default=None, ge=0, le=1)
    output_cost_per_token: Decimal | None = Field(default=None, ge=0, le=1)
    cache_read_input_token_cost: Decimal | None = Field(default=None, ge=0, le=1)
    cache_creation_input_token_cost: Decimal | None = Field(default=None, ge=0, le=1)
    output_cost_per_reasoning_token: Decimal | None = Field(default=None, ge=0, le=1)
    max_input_tokens: int | None = Field(default=None, ge=1, le=100_000_000)
    supports_vision: bool | None = None
    supports_function_calling: bool | None = None


def _profile(row: Any) -> dict[str, Any]:
    d = jsonable(dict(row))
    d["prices"] = json.loads(row["prices_json"])
    d["capabilities"] = json.loads(row["capabilities_json"])
    d.pop("prices_json", None)
    d.pop("capabilities_json", None)
    return d


def rebuild(db: Engine, svc: Any, extra: list[dict[str, Any]] | None = None) -> Any:
    """The price book from the snapshot, cams.yaml and the API's overrides (+ `extra`), not yet stored."""
    try:
        return pricebook_store.current_book(db, svc.config.pricing, extra or [])
    except (PricingConfigError, ConfigError, ValueError) as exc:
        raise ApiError(422, "invalid_price", str(exc)[:500]) from None


def _publish(db: Engine, svc: Any, book: Any) -> None:
    pricebook_store.store(db, book)
    svc.book = book


def _global_writer(key: ApiKey) -> None:
    if key.org_id is not None:
        raise ApiError(403, "forbidden", "prices are global: an org-bound key cannot change them")


def override(model: str, body: ModelPrice) -> dict[str, Any]:
    """A dated price as cams.yaml would hold it: the one shape the API and the webhook write."""
    fields = body.model_dump(exclude_none=True, exclude={"model", "valid_from"})
    if not any(k.endswith(("_cost_per_token", "_token_cost")) for k in fields):
        raise ApiError(422, "invalid_price", "send at least one price, e.g. input_cost_per_token")
    out = {k: f"{v:f}" if isinstance(v, Decimal) else v for k, v in fields.items()}
    out["model"] = model
    out["valid_from"] = (body.valid_from or datetime.now(UTC)).isoformat()
    return out


def write_prices(db: Engine, svc: Any, overrides: list[dict[str, Any]], writer: str | None) -> None:
    book = rebuild(db, svc, overrides)
    for o in overrides:
        pricebook_store.add_override(db, o, writer)
    _publish(db, svc, book)


def _write_price(db: Engine, svc: Any, model: str, body: ModelPrice, key: ApiKey) -> dict[str, Any]:
    _global_writer(key)
    write_prices(db, svc, [override(model, body)], key.id)
    with db.connect() as conn:
        rows = conn.execute(select(mcp).where(mcp.c.model == model).order_by(mcp.c.valid_from)).mappings().all()
    return {
        "model": model,
        "profiles": [_profile(r) for r in rows],
        "note": "new requests are costed at this price from valid_from on; costs already computed keep "
        "their price_id — backfill cost_tracking to recompute a past range",
    }


@router.get("/api/v1/models")
def list_models(
    provider: str | None = None,
    q: str | None = Query(default=None, max_length=200),
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0, le=1_000_000_000),
    key: ApiKey = Depends(auth("read")),
    db: Engine = Depends(engine),
) -> dict[str, Any]:
    stmt = select(*profile_cols).where(mcp.c.retired_at.is_(None))
    if provider:
        stmt = stmt.where(mcp.c.provider == provider)
    if q:
        stmt = stmt.where(mcp.c.model.contains(q, autoescape=True))
    with db.connect() as conn:
        rows = conn.execute(stmt.order_by(mcp.c.model, mcp.c.valid_from).limit(limit).offset(offset)).mappings()
        return {"models": [jsonable(dict(r)) for r in rows], "limit": limit, "offset": offset}


@router.get("/api/v1/models/{model_id:path}")
def get_model(model_id: str, key: ApiKey = Depends(auth("read")), db: Engine = Depends(engine)) -> dict[str, Any]:
    with db.connect() as conn:
        rows = conn.execute(select(mcp).where(mcp.c.model == model_id).order_by(mcp.c.valid_from)).mappings().all()
    if not rows:
        raise ApiError(404, "not_found", f"no price profile for {model_id!r}")
    return {"model": model_id, "profiles": [_profile(r) for r in rows]}


@router.post("/api/v1/models", status_code=201)
def create_model(
    body: ModelPrice, key: ApiKey = Depends(auth("admin")), db: Engine = Depends(engine), svc: Any = Depends(service)
) -> dict[str, Any]:
    """A price from `valid_from` (default now): a new custom model, or a new price for a known one."""
    if not body.model:
        raise ApiError(422, "invalid_request", "model is required")
    return _write_price(db, svc, body.model, body, key)


@router.put("/api/v1/models/{model_id:path}")
def put_model(
    model_id: str,
    body: ModelPrice,
    key: ApiKey = Depends(auth("admin")),
    db: Engine = Depends(engine),
    svc: Any = Depends(service),
) -> dict[str, Any]:
    """A new price for a model the book knows, effective from `valid_from` (default now)."""
    if body.model not in (None, model_id):
        raise ApiError(422, "invalid_request", "the body's model differs from the path's")
    with db.connect() as conn:
        known = conn.execute(select(func.count()).select_from(mcp).where(mcp.c.model == model_id)).scalar_one()
    if not known:
        raise ApiError(404, "not_found", f"no price profile for {model_id!r}; POST /api/v1/models creates one")
    return _write_price(db, svc, model_id, body, key)


@router.delete("/api/v1/models/{model_id:path}", status_code=204)
def delete_model(
    model_id: str, key: ApiKey = Depends(auth("admin")), db: Engine = Depends(engine), svc: Any = Depends(service)
) -> None:
    """Withdraw the prices written for this model through the API (snapshot and cams.yaml stay)."""
    _global_writer(key)
    if pricebook_store.delete_overrides(db, model_id) == 0:
        raise ApiError(
            404,
            "not_found",
            f"no API-written price for {model_id!r}; snapshot and cams.yaml prices change in cams.yaml",
        )
    _publish(db, svc, rebuild(db, svc))
