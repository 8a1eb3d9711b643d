"""A LiteLLM proxy's `LiteLLM_SpendLogs` table in PostgreSQL as the usage source: known rows give the
expected costs through the real Dagster job, bad rows are quarantined, and the poll sensor sees new rows."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from cams import config as cams_config
from cams.warehouse.db import make_engine
from pipelines.definitions import build_definitions
from pipelines.runner import run_range
from tests.conftest import PG_URL, fresh_pg_database

DAY = date(2026, 4, 14)
# The table as LiteLLM's Prisma schema creates it (litellm/proxy/schema.prisma), trimmed of columns CAMS ignores.
DDL = """
CREATE TABLE "LiteLLM_SpendLogs" (
    request_id TEXT PRIMARY KEY, call_type TEXT NOT NULL, api_key TEXT NOT NULL DEFAULT '',
    spend DOUBLE PRECISION NOT NULL DEFAULT 0, total_tokens INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
    "startTime" TIMESTAMP(3) NOT NULL, "endTime" TIMESTAMP(3) NOT NULL, request_duration_ms INTEGER,
    "completionStartTime" TIMESTAMP(3), model TEXT NOT NULL DEFAULT '', model_id TEXT DEFAULT '',
    model_group TEXT DEFAULT '', custom_llm_provider TEXT DEFAULT '', api_base TEXT DEFAULT '',
    "user" TEXT DEFAULT '', metadata JSONB DEFAULT '{}', cache_hit TEXT DEFAULT '', cache_key TEXT DEFAULT '',
    request_tags JSONB DEFAULT '[]', team_id TEXT, organization_id TEXT, end_user TEXT, status TEXT,
    session_id TEXT, created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX ON "LiteLLM_SpendLogs" ("startTime");
"""


def row(rid: str, at: datetime, model: str, provider: str, prompt: int, completion: int, spend: float, **kw):  # type: ignore[no-untyped-def]
    return {
        "request_id": rid,
        "call_type": "acompletion",
        "spend": spend,
        "total_tokens": prompt + completion,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "startTime": at.replace(tzinfo=None),
        "endTime": (at + timedelta(seconds=2)).replace(tzinfo=None),
        "request_duration_ms": 2000,
        "model": model,
        "model_group": kw.pop("model_group", model),
        "custom_llm_provider": provider,
        "metadata": json.dumps(kw.pop("metadata", {})),
        "request_tags": json.dumps(kw.pop("tags", [])),
        "status": kw.pop("status", "success"),
        "organization_id": kw.pop("org", "acme"),
        "team_id": kw.pop("team", "search"),
        "end_user": kw.pop("end_user", "u1"),
    }


def _insert(url: str, rows: list[dict]) -> None:
    engine = make_engine(url)
    cols = list(rows[0])
    names = ", ".join(f'"{c}"' for c in cols)
    values = ", ".join(f"CAST(:{c} AS jsonb)" if c in ("metadata", "request_tags") else f":{c}" for c in cols)
    with engine.begin() as conn:
        conn.execute(sa.text(f'INSERT INTO "LiteLLM_SpendLogs" ({names}) VALUES ({values})'), rows)
    engine.dispose()


@pytest.mark.parametrize("backend", [b for b in ("postgresql",) if PG_URL])
def test_spend_logs_land_with_the_expected_costs(backend: str, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    at = datetime(DAY.year, DAY.month, DAY.day, 10, tzinfo=UTC)
    with fresh_pg_database("litellm_proxy") as proxy:
        engine = make_engine(proxy)
        with engine.begin() as conn:
            conn.exec_driver_sql(DDL)
        engine.dispose()
        cached = {"usage_object": {"prompt_tokens_details": {"cached_tokens": 1000}}, "user_api_key_org_id": "globex"}
        _insert(
            proxy,
            [
                row("r1", at, "gpt-4o-mini", "openai", 1000, 500, 0.00045, tags=["task:summarize", "env:prod"]),
                row("r2", at, "gpt-4o-mini", "openai", 2000, 100, 0.000285, org=None, metadata=cached),
                row("r3", at, "claude-haiku-4-5", "anthropic", 300, 0, 0.0, status="failure"),
                row("r4", at, "my-local-llama", "ollama", 50, 50, 0.0),
                row("r5", at + timedelta(days=1), "gpt-4o-mini", "openai", 10, 10, 0.0),  # the next day
                row("r6", at, "gpt-4o-mini", "openai", -5, 10, 0.0),  # broken: quarantined, not lost
            ],
        )
        monkeypatch.setenv("T_LITELLM_DSN", proxy)
        cfg = cams_config.parse(
            {
                "sources": {
                    "relaycore": {"mode": "litellm", "dsn_env": "T_LITELLM_DSN", "default_task": "chat"},
                    "auterity": {"mode": "files", "drop_dir": str(tmp_path / "auterity")},
                },
                "partitions": {"start_date": "2026-04-01"},
            }
        )
        (tmp_path / "auterity").mkdir()
        url = f"sqlite:///{tmp_path / 'w.db'}"
        defs = build_definitions(cfg, url)
        with dg.instance_for_test() as inst:
            summary = run_range(DAY, DAY, inst, defs)
            assert summary["records"]["relaycore"] == {"read": 5, "accepted": 4, "duplicates": 0, "quarantined": 1}
            wh = make_engine(url)
            with wh.connect() as conn:
                costs = {
                    r.request_id: r
                    for r in conn.execute(
                        sa.text("select request_id, org_id, task_type, status, cost_usd, unpriced from cost_tracking")
                    )
                }
                reason = conn.execute(sa.text("select reason from quarantine")).scalar_one()
            wh.dispose()
            assert Decimal(str(costs["r1"].cost_usd)).quantize(Decimal("1e-10")) == Decimal("0.00045")
            assert (costs["r1"].org_id, costs["r1"].task_type) == ("acme", "summarize")
            # 1,000 cached at 7.5e-8 + 1,000 uncached at 1.5e-7 + 100 out at 6e-7
            assert Decimal(str(costs["r2"].cost_usd)).quantize(Decimal("1e-10")) == Decimal("0.000285")
            assert (costs["r2"].org_id, costs["r2"].task_type) == ("globex", "chat")
            assert costs["r3"].status == "error" and costs["r4"].unpriced and costs["r4"].cost_usd is None
            assert "r5" not in costs and "input_tokens" in reason

            # the poll sensor: a row newer than the cursor launches its day
            sensor = defs.resolve_sensor_def("relaycore_api_sensor")
            resources = {"relaycore": defs.resources["relaycore"]}
            quiet = sensor(
                dg.build_sensor_context(
                    instance=inst, resources=resources, cursor=(datetime.now(UTC) - timedelta(hours=1)).isoformat()
                )
            )
            assert quiet.run_requests == []
            now = datetime.now(UTC) - timedelta(minutes=5)
            _insert(proxy, [row("fresh", now, "gpt-4o-mini", "openai", 10, 10, 0.0)])
            fresh = sensor(
                dg.build_sensor_context(
                    instance=inst,
                    resources=resources,
                    cursor=(now - timedelta(minutes=1)).isoformat(),
                )
            )
            assert now.date().isoformat() in {r.partition_key for r in fresh.run_requests}
