"""Selection on the request path: select (its lean twin is `cams.api.fast_select`), the published
table for embedded clients, what-if explanations, fallback chains and token estimates."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from cams.api.deps import ApiError, auth, same_org, service
from cams.api.keys import ApiKey
from cams.estimation.estimator import Estimate
from cams.pricing.cost import TokenUsage, request_cost
from cams.selection.client import document as client_document
from cams.selection.client import etag as client_etag
from cams.selection.select import SelectionTable

router = APIRouter()


def estimate_row(request_id: str, est: Estimate) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "model": est.model,
        "family": est.family,
        "encoding": est.encoding,
        "raw_input_tokens": est.raw_input_tokens,
        "estimated_at": datetime.now(UTC),
    }


class SelectBody(BaseModel):
    org_id: str = Field(min_length=1, max_length=200)
    team_id: str | None = Field(default=None, max_length=200)
    user_id: str | None = Field(default=None, max_length=200)
    task_type: str = Field(min_length=1, max_length=100)
    quality_tier: Literal["economy", "standard", "premium"] = "standard"
    max_latency_ms: float | None = Field(default=None, gt=0, le=3_600_000)
    required_capabilities: list[str] = Field(default_factory=list, max_length=20)
    input_tokens: int | None = Field(default=None, ge=0, le=100_000_000)
    prompt: str | None = Field(default=None, max_length=2_000_000)
    request_id: str | None = Field(default=None, max_length=200)


class EstimateBody(BaseModel):
    model: str = Field(min_length=1, max_length=512)
    prompt: str | None = Field(default=None, max_length=2_000_000)
    messages: list[dict[str, Any]] | None = Field(default=None, max_length=10_000)
    max_output_tokens: int | None = Field(default=None, ge=0, le=10_000_000)
    task_type: str | None = Field(default=None, max_length=100)
    request_id: str | None = Field(
        default=None, max_length=200, description="the request's id: its actual usage will calibrate later estimates"
    )


def current_table(svc: Any) -> SelectionTable:
    table = svc.table
    if table is None:
        raise ApiError(503, "not_ready", "no selection table has been published yet")
    return table


def decide(svc: Any, body: SelectBody, key: ApiKey) -> Any:
    """The one decision path of select and explainer/generate: pure, in memory."""
    same_org(key, body.org_id)
    return svc.decide(current_table(svc), body)


@router.post("/api/v1/models/select")
def select_model(body: SelectBody, key: ApiKey = Depends(auth("read")), svc: Any = Depends(service)) -> dict[str, Any]:
    d = decide(svc, body, key)
    svc.after_select(body, d)
    return d.response()


@router.get("/api/v1/models/table", responses={304: {"description": "the table the ETag names is current"}})
def model_table(
    key: ApiKey = Depends(auth("read")), if_none_match: str | None = Header(default=None), svc: Any = Depends(service)
) -> Response:
    """The published table and the budget states selection reads, for `cams.selection.Client` and
    gateways in other languages (docs/selection-table.md); 304 while the ETag still holds."""
    table = current_table(svc)
    budgets = [b for b in svc.budget_rows if key.org_id is None or b["org_id"] == key.org_id]
    prefs = [p for p in svc.preferences if key.org_id is None or p.org_id == key.org_id]
    doc = client_document(table.version, svc._raw, budgets, prefs)
    tag = client_etag(doc)
    if if_none_match == tag:
        return Response(status_code=304, headers={"ETag": tag})
    return JSONResponse(doc, headers={"ETag": tag})


@router.post("/api/v1/explainer/generate")
def generate_explanation(
    body: SelectBody, key: ApiKey = Depends(auth("read")), svc: Any = Depends(service)
) -> dict[str, Any]:
    """What selection would decide for this request now, and why; nothing is recorded."""
    d = decide(svc, body, key)
    return {
        "model": d.model,
        "provider": d.provider,
        "estimated_cost_usd": f"{d.estimated_cost_usd:.10f}",
        "tier_requested": body.quality_tier,
        "tier_served": d.tier,
        "binding_constraint": d.binding_constraint,
        "budget_state": d.budget_state,
        "budget_action": d.budget_action,
        "fallback_chain": d.fallback_chain,
        "alternatives": d.alternatives,
        "table_version": d.table_version,
        **({"preference": d.preference} if d.preference is not None else {}),
    }


@router.get("/api/v1/models/fallbacks/{model_id:path}")
def fallbacks(
    model_id: str,
    task_type: str = "chat",
    quality_tier: str = "standard",
    key: ApiKey = Depends(auth("read")),
    svc: Any = Depends(service),
) -> dict[str, Any]:
    table = current_table(svc)
    row = table.rows.get((task_type, quality_tier))
    if row is None:
        raise ApiError(404, "not_found", f"no table row for {task_type}/{quality_tier}")
    for c in row["candidates"]:
        if c["model"] == model_id:
            return {
                "model": model_id,
                "task_type": task_type,
                "quality_tier": quality_tier,
                "fallback_chain": c["fallback_chain"],
                "table_version": table.version,
            }
    raise ApiError(404, "not_found", f"{model_id} is not a candidate for {task_type}/{quality_tier}")


@router.post("/api/v1/models/estimate")
def estimate(body: EstimateBody, key: ApiKey = Depends(auth("read")), svc: Any = Depends(service)) -> dict[str, Any]:
    if (body.prompt is None) == (body.messages is None):
        raise ApiError(422, "invalid_request", "send exactly one of prompt or messages")
    entry = svc.book.lookup(body.model, datetime.now(UTC)) if svc.book is not None else None
    if entry is None:
        raise ApiError(404, "unknown_model", f"no price for {body.model!r}")
    est = svc.estimator.estimate(body.model, body.prompt, body.messages, body.max_output_tokens, body.task_type)
    if body.request_id:
        svc.token_log.put(estimate_row(body.request_id, est))
    cost = request_cost(entry.rates("standard", est.input_tokens), TokenUsage(est.input_tokens, est.output_tokens))
    return {**est.response(), "estimated_cost_usd": f"{cost:f}"}
