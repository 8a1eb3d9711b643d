"""initial warehouse: landing, quarantine, price book, cost tracking, rollups, sync history

Revision ID: 0001
Revises:
Create Date: 2026-11-25 20:12:20.116475
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "auterity_spans",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("span_id", sa.String(length=100), nullable=False),
        sa.Column("trace_id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=True),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.BigInteger(), nullable=False),
        sa.Column("status_code", sa.String(length=10), nullable=False),
        sa.Column("operation", sa.String(length=512), nullable=True),
        sa.Column("provider", sa.String(length=512), nullable=True),
        sa.Column("request_model", sa.String(length=512), nullable=True),
        sa.Column("response_model", sa.String(length=512), nullable=True),
        sa.Column("response_id", sa.String(length=512), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=True),
        sa.Column("output_tokens", sa.BigInteger(), nullable=True),
        sa.Column("cached_input_tokens", sa.BigInteger(), nullable=True),
        sa.Column("cache_creation_input_tokens", sa.BigInteger(), nullable=True),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=True),
        sa.Column("error_type", sa.String(length=512), nullable=True),
        sa.Column("relaycore_request_id", sa.String(length=200), nullable=True),
        sa.Column("org_id", sa.String(length=200), nullable=True),
        sa.Column("team_id", sa.String(length=200), nullable=True),
        sa.Column("user_id", sa.String(length=200), nullable=True),
        sa.Column("task_type", sa.String(length=100), nullable=True),
        sa.Column("quality_score", sa.Float(), nullable=True),
        sa.Column("feedback", sa.Integer(), nullable=True),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", "span_id"),
        comment="Auterity GenAI spans (SPEC §2.2), one row per span per UTC day, deduplicated.",
    )
    with op.batch_alter_table("auterity_spans", schema=None) as batch_op:
        batch_op.create_index("ix_auterity_spans_request", ["relaycore_request_id"], unique=False)

    op.create_table(
        "cost_daily_rollups",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("org_id", sa.String(length=200), nullable=False),
        sa.Column("team_id", sa.String(length=200), nullable=True),
        sa.Column("user_id", sa.String(length=200), nullable=True),
        sa.Column("model", sa.String(length=512), nullable=False),
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("task_type", sa.String(length=100), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("unpriced_requests", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_input_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cache_creation_input_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cost_usd", sa.Numeric(precision=20, scale=10), nullable=False),
        sa.Column("charged_usd", sa.Numeric(precision=20, scale=10), nullable=False),
        comment="cost_tracking summed per day, org, team, user, model, provider and task type.",
    )
    with op.batch_alter_table("cost_daily_rollups", schema=None) as batch_op:
        batch_op.create_index("ix_cost_daily_rollups_day_org", ["day", "org_id"], unique=False)

    op.create_table(
        "cost_sync_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("read", sa.BigInteger(), nullable=False),
        sa.Column("accepted", sa.BigInteger(), nullable=False),
        sa.Column("duplicates", sa.BigInteger(), nullable=False),
        sa.Column("quarantined", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        comment="One row per ingestion of a source window: what was read and how it ended.",
    )
    op.create_table(
        "cost_tracking",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("request_id", sa.String(length=200), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("org_id", sa.String(length=200), nullable=False),
        sa.Column("team_id", sa.String(length=200), nullable=True),
        sa.Column("user_id", sa.String(length=200), nullable=True),
        sa.Column("task_type", sa.String(length=100), nullable=False),
        sa.Column("model", sa.String(length=512), nullable=False),
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("service_tier", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_input_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cache_creation_input_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "cost_usd", sa.Numeric(precision=20, scale=10), nullable=True, comment="price book cost; NULL when unpriced"
        ),
        sa.Column("charged_usd", sa.Numeric(precision=20, scale=10), nullable=True, comment="what RelayCore charged"),
        sa.Column("unpriced", sa.Boolean(), nullable=False),
        sa.Column("price_id", sa.String(length=700), nullable=True, comment="model_cost_profiles.price_id used"),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", "request_id"),
        comment="Per-request cost from the price book in force at the request's time (SPEC §3, §4).",
    )
    with op.batch_alter_table("cost_tracking", schema=None) as batch_op:
        batch_op.create_index("ix_cost_tracking_org_day", ["org_id", "day"], unique=False)

    op.create_table(
        "model_cost_profiles",
        sa.Column("price_id", sa.String(length=700), nullable=False),
        sa.Column("model", sa.String(length=512), nullable=False),
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("mode", sa.String(length=40), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("input_cost_per_token", sa.Numeric(precision=24, scale=18), nullable=True),
        sa.Column("output_cost_per_token", sa.Numeric(precision=24, scale=18), nullable=True),
        sa.Column("cache_read_input_token_cost", sa.Numeric(precision=24, scale=18), nullable=True),
        sa.Column("cache_creation_input_token_cost", sa.Numeric(precision=24, scale=18), nullable=True),
        sa.Column("output_cost_per_reasoning_token", sa.Numeric(precision=24, scale=18), nullable=True),
        sa.Column("prices_json", sa.Text(), nullable=False),
        sa.Column("capabilities_json", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("snapshot_version", sa.String(length=200), nullable=True),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("price_id"),
        comment="The effective-dated price book (SPEC §3): one row per model per validity window.",
    )
    with op.batch_alter_table("model_cost_profiles", schema=None) as batch_op:
        batch_op.create_index("ix_model_cost_profiles_model", ["model", "valid_from"], unique=False)

    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("day", sa.Date(), nullable=True),
        sa.Column("ref", sa.String(length=512), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        comment="Input that failed validation: never dropped, never blocking (SPEC §2.4).",
    )
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.create_index("ix_quarantine_source_day", ["source", "day"], unique=False)

    op.create_table(
        "relaycore_usage",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("request_id", sa.String(length=200), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("org_id", sa.String(length=200), nullable=False),
        sa.Column("team_id", sa.String(length=200), nullable=True),
        sa.Column("user_id", sa.String(length=200), nullable=True),
        sa.Column("task_type", sa.String(length=100), nullable=False),
        sa.Column("model_requested", sa.String(length=512), nullable=True),
        sa.Column("model", sa.String(length=512), nullable=False),
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_input_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cache_creation_input_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("service_tier", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("latency_ms", sa.BigInteger(), nullable=True),
        sa.Column("cost_usd", sa.Numeric(precision=20, scale=10), nullable=True),
        sa.Column("steering_rule", sa.String(length=512), nullable=True),
        sa.Column("fallback_from", sa.String(length=512), nullable=True),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", "request_id"),
        comment="RelayCore usage records (SPEC §2.1), one row per request per UTC day, deduplicated.",
    )


def downgrade() -> None:

    op.drop_table("relaycore_usage")
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_index("ix_quarantine_source_day")

    op.drop_table("quarantine")
    with op.batch_alter_table("model_cost_profiles", schema=None) as batch_op:
        batch_op.drop_index("ix_model_cost_profiles_model")

    op.drop_table("model_cost_profiles")
    with op.batch_alter_table("cost_tracking", schema=None) as batch_op:
        batch_op.drop_index("ix_cost_tracking_org_day")

    op.drop_table("cost_tracking")
    op.drop_table("cost_sync_history")
    with op.batch_alter_table("cost_daily_rollups", schema=None) as batch_op:
        batch_op.drop_index("ix_cost_daily_rollups_day_org")

    op.drop_table("cost_daily_rollups")
    with op.batch_alter_table("auterity_spans", schema=None) as batch_op:
        batch_op.drop_index("ix_auterity_spans_request")

    op.drop_table("auterity_spans")
