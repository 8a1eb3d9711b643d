"""selection

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 21:19:11.322302
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column(
            "key_hash", sa.String(length=64), nullable=False, comment="sha256 of the key; the key is never stored"
        ),
        sa.Column("scopes", sa.String(length=100), nullable=False),
        sa.Column(
            "org_id", sa.String(length=200), nullable=True, comment="set: the key sees and changes only this org"
        ),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
        comment="API keys of the lookup service (SPEC §7).",
    )
    op.create_table(
        "model_quality_stats",
        sa.Column("model", sa.String(length=512), nullable=False),
        sa.Column("task_type", sa.String(length=100), nullable=False),
        sa.Column("spans", sa.BigInteger(), nullable=False),
        sa.Column("scored", sa.BigInteger(), nullable=False),
        sa.Column("mean_score", sa.Float(), nullable=True),
        sa.Column("quality", sa.Float(), nullable=False, comment="mean score shrunk toward the configured prior"),
        sa.Column("success_rate", sa.Float(), nullable=False),
        sa.Column("p50_latency_ms", sa.Float(), nullable=True),
        sa.Column("p95_latency_ms", sa.Float(), nullable=True),
        sa.Column("median_input_tokens", sa.Float(), nullable=True),
        sa.Column("median_output_tokens", sa.Float(), nullable=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model", "task_type"),
        comment="Per model and task type, from Auterity spans (SPEC §6).",
    )
    op.create_table(
        "model_selection_explanations",
        sa.Column("id", sa.String(length=64), nullable=False, comment="a table row's id, or a selection's id"),
        sa.Column("table_version", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False, comment="row or selection"),
        sa.Column("org_id", sa.String(length=200), nullable=True),
        sa.Column("request_id", sa.String(length=200), nullable=True),
        sa.Column("explanation_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        comment="Why each table row and each selection chose what it chose.",
    )
    with op.batch_alter_table("model_selection_explanations", schema=None) as batch_op:
        batch_op.create_index("ix_model_selection_explanations_request", ["request_id"], unique=False)

    op.create_table(
        "model_selection_history",
        sa.Column("selection_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=200), nullable=True),
        sa.Column("org_id", sa.String(length=200), nullable=False),
        sa.Column("team_id", sa.String(length=200), nullable=True),
        sa.Column("user_id", sa.String(length=200), nullable=True),
        sa.Column("task_type", sa.String(length=100), nullable=False),
        sa.Column("quality_tier", sa.String(length=20), nullable=False),
        sa.Column("served_tier", sa.String(length=20), nullable=False),
        sa.Column("model", sa.String(length=512), nullable=False),
        sa.Column("estimated_cost_usd", sa.Numeric(precision=20, scale=10), nullable=False),
        sa.Column("budget_state", sa.String(length=10), nullable=False),
        sa.Column("binding_constraint", sa.String(length=100), nullable=False),
        sa.Column("table_version", sa.String(length=64), nullable=False),
        sa.Column("selected_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("selection_id"),
        comment="Every selection the endpoint made, written in batches off the hot path.",
    )
    op.create_table(
        "model_selection_tables",
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("table_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("version"),
        comment="Every published selection table; the newest version is the one served.",
    )


def downgrade() -> None:

    op.drop_table("model_selection_tables")
    op.drop_table("model_selection_history")
    with op.batch_alter_table("model_selection_explanations", schema=None) as batch_op:
        batch_op.drop_index("ix_model_selection_explanations_request")

    op.drop_table("model_selection_explanations")
    op.drop_table("model_quality_stats")
    op.drop_table("api_keys")
