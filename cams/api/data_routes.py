"""The service's data endpoints (SPEC §7): budgets, model cost profiles, cost analysis, explainer
lists and stats, and signed webhooks. They read and write the warehouse; selection never waits on them."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, Integer, and_, delete, func, insert, select

from cams import config as cams_config
from cams import signing
from cams.api.keys import ApiKey
from cams.budgets.model import BudgetError, allowed_channels, parse_budget
from cams.budgets.store import _row as budget_row
from cams.pricing import store as pricebook_store
from cams.pricing.book import PricingConfigError
from cams.sources.contracts import unstorable
from cams.warehouse import schema as t

WEBHOOK_KINDS = ("cost-data", "budget-alert", "model-cost-update")


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


def jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """A warehouse row as JSON a person reads: exact decimals without exponents ("0.0000000000",
    never "0E-10"), timestamps with their zone (the warehouse keeps UTC; SQLite hands them back naive)."""
    out = {}
    for k, v in row.items():
        if isinstance(v, Decimal):
            out[k] = f"{v:f}"
        elif isinstance(v, datetime):
            out[k] = (v if v.tzinfo else v.replace(tzinfo=UTC)).isoformat()
        elif isinstance(v, date):
            out[k] = v.isoformat()
        else:
            out[k] = v
    return out


_STEERING_MONEY = ("cost_usd", "charged_usd", "fallback_cost_usd")


def as_csv_if_asked(request: Request, rows: list[dict[str, Any]]) -> Response | None:
    """The rows as CSV when the client sends `Accept: text/csv` (a spreadsheet's import, `curl -H`)."""
    if "text/csv" not in request.headers.get("accept", ""):
        return None
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8")


def register(
    app: FastAPI,
    engine: Engine,
    auth: Callable[[str], Any],
    same_org: Callable[[ApiKey, str | None], None],
    api_error: type[Exception],
    webhook_secret: Callable[[], str | None],
    on_event: Callable[[], None],
    set_book: Callable[[Any], None] = lambda _book: None,
) -> None:
    E = api_error

    def org_filter(key: ApiKey, org: str | None) -> str | None:
        if key.org_id is not None:
            if org not in (None, key.org_id):
                raise E(403, "forbidden", "this key is bound to another org")
            return key.org_id
        return org

    # ---- budgets -----------------------------------------------------------------------------
    bc = t.budget_configs

    def _budget(budget_id: str, key: ApiKey) -> dict[str, Any]:
        with engine.connect() as conn:
            row = conn.execute(select(bc).where(bc.c.id == budget_id)).mappings().first()
        if row is None or (key.org_id is not None and row["org_id"] != key.org_id):
            raise E(404, "not_found", f"no budget {budget_id!r}")
        return dict(row)

    def _out(row: dict[str, Any]) -> dict[str, Any]:
        return {
            **json.loads(row["config_json"]),
            "source": row["source"],
            **jsonable({"created_at": row["created_at"], "updated_at": row["updated_at"]}),
        }

    @app.get("/api/v1/budgets", tags=["budgets"])
    def list_budgets(org_id: str | None = None, key: ApiKey = Depends(auth("read"))) -> list[dict[str, Any]]:
        org = org_filter(key, org_id)
        q = select(bc).order_by(bc.c.id)
        q = q.where(bc.c.org_id == org) if org else q
        with engine.connect() as conn:
            return [_out(dict(r)) for r in conn.execute(q).mappings()]

    def _parse(body: dict[str, Any]) -> Any:
        """A budget body, validated, whose channels reach only hosts (and name only secrets) cams.yaml allows."""
        try:
            b = parse_budget(body)
            allowed_channels(b, cams_config.load())
        except BudgetError as exc:
            raise E(422, "invalid_budget", str(exc)) from None
        return b

    @app.post("/api/v1/budgets", status_code=201, tags=["budgets"])
    def create_budget(body: dict[str, Any], key: ApiKey = Depends(auth("write"))) -> dict[str, Any]:
        b = _parse(body)
        same_org(key, b.org_id)
        with engine.begin() as conn:
            found = conn.execute(select(bc.c.org_id).where(bc.c.id == b.id)).first()
            if found and key.org_id is not None and found.org_id != key.org_id:
                # another org's budget: say nothing of it (SPEC §7: 404, not 409)
                raise E(404, "not_found", f"budget id {b.id!r} cannot be created; choose another id")
            if found:
                raise E(409, "conflict", f"budget {b.id!r} exists; PUT to change it")
            conn.execute(insert(bc).values(**budget_row(b, "api", datetime.now(UTC))))
        return _out(budget_row(b, "api", datetime.now(UTC)))

    @app.get("/api/v1/budgets/{budget_id}", tags=["budgets"])
    def get_budget(budget_id: str, key: ApiKey = Depends(auth("read"))) -> dict[str, Any]:
        return _out(_budget(budget_id, key))

    @app.put("/api/v1/budgets/{budget_id}", tags=["budgets"])
    def put_budget(budget_id: str, body: dict[str, Any], key: ApiKey = Depends(auth("write"))) -> dict[str, Any]:
        old = _budget(budget_id, key)
        if old["source"] == "yaml":
            raise E(409, "conflict", "this budget is managed in cams.yaml; change it there")
        if not isinstance(body, dict):
            raise E(422, "invalid_budget", "a budget is a JSON object")
        b = _parse({**body, "id": budget_id})
        same_org(key, b.org_id)
        row = budget_row(b, "api", datetime.now(UTC))
        row["created_at"] = old["created_at"]
        with engine.begin() as conn:
            conn.execute(delete(bc).where(bc.c.id == budget_id))
            conn.execute(insert(bc).values(**row))
        return _out(row)

    @app.delete("/api/v1/budgets/{budget_id}", status_code=204, tags=["budgets"])
    def delete_budget(budget_id: str, key: ApiKey = Depends(auth("write"))) -> None:
        old = _budget(budget_id, key)
        if old["source"] == "yaml":
            raise E(409, "conflict", "this budget is managed in cams.yaml; remove it there")
        with engine.begin() as conn:
            conn.execute(delete(bc).where(bc.c.id == budget_id))

    # ---- model cost profiles ----------------------------------------------------------------------
    mcp = t.model_cost_profiles
    profile_cols = [c for c in mcp.c if c.name not in ("prices_json", "capabilities_json")]

    def _profile(row: Any) -> dict[str, Any]:
        d = jsonable(dict(row))
        d["prices"] = json.loads(row["prices_json"])
        d["capabilities"] = json.loads(row["capabilities_json"])
        d.pop("prices_json", None)
        d.pop("capabilities_json", None)
        return d

    @app.get("/api/v1/models", tags=["models"])
    def list_models(
        provider: str | None = None,
        q: str | None = Query(default=None, max_length=200),
        limit: int = Query(default=100, ge=1, le=1000),
        offset: int = Query(default=0, ge=0, le=1_000_000_000),
        key: ApiKey = Depends(auth("read")),
    ) -> dict[str, Any]:
        stmt = select(*profile_cols).where(mcp.c.retired_at.is_(None))
        if provider:
            stmt = stmt.where(mcp.c.provider == provider)
        if q:
            stmt = stmt.where(mcp.c.model.contains(q, autoescape=True))
        with engine.connect() as conn:
            rows = conn.execute(stmt.order_by(mcp.c.model, mcp.c.valid_from).limit(limit).offset(offset)).mappings()
            return {"models": [jsonable(dict(r)) for r in rows], "limit": limit, "offset": offset}

    @app.get("/api/v1/models/{model_id:path}", tags=["models"])
    def get_model(model_id: str, key: ApiKey = Depends(auth("read"))) -> dict[str, Any]:
        with engine.connect() as conn:
            rows = conn.execute(select(mcp).where(mcp.c.model == model_id).order_by(mcp.c.valid_from)).mappings().all()
        if not rows:
            raise E(404, "not_found", f"no price profile for {model_id!r}")
        return {"model": model_id, "profiles": [_profile(r) for r in rows]}

    def _rebuild(extra: list[dict[str, Any]] | None = None) -> Any:
        """The price book from the snapshot, cams.yaml and the API's overrides (+ `extra`), stored."""
        try:
            book = pricebook_store.current_book(engine, cams_config.load().pricing, extra or [])
        except (PricingConfigError, cams_config.ConfigError, ValueError) as exc:
            raise E(422, "invalid_price", str(exc)[:500]) from None
        return book

    def _publish(book: Any) -> None:
        pricebook_store.store(engine, book)
        set_book(book)

    def _global_writer(key: ApiKey) -> None:
        if key.org_id is not None:
            raise E(403, "forbidden", "prices are global: an org-bound key cannot change them")

    def _override(model: str, body: ModelPrice) -> dict[str, Any]:
        """A dated price as cams.yaml would hold it: the one shape the API and the webhook write."""
        fields = body.model_dump(exclude_none=True, exclude={"model", "valid_from"})
        if not any(k.endswith(("_cost_per_token", "_token_cost")) for k in fields):
            raise E(422, "invalid_price", "send at least one price, e.g. input_cost_per_token")
        override = {k: f"{v:f}" if isinstance(v, Decimal) else v for k, v in fields.items()}
        override["model"] = model
        override["valid_from"] = (body.valid_from or datetime.now(UTC)).isoformat()
        return override

    def _write_prices(overrides: list[dict[str, Any]], writer: str | None) -> None:
        book = _rebuild(overrides)
        for override in overrides:
            pricebook_store.add_override(engine, override, writer)
        _publish(book)

    def _write_price(model: str, body: ModelPrice, key: ApiKey) -> dict[str, Any]:
        _global_writer(key)
        _write_prices([_override(model, body)], key.id)
        with engine.connect() as conn:
            rows = conn.execute(select(mcp).where(mcp.c.model == model).order_by(mcp.c.valid_from)).mappings().all()
        return {
            "model": model,
            "profiles": [_profile(r) for r in rows],
            "note": "new requests are costed at this price from valid_from on; costs already computed keep "
            "their price_id — backfill cost_tracking to recompute a past range",
        }

    @app.post("/api/v1/models", status_code=201, tags=["models"])
    def create_model(body: ModelPrice, key: ApiKey = Depends(auth("admin"))) -> dict[str, Any]:
        """A price from `valid_from` (default now): a new custom model, or a new price for a known one."""
        if not body.model:
            raise E(422, "invalid_request", "model is required")
        return _write_price(body.model, body, key)

    @app.put("/api/v1/models/{model_id:path}", tags=["models"])
    def put_model(model_id: str, body: ModelPrice, key: ApiKey = Depends(auth("admin"))) -> dict[str, Any]:
        """A new price for a model the book knows, effective from `valid_from` (default now)."""
        if body.model not in (None, model_id):
            raise E(422, "invalid_request", "the body's model differs from the path's")
        with engine.connect() as conn:
            known = conn.execute(select(func.count()).select_from(mcp).where(mcp.c.model == model_id)).scalar_one()
        if not known:
            raise E(404, "not_found", f"no price profile for {model_id!r}; POST /api/v1/models creates one")
        return _write_price(model_id, body, key)

    @app.delete("/api/v1/models/{model_id:path}", status_code=204, tags=["models"])
    def delete_model(model_id: str, key: ApiKey = Depends(auth("admin"))) -> None:
        """Withdraw the prices written for this model through the API (snapshot and cams.yaml stay)."""
        _global_writer(key)
        if pricebook_store.delete_overrides(engine, model_id) == 0:
            raise E(
                404,
                "not_found",
                f"no API-written price for {model_id!r}; snapshot and cams.yaml prices change in cams.yaml",
            )
        _publish(_rebuild())

    # ---- cost analysis -----------------------------------------------------------------------
    r = t.cost_daily_rollups

    def _where(
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
                out[k] = f"{Decimal(str(v or 0)).quantize(Decimal('0.0000000001')):f}"
            elif k in ("requests", "errors", "input_tokens", "output_tokens", "unpriced_requests"):
                out[k] = int(v or 0)
            else:
                out[k] = str(v) if isinstance(v, date) else v
        return out

    def analysis(group: list[Any]) -> Callable[..., Any]:
        def handler(
            request: Request,
            org_id: str | None = None,
            team_id: str | None = None,
            user_id: str | None = None,
            start: date | None = None,
            end: date | None = None,
            key: ApiKey = Depends(auth("read")),
        ) -> Any:
            if start and end and end < start:
                raise E(422, "invalid_request", "end is before start")
            stmt = select(*group, *_money_cols()).where(_where(key, org_id, team_id, user_id, start, end))
            if group:
                stmt = stmt.group_by(*group).order_by(func.sum(r.c.cost_usd).desc())
            with engine.connect() as conn:
                rows = [_fmt(dict(x)) for x in conn.execute(stmt).mappings()]
            return as_csv_if_asked(request, rows) or (rows if group else rows[0])

        return handler

    csv_too = {200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with Accept: text/csv"}}
    for path, group in (
        ("summary", []),
        ("by-model", [r.c.model]),
        ("by-provider", [r.c.provider]),
        ("by-team", [r.c.org_id, r.c.team_id]),
        ("by-user", [r.c.org_id, r.c.user_id]),
        ("by-task", [r.c.task_type]),
    ):
        app.get(f"/api/v1/cost-analysis/{path}", tags=["cost analysis"], responses=csv_too)(analysis(group))

    sr = t.steering_daily_rollups

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

    def _steering_rows(stmt: Any) -> list[dict[str, Any]]:
        with engine.connect() as conn:
            rows = [dict(x) for x in conn.execute(stmt).mappings()]
        out = []
        for row in rows:
            n, f = int(row["requests"] or 0), int(row["fallback_requests"] or 0)
            money = {k: f"{Decimal(str(row[k] or 0)).quantize(Decimal('0.0000000001')):f}" for k in _STEERING_MONEY}
            keys = {
                k: v for k, v in row.items() if k not in _STEERING_MONEY and k not in ("requests", "fallback_requests")
            }
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
        ) -> Any:
            rows = _steering_rows(_steering(key, org_id, start, end, [column]))
            return as_csv_if_asked(request, rows) or rows

        return handler

    for path, column, doc in (
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
        app.get(f"/api/v1/cost-analysis/{path}", tags=["cost analysis"], responses=csv_too, description=doc)(
            steering(column)
        )

    @app.get("/api/v1/cost-analysis/savings", tags=["cost analysis"], responses=csv_too)
    def savings(
        request: Request,
        org_id: str | None = None,
        team_id: str | None = None,
        key: ApiKey = Depends(auth("read")),
    ) -> Any:
        """The latest savings report (per org, and per team within it): what the last 30 days cost with
        the models used, against the same requests on the selection table's standard-tier choice."""
        sv = t.savings_report
        org = org_filter(key, org_id)
        q = select(sv).order_by(sv.c.org_id, sv.c.team_id.is_not(None), sv.c.team_id)
        q = q.where(sv.c.org_id == org) if org else q
        q = q.where(sv.c.team_id == team_id) if team_id else q
        with engine.connect() as conn:
            rows = [jsonable(dict(x)) for x in conn.execute(q).mappings()]
        return as_csv_if_asked(request, rows) or rows

    @app.get("/api/v1/cost-analysis/trends", tags=["cost analysis"], responses=csv_too)
    def trends(
        request: Request,
        granularity: str = Query(default="day", pattern="^(day|week|month)$"),
        org_id: str | None = None,
        team_id: str | None = None,
        user_id: str | None = None,
        start: date | None = None,
        end: date | None = None,
        key: ApiKey = Depends(auth("read")),
    ) -> Any:
        stmt = select(r.c.day, *_money_cols()).where(_where(key, org_id, team_id, user_id, start, end))
        with engine.connect() as conn:
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
        rows = [
            {**b, "cost_usd": f"{b['cost_usd']:f}", "charged_usd": f"{b['charged_usd']:f}"} for b in buckets.values()
        ]
        return as_csv_if_asked(request, rows) or rows

    # ---- explainer ---------------------------------------------------------------------------
    ex, mh = t.model_selection_explanations, t.model_selection_history

    @app.get("/api/v1/explainer/request/{request_id}", tags=["explainer"])
    def explain_request(request_id: str, key: ApiKey = Depends(auth("read"))) -> dict[str, Any]:
        on_event()
        q = select(ex).where(ex.c.request_id == request_id, ex.c.kind == "selection")
        if key.org_id:
            q = q.where(ex.c.org_id == key.org_id)
        with engine.connect() as conn:
            row = conn.execute(q.order_by(ex.c.created_at.desc())).mappings().first()
        if row is None:
            raise E(404, "not_found", f"no selection recorded for request {request_id!r}")
        return {
            "id": row["id"],
            "request_id": request_id,
            "table_version": row["table_version"],
            "explanation": json.loads(row["explanation_json"]),
        }

    @app.get("/api/v1/explainer/recent", tags=["explainer"])
    def recent(limit: int = Query(default=20, ge=1, le=500), key: ApiKey = Depends(auth("read"))) -> list[dict]:
        on_event()
        q = select(mh).order_by(mh.c.selected_at.desc()).limit(limit)
        if key.org_id:
            q = q.where(mh.c.org_id == key.org_id)
        with engine.connect() as conn:
            return [jsonable(dict(x)) for x in conn.execute(q).mappings()]

    @app.get("/api/v1/explainer/stats", tags=["explainer"])
    def stats(key: ApiKey = Depends(auth("read"))) -> dict[str, Any]:
        on_event()
        where = mh.c.org_id == key.org_id if key.org_id else True
        with engine.connect() as conn:
            by = {
                name: {
                    str(k): int(n) for k, n in conn.execute(select(col, func.count()).where(where).group_by(col)).all()
                }
                for name, col in (
                    ("by_model", mh.c.model),
                    ("by_budget_state", mh.c.budget_state),
                    ("by_binding_constraint", mh.c.binding_constraint),
                    ("by_served_tier", mh.c.served_tier),
                )
            }
            total = conn.execute(select(func.count(), func.sum(mh.c.estimated_cost_usd)).where(where)).one()
        return {"decisions": int(total[0]), "estimated_cost_usd": f"{Decimal(str(total[1] or 0)):f}", **by}

    @app.get("/api/v1/explainer/{explanation_id}", tags=["explainer"])
    def explainer(explanation_id: str, key: ApiKey = Depends(auth("read"))) -> dict[str, Any]:
        on_event()
        with engine.connect() as conn:
            row = conn.execute(select(ex).where(ex.c.id == explanation_id)).mappings().first()
        if row is None or (key.org_id is not None and row["org_id"] not in (None, key.org_id)):
            raise E(404, "not_found", "no such explanation")
        return {
            "id": row["id"],
            "kind": row["kind"],
            "table_version": row["table_version"],
            "org_id": row["org_id"],
            "request_id": row["request_id"],
            "explanation": json.loads(row["explanation_json"]),
        }

    # ---- webhooks (SPEC §2.3) ------------------------------------------------------------------
    @app.post("/api/v1/webhooks/{kind}", tags=["webhooks"])
    async def webhook(
        kind: str, request: Request, x_cams_signature: str | None = Header(default=None)
    ) -> dict[str, Any]:
        if kind not in WEBHOOK_KINDS:
            raise E(404, "not_found", f"no webhook {kind!r}; one of {', '.join(WEBHOOK_KINDS)}")
        secret = webhook_secret()
        if not secret:
            raise E(503, "not_configured", "CAMS_WEBHOOK_SECRET is not set: webhooks are disabled")
        raw = await request.body()
        if len(raw) > 10 * 1024 * 1024:
            raise E(422, "too_large", "a webhook body is at most 10 MiB")
        try:
            signing.verify(secret, raw, x_cams_signature)
        except signing.SignatureError as exc:
            raise E(401, "bad_signature", str(exc)) from None
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise E(422, "invalid_json", "the body is not JSON (or nested deeper than the decoder allows)") from None
        if not isinstance(body, dict) or not isinstance(body.get("event_id"), str) or not body["event_id"]:
            raise E(422, "invalid_event", "the body must be an object with a string event_id")
        if len(body["event_id"]) > 200 or unstorable([body["event_id"]], ["event_id"]):
            raise E(422, "invalid_event", "event_id must be 1 to 200 characters of text without NUL")
        prices = _price_update(body) if kind == "model-cost-update" else []
        we = t.webhook_events
        with engine.begin() as conn:
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
            _write_prices(prices, f"webhook:{body['event_id']}"[:32])
            with engine.begin() as conn:
                conn.execute(
                    we.update().where(we.c.event_id == body["event_id"]).values(processed_at=datetime.now(UTC))
                )
            return {"status": "applied", "event_id": body["event_id"], "models": [p["model"] for p in prices]}
        return {"status": "stored", "event_id": body["event_id"]}

    def _price_update(body: dict[str, Any]) -> list[dict[str, Any]]:
        """A model-cost-update body's prices, validated before anything is stored: `{"event_id", "model",
        "valid_from"?, "input_cost_per_token", ...}` or `{"event_id", "prices": [{"model", ...}, ...]}`."""
        items = body.get("prices") if "prices" in body else [{k: v for k, v in body.items() if k != "event_id"}]
        if not isinstance(items, list) or not items or len(items) > 1000:
            raise E(422, "invalid_event", "prices must be a list of 1 to 1000 model prices")
        out = []
        for item in items:
            try:
                price = ModelPrice.model_validate(item)
            except ValueError as exc:
                raise E(422, "invalid_price", str(exc).splitlines()[0][:300]) from None
            if not price.model:
                raise E(422, "invalid_price", "each price needs a model")
            out.append(_override(price.model, price))
        _rebuild(out)  # an override the book cannot apply is a 422 now, not a stored event that fails later
        return out
