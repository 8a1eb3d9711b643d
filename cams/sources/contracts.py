"""Record contracts of SPEC §2.1 (RelayCore usage) and §2.2 (Auterity spans).

Parsing returns a flat, typed row ready for the landing table, or raises RecordError with a reason
a person can act on. Unknown extra fields are ignored so sources can evolve without breaking us.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from cams.pricing.rates import SERVICE_TIERS
from cams.sources.timeutil import parse_rfc3339

RELAYCORE = "relaycore"
AUTERITY = "auterity"
SOURCES = (RELAYCORE, AUTERITY)


class RecordError(ValueError):
    """Why a record was quarantined."""


def _str(rec: Mapping[str, Any], name: str, required: bool = True, max_len: int = 512) -> str | None:
    value = rec.get(name)
    if value is None:
        if required:
            raise RecordError(f"missing required field {name}")
        return None
    if not isinstance(value, str):
        raise RecordError(f"{name} must be a string")
    if required and not value.strip():
        raise RecordError(f"{name} must not be empty")
    if len(value) > max_len:
        raise RecordError(f"{name} is longer than {max_len} characters")
    return value


def _count(rec: Mapping[str, Any], name: str, required: bool, default: int | None = 0) -> int | None:
    value = rec.get(name)
    if value is None:
        if required:
            raise RecordError(f"missing required field {name}")
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        # NaN and Infinity are JSON to Python's reader; int() of them raised instead of quarantining
        if isinstance(value, Decimal | float) and math.isfinite(value) and value == int(value):
            value = int(value)
        else:
            raise RecordError(f"{name} must be a whole number")
    if value < 0:
        raise RecordError(f"{name} must be >= 0")
    if value > 10**12:
        raise RecordError(f"{name} is implausibly large")
    return int(value)


def _time(rec: Mapping[str, Any], name: str) -> datetime:
    try:
        return parse_rfc3339(rec.get(name), name)
    except ValueError as exc:
        raise RecordError(str(exc)) from None


def _money(value: Any, name: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise RecordError(f"{name} must be a decimal number")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise RecordError(f"{name} must be a decimal number") from None
    if not amount.is_finite() or amount < 0:
        raise RecordError(f"{name} must be a finite number >= 0")
    if amount >= Decimal(10) ** 9:
        raise RecordError(f"{name} is implausibly large")
    return amount


def decode_line(raw: bytes) -> tuple[str, str | None]:
    """A drop-file line as text without its newline, and why it is not UTF-8 (None when it is)."""
    try:
        return raw.decode("utf-8").rstrip("\r\n"), None
    except UnicodeDecodeError as exc:
        return raw.decode("utf-8", "backslashreplace").rstrip("\r\n"), f"not UTF-8 at byte {exc.start}"


# What no warehouse text column stores: NUL (PostgreSQL refuses it) and lone UTF-16 surrogates (not
# encodable as UTF-8). JSON can carry both as escapes; a line holding them is quarantined, not landed.
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
# The bytes of a line that may decode to such text: a raw NUL, or a \u0000 / surrogate escape.
RISKY_BYTES = re.compile(rb"\x00|\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


def unstorable(values: Iterable[Any], fields: Iterable[str]) -> str | None:
    """Why a row cannot be stored (the field and what it holds), or None when it can."""
    for name, value in zip(fields, values, strict=False):
        if isinstance(value, str) and (m := _UNSTORABLE.search(value)):
            what = "a NUL character" if m.group() == "\x00" else "a lone UTF-16 surrogate"
            return f"{name} holds {what}, which the warehouse cannot store"
    return None


def storable_text(text: str) -> str:
    """Text any warehouse stores, keeping what it said: NUL as `\\u0000`, lone surrogates escaped."""
    if "\x00" in text:
        text = text.replace("\x00", "\\u0000")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def loads(text: str) -> dict[str, Any]:
    """JSON object from a line; decimals kept exact."""
    try:
        obj = json.loads(text, parse_float=Decimal)
    except RecursionError:
        raise RecordError("not valid JSON: nested deeper than the decoder allows") from None
    except json.JSONDecodeError as exc:
        raise RecordError(f"not valid JSON: {str(exc)[:80]}") from None
    if not isinstance(obj, dict):
        raise RecordError("a record must be a JSON object")
    return obj


def parse_relaycore(rec: Mapping[str, Any]) -> dict[str, Any]:
    """A §2.1 usage record as a landing row."""
    inp = _count(rec, "input_tokens", True)
    out = _count(rec, "output_tokens", True)
    cached = _count(rec, "cached_input_tokens", False)
    creation = _count(rec, "cache_creation_input_tokens", False)
    reasoning = _count(rec, "reasoning_tokens", False)
    assert inp is not None and out is not None and cached is not None and creation is not None
    assert reasoning is not None
    if cached > inp:
        raise RecordError("cached_input_tokens exceeds input_tokens")
    if creation > inp - cached:
        raise RecordError("cache_creation_input_tokens exceeds input_tokens - cached_input_tokens")
    if reasoning > out:
        raise RecordError("reasoning_tokens exceeds output_tokens")
    tier = rec.get("service_tier") or "standard"
    if tier not in SERVICE_TIERS:
        raise RecordError(f"service_tier must be one of {', '.join(SERVICE_TIERS)}")
    status = rec.get("status")
    if status not in ("success", "error"):
        raise RecordError("status must be success or error")
    return {
        "request_id": _str(rec, "request_id", max_len=200),
        "timestamp": _time(rec, "timestamp"),
        "org_id": _str(rec, "org_id", max_len=200),
        "team_id": _str(rec, "team_id", required=False, max_len=200),
        "user_id": _str(rec, "user_id", required=False, max_len=200),
        "task_type": _str(rec, "task_type", max_len=100),
        "model_requested": _str(rec, "model_requested", required=False),
        "model": _str(rec, "model"),
        "provider": _str(rec, "provider", max_len=100),
        "input_tokens": inp,
        "output_tokens": out,
        "cached_input_tokens": cached,
        "cache_creation_input_tokens": creation,
        "reasoning_tokens": reasoning,
        "service_tier": tier,
        "status": status,
        "latency_ms": _count(rec, "latency_ms", False, None),
        "cost_usd": _money(rec.get("cost_usd"), "cost_usd"),
        "steering_rule": _str(rec, "steering_rule", required=False),
        "fallback_from": _str(rec, "fallback_from", required=False),
    }


def _attr_count(attrs: Mapping[str, Any], key: str) -> int | None:
    return _count(attrs, key, False, None)


def parse_auterity(rec: Mapping[str, Any]) -> dict[str, Any]:
    """A §2.2 span as a landing row."""
    attrs = rec.get("attributes")
    if attrs is None:
        attrs = {}
    if not isinstance(attrs, dict):
        raise RecordError("attributes must be an object")
    status = rec.get("status") or {}
    code = status.get("code", "UNSET") if isinstance(status, dict) else None
    if code not in ("OK", "ERROR", "UNSET"):
        raise RecordError("status.code must be OK, ERROR or UNSET")
    start, end = _time(rec, "start_time"), _time(rec, "end_time")
    if end < start:
        raise RecordError("end_time is before start_time")
    score = attrs.get("auterity.quality.score")
    if score is not None:
        if isinstance(score, bool) or not isinstance(score, int | float | Decimal) or not 0 <= score <= 1:
            raise RecordError("auterity.quality.score must be a number in [0, 1]")
        score = float(score)
    feedback = attrs.get("auterity.feedback")
    if feedback is not None and (isinstance(feedback, bool) or feedback not in (1, -1)):
        raise RecordError("auterity.feedback must be +1 or -1")
    inp = _attr_count(attrs, "gen_ai.usage.input_tokens")
    cached = _attr_count(attrs, "gen_ai.usage.cache_read.input_tokens")
    if inp is not None and cached is not None and cached > inp:
        raise RecordError("gen_ai.usage.cache_read.input_tokens exceeds gen_ai.usage.input_tokens")
    return {
        "span_id": _str(rec, "span_id", max_len=100),
        "trace_id": _str(rec, "trace_id", max_len=100),
        "name": _str(rec, "name", required=False),
        "start_time": start,
        "end_time": end,
        "duration_ms": int((end - start).total_seconds() * 1000),
        "status_code": code,
        "operation": _str(attrs, "gen_ai.operation.name", required=False),
        "provider": _str(attrs, "gen_ai.provider.name", required=False),
        "request_model": _str(attrs, "gen_ai.request.model", required=False),
        "response_model": _str(attrs, "gen_ai.response.model", required=False),
        "response_id": _str(attrs, "gen_ai.response.id", required=False),
        "input_tokens": inp,
        "output_tokens": _attr_count(attrs, "gen_ai.usage.output_tokens"),
        "cached_input_tokens": cached,
        "cache_creation_input_tokens": _attr_count(attrs, "gen_ai.usage.cache_creation.input_tokens"),
        "reasoning_tokens": _attr_count(attrs, "gen_ai.usage.reasoning.output_tokens"),
        "error_type": _str(attrs, "error.type", required=False),
        "relaycore_request_id": _str(attrs, "relaycore.request_id", required=False, max_len=200),
        "org_id": _str(attrs, "cams.org_id", required=False, max_len=200),
        "team_id": _str(attrs, "cams.team_id", required=False, max_len=200),
        "user_id": _str(attrs, "cams.user_id", required=False, max_len=200),
        "task_type": _str(attrs, "cams.task_type", required=False, max_len=100),
        "quality_score": score,
        "feedback": feedback,
    }


# The order of a parsed row's fields (a landing row travels as a tuple in this order; the key first).
# `cams.sources.registry` holds them with the rest of each source's description.
RELAYCORE_FIELDS = (
    "request_id",
    "timestamp",
    "org_id",
    "team_id",
    "user_id",
    "task_type",
    "model_requested",
    "model",
    "provider",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
    "service_tier",
    "status",
    "latency_ms",
    "cost_usd",
    "steering_rule",
    "fallback_from",
)
AUTERITY_FIELDS = (
    "span_id",
    "trace_id",
    "name",
    "start_time",
    "end_time",
    "duration_ms",
    "status_code",
    "operation",
    "provider",
    "request_model",
    "response_model",
    "response_id",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
    "error_type",
    "relaycore_request_id",
    "org_id",
    "team_id",
    "user_id",
    "task_type",
    "quality_score",
    "feedback",
)
