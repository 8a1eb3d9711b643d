"""The lookup service (SPEC §7). Selection is a lookup in memory; the database is read by a
background refresher (new table versions, budget states, keys) and written by a batch writer."""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import queue
import threading
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from cams import config as cams_config
from cams.api import dashboard, otlp_receiver
from cams.api.deps import ApiError
from cams.api.fast_select import FastSelect, error_content, history_row, request_of
from cams.api.guard import DEFAULT_MAX_BODY_BYTES, InputGuard
from cams.api.history import write_or_set_aside
from cams.api.keys import ApiKey, load_keys
from cams.api.ratelimit import Limiter
from cams.api.routes import budgets, cost_analysis, explainer, models, preferences, selection, webhooks
from cams.api.routes.selection import estimate_row
from cams.api.spool import Spool, run_writer, spool_dir_for
from cams.api.spool import backlog as spool_backlog
from cams.api.spool import drain as drain_spool
from cams.config import CamsConfig, RateLimits
from cams.estimation import store as estimation_store
from cams.estimation.estimator import Estimator
from cams.pricing import store as pricebook_store
from cams.pricing.book import PriceBook
from cams.selection import store
from cams.selection.preferences import Preference
from cams.selection.select import SelectionError, SelectionTable

log = logging.getLogger("cams.api")
CONTEXT_MODEL = "gpt-4o"  # whose tokenizer sizes a prompt before a model is chosen


def _error(
    status: int, code: str, message: str, detail: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(status_code=status, content=error_content(code, message, detail), headers=headers)


class Service:
    """What the endpoints read: swapped whole by the refresher, never mutated in place."""

    def __init__(
        self,
        engine: Engine,
        refresh_s: float = 5.0,
        flush_s: float = 1.0,
        spool_dir: Path | None = None,
        writer_process: bool = False,
        rate_limits: RateLimits | None = None,
        config: CamsConfig | None = None,
    ):
        self.engine = engine
        self.config = config or CamsConfig(sources={})  # cams.yaml as parsed once, for the routes that need it
        self.limiter = Limiter(rate_limits or self.config.rate_limits)
        url = engine.url.render_as_string(hide_password=False)
        self.spool = Spool(spool_dir or spool_dir_for(url))
        self._writer: multiprocessing.process.BaseProcess | None = None
        # small batches often: a second's worth of COPY at once stole the CPU from requests (the tail)
        self._writer_args = (url, str(self.spool.directory), min(flush_s, 0.2)) if writer_process else None
        self.refresh_s, self.flush_s = refresh_s, flush_s
        self.table: SelectionTable | None = None
        self._raw: dict[str, Any] = {}
        self.budget_rows: list[dict[str, Any]] = []
        self.preferences: list[Preference] = []
        self.book: PriceBook | None = None
        self.keys: dict[str, ApiKey] = {}
        self.estimator = Estimator()
        self.token_log: queue.Queue[dict[str, Any]] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.db_ok = False

    def refresh(self) -> None:
        try:
            version = store.latest_version(self.engine)
            budgets = store.budget_states(self.engine)
            prefs = store.load_preferences(self.engine)
            if version and (self.table is None or self.table.version != version):
                found = store.latest(self.engine)
                if found:
                    self._raw = found[1]
                    self.table = SelectionTable(found[0], found[1], budgets, prefs)
                    self.budget_rows, self.preferences = budgets, prefs
                    log.info("serving selection table %s", found[0])
                    gc.collect()
                    gc.freeze()  # the table lives until the next version: no collection walks it again
            elif self.table is not None and (budgets, prefs) != (self.budget_rows, self.preferences):
                # same table, new budget states or preferences: new answers (and a new memo of them)
                self.table = SelectionTable(self.table.version, self._raw, budgets, prefs)
                self.budget_rows, self.preferences = budgets, prefs
                gc.freeze()
            if self.book is None:
                with suppress(pricebook_store.PriceBookMissing):
                    self.book = pricebook_store.load(self.engine)
            self.keys = load_keys(self.engine)
            self.estimator.learnt = estimation_store.load_learnt(self.engine)
            self.db_ok = True
        except Exception as exc:  # keep serving the last good table when the database blips
            self.db_ok = False
            log.warning("refresh failed, serving the last table: %s", exc)

    def decide(self, table: SelectionTable, body: Any) -> Any:
        """A decision for a route body (FastAPI's or the lean path's): pure, in memory."""
        tokens = body.input_tokens
        if tokens is None and body.prompt is not None:
            tokens = self.estimator.input_tokens(CONTEXT_MODEL, body.prompt)[0]
        return table.select(request_of(body, tokens))

    def after_select(self, body: Any, d: Any) -> None:
        """What a served selection leaves behind: its history line, and the prompt's estimate by request id."""
        if body.request_id and body.prompt is not None:
            self.token_log.put(estimate_row(body.request_id, self.estimator.estimate(d.model, prompt=body.prompt)))
        self.record(body, d)

    def record(self, body: Any, d: Any) -> None:
        """A selection's history row and explanation, appended to the spool (the request's only write)."""
        self.spool.append({"selection_id": d.selection_id, "request_id": body.request_id, **history_row(body, d)})

    def backlog(self) -> dict[str, Any]:
        return {**spool_backlog(self.spool.directory), "writer": "process" if self._writer_args else "thread"}

    def flush(self, spool: bool = True) -> int:
        """Write what waits: the spooled selection history, estimates by request id, new token counts.

        Nothing is dropped: when the database is unreachable spooled lines wait on disk and queued
        estimates go back on their queue; a row the database refuses is set aside in `quarantine` with
        the reason and every other row of its batch is written (one bad request never costs another
        tenant's history).
        """
        written = 0
        if spool:
            self.spool.write_pending()  # lines the event loop queued but has not written yet
            try:
                written += drain_spool(self.engine, self.spool.directory)
            except Exception as exc:
                log.warning("selection history waits in the spool: %s", exc)
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
        if self._writer_args is not None:  # history is written by a process of its own, off this GIL
            ctx = multiprocessing.get_context("spawn")
            self._writer = ctx.Process(
                target=run_writer, args=(*self._writer_args, os.getpid()), name="cams-history-writer", daemon=True
            )
            self._writer.start()
        limits = self.limiter.start(self._stop)
        if limits is not None:
            self._threads.append(limits)
        in_thread = self._writer is None
        for every, fn in ((self.refresh_s, self.refresh), (self.flush_s, lambda: self.flush(spool=in_thread))):
            th = threading.Thread(target=self._loop, args=(every, fn), daemon=True)
            th.start()
            self._threads.append(th)

    def stop(self) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(timeout=10)
        self.spool.write_pending()
        if self._writer is not None:
            self._writer.terminate()  # between batches or mid-batch: the spool replays what it had not saved
            self._writer.join(timeout=10)
        while self.flush():  # a clean shutdown loses no history
            pass
        self.spool.close()


def _drain(q: queue.Queue[dict[str, Any]], limit: int = 5000) -> list[dict[str, Any]]:
    batch: list[dict[str, Any]] = []
    while len(batch) < limit:
        try:
            batch.append(q.get_nowait())
        except queue.Empty:
            break
    return batch


def _local_docs(app: FastAPI) -> None:
    """/docs and /redoc with Swagger UI and ReDoc from the installed fastapi-offline package, not a CDN."""
    from pathlib import Path as _Path

    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    app.mount("/docs-assets", StaticFiles(directory=_Path(fastapi_offline.__file__).parent / "static"), "docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} — API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{app.title} — API",
            redoc_js_url="/docs-assets/redoc.standalone.js",
            redoc_favicon_url="/docs-assets/favicon.png",
            with_google_fonts=False,
        )


class LookupApp(FastAPI):
    """FastAPI with the lean select path in front of every layer, FastAPI's own included (its
    telemetry and error middleware cost a tenth of the lean path's time): the path answers what it
    can and hands everything else to `framework`, the FastAPI app proper."""

    fast: FastSelect

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.fast(scope, receive, send)

    async def framework(self, scope: Any, receive: Any, send: Any) -> None:
        await super().__call__(scope, receive, send)


def create_app(
    engine: Engine,
    refresh_s: float = 5.0,
    flush_s: float = 1.0,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    *,
    fast_select: bool = True,
    spool_dir: Path | None = None,
    writer_process: bool = False,
    rate_limits: RateLimits | None = None,
    config: CamsConfig | None = None,
) -> LookupApp:
    """The service. `fast_select=False` serves select through FastAPI only (the reference the lean path is
    compared with); `writer_process` writes history from a process of its own (what `cams serve` does).
    `config` is cams.yaml as `cams serve` parsed it (default: read now), `rate_limits` overrides its own."""
    svc = Service(
        engine,
        refresh_s,
        flush_s,
        spool_dir=spool_dir,
        writer_process=writer_process,
        rate_limits=rate_limits,
        config=config or cams_config.load(),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        svc.start()
        yield
        svc.stop()

    app = LookupApp(
        docs_url=None,  # served below from local assets: the docs work with no internet
        redoc_url=None,
        title="CAMS lookup service",
        version="0.1.0",
        lifespan=lifespan,
        description="Cost-Aware Model Switching: model selection, estimates and explanations.",
    )
    app.state.service = svc
    app.state.max_body_bytes = max_body_bytes  # what a compressed body may inflate to (OTLP)
    _local_docs(app)
    app.add_middleware(InputGuard, max_body_bytes=max_body_bytes)
    app.fast = FastSelect(app.framework, service=svc, max_body_bytes=max_body_bytes, enabled=fast_select)

    @app.exception_handler(ApiError)
    async def _api_error(_r: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.detail, exc.headers)

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
            "history": svc.backlog(),  # selections spooled but not yet in the warehouse, and how late
            "rate_limits": svc.limiter.scope,
        }
        return JSONResponse(status_code=200 if ready else 503, content=body)

    app.include_router(selection.router)
    app.include_router(dashboard.router)

    app.include_router(otlp_receiver.router)
    for domain in (budgets, preferences, models, cost_analysis, explainer, webhooks):
        app.include_router(domain.router)
    return app


def app_from_env() -> FastAPI:
    """The app of one `cams serve --workers N` process: its own engine on CAMS_DATABASE_URL."""
    from cams import config
    from cams.warehouse.db import make_engine

    return create_app(
        make_engine(config.database_url()),
        config=config.load(),
        refresh_s=float(os.environ.get("CAMS_REFRESH_S", "5")),
        max_body_bytes=int(os.environ.get("CAMS_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
        writer_process=True,
    )
