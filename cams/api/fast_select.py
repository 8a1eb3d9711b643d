"""`POST /api/v1/models/select` without the framework: the lookup every LLM call waits for.

An ASGI middleware in front of FastAPI answers the common request itself: body decoded by msgspec,
the key checked in memory, the decision made on the event loop (microseconds, no thread-pool hop),
the history appended to the spool. Anything unusual (a body FastAPI would coerce or reject, a missing
or foreign key, a query string, a prompt large enough to tokenize for a while) is handed on untouched
to the FastAPI route, which stays the reference and what OpenAPI describes: both answer with the same
bytes (tests/test_fast_select.py compares them over a matrix of requests).
"""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime
from random import getrandbits
from typing import Any

import msgspec

from cams.api.guard import _BAD_JSON_TEXT, ASGIApp, Message, Receive, Scope, Send, _replay
from cams.api.spool import now_text
from cams.selection.select import Request, SelectionError
from cams.selection.table import TIER_ORDER

PATH = "/api/v1/models/select"
PLAIN_MEMO_LIMIT = 100_000  # scopes whose answer is kept per table; cleared (not evicted) past it
_ANSWER_MIDDLE = ("model", "provider", "estimated_cost_usd", "fallback_chain", "budget_state", "table_version")
_encode = msgspec.json.Encoder().encode
FAST_PROMPT_CHARS = 20_000  # longer prompts are tokenized on FastAPI's worker threads
_decode = msgspec.json.Decoder().decode
_OPTIONAL_IDS = ("team_id", "user_id", "request_id")
_FIELDS = frozenset(
    (
        "org_id",
        "team_id",
        "user_id",
        "task_type",
        "quality_tier",
        "max_latency_ms",
        "required_capabilities",
        "input_tokens",
        "prompt",
        "request_id",
    )
)


class Body:
    """The fields of the FastAPI route's `SelectBody`, already validated by the same limits."""

    __slots__ = (
        "input_tokens",
        "max_latency_ms",
        "org_id",
        "prompt",
        "quality_tier",
        "request_id",
        "required_capabilities",
        "task_type",
        "team_id",
        "user_id",
    )

    def __init__(self, raw: dict[str, Any]) -> None:
        self.org_id: str = raw["org_id"]
        self.task_type: str = raw["task_type"]
        self.quality_tier: str = raw.get("quality_tier", "standard")
        self.team_id: str | None = raw.get("team_id")
        self.user_id: str | None = raw.get("user_id")
        self.request_id: str | None = raw.get("request_id")
        self.max_latency_ms: float | None = raw.get("max_latency_ms")
        self.required_capabilities: list[str] = raw.get("required_capabilities", [])
        self.input_tokens: int | None = raw.get("input_tokens")
        self.prompt: str | None = raw.get("prompt")

    def unconstrained(self) -> bool:
        """Nothing about this request but its scope and tier shapes the answer."""
        return (
            self.prompt is None
            and self.input_tokens is None
            and self.max_latency_ms is None
            and not self.required_capabilities
        )


def parse(body: bytes) -> Body | None:
    """The request, when it is one the FastAPI route would accept exactly as sent; else None."""
    if b"\\u" in body and _BAD_JSON_TEXT.search(body):  # the guard answers these
        return None
    try:
        raw = _decode(body)
    except msgspec.DecodeError:
        return None
    if type(raw) is not dict or not raw.keys() <= _FIELDS:
        return None
    org, task = raw.get("org_id"), raw.get("task_type")
    if type(org) is not str or not 0 < len(org) <= 200 or type(task) is not str or not 0 < len(task) <= 100:
        return None
    for name in _OPTIONAL_IDS:
        v = raw.get(name)
        if v is not None and (type(v) is not str or len(v) > 200):
            return None
    if raw.get("quality_tier", "standard") not in TIER_ORDER:
        return None
    lat = raw.get("max_latency_ms")
    if lat is not None:
        if type(lat) is int:
            lat = raw["max_latency_ms"] = float(lat)
        if type(lat) is not float or not 0 < lat <= 3_600_000:
            return None
    caps = raw.get("required_capabilities", [])
    if type(caps) is not list or len(caps) > 20 or any(type(c) is not str for c in caps):
        return None
    tokens = raw.get("input_tokens")
    if tokens is not None and (type(tokens) is not int or not 0 <= tokens <= 100_000_000):
        return None
    prompt = raw.get("prompt")
    if prompt is not None and (type(prompt) is not str or len(prompt) > FAST_PROMPT_CHARS):
        return None
    return Body(raw)


def render(status: int, content: Any) -> tuple[int, bytes]:
    """The bytes of Starlette's JSONResponse (its `render`), so both paths answer alike to the byte."""
    return status, json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


class FastSelect:
    """ASGI middleware: answers what `parse` accepts and the key allows; passes everything else on."""

    def __init__(self, app: ASGIApp, service: Any, max_body_bytes: int, enabled: bool = True) -> None:
        self.app, self.svc, self.max_body_bytes, self.enabled = app, service, max_body_bytes, enabled
        self.answered = 0  # requests this path answered itself (tests read it)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            not self.enabled
            or scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or scope.get("query_string")
        ):
            await self.app(scope, receive, send)
            return
        auth, json_body, length = None, False, None
        for name, value in scope["headers"]:
            if name == b"authorization" and auth is None:
                auth = value
            elif name == b"content-type":
                json_body = value == b"application/json"
            elif name == b"content-length":
                length = value
        if auth is None or not json_body or length is None or not length.isdigit() or int(length) > self.max_body_bytes:
            await self.app(scope, receive, send)
            return
        chunks: list[Message] = []
        size = 0
        while True:
            message = await receive()
            chunks.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_body_bytes or not message.get("more_body", False):
                break
        answer = None
        if chunks[-1]["type"] == "http.request" and not chunks[-1].get("more_body", False):
            body = chunks[0]["body"] if len(chunks) == 1 else b"".join(m.get("body", b"") for m in chunks)
            answer = self.answer(auth, body)
        if answer is None:
            await self.app(scope, _replay(chunks, receive), send)
            return
        self.answered += 1
        status, payload, extra = answer
        headers = [(b"content-length", str(len(payload)).encode()), (b"content-type", b"application/json")]
        if extra:
            headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def answer(self, auth: bytes, raw_body: bytes) -> tuple[int, bytes, dict[str, str] | None] | None:
        """The route's answer, or None to let the FastAPI route give it."""
        from cams.api.keys import digest

        svc = self.svc
        text = auth.decode("latin-1")
        if not text.startswith("Bearer "):
            return None
        key = svc.keys.get(digest(text[7:].strip()))
        if key is None or not key.allows("read"):
            return None
        body = parse(raw_body)
        if body is None or (key.org_id is not None and body.org_id != key.org_id):
            return None  # FastAPI answers (and counts the request against the key's limit)
        wait = svc.limiter.retry_after(key.id)
        if wait is not None:
            status, content, headers = rate_limited(svc.limiter, key.id, wait)
            return *render(status, content), headers
        table = svc.table
        if table is None:
            return None
        if body.unconstrained():
            return (*plain(svc, table, body), None)
        try:
            d = svc.decide(table, body)
        except SelectionError as exc:
            return *render(exc.status, error_content(exc.code, str(exc), exc.detail)), None
        svc.after_select(body, d)
        return *render(200, d.response()), None


def plain(svc: Any, table: Any, body: Body) -> tuple[int, bytes]:
    """A request without per-request constraints: its scope's answer is decided once per table (and
    budget refresh), encoded once; each request adds only its ids and time, to the answer and the spool."""
    scope = (body.org_id, body.team_id, body.user_id, body.task_type, body.quality_tier)
    memo = table.memo
    known = memo.get(scope)
    if known is None:
        try:
            d = svc.decide(table, body)
        except SelectionError as exc:
            known = render(exc.status, error_content(exc.code, str(exc), exc.detail))
        else:
            answer = d.response()
            middle = {k: answer[k] for k in _ANSWER_MIDDLE}
            known = (_encode(middle)[1:-1], _encode(history_row(body, d, at=None))[1:-1])
        if len(memo) >= PLAIN_MEMO_LIMIT:
            memo.clear()
        memo[scope] = known
    if type(known[0]) is int:  # a refusal: the same bytes every time
        return known  # type: ignore[return-value]
    middle_bytes, row_bytes = known
    sid = b"%032x" % getrandbits(128)
    line = b'{"selection_id":"%s","request_id":%s,"selected_at":"%s",%s}\n' % (
        sid,
        _encode(body.request_id),
        now_text(),
        row_bytes,
    )
    svc.spool.append_soon(line, asyncio.get_running_loop())
    return 200, b'{"selection_id":"' + sid + b'",' + middle_bytes + b',"explanation_id":"' + sid + b'"}'


def history_row(body: Any, d: Any, at: datetime | bool | None = True) -> dict[str, Any]:
    """A selection's history columns (less its ids) and explanation, as spooled for the warehouse.
    `at=None` leaves out the time (the plain path adds it per request)."""
    row = {
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
    if d.preference is not None:  # named only when a preference applied: other explanations stay as they were
        row["explanation"]["preference"] = d.preference
    if at is not None:
        row["selected_at"] = datetime.now(UTC)
    return row


def error_content(code: str, message: str, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every error's body (SPEC §7): `{"error": {"code", "message", "detail"?}}`."""
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if detail:
        body["error"]["detail"] = detail
    return body


def rate_limited(limiter: Any, key_id: str, wait: float) -> tuple[int, dict[str, Any], dict[str, str]]:
    """429 with Retry-After (whole seconds, at least 1): the same on both paths."""
    settings = limiter.settings
    seconds = max(1, math.ceil(wait))
    message = (
        f"API key {key_id} is over its limit of {settings.limit(key_id)} requests per {settings.window_s:g} s; "
        "retry after the seconds in Retry-After"
    )
    return 429, error_content("rate_limited", message), {"Retry-After": str(seconds)}


def request_of(body: Any, input_tokens: int | None) -> Request:
    """The selection request of a route body (either path's), with its input size resolved."""
    return Request(
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
