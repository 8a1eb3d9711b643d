"""Signed webhooks (SPEC §2.3): cost-data and budget-alert events are stored once per event id for the
sensors to land; a model-cost-update is a dated price, applied as the Models API applies one."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Header, Request
from sqlalchemy import Engine, insert, select

from cams import signing
from cams.api.deps import ApiError, engine, service
from cams.api.routes.models import ModelPrice, override, rebuild, write_prices
from cams.sources.contracts import unstorable
from cams.warehouse import schema as t

router = APIRouter(tags=["webhooks"])
WEBHOOK_KINDS = ("cost-data", "budget-alert", "model-cost-update")


@router.post("/api/v1/webhooks/{kind}")
async def webhook(
    kind: str,
    request: Request,
    x_cams_signature: str | None = Header(default=None),
    db: Engine = Depends(engine),
    svc: Any = Depends(service),
) -> dict[str, Any]:
    if kind not in WEBHOOK_KINDS:
        raise ApiError(404, "not_found", f"no webhook {kind!r}; one of {', '.join(WEBHOOK_KINDS)}")
    secret = os.environ.get("CAMS_WEBHOOK_SECRET")
    if not secret:
        raise ApiError(503, "not_configured", "CAMS_WEBHOOK_SECRET is not set: webhooks are disabled")
    raw = await request.body()
    if len(raw) > 10 * 1024 * 1024:
        raise ApiError(422, "too_large", "a webhook body is at most 10 MiB")
    try:
        signing.verify(secret, raw, x_cams_signature)
    except signing.SignatureError as exc:
        raise ApiError(401, "bad_signature", str(exc)) from None
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(422, "invalid_json", "the body is not JSON (or nested deeper than the decoder allows)") from None
    if not isinstance(body, dict) or not isinstance(body.get("event_id"), str) or not body["event_id"]:
        raise ApiError(422, "invalid_event", "the body must be an object with a string event_id")
    if len(body["event_id"]) > 200 or unstorable([body["event_id"]], ["event_id"]):
        raise ApiError(422, "invalid_event", "event_id must be 1 to 200 characters of text without NUL")
    prices = _price_update(db, svc, body) if kind == "model-cost-update" else []
    we = t.webhook_events
    with db.begin() as conn:
        if conn.execute(select(we.c.event_id).where(we.c.event_id == body["event_id"])).first():
            return {"status": "duplicate", "event_id": body["event_id"]}
        conn.execute(
            insert(we).values(
                event_id=body["event_id"],
                kind=kind,
                body=raw.decode("utf-8", "replace"),
                received_at=datetime.now(UTC),
                processed_at=None,
            )
        )
    if prices:
        # a price update is a dated price, written as the Models API writes one (webhook:<event id>)
        write_prices(db, svc, prices, f"webhook:{body['event_id']}"[:32])
        with db.begin() as conn:
            conn.execute(we.update().where(we.c.event_id == body["event_id"]).values(processed_at=datetime.now(UTC)))
        return {"status": "applied", "event_id": body["event_id"], "models": [p["model"] for p in prices]}
    return {"status": "stored", "event_id": body["event_id"]}


def _price_update(db: Engine, svc: Any, body: dict[str, Any]) -> list[dict[str, Any]]:
    """A model-cost-update body's prices, validated before anything is stored: `{"event_id", "model",
    "valid_from"?, "input_cost_per_token", ...}` or `{"event_id", "prices": [{"model", ...}, ...]}`."""
    items = body.get("prices") if "prices" in body else [{k: v for k, v in body.items() if k != "event_id"}]
    if not isinstance(items, list) or not items or len(items) > 1000:
        raise ApiError(422, "invalid_event", "prices must be a list of 1 to 1000 model prices")
    out = []
    for item in items:
        try:
            price = ModelPrice.model_validate(item)
        except ValueError as exc:
            raise ApiError(422, "invalid_price", str(exc).splitlines()[0][:300]) from None
        if not price.model:
            raise ApiError(422, "invalid_price", "each price needs a model")
        out.append(override(price.model, price))
    rebuild(db, svc, out)  # an override the book cannot apply is a 422 now, not a stored event that fails later
    return out
