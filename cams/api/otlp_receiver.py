"""`POST /v1/traces`: OpenTelemetry spans pushed over OTLP/HTTP, as the SDK's exporter and the
Collector's `otlphttp` exporter send them (protobuf or JSON, gzip or not).

The service only stores each export request, exactly once (its id is the hash of its spans), and
answers; the `otlp_traces_sensor` turns stored requests into Auterity drop files and lands their
days, so pushed spans go through the same contract, dedupe and quarantine as files and show up in
Dagster like any other landing. Auth: a key with the `write` scope as `Authorization: Bearer`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Engine, insert, select

from cams.api.deps import ApiError, auth, engine
from cams.api.keys import ApiKey
from cams.warehouse import schema as t

KIND = "otlp-traces"
PROTOBUF = "application/x-protobuf"
_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


class OtlpError(ValueError):
    """A body that is not an OTLP trace export request; `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def decode(body: bytes, content_type: str, content_encoding: str, max_bytes: int) -> dict[str, Any]:
    """The export request as OTLP JSON (the Collector file exporter's form, which the landing reads)."""
    if content_encoding.strip().lower() == "gzip":
        try:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            body = inflater.decompress(body, max_bytes)
            if inflater.unconsumed_tail:
                raise OtlpError(f"the decompressed body is over {max_bytes} bytes", 413)
        except zlib.error as exc:
            raise OtlpError(f"not gzip: {exc}") from None
    elif content_encoding.strip() not in ("", "identity"):
        raise OtlpError(f"Content-Encoding {content_encoding!r} is not supported (gzip or none)", 415)
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == PROTOBUF:
        return _from_protobuf(body)
    if kind in ("application/json", ""):
        try:
            obj = json.loads(body)
        except (ValueError, RecursionError):
            raise OtlpError("the body is not JSON") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("resourceSpans", []), list):
            raise OtlpError("an OTLP trace export request is an object with a resourceSpans list")
        obj.setdefault("resourceSpans", [])
        return obj
    raise OtlpError(f"Content-Type {content_type!r} is not OTLP (application/x-protobuf or application/json)", 415)


def _from_protobuf(body: bytes) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    try:
        message = ExportTraceServiceRequest.FromString(body)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise OtlpError(f"not an OTLP protobuf ExportTraceServiceRequest: {exc}") from None
    obj = MessageToDict(message)
    obj.setdefault("resourceSpans", [])
    for rs in obj["resourceSpans"]:  # protobuf's JSON mapping writes bytes as base64; OTLP JSON as hex
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for field in _ID_FIELDS:
                    if field in span:
                        span[field] = base64.b64decode(span[field]).hex()
    return obj


def store(engine: Engine, request: dict[str, Any]) -> tuple[str, bool]:
    """Keep the export request once; (its id, whether it was new). The id hashes the spans, so a client
    retrying after a lost answer does not land them twice."""
    text = json.dumps(request, sort_keys=True, separators=(",", ":"))
    event_id = f"otlp:{hashlib.sha256(text.encode()).hexdigest()[:40]}"
    we = t.webhook_events
    with engine.begin() as conn:
        if conn.execute(select(we.c.event_id).where(we.c.event_id == event_id)).first():
            return event_id, False
        conn.execute(
            insert(we).values(event_id=event_id, kind=KIND, body=text, received_at=datetime.now(UTC), processed_at=None)
        )
    return event_id, True


def spans_in(request: dict[str, Any]) -> int:
    return sum(len(ss.get("spans", [])) for rs in request["resourceSpans"] for ss in rs.get("scopeSpans", []))


router = APIRouter(tags=["otlp"])  # the service's errors and auth (cams.api.deps)


@router.post(
    "/v1/traces",
    responses={200: {"description": "stored (or already stored): the spans land with the next sensor tick"}},
)
async def traces(request: Request, key: ApiKey = Depends(auth("write")), db: Engine = Depends(engine)) -> Response:
    """OTLP/HTTP trace export (protobuf or JSON, optionally gzip), as the OpenTelemetry SDK and the
    Collector's otlphttp exporter send it; spans land through the Auterity contract."""
    try:
        obj = decode(
            await request.body(),
            request.headers.get("content-type", ""),
            request.headers.get("content-encoding", ""),
            request.app.state.max_body_bytes,
        )
    except OtlpError as exc:
        raise ApiError(exc.status, "invalid_otlp", str(exc)) from None
    event_id, new = store(db, obj)
    if request.headers.get("content-type", "").startswith(PROTOBUF):
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        return Response(ExportTraceServiceResponse().SerializeToString(), media_type=PROTOBUF)
    return JSONResponse({"status": "stored" if new else "duplicate", "event_id": event_id, "spans": spans_in(obj)})
