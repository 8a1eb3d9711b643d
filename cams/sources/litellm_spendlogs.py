"""Usage from a LiteLLM proxy's own database: its `LiteLLM_SpendLogs` table, read as RelayCore records.

A team that runs LiteLLM's proxy instead of RelayCore points `sources.relaycore` at the proxy's
PostgreSQL (`mode: litellm`, `dsn_env`); every spend-log row becomes a SPEC §2.1 record and goes
through the same contract, quarantine, landing, costing, budgets and reconciliation. Rows are read by
`startTime` (LiteLLM indexes it) for the partition's window, in pages ordered by
(`startTime`, `request_id`), so a window of any size streams in bounded memory.

Column mapping (docs/integration.md has the table): request_id → request_id; startTime →
timestamp; organization_id (else metadata.user_api_key_org_id, else `default_org`) → org_id;
team_id (else metadata.user_api_key_team_id) → team_id; end_user, else user → user_id; a
`task:<name>` request tag, else `default_task` → task_type; model_group → model_requested; model →
model; custom_llm_provider → provider; prompt/completion tokens → input/output tokens;
metadata.usage_object's cached, cache-creation and reasoning details → those token fields; spend →
cost_usd (the gateway's charge); status failure → error; request_duration_ms → latency_ms.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import create_engine, text

from cams.sources.batch import Collector
from cams.warehouse.db import normalize_url

TABLE = '"LiteLLM_SpendLogs"'
COLUMNS = (
    "request_id",
    "call_type",
    "spend",
    "prompt_tokens",
    "completion_tokens",
    '"startTime"',
    "request_duration_ms",
    "model",
    "model_group",
    "custom_llm_provider",
    '"user"',
    "metadata",
    "request_tags",
    "team_id",
    "organization_id",
    "end_user",
    "status",
)
PAGE = 5000


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return {}
    return value or {}


def _iso(ts: Any) -> Any:
    if isinstance(ts, datetime):
        ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)  # Prisma stores UTC in timestamp(3) without zone
        return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return ts


def to_record(row: Mapping[str, Any], default_org: str, default_task: str) -> dict[str, Any]:
    """One spend-log row as a SPEC §2.1 record (validated afterwards by the RelayCore contract)."""
    meta = _json(row.get("metadata"))
    meta = meta if isinstance(meta, dict) else {}
    usage = meta.get("usage_object") if isinstance(meta.get("usage_object"), dict) else {}
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    tags = _json(row.get("request_tags"))
    task = next(
        (
            t.split(":", 1)[1]
            for t in (tags if isinstance(tags, list) else [])
            if isinstance(t, str) and t.startswith("task:")
        ),
        default_task,
    )
    failed = str(row.get("status") or "success").lower() in ("failure", "failed", "error")
    return {
        "request_id": row.get("request_id"),
        "timestamp": _iso(row.get("startTime")),
        "org_id": row.get("organization_id") or meta.get("user_api_key_org_id") or default_org,
        "team_id": row.get("team_id") or meta.get("user_api_key_team_id") or None,
        "user_id": row.get("end_user") or row.get("user") or meta.get("user_api_key_user_id") or None,
        "task_type": task,
        "model_requested": row.get("model_group") or None,
        "model": row.get("model"),
        "provider": row.get("custom_llm_provider") or "unknown",
        "input_tokens": row.get("prompt_tokens"),
        "output_tokens": row.get("completion_tokens"),
        "cached_input_tokens": (prompt_details.get("cached_tokens") if isinstance(prompt_details, dict) else 0) or 0,
        "cache_creation_input_tokens": usage.get("cache_creation_input_tokens") or 0,
        "reasoning_tokens": (completion_details.get("reasoning_tokens") if isinstance(completion_details, dict) else 0)
        or 0,
        "service_tier": "standard",
        "status": "error" if failed else "success",
        "latency_ms": row.get("request_duration_ms"),
        "cost_usd": str(row["spend"]) if row.get("spend") is not None else None,
    }


def _pages(dsn: str, start: datetime, end: datetime, limit: int | None = None) -> Iterator[list[dict[str, Any]]]:
    engine = create_engine(normalize_url(dsn), pool_pre_ping=True)
    naive = (start.astimezone(UTC).replace(tzinfo=None), end.astimezone(UTC).replace(tzinfo=None))
    after: tuple[Any, str] | None = None
    try:
        with engine.connect() as conn:
            while True:
                where = '"startTime" >= :s AND "startTime" < :e'
                params: dict[str, Any] = {"s": naive[0], "e": naive[1], "n": limit or PAGE}
                if after is not None:
                    where += ' AND ("startTime", request_id) > (:at, :rid)'
                    params |= {"at": after[0], "rid": after[1]}
                order = 'ORDER BY "startTime", request_id LIMIT :n'
                sql = f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE {where} {order}"
                rows = conn.execute(text(sql), params).mappings().all()
                if not rows:
                    return
                yield [dict(r) for r in rows]
                if limit is not None or len(rows) < PAGE:
                    return
                after = (rows[-1]["startTime"], rows[-1]["request_id"])
    finally:
        engine.dispose()


def collect_spendlogs(collector: Collector, dsn: str, default_org: str = "default", default_task: str = "chat") -> int:
    """Every spend-log row of the collector's window into it; returns the rows read."""
    n = 0
    for page in _pages(dsn, collector.result.start, collector.result.end):
        for row in page:
            n += 1
            record = to_record(row, default_org, default_task)
            collector.add_record(f"LiteLLM_SpendLogs:{row.get('request_id')}", record, json.dumps(record, default=str))
    return n


def has_rows(dsn: str, start: datetime, end: datetime) -> bool:
    """Whether the proxy logged anything in [start, end): what the poll sensor asks each tick."""
    pages = _pages(dsn, start, end, limit=1)
    try:
        return next(pages, None) is not None  # _pages yields only non-empty pages
    finally:
        pages.close()  # dispose of the engine now, not when the generator is collected
