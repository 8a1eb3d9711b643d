"""The budget dashboard (`/dashboard`): budgets, spend trends, dollars at risk, the explainer's picture
of a selection, and a selection simulator. Server-rendered HTML with SVG charts: no CDN, no JS.

Same keys as the API: send `Authorization: Bearer …`, or sign in once on `/dashboard/login` (a POSTed
form, so the key never sits in a URL or an access log). The session cookie is not the key: it names
the key's id and an expiry, signed with the key's stored hash, so it works on every worker and
replica and dies with the key (HttpOnly, SameSite=Strict, Secure over TLS). An org key sees its own
org only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from html import escape
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import Engine, func, select

from cams.api.charts import hbars, lines
from cams.api.deps import ApiError
from cams.api.keys import ApiKey, digest
from cams.api.routes import budgets as budget_routes
from cams.api.routes.cost_analysis import BREAKDOWNS, breakdown, rollup_where
from cams.api.rows import as_csv, jsonable
from cams.money import unit_usd, usd
from cams.selection.preferences import parse_preference
from cams.selection.select import Decision, SelectionError, SelectionTable
from cams.selection.select import Request as SelectRequest
from cams.selection.table import TIER_ORDER
from cams.selection.whatif import WhatIf, what_if
from cams.warehouse import schema as t

COOKIE = "cams_session"
SESSION_S = 12 * 3600


def session_cookie(key_id: str, key_digest: str, now: float | None = None) -> str:
    """`{key id}.{expiry}.{HMAC-SHA256(key's stored hash, "{key id}.{expiry}")}`: not the key."""
    expires = int((time.time() if now is None else now) + SESSION_S)
    payload = f"{key_id}.{expires}"
    return f"{payload}.{hmac.new(key_digest.encode(), payload.encode(), hashlib.sha256).hexdigest()}"


def session_key(cookie: str, keys: dict[str, ApiKey], now: float | None = None) -> ApiKey | None:
    """The live key a session cookie was issued for, or None (forged, expired, or the key revoked)."""
    try:
        key_id, expires, mac = cookie.rsplit(".", 2)
        if int(expires) < (time.time() if now is None else now):
            return None
    except ValueError:
        return None
    for key_digest, key in keys.items():
        if key.id == key_id:
            good = hmac.new(key_digest.encode(), f"{key_id}.{expires}".encode(), hashlib.sha256).hexdigest()
            return key if hmac.compare_digest(good.encode(), mac.encode("utf-8", "surrogateescape")) else None
    return None


STATE_COLORS = {"ok": "#16a34a", "warning": "#ca8a04", "critical": "#ea580c", "exceeded": "#dc2626"}
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#111;background:#f8fafc}
header{background:#1e1b4b;color:#fff;padding:12px 24px;display:flex;gap:24px;align-items:center}
header a{color:#c7d2fe;text-decoration:none} main{padding:16px 24px;max-width:1400px}
section{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:12px 16px;margin:12px 0}
table{border-collapse:collapse;font-size:13px} td,th{padding:4px 10px;border-bottom:1px solid #eee;text-align:left}
.badge{color:#fff;border-radius:10px;padding:1px 8px;font-size:12px} .grid{display:flex;flex-wrap:wrap;gap:12px}
.muted{color:#64748b;font-size:12px}
"""


def _page(title: str, body: str, org: str | None) -> HTMLResponse:
    scope = f"org {escape(org)}" if org else "all orgs"
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)} · CAMS</title>"
        f"<style>{CSS}</style></head><body><header><strong>CAMS</strong>"
        "<a href='/dashboard'>Budgets &amp; spend</a><a href='/dashboard/budgets'>Edit budgets</a>"
        "<a href='/dashboard/simulator'>Selection simulator</a>"
        f"<span class='muted' style='color:#a5b4fc'>{scope}</span></header><main><h1>{escape(title)}</h1>{body}</main>"
        "</body></html>"
    )


def _float(v: Any) -> float:
    return float(v or 0)


router = APIRouter(include_in_schema=False)  # pages for people; the API is described by OpenAPI


def _svc(request: Request) -> Any:
    """The app's service: the keys the pages sign in with, the table the simulator reads, the warehouse."""
    return request.app.state.service


def who(request: Request) -> ApiKey | None:
    raw = request.headers.get("authorization", "")
    if raw.startswith("Bearer "):
        key = _svc(request).keys.get(digest(raw[7:].strip()))
    else:
        cookie = request.cookies.get(COOKIE, "")
        key = session_key(cookie, _svc(request).keys) if cookie else None
    return key if key is not None and key.allows("read") else None


def denied() -> HTMLResponse:
    form = (
        "<section><p>Sign in with a CAMS API key (scope read; an org key shows its org).</p>"
        "<form action='/dashboard/login' method='post'><input name='key' type='password' size='50' "
        "placeholder='cams_…'> <button>Open</button></form></section>"
    )
    page = _page("Sign in", form, None)
    page.status_code = 401
    return page


@router.get("/dashboard/login")
def login_form() -> Any:
    return denied()


@router.post("/dashboard/login")
async def login(request: Request) -> Any:
    form = parse_qs((await request.body())[:2000].decode("utf-8", "replace"))
    entered = (form.get("key") or [""])[0].strip()
    key_digest = digest(entered) if entered else ""
    key = _svc(request).keys.get(key_digest)
    if key is None or not key.allows("read"):
        return denied()
    resp = RedirectResponse("/dashboard", status_code=303)
    resp.set_cookie(
        COOKIE,
        session_cookie(key.id, key_digest),
        max_age=SESSION_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return resp


def org_of(key: ApiKey, asked: str | None) -> str | None:
    return key.org_id or asked or None


@dataclass(frozen=True)
class View:
    """Who is looking and at what: the signed-in key, its org (a bound key's own), a team, the days."""

    key: ApiKey
    org: str | None
    team: str | None
    since: date
    until: date


def view(
    request: Request,
    org_id: str | None = Query(default=None, max_length=200),
    team_id: str | None = Query(default=None, max_length=200),
    start: date | None = None,
    end: date | None = None,
    days: int = Query(30, ge=1, le=400),
) -> View | None:
    """The pickers' values for a signed-in key, or None (the page asks to sign in)."""
    key = who(request)
    if key is None:
        return None
    return View(key, org_of(key, org_id), team_id or None, *_window(start, end, days))


@router.get("/dashboard", response_class=HTMLResponse)
def overview(request: Request, v: View | None = Depends(view)) -> Any:
    if v is None:
        return denied()
    key, org, team, since, until = v.key, v.org, v.team, v.since, v.until
    d = _tables(_svc(request).engine, v, limit=12)
    budgets, alerts, by_model, by_provider, risk, recent, saved, moves = (d[k] for k in TABLES)
    parts = [
        _filters(key, org, team, since, until),
        _csv_link(_budgets(budgets), "budgets", v),
        _csv_link(_alerts(alerts), "alerts", v),
        _csv_link(_csv_link(_trends(by_model, by_provider, f"{since} .. {until}"), "daily-cost", v), "providers", v),
        _breakdowns(_svc(request).engine, key, org, team, since, until),
        _csv_link(_risk(risk), "at-risk", v),
        _csv_link(_savings(saved), "savings", v),
        _csv_link(_recommendations(moves), "recommendations", v),
        _csv_link(_recent(recent), "selections", v),
    ]
    return _page("Budgets and spend", "".join(parts), org)


TABLES = ("budgets", "alerts", "daily-cost", "providers", "at-risk", "selections", "savings", "recommendations")


def _tables(engine: Engine, v: View, limit: int | None) -> dict[str, list[Any]]:
    """What the overview shows, for its window and pickers: one query per table, the page's and the
    CSV's alike (`limit` rows of the latest alerts and selections; the CSV takes up to 10,000)."""
    org, team = v.org, v.team
    bs, r, rs, mh, ba = (
        t.budget_status,
        t.cost_daily_rollups,
        t.cost_reconciliation_summary,
        t.model_selection_history,
        t.budget_alerts,
    )
    where = [r.c.day >= v.since, r.c.day <= v.until] + ([r.c.org_id == org] if org else [])
    where += [r.c.team_id == team] if team else []
    rwhere = [rs.c.day >= v.since, rs.c.day <= v.until] + ([rs.c.org_id == org] if org else [])
    sv, rc = t.savings_report, t.savings_recommendations
    # the savings report covers the 30 days to its own as-of, whatever the page's window
    swhere = ([sv.c.org_id == org] if org else []) + ([sv.c.team_id == team] if team else [])
    rcwhere = ([rc.c.org_id == org] if org else []) + ([rc.c.team_id == team] if team else [])
    bq = select(bs).order_by(bs.c.percent_used.desc())
    hq = select(mh).order_by(mh.c.selected_at.desc()).limit(limit or 10_000)
    aq = select(ba.c.fired_at, ba.c.budget_id, ba.c.level, ba.c.basis, ba.c.percent_used, ba.c.payload_json)
    if org:  # an org's own budgets' alerts
        aq = aq.where(ba.c.budget_id.in_(select(bs.c.budget_id).where(bs.c.org_id == org)))
    with engine.connect() as conn:
        return {
            "budgets": [dict(x) for x in conn.execute(bq.where(bs.c.org_id == org) if org else bq).mappings()],
            "alerts": conn.execute(aq.order_by(ba.c.fired_at.desc(), ba.c.id.desc()).limit(limit or 10_000)).all(),
            "daily-cost": conn.execute(
                select(r.c.day, r.c.model, func.sum(r.c.cost_usd).label("cost_usd"))
                .where(*where)
                .group_by(r.c.day, r.c.model)
                .order_by(r.c.day, r.c.model)
            ).all(),
            "providers": conn.execute(
                select(r.c.provider, func.sum(r.c.cost_usd).label("cost_usd")).where(*where).group_by(r.c.provider)
            ).all(),
            "at-risk": conn.execute(
                select(
                    rs.c.category,
                    func.sum(rs.c.at_risk_usd).label("at_risk_usd"),
                    func.sum(rs.c.requests).label("requests"),
                )
                .where(*rwhere)
                .group_by(rs.c.category)
            ).all(),
            "selections": [dict(x) for x in conn.execute(hq.where(mh.c.org_id == org) if org else hq).mappings()],
            "savings": conn.execute(
                select(
                    sv.c.org_id,
                    sv.c.team_id,
                    sv.c.counterfactual,
                    func.sum(sv.c.requests).label("requests"),
                    func.sum(sv.c.actual_usd).label("actual_usd"),
                    func.sum(sv.c.counterfactual_usd).label("counterfactual_usd"),
                    func.max(sv.c.computed_at).label("as_of"),
                )
                .where(*swhere)
                .group_by(sv.c.org_id, sv.c.team_id, sv.c.counterfactual)
                .order_by(sv.c.org_id, sv.c.team_id, sv.c.counterfactual)
            ).all(),
            "recommendations": conn.execute(
                select(rc).where(*rcwhere).order_by(rc.c.monthly_savings_usd.desc()).limit(limit or 10_000)
            ).all(),
        }


def _csv_link(section: str, table: str, v: View) -> str:
    """A section with a link to its table as CSV (the same window and pickers), beside its heading."""
    link = f"/dashboard/{table}.csv?" + _query(org_id=v.org, team_id=v.team, start=v.since, end=v.until)
    return section.replace("</h2>", f" <a class='muted csv' href='{escape(link)}'>CSV</a></h2>", 1)


@router.get("/dashboard/explain/{selection_id}", response_class=HTMLResponse)
def explain(request: Request, selection_id: str) -> Any:
    key = who(request)
    if key is None:
        return denied()
    ex = t.model_selection_explanations
    with _svc(request).engine.connect() as conn:
        row = conn.execute(select(ex).where(ex.c.id == selection_id[:64])).mappings().first()
    if row is None or (key.org_id is not None and row["org_id"] not in (None, key.org_id)):
        page = _page("Not found", "<section>No such selection for this key.</section>", key.org_id)
        page.status_code = 404
        return page
    e = json.loads(row["explanation_json"])
    chosen = e.get("chosen") or (e.get("candidates") or [{}])[0].get("model")
    alts = e.get("alternatives") or e.get("candidates") or []
    return _page(f"Why {chosen}", _explanation(e, chosen, alts, row), key.org_id)


@router.get("/dashboard/simulator", response_class=HTMLResponse)
def simulator(
    request: Request,
    org_id: str | None = Query(default=None, max_length=200),
    task_type: str | None = Query(default=None, max_length=100),
    quality_tier: str = Query(default="standard", pattern="^(economy|standard|premium)$"),
    team_id: str = Query(default="", max_length=200),
    max_latency_ms: str = Query(default="", max_length=40),
    input_tokens: str = Query(default="", max_length=40),
    capabilities: str = Query(default="", max_length=500),
    quality_floor: str = Query(default="", max_length=40),
    price_model: str = Query(default="", max_length=512),
    price_factor: str = Query(default="", max_length=40),
    excluded_providers: str = Query(default="", max_length=2000),
    allowed_models: str = Query(default="", max_length=4000),
    preferred_provider: str = Query(default="", max_length=200),
) -> Any:
    key = who(request)
    if key is None:
        return denied()
    current: SelectionTable | None = _svc(request).table
    if current is None:
        return _page("Selection simulator", "<section>No selection table has been published yet.</section>", key.org_id)
    org = key.org_id or org_id or "acme"
    task = task_type if task_type in current.tasks else current.tasks[0]
    asked = WhatIfForm(
        team_id.strip(),
        max_latency_ms,
        input_tokens,
        capabilities,
        quality_floor,
        price_model.strip(),
        price_factor,
        excluded_providers,
        allowed_models,
        preferred_provider.strip(),
    )
    body = _simulate(current, org, task, quality_tier, key.org_id is None) + _what_if(
        current, org, task, quality_tier, asked
    )
    return _page("Selection simulator", body, key.org_id)


@dataclass(frozen=True)
class WhatIfForm:
    """The simulator's what-if fields as the form sent them: text (an empty field is "unchanged"), names
    comma-separated; `what_if` parses them, a mistake raising ValueError with the field to fix."""

    team_id: str = ""
    max_latency_ms: str = ""
    input_tokens: str = ""
    capabilities: str = ""
    quality_floor: str = ""
    price_model: str = ""
    price_factor: str = ""
    excluded_providers: str = ""
    allowed_models: str = ""
    preferred_provider: str = ""

    def names(self, text: str) -> list[str]:
        return [n.strip() for n in text.split(",") if n.strip()]

    def what_if(self, org: str) -> WhatIf:
        """The typed change; a preference that cannot be used raises PreferenceError with the field."""
        rules: dict[str, Any] = {
            "excluded_providers": self.names(self.excluded_providers) or None,
            "allowed_models": self.names(self.allowed_models) or None,
            "preferred_provider": self.preferred_provider or None,
        }
        rules = {k: v for k, v in rules.items() if v is not None}
        pref = None
        if rules:
            pref = parse_preference({"org_id": org, "team_id": self.team_id or None, **rules}, "what if")
        factor = _form_number(self.price_factor, "the price factor", 1e-6, 1000)
        prices = {self.price_model: factor} if self.price_model and factor is not None else {}
        tokens = _form_number(self.input_tokens, "input tokens", 0, 100_000_000)
        return WhatIf(
            max_latency_ms=_form_number(self.max_latency_ms, "max p95 latency", 0, 3_600_000),
            input_tokens=None if tokens is None else int(tokens),
            required_capabilities=tuple(self.names(self.capabilities)),
            quality_floor=_form_number(self.quality_floor, "the quality floor", 0, 1),
            price_factor=prices,
            preference=pref,
        )


def _form_number(text: str, name: str, low: float, high: float) -> float | None:
    """A form's number: None when the field is empty, else a value in [low, high] (ValueError names it)."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {text[:20]!r}") from None
    if not low <= value <= high:  # NaN fails this too
        raise ValueError(f"{name} must be from {low:g} to {high:g}, not {text[:20]}")
    return value


def _outcome_row(label: str, o: Any) -> str:
    if isinstance(o, SelectionError):
        return f"<tr><td>{escape(label)}</td><td colspan='6'>HTTP {o.status}: {escape(str(o))}</td></tr>"
    return (
        f"<tr><td>{escape(label)}</td><td>{escape(o.tier)}</td><td><strong>{escape(o.model)}</strong></td>"
        f"<td>{escape(o.provider)}</td><td>{unit_usd(o.estimated_cost_usd)}</td>"
        f"<td>{escape(', '.join(o.fallback_chain[:3]))}</td><td>{escape(o.binding_constraint)}</td></tr>"
    )


def _what_if(current: SelectionTable, org: str, task: str, tier: str, form: WhatIfForm) -> str:
    """Today's answer for the scope beside the answer with the form's changes, and the difference."""

    def field(name: str, value: Any, label: str, size: int = 10) -> str:
        shown = "" if value is None else escape(str(value))
        return f"<label>{label} <input name='{name}' value='{shown}' size='{size}'></label> "

    hidden = (
        f"<input type='hidden' name='org_id' value='{escape(org)}'>"
        f"<input type='hidden' name='task_type' value='{escape(task)}'>"
        f"<input type='hidden' name='quality_tier' value='{escape(tier)}'>"
    )
    form_html = (
        f"<form method='get' id='whatif-form'>{hidden}"
        + field("team_id", form.team_id, "team")
        + field("max_latency_ms", form.max_latency_ms, "max p95 latency, ms", 7)
        + field("input_tokens", form.input_tokens, "input tokens", 8)
        + field("capabilities", form.capabilities, "needs (vision, function_calling, …)", 18)
        + field("quality_floor", form.quality_floor, "quality floor (0–1)", 5)
        + "<br>"
        + field("price_model", form.price_model, "price of model", 18)
        + field("price_factor", form.price_factor, "× factor", 5)
        + field("excluded_providers", form.excluded_providers, "exclude providers", 16)
        + field("allowed_models", form.allowed_models, "allow only models", 22)
        + field("preferred_provider", form.preferred_provider, "prefer provider", 10)
        + "<button>Compare</button></form>"
    )
    try:
        change = form.what_if(org)
    except ValueError as exc:  # PreferenceError is one too
        return f"<section id='whatif'><h2>What if…</h2>{form_html}<p class='error'>{escape(str(exc))}</p></section>"
    req = SelectRequest(org, task, tier, team_id=form.team_id or None)
    today, then = what_if(current, req, change)
    verdict = ""
    if isinstance(today, Decision) and isinstance(then, Decision) and today.estimated_cost_usd > 0:
        delta = then.estimated_cost_usd - today.estimated_cost_usd
        pct = 100 * delta / today.estimated_cost_usd
        word = "saves" if delta < 0 else "costs"
        verdict = f"<p id='whatif-verdict'>The change {word} {unit_usd(abs(delta))} per request ({pct:+.1f} %).</p>"
    note = "" if change.changes() else "<p class='muted'>Fill in a field to compare an answer with today's.</p>"
    return (
        f"<section id='whatif'><h2>What if…</h2>{form_html}{note}<table><tr><th></th><th>tier served</th>"
        "<th>model</th><th>provider</th><th>expected cost</th><th>fallbacks</th><th>binding</th></tr>"
        f"{_outcome_row('today', today)}{_outcome_row('what if', then)}</table>{verdict}</section>"
    )


PERIODS = ("daily", "weekly", "monthly", "quarterly", "yearly")
SCOPES = ("org", "team", "user")


@router.get("/dashboard/budgets", response_class=HTMLResponse)
def budgets_page(request: Request, edit: str | None = Query(default=None, max_length=200)) -> Any:
    """Every budget the key may see (cams.yaml's and the API's), and a form to create one or change
    one written through the API or this page; saving needs a key with the write scope."""
    key = who(request)
    if key is None:
        return denied()
    return _budget_editor(request, key, edit)


@router.post("/dashboard/budgets", response_class=HTMLResponse)
async def save_budget(request: Request) -> Any:
    key = who(request)
    if key is None:
        return denied()
    form = {k: v[0].strip() for k, v in parse_qs((await request.body())[:20000].decode("utf-8", "replace")).items()}
    if not key.allows("write"):
        return _budget_editor(request, key, None, form, "this key lacks the write scope: sign in with a write key", 403)
    svc = _svc(request)
    try:
        body = _budget_body(form, key)
        if form.get("original"):
            budget_routes.replace(svc.engine, svc.config, key, form["original"], body)
        else:
            budget_routes.create(svc.engine, svc.config, key, body)
    except ApiError as exc:
        return _budget_editor(request, key, None, form, exc.message, exc.status)
    except ValueError as exc:
        return _budget_editor(request, key, None, form, str(exc), 422)
    return RedirectResponse("/dashboard/budgets", status_code=303)


def _budget_body(form: dict[str, str], key: ApiKey) -> dict[str, Any]:
    """The form as a budget (the API's shape): one warning and one critical threshold, one channel."""
    thresholds = [
        {"level": level, "percent": float(form[f"{level}_percent"]), "action": form.get(f"{level}_action") or "notify"}
        for level in ("warning", "critical")
        if form.get(f"{level}_percent")
    ]
    url = form.get("channel_url") or ""
    channel = {"type": form.get("channel_type") or "log", **({"url": url} if url else {})}
    return {
        "id": form.get("id") or form.get("original") or "",
        "name": form.get("name") or None,
        "scope": form.get("scope") or "org",
        "scope_id": form.get("scope_id") or "",
        "org_id": key.org_id or form.get("org_id") or None,
        "period": form.get("period") or "monthly",
        "amount_usd": form.get("amount_usd") or "",
        "timezone": form.get("timezone") or "UTC",
        "thresholds": thresholds,
        "channels": [channel],
    }


def _budget_editor(
    request: Request,
    key: ApiKey,
    edit: str | None,
    form: dict[str, str] | None = None,
    problem: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    bc = t.budget_configs
    q = select(bc).order_by(bc.c.id)
    with _svc(request).engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(q.where(bc.c.org_id == key.org_id) if key.org_id else q).mappings()]
    if form is None:
        form = {}
        chosen = next((r for r in rows if r["id"] == edit and r["source"] == "api"), None)
        if chosen is not None:
            cfg = json.loads(chosen["config_json"])
            form = {k: str(cfg.get(k) or "") for k in ("name", "scope", "scope_id", "org_id", "period", "amount_usd")}
            form |= {"original": chosen["id"], "id": chosen["id"], "timezone": cfg.get("timezone") or "UTC"}
            for th in cfg.get("thresholds") or []:
                form.setdefault(f"{th.get('level')}_percent", str(th.get("percent")))
                form.setdefault(f"{th.get('level')}_action", str(th.get("action") or "notify"))
            channel = (cfg.get("channels") or [{}])[0]
            form |= {"channel_type": channel.get("type") or "log", "channel_url": channel.get("url") or ""}
    listing = "".join(
        f"<tr><td>{escape(r['id'])}</td><td>{escape(r['source'])}</td><td>{escape(str(r['org_id'] or ''))}</td>"
        f"<td>{_budget_summary(r)}</td><td>"
        + (
            f"<a href='/dashboard/budgets?edit={escape(r['id'])}'>edit</a>"
            if r["source"] == "api" and key.allows("write")
            else "<span class='muted'>in cams.yaml</span>"
            if r["source"] == "yaml"
            else ""
        )
        + "</td></tr>"
        for r in rows
    )
    page = _page(
        "Budgets",
        "<section id='budget-list'><table><tr><th>budget</th><th>source</th><th>org</th><th>what</th><th></th></tr>"
        f"{listing or '<tr><td colspan=5 class=muted>no budgets yet</td></tr>'}</table></section>"
        + _budget_form(form, key, problem),
        key.org_id,
    )
    page.status_code = status
    return page


def _budget_summary(row: dict[str, Any]) -> str:
    cfg = json.loads(row["config_json"])
    levels = ", ".join(
        f"{th.get('level')} {float(th.get('percent') or 0):g} %"
        + (" of forecast" if th.get("basis") == "forecast" else "")
        for th in cfg.get("thresholds") or []
    )
    return escape(
        f"{cfg.get('scope')} {cfg.get('scope_id')}: {usd(cfg.get('amount_usd'))} {cfg.get('period')}; {levels}"
    )


def _budget_form(form: dict[str, str], key: ApiKey, problem: str | None) -> str:
    def field(name: str, label: str, kind: str = "text", size: int = 14) -> str:
        return (
            f"<label>{label} <input name='{name}' type='{kind}' size='{size}' "
            f"value='{escape(form.get(name, ''))}'></label>"
        )

    def choice(name: str, label: str, options: tuple[str, ...], default: str) -> str:
        chosen = form.get(name) or default
        opts = "".join(f"<option{' selected' if o == chosen else ''}>{o}</option>" for o in options)
        return f"<label>{label} <select name='{name}'>{opts}</select></label>"

    editing = form.get("original")
    title = f"Change {escape(editing)}" if editing else "New budget"
    return (
        f"<section id='budget-form'><h2>{title}</h2>"
        + (f"<p id='problem' style='color:#dc2626'>{escape(problem)}</p>" if problem else "")
        + "<form method='post' action='/dashboard/budgets' class='grid'>"
        + (f"<input type='hidden' name='original' value='{escape(editing)}'>" if editing else field("id", "id"))
        + field("name", "name", size=20)
        + choice("scope", "scope", SCOPES, "org")
        + field("scope_id", "scope id")
        + ("" if key.org_id else field("org_id", "org"))
        + choice("period", "period", PERIODS, "monthly")
        + field("amount_usd", "amount USD", "number", 8)
        + field("timezone", "time zone", size=16)
        + field("warning_percent", "warning at %", "number", 5)
        + field("critical_percent", "critical at %", "number", 5)
        + choice("critical_action", "then", ("notify", "downgrade", "block"), "notify")
        + choice("channel_type", "alerts to", ("log", "webhook", "slack"), "log")
        + field("channel_url", "url", size=30)
        + "<button>Save</button></form><p class='muted'>The form sets one warning and one critical threshold "
        "and one channel (the API takes any number); the id cannot change. Budgets from cams.yaml change "
        "in cams.yaml.</p></section>"
    )


def _budgets(budgets: list[dict[str, Any]]) -> str:
    if not budgets:
        return "<section><h2>Budgets</h2><p class='muted'>No budget has been evaluated yet.</p></section>"
    rows = "".join(
        f"<tr><td>{escape(b['budget_id'])}</td><td>{escape(b['scope'])} {escape(b['scope_id'])}</td>"
        f"<td><span class='badge' style='background:{STATE_COLORS.get(b['state'], '#475569')}' "
        f"title='spend so far against the thresholds'>{escape(b['state'])}</span>{_forecast_badge(b)}</td>"
        f"<td>{escape(b['action'])}</td><td>{usd(b['spent_usd'])} of {usd(b['amount_usd'])}</td>"
        f"<td>{b['percent_used']:.1f} %</td><td>{usd(b['forecast_usd'])} ({b['forecast_percent']:.0f} %)</td>"
        f"<td>{str(b['period_start'])[:10]} → {str(b['period_end'])[:10]}</td></tr>"
        for b in budgets
    )
    chart = hbars(
        [(b["budget_id"], b["percent_used"]) for b in budgets],
        "Spend against amount, % (dashed: forecast at period end)",
        unit=" %",
        marks={b["budget_id"]: b["forecast_percent"] for b in budgets},
        highlight=next((b["budget_id"] for b in budgets if b["state"] == "exceeded"), None),
    )
    return (
        "<section id='budgets'><h2>Budgets by state</h2><table><tr><th>budget</th><th>scope</th><th>state</th>"
        f"<th>action</th><th>spent</th><th>used</th><th>forecast</th><th>period</th></tr>{rows}</table>"
        "<p class='muted' id='state-basis'>The state's colour is set by spend so far against the thresholds; "
        "a <em>forecast</em> badge marks a budget whose forecast at period end reaches 100 % or more "
        "(forecast-basis thresholds alert on it before spend gets there).</p>"
        f"{chart}</section>"
    )


def _forecast_badge(b: dict[str, Any]) -> str:
    """A second badge when the forecast, not the spend so far, is what should worry the reader."""
    if b["forecast_percent"] < 100 or b["state"] == "exceeded":
        return ""
    return (
        f" <span class='badge forecast' style='background:#ca8a04' title='forecast at period end'>"
        f"forecast {b['forecast_percent']:.0f} %</span>"
    )


def _alerts(alerts: list[Any]) -> str:
    """The latest alerts, CAMS's own and those other systems posted (their source named)."""
    if not alerts:
        return ""
    rows = "".join(
        f"<tr><td>{str(a.fired_at)[:16]}</td><td>{escape(a.budget_id)}</td><td>{escape(a.level)}</td>"
        f"<td>{escape(a.basis)}</td><td>{a.percent_used:.1f} %</td>"
        f"<td>{escape(json.loads(a.payload_json).get('source', 'CAMS'))}</td></tr>"
        for a in alerts
    )
    return (
        "<section id='alerts'><h2>Recent alerts</h2><table><tr><th>fired</th><th>budget</th><th>level</th>"
        f"<th>basis</th><th>used</th><th>source</th></tr>{rows}</table></section>"
    )


def _window(start: date | None, end: date | None, days: int) -> tuple[date, date]:
    """The inclusive day range a page shows: [start, end], or the `days` up to `end` (default today);
    at most 400 days, and never backwards."""
    until = end or datetime.now(UTC).date()
    since = start or until - timedelta(days=days - 1)
    if since > until:
        since, until = until, since
    return max(since, until - timedelta(days=399)), until


def _query(**params: Any) -> str:
    return urlencode({k: str(v) for k, v in params.items() if v})


def _filters(key: ApiKey, org: str | None, team: str | None, since: date, until: date) -> str:
    """The date range and org/team pickers: a GET form, so every view is a link to share."""
    org_field = (
        f"<label>org <input name='org_id' value='{escape(org or '')}' size='12' placeholder='all'></label>"
        if key.org_id is None
        else f"<span class='muted'>org {escape(key.org_id)}</span>"
    )
    return (
        "<section id='filters'><form method='get' action='/dashboard' class='grid'>"
        f"<label>from <input type='date' name='start' value='{since}'></label>"
        f"<label>to <input type='date' name='end' value='{until}'></label>{org_field}"
        f"<label>team <input name='team_id' value='{escape(team or '')}' size='12' placeholder='all'></label>"
        "<button>Show</button></form></section>"
    )


def _breakdowns(engine: Engine, key: ApiKey, org: str | None, team: str | None, since: date, until: date) -> str:
    """Spend by team, user, task and model for the window, the top 12 of each, each with its full CSV."""
    where = rollup_where(key, org, team, None, since, until)
    tables = []
    for by in ("team", "user", "task", "model"):
        rows = breakdown(engine, where, BREAKDOWNS[by])
        name = BREAKDOWNS[by][-1].name  # the column a row is named by
        link = "/dashboard/breakdown.csv?" + _query(by=by, org_id=org, team_id=team, start=since, end=until)
        body = "".join(
            f"<tr><td>{escape(str(x.get('org_id', '')) + '/' if by in ('team', 'user') else '')}"
            f"{escape(str(x[name] or '(none)'))}</td><td>{x['requests']:,}</td>"
            f"<td>{usd(x['cost_usd'])}</td><td>{usd(x['charged_usd'])}</td></tr>"
            for x in rows[:12]
        )
        more = f"<p class='muted'>{len(rows) - 12:,} more in the CSV</p>" if len(rows) > 12 else ""
        tables.append(
            f"<div id='by-{by}'><h3>By {by} <a class='muted' href='{escape(link)}'>CSV</a></h3>"
            "<table><tr><th></th><th>requests</th><th>cost</th><th>RelayCore charged</th></tr>"
            f"{body or '<tr><td colspan=4 class=muted>no spend</td></tr>'}</table>{more}</div>"
        )
    return f"<section id='breakdowns'><h2>Breakdowns</h2><div class='grid'>{''.join(tables)}</div></section>"


@router.get("/dashboard/breakdown.csv")
def breakdown_csv(
    request: Request, by: str = Query(pattern="^(team|user|task|model|provider)$"), v: View | None = Depends(view)
) -> Any:
    """A breakdown's every row as a CSV download (the dashboard's links: the session cookie signs in)."""
    if v is None:
        return denied()
    where = rollup_where(v.key, v.org, v.team, None, v.since, v.until)
    rows = breakdown(_svc(request).engine, where, BREAKDOWNS[by])
    return as_csv(rows, filename=f"cams-by-{by}-{v.since}-{v.until}.csv")


def _trends(by_model: list[Any], by_provider: list[Any], window: str) -> str:
    if not by_model:
        return "<section><h2>Spend trends</h2><p class='muted'>No costs in this window.</p></section>"
    xs = sorted({str(d)[:10] for d, _, _ in by_model})
    totals: dict[str, float] = {}
    for _, m, c in by_model:
        totals[m] = totals.get(m, 0.0) + _float(c)
    top = sorted(totals, key=totals.get, reverse=True)[:6]  # type: ignore[arg-type]
    series = {m: [0.0] * len(xs) for m in top}
    index = {x: i for i, x in enumerate(xs)}
    for d, m, c in by_model:
        if m in series:
            series[m][index[str(d)[:10]]] += _float(c)
    providers = sorted(((p, _float(c)) for p, c in by_provider), key=lambda pc: -pc[1])
    return (
        f"<section id='trends'><h2>Spend trends, {escape(window)}</h2><div class='grid'>"
        + lines(xs, series, "Daily cost by model (top 6), USD", unit=" $", width=720)
        + hbars(providers, "Cost by provider, USD", unit=" $", width=520)
        + "</div></section>"
    )


def _risk(risk: list[Any]) -> str:
    if not risk:
        return "<section><h2>Reconciliation</h2><p class='muted'>Nothing reconciled in this window.</p></section>"
    rows = sorted(((str(c), _float(a)) for c, a, _ in risk), key=lambda ca: -ca[1])
    counts = "".join(f"<tr><td>{escape(str(c))}</td><td>{int(n):,}</td><td>{usd(a)}</td></tr>" for c, a, n in risk)
    return (
        "<section id='risk'><h2>Reconciliation: dollars at risk</h2><div class='grid'>"
        + hbars(rows, "Dollars at risk by category, USD", unit=" $", width=600)
        + f"<table><tr><th>category</th><th>requests</th><th>at risk</th></tr>{counts}</table></div></section>"
    )


def _savings(saved: list[Any]) -> str:
    """Spend against each counterfactual, per team, and the org's savings by counterfactual as bars."""
    if not saved:
        return (
            "<section><h2>Savings</h2><p class='muted'>No savings report yet (it follows each new table).</p></section>"
        )
    totals: dict[str, float] = {}
    rows = []
    for org, team, cf, n, actual, alt, _as_of in saved:
        delta = _float(alt) - _float(actual)
        totals[cf] = totals.get(cf, 0.0) + _float(alt)
        if cf == "requested":  # every priced request: the spend the others are set against
            totals["actual spend"] = totals.get("actual spend", 0.0) + _float(actual)
        rows.append(
            f"<tr><td>{escape(org)}</td><td>{escape(team or '—')}</td><td>{escape(cf)}</td><td>{int(n):,}</td>"
            f"<td>{usd(actual)}</td><td>{usd(alt)}</td><td>{usd(delta)}</td></tr>"
        )
    as_of = max(str(x[-1])[:19] for x in saved)
    return (
        f"<section id='savings'><h2>Savings against what was asked for, always-standard and always-premium "
        f"(30 days to {escape(as_of)})</h2><div class='grid'>"
        + hbars(
            sorted(totals.items()),
            "Spend, and the same requests on each counterfactual, USD",
            unit=" $",
            width=600,
            highlight="actual spend",
        )
        + "<table><tr><th>org</th><th>team</th><th>counterfactual</th><th>requests</th><th>spent</th>"
        f"<th>counterfactual</th><th>saved</th></tr>{''.join(rows)}</table></div></section>"
    )


def _recommendations(moves: list[Any]) -> str:
    """Each recommendation with its evidence (the table row's explanation) and the call that applies it."""
    if not moves:
        return ""
    rows = "".join(
        f"<tr><td>{escape(m.org_id)}/{escape(m.team_id or '—')}</td><td>{escape(m.task_type)}</td>"
        f"<td>{escape(m.from_model)} → <strong>{escape(m.to_model)}</strong></td><td>{usd(m.monthly_savings_usd)}</td>"
        f"<td>{m.from_quality:.2f} → {m.to_quality:.2f}</td><td>{int(m.requests):,}</td>"
        f"<td><a href='/dashboard/explain/{escape(m.explanation_id)}'>why</a></td>"
        f"<td><code>PUT /api/v1/preferences/{escape(m.org_id)}{'/teams/' + escape(m.team_id) if m.team_id else ''}"
        f"</code> excluding {escape(m.from_model)}</td></tr>"
        for m in moves
    )
    return (
        "<section id='recommendations'><h2>Recommendations</h2><p class='muted'>The same requests on the table's "
        "choice of at least the same expected quality; the full call (with the scope's other rules) is in "
        "<code>GET /api/v1/cost-analysis/recommendations</code>.</p><table><tr><th>scope</th><th>task</th>"
        "<th>move</th><th>saves a month</th><th>quality</th><th>requests</th><th>evidence</th><th>apply</th></tr>"
        f"{rows}</table></section>"
    )


def _recent(recent: list[dict[str, Any]]) -> str:
    if not recent:
        return ""
    rows = "".join(
        f"<tr><td><a href='/dashboard/explain/{escape(h['selection_id'])}'>{escape(str(h['selected_at'])[:19])}</a></td>"
        f"<td>{escape(h['org_id'])}</td><td>{escape(h['task_type'])}</td><td>{escape(h['quality_tier'])} → "
        f"{escape(h['served_tier'])}</td><td>{escape(h['model'])}</td><td>{escape(h['budget_state'])}</td>"
        f"<td>{escape(h['binding_constraint'])}</td></tr>"
        for h in recent
    )
    return (
        "<section id='recent'><h2>Recent selections</h2><table><tr><th>when (explain)</th><th>org</th><th>task</th>"
        f"<th>tier</th><th>model</th><th>budget</th><th>binding</th></tr>{rows}</table></section>"
    )


def _explanation(e: dict[str, Any], chosen: str, alts: list[dict[str, Any]], row: Any) -> str:
    def metric(k: str) -> list[tuple[str, float]]:
        return [(a["model"], _float(a.get(k))) for a in alts if a.get(k) is not None]

    facts = (
        f"<table><tr><th>chosen</th><td>{escape(str(chosen))}</td></tr>"
        f"<tr><th>binding constraint</th><td>{escape(str(e.get('binding_constraint')))}</td></tr>"
        f"<tr><th>tier asked → served</th><td>{escape(str(e.get('tier_requested')))} → {escape(str(e.get('tier_served')))}</td></tr>"
        f"<tr><th>budget state</th><td>{escape(str(e.get('budget_state')))} ({escape(str(e.get('budget_action')))})</td></tr>"
        f"<tr><th>table version</th><td>{escape(str(row['table_version']))}</td></tr></table>"
    )
    rejected = "".join(
        f"<tr><td>{escape(a['model'])}</td><td>{escape(str(a.get('rejected') or '—'))}</td></tr>" for a in alts
    )
    return (
        f"<section id='facts'>{facts}</section><section id='alternatives'><h2>The chosen model against its alternatives</h2>"
        "<div class='grid'>"
        + hbars(metric("expected_cost_usd"), "Expected cost per request, USD", unit=" $", width=560, highlight=chosen)
        + hbars(metric("expected_quality"), "Expected quality (0–1)", width=560, highlight=chosen)
        + hbars(metric("p95_latency_ms"), "p95 latency, ms", unit=" ms", width=560, highlight=chosen)
        + f"</div><table><tr><th>model</th><th>rejected because</th></tr>{rejected}</table></section>"
    )


def _simulate(current: SelectionTable, org: str, task: str, tier: str, any_org: bool) -> str:
    states = [
        ("as it is now", None),
        ("ok", "none"),
        ("warning", "notify"),
        ("critical", "downgrade"),
        ("exceeded", "block"),
    ]
    rows, chart = [], ""
    for label, action in states:
        if action is None:
            table = current
        else:
            fake = [
                {
                    "budget_id": "simulated",
                    "scope": "org",
                    "scope_id": org,
                    "org_id": org,
                    "state": label,
                    "action": action,
                }
            ]
            table = SelectionTable(
                current.version,
                {"models": current.models, "rows": list(current.rows.values())},
                fake,
                current.preference_sources,
            )
        try:
            d = table.select(SelectRequest(org, task, tier))
            rows.append(
                f"<tr><td>{escape(label)}</td><td>{escape(d.tier)}</td><td><strong>{escape(d.model)}</strong></td>"
                f"<td>{unit_usd(d.estimated_cost_usd)}</td><td>{escape(', '.join(d.fallback_chain[:3]))}</td>"
                f"<td>{escape(d.binding_constraint)}</td></tr>"
            )
            if action is None:
                chart = hbars(
                    [(a["model"], _float(a["expected_cost_usd"])) for a in d.alternatives],
                    f"Candidates for {task}/{d.tier}: expected cost per request, USD",
                    unit=" $",
                    width=640,
                    highlight=d.model,
                )
        except SelectionError as exc:
            rows.append(f"<tr><td>{escape(label)}</td><td colspan='5'>HTTP {exc.status}: {escape(str(exc))}</td></tr>")
    org_input = f"org <input name='org_id' value='{escape(org)}' size='12'> " if any_org else f"org {escape(org)} "
    task_opts = "".join(f"<option{' selected' if x == task else ''}>{escape(x)}</option>" for x in current.tasks)
    tier_opts = "".join(f"<option{' selected' if x == tier else ''}>{x}</option>" for x in TIER_ORDER)
    form = (
        f"<form method='get'>{org_input} task <select name='task_type'>{task_opts}</select> tier "
        f"<select name='quality_tier'>{tier_opts}</select> <button>Simulate</button></form>"
    )
    return (
        f"<section>{form}<p class='muted'>table version {escape(current.version)}</p></section>"
        "<section id='outcomes'><h2>What the table chooses, now and under each budget state</h2><table><tr><th>budget state</th>"
        f"<th>tier served</th><th>model</th><th>expected cost</th><th>fallbacks</th><th>binding</th></tr>{''.join(rows)}</table>"
        f"{chart}</section>"
    )


# after /dashboard/breakdown.csv: the path parameter would take that name too
@router.get("/dashboard/{table}.csv")
def table_csv(request: Request, table: str, v: View | None = Depends(view)) -> Any:
    """One of the overview's tables as a CSV download, all its rows for the window."""
    if v is None:
        return denied()
    if table not in TABLES:
        page = _page("Not found", f"<section>No table {escape(table)}; one of {', '.join(TABLES)}.</section>", v.org)
        page.status_code = 404
        return page
    rows = _tables(_svc(request).engine, v, limit=None)[table]
    return as_csv(
        [jsonable(dict(x) if isinstance(x, dict) else dict(x._mapping)) for x in rows],
        filename=f"cams-{table}-{v.since}-{v.until}.csv",
    )
