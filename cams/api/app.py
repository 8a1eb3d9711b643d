"""The lookup service (SPEC §7). Selection is a lookup in memory; the database is read by a
background refresher (new table versions, budget states, keys) and written by a batch writer."""

from __future__ import annotations

import logging
import os
import queue
import threading
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import Engine, select
from starlette.exceptions import HTTPException as StarletteHTTPException

from cams import pricebook_store
from cams.api import dashboard, data_routes
from cams.api.guard import DEFAULT_MAX_BODY_BYTES, InputGuard
from cams.api.history import write_or_set_aside
from cams.api.keys import ApiKey, digest, load_keys
from cams.estimation import store as estimation_store
from cams.estimation.estimator import Estimate, Estimator
from cams.pricing.book import PriceBook
from cams.pricing.cost import TokenUsage, request_cost
from cams.selection import store
from cams.selection.select import Request as SelectRequest
from cams.selection.select import SelectionError, SelectionTable
from cams.warehouse import schema as t

log = logging.getLogger("cams.api")
CONTEXT_MODEL = "gpt-4o"  # whose tokenizer sizes a prompt before a model is chosen


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, detail: dict[str, Any] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail or {}


def _error(status: int, code: str, message: str, detail: dict[str, Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if detail:
        body["error"]["detail"] = detail
    return JSONResponse(status_code=status, content=body)


class Service:
    """What the endpoints read: swapped whole by the refresher, never mutated in place."""

    def __init__(self, engine: Engine, refresh_s: float = 5.0, flush_s: float = 1.0):
        self.engine = engine
        self.refresh_s, self.flush_s = refresh_s, flush_s
        self.table: SelectionTable | None = None
        self._raw: dict[str, Any] = {}
        self.book: PriceBook | None = None
        self.keys: dict[str, ApiKey] = {}
        self.estimator = Estimator()
        self.history: queue.Queue[dict[str, Any]] = queue.Queue()
        self.token_log: queue.Queue[dict[str, Any]] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.db_ok = False

    def refresh(self) -> None:
        try:
            version = store.latest_version(self.engine)
            if version and (self.table is None or self.table.version != version):
                found = store.latest(self.engine)
                if found:
                    self._raw = found[1]
                    self.table = SelectionTable(found[0], found[1], store.budget_states(self.engine))
                    log.info("serving selection table %s", found[0])
            elif self.table is not None:  # same table, fresh budget states
                self.table = SelectionTable(self.table.version, self._raw, store.budget_states(self.engine))
            if self.book is None:
                with suppress(pricebook_store.PriceBookMissing):
                    self.book = pricebook_store.load(self.engine)
            self.keys = load_keys(self.engine)
            self.estimator.learnt = estimation_store.load_learnt(self.engine)
            self.db_ok = True
        except Exception as exc:  # keep serving the last good table when the database blips
            self.db_ok = False
            log.warning("refresh failed, serving the last table: %s", exc)

    def flush(self) -> int:
        """Write what the endpoints queued: selection history, estimates by request id, new token counts.

        Nothing queued is dropped: when the database is unreachable a batch goes back on its queue for
        the next flush; a row the database refuses is set aside in `quarantine` with the reason and
        every other row of its batch is written (one bad request never costs another tenant's history).
        """
        batch = _drain(self.history)
        written = write_or_set_aside(self.engine, "model_selection_history", batch, store.write_history, self.history)
        estimates = _drain(self.token_log)
        written += write_or_set_aside(
            self.engine, "token_estimates", estimates, estimation_store.record_estimates, self.token_log
        )
        pending = self.estimator.cache.pending
        counts = [pending.popleft() for _ in range(min(len(pending), 5000))]
        estimation_store.save_cache(self.engine, counts)
        return written + len(counts)

    def _loop(self, every: float, fn: Any) -> None:
        while not self._stop.wait(every):
            try:
                fn()
            except Exception as exc:
                log.warning("background task failed: %s", exc)

    def start(self) -> None:
        try:  # begin with the token counts other processes and earlier runs already computed
            self.estimator.cache.warm(estimation_store.load_cache(self.engine, self.estimator.cache.size))
            self.estimator.cache.pending.clear()
        except Exception as exc:
            log.warning("token estimation cache not loaded: %s", exc)
        self.refresh()
        for every, fn in ((self.refresh_s, self.refresh), (self.flush_s, self.flush)):
            th = threading.Thread(target=self._loop, args=(every, fn), daemon=True)
            th.start()
            self._threads.append(th)

    def stop(self) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(timeout=10)
        while self.flush():  # a clean shutdown loses no history
            pass


def _drain(q: queue.Queue[dict[str, Any]], limit: int = 5000) -> list[dict[str, Any]]:
    batch: list[dict[str, Any]] = []
    while len(batch) < limit:
        try:
            batch.append(q.get_nowait())
        except queue.Empty:
            break
    return batch


def _estimate_row(request_id: str, est: Estimate) -> dict[str, Any]:
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


def create_app(
    engine: Engine, refresh_s: float = 5.0, flush_s: float = 1.0, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> FastAPI:
    svc = Service(engine, refresh_s, flush_s)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        svc.start()
        yield
        svc.stop()

    app = FastAPI(
        title="CAMS lookup service",
        version="0.1.0",
        lifespan=lifespan,
        description="Cost-Aware Model Switching: model selection, estimates and explanations.",
    )
    app.state.service = svc
    app.add_middleware(InputGuard, max_body_bytes=max_body_bytes)

    @app.exception_handler(ApiError)
    async def _api_error(_r: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.detail)

    @app.exception_handler(SelectionError)
    async def _sel_error(_r: Request, exc: SelectionError) -> JSONResponse:
        return _error(exc.status, exc.code, str(exc), exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(p) for p in e.get("loc", [])[1:]), "problem": e.get("msg")} for e in exc.errors()
        ][:20]
        return _error(422, "invalid_request", "the request body or parameters are invalid", {"problems": problems})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "not_found" if exc.status_code == 404 else "http_error", str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_r: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return _error(500, "internal", "an unexpected error; it has been logged")

    def auth(scope: str):  # type: ignore[no-untyped-def]
        def check(authorization: str | None = Header(default=None)) -> ApiKey:
            if not authorization or not authorization.startswith("Bearer "):
                raise ApiError(401, "unauthorized", "send Authorization: Bearer <api key>")
            key = svc.keys.get(digest(authorization[7:].strip()))
            if key is None:
                raise ApiError(401, "unauthorized", "unknown or revoked API key")
            if not key.allows(scope):
                raise ApiError(403, "forbidden", f"this key lacks the {scope} scope")
            return key

        return check

    def same_org(key: ApiKey, org_id: str | None) -> None:
        if key.org_id is not None and org_id != key.org_id:
            raise ApiError(403, "forbidden", "this key is bound to another org")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        ready = svc.table is not None and svc.db_ok
        body = {
            "status": "ready" if ready else "not_ready",
            "table_version": svc.table.version if svc.table else None,
            "database": "ok" if svc.db_ok else "unreachable",
        }
        return JSONResponse(status_code=200 if ready else 503, content=body)

    def current_table() -> SelectionTable:
        table = svc.table
        if table is None:
            raise ApiError(503, "not_ready", "no selection table has been published yet")
        return table

    def decide(body: SelectBody, key: ApiKey) -> Any:
        """The one decision path of select and explainer/generate: pure, in memory."""
        same_org(key, body.org_id)
        table = current_table()
        input_tokens = body.input_tokens
        if input_tokens is None and body.prompt is not None:
            input_tokens = svc.estimator.input_tokens(CONTEXT_MODEL, body.prompt)[0]
        return table.select(
            SelectRequest(
                org_id=body.org_id,
                task_type=body.task_type,
                quality_tier=body.quality_tier,
                team_id=body.team_id,
                user_id=body.user_id,
                max_latency_ms=body.max_latency_ms,
                required_capabilities=tuple(body.required_capabilities),
                input_tokens=input_tokens,
                request_id=body.request_id,
            )
        )

    @app.post("/api/v1/models/select")
    def select_model(body: SelectBody, key: ApiKey = Depends(auth("read"))) -> dict[str, Any]:
        d = decide(body, key)
        if body.request_id and body.prompt is not None:
            svc.token_log.put(_estimate_row(body.request_id, svc.estimator.estimate(d.model, prompt=body.prompt)))
        svc.history.put(
            {
                "selection_id": d.selection_id,
                "request_id": body.request_id,
                "org_id": body.org_id,
                "team_id": body.team_id,
                "user_id": body.user_id,
                "task_type": body.task_type,
                "quality_tier": body.quality_tier,
                "served_tier": d.tier,
                "model": d.model,
                "estimated_cost_usd": round(d.estimated_cost_usd, 10),
                "budget_state": d.budget_state,
                "binding_constraint": d.binding_constraint,
                "table_version": d.table_version,
                "selected_at": datetime.now(UTC),
                "explanation": {
                    "chosen": d.model,
                    "tier_requested": body.quality_tier,
                    "tier_served": d.tier,
                    "binding_constraint": d.binding_constraint,
                    "budget_state": d.budget_state,
                    "budget_action": d.budget_action,
                    "alternatives": d.alternatives,
                    "table_version": d.table_version,
                },
            }
        )
        return d.response()

    @app.post("/api/v1/explainer/generate")
    def generate_explanation(body: SelectBody, key: ApiKey = Depends(auth("read"))) -> dict[str, Any]:
        """What selection would decide for this request now, and why; nothing is recorded."""
        d = decide(body, key)
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
        }

    @app.get("/api/v1/models/fallbacks/{model_id:path}")
    def fallbacks(
        model_id: str, task_type: str = "chat", quality_tier: str = "standard", key: ApiKey = Depends(auth("read"))
    ) -> dict[str, Any]:
        table = current_table()
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

    @app.post("/api/v1/models/estimate")
    def estimate(body: EstimateBody, key: ApiKey = Depends(auth("read"))) -> dict[str, Any]:
        if (body.prompt is None) == (body.messages is None):
            raise ApiError(422, "invalid_request", "send exactly one of prompt or messages")
        entry = svc.book.lookup(body.model, datetime.now(UTC)) if svc.book is not None else None
        if entry is None:
            raise ApiError(404, "unknown_model", f"no price for {body.model!r}")
        est = svc.estimator.estimate(body.model, body.prompt, body.messages, body.max_output_tokens, body.task_type)
        if body.request_id:
            svc.token_log.put(_estimate_row(body.request_id, est))
        cost = request_cost(entry.rates("standard", est.input_tokens), TokenUsage(est.input_tokens, est.output_tokens))
        return {**est.response(), "estimated_cost_usd": f"{cost:f}"}

    @app.get("/api/v1/budgets/{budget_id}/status")
    def budget_status(budget_id: str, key: ApiKey = Depends(auth("read"))) -> dict[str, Any]:
        bs = t.budget_status
        with engine.connect() as conn:
            row = conn.execute(select(bs).where(bs.c.budget_id == budget_id)).mappings().first()
        if row is None or (key.org_id is not None and row["org_id"] != key.org_id):
            raise ApiError(404, "not_found", "no such budget status")
        return {k: (str(v) if v is not None and not isinstance(v, str | float | int) else v) for k, v in row.items()}

    dashboard.register(app, engine, lambda: svc.keys, lambda: svc.table)

    def set_book(book: PriceBook) -> None:
        svc.book = book

    data_routes.register(
        app, engine, auth, same_org, ApiError, lambda: os.environ.get("CAMS_WEBHOOK_SECRET"), svc.flush, set_book
    )
    return app


def app_from_env() -> FastAPI:
    """The app of one `cams serve --workers N` process: its own engine on CAMS_DATABASE_URL."""
    from cams import config
    from cams.warehouse.db import make_engine

    return create_app(
        make_engine(config.database_url()),
        refresh_s=float(os.environ.get("CAMS_REFRESH_S", "5")),
        max_body_bytes=int(os.environ.get("CAMS_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
    )
