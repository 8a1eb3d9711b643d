"""Auterity spans as OTLP JSON, the form the OpenTelemetry Collector's file exporter writes.

Each line is an export request: `resourceSpans[].scopeSpans[].spans[]`, attributes as
`[{key, value: {stringValue | intValue | doubleValue | boolValue | arrayValue | kvlistValue}}]`,
64-bit integers as strings, times as nanoseconds since the epoch (also strings), and the status code
as a number (0 unset, 1 ok, 2 error) or its enum name. `flatten` turns each span into the flat form
of SPEC §2.2, so one contract (`parse_auterity`) validates both forms and a span lands the same
whichever form it came in. Resource and scope attributes are inherited; the span's own win.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from cams.sources.contracts import RecordError

_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR", "STATUS_CODE_UNSET": "UNSET", "STATUS_CODE_OK": "OK"}
_STATUS |= {"STATUS_CODE_ERROR": "ERROR", "UNSET": "UNSET", "OK": "OK", "ERROR": "ERROR"}


def is_otlp(obj: Mapping[str, Any]) -> bool:
    return "resourceSpans" in obj


def _value(v: Any) -> Any:
    if not isinstance(v, Mapping):
        raise RecordError('an OTLP attribute value must be an object such as {"stringValue": …}')
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        try:
            return int(v["intValue"])
        except (TypeError, ValueError):
            raise RecordError(f"intValue {str(v['intValue'])[:40]!r} is not an integer") from None
    if "doubleValue" in v:
        d = v["doubleValue"]
        return Decimal(str(d)) if isinstance(d, int | float | Decimal) else d
    if "boolValue" in v:
        return v["boolValue"]
    if "arrayValue" in v:
        return [_value(x) for x in (v["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in v:
        return _attributes((v["kvlistValue"] or {}).get("values", []))
    return None  # an empty AnyValue


def _attributes(items: Any) -> dict[str, Any]:
    if items is None:
        return {}
    if not isinstance(items, list):
        raise RecordError("OTLP attributes must be a list of {key, value}")
    out: dict[str, Any] = {}
    for kv in items:
        if not isinstance(kv, Mapping) or not isinstance(kv.get("key"), str):
            raise RecordError("an OTLP attribute needs a string key")
        out[kv["key"]] = _value(kv.get("value"))
    return out


def _nanos(value: Any, name: str) -> str:
    """RFC 3339 with microseconds from OTLP's nanoseconds (a string or a number)."""
    try:
        ns = int(value)
    except (TypeError, ValueError):
        raise RecordError(f"{name} must be nanoseconds since the epoch") from None
    if ns <= 0:
        raise RecordError(f"{name} must be after 1970")
    secs, rem = divmod(ns, 1_000_000_000)
    try:
        dt = datetime.fromtimestamp(secs, UTC).replace(microsecond=rem // 1000)
    except (OverflowError, OSError, ValueError):
        raise RecordError(f"{name} is out of range") from None
    return dt.isoformat().replace("+00:00", "Z")


def _list(obj: Mapping[str, Any], key: str) -> list[Any]:
    value = obj.get(key) or []
    if not isinstance(value, list):
        raise RecordError(f"{key} must be a list")
    return value


def flatten(obj: Mapping[str, Any]) -> Iterator[dict[str, Any] | RecordError]:
    """Each span of an OTLP export request in the flat §2.2 form, or the reason it cannot be read.

    A broken span is yielded as its RecordError, so it is quarantined alone and its neighbours land.
    """
    for rs in _list(obj, "resourceSpans"):
        if not isinstance(rs, Mapping):
            yield RecordError("a resourceSpans entry must be an object")
            continue
        try:
            resource = _attributes((rs.get("resource") or {}).get("attributes"))
            scopes = _list(rs, "scopeSpans")
        except RecordError as exc:
            yield exc
            continue
        for ss in scopes:
            try:
                if not isinstance(ss, Mapping):
                    raise RecordError("a scopeSpans entry must be an object")
                scope = _attributes((ss.get("scope") or {}).get("attributes"))
                spans = _list(ss, "spans")
            except RecordError as exc:
                yield exc
                continue
            for span in spans:
                try:
                    yield _span(span, {**resource, **scope})
                except RecordError as exc:
                    yield exc


def _span(span: Any, inherited: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(span, Mapping):
        raise RecordError("a span must be an object")
    status = span.get("status") or {}
    code = status.get("code", 0) if isinstance(status, Mapping) else None
    if code not in _STATUS:
        raise RecordError(f"status.code {str(code)[:30]!r} is not an OTLP status code")
    flat: dict[str, Any] = {
        "trace_id": span.get("traceId"),
        "span_id": span.get("spanId"),
        "name": span.get("name"),
        "start_time": _nanos(span.get("startTimeUnixNano"), "startTimeUnixNano"),
        "end_time": _nanos(span.get("endTimeUnixNano"), "endTimeUnixNano"),
        "status": {"code": _STATUS[code]},
        "attributes": {**inherited, **_attributes(span.get("attributes"))},
    }
    if span.get("parentSpanId"):
        flat["parent_span_id"] = span["parentSpanId"]
    return flat


def to_otlp(spans: list[Mapping[str, Any]], service: str = "relaycore-gateway") -> dict[str, Any]:
    """The flat spans as one OTLP export request (the simulator writes Collector-style files with it)."""

    def attr(k: str, v: Any) -> dict[str, Any]:
        if isinstance(v, bool):
            val: dict[str, Any] = {"boolValue": v}
        elif isinstance(v, int):
            val = {"intValue": str(v)}
        elif isinstance(v, float | Decimal):
            val = {"doubleValue": float(v)}
        else:
            val = {"stringValue": str(v)}
        return {"key": k, "value": val}

    def nanos(ts: str) -> str:
        dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        return str(int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000)

    code = {"UNSET": 0, "OK": 1, "ERROR": 2}
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [attr("service.name", service)]},
                "scopeSpans": [
                    {
                        "scope": {"name": "auterity", "version": "1.0"},
                        "spans": [
                            {
                                "traceId": s["trace_id"],
                                "spanId": s["span_id"],
                                "name": s.get("name"),
                                "kind": 3,
                                "startTimeUnixNano": nanos(s["start_time"]),
                                "endTimeUnixNano": nanos(s["end_time"]),
                                "attributes": [
                                    attr(k, v) for k, v in (s.get("attributes") or {}).items() if v is not None
                                ],
                                "status": {"code": code[(s.get("status") or {}).get("code", "UNSET")]},
                            }
                            for s in spans
                        ],
                    }
                ],
            }
        ]
    }
