"""The contracts of `contracts.py`, compiled: msgspec decodes and checks a line in C.

Why: validating a record in Python was 40 % of landing a day (profiled). This is a fast path
only. It answers with the landing row, or with None when it is not sure, and then the Python
contract decides: accepts the record the same way, or quarantines it with its reason. So a
line lands exactly as `contracts.parse_*` would land it (tests/test_compiled.py checks the two agree
on valid, broken and odd records); the reasons a person reads always come from one place.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

from cams.pricing.rates import SERVICE_TIERS

# `timeutil.parse_rfc3339`'s first step, called directly: the compiled path takes a UTC time ("Z",
# "+00:00") as it is and leaves the rest (no offset, another offset, other spellings) to the Python
# contract; a wrapper call per time was 5 % of a landing's CPU
_fromisoformat = datetime.fromisoformat
COUNT_MAX = 10**12
MONEY_MAX = Decimal(10) ** 9


def _text(max_len: int, required: bool = False) -> Any:
    """Text of at most `max_len` characters; a required one is also non-empty. A required text of
    whitespace alone is refused after decoding (`_blank`): a `pattern` would call Python's `re` for
    every value, which was half the decoding time of a line."""
    meta = msgspec.Meta(min_length=1, max_length=max_len) if required else msgspec.Meta(max_length=max_len)
    return Annotated[str, meta]


def _blank(*values: str) -> bool:
    """Whether a required text is whitespace alone (the Python contract's `not value.strip()`: both
    ask Py_UNICODE_ISSPACE)."""
    for v in values:  # noqa: SIM110 (a loop, not any(generator): it runs for every line)
        if v.isspace():
            return True
    return False


Count = Annotated[int, msgspec.Meta(ge=0, le=COUNT_MAX)]


class _Usage(msgspec.Struct):
    request_id: _text(200, True)  # type: ignore[valid-type]
    timestamp: str
    org_id: _text(200, True)  # type: ignore[valid-type]
    task_type: _text(100, True)  # type: ignore[valid-type]
    model: _text(512, True)  # type: ignore[valid-type]
    provider: _text(100, True)  # type: ignore[valid-type]
    input_tokens: Count
    output_tokens: Count
    status: Literal["success", "error"]
    team_id: _text(200) | None = None  # type: ignore[valid-type]
    user_id: _text(200) | None = None  # type: ignore[valid-type]
    model_requested: _text(512) | None = None  # type: ignore[valid-type]
    cached_input_tokens: Count | None = None
    cache_creation_input_tokens: Count | None = None
    reasoning_tokens: Count | None = None
    service_tier: str | None = None
    latency_ms: Count | None = None
    cost_usd: Decimal | None = None
    steering_rule: _text(512) | None = None  # type: ignore[valid-type]
    fallback_from: _text(512) | None = None  # type: ignore[valid-type]


class _Status(msgspec.Struct):
    code: Literal["OK", "ERROR", "UNSET"] = "UNSET"


def _attr(name: str) -> Any:
    return msgspec.field(default=None, name=name)


class _Attributes(msgspec.Struct):
    operation: _text(512) | None = _attr("gen_ai.operation.name")  # type: ignore[valid-type]
    provider: _text(512) | None = _attr("gen_ai.provider.name")  # type: ignore[valid-type]
    request_model: _text(512) | None = _attr("gen_ai.request.model")  # type: ignore[valid-type]
    response_model: _text(512) | None = _attr("gen_ai.response.model")  # type: ignore[valid-type]
    response_id: _text(512) | None = _attr("gen_ai.response.id")  # type: ignore[valid-type]
    input_tokens: Count | None = _attr("gen_ai.usage.input_tokens")
    output_tokens: Count | None = _attr("gen_ai.usage.output_tokens")
    cached_input_tokens: Count | None = _attr("gen_ai.usage.cache_read.input_tokens")
    cache_creation_input_tokens: Count | None = _attr("gen_ai.usage.cache_creation.input_tokens")
    reasoning_tokens: Count | None = _attr("gen_ai.usage.reasoning.output_tokens")
    error_type: _text(512) | None = _attr("error.type")  # type: ignore[valid-type]
    relaycore_request_id: _text(200) | None = _attr("relaycore.request_id")  # type: ignore[valid-type]
    org_id: _text(200) | None = _attr("cams.org_id")  # type: ignore[valid-type]
    team_id: _text(200) | None = _attr("cams.team_id")  # type: ignore[valid-type]
    user_id: _text(200) | None = _attr("cams.user_id")  # type: ignore[valid-type]
    task_type: _text(100) | None = _attr("cams.task_type")  # type: ignore[valid-type]
    quality_score: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = _attr("auterity.quality.score")
    feedback: Literal[1, -1] | None = _attr("auterity.feedback")


_NO_ATTRIBUTES = _Attributes()


class _Span(msgspec.Struct):
    span_id: _text(100, True)  # type: ignore[valid-type]
    trace_id: _text(100, True)  # type: ignore[valid-type]
    start_time: str
    end_time: str
    name: _text(512) | None = None  # type: ignore[valid-type]
    status: _Status | None = None
    attributes: _Attributes | None = None
    resourceSpans: msgspec.Raw | None = None  # an OTLP line: the Python path reads those


_USAGE = msgspec.json.Decoder(_Usage)
_SPAN = msgspec.json.Decoder(_Span)


def _utf8(raw: bytes) -> bool:
    """msgspec does not look inside fields it skips; the file contract wants every byte UTF-8."""
    if raw.isascii():
        return True
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def relaycore_row(raw: bytes) -> tuple[Any, ...] | None:
    """A §2.1 line as `contracts.RELAYCORE_FIELDS` values, or None: let the Python contract decide."""
    try:
        r = _USAGE.decode(raw)
        ts = _fromisoformat(r.timestamp)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return None
    if ts.tzinfo is not UTC:  # no offset (refused) or one to convert: the Python contract decides
        return None
    inp, out = r.input_tokens, r.output_tokens
    cached = r.cached_input_tokens or 0
    creation = r.cache_creation_input_tokens or 0
    reasoning = r.reasoning_tokens or 0
    tier = r.service_tier or "standard"
    cost = r.cost_usd
    if (
        cached > inp
        or creation > inp - cached
        or reasoning > out
        or _blank(r.request_id, r.org_id, r.task_type, r.model, r.provider)
        or tier not in SERVICE_TIERS
        or (cost is not None and not (cost.is_finite() and 0 <= cost < MONEY_MAX))
        or not _utf8(raw)
    ):
        return None
    return (
        r.request_id,
        ts,
        r.org_id,
        r.team_id,
        r.user_id,
        r.task_type,
        r.model_requested,
        r.model,
        r.provider,
        inp,
        out,
        cached,
        creation,
        reasoning,
        tier,
        r.status,
        r.latency_ms,
        cost,
        r.steering_rule,
        r.fallback_from,
    )


def auterity_row(raw: bytes) -> tuple[Any, ...] | None:
    """A flat §2.2 span line as `contracts.AUTERITY_FIELDS` values, or None (OTLP lines included)."""
    try:
        s = _SPAN.decode(raw)
        start = _fromisoformat(s.start_time)
        end = _fromisoformat(s.end_time)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return None
    if start.tzinfo is not UTC or end.tzinfo is not UTC:  # as for relaycore_row
        return None
    a = s.attributes or _NO_ATTRIBUTES
    inp, cached = a.input_tokens, a.cached_input_tokens
    if (
        s.resourceSpans is not None
        or _blank(s.span_id, s.trace_id)
        or end < start
        or (inp is not None and cached is not None and cached > inp)
        or not _utf8(raw)
    ):
        return None
    return (
        s.span_id,
        s.trace_id,
        s.name,
        start,
        end,
        int((end - start).total_seconds() * 1000),
        s.status.code if s.status is not None else "UNSET",
        a.operation,
        a.provider,
        a.request_model,
        a.response_model,
        a.response_id,
        inp,
        a.output_tokens,
        cached,
        a.cache_creation_input_tokens,
        a.reasoning_tokens,
        a.error_type,
        a.relaycore_request_id,
        a.org_id,
        a.team_id,
        a.user_id,
        a.task_type,
        a.quality_score,
        a.feedback,
    )
